"""The fast tier's guard: a test not marked `spawns` may start no process.

`forbid_processes()` replaces every way Python starts a process with one that refuses and
notes the attempt: `subprocess`, `asyncio` and `multiprocessing` all end in
`_posixsubprocess.fork_exec` (which `subprocess` holds under its own name), `os.posix_spawn`
or `os.fork`; `os.system` and `os.forkpty` too. Threads alive before are left alone: a fork
template an earlier test warmed may start a process in the background.
"""

from __future__ import annotations

import _posixsubprocess
import os
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

SPAWNS = "spawns"
ADVICE = (f"a test that starts a kernel or another process must be marked `{SPAWNS}` (its module "
          "in SPAWNING_MODULES, or the test in SPAWNING_TESTS, of tests/conftest.py; or "
          f"@pytest.mark.{SPAWNS}): `make test-fast` leaves those out")


class ProcessForbidden(AssertionError):
    """A test outside the `spawns` tier tried to start a process."""


def _describe(name: str, args: tuple[Any, ...]) -> str:
    if name == "fork_exec" and args:
        return " ".join(os.fsdecode(a) for a in (args[0] or ())) or "a process"
    if name in ("posix_spawn", "posix_spawnp") and len(args) > 1:
        return " ".join(map(str, args[1]))
    if name == "system" and args:
        return str(args[0])
    return f"os.{name}()"


@contextmanager
def forbid_processes() -> Iterator[list[str]]:
    """Within: starting a process from this thread or a thread started within raises
    ProcessForbidden; the list yielded names each attempt (the code under test may swallow the
    error: the caller fails the test on a non-empty list)."""
    before = {t.ident for t in threading.enumerate()} - {threading.get_ident()}
    attempts: list[str] = []

    def refuse(name: str, real: Callable[..., Any]) -> Callable[..., Any]:
        def guarded(*args: Any, **kwargs: Any) -> Any:
            if threading.get_ident() in before:
                return real(*args, **kwargs)
            attempts.append(_describe(name, args))
            raise ProcessForbidden(f"started {attempts[-1]!r}: {ADVICE}")
        return guarded

    with pytest.MonkeyPatch.context() as patch:
        real = _posixsubprocess.fork_exec
        patch.setattr(_posixsubprocess, "fork_exec", refuse("fork_exec", real))
        if getattr(subprocess, "_fork_exec", None) is not None:  # its own name for it (3.11+)
            patch.setattr(subprocess, "_fork_exec", refuse("fork_exec", subprocess._fork_exec))
        for name in ("fork", "forkpty", "posix_spawn", "posix_spawnp", "system"):
            if hasattr(os, name):
                patch.setattr(os, name, refuse(name, getattr(os, name)))
        yield attempts
