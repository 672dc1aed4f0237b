"""Peak GPU memory of a notebook without a GPU: the stand-in nvidia-smi, and kernels that look
as if they used CUDA (a mapped file named like libcuda, a torch-like module's counters).

The notebooks are short, shorter than the sampler's background cadence: the figure must come
from the looks at each cell's end and before the kernel is stopped (a 2 GiB tensor allocated
in 0.35 s and kept to the end once showed `-` or 14 MiB).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers.fake_nvidia_smi import SCENE_VAR, gpu, install
from helpers.pytest_sessions import output, run_pytest

from nbtest import NbTestConfig, run_notebook, this_tests
from nbtest.callbacks.memory import CARD_DELTA, DRIVER, FRAMEWORK, MemoryCallback

pytest_plugins = ["pytester"]
UUID = "GPU-7e0c2a55-0000-1111-2222-333344445555"
TOTAL = 143771
# Cell 1: load a "CUDA driver" (a mapped file named like libcuda, as torch's CUDA init maps the
# real one). Cell 2: "allocate": the stand-in now lists this kernel holding 2 GiB.
LOAD_DRIVER = ("import mmap, os\nwith open('libcuda.so.1', 'wb') as fh:\n"
               "    fh.write(b'\\0' * 4096)\n"
               "driver = open('libcuda.so.1', 'rb')\n"
               "mapped = mmap.mmap(driver.fileno(), 4096, prot=mmap.PROT_READ)")


def holds(mib: int, listed: bool = True) -> str:
    """Cell source: the stand-in's scene now shows this kernel holding `mib` MiB."""
    return ("import json, os\n"
            f"path = os.environ[{SCENE_VAR!r}]\n"
            "scene = json.load(open(path))\n"
            f"scene['gpus'][0]['memory.used'] = 1000 + {mib}\n"
            f"scene['gpus'][0]['memory.free'] = {TOTAL} - 1000 - {mib}\n"
            f"scene['apps'] = [{{'gpu_uuid': {UUID!r}, 'pid': os.getpid(), "
            f"'process_name': 'python', 'used_memory': {mib}}}] if {listed} and {mib} else []\n"
            "json.dump(scene, open(path + '.tmp', 'w'))\n"
            "os.replace(path + '.tmp', path)")


TORCH_LIKE = ("import sys, types\n"
              "torch = types.ModuleType('torch')\n"
              "torch.cuda = types.SimpleNamespace(is_initialized=lambda: True,\n"
              "    device_count=lambda: 1, max_memory_reserved=lambda d: 2048 * 2**20)\n"
              "sys.modules['torch'] = torch")


@pytest.fixture
def gpu_scene(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """One stand-in H200 with 1000 MiB used by others, no process listed."""
    return install(tmp_path / "smi", monkeypatch,
                   {"gpus": [gpu(0, free=TOTAL - 1000, total=TOTAL, uuid=UUID)], "apps": []})


@pytest.mark.parametrize("fork", ["yes", "no"])
@pytest.mark.parametrize("keeps", [True, False], ids=["kept-to-the-end", "freed-at-once"])
def test_a_short_2gib_allocation_is_seen(make_notebook: Callable[..., Path], gpu_scene: Path,
                                         fork: str, keeps: bool, no_kernel_left) -> None:
    this_tests(MemoryCallback.on_cell_end, MemoryCallback.before_kernel_stop)
    cells = [LOAD_DRIVER, holds(2048), "x = 1"] + ([] if keeps else [holds(0)])
    path = make_notebook("short.ipynb", cells)
    result = run_notebook(path, NbTestConfig.of(fork=fork, gpu_min_free="1GiB"),
                          [MemoryCallback()])
    assert result.passed
    assert result.extras["peak_gpu_mib"] == 2048
    assert result.extras["peak_gpu_source"] == DRIVER
    no_kernel_left()


def test_the_kernels_own_counters_where_the_driver_hides_its_pid(
        make_notebook: Callable[..., Path], gpu_scene: Path) -> None:
    """A container: the driver lists no process; torch's peak, written by the kernel, counts."""
    this_tests("nbtest.inkernel.gpu_peak.install", "nbtest.gpu.peak.read_peak")
    path = make_notebook("counters.ipynb", [TORCH_LIKE, holds(2600, listed=False), "y = 2"])
    result = run_notebook(path, NbTestConfig.of(gpu_min_free="1GiB"), [MemoryCallback()])
    assert result.passed
    assert (result.extras["peak_gpu_mib"], result.extras["peak_gpu_source"]) == (2048, FRAMEWORK)


def test_the_cards_delta_as_a_last_resort(make_notebook: Callable[..., Path], gpu_scene: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """No pid listed, no framework counter: the card's use above its use at kernel start."""
    this_tests("nbtest.callbacks.memory.gpu_look")
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)  # alone on the card
    path = make_notebook("delta.ipynb", [LOAD_DRIVER, holds(2048, listed=False), "z = 3"])
    result = run_notebook(path, NbTestConfig.of(gpu_min_free="1GiB"), [MemoryCallback()])
    assert (result.extras["peak_gpu_mib"], result.extras["peak_gpu_source"]) == \
        (2048, CARD_DELTA)


def test_no_cuda_no_gpu_figure(make_notebook: Callable[..., Path], gpu_scene: Path) -> None:
    this_tests(MemoryCallback.on_notebook_end)
    path = make_notebook("plain.ipynb", ["x = 1"])
    result = run_notebook(path, NbTestConfig.of(gpu_min_free="1GiB"), [MemoryCallback()])
    assert "peak_gpu_mib" not in result.extras


def test_reports_name_the_source(pytester: pytest.Pytester, gpu_scene: Path, run_cli,
                                 make_notebook: Callable[..., Path]) -> None:
    """--nbtest-mem-report and `nbtest execute` show the figure with where it came from."""
    this_tests("nbtest.plugin.reports.NotebookReports.pytest_terminal_summary",
               "nbtest.cli.cmd_execute")
    path = make_notebook(pytester.path / "short.ipynb", [LOAD_DRIVER, holds(2048), "x = 1"])
    result = run_pytest(pytester, "--nbtest", "--nbtest-mem-report", "--nbtest-gpu-min-free",
                        "1GiB", "-p", "no:cacheprovider")
    assert result.ret == 0, output(result)
    assert f"2048 ({DRIVER})" in output(result)
    json.loads(gpu_scene.read_text())  # the scene the kernel rewrote is still whole
    cli = run_cli("execute", path, "--no-progress", "--gpu-min-free", "1GiB")
    assert cli.returncode == 0, cli.stderr
    assert f"peak GPU 2048 MiB ({DRIVER})" in cli.stderr
