"""Messages a new user meets: input() in a cell, where a timed-out cell was stuck, a notebook
whose cells repeat a tag. Real kernels, real notebooks.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from helpers.fake_nvidia_smi import gpu, install
from helpers.forks import FORK
from helpers.pytest_sessions import output, run_pytest

from nbtest import this_tests
from nbtest.config import NbTestConfig
from nbtest.execute import run_notebook
from nbtest.failure_text import failure_text
from nbtest.plugin.preflight import PREFLIGHT_EXIT
from nbtest.results import NOT_RUN, PASSED, TIMEOUT

pytest_plugins = ["pytester"]


def test_input_in_a_cell_says_notebooks_run_without_stdin(
        make_notebook: Callable[..., Path], run_cli: Callable[..., object],
        no_kernel_left: Callable[[], None]) -> None:
    this_tests("nbtest.failure_text.headline", "nbtest.failure_text.cell_failure_text",
               "nbtest.cli.cmd_execute")
    path = make_notebook("ask.ipynb", ["x = 1", "name = input('name? ')\nprint(name)"])
    proc = run_cli("execute", path, "--no-progress")
    assert proc.returncode == 1, proc.stderr
    report = proc.stderr.split("\n\n", 1)[1]
    first = report.splitlines()[0]
    assert first.startswith("cell 2: input() asks for stdin, but notebooks run without it: "
                            "give the value as a parameter"), report
    assert "-->   1 | name = input('name? ')" in report
    assert "ipykernel" not in report and "StdinNotImplementedError" not in report, report
    assert len(report.strip().splitlines()) <= 5, report
    no_kernel_left()


@pytest.mark.parametrize("config", [NbTestConfig.of(fork="no", timeout=2),
                                    FORK.with_explicit(timeout=2)], ids=["spawned", "forked"])
def test_timeout_shows_the_line_the_cell_was_stuck_on(
        make_notebook: Callable[..., Path], no_kernel_left: Callable[[], None],
        config: NbTestConfig) -> None:
    this_tests("nbtest.execute.NotebookSession.run_cell", "nbtest.failure_text.failure_text",
               "nbtest.failure_text.failing_line")
    path = make_notebook("stuck.ipynb", [
        "def wait():\n    import time\n    time.sleep(600)",
        "a = 1\nb = 2\nwait()\nc = 3",
        "never = 1",
    ])
    result = run_notebook(path, config)
    assert [c.status for c in result.cells] == [PASSED, TIMEOUT, NOT_RUN]
    text = failure_text(result)
    assert text.splitlines()[0].startswith("cell 2: timed out after "), text
    assert "-->   3 | wait()" in text, text
    assert "KeyboardInterrupt" in text
    no_kernel_left()


def test_timeout_of_a_cell_ignoring_sigint_still_reports(
        make_notebook: Callable[..., Path], no_kernel_left: Callable[[], None]) -> None:
    this_tests("nbtest.execute.NotebookSession.run_cell", "nbtest.failure_text.failure_text")
    path = make_notebook("spin.ipynb", [
        "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass"])
    result = run_notebook(path, NbTestConfig.of(fork="no", timeout=2))
    assert [c.status for c in result.cells] == [TIMEOUT]
    assert result.cells[0].traceback == ()
    assert failure_text(result).splitlines()[0].startswith("cell 1: timed out after ")
    no_kernel_left()


@pytest.mark.parametrize("flags", [["-q"], ["-qq"], [], ["-n", "2", "-q"]],
                         ids=["q", "qq", "default", "xdist-q"])
def test_preflight_refusal_is_printed_cleanly_in_every_verbosity(
        pytester: pytest.Pytester, make_notebook: Callable[..., Path],
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, flags: list[str]) -> None:
    this_tests("nbtest.plugin.preflight.run_preflight",
               "nbtest.plugin.stop._Refusal.pytest_keyboard_interrupt")
    for var in ("CUDA_VISIBLE_DEVICES", "PYTEST_XDIST_WORKER"):
        monkeypatch.delenv(var, raising=False)
    install(tmp_path / "smi", monkeypatch, {"gpus": [gpu(0, free=4000, total=81920)]})
    make_notebook(pytester.path / "a.ipynb", ["open('ran.txt', 'w').write('ran')"])
    result = run_pytest(pytester, "--nbtest", "-p", "no:cacheprovider", *flags)
    text = output(result)
    assert result.ret == PREFLIGHT_EXIT, text
    assert "_pytest.outcomes.Exit" not in text and "Exit:" not in text, text
    lines = text.splitlines()
    starts = [n for n, line in enumerate(lines)
              if line.startswith("nbtest: GPU preflight refused to run: GPU 0 has only 4000 MiB")]
    assert len(starts) == 1, text
    assert lines[starts[0] + 1].startswith("  GPU 0: "), text
    assert "nbtest preflight --min-free" in text
    assert not (pytester.path / "ran.txt").exists()
