"""The one kernel a notebook's cell items share (--nbtest-cells), owned by the notebook's
collector node (NotebookFile): opened by the first cell item's setup, closed by the
collector's teardown, so pytest's SetupState closes it in order after the file's last item,
and at session end after `-x`, Ctrl-C or an internal error.
"""

from __future__ import annotations

import contextlib
from typing import Any

import pytest

from ..errors import NbTestError, NotebookFailed
from ..results import NB_FAILED, NOT_RUN
from .items import HookCallback, skip_here
from .state import CALLBACKS_KEY

# Set once pytest's session finishes: a teardown from then on (after -x, Ctrl-C, an internal
# error) abandons the kernel, as the run was cut short; it publishes no result.
ENDING_KEY = pytest.StashKey[bool]()


class CellKernel:
    """The kernel of one notebook's cell items, with what they learnt from it: each cell's
    latest verdict, and a start failure (reported once, at the first cell item)."""

    def __init__(self, file: Any) -> None:
        self.file = file  # the NotebookFile that owns it
        self.session: Any = None  # the NotebookSession, while one is open
        self.hook: HookCallback | None = None
        self.start_error: NbTestError | None = None
        self.verdicts: dict[int, bool] = {}  # cell number -> its item's latest attempt failed

    def _open(self, item: pytest.Item) -> Any:
        """A fresh kernel for this notebook's cell items, started and answering."""
        from jupyter_core.utils import run_sync

        from ..execute import NotebookSession

        if self.start_error is not None:  # reported once, at the first cell item
            skip_here("the notebook's kernel did not start: "
                      f"{self.start_error.message[:200]}")
        self.hook = HookCallback(item)
        config = item.config
        session = NotebookSession(self.file.plan,
                                  [*config.stash.get(CALLBACKS_KEY, []), self.hook])
        with contextlib.ExitStack() as ending:
            ending.enter_context(session)  # a failed start, or Ctrl-C during it, ends it
            try:
                run_sync(session.start)()
            except NbTestError as exc:
                self.start_error = exc
                raise
            ending.pop_all()  # started: close() ends it, at the file's teardown
        self.session = session
        return session

    def indices_of(self, number: int) -> list[int]:
        """The executed indices of cell `number` (its injected-parameters cell too)."""
        plan = self.file.plan
        return [index for index, n in enumerate(plan.numbers)
                if n == number and plan.notebook.cells[index].cell_type == "code"]

    def before(self, item: Any) -> Any:
        """The kernel in the state the cells before `item`'s leave, as a whole run would.

        The open kernel is reused while it has run only earlier cells, all passed; otherwise
        (a rerun, a cell selected alone, a reordered session) a fresh kernel is started. The
        earlier cells not yet run are run here, as the item's setup. One of them failing
        skips the item, as in a whole run, when that cell's own item reported the failure;
        otherwise the item errors with that cell's report, so no failure goes unseen.
        """
        from jupyter_core.utils import run_sync

        session = self.session
        first = self.indices_of(item.number)[0]
        if session is not None and (max(session.cells, default=-1) >= first or (
                session.failed_cell is not None
                and not self.verdicts.get(session.failed_cell.number))):
            self.close()  # it ran this cell or a later one: start again
            session = None
        if session is None:
            session = self._open(item)
        assert self.hook is not None
        self.hook.item = item  # hooks name the item whose setup or test runs
        session.outer_limit = item.outer_limit
        for index in session.code_cells:
            if session.failed_cell or session.skipped_by or index >= first:
                break
            if index not in session.cells:
                run_sync(session.run_cell)(index)
        if session.skipped_by is not None and session.skipped_by.number != item.number:
            skip_here(f"{session.skipped_by.detail} (cell {session.skipped_by.number})")
        failed = session.failed_cell
        if failed is not None and failed.number != item.number:
            if self.verdicts.get(failed.number):
                skip_here(f"cell {failed.number} failed")
            from ..failure_text import cell_failure_text

            raise NotebookFailed(
                f"cell {item.number} did not run: cell {failed.number}, which runs before it, "
                f"failed.\n\n{cell_failure_text(failed, str(session.plan.path))}",
                path=str(session.plan.path))
        return session

    def close(self) -> None:
        """Stop the kernel. After the file's last item ran, publish its result (save-failed,
        updated outputs); once the session is ending (cut short), only kill it."""
        session, self.session = self.session, None
        if session is None:
            return
        with session:  # the kernel is gone when this block is left, whatever happens in it
            if self.file.config.stash.get(ENDING_KEY, False):
                return
            result = session.finish()
        if result.status == NB_FAILED and self.hook is not None:
            self.hook.item.save_failed(result)  # type: ignore[attr-defined]
        elif (result.passed and session.plan.config.update_outputs
              and all(cell.status != NOT_RUN for cell in result.cells)):
            from ..outputs.update import write_updated_outputs

            write_updated_outputs(session.plan.path, result)
