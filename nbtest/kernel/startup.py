"""The startup code: run silently in each kernel before the first cell.

It is built from data: the source of `_nbtest_startup` (inkernel/startup.py: what it does in
the kernel, and what it imports there) as a string literal exec() runs, plus its settings as a
JSON string literal (`repr` of `json.dumps`), so no path or metadata value can inject code.
"""

from __future__ import annotations

import inspect
import json
from functools import lru_cache
from typing import Any

from ..inkernel.startup import _nbtest_startup


@lru_cache(maxsize=1)
def _source() -> str:
    return inspect.getsource(_nbtest_startup)


def startup_code(settings: dict[str, Any]) -> str:
    """The code to run in the kernel for these settings (JSON-serialisable data only).

    The function's source goes as one string literal to exec(): IPython transforms a cell
    line by line and node by node before compiling it, which for ~80 lines costs a few
    milliseconds per kernel; a one-line cell costs it next to nothing."""
    literal = repr(json.dumps(settings))
    return f"exec({_source()!r})\n_nbtest_startup({literal})\ndel _nbtest_startup\n"
