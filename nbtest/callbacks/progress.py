"""A tqdm progress bar: cell i/N and the running cell's first line, on a terminal only."""

from __future__ import annotations

import sys
from typing import IO, Any

from ..callback import Callback, NotebookRun
from ..notebook import first_line
from ..results import CellResult, NotebookResult


class ProgressCallback(Callback):
    """Shows `cell i/N` and the cell's first line; silent when `stream` is not a terminal."""

    def __init__(self, stream: IO[str] | None = None, force: bool = False) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = force or bool(getattr(self.stream, "isatty", lambda: False)())
        self.bar: Any = None

    def on_notebook_start(self, run: NotebookRun) -> None:
        """Open a bar sized to the cells that will run."""
        if not self.enabled:
            return
        from tqdm import tqdm

        self.bar = tqdm(total=run.cells_to_run, desc=run.path.name, unit="cell",
                        file=self.stream, leave=False, dynamic_ncols=True)

    def on_cell_start(self, run: NotebookRun, number: int, source: str) -> None:
        """Show which cell runs now."""
        if self.bar is not None:
            self.bar.set_postfix_str(f"cell {number}: {first_line(source)[:40]}", refresh=True)

    def on_cell_end(self, run: NotebookRun, result: CellResult) -> None:
        """Advance by one cell."""
        if self.bar is not None:
            self.bar.update(1)

    def on_notebook_end(self, run: NotebookRun, result: NotebookResult) -> None:
        """Close the bar."""
        if self.bar is not None:
            self.bar.close()
            self.bar = None
