"""The end of a kernel's stop in the background (nbtest/kernel/reaper.py): a kill that does not
wait still leaves no process and no private folder once settled, and every face settles: a
run_notebook call before it returns, a pytest session before it ends."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from helpers.processes import pid_gone
from helpers.pytest_sessions import run_pytest
from jupyter_core.utils import run_sync

from nbtest import this_tests
from nbtest.callback import Callback, NotebookRun
from nbtest.config import NbTestConfig
from nbtest.execute import NotebookSession, plan_notebook, run_notebook
from nbtest.kernel import reaper
from nbtest.kernel.launch import Kernel, start_kernel

pytest_plugins = ["pytester"]

# A cell that starts two children, one in a session of its own (out of the kernel's process
# group), and prints the kernel's private folder and the children's pids.
CHILDREN = """
import os, subprocess
from ipykernel.connect import get_connection_file
same = subprocess.Popen(["sleep", "600"])
away = subprocess.Popen(["sleep", "601"], start_new_session=True)
print(os.path.dirname(get_connection_file()), os.getpid(), same.pid, away.pid)
"""


def _stdout(kernel: Kernel, code: str) -> str:
    out: list[str] = []
    reply = run_sync(kernel.kc.execute_interactive)(
        code, timeout=30, output_hook=lambda msg: out.append(msg["content"].get("text", "")))
    assert reply["content"]["status"] == "ok", reply["content"]
    return "".join(out)


@pytest.mark.parametrize("fork", ["yes", "no"])
def test_kill_without_waiting_leaves_nothing_once_settled(tmp_path: Path, fork: str,
                                                          no_kernel_left) -> None:
    this_tests("nbtest.kernel.launch.Kernel.kill", reaper.later, reaper.settle, reaper.reap)
    kernel = run_sync(start_kernel)("python3", tmp_path, {}, 60, fork=fork)
    folder, pid, same, away = _stdout(kernel, CHILDREN).split()
    assert folder == kernel.folder and int(pid) == kernel.pid
    kernel.kill(wait=False)
    assert reaper.settle(timeout=30)
    assert not Path(folder).exists()
    assert all(pid_gone(int(p), timeout=0) for p in (pid, same, away))
    assert kernel.exit_status() is not None  # reaped: no zombie of ours
    kernel.kill(wait=False)  # a second kill is harmless
    assert reaper.pending() == 0
    no_kernel_left()


def test_run_notebook_returns_with_its_kernel_gone(make_notebook: Callable[..., Path],
                                                   no_kernel_left) -> None:
    """The API's promise is unchanged: when run_notebook returns, nothing of the kernel is."""
    this_tests(run_notebook, "nbtest.kernel.notebook_kernel.NotebookKernel.stop", reaper.settle)
    path = make_notebook("children.ipynb", [CHILDREN])
    result = run_notebook(path, NbTestConfig.of(fork="yes"))
    assert result.passed
    folder, *pids = result.cells[0].output_tail.split()
    assert not Path(folder).exists()
    assert all(pid_gone(int(p), timeout=0) for p in pids)
    no_kernel_left()


# Runs once the session is over (after nbtest's session-finish clean-up): which of the
# kernels' private folders, written by the notebooks, still exist.
CONFTEST_FOLDERS = """
import json, os, pathlib

def pytest_unconfigure(config):
    folders = [json.loads(p.read_text())["folder"] for p in pathlib.Path.cwd().glob("*.seen")]
    with open("left_at_end.json", "w") as fh:
        json.dump({"folders": folders, "left": [f for f in folders if os.path.exists(f)]}, fh)
"""

# Each notebook's cell: which processes of the notebook before it (its kernel and a child in a
# session of its own) are still running, then its own folder and processes for the next one.
LOOK_BACK = """
import json, os, pathlib, psutil, subprocess
from ipykernel.connect import get_connection_file
def running(pid):
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
before = sorted(pathlib.Path.cwd().glob("*.seen"))
pids = json.loads(before[-1].read_text())["pids"] if before else []
away = subprocess.Popen(["sleep", "600"], start_new_session=True)
pathlib.Path("{name}.seen").write_text(json.dumps({{
    "folder": os.path.dirname(get_connection_file()), "pids": [os.getpid(), away.pid],
    "running_before": [p for p in pids if running(p)]}}))
"""


def test_each_kernel_is_gone_before_the_next_notebooks_cells_and_its_folder_by_the_end(
        pytester: pytest.Pytester, pytester_notebook: Callable[..., Path]) -> None:
    """Stopping a kernel waits for nothing, but the next notebook's first cell waits for it."""
    this_tests("nbtest.kernel.notebook_kernel.NotebookKernel.start",
               "nbtest.plugin.pytest_sessionfinish",
               reaper.settle)
    pytester.makeconftest(CONFTEST_FOLDERS)
    for name in "abc":
        pytester_notebook(f"{name}.ipynb", [LOOK_BACK.format(name=name)])
    result = run_pytest(pytester, "--nbtest", "-p", "no:cacheprovider", "-p", "no:randomly")
    result.assert_outcomes(passed=3)
    seen = {n: json.loads((pytester.path / f"{n}.seen").read_text()) for n in "abc"}
    assert [seen[n]["running_before"] for n in "abc"] == [[], [], []]
    assert all(pid_gone(pid) for n in "abc" for pid in seen[n]["pids"])
    left = json.loads((pytester.path / "left_at_end.json").read_text())
    assert len(left["folders"]) == 3 and left["left"] == []


