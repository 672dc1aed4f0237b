"""A kernel forked from a template (forkserver_client.py), as the harness sees it: the part of
Popen's interface jupyter_client uses, its exit read from the template's connection."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from typing import Any


class ForkedProcess:
    """A forked kernel, with the subset of Popen's interface that jupyter_client uses."""

    stdin = stdout = stderr = None

    def __init__(self, pid: int, conn: socket.socket, server: Any = None) -> None:
        self.pid = pid
        self.server = server  # the template it was forked from
        self.returncode: int | None = None
        self._conn = conn
        self._orphaned = False  # the template is gone: no exit report will come
        self._buffer = b""
        self._lock = threading.Lock()  # the reaper thread may wait while another polls

    def poll(self) -> int | None:
        """The exit code once the template has reported it, else None."""
        if self.returncode is None:
            self._read(block=False)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the exit report; raises subprocess.TimeoutExpired like Popen."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.returncode is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired(["forked kernel"], timeout or 0)
            step = min(left, 0.1) if left is not None else 0.1
            if self._orphaned:  # nothing to block on: look again after a pause, not at once
                time.sleep(min(step, 0.02))
            self._read(block=True, timeout=step)
        return self.returncode

    def _read(self, block: bool, timeout: float | None = None) -> None:
        if not self._lock.acquire(blocking=block):
            return  # another thread is reading (the reaper's wait): poll() does not block
        try:
            if self.returncode is None:
                self._read_locked(block, timeout)
        finally:
            self._lock.release()

    def _read_locked(self, block: bool, timeout: float | None) -> None:
        if self._orphaned:
            if not _alive(self.pid):
                self.returncode = -signal.SIGKILL
            return
        self._conn.settimeout(timeout if block else 0.0)
        try:
            data = self._conn.recv(4096)
        except (BlockingIOError, socket.timeout):
            return
        except OSError:
            data = b""
        if not data:  # the template died: the kernel dies with it (or has died)
            self._orphaned = True
            self._conn.close()
            if not _alive(self.pid):
                self.returncode = -signal.SIGKILL
            return
        self._buffer += data
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            message = json.loads(line)
            if "exit" in message:
                self.returncode = int(message["exit"])
                self._conn.close()

    def stale(self) -> list[str]:
        """The files of the modules its template had loaded that changed since (then this
        kernel holds old modules: it is started again, see NotebookKernel.start)."""
        from .freshness import changed

        return changed(self.server) if self.server is not None else []

    def send_signal(self, sig: int) -> None:
        """Signal the kernel process."""
        if self.returncode is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        """SIGKILL the kernel process."""
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        """SIGTERM the kernel process."""
        self.send_signal(signal.SIGTERM)


def _alive(pid: int) -> bool:
    """Whether `pid` runs: a zombie (a killed kernel its new parent has not reaped yet, which
    can take init a second) has exited."""
    import psutil

    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.Error:
        return False
