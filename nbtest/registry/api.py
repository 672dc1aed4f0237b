"""`this_tests`: which API functions a test exercises, from `.py` tests and notebook cells.

`this_tests(learn.fit, "pkg.mod.func", "na")` resolves each argument to a fully qualified
name, checks it against the configured API packages, and hands the names to the recorder of
the running test: the pytest plugin installs one per `.py` test, the kernel startup code one
per notebook (inkernel/recorder.py, which holds the slot). Without a recorder (no registry
configured) it only validates its arguments.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import re
from collections.abc import Sequence
from typing import Any

from ..errors import ThisTestsError
from ..inkernel.recorder import current_recorder

NOT_APPLICABLE = "na"
_DOTTED = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*$")


def _not_a_function(func: Any) -> ThisTestsError:
    return ThisTestsError(f"'{func}' is not a function", func=str(func))


def _resolve_string(text: str) -> Any:
    """Import the longest importable module prefix of `text`, then follow attributes."""
    if not _DOTTED.match(text):
        raise _not_a_function(text)
    parts = text.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        try:
            for attr in parts[cut:]:
                obj = getattr(obj, attr)
        except AttributeError:
            raise _not_a_function(text) from None
        return obj
    raise _not_a_function(text)


def qualified_name(func: Any) -> str:
    """`pkg.mod.Class.method` for a callable or a dotted string; raises ThisTestsError."""
    shown = func
    if isinstance(func, str):
        func = _resolve_string(func)
    if isinstance(func, property):
        func = func.fget
    if isinstance(func, functools.partial) or not callable(func):
        raise _not_a_function(shown)
    func = inspect.unwrap(getattr(func, "__func__", func))  # bound methods, then @wraps
    module = getattr(func, "__module__", None)
    qualname = getattr(func, "__qualname__", None)
    if not module or not qualname or "<locals>" in qualname or "<lambda>" in qualname:
        raise _not_a_function(shown)
    return f"{module}.{qualname}"


def in_api(name: str, api: Sequence[str]) -> bool:
    """Whether `name` lies in one of the `api` packages (every name, when none is set)."""
    return not api or any(name == pkg or name.startswith(pkg + ".") for pkg in api)


def resolve_all(funcs: Sequence[Any], api: Sequence[str]) -> list[str]:
    """The qualified names of `funcs` ("na" dropped, duplicates once), checked against `api`."""
    names: list[str] = []
    for func in funcs:
        if isinstance(func, str) and func == NOT_APPLICABLE:
            continue
        name = qualified_name(func)
        if not in_api(name, api):
            shown = func if isinstance(func, str) else name  # not `<function f at 0x...>`
            raise ThisTestsError(f"'{shown}' is not in the {', '.join(api)} API",
                                 func=str(func), api=list(api))
        if name not in names:
            names.append(name)
    return names


def this_tests(*funcs: Any) -> None:
    """Declare the API functions this test exercises (callables, dotted strings or "na")."""
    recorder = current_recorder()
    names = resolve_all(funcs, recorder.api if recorder is not None else ())
    if recorder is not None:
        recorder.record(names)


class TestRecorder:
    """Collects the names of one `.py` test (installed by the pytest plugin)."""

    def __init__(self, api: Sequence[str]) -> None:
        self.api = tuple(api)
        self.names: list[str] = []
        self.called = False

    def record(self, names: list[str]) -> None:
        """Keep the names, once each."""
        self.called = True
        self.names += [n for n in names if n not in self.names]


def show_tests(func: Any, registry: str | None = None) -> Any:
    """Show (Markdown in a notebook) the tests that exercise `func`, with commands to run them."""
    from .file import Registry, find_registry_path, format_entries

    name = qualified_name(func)
    path = registry or find_registry_path()
    entries = Registry.load(path).entries.get(name, []) if path else []
    text = format_entries(name, entries)
    try:
        from IPython.display import Markdown
    except ImportError:
        return text
    return Markdown(text)
