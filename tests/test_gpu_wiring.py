"""The GPU preflight and pinning through the real faces: `nbtest preflight`, `nbtest execute`
and `pytest --nbtest` (also under xdist), each a real process that finds the stand-in nvidia-smi
on PATH (tests/helpers/fake_nvidia_smi.py) and runs real kernels.

Scenes: a busy card (4000 MiB free of 80 GiB, 77000 MiB held by a live process whose command
line names ipykernel_launcher, so it is flagged as a Jupyter kernel), a free card, two cards
(2000 and 30000 MiB free), and `CUDA_VISIBLE_DEVICES=""`. Notebooks that would run leave a
file behind (`ran-<name>.txt`), so "nothing ran" is checked on disk, not only in the output.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers.fake_nvidia_smi import app, gpu, install
from helpers.notebooks import cell_text, read_notebook
from helpers.pytest_sessions import junit_outcomes, output, run_pytest

from nbtest import this_tests
from nbtest.plugin.preflight import PREFLIGHT_EXIT

pytest_plugins = ["pytester"]

BUSY_UUID = "GPU-5b0f0d6c-1111-2222-3333-444455556666"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("CUDA_VISIBLE_DEVICES", "PYTEST_XDIST_WORKER", "NBTEST_GPU_BACKEND"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("PYTEST_ADDOPTS", "-p no:randomly")  # only that (see conftest)


@pytest.fixture
def busy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
         kernel_holder: subprocess.Popen) -> int:
    """The busy card on PATH; returns the holder's pid."""
    install(tmp_path / "smi", monkeypatch, {
        "gpus": [gpu(0, free=4000, total=81920, uuid=BUSY_UUID)],
        "apps": [app(kernel_holder.pid, 77000, BUSY_UUID)]})
    return kernel_holder.pid


def two_cards(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two cards on PATH: 2000 and 30000 MiB free."""
    install(folder / "smi", monkeypatch, {"gpus": [gpu(0, free=2000, total=40960),
                                                   gpu(1, free=30000, total=40960)]})


def side_effect(name: str) -> str:
    """A cell that leaves `ran-<name>.txt` in the notebook's folder."""
    return f"open('ran-{name}.txt', 'w').write('ran')"


def assert_refusal(text: str, holder_pid: int) -> None:
    """The preflight's refusal: free memory, the holder (a Jupyter kernel), the advice."""
    assert "refused to run" in text
    assert "4000 MiB free of 81920 MiB" in text
    assert f"pid {holder_pid}" in text and "(Jupyter kernel)" in text
    assert "shut down idle Jupyter kernels" in text


# --- nbtest preflight ----------------------------------------------------------------------


def test_preflight_command_busy_card(busy: int, run_cli: Callable[..., Any]) -> None:
    this_tests("nbtest.gpu.cmd.run", "nbtest.gpu.probe.format_report")
    refused = run_cli("preflight")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert_refusal(refused.stdout, busy)
    assert "nbtest preflight --min-free 2GiB" in refused.stdout
    lowered = run_cli("preflight", "--min-free", "2GiB")
    assert lowered.returncode == 0, lowered.stdout + lowered.stderr
    assert "GPU preflight passed" in lowered.stdout and f"pid {busy}" in lowered.stdout


def test_preflight_command_free_card_and_no_gpu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                run_cli: Callable[..., Any]) -> None:
    this_tests("nbtest.gpu.cmd.run", "nbtest.gpu.probe.judge")
    install(tmp_path / "smi", monkeypatch, {"gpus": [gpu(0, free=80000)], "apps": []})
    free = run_cli("preflight")
    assert free.returncode == 0, free.stdout + free.stderr
    assert "GPU 0 has 80000 MiB free" in free.stdout
    hidden = run_cli("preflight", env={"CUDA_VISIBLE_DEVICES": ""})
    assert hidden.returncode == 0, hidden.stdout + hidden.stderr
    assert "no GPU" in hidden.stdout and hidden.stdout.count("\n") == 1


# --- nbtest execute ------------------------------------------------------------------------


def test_execute_busy_card_exits_3_and_runs_nothing(busy: int, tmp_path: Path,
                                                    make_notebook: Callable[..., Path],
                                                    run_cli: Callable[..., Any]) -> None:
    this_tests("nbtest.cli.cmd_execute", "nbtest.gpu.probe.check_preflight")
    path = make_notebook("nb.ipynb", [side_effect("nb")])
    refused = run_cli("execute", path, "--no-progress")
    assert refused.returncode == 3, refused.stderr
    assert_refusal(refused.stderr, busy)
    assert "Traceback" not in refused.stderr
    assert not (tmp_path / "ran-nb.txt").exists()
    assert not (tmp_path / "nb.executed.ipynb").exists()
    # The requirement is what stopped it: lowered, the same notebook runs.
    lowered = run_cli("execute", path, "--no-progress", "--gpu-min-free", "2GiB")
    assert lowered.returncode == 0, lowered.stderr
    assert (tmp_path / "ran-nb.txt").exists()


