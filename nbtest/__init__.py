"""nbtest: run Jupyter notebooks as tests, through pytest, a CLI and a docs runner.

Names are imported lazily so that `import nbtest` (and the pytest plugin) stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "run_notebook": "nbtest.execute",
    "NbTestConfig": "nbtest.config",
    "Callback": "nbtest.callback",
    "NotebookRun": "nbtest.callback",
    "CellResult": "nbtest.results",
    "NotebookResult": "nbtest.results",
    "NbTestError": "nbtest.errors",
    "failure_text": "nbtest.failure_text",
    "this_tests": "nbtest.registry.api",
    "show_tests": "nbtest.registry.api",
    "open_notebook": "nbtest.handle",
    "NotebookHandle": "nbtest.handle",
    "Ref": "nbtest.refs",
    "KernelCodeError": "nbtest.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'nbtest' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
