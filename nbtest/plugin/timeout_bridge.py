"""pytest-timeout's limit on a notebook test, enforced by nbtest's own cell timeout.

pytest-timeout stops a test from outside: by SIGALRM in the middle of the event loop (a report
of ~1,000 lines of asyncio internals, no cell named) or, with `--timeout-method=thread`, by
`os._exit`, which leaves the kernel and the fork template alive. For notebook tests nbtest
takes the timer over through pytest-timeout's own hooks and gives the limit to the engine:
the running cell is interrupted, its kernel killed, and the report names the cell with its
source and output, as for nbtest's own timeouts.

Every attempt gets the whole limit. pytest-timeout sets its timer once around the runtest
protocol and cancels it in pytest_exception_interact, after the first failed phase; a plugin
that runs the protocol again within it (pytest-rerunfailures) would give the retry no limit at
all, and a notebook that always times out would pass on its rerun. So the limit is kept for
the whole protocol and armed afresh at the setup of each attempt.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from typing import Any

import pytest

from .state import is_notebook_item


def _arm(item: pytest.Item, seconds: float) -> None:
    """Give the item a deadline `seconds` from now."""
    name = f"pytest-timeout {seconds:g} s"
    item.outer_limit = (time.monotonic() + seconds, name)  # type: ignore[attr-defined]


class TimeoutBridge:
    """Takes pytest-timeout's timer for notebook and cell items (registered only when
    pytest-timeout is loaded in a session that uses nbtest)."""

    def __init__(self) -> None:
        # item -> seconds, while its runtest protocol (every attempt of it) lasts
        self.limits: dict[pytest.Item, float] = {}

    @pytest.hookimpl(optionalhook=True, tryfirst=True)
    def pytest_timeout_set_timer(self, item: pytest.Item, settings: Any) -> bool | None:
        """Give the item a deadline instead of pytest-timeout's signal or thread."""
        if not is_notebook_item(item):
            return None
        if not settings.func_only:  # func_only: pytest-timeout sets it at every call itself
            self.limits[item] = settings.timeout
        _arm(item, settings.timeout)
        return True

    @pytest.hookimpl(optionalhook=True, tryfirst=True)
    def pytest_timeout_cancel_timer(self, item: pytest.Item) -> bool | None:
        """Drop the item's deadline (a later attempt's setup arms it again)."""
        if not is_notebook_item(item):
            return None
        item.outer_limit = None  # type: ignore[attr-defined]
        return True

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        """Arm the limit afresh for this attempt (a rerun starts here too)."""
        seconds = self.limits.get(item)
        if seconds is not None:
            _arm(item, seconds)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Generator[None, Any, Any]:
        """Forget the item's limit once its last attempt is over."""
        try:
            return (yield)
        finally:
            self.limits.pop(item, None)
