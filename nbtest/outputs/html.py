"""An HTML copy of an executed notebook, through nbconvert (the `html` extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..files import write_atomic


def html_exporter() -> Any:
    """nbconvert's HTMLExporter class (the `html` extra), or a UsageError saying how to get it."""
    try:
        from nbconvert import HTMLExporter
    except ImportError:
        raise UsageError("--html needs nbconvert: pip install 'pytest-nbtest[html]' "
                         "(or pip install nbconvert)") from None
    return HTMLExporter


def write_html(notebook: Any, path: Path) -> None:
    """An HTML copy through nbconvert (the `html` extra)."""
    body, _ = html_exporter()().from_notebook_node(notebook)
    write_atomic(path, body)
