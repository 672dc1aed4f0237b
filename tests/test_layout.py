"""The package's layout is its architecture: README's tree matches the disk, modules stay
small, no module imports another in a circle, and nothing imports a layer above its own.

Imports are read from the source (every `import` statement, those inside functions too), so
a cycle hidden behind a lazy import is found as well.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

import pytest
from helpers.processes import REPO

from nbtest import this_tests

PACKAGE = REPO / "nbtest"
MAX_LINES = 350
# The faces: what a user drives. Everything else is the engine and below it.
FACES = re.compile(r"^nbtest\.(plugin(\..+)?|cli|\w+\.cmd|registry\.session|affected\.session)$")
# Lower layers, and what they must never import (besides the faces).
BELOW_ENGINE = re.compile(r"^nbtest\.(errors|config|notebook|results|files|kernel|gpu|outputs)\b")
ENGINE = re.compile(r"^nbtest\.(plan|verdict|execute|callback|callbacks)\b")


def module_name(path: Path) -> str:
    """`nbtest.kernel.launch` for nbtest/kernel/launch.py, `nbtest.kernel` for its __init__."""
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@lru_cache(maxsize=1)
def modules() -> dict[str, Path]:
    """Every module of the package, by name."""
    return {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def imported_by(name: str) -> set[str]:
    """The package's modules that module `name` imports, anywhere in its source."""
    path = modules()[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] \
                if node.level else []
            target = ".".join([*base, *([node.module] if node.module else [])])
            for alias in node.names:  # `from . import x` imports the module x
                whole = f"{target}.{alias.name}"
                found.add(whole if whole in modules() else target)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {target for target in found if target in modules() and target != name}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def readme_tree() -> list[str]:
    """The lines of the README's layout block (```text under "### Layout")."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = re.search(r"### Layout\n.*?```text\n(.*?)```", readme, re.S)
    assert block, "README.md has no ### Layout section with a ```text tree"
    return block.group(1).splitlines()


def test_readme_tree_is_the_tree_on_disk() -> None:
    """Every flat module and every subpackage with its modules, as on disk, nothing more."""
    this_tests("na")  # the package's structure, not one API function
    flat, packages = set(), {}
    for line in readme_tree()[1:]:
        entry = re.match(r"\s+(\w+\.py)\s+\S|\s+(\w+)/\s+\[([\w, ]+)\]\s+\S", line)
        assert entry, f"README layout line not understood (`name.py  what` or " \
                      f"`name/  [modules] what`): {line!r}"
        if entry.group(1):
            flat.add(entry.group(1))
        else:
            packages[entry.group(2)] = sorted(m.strip() for m in entry.group(3).split(","))
    on_disk_flat = {p.name for p in PACKAGE.glob("*.py")}
    on_disk_packages = {p.parent.name: sorted(m.stem for m in p.parent.glob("*.py")
                                              if m.name != "__init__.py")
                        for p in PACKAGE.glob("*/__init__.py")}
    assert flat == on_disk_flat
    assert packages == on_disk_packages


def test_no_module_is_long() -> None:
    """A module holds one concern: at most ~350 lines."""
    this_tests("na")  # the package's structure, not one API function
    long = {name: n for name, path in modules().items()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_no_import_cycle() -> None:
    """No module reaches itself through imports, lazy ones included."""
    this_tests("na")  # the package's structure, not one API function
    graph = {name: imported_by(name) for name in modules()}
    assert cycles({"a": {"b"}, "b": {"a"}, "c": {"a"}}) == [["a", "b"]]  # the finder finds
    assert graph["nbtest.kernel.launch"] >= {"nbtest.kernel.environment"}  # the reader reads
    assert cycles(graph) == []


def test_nothing_imports_a_layer_above_its_own() -> None:
    """The engine never imports a face; the kernel, GPU and output layers never import the
    engine."""
    this_tests("na")  # the package's structure, not one API function
    wrong = []
    for name in modules():
        for target in imported_by(name):
            if FACES.match(target) and not FACES.match(name):
                wrong.append(f"{name} -> {target} (a face)")
            elif ENGINE.match(target) and BELOW_ENGINE.match(name):
                wrong.append(f"{name} -> {target} (the engine)")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("name", sorted(modules()))
def test_each_module_imports_alone(name: str) -> None:
    """In a fresh interpreter, each module imports by itself (no order it silently needs)."""
    this_tests("na")  # the package's structure, not one API function
    proc = subprocess.run([sys.executable, "-c", f"import {name}"], capture_output=True,
                          text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr


def test_the_benchmarks_import_with_the_standard_library_alone() -> None:
    """`python3 benchmarks/bench_*.py` runs under any Python and re-executes itself in
    .venv-bench: everything it imports before that must be the standard library's."""
    this_tests("na")  # the benchmark scripts' structure, not one API function
    names = sorted(f"nbbench.{p.stem}" for p in (REPO / "benchmarks" / "nbbench").glob("*.py")
                   if p.stem != "__init__")
    code = f"import sys; sys.path.insert(0, 'benchmarks'); import {', '.join(names)}"
    proc = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=REPO)  # -S: no site-packages, no psutil
    assert proc.returncode == 0, proc.stderr
