"""`nbtest registry show NAME | missing | list | check`: read the this_tests registry."""

from __future__ import annotations

import argparse
import importlib
import inspect
import pkgutil
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from ..config import NbTestConfig, project_layer
from ..errors import ThisTestsError, UsageError
from .api import qualified_name
from .file import Registry, find_project_root, format_entries


def add_parser(commands: Any) -> None:
    """Register the `registry` subcommand."""
    parser = commands.add_parser("registry", help="read the this_tests registry")
    verbs = parser.add_subparsers(dest="verb", required=True, parser_class=type(parser))
    show = verbs.add_parser("show", help="the tests that exercise NAME, with their commands")
    show.add_argument("name", help="a fully qualified function name, e.g. pkg.mod.func")
    verbs.add_parser("missing", help="public API functions that no test names")
    verbs.add_parser("list", help="every function in the registry with its number of tests")
    verbs.add_parser("check", help="exit 1 if the registry names functions that no longer exist")


def _project() -> tuple[Path, NbTestConfig]:
    root = find_project_root() or Path.cwd()
    config = NbTestConfig(project=project_layer(root))
    # The API packages are imported from the project, as pytest's rootdir would allow.
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    for package in config.api:
        try:
            importlib.import_module(package)
        except ImportError as exc:
            raise UsageError(f"cannot import the API package {package!r} ({exc}); install the "
                             "project (pip install -e .) or set PYTHONPATH") from None
    if not config.registry:
        raise UsageError(f"{root / 'pyproject.toml'}: no [tool.nbtest] registry is set; add "
                         'registry = "pkg/test_registry.json" and api = ["pkg"]')
    return root, config


def public_functions(packages: Sequence[str]) -> Iterator[str]:
    """Qualified names of the public functions, classes and methods of `packages`."""
    for package in packages:
        for module in _modules(package):
            public = getattr(module, "__all__", None)
            for name, obj in vars(module).items():
                if (name not in public) if public is not None else name.startswith("_"):
                    continue
                if getattr(obj, "__module__", None) != module.__name__:
                    continue  # re-exported: counted where it is defined
                if inspect.isfunction(obj):
                    yield f"{module.__name__}.{obj.__qualname__}"
                elif inspect.isclass(obj):
                    yield f"{module.__name__}.{obj.__qualname__}"
                    for attr, member in vars(obj).items():
                        if not attr.startswith("_") and inspect.isfunction(member):
                            yield f"{module.__name__}.{member.__qualname__}"


def _modules(package: str) -> Iterator[ModuleType]:
    root = importlib.import_module(package)
    yield root
    for info in pkgutil.walk_packages(getattr(root, "__path__", []), prefix=f"{package}."):
        try:
            yield importlib.import_module(info.name)
        except Exception:  # a module that cannot be imported has no testable API here
            continue


def run(args: argparse.Namespace) -> int:
    """Run a registry verb; 0 on success, 1 when `check` finds stale names."""
    root, config = _project()
    registry = Registry.load(root / config.registry)
    if args.verb == "show":
        name = args.name if args.name in registry.entries else _resolved(args.name)
        print(format_entries(name, registry.entries.get(name, [])))
    elif args.verb == "list":
        for name, entries in sorted(registry.entries.items()):
            print(f"{len(entries):4d}  {name}")
    elif args.verb == "missing":
        missing = sorted(set(public_functions(config.api)) - set(registry.entries))
        print("\n".join(missing) if missing else "every public API function has a test")
        print(f"{len(missing)} public functions, classes or methods without a test")
    else:
        stale = [name for name in sorted(registry.entries) if not _exists(name)]
        for name in stale:
            print(f"stale: {name} no longer exists (tests: "
                  f"{', '.join(sorted({e['file'] for e in registry.entries[name]}))})")
        print("the registry is up to date" if not stale else
              f"{len(stale)} stale name(s): run the full test suite to rebuild the registry")
        return 1 if stale else 0
    return 0


def _resolved(name: str) -> str:
    """The qualified name of `name` (a re-export resolves to where it is defined)."""
    try:
        return qualified_name(name)
    except ThisTestsError:
        return name


def _exists(name: str) -> bool:
    try:
        return qualified_name(name) is not None
    except ThisTestsError:
        return False
