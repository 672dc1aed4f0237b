"""SIGTERM as Ctrl-C, for a process that runs kernels (a pytest session, an xdist worker).

By default SIGTERM ends a process at once: no `finally` runs, so the running kernel's folder
(its connection file holds the HMAC key) stays, and a kernel outlives it until it notices.
Raised as KeyboardInterrupt instead, the session ends as after Ctrl-C: kernels are killed,
their folders removed, the report printed (pytest exits with 2, "interrupted").
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from typing import Any

# Where SIGTERM goes on to: an xdist controller's workers, which run the kernels. Ctrl-C in
# a terminal reaches every process of the group; a SIGTERM sent to the controller alone
# would leave them running their notebooks until xdist gives up waiting and kills them.
_forward: list[Callable[[], list[int]]] = []


def _interrupt(signum: int, frame: Any) -> None:
    # A second SIGTERM while the first one's clean-up runs ends the process as usual.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    for pids in _forward:
        try:
            for pid in pids():
                os.kill(pid, signal.SIGTERM)
        except Exception:  # noqa: BLE001 - a worker gone already; the interrupt goes on
            pass
    raise KeyboardInterrupt(f"signal {signum}")


def terminate_as_interrupt(forward: Callable[[], list[int]] | None = None
                           ) -> Callable[[], None] | None:
    """Make SIGTERM raise KeyboardInterrupt in the main thread, unless someone else handles
    SIGTERM already (or this is not the main thread); `forward` lists the processes that get
    the SIGTERM too. Returns what undoes it."""
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return None  # the user's or another plugin's handler: theirs to keep
        signal.signal(signal.SIGTERM, _interrupt)
    except (ValueError, OSError):
        return None
    if forward is not None:
        _forward.append(forward)

    def undo() -> None:
        if forward in _forward:
            _forward.remove(forward)
        if signal.getsignal(signal.SIGTERM) is _interrupt:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)

    return undo


def xdist_workers(pluginmanager: Any) -> list[int]:
    """The pids of the workers an xdist controller started on this machine (none else)."""
    dsession = pluginmanager.get_plugin("dsession")
    group = getattr(getattr(dsession, "nodemanager", None), "group", None) or ()
    found = []
    for gateway in group:
        popen = getattr(getattr(gateway, "_io", None), "popen", None)
        if popen is not None and popen.poll() is None:
            found.append(popen.pid)
    return found
