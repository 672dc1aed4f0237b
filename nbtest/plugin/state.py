"""What the pytest face's modules share: stash keys, report property names, and whether
nbtest acts in a session at all."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from ..callback import Callback
from ..config import NbTestConfig

KERNEL_START = "nbtest kernel start"  # the user property naming how a kernel started
EXPORTS_NOT_RUN = "nbtest nbdev exports not run"  # cells calling nbdev_export(), left out

ACTIVE_KEY = pytest.StashKey[bool]()

CONFIG_KEY = pytest.StashKey[NbTestConfig]()  # the session's resolved options

CALLBACKS_KEY = pytest.StashKey[list[Callback]]()  # session-wide callbacks (registry, memory...)

TEMPLATES_KEY = pytest.StashKey["set[int]"]()  # fork templates that predate the session

SWITCHES_KEY = pytest.StashKey["frozenset[str]"]()  # the seed switches nbtest declared itself

FORK_TEMPLATES_KEY = "nbtest_fork_templates"  # in an xdist worker's input: see XdistForkTemplate

def nbtest_enabled(config: pytest.Config) -> bool:
    """Whether notebooks are collected in this session."""
    return bool(config.getoption("nbtest") or config.getini("nbtest"))

def nbtest_active(config: pytest.Config) -> bool:
    """Whether nbtest acts in this session: it collects notebooks, or the project configures
    nbtest (`[tool.nbtest]`, `nbtest_*` ini keys) or an `--nbtest-*` option was given.
    Anywhere else every hook gives what pytest gives without nbtest."""
    return config.stash.get(ACTIVE_KEY, False)

def is_notebook_item(item: pytest.Item) -> bool:
    """Whether `item` runs a notebook or one of its cells (it has a plan: item.plan)."""
    items = sys.modules.get("nbtest.plugin.items")  # none yet: no notebook item exists
    return items is not None and isinstance(item, items._NotebookItemBase)

# (path, why) of notebooks an nbdev project leaves out
LEFT_OUT_KEY = pytest.StashKey[list[tuple[Path, str]]]()
LEFT_OUT_OUTPUT = "nbtest_left_out"  # in an xdist worker's output: those, for the controller

def note_left_out(config: pytest.Config, path: Path, why: str) -> None:
    """Remember a notebook nbdev_test would not test, to say why under -v."""
    config.stash.setdefault(LEFT_OUT_KEY, []).append((path, why))
