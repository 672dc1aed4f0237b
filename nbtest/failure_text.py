"""Failure text shared by every face: the headline, the source around the failing line, the
tail of the cell's output, and the traceback (ANSI codes removed unless colour is asked for)."""

from __future__ import annotations

import re

from .results import CHECK_FAILED, DIED, TIMEOUT, CellResult, NotebookResult

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# IPython names the cell's own frames "Cell In[3], line 5" (8.5+), "Input In [3], in <cell
# line: 5>()" (8.0-8.4); IPython 7's "<ipython-input-3-...>" frames give the line only in the
# "----> 5" arrow, the fallback.
_CELL_FRAME = re.compile(r"Cell In\[\d*\], line (\d+)|Input In \[\d*\], in <cell line: (\d+)>")
_ARROW = re.compile(r"^-+> ?(\d+)", re.MULTILINE)
SOURCE_LINES = 10
# What ipykernel raises for input() / getpass() when the client allows no stdin (nbtest never
# does: nobody is there to type); its traceback is ipykernel's internals, so it is not shown.
NO_STDIN = "StdinNotImplementedError"


def strip_ansi(text: str) -> str:
    """Text without terminal colour codes."""
    return ANSI.sub("", text)


def headline(cell: CellResult) -> str:
    """`cell 4: AssertionError: sum is 42`, `cell 2: timed out after ...`, `cell 2: kernel died`."""
    if cell.status in (TIMEOUT, DIED):
        return f"{cell.label}: {cell.detail}"
    if cell.error_name == "NoError":
        return f"{cell.label}: expected an error: {cell.detail}"
    if cell.error_name == CHECK_FAILED:
        return f"{cell.label}: {cell.detail.splitlines()[0]}"
    if cell.error_name == NO_STDIN:
        return (f"{cell.label}: input() asks for stdin, but notebooks run without it: give the "
                "value as a parameter instead (a cell tagged `parameters`, set with -p NAME VALUE)")
    value = strip_ansi(cell.error_value or "").strip().splitlines()
    return f"{cell.label}: {cell.error_name}" + (f": {value[0]}" if value else "")


def failing_line(cell: CellResult) -> int | None:
    """The line of the cell's source where the error was raised, from the traceback."""
    text = strip_ansi("\n".join(cell.traceback))
    lines = [int(m.group(1) or m.group(2)) for m in _CELL_FRAME.finditer(text)]
    if not lines and "<ipython-input-" in text:
        lines = [int(m.group(1)) for m in _ARROW.finditer(text.split("<ipython-input-")[-1])]
    return lines[-1] if lines else None


def source_excerpt(cell: CellResult, around: int | None) -> str:
    """Up to SOURCE_LINES lines of source, the failing one marked with `-->`."""
    lines = cell.source.splitlines()
    if around is None or not 1 <= around <= len(lines):
        start, around = 0, None
    else:
        start = max(0, min(around - SOURCE_LINES // 2, len(lines) - SOURCE_LINES))
    shown = []
    for number in range(start + 1, min(start + SOURCE_LINES, len(lines)) + 1):
        mark = "-->" if number == around else "   "
        shown.append(f"{mark} {number:3d} | {lines[number - 1]}")
    if start + SOURCE_LINES < len(lines):
        shown.append(f"    ... {len(lines) - start - SOURCE_LINES} more lines")
    return "\n".join(shown)


def cell_failure_text(cell: CellResult, path: str = "", color: bool = False) -> str:
    """The whole report for one failing cell."""
    count = f" (In [{cell.execution_count}])" if cell.execution_count else ""
    parts = [headline(cell), "", f"{path} {cell.label}{count}:".strip(),
             source_excerpt(cell, failing_line(cell))]
    if cell.error_name == CHECK_FAILED and "\n" in cell.detail:
        parts += ["", cell.detail.split("\n", 1)[1].rstrip()]
    if cell.output_tail.strip():
        parts += ["", "output (last lines):", strip_ansi(cell.output_tail).rstrip()]
    if cell.traceback and cell.error_name != NO_STDIN:
        trace = "\n".join(cell.traceback)
        parts += ["", "traceback:", trace if color else strip_ansi(trace)]
    return "\n".join(parts)


def failure_text(result: NotebookResult, color: bool = False) -> str:
    """The report for a failed notebook; its first line is the failing cell's headline."""
    cell = result.failed_cell
    if cell is None:
        return f"{result.reason or result.status}\n\n{result.path}"
    others = [c for c in result.cells if c.failed and c is not cell]
    text = cell_failure_text(cell, result.path, color)
    if others:  # cells whose outputs differed before the run stopped (or ended)
        text += "".join(f"\n\n{'-' * 20} also failed {'-' * 20}\n"
                        + cell_failure_text(other, result.path, color) for other in others)
    return text
