"""Faults with fork on: a forked kernel times out, is interrupted and dies as a spawned kernel
does (the timeout, interrupt and death tests of test_execute.py), and leaves no process behind.
No test asserts a time: every wait is a hang guard.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers.forks import FORK
from helpers.processes import pid_gone

from nbtest import this_tests
from nbtest.config import NbTestConfig
from nbtest.execute import run_notebook
from nbtest.kernel.forked import ForkedProcess
from nbtest.results import DIED, NOT_RUN, PASSED, TIMEOUT


def test_forked_kernel_ignoring_sigint_times_out_and_leaves_no_process(
        tmp_path: Path, make_notebook: Callable[..., Path],
        no_kernel_left: Callable[[], None]) -> None:
    """A cell that ignores SIGINT and spins, with a `sleep 600` child in its process group and
    one in a session of its own: the timeout kills them all."""
    this_tests("nbtest.kernel.launch.Kernel.kill", "nbtest.execute.NotebookSession.run_cell",
               "nbtest.kernel.forked.ForkedProcess.wait")
    path = make_notebook("spin.ipynb", [textwrap.dedent("""\
        import os, signal, subprocess
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        near = subprocess.Popen(['sleep', '600'])
        away = subprocess.Popen(['sleep', '600'], start_new_session=True)
        with open('pids.txt', 'w') as fh:
            fh.write(f'{os.getpid()} {near.pid} {away.pid}')
        while True:
            pass
        """), "print('never')"])
    result = run_notebook(path, NbTestConfig.of(fork="yes", timeout=3))
    assert result.extras["kernel_start"] == "fork"
    assert [c.status for c in result.cells] == [TIMEOUT, NOT_RUN]
    assert result.cells[0].detail.startswith("timed out after ")
    kernel, near, away = map(int, (tmp_path / "pids.txt").read_text().split())
    assert pid_gone(kernel), f"the forked kernel (pid {kernel}) survived the timeout"
    assert pid_gone(near), f"sleep 600 in the kernel's group (pid {near}) survived"
    assert pid_gone(away), f"sleep 600 in a new session (pid {away}) survived"
    no_kernel_left()


def test_forked_kernel_is_interrupted_like_a_spawned_one(tmp_path: Path,
                                                         no_kernel_left: Callable[[], None]
                                                         ) -> None:
    """SIGINT to the kernel's process group raises KeyboardInterrupt in the running cell; the
    kernel lives on and runs the next request."""
    this_tests("nbtest.kernel.launch.Kernel.interrupt", "nbtest.kernel.launch.start_kernel")
    from jupyter_core.utils import run_sync

    from nbtest.kernel.launch import start_kernel

    marker = tmp_path / "running.txt"

    async def scenario() -> tuple[dict[str, Any], dict[str, Any], str]:
        kernel = await start_kernel("python3", tmp_path, {}, 60, fork="yes")
        try:
            assert kernel.start_method == "fork"
            code = ("import time\nopen('running.txt', 'w').write('yes')\n"
                    "time.sleep(60)")
            running = asyncio.ensure_future(kernel.kc.execute_interactive(
                code, timeout=60, output_hook=lambda msg: None))
            deadline = time.monotonic() + 60  # hang guard
            while not marker.exists() and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            await kernel.interrupt()
            interrupted = await running
            texts: list[str] = []
            after = await kernel.kc.execute_interactive(
                "print(6 * 7)", timeout=60,
                output_hook=lambda msg: texts.append(msg["content"].get("text", "")))
            return interrupted["content"], after["content"], "".join(texts)
        finally:
            kernel.kill()

    interrupted, after, text = run_sync(scenario)()
    assert interrupted["status"] == "error" and interrupted["ename"] == "KeyboardInterrupt"
    assert after["status"] == "ok" and text == "42\n"
    no_kernel_left()


@pytest.mark.parametrize(("code", "detail"), [
    ("import os\nos._exit(3)", "kernel died (exit code 3)"),
    ("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)",
     "kernel died (killed by SIGKILL, which looks like the memory limit or the OOM killer"),
], ids=["exit-code", "sigkill"])
def test_forked_kernel_death_is_explained(make_notebook: Callable[..., Path],
                                          no_kernel_left: Callable[[], None], code: str,
                                          detail: str) -> None:
    """The template reports the child's exit status: code and signal, as for a spawned one."""
    this_tests("nbtest.kernel.forked.ForkedProcess.poll",
               "nbtest.kernel.notebook_kernel.describe_exit")
    path = make_notebook("dies.ipynb", ["x = 1", code, "y = 2"])
    result = run_notebook(path, FORK)
    assert result.extras["kernel_start"] == "fork"
    assert [c.status for c in result.cells] == [PASSED, DIED, NOT_RUN]
    assert result.cells[1].detail.startswith(detail)
    no_kernel_left()


def test_waiting_for_a_kernel_whose_template_died_does_not_spin() -> None:
    """The template's death closes the exit-report socket while the kernel may still run (or
    be a zombie init has not reaped yet): waiting then looks again after pauses, instead of
    reading the closed socket in a loop at 100 % CPU (what made SIGTERMed xdist workers spin
    for seconds). CPU time is measured, not wall-clock time."""
    this_tests(ForkedProcess.wait, ForkedProcess.poll)
    kernel = subprocess.Popen(["sleep", "600"])  # stands for a kernel the template left
    ours, template_side = socket.socketpair()
    template_side.close()  # the template is gone
    try:
        process = ForkedProcess(kernel.pid, ours)
        cpu = time.process_time()
        with pytest.raises(subprocess.TimeoutExpired):
            process.wait(timeout=1.0)
        used = time.process_time() - cpu
        print(f"CPU time while waiting 1 s: {used:.3f} s")
        assert used < 0.3
        assert process.poll() is None  # still running
        kernel.kill()
        kernel.wait()  # exited (and reaped): dead however its status is read
        assert process.wait(timeout=10) == -signal.SIGKILL
    finally:
        kernel.kill()
        kernel.wait()
