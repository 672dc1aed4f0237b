"""The processes the tests start, and the kernels they must not leave behind.

Every process started by these tests inherits a variable naming this pytest process (set in
conftest's `pytest_configure`, fresh per process, so each xdist worker judges only its own
kernels). Leftovers are found by environment and command line, never by name alone: processes
carrying that tag and either nbtest's NBTEST_KERNEL_TOKEN (a kernel and its whole tree) or a
kernel's command line. Tests run one at a time per process, so a leftover found after a test is
that test's (or an earlier test's) leak.

- `check_no_kernel_left()` fails when a kernel, or any process of a kernel's tree, started by
  the current test is still alive, and kills what it finds so one leak does not spread;
- `kernel_processes()`, `pid_gone(pid)`, `wait_for_file(path)`: what is alive, what is gone;
- `NBTEST_CMD`, `cli_env()`, `default_sigint`: how conftest's `run_cli`/`start_cli` start the
  real `nbtest` console script.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

from nbtest.kernel.tree import TOKEN_VAR

SESSION_VAR = "NBTEST_TESTS_SESSION"
NO_RANDOMLY = "-p no:randomly"  # PYTEST_ADDOPTS of the pytest sessions the tests start
REPO = Path(__file__).resolve().parent.parent.parent
_SCRIPT = Path(sys.executable).parent / "nbtest"
# The real console script where it is installed beside this interpreter.
NBTEST_CMD: list[str] = ([str(_SCRIPT)] if _SCRIPT.exists()
                         else [sys.executable, "-m", "nbtest.cli"])


def kernel_processes(kernels_only: bool = False) -> list[psutil.Process]:
    """Live processes of a kernel's tree started by this pytest process (or its children).

    A process counts when its environment carries our tag and either NBTEST_KERNEL_TOKEN or a
    kernel command line (ipykernel, or a kernel forked from nbtest's template). Our own warm
    template process, if any, is not a leftover. kernels_only: only the kernels themselves.
    """
    tag = os.environ.get(SESSION_VAR)
    if not tag:
        return []
    needle_tag = f"{SESSION_VAR}={tag}\0".encode()
    outer = os.environ.get(TOKEN_VAR)  # set when these tests themselves run inside a kernel
    needle_outer = f"{TOKEN_VAR}={outer}\0".encode() if outer else None
    me = os.getpid()
    found = []
    for proc in psutil.process_iter():
        try:
            if proc.uids().real != os.getuid() or proc.pid == me:
                continue
            with open(f"/proc/{proc.pid}/environ", "rb") as fh:
                env = b"\0" + fh.read()
            if needle_tag not in env or (needle_outer and needle_outer in env):
                continue
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            cmdline = " ".join(proc.cmdline())
            is_kernel = "ipykernel" in cmdline or "nbtest.kernel.forkserver_main" in cmdline
            if "nbtest.kernel.forkserver_main" in cmdline and proc.ppid() == me:
                continue  # a warm template of this process, kept on purpose between notebooks
            if kernels_only and not is_kernel:
                continue
            if is_kernel or f"\0{TOKEN_VAR}=".encode() in env:
                found.append(proc)
        except (OSError, psutil.Error):
            continue
    return found


def _describe(procs: list[psutil.Process]) -> str:
    lines = []
    for proc in procs:
        try:
            lines.append(f"  pid {proc.pid}: {' '.join(proc.cmdline())[:120]}")
        except psutil.Error:
            lines.append(f"  pid {proc.pid}: (gone)")
    return "\n".join(lines)


def _kill(procs: list[psutil.Process]) -> None:
    for proc in procs:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(procs, timeout=5)


def check_no_kernel_left(timeout: float = 10.0) -> None:
    """Fail, naming them, if processes of a kernel's tree are still alive after `timeout` s.

    The wait is only a hang guard for processes on their way out; leftovers are killed.
    """
    deadline = time.monotonic() + timeout
    left = kernel_processes()
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = kernel_processes()
    if left:
        text = _describe(left)
        _kill(left)
        raise AssertionError(f"kernel processes left behind:\n{text}")


def cli_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for an `nbtest` subprocess: ours, plus `extra`."""
    env = dict(os.environ)
    env.pop("NBTEST", None)
    env.update(extra or {})
    return env


def default_sigint() -> None:
    """Give a child SIGINT's default disposition (it raises KeyboardInterrupt again)."""
    # A shell without job control starts background jobs with SIGINT ignored; Python would
    # then never raise KeyboardInterrupt, so give the child the default disposition.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for_file(path: Path, timeout: float = 60, proc: subprocess.Popen | None = None) -> str:
    """Wait (hang guard: `timeout`) until `path` exists and is non-empty; return its text."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text().strip():
            return path.read_text()
        if proc is not None and proc.poll() is not None:
            out, err = proc.communicate()
            raise AssertionError(f"nbtest exited ({proc.returncode}) before {path} appeared:\n"
                                 f"{out}\n{err}")
        time.sleep(0.05)
    raise AssertionError(f"{path} did not appear within {timeout} s")


def pid_gone(pid: int, timeout: float = 10.0) -> bool:
    """Whether process `pid` has exited (or is a zombie waiting for its reaper)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
