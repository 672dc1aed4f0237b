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
FACES = re.compile(r"^nbtest\.(plugin(\..+)?|cli|\w+\.cmd)$")
# Lower layers, and what they must never import (besides the faces).
BELOW_ENGINE = re.compile(
    r"^nbtest\.(errors|config|notebook|results|files|kernel|gpu|outputs|inkernel)\b")
# What runs inside the kernel: the standard library, each other, and only these besides (each
# imported lazily, where the kernel has it): what the kernel itself is made of, and numpy,
# which the startup code seeds when the notebook's environment has it.
IN_KERNEL = "nbtest.inkernel"
IN_KERNEL_ALSO = {"IPython": "the kernel's own shell (its events, get_ipython)",
                  "jupyter_core": "the kernel's Jupyter folders (the tracker leaves them out)",
                  "numpy": "seeded by --nbtest-seed, in a try/except ImportError"}
# The engine never imports pytest (the pytest face is nbtest/plugin/), save the commands that
# start a pytest session themselves (pytest.main), each imported inside the function.
PYTEST_ALLOWED = {"nbtest.cli": "`nbtest run` hands the notebooks to pytest.main",
                  "nbtest.affected.cmd": "`nbtest affected` runs a collection-only session"}
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


def runtime_imports(name: str, type_hints: bool = False) -> set[str]:
    """Every module (absolute dotted name) module `name` imports at run time, anywhere in its
    source: imports under `if TYPE_CHECKING:` are left out (type hints only) unless
    `type_hints`."""
    path = modules()[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test) \
                and not type_hints:
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] \
                if node.level else []
            found.add(".".join([*base, *([node.module] if node.module else [])]))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return found


def unit(name: str) -> str:
    """The subpackage a module belongs to (`nbtest.kernel`), or the flat module itself."""
    return ".".join(name.split(".")[:2])


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


def test_every_import_of_nbtest_names_a_module_that_exists() -> None:
    """A lazy import (inside a function) of a module moved or renamed fails only when it
    runs: each import naming an nbtest module is checked here, type hints included."""
    this_tests("na")  # the package's structure, not one API function
    wrong = sorted(f"{name} -> {target}" for name in modules()
                   for target in runtime_imports(name, type_hints=True)
                   if target.partition(".")[0] == "nbtest" and target not in modules())
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle_between_subpackages() -> None:
    """No subpackage (or flat module) reaches itself through another's imports: each can be
    read, and moved, knowing only those below it."""
    this_tests("na")  # the package's structure, not one API function
    graph: dict[str, set[str]] = {}
    for name in modules():
        graph.setdefault(unit(name), set()).update(
            unit(target) for target in imported_by(name) if unit(target) != unit(name))
    for targets in list(graph.values()):
        for target in targets:
            graph.setdefault(target, set())
    assert graph["nbtest.plugin"] >= {"nbtest.kernel"}  # the grouping groups
    assert cycles(graph) == []


def test_what_runs_in_the_kernel_imports_the_standard_library_alone() -> None:
    """nbtest/inkernel/ runs in every kernel, whatever the notebook's environment holds: it
    imports the standard library, its own modules and IN_KERNEL_ALSO's, never the harness."""
    this_tests("na")  # the package's structure, not one API function
    inside = [name for name in modules() if name.startswith(IN_KERNEL)]
    assert f"{IN_KERNEL}.startup" in inside
    wrong = sorted(f"{name} -> {target}" for name in inside
                   for target in runtime_imports(name) | imported_by(name)
                   if not (target == IN_KERNEL or target.startswith(f"{IN_KERNEL}.")
                           or target.partition(".")[0] in sys.stdlib_module_names
                           or target.partition(".")[0] in IN_KERNEL_ALSO))
    assert not wrong, "\n".join(wrong)


def test_the_engine_imports_no_pytest() -> None:
    """Only the pytest face (nbtest/plugin/) imports pytest (type hints aside), and the
    commands of PYTEST_ALLOWED that start a session themselves."""
    this_tests("na")  # the package's structure, not one API function
    assert "pytest" in runtime_imports("nbtest.plugin")  # the reader reads
    wrong = sorted(f"{name} -> {target}" for name in modules()
                   if not name.startswith("nbtest.plugin") and name not in PYTEST_ALLOWED
                   for target in runtime_imports(name)
                   if target.partition(".")[0] in ("pytest", "_pytest", "xdist"))
    assert not wrong, "\n".join(wrong)


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


def benchmark_imports(path: Path) -> set[str]:
    """The nbbench modules that benchmarks/nbbench/PATH imports, type-checking ones included
    (`from .x import`, `from . import x`)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found.update([node.module] if node.module else [a.name for a in node.names])
    return found


def test_no_import_cycle_in_the_benchmarks() -> None:
    """benchmarks/nbbench's modules import each other in one direction, type hints included
    (the report and its figures read a measurement; the command runs one and reports it)."""
    this_tests("na")  # the benchmark scripts' structure, not one API function
    folder = REPO / "benchmarks" / "nbbench"
    names = {p.stem for p in folder.glob("*.py")}
    graph = {name: benchmark_imports(folder / f"{name}.py") & names for name in names}
    assert "report" in graph["compare"]  # the reader reads
    assert cycles(graph) == []


# Scripts whose import does their work, by design: only what they import is checked.
RUNS_AT_IMPORT = {"floor_plugin": "a `-p` plugin that spawns its kernel the moment it loads"}


@pytest.mark.parametrize("script", sorted(p.stem for p in (REPO / "benchmarks").glob("*.py")))
def test_each_benchmark_script_imports(script: str) -> None:
    """Each benchmarks/*.py imports (benchmarks/ on sys.path, nothing run): a rename in nbtest
    that a benchmark still names is found here, not at the next measurement. A script of
    RUNS_AT_IMPORT is not imported: each module it imports is, and each name it takes."""
    this_tests("na")  # the benchmark scripts' structure, not one API function
    code = f"import {script}"
    if script in RUNS_AT_IMPORT:
        tree = ast.parse((REPO / "benchmarks" / f"{script}.py").read_text(encoding="utf-8"))
        code = "; ".join(
            f"import {a.name}" if isinstance(node, ast.Import)
            else f"from {node.module} import {a.name}"
            for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))
            and getattr(node, "module", None) != "__future__"
            for a in node.names)
    proc = subprocess.run([sys.executable, "-c", f"import sys; sys.path.insert(0, 'benchmarks')"
                           f"; {code}"], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stderr
