"""Preloading: the fork template imports the user's heavy modules once, so kernels skip it.

`[tool.nbtest] preload = ["numpy", "torch", "mypkg"]` (or `--nbtest-preload`, `nbtest execute
--preload`) names them; `preload = "auto"` learns them from the previous session (pytest's
cache): what the kernels really loaded and what it cost them (ininkernel/imports.py), the heavy
packages most notebooks loaded, however the notebooks entered them, and that proved safe
(`learned_from_kernels`); before any kernel reported, the modules that at least half of the
notebooks import as written. In the template (inkernel/preload.py's `preload_modules`), each
module is imported in turn (in a kernel's likeness: likeness.py) and checked:

- a module that fails to import is skipped and reported, never fatal;
- a fork is unsafe when a module started Python threads, native threads (other than those of
  a pool library it mapped that shuts itself down around fork through pthread_atfork:
  OpenBLAS, however many copies, LLVM's libomp, Intel's libiomp; not GNU's libgomp), or
  initialised CUDA: the module is named, the template refuses to fork, and the harness starts a new
  template without it (`safe_subset`).

In each forked kernel (inkernel/preload.py's `after_fork`): fresh random state for every
preloaded library that seeds itself at import (random, numpy's legacy global RandomState, torch's
default generators). When a file of a module the template had loaded changes (its content: a rewrite
with the same content is no change), the harness starts a new template before the next fork,
and a kernel forked before the change is started again (freshness.py): a kernel never mixes
the old modules with the new ones. A notebook that
sets environment variables before it imports a preloaded module (`OMP_NUM_THREADS` before
`import torch`) is spawned, not forked (`env_set_before_import`): such variables are read at
import, and the template imported with its own.
"""

from __future__ import annotations

import ast
import re
import sys
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

AUTO = "auto"
STATUS_FILE = "preload.json"  # beside the template's socket: what it preloaded and found
CACHE_KEY = "nbtest/preload"  # pytest cache: imports per notebook, modules found unsafe
MIN_SHARE = 0.5  # first session: the modules at least this share of notebooks import as written
# Later sessions learn from the kernels: a package is preloaded when at least KERNEL_SHARE of
# the notebooks loaded it and loading it cost at least MIN_SAVING_S per notebook on average.
KERNEL_SHARE = 0.25
MIN_SAVING_S = 0.02
# Modules a fresh kernel imports anyway, or that must not be taken from the template.
NEVER = frozenset({"__main__", "builtins", "sys", "nbtest", "ipykernel", "IPython", "zmq",
                   "tornado", "jupyter_client", "jupyter_core", "traitlets", "debugpy"})


# ------------------------------------------------------------------------- in the harness
def safe_subset(names: Sequence[str], status: Mapping[str, Any]) -> list[str]:
    """`names` without the modules the template found unsafe or could not import."""
    drop = set(status.get("unsafe", {})) | set(status.get("failed", {}))
    return [name for name in names if name not in drop]


def report_lines(status: Mapping[str, Any]) -> list[str]:
    """One line per module skipped or dropped, for the session's summary."""
    lines = [f"preload: skipped {name} ({why})" for name, why in
             status.get("failed", {}).items()]
    lines += [f"preload: dropped {name}: {why}; kernels import it themselves" for name, why in
              status.get("unsafe", {}).items()]
    return lines


def learned(record: Mapping[str, Any]) -> list[str]:
    """The modules "auto" preloads: imported by at least MIN_SHARE of the notebooks of the
    last session (two at least), never found unsafe, in a stable order."""
    notebooks: Mapping[str, Sequence[str]] = record.get("imports", {})
    if not notebooks:
        return []
    counts: dict[str, int] = {}
    for names in notebooks.values():
        for name in set(names):
            counts[name] = counts.get(name, 0) + 1
    unsafe = set(record.get("unsafe", ()))
    need = max(2, int(len(notebooks) * MIN_SHARE + 0.999))
    return sorted(name for name, n in counts.items() if n >= need and name not in unsafe
                  and name.partition(".")[0] not in NEVER)


