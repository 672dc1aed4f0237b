"""Notebooks and outputs as the tests write and read them.

- `write_notebook(path, cells, metadata=None, kernel="python3")` writes an nbformat 4 notebook
  (modelled on nbmake's pytester helper; conftest's `make_notebook` fixture writes under tmp_path);
- `stored(source, outputs, count)`, `stream(text)`, `result_output(text, count)`,
  `error_output(ename, evalue)`: cells and outputs as a notebook saved after a run holds them;
- `read_notebook(path)`, `cell_text(cell)`: a notebook read back, a cell's text output.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Union

import nbformat

CellSpec = Union[str, tuple, dict]


def _cell(spec: CellSpec) -> nbformat.NotebookNode:
    """A cell from a string (code), a (type, source[, tags]) tuple or a dict."""
    if isinstance(spec, str):
        return nbformat.v4.new_code_cell(spec)
    if isinstance(spec, tuple):
        kind, source, *rest = spec
        spec = {"cell_type": kind, "source": source, "tags": rest[0] if rest else None}
    spec = dict(spec)
    kind = spec.pop("cell_type", "code")
    source = spec.pop("source", "")
    metadata = dict(spec.pop("metadata", None) or {})
    tags = spec.pop("tags", None)
    if tags:
        metadata["tags"] = list(tags)
    new = {"code": nbformat.v4.new_code_cell, "markdown": nbformat.v4.new_markdown_cell,
           "raw": nbformat.v4.new_raw_cell}[kind]
    return new(source, metadata=metadata, **spec)


def write_notebook(path: Path, cells: Sequence[CellSpec], metadata: dict | None = None,
                   kernel: str | None = "python3") -> Path:
    """Write an nbformat 4 notebook with these cells to `path` and return the path."""
    nb = nbformat.v4.new_notebook()
    if kernel is not None:
        nb.metadata["kernelspec"] = {"name": kernel, "display_name": kernel,
                                     "language": "python"}
    nb.metadata.update(metadata or {})
    nb.cells = [_cell(spec) for spec in cells]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


def read_notebook(path: str | Path) -> nbformat.NotebookNode:
    """The notebook at `path`, as nbformat reads it."""
    return nbformat.read(str(path), as_version=nbformat.NO_CONVERT)


def cell_text(cell: Any) -> str:
    """All stream and text/plain output of a cell, joined."""
    parts = []
    for output in cell.get("outputs", ()):
        if output.get("output_type") == "stream":
            parts.append(output.get("text", ""))
        elif "text/plain" in output.get("data", {}):
            parts.append(output["data"]["text/plain"] + "\n")
        elif output.get("output_type") == "error":
            parts.append(f"{output['ename']}: {output['evalue']}\n")
    return "".join(parts)


def error_output(ename: str, evalue: str) -> dict[str, Any]:
    """An `error` output as Jupyter stores it."""
    return {"output_type": "error", "ename": ename, "evalue": evalue,
            "traceback": [f"\x1b[0;31m{ename}\x1b[0m: {evalue}"]}


def stream(text: str) -> dict[str, Any]:
    """A stdout output as Jupyter stores it."""
    return {"output_type": "stream", "name": "stdout", "text": text}


def result_output(text: str, count: int) -> dict[str, Any]:
    """An execute_result output as Jupyter stores it."""
    return {"output_type": "execute_result", "execution_count": count, "metadata": {},
            "data": {"text/plain": text}}


def stored(source: str, outputs: list[dict[str, Any]], count: int | None,
           tags: list[str] | None = None) -> dict[str, Any]:
    """A code cell as a notebook saved after an earlier run holds it."""
    return {"source": source, "outputs": [nbformat.from_dict(o) for o in outputs],
            "execution_count": count, "tags": tags}
