"""Per-cell durations, and the slowest cells for summaries."""

from __future__ import annotations

from ..callback import Callback, NotebookRun
from ..results import NOT_RUN, SKIPPED, CellResult, CellTimings, NotebookResult


class TimingCallback(Callback):
    """Records each cell's wall time; puts `timings` and `slowest` into the result's extras."""

    def __init__(self, slowest: int = 3) -> None:
        self.slowest = slowest
        self.timings: dict[int, float] = {}

    def on_notebook_start(self, run: NotebookRun) -> None:
        """Start a fresh table for this notebook."""
        self.timings = {}

    def on_cell_end(self, run: NotebookRun, result: CellResult) -> None:
        """Keep the duration of each cell that ran."""
        if result.status not in (SKIPPED, NOT_RUN):
            self.timings[result.number] = result.duration

    def on_notebook_end(self, run: NotebookRun, result: NotebookResult) -> None:
        """Publish the table and the slowest cells."""
        ranked = sorted(self.timings.items(), key=lambda item: item[1], reverse=True)
        CellTimings(dict(self.timings), ranked[: self.slowest]).put(result.extras)


def format_slowest(slowest: list[tuple[int, float]]) -> str:
    """`cell 4 2.01s, cell 2 0.30s` for a summary line."""
    return ", ".join(f"cell {number} {seconds:.2f}s" for number, seconds in slowest)
