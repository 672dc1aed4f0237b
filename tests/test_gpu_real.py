"""On a real NVIDIA GPU: what the stand-in nvidia-smi checks elsewhere, against the real driver.

Collected everywhere, run only where a card is visible through the real driver (NVML or the
real nvidia-smi) and torch can use it; skipped with the reason elsewhere. Run them with
`make test-gpu`. Memory is taken with plain torch allocations (never managed memory), never
more than the card has free, and given back when each test ends.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers.pytest_sessions import output, run_pytest

from nbtest import NbTestConfig, run_notebook, this_tests
from nbtest.callbacks.memory import MemoryCallback
from nbtest.gpu.probe import probe

pytest_plugins = ["pytester"]
GIB = 2**30


def _real_gpu() -> str | None:
    """Why the real-GPU tests cannot run here, or None when they can."""
    if os.environ.get("NBTEST_GPU_BACKEND") or os.environ.get("NBTEST_FAKE_SMI_SCENE"):
        return "the GPU probe is forced or faked in this environment"
    seen = probe()
    if not seen.gpus:
        return f"no GPU visible ({'; '.join(seen.reasons) or 'no NVIDIA driver answered'})"
    try:
        import torch
    except ImportError:
        return "torch is not installed"
    if not torch.cuda.is_available():
        return "torch sees no CUDA device"
    return None


WHY_NOT = _real_gpu()
pytestmark = [pytest.mark.gpu, pytest.mark.skipif(WHY_NOT is not None, reason=WHY_NOT or "")]


def free_mib(backend: str) -> int:
    """Free MiB of the first visible card, as `backend` (nvml or smi) reads it."""
    return probe(backend).gpus[0].free_mib


@pytest.fixture
def hog(tmp_path: Path) -> Iterator[Callable[[int], subprocess.Popen]]:
    """`hog(leave_mib)`: a process holding all but `leave_mib` of the card's free memory."""
    started: list[subprocess.Popen] = []

    def start(leave_mib: int) -> subprocess.Popen:
        take = max(free_mib("nvml" if _has_nvml() else "smi") - leave_mib, 0)
        ready = tmp_path / "hog-ready"
        code = textwrap.dedent(f"""
            import pathlib, time, torch
            block = torch.empty({take} * 2**20, dtype=torch.uint8, device="cuda")
            torch.cuda.synchronize()
            pathlib.Path({str(ready)!r}).write_text("ok")
            time.sleep(600)
            """)
        proc = subprocess.Popen([sys.executable, "-c", code])
        started.append(proc)
        for _ in range(600):
            if ready.exists() or proc.poll() is not None:
                break
            subprocess.run(["sleep", "0.1"])
        assert ready.exists(), "the memory holder did not start"
        return proc

    yield start
    for proc in started:
        proc.kill()
        proc.wait()


def _has_nvml() -> bool:
    try:
        return bool(probe("nvml").gpus)
    except Exception:
        return False


def test_nvml_and_nvidia_smi_agree_on_free_memory() -> None:
    this_tests("nbtest.gpu.probe.probe", "nbtest.gpu.nvidia.read_nvml",
               "nbtest.gpu.nvidia.read_smi")
    if not _has_nvml() or shutil.which("nvidia-smi") is None:
        pytest.skip("needs both NVML and nvidia-smi")
    nvml, smi = free_mib("nvml"), free_mib("smi")
    assert abs(nvml - smi) <= 256, (nvml, smi)  # other processes may move a little between


def test_a_busy_card_is_refused_everywhere(hog: Callable[[int], subprocess.Popen],
                                           pytester: pytest.Pytester, run_cli,
                                           make_notebook: Callable[..., Path]) -> None:
    """All but 4 GiB held: preflight refuses naming the holder, pytest exits 6 before any
    notebook runs, `nbtest execute` exits 3, and a requirement of 0 runs anyway."""
    this_tests("nbtest.gpu.probe.preflight", "nbtest.plugin.preflight.run_preflight")
    holder = hog(4096)
    pre = run_cli("preflight")
    assert pre.returncode == 3, pre.stdout + pre.stderr
    assert str(holder.pid) in pre.stdout + pre.stderr
    ran = pytester.path / "ran.txt"
    make_notebook(pytester.path / "a.ipynb", [f"open({str(ran)!r}, 'w').write('ran')"])
    refused = run_pytest(pytester, "--nbtest", "-p", "no:cacheprovider")
    assert refused.ret == 6, output(refused)
    assert not ran.exists()
    cli = run_cli("execute", pytester.path / "a.ipynb", "--no-progress")
    assert cli.returncode == 3 and not ran.exists()
    allowed = run_pytest(pytester, "--nbtest", "--nbtest-gpu-min-free", "0", "-p",
                         "no:cacheprovider")
    assert allowed.ret == 0, output(allowed)
    assert ran.exists()


ALLOCATE = ("import torch\nblock = torch.empty(2 * 2**30, dtype=torch.uint8, device='cuda')\n"
            "torch.cuda.synchronize()")


@pytest.mark.parametrize("fork", ["yes", "no"])
@pytest.mark.parametrize("long", [False, True], ids=["short", "long"])
def test_a_2gib_tensor_is_reported_between_2_and_4_gib(make_notebook: Callable[..., Path],
                                                       fork: str, long: bool,
                                                       no_kernel_left) -> None:
    this_tests(MemoryCallback.on_cell_end, MemoryCallback.before_kernel_stop)
    cells = ["import torch", ALLOCATE, "float(block.sum())"]
    if long:
        cells.append("import time\ntime.sleep(3)")
    path = make_notebook("two_gib.ipynb", cells)
    result = run_notebook(path, NbTestConfig.of(fork=fork), [MemoryCallback()])
    assert result.passed
    peak = result.extras["peak_gpu_mib"]
    assert 2048 <= peak <= 4096, (peak, result.extras.get("peak_gpu_source"))
    assert result.extras["gpu_memory_returned"], result.extras.get("gpu_memory_left")
    no_kernel_left()


def test_cuda_visible_devices_reaches_the_kernel(make_notebook: Callable[..., Path],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    this_tests("nbtest.gpu.probe.kernel_gpu_env")
    first = probe().gpus[0]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", str(first.physical_index))
    path = make_notebook("visible.ipynb", [
        "import os, torch\n"
        f"assert os.environ['CUDA_VISIBLE_DEVICES'] == '{first.physical_index}'\n"
        "assert torch.cuda.device_count() == 1"])
    assert run_notebook(path).passed
