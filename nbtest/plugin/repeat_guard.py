"""pytest-repeat's `--count N` beside notebook tests: refused, never silently ignored.

pytest-repeat repeats a test by parametrizing its function; a notebook or cell item has no
function, so `--count 3` would run each notebook once while the user believes it ran three
times. nbtest says so and stops before anything runs (under xdist, in the controller as soon
as a worker has collected notebooks, as the GPU preflight does).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import pytest

from ..handoff import is_worker
from .state import is_notebook_item
from .stop import stop_session


class RepeatGuard:
    """Refuses `--count N` (N > 1) in a session that collected notebook tests (registered only
    when pytest-repeat is loaded in a session that uses nbtest)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def refusal(self, nodeids: Iterable[str]) -> str | None:
        """The usage error's text, if `--count` asks to repeat any of these notebook tests."""
        count = getattr(self.config.option, "count", 1) or 1
        notebooks = sorted({nodeid.split("::")[0] for nodeid in nodeids
                            if nodeid.split("::")[0].endswith(".ipynb")})
        if count <= 1 or not notebooks:
            return None
        shown = ", ".join(notebooks[:3]) + (", ..." if len(notebooks) > 3 else "")
        return (f"pytest-repeat's --count {count} cannot repeat notebook tests ({shown}): "
                "nbtest would run each notebook once. Run the notebooks without --count "
                "(select the .py tests to repeat them), or run pytest once per repetition.")

    @pytest.hookimpl(tryfirst=True)
    def pytest_collection_modifyitems(self, items: Sequence[pytest.Item]) -> None:
        """Stop with a usage error when a notebook test would not be repeated."""
        if is_worker(self.config):
            return  # an xdist worker: the controller stops the session
        text = self.refusal(item.nodeid for item in items if is_notebook_item(item))
        if text:
            raise pytest.UsageError(text)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        """Under xdist: stop as soon as a worker has collected notebook tests."""
        text = self.refusal(ids)
        if text:
            stop_session(self.config, f"ERROR: {text}", pytest.ExitCode.USAGE_ERROR)
