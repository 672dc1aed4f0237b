"""pytest-timeout's limit on a notebook test, enforced by nbtest's own cell timeout.

pytest-timeout stops a test from outside: by SIGALRM in the middle of the event loop (a report
of ~1,000 lines of asyncio internals, no cell named) or, with `--timeout-method=thread`, by
`os._exit`, which leaves the kernel and the fork template alive. For notebook tests nbtest
takes the timer over through pytest-timeout's own hooks and gives the limit to the engine:
the running cell is interrupted, its kernel killed, and the report names the cell with its
source and output, as for nbtest's own timeouts.
"""

from __future__ import annotations

import time
from typing import Any

import pytest


def _is_notebook_test(item: pytest.Item) -> bool:
    return hasattr(item, "nbconfig") and not hasattr(item, "error")


class TimeoutBridge:
    """Takes pytest-timeout's timer for notebook and cell items (registered only when
    pytest-timeout is loaded in a session that uses nbtest)."""

    @pytest.hookimpl(optionalhook=True, tryfirst=True)
    def pytest_timeout_set_timer(self, item: pytest.Item, settings: Any) -> bool | None:
        """Give the item a deadline instead of pytest-timeout's signal or thread."""
        if not _is_notebook_test(item):
            return None
        name = f"pytest-timeout {settings.timeout:g} s"
        item.outer_limit = (time.monotonic() + settings.timeout, name)  # type: ignore[attr-defined]
        return True

    @pytest.hookimpl(optionalhook=True, tryfirst=True)
    def pytest_timeout_cancel_timer(self, item: pytest.Item) -> bool | None:
        """Drop the item's deadline."""
        if not _is_notebook_test(item):
            return None
        item.outer_limit = None  # type: ignore[attr-defined]
        return True
