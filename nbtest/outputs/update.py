"""Store the new outputs of compared cells in the input notebook, touching nothing else.

The file is read as plain JSON (key order kept) and only the `outputs` and `execution_count`
of the cells whose outputs differed are replaced; it is written back in the formatting it had
(nbformat's: indent 1, keys in file order, non-ASCII kept, a trailing newline), so the change
under version control is only those outputs. The write is atomic: temp file, then rename.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import NbTestError
from ..files import write_atomic
from ..notebook import cell_source
from ..results import NotebookResult, OutputCheckRecord

# (indent, ensure_ascii) tried in turn to reproduce the file's own formatting.
_FORMATS = ((1, False), (1, True), (2, False), (2, True), (4, False), (4, True))


def _dumps(data: Any, indent: int, ensure_ascii: bool) -> str:
    return json.dumps(data, indent=indent, ensure_ascii=ensure_ascii, separators=(",", ": "))


def file_format(text: str, data: Any) -> tuple[int, bool, bool]:
    """(indent, ensure_ascii, trailing newline) that reproduce `text` from `data`."""
    newline = text.endswith("\n")
    for indent, ensure_ascii in _FORMATS:
        if _dumps(data, indent, ensure_ascii) + ("\n" if newline else "") == text:
            return indent, ensure_ascii, newline
    return 1, False, True  # nbformat's own


def disk_outputs(outputs: list[Any]) -> list[Any]:
    """Outputs as nbformat writes them: multi-line text split into lists, keys sorted."""
    import nbformat
    from nbformat.v4.rwbase import split_lines

    nb = nbformat.v4.new_notebook()
    nb.cells.append(nbformat.v4.new_code_cell(outputs=nbformat.from_dict(outputs)))
    split = split_lines(nb).cells[0].outputs
    plain: list[Any] = json.loads(json.dumps(split, sort_keys=True))
    return plain


def write_updated_outputs(path: str | Path, result: NotebookResult) -> int:
    """Store the new outputs of the cells whose outputs differed; return how many were updated.

    Where the result holds no `outputs_differ` list, every compared cell is updated.
    """
    path = Path(path)
    check = OutputCheckRecord.of(result.extras)
    compared: dict[int, Any] = {int(k): v for k, v in check.compared.items()} if check else {}
    numbers = sorted(compared if check is None or check.differ is None else check.differ)
    if not numbers:
        return 0
    text = path.read_text(encoding="utf-8")
    data = json.loads(text)
    indent, ensure_ascii, newline = file_format(text, data)
    ran = {c.number: c for c in result.cells if not c.injected}
    cells = data.get("cells", [])
    for number in numbers:
        cell = cells[number - 1] if 0 < number <= len(cells) else None
        expected = ran.get(number)
        if (cell is None or cell.get("cell_type") != "code" or expected is None
                or cell_source(cell) != expected.source):
            raise NbTestError(f"{path}: cell {number} changed since the run; outputs not "
                              "updated. Run again to update them.", path=str(path), cell=number)
        cell["outputs"] = disk_outputs(compared[number])
        if "execution_count" in cell and expected.execution_count is not None:
            cell["execution_count"] = expected.execution_count
    write_atomic(path, _dumps(data, indent, ensure_ascii) + ("\n" if newline else ""))
    return len(numbers)