def test_execute_two_cards_pins_the_kernel_to_the_freer(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        make_notebook: Callable[..., Path],
                                                        run_cli: Callable[..., Any]) -> None:
    this_tests("nbtest.cli.cmd_execute", "nbtest.gpu.probe.kernel_gpu_env")
    two_cards(tmp_path, monkeypatch)
    path = make_notebook("nb.ipynb", ["import os\nprint(os.environ['CUDA_VISIBLE_DEVICES'])"])
    for fork in ("no", "yes"):
        proc = run_cli("execute", path, "--no-progress", "--fork", fork)
        assert proc.returncode == 0, proc.stderr
        assert cell_text(read_notebook(tmp_path / "nb.executed.ipynb").cells[0]) == "1\n"


# --- pytest --nbtest -----------------------------------------------------------------------


@pytest.fixture
def nb(pytester: pytest.Pytester, make_notebook: Callable[..., Path]) -> Callable[..., Path]:
    """`nb(name, cells=None, **metadata)`: a notebook in the pytester folder that leaves
    `ran-<stem>.txt` behind when it runs."""

    def make(name: str, cells: list[Any] | None = None, **metadata: Any) -> Path:
        stem = Path(name).stem
        return make_notebook(pytester.path / name, [side_effect(stem), *(cells or ())],
                             metadata or None)

    return make


def ran(pytester: pytest.Pytester) -> list[str]:
    """Which notebooks ran, by the files they left."""
    return sorted(p.name[len("ran-"):-len(".txt")] for p in pytester.path.glob("ran-*.txt"))


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_pytest_busy_card_stops_before_any_notebook(busy: int, pytester: pytest.Pytester,
                                                    nb: Callable[..., Path],
                                                    xdist: list[str]) -> None:
    this_tests("nbtest.plugin.preflight.run_preflight", "nbtest.plugin.preflight.XdistPreflight."
               "pytest_xdist_node_collection_finished")
    nb("a.ipynb")
    nb("b.ipynb")
    result = run_pytest(pytester, "--nbtest", "-p", "no:cacheprovider", *xdist)
    text = output(result)
    assert result.ret == PREFLIGHT_EXIT == 6, text
    assert_refusal(text, busy)
    assert "--nbtest-gpu-min-free 2GiB" in text
    assert ran(pytester) == []
    assert " passed" not in text and " failed" not in text


