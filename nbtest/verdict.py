"""Judging a cell from what the kernel sent back: passed, failed, skipped by the notebook, an
expected error; plus what reports show of it (the output's tail) and how a death is explained.

Pure functions over nbformat cells and reply messages: no kernel, no nbclient.
"""

from __future__ import annotations

from typing import Any

from nbformat import NotebookNode

from .notebook import expects_error
from .results import FAILED, PASSED, SKIPPED, CellResult

OUTPUT_TAIL_LINES = 20

SKIP_ERRORS = frozenset({"Skipped", "SkipTest"})  # pytest.skip(), unittest.SkipTest in a cell

def clear_outputs(cell: NotebookNode) -> None:
    """Empty a code cell that does not run: the executed copy shows this run only, as
    papermill writes it; outputs stored by an earlier run would read as this run's."""
    cell.outputs = []
    cell.execution_count = None

def output_tail(cell: NotebookNode, lines: int = OUTPUT_TAIL_LINES) -> str:
    """The last lines of a cell's text output, for reports."""
    parts: list[str] = []
    for output in cell.get("outputs", ()):
        if output.get("output_type") == "stream":
            parts.append(output.get("text", "")[-20000:])
        elif "data" in output and "text/plain" in output["data"]:
            parts.append(str(output["data"]["text/plain"])[-20000:] + "\n")
    return "\n".join("".join(parts).splitlines()[-lines:])


def judge_cell(cell: NotebookNode, reply: dict[str, Any] | None, allow_errors: bool,
               **common: Any) -> CellResult:
    """The result of an executed cell: `common` holds the CellResult fields already known
    (number, source, duration, execution count, ...)."""
    content = (reply or {}).get("content", {})
    # An error can also come with an `ok` reply: a post-execute hook that raised (a
    # `post_run_cell` callback, matplotlib's inline backend drawing a bad figure) only
    # shows its traceback in the outputs. Either way the cell showed an error: it raised.
    shown = next((o for o in cell.get("outputs", ()) if o.get("output_type") == "error"), None)
    raised = content if content.get("status") == "error" else shown
    if raised is not None and raised.get("ename") in SKIP_ERRORS and not expects_error(cell):
        # pytest.skip("why") / unittest's SkipTest in a cell: the notebook stops, skipped.
        return CellResult(status=SKIPPED, error_name=raised.get("ename"),
                          detail=raised.get("evalue") or "skipped by the notebook", **common)
    if raised is not None:
        error = dict(error_name=raised.get("ename"), error_value=raised.get("evalue"),
                     traceback=tuple(raised.get("traceback", ())))
        ok = expects_error(cell) or allow_errors
        return CellResult(status=PASSED if ok else FAILED, **error, **common)
    if expects_error(cell):
        return CellResult(status=FAILED, error_name="NoError",
                          detail="the cell is tagged raises-exception but raised nothing",
                          **common)
    return CellResult(status=PASSED, **common)


def timeout_detail(elapsed: float, limit: tuple[float | None, str]) -> str:
    """`timed out after 2.0 s (limit 2 s)`, naming the limit that bound."""
    seconds, why = limit
    return f"timed out after {elapsed:.1f} s (limit {round(seconds or 0, 2):g} s{why})"