def learned_from_kernels(kernels: Mapping[str, Mapping[str, Sequence[Any]]],
                         unsafe: Iterable[str] = ()) -> list[str]:
    """The modules "auto" preloads, from what the kernels of the last session loaded:
    `kernels` = {notebook: {module: [self_seconds, importer]}} (ininkernel/imports.py). A top-level
    package is chosen when at least KERNEL_SHARE of the notebooks (two at least) loaded it
    and its modules' own loading time, summed over the notebooks and shared among all of
    them, is at least MIN_SAVING_S; what is preloaded of it are its entries (the modules
    of it imported from the notebook or from another package: `torch`, `mylib.basics`), the
    costliest packages first (torch before the library that imports it). Never NEVER's
    packages, nor modules found unsafe."""
    if len(kernels) < 2:
        return []
    cost: dict[str, float] = {}
    users: dict[str, int] = {}
    entries: dict[str, set[str]] = {}
    for modules in kernels.values():
        seen = set()
        for name, (seconds, importer) in modules.items():
            top = name.partition(".")[0]
            if top in NEVER or top.startswith("_") or top in sys.builtin_module_names:
                continue
            seen.add(top)
            cost[top] = cost.get(top, 0.0) + float(seconds)
            if importer is None or importer.partition(".")[0] != top:
                entries.setdefault(top, set()).add(name)
        for top in seen:
            users[top] = users.get(top, 0) + 1
    skip = set(unsafe)
    need = max(2, int(len(kernels) * KERNEL_SHARE + 0.999))
    chosen = sorted((top for top in cost if users[top] >= need
                     and cost[top] / len(kernels) >= MIN_SAVING_S),
                    key=lambda top: (-cost[top], top))
    return [name for top in chosen for name in sorted(entries.get(top, ()))
            if name not in skip]


# A change of the environment, not a read of it (`os.environ.get(...)` is no reason to spawn):
# `%env NAME=value` / `%env NAME value` / `%set_env`, an item assigned or deleted, a mutating
# method, os.putenv / os.unsetenv.
_SETS_ENV = re.compile(
    r"^[ \t]*%(?:set_env\b|env[ \t]+[^\s=]+[ \t]*[= \t][ \t]*\S)"
    r"|(?<![\w.])(?:os\.)?environ\s*\[[^\n]*?\]\s*(?:\+|\|)?=(?!=)"
    r"|\bdel\s+(?:os\.)?environ\b"
    r"|(?<![\w.])(?:os\.)?environ\.(?:update|setdefault|pop|popitem|clear)\s*\("
    r"|(?<![\w.])(?:os\.)?environ\s*\|="
    r"|\bos\.(?:putenv|unsetenv)\s*\(", re.M)


def env_set_before_import(sources: Sequence[str], modules: Iterable[str]) -> str | None:
    """Why a notebook must be spawned: it sets an environment variable in a cell before the
    first cell that imports one of `modules` (read at import, in the template already)."""
    wanted = set(modules)
    env_set = False
    for source in sources:
        found = _imports(source, wanted)
        sets = _SETS_ENV.search(source)
        set_line = source.count("\n", 0, sets.start()) + 1 if sets else None
        if found:
            line, name = min(found)
            if env_set or (set_line is not None and set_line < line):
                return (f"the notebook sets environment variables before importing {name}, "
                        "which the template preloaded")
        env_set = env_set or sets is not None
    return None


def _imports(source: str, only: Iterable[str] | None = None) -> set[tuple[int, str]]:
    """(line, module as imported: `matplotlib.pyplot`) of each import in a cell (IPython
    magics and shell lines blanked, so lines keep their numbers); with `only`, those whose
    top-level package is one of `only`, named by that package."""
    code = "\n".join("" if line.lstrip().startswith(("%", "!")) else line
                     for line in source.splitlines())
    try:
        with warnings.catch_warnings():  # `'\d'` in a cell: no DeprecationWarning on screen
            warnings.simplefilter("ignore")
            tree = ast.parse(code)
    except SyntaxError:
        return set()
    keep = set(only) if only is not None else None
    found: set[tuple[int, str]] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names = [node.module]
        else:
            continue
        for name in names:
            top = name.partition(".")[0]
            if keep is None:
                found.add((node.lineno, name))
            elif top in keep:
                found.add((node.lineno, top))
    return found


def notebook_imports(sources: Iterable[str]) -> list[str]:
    """The modules a notebook's code cells import, as imported (`matplotlib.pyplot`: the
    template then imports the submodule too), sorted."""
    return sorted({name for source in sources for _, name in _imports(source)})


def choose(setting: Any, record: Mapping[str, Any],
           current: Mapping[str, Sequence[str]] | None = None,
           kernels: Mapping[str, Mapping[str, Sequence[Any]]] | None = None) -> list[str]:
    """The modules to preload for the `preload` option's value: a list as given; "auto": what
    `learned_from_kernels` finds in what the last session's kernels loaded (`kernels`, for
    the notebooks of this session when known), or before any kernel reported, what `learned`
    finds in this session's notebooks as written (`current`, when known before the template
    starts) or else in the last session's, from the cache `record`."""
    if not setting:
        return []
    if setting != AUTO:
        return list(setting)
    if kernels:
        return learned_from_kernels(kernels, record.get("unsafe", ()))
    imports = current if current else record.get("imports", {})
    return learned({"imports": imports, "unsafe": record.get("unsafe", ())})
