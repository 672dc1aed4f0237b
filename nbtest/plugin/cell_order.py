"""Keep each notebook's cell items together and in file order, whatever reordered or split them.

Plugins reorder items freely (pytest-randomly, `--ff`, pytest-random-order) and splitters
hand items to groups one by one (pytest-split's `least_duration`). A cell item still gives the
right verdict alone (its earlier cells run as its setup), but only cells that run together, in
order, share one kernel. So after every other plugin has had its say:

- notebooks keep the place of their first cell in the final order (they may be shuffled), and
  their cells follow it in file order;
- under a splitter, a notebook belongs to the group that received its first cell: that group
  takes the notebook's other cells, the other groups leave them out. Every process computes the
  same split, so every cell runs in exactly one group.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

BEFORE_SPLIT = pytest.StashKey[list]()  # the items as a splitter was given them


def _notebook_of(item: pytest.Item) -> Any:
    """The NotebookFile of a cell item, else None."""
    number = getattr(item, "number", None)
    return item.parent if number is not None else None


class SplitWatch:
    """Notes the cell items as a splitter is given them. pytest-split picks its group in a
    `trylast` hook of a plugin registered in its pytest_configure. pluggy calls `trylast`
    hooks latest-registered last, so this one, registered before it (in nbtest's `tryfirst`
    pytest_configure), runs just before it: after -k, -m and the other selections."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: Sequence[pytest.Item]) -> None:
        """Keep the cell items as they are now."""
        self.config.stash[BEFORE_SPLIT] = [item for item in items
                                           if _notebook_of(item) is not None]


def watch_splits(config: pytest.Config) -> None:
    """Under pytest-split (`--splits N`), note the items its group is picked from."""
    if getattr(config.option, "splits", None):
        config.pluginmanager.register(SplitWatch(config), "nbtest-split-watch")


def reunite_split_notebooks(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Give each notebook wholly to the group that holds its first cell."""
    before = config.stash.get(BEFORE_SPLIT, None)
    if not before:
        return
    first: dict[Any, Any] = {}
    cells: dict[Any, list[Any]] = {}
    for item in sorted(before, key=lambda item: item.number):
        first.setdefault(_notebook_of(item), item)
        cells.setdefault(_notebook_of(item), []).append(item)
    selected = set(items)
    mine = {notebook for notebook, item in first.items() if item in selected}
    items[:] = [item for item in items if _notebook_of(item) in (None, *mine)]
    present = set(items)
    items.extend(item for notebook in mine for item in cells[notebook] if item not in present)


def keep_cells_together(items: list[pytest.Item]) -> None:
    """Reorder in place: each notebook's cells at its first cell's place, in file order."""
    groups: dict[Any, list[Any]] = {}
    for item in items:
        notebook = _notebook_of(item)
        if notebook is not None:
            groups.setdefault(notebook, []).append(item)
    if not groups:
        return
    ordered: list[Any] = []
    for item in items:
        notebook = _notebook_of(item)
        if notebook is None:
            ordered.append(item)
        elif notebook in groups:
            ordered.extend(sorted(groups.pop(notebook), key=lambda cell: cell.number))
    items[:] = ordered
