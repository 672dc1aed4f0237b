"""The end of a kernel's stop, off the notebook's critical path.

Once every process of a kernel's tree has been sent SIGKILL and its sockets are closed
(launch.Kernel.kill), what is left is waiting: for the processes to exit (a few milliseconds,
the kernel's memory being torn down), for the kernel's exit status, and removing its private
folder. `later()` hands that to one background thread, so the next notebook starts meanwhile;
`settle()` waits until it is all done: run_notebook does before it returns, a pytest session
before it ends, and this process at exit.
"""

from __future__ import annotations

import atexit
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

import psutil

IDLE_EXIT = 2.0  # seconds the thread waits for more work before it ends

_jobs: deque[Callable[[], None]] = deque()
_changed = threading.Condition()
_unfinished = 0  # jobs queued or running
_worker: threading.Thread | None = None


def later(job: Callable[[], None]) -> None:
    """Run `job` on the reaper thread (started if none is running); its errors are ignored.
    Where no thread can start (the interpreter is shutting down), it runs here and now."""
    global _unfinished, _worker
    with _changed:
        if _worker is None:
            worker = threading.Thread(target=_work, name="nbtest-reaper", daemon=True)
            try:
                worker.start()
                _worker = worker
            except RuntimeError:
                pass
        if _worker is not None:
            _jobs.append(job)
            _unfinished += 1
            _changed.notify_all()
            return
    job()


def _work() -> None:
    global _unfinished, _worker
    while True:
        with _changed:
            if not _jobs and not _changed.wait_for(lambda: bool(_jobs), timeout=IDLE_EXIT):
                _worker = None  # a later job starts a new thread
                return
            job = _jobs.popleft()
        try:
            job()
        except Exception:  # pragma: no cover - a job cleans up best-effort, as kill() did
            pass
        finally:
            with _changed:
                _unfinished -= 1
                _changed.notify_all()


def settle(timeout: float | None = None) -> bool:
    """Wait until every job handed to later() has run; False if `timeout` s passed first."""
    with _changed:
        return _changed.wait_for(lambda: _unfinished == 0, timeout=timeout)


def pending() -> int:
    """Jobs queued or running."""
    with _changed:
        return _unfinished


atexit.register(settle)


def wait_gone(procs: list[psutil.Process], timeout: float) -> None:
    """Wait until each process has exited or is a zombie (dead, waiting for its new parent)."""
    deadline = time.monotonic() + timeout
    alive = list(procs)
    delay = 0.001  # a killed process is usually gone within a millisecond: look soon, then less
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if _running(p)]
        if alive:
            time.sleep(delay)
            delay = min(delay * 2, 0.02)


def _running(proc: psutil.Process) -> bool:
    try:
        return bool(proc.status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False


def reap(victims: list[psutil.Process], process: Any, folder: str | None = None) -> None:
    """The end of a kill: wait for the killed processes to exit and for the kernel's exit
    status (`process`, Popen-like: no zombie of ours stays), then remove `folder`."""
    try:
        wait_gone(victims, timeout=5)
        if process is not None:
            try:
                process.wait(timeout=5)
            except Exception:
                pass
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