def test_a_notebook_starts_once_the_kernels_stopped_before_have_exited(
        make_notebook: Callable[..., Path], no_kernel_left) -> None:
    """A stop still being finished (here a job held for 0.5 s) delays the next notebook's
    start until it is done: notebook-start goes out once nothing is pending."""
    this_tests("nbtest.kernel.notebook_kernel.NotebookKernel.start", reaper.settle)
    seen: list[int] = []

    class Look(Callback):
        def on_notebook_start(self, run: NotebookRun) -> None:
            seen.append(reaper.pending())

    session = NotebookSession(plan_notebook(make_notebook("a.ipynb", ["x = 1"])), [Look()])
    try:
        run_sync(session.launch)()
        assert session.kernel is not None
        run_sync(session.kernel.wait_ready)(60)  # booted: what is left of start() is quick
        gate = threading.Event()
        reaper.later(lambda: gate.wait(30))  # an earlier kernel's stop, not over yet
        threading.Timer(0.5, gate.set).start()
        run_sync(session.start)()
        assert seen == [0] and gate.is_set()
    finally:
        session.close()
        reaper.settle(30)
    no_kernel_left()


def test_reaper_runs_jobs_in_order_on_one_thread_and_settles(
        monkeypatch: pytest.MonkeyPatch) -> None:
    this_tests(reaper.later, reaper.settle, reaper.pending)
    monkeypatch.setattr(reaper, "IDLE_EXIT", 0.05)
    assert reaper.settle(timeout=30)
    gate, done, threads = threading.Event(), [], set()

    def job(n: int) -> Callable[[], None]:
        def run() -> None:
            gate.wait(30)
            threads.add(threading.current_thread().name)
            done.append(n)
            if n == 1:
                raise RuntimeError("a failing job does not stop the others")
        return run

    for n in range(3):
        reaper.later(job(n))
    assert reaper.pending() == 3 and not reaper.settle(timeout=0.01)
    gate.set()
    assert reaper.settle(timeout=30)
    assert done == [0, 1, 2] and threads == {"nbtest-reaper"} and reaper.pending() == 0
    deadline = time.monotonic() + 30  # idle, the thread ends; a later job starts another
    while any(t.name == "nbtest-reaper" for t in threading.enumerate()):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    reaper.later(lambda: done.append(3))
    assert reaper.settle(timeout=30) and done[-1] == 3


# A double fork: a child starts a daemon (a session of its own, an environment without the
# kernel's token) and exits at once, so the daemon is an orphan; the cell prints its pid.
DAEMON = """
import subprocess, sys
middle = subprocess.run([sys.executable, "-c", "import os, subprocess; print(subprocess.Popen("
    "['sleep', '600'], env={'PATH': os.environ['PATH']}, start_new_session=True, "
    "stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).pid)"],
    capture_output=True, text=True, check=True)
print(middle.stdout.strip())
"""


def _kill_if_left(pid: int) -> None:
    """Kill `pid` if it is still the test's `sleep 600` (a survivor must not outlive us)."""
    try:
        proc = psutil.Process(pid)
        if proc.cmdline() == ["sleep", "600"]:
            proc.kill()
    except psutil.Error:
        pass


@pytest.mark.parametrize("fork", ["yes", "no"])
def test_a_daemon_a_cell_double_forks_dies_with_the_kernel(
        make_notebook: Callable[..., Path], no_kernel_left, fork: str) -> None:
    """The kernel is a subreaper: the orphaned daemon is reparented to it, not to init, so it
    is in the kernel's tree when the kernel is killed."""
    this_tests("nbtest.kernel.startup.startup_code", "nbtest.kernel.launch.Kernel.processes",
               "nbtest.kernel.forkserver_main._become_subreaper")
    path = make_notebook("daemon.ipynb", [DAEMON, "import time\ntime.sleep(0.5)"])
    result = run_notebook(path, NbTestConfig.of(fork=fork))
    daemon = int(result.cells[0].output_tail.split()[-1])
    try:
        assert result.passed, result.cells
        assert result.extras["kernel_start"] == ("fork" if fork == "yes" else "spawn")
        assert pid_gone(daemon), "the double-forked daemon outlived its kernel"
    finally:
        _kill_if_left(daemon)
    no_kernel_left()


def test_the_template_kills_what_a_forked_kernel_that_died_left(
        make_notebook: Callable[..., Path], no_kernel_left) -> None:
    """A forked kernel that dies on its own leaves its orphans to the template (a subreaper
    too), which kills every child that is not one of its kernels."""
    this_tests("nbtest.kernel.forkserver_main._kill_orphans", "nbtest.kernel.forkserver_main._reap")
    path = make_notebook("dies.ipynb", [DAEMON, "import os\nos._exit(3)"])
    result = run_notebook(path, NbTestConfig.of(fork="yes"))
    daemon = int(result.cells[0].output_tail.split()[-1])
    try:
        assert result.extras["kernel_start"] == "fork"
        assert result.cells[1].detail == "kernel died (exit code 3)"
        assert pid_gone(daemon), "the dead kernel's daemon survived"
    finally:
        _kill_if_left(daemon)
    no_kernel_left()
