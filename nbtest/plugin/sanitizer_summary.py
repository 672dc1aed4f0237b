"""The session's report of the user sanitizers that matched nothing (nbval#204), from the
counts of the output check (callbacks/outputs.py's OutputCheck), each xdist worker's added up
on the controller.
"""

from __future__ import annotations

from typing import Any

import pytest

from ..callbacks.outputs import OutputCheck
from ..handoff import received, send

WORKER_KEY = "nbtest_output_check"


class SanitizerSummary:
    """pytest plugin object: lists the user sanitizers that matched nothing (nbval#204)."""

    def __init__(self, check: OutputCheck, config: Any) -> None:
        self.check = check
        self.config = config

    def pytest_sessionfinish(self, session: Any) -> None:
        """An xdist worker sends its counts to the controller."""
        send(self.config, WORKER_KEY, self.check.payload())

    @pytest.hookimpl(optionalhook=True)  # xdist's hook: absent without pytest-xdist
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """Controller: add a worker's counts."""
        payload = received(node, WORKER_KEY)
        if payload:
            self.check.merge(payload)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """The session's report, once every worker's counts are in."""
        lines = self.check.unmatched_report()
        if lines:
            terminalreporter.section("nbtest: sanitizers that matched nothing", sep="=",
                                     yellow=True)
            for line in lines:
                terminalreporter.write_line(f"  {line}")

