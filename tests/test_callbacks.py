"""Callbacks: the dispatcher, events of real runs, the progress and timing built-ins, and
`--callback MODULE:NAME` on the command line."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import struct
import subprocess
import termios
from pathlib import Path
from typing import Any

import nbformat
import pytest
from helpers.processes import NBTEST_CMD, cli_env

from nbtest import Callback, NbTestConfig, NotebookRun, run_notebook, this_tests
from nbtest.callback import Dispatcher
from nbtest.callbacks import ProgressCallback, TimingCallback
from nbtest.callbacks.timing import format_slowest
from nbtest.failure_text import failure_text
from nbtest.results import (
    CHECK_FAILED,
    DIED,
    FAILED,
    NOT_RUN,
    PASSED,
    SKIPPED,
    TIMEOUT,
    CellResult,
    NotebookResult,
)


class Recorder(Callback):
    """Keeps every event it receives, in order."""

    def __init__(self, name: str = "rec", order: int = 0, log: list | None = None) -> None:
        self.name, self.order = name, order
        self.events: list[tuple[Any, ...]] = [] if log is None else log

    def before_kernel_start(self, run: NotebookRun) -> None:
        run.kernel_env["FROM_CALLBACK"] = "yes"
        self.events.append((self.name, "before_kernel_start", run.kernel_pid))

    def on_notebook_start(self, run: NotebookRun) -> None:
        run.extras["seen_by"] = self.name
        self.events.append((self.name, "notebook_start", run.cells_to_run,
                            run.kernel_pid is not None))

    def on_cell_start(self, run: NotebookRun, number: int, source: str) -> None:
        self.events.append((self.name, "cell_start", number, source.splitlines()[0]))

    def on_cell_end(self, run: NotebookRun, result: CellResult) -> None:
        self.events.append((self.name, "cell_end", result.number, result.status))

    def on_error(self, run: NotebookRun, result: CellResult) -> None:
        self.events.append((self.name, "error", result.number, result.error_name))

    def on_timeout(self, run: NotebookRun, result: CellResult) -> None:
        self.events.append((self.name, "timeout", result.number))

    def on_notebook_end(self, run: NotebookRun, result: NotebookResult) -> None:
        self.events.append((self.name, "notebook_end", result.status))


def _run_info(cells_to_run: int = 2) -> NotebookRun:
    return NotebookRun(Path("nb.ipynb"), NbTestConfig(), nbformat.v4.new_notebook(),
                       cells_to_run)


def _cell(number: int, status: str, duration: float = 0.0) -> CellResult:
    return CellResult(number=number, index=number - 1, source=f"cell_{number}()", status=status,
                      duration=duration)


def test_dispatcher_order_and_error_events() -> None:
    this_tests(Dispatcher.cell_end, Callback.on_error, Callback.on_timeout)
    log: list = []
    late, early = Recorder("late", order=10, log=log), Recorder("early", order=-1, log=log)
    dispatcher = Dispatcher([late, early])
    run = _run_info()
    dispatcher.cell_end(run, _cell(1, FAILED))
    dispatcher.cell_end(run, _cell(2, DIED))
    dispatcher.cell_end(run, _cell(3, TIMEOUT))
    dispatcher.cell_end(run, _cell(4, PASSED))
    assert [e[:2] for e in log] == [
        ("early", "error"), ("early", "cell_end"), ("late", "error"), ("late", "cell_end"),
        ("early", "error"), ("early", "cell_end"), ("late", "error"), ("late", "cell_end"),
        ("early", "timeout"), ("early", "cell_end"), ("late", "timeout"), ("late", "cell_end"),
        ("early", "cell_end"), ("late", "cell_end"),
    ]


def test_base_callback_is_a_no_op() -> None:
    this_tests(Callback, Callback.check_cell)
    cb, run = Callback(), _run_info()
    cb.before_kernel_start(run)
    cb.on_notebook_start(run)
    cb.on_cell_start(run, 1, "x")
    assert cb.check_cell(run, nbformat.v4.new_code_cell("x"), _cell(1, PASSED)) is None
    cb.on_cell_end(run, _cell(1, PASSED))
    cb.on_notebook_end(run, NotebookResult("nb.ipynb", "passed", 0.0))
    assert run.extras == {} and run.kernel_env == {}


def test_events_of_a_real_run(make_notebook, no_kernel_left) -> None:
    this_tests(run_notebook, Callback, Dispatcher)
    path = make_notebook("events.ipynb", [
        ("markdown", "# events"),
        "import os\nprint(os.environ['FROM_CALLBACK'])",
        ("code", "never()", ["skip-execution"]),
        "1 / 0",
        "not_reached = 1",
    ])
    rec = Recorder()
    result = run_notebook(path, callbacks=[rec])
    assert result.status == "failed"
    assert rec.events == [
        ("rec", "before_kernel_start", None),
        ("rec", "notebook_start", 3, True),
        ("rec", "cell_start", 2, "import os"),
        ("rec", "cell_end", 2, PASSED),
        ("rec", "cell_start", 4, "1 / 0"),
        ("rec", "error", 4, "ZeroDivisionError"),
        ("rec", "cell_end", 4, FAILED),
        ("rec", "notebook_end", "failed"),
    ]
    assert result.cells[0].output_tail == "yes"  # before_kernel_start reached the kernel
    assert result.extras["seen_by"] == "rec"
    no_kernel_left()


def test_timeout_event_progress_and_timing_in_one_run(make_notebook, no_kernel_left) -> None:
    this_tests(run_notebook, Callback.on_timeout, TimingCallback, ProgressCallback)
    path = make_notebook("slow.ipynb", [
        "import time\ntime.sleep(0.3)",
        "print('quick')",
        "time.sleep(60)",
    ], metadata={"nbtest": {"timeout": 1.5}})
    rec, timing = Recorder(), TimingCallback(slowest=2)
    stream = io.StringIO()
    result = run_notebook(path, callbacks=[rec, timing, ProgressCallback(stream, force=True)])
    assert [e[1:] for e in rec.events if e[1] in ("timeout", "error")] == [("timeout", 3)]
    assert rec.events[-2] == ("rec", "cell_end", 3, TIMEOUT)
    assert set(result.extras["timings"]) == {1, 2, 3}
    slowest = result.extras["slowest"]
    assert [number for number, _ in slowest] == [3, 1]
    assert slowest[0][1] >= 1.5 > slowest[1][1] >= 0.3
    shown = stream.getvalue()
    assert "slow.ipynb" in shown and "0/3" in shown
    assert "cell 3: time.sleep(60)" in shown  # the running cell is shown before it times out
    no_kernel_left()


class FailsOnBad(Callback):
    """Fails a passing cell whose output says BAD (what output checks build on)."""

    def check_cell(self, run: NotebookRun, cell: Any, result: CellResult) -> str | None:
        if "BAD" in result.output_tail:
            return "output says BAD\nthe whole story"
        return None


def test_check_cell_fails_a_passing_cell_and_progress_is_silent_off_a_terminal(
        make_notebook) -> None:
    this_tests(Callback.check_cell, run_notebook, ProgressCallback)
    path = make_notebook("check.ipynb", ["print('good')", "print('BAD')", "after = 1"])
    stream = io.StringIO()
    result = run_notebook(path, callbacks=[FailsOnBad(), ProgressCallback(stream)])
    assert [c.status for c in result.cells] == [PASSED, FAILED, NOT_RUN]
    assert result.cells[1].error_name == CHECK_FAILED
    assert failure_text(result).splitlines()[0] == "cell 2: output says BAD"
    assert stream.getvalue() == ""


def test_progress_callback_driven_by_hand() -> None:
    this_tests(ProgressCallback)
    run = _run_info(2)
    quiet = ProgressCallback(io.StringIO())
    assert not quiet.enabled
    stream = io.StringIO()
    progress = ProgressCallback(stream, force=True)
    progress.on_notebook_start(run)
    progress.on_cell_start(run, 3, "\n  import os  \nx = 1")
    progress.on_cell_end(run, _cell(3, PASSED))
    progress.on_cell_start(run, 5, "y" * 100)
    progress.on_cell_end(run, _cell(5, PASSED))
    progress.on_notebook_end(run, NotebookResult("nb.ipynb", "passed", 0.1))
    shown = stream.getvalue()
    # tqdm redraws at most every 0.1 s, so which counts show depends on speed: not checked.
    assert "nb.ipynb" in shown and "0/2" in shown and "cell 3: import os" in shown
    assert "cell 5: " + "y" * 40 in shown and "y" * 41 not in shown
    assert progress.bar is None


def test_timing_callback_driven_by_hand() -> None:
    this_tests(TimingCallback, format_slowest)
    run, timing = _run_info(4), TimingCallback()
    timing.on_notebook_start(run)
    for number, status, seconds in [(1, PASSED, 0.2), (2, SKIPPED, 0.0), (3, FAILED, 1.5),
                                    (4, PASSED, 0.7), (5, PASSED, 0.1), (6, NOT_RUN, 0.0)]:
        timing.on_cell_end(run, _cell(number, status, seconds))
    result = NotebookResult("nb.ipynb", "failed", 3.0)
    timing.on_notebook_end(run, result)
    assert result.extras["timings"] == {1: 0.2, 3: 1.5, 4: 0.7, 5: 0.1}
    assert result.extras["slowest"] == [(3, 1.5), (4, 0.7), (1, 0.2)]
    assert format_slowest(result.extras["slowest"]) == "cell 3 1.50s, cell 4 0.70s, cell 1 0.20s"
    timing.on_notebook_start(run)
    assert timing.timings == {}  # a fresh table per notebook


@pytest.mark.parametrize(("spec", "says"), [
    ("no_colon", "write MODULE:NAME"),
    ("os:path", "is not an nbtest.Callback"),
    ("nbtest.callbacks:Nope", "cannot load it"),
])
def test_bad_callback_option_exits_2(make_notebook, run_cli, spec: str, says: str) -> None:
    this_tests("nbtest.callback.load_callback", "nbtest.cli.cmd_execute")
    path = make_notebook("nb.ipynb", ["x = 1"])
    proc = run_cli("execute", path, "--callback", spec, "--no-progress")
    assert proc.returncode == 2
    assert says in proc.stderr and "Traceback" not in proc.stderr


def test_builtin_callback_by_name_on_the_command_line(make_notebook, run_cli) -> None:
    this_tests("nbtest.callback.load_callback", "nbtest.cli.cmd_execute", TimingCallback)
    path = make_notebook("nb.ipynb", ["x = 1"])
    proc = run_cli("execute", path, "--callback", "nbtest.callbacks:TimingCallback",
                   "--no-progress")
    assert proc.returncode == 0, proc.stderr


def test_progress_bar_on_a_terminal(make_notebook, tmp_path: Path, no_kernel_left) -> None:
    this_tests(ProgressCallback, "nbtest.cli.cmd_execute")
    path = make_notebook("tty.ipynb", ["x = 1", "import time\ntime.sleep(0.2)", "print(x)"])
    primary, secondary = pty.openpty()
    # A new pty has 0 columns, and tqdm draws nothing that narrow: give it a real size.
    fcntl.ioctl(secondary, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))
    proc = subprocess.Popen([*NBTEST_CMD, "execute", str(path)], cwd=tmp_path, env=cli_env(),
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=secondary)
    os.close(secondary)
    chunks = []
    while True:
        try:
            data = os.read(primary, 4096)
        except OSError:  # EIO: every writer has closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(primary)
    assert proc.wait(timeout=60) == 0
    shown = b"".join(chunks).decode(errors="replace")
    assert "cell 2: import time" in shown and "tty.ipynb" in shown and "\r" in shown
    assert "nbtest: passed" in shown
    no_kernel_left()
