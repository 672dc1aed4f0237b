"""A notebook ready to run: loaded, its options resolved, parameters injected, cells numbered
as in the input file, its kernel and working directory chosen. No kernel is involved yet."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

from nbformat import NotebookNode

from .config import NbTestConfig
from .notebook import DEFAULT_KERNEL, kernel_name, load_notebook, notebook_settings
from .params import inject_parameters, injected_index


@dataclass(frozen=True)
class Plan:
    """A notebook ready to run: resolved config, parameters injected, cells numbered."""

    path: Path
    notebook: NotebookNode
    config: NbTestConfig
    kernel_name: str
    cwd: Path
    numbers: tuple[int, ...]  # per executed cell: its number in the input file
    injected: int | None  # executed index of the injected-parameters cell


def plan_notebook(path: str | Path, config: NbTestConfig | None = None,
                  notebook: NotebookNode | None = None) -> Plan:
    """Load `path` (unless given), resolve its config and inject its parameters. A given
    notebook is never changed: the plan holds it, or a copy with the parameters injected,
    and each run executes a copy of that (NotebookSession), so one plan serves many runs."""
    path = Path(path)
    nb = notebook if notebook is not None else load_notebook(path)
    config = (config or NbTestConfig()).with_notebook(notebook_settings(nb, path))
    name = config.kernel or kernel_name(nb) or DEFAULT_KERNEL
    original = len(nb.cells)
    if config.parameters:
        language = nb.metadata.get("kernelspec", {}).get("language") or "python"
        nb = inject_parameters(copy.deepcopy(nb), config.parameters, name, language)
    where = injected_index(nb)
    added = len(nb.cells) - original  # 1 when papermill added a cell, 0 when it replaced one
    # Number cells as in the input file; an added injected cell shares its parameters cell's.
    numbers = tuple(i + 1 - (added if where is not None and i >= where else 0)
                    for i in range(len(nb.cells)))
    folder = path.resolve().parent
    # --cwd is relative to where nbtest runs; metadata.nbtest.cwd to the notebook's folder.
    cwd = folder / config.cwd if "cwd" in config.notebook and "cwd" not in config.explicit \
        else Path(config.cwd) if config.cwd else folder
    return Plan(path, nb, config, name, cwd, numbers, where)
