"""Hooks that nbtest adds to pytest, for plugins that want to follow notebook execution."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import pytest

    from .callback import NotebookRun
    from .results import CellResult, NotebookResult

hookspec = pluggy.HookspecMarker("pytest")


@hookspec
def pytest_nbtest_notebook_start(item: pytest.Item, run: NotebookRun) -> None:
    """A notebook's kernel is up and its startup code ran; no cell has run yet."""


@hookspec
def pytest_nbtest_cell_executed(item: pytest.Item, run: NotebookRun, result: CellResult) -> None:
    """A cell of the notebook finished, whatever its status (`result.status`)."""


@hookspec
def pytest_nbtest_notebook_done(item: pytest.Item, run: NotebookRun,
                                result: NotebookResult) -> None:
    """A notebook is over and its kernel is gone."""
