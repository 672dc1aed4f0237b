"""Keep each notebook's cell items together and in file order, whatever reordered or split them.

Plugins reorder items freely (pytest-randomly, `--ff`, pytest-random-order) and splitters
hand items to groups one by one (pytest-split's `least_duration`). A cell item still gives the
right verdict alone (its earlier cells run as its setup), but only cells that run together, in
order, share one kernel. So after every other plugin has had its say:

- notebooks keep the place of their first cell in the final order (they may be shuffled), and
  their cells follow it in file order;
- under pytest-split, a notebook belongs to the group its splitting algorithm dealt the
  notebook's first cell (in file order) to: that group takes the notebook's other cells, the
  other groups leave them out. pytest-split's own fix-up for notebooks decides by the first and
  last item of each group in the (maybe shuffled) item order, each group on its own: a
  notebook could land in no group or in two. So nbtest deals the items given to the splitter
  itself, with the same algorithm and durations, for every group: every process computes the
  same deal, so every cell item runs in exactly one group, and each group's "deselected" is
  what the other groups run.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from typing import Any

import pytest

# (items given to the splitter, this group's)
SPLIT_SHARE = pytest.StashKey[tuple[list[pytest.Item], set[pytest.Item]]]()


def _notebook_of(item: pytest.Item) -> Any:
    """The NotebookFile of a cell item, else None."""
    number = getattr(item, "number", None)
    return item.parent if number is not None else None


def split_share(config: pytest.Config, given: Sequence[pytest.Item]) -> set[pytest.Item]:
    """The items of `given` that this group runs: pytest-split's deal of `given` into
    `--splits` groups, each notebook's cells moved to the group dealt its first cell."""
    try:
        from pytest_split.algorithms import Algorithms
    except ImportError as exc:  # a pytest-split whose algorithms nbtest cannot reach
        raise pytest.UsageError(
            f"--nbtest-cells with --splits: cannot import pytest-split's algorithms ({exc}); "
            "install the pytest-split version pinned in nbtest's compat extra") from None
    splitter = config.pluginmanager.get_plugin("pytestsplitplugin")
    durations = getattr(splitter, "cached_durations", None) or {}
    algorithm = Algorithms[config.option.splitting_algorithm].value
    groups = algorithm(config.option.splits, list(given), durations)
    dealt = {item: index for index, group in enumerate(groups) for item in group.selected}
    owner: dict[Any, tuple[int, int]] = {}  # notebook -> (its first cell's number, group)
    for item in given:
        notebook = _notebook_of(item)
        if notebook is not None and item in dealt:
            owner[notebook] = min(owner.get(notebook, (item.number, dealt[item])),  # type: ignore[attr-defined]
                                  (item.number, dealt[item]))  # type: ignore[attr-defined]
    mine = config.option.group - 1
    return {item for item in given
            if (owner[_notebook_of(item)][1] if _notebook_of(item) in owner
                else dealt.get(item)) == mine}


class SplitWatch:
    """Deals the items as pytest-split is given them. pytest-split picks its group in a
    `trylast` hook of a plugin registered in its pytest_configure. pluggy calls `trylast`
    hooks latest-registered last, so this one, registered before it (in nbtest's `tryfirst`
    pytest_configure), runs just before it: after -k, -m and the other selections."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.deselect: list[pytest.Item] | None = None  # the group's true deselection, once

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: Sequence[pytest.Item]) -> None:
        """Deal the items as they are now; note this group's share."""
        given = list(items)
        if not any(_notebook_of(item) is not None for item in given):
            return  # no cell item: pytest-split's own split stands
        mine = split_share(self.config, given)
        self.config.stash[SPLIT_SHARE] = (given, mine)
        self.deselect = [item for item in given if item not in mine]

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_deselected(self, items: Sequence[pytest.Item]) -> Generator[None, Any, Any]:
        """pytest-split reports its group's deselection next (before nbtest moves notebooks
        between groups): report the items the other groups run instead, so the count is
        that of the items this group leaves out."""
        if self.deselect is not None and isinstance(items, list):
            given = set(self.config.stash[SPLIT_SHARE][0])
            if all(item in given for item in items):
                items[:] = self.deselect
                self.deselect = None
        return (yield)


def reunite_split_notebooks(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Keep this group's share of the split: whole notebooks, none of another group's."""
    given, mine = config.stash.get(SPLIT_SHARE, ([], set()))
    if not given:
        return
    items[:] = [item for item in items if item in mine]
    present = set(items)
    items.extend(item for item in given if item in mine and item not in present)


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
