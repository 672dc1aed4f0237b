"""The fork tests' helpers (tests/test_fork_*.py): a config that forks every kernel, and the
warm template behind a process."""

from __future__ import annotations

from nbtest.config import NbTestConfig
from nbtest.kernel.forkserver_client import ForkServer

FORK = NbTestConfig.of(fork="yes")


def template_of(pid: int) -> ForkServer | None:
    """This process's warm template whose process is `pid`, if any."""
    return next((s for s in ForkServer._instances.values() if s.process.pid == pid), None)
