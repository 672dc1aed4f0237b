"""What a run produced: CellResult per cell, NotebookResult per notebook (frozen, picklable)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Cell statuses.
PASSED, FAILED, SKIPPED, TIMEOUT, DIED, NOT_RUN = (
    "passed", "failed", "skipped", "timeout", "died", "not run")
# error_name of a cell that ran cleanly but failed a callback's check (outputs, memory).
CHECK_FAILED = "CheckFailed"
# Notebook statuses.
NB_PASSED, NB_FAILED, NB_SKIPPED, NB_ERROR = "passed", "failed", "skipped", "error"


@dataclass(frozen=True)
class CellResult:
    """One cell as it ran: number from 1 counting every cell of the input file."""

    number: int
    index: int  # position in the executed notebook (0-based)
    source: str
    status: str
    duration: float = 0.0
    execution_count: int | None = None
    error_name: str | None = None
    error_value: str | None = None
    traceback: tuple[str, ...] = ()
    output_tail: str = ""
    injected: bool = False  # the injected-parameters cell
    detail: str = ""  # timeout limit, exit code or signal of a dead kernel, ...

    @property
    def failed(self) -> bool:
        """Whether this cell made the notebook fail."""
        return self.status in (FAILED, TIMEOUT, DIED)

    @property
    def label(self) -> str:
        """How reports name the cell: `cell 7`."""
        if self.injected:
            return (f"cell {self.number} (injected parameters)" if self.number
                    else "the injected parameters cell")
        return f"cell {self.number}"


@dataclass(frozen=True)
class NotebookResult:
    """One notebook run: status, timing, per-cell results and the executed notebook."""

    path: str
    status: str
    duration: float
    cells: tuple[CellResult, ...] = ()
    notebook: Any = None  # the executed nbformat notebook, nothing of nbtest's injected
    reason: str = ""  # why skipped, or the harness error
    kernel_name: str = ""
    extras: dict[str, Any] = field(default_factory=dict)  # filled by callbacks (memory, ...)

    @property
    def passed(self) -> bool:
        """Whether the notebook passed."""
        return self.status == NB_PASSED

    @property
    def failed_cell(self) -> CellResult | None:
        """The cell that failed the notebook, if one did."""
        return next((c for c in self.cells if c.failed), None)

    def slowest(self, n: int = 3) -> list[CellResult]:
        """The `n` slowest cells that ran."""
        ran = [c for c in self.cells if c.status not in (SKIPPED, NOT_RUN)]
        return sorted(ran, key=lambda c: c.duration, reverse=True)[:n]