@pytest.mark.parametrize("xdist", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_pytest_lowered_requirement_runs(busy: int, pytester: pytest.Pytester,
                                         nb: Callable[..., Path], xdist: list[str]) -> None:
    this_tests("nbtest.plugin.preflight.run_preflight",
               "nbtest.plugin.preflight.XdistPreflight.pytest_xdist_node_collection_finished")
    nb("a.ipynb")
    nb("b.ipynb", nbtest={"gpu_min_free": "2GiB"})
    # One notebook's own, lower requirement does not lift the session's for the others...
    refused = run_pytest(pytester, "--nbtest", "-p", "no:cacheprovider", *xdist)
    assert refused.ret == PREFLIGHT_EXIT and ran(pytester) == []
    # ...the command line does; and the workers' controller reads each notebook's metadata.
    result = run_pytest(pytester, "--nbtest", "-p", "no:cacheprovider",
                        "--nbtest-gpu-min-free", "2GiB", *xdist)
    result.assert_outcomes(passed=2)
    assert ran(pytester) == ["a", "b"]


@pytest.mark.parametrize("case", ["all-skipped", "no-notebook"])
def test_sessions_running_no_notebook_never_preflight(busy: int, pytester: pytest.Pytester,
                                                      nb: Callable[..., Path],
                                                      case: str) -> None:
    this_tests("nbtest.plugin.preflight.run_preflight")
    if case == "all-skipped":
        nb("a.ipynb", nbtest={"skip": "not today"})
        nb("b.ipynb", nbtest={"markers": ["slow"]})
        expected = {"skipped": 2}
    else:
        pytester.makepyfile(test_plain="def test_plain():\n    assert True\n")
        expected = {"passed": 1}
    result = run_pytest(pytester, "--nbtest", "-p", "no:cacheprovider")
    result.assert_outcomes(**expected)
    assert result.ret == 0
    assert "refused to run" not in output(result) and ran(pytester) == []


def test_all_skipped_session_under_xdist_never_preflights(busy: int, pytester: pytest.Pytester,
                                                          nb: Callable[..., Path]) -> None:
    this_tests("nbtest.plugin.preflight.XdistPreflight.pytest_xdist_node_collection_finished")
    nb("a.ipynb", nbtest={"skip": "not today"})
    nb("b.ipynb", nbtest={"markers": ["slow"]})
    result = run_pytest(pytester, "--nbtest", "-p", "no:cacheprovider", "-n", "2")
    assert "refused to run" not in output(result)
    assert result.ret == 0, output(result)
    result.assert_outcomes(skipped=2)


def test_pytest_free_card_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                               pytester: pytest.Pytester, nb: Callable[..., Path]) -> None:
    this_tests("nbtest.plugin.preflight.run_preflight")
    install(tmp_path / "smi", monkeypatch, {"gpus": [gpu(0, free=80000)], "apps": []})
    nb("a.ipynb")
    result = run_pytest(pytester, "--nbtest", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert ran(pytester) == ["a"]


def test_no_gpu_runs_on_the_cpu_and_skips_cuda_notebooks(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, pytester: pytest.Pytester,
        nb: Callable[..., Path]) -> None:
    """`CUDA_VISIBLE_DEVICES=""` hides both cards: one line says so, the plain notebook runs,
    the `cuda`-marked one is skipped with "CUDA is not available"."""
    this_tests("nbtest.plugin.preflight.run_preflight", "nbtest.gpu.probe.cuda_available",
               "nbtest.plugin.pytest_collection_modifyitems")
    two_cards(tmp_path, monkeypatch)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    nb("plain.ipynb", ["import os\nassert os.environ['CUDA_VISIBLE_DEVICES'] == ''"])
    nb("needs_gpu.ipynb", nbtest={"markers": ["cuda"]})
    result = run_pytest(pytester, "--nbtest", "-p", "no:cacheprovider", "-rs",
                        "--junitxml=out.xml")
    result.assert_outcomes(passed=1, skipped=1)
    result.stdout.fnmatch_lines(["nbtest: no GPU visible*",
                                 "SKIPPED [[]1[]] needs_gpu.ipynb*: CUDA is not available"],
                                consecutive=False)
    assert junit_outcomes(pytester.path / "out.xml") == {"plain.ipynb": "passed",
                                                         "needs_gpu.ipynb": "skipped"}
    assert ran(pytester) == ["plain"]


def test_pytest_two_cards_pins_each_kernel_to_the_freer(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        pytester: pytest.Pytester,
                                                        nb: Callable[..., Path]) -> None:
    """Also a `cuda`-marked notebook runs (CUDA is available), and a pre-warmed kernel gets the
    pinning too: both notebooks see CUDA_VISIBLE_DEVICES=1."""
    this_tests("nbtest.gpu.probe.kernel_gpu_env", "nbtest.execute.NotebookSession.launch")
    two_cards(tmp_path, monkeypatch)
    check = ("import os\nassert os.environ['CUDA_VISIBLE_DEVICES'] == '1', "
             "os.environ.get('CUDA_VISIBLE_DEVICES')\n"
             "assert os.environ['CUDA_DEVICE_ORDER'] == 'PCI_BUS_ID'")
    nb("a.ipynb", [check])
    nb("b.ipynb", [check], nbtest={"markers": ["cuda"]})
    result = run_pytest(pytester, "--nbtest", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    assert ran(pytester) == ["a", "b"]


def test_mem_max_exceeded_fails_with_the_figure_and_mem_report_lists_it(
        pytester: pytest.Pytester, nb: Callable[..., Path]) -> None:
    this_tests("nbtest.callbacks.memory.MemoryCallback", "nbtest.execute.NotebookSession.finish",
               "nbtest.plugin.reports.NotebookReports.pytest_terminal_summary")
    nb("big.ipynb", ["data = b'x' * (300 * 2**20)\nlen(data)"], nbtest={"mem_max": "150MiB"})
    nb("small.ipynb", ["x = 1"])
    result = run_pytest(pytester, "--nbtest", "-p", "no:cacheprovider", "-ra",
                        "--nbtest-mem-report", "--nbtest-gpu-min-free", "0")
    result.assert_outcomes(passed=1, failed=1)
    text = result.stdout.str()
    # The short summary line (cut to the terminal's width) and the report in full: the cap
    # stops the kernel while cell 2 runs, so the figure is the first one seen over 150 MiB.
    assert any(line.startswith("FAILED big.ipynb - cell 2: kernel killed by nbtest: peak RSS ")
               for line in result.stdout.lines), text
    reports = [line for line in result.stdout.lines
               if line.startswith("cell 2: kernel killed by nbtest: peak RSS ")]
    assert len(reports) == 1 and " MiB exceeds mem_max 150 MiB" in reports[0], text
    figure = float(reports[0].split("peak RSS ")[1].split(" MiB")[0])
    assert figure > 150
    assert "nbtest memory report" in text
    rows = {row.split()[0]: row.split() for row in result.stdout.lines
            if row.startswith(("big.ipynb ", "small.ipynb "))}
    assert set(rows) == {"big.ipynb", "small.ipynb"}, text
    assert float(rows["big.ipynb"][2]) > 150 > float(rows["small.ipynb"][2])
