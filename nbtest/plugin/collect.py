"""The pytest collector of a notebook file: NotebookFile yields a NotebookItem, or one CellItem
per cell, and for cell items keeps the one kernel they share (earlier cells run as setup).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..config import NbTestConfig, in_pytest_spelling
from ..errors import NbTestError, NotebookFailed
from ..results import NB_FAILED, NOT_RUN
from .items import (
    OPEN_SESSIONS,
    CellItem,
    HookCallback,
    NotebookItem,
    ReportsNbTestErrors,
    display_path,
    skip_here,
)
from .state import CALLBACKS_KEY, CONFIG_KEY

# nbval's NotebookFile.skip_compare: what its users' conftests extend in pytest_collectstart
# (`collector.skip_compare += ('stderr',)`); what they add is not compared (skip_compare).
NBVAL_SKIP_COMPARE = ("metadata", "traceback", "prompt_number", "output_type", "name",
                      "execution_count", "application/vnd.jupyter.widget-view+json")

class NotebookFile(pytest.File):
    """A `.ipynb` file: read once here, then one item (or one per code cell)."""

    skip_compare: tuple[str, ...] = NBVAL_SKIP_COMPARE

    @property
    def session_config(self) -> NbTestConfig:
        """The options its notebook runs with, before its metadata: the session's, plus what
        a conftest set on this collector."""
        return self.__dict__.get("_session_config") or self.config.stash[CONFIG_KEY]

    @session_config.setter
    def session_config(self, value: NbTestConfig) -> None:
        self.__dict__["_session_config"] = value

    def collect(self) -> Iterator[pytest.Item]:
        """Load the notebook and yield its items, with markers from its metadata."""
        from ..notebook import load_notebook, notebook_settings

        try:
            nb = load_notebook(display_path(self.path))
            settings = notebook_settings(nb, display_path(self.path))
            added = [key for key in self.skip_compare if key not in NBVAL_SKIP_COMPARE]
            if added:  # an nbval conftest's pytest_collectstart extended it
                settings["skip_compare"] = (*settings.get("skip_compare", ()), *added)
                self.session_config = self.session_config.with_explicit(
                    skip_compare=settings["skip_compare"])
        except NbTestError as exc:
            # An error of this file alone: the rest of the session still runs.
            yield UnreadableNotebook.from_parent(self, name=self.path.name, nodeid=self.nodeid,
                                                 error=exc)
            return
        config = self.config.stash[CONFIG_KEY].with_notebook(settings)
        flags: set[str] = set()
        if config.nbdev:
            from ..nbdev import not_run, notebook_flags
            from .state import note_left_out

            try:
                why = not_run(nb, display_path(self.path))
            except NbTestError as exc:  # front matter that is not YAML
                yield UnreadableNotebook.from_parent(self, name=self.path.name,
                                                     nodeid=self.nodeid, error=exc)
                return
            if why:
                note_left_out(self.config, self.path, why)
                return
            flags = notebook_flags([c for c in nb.cells if c.cell_type == "code"],
                                   config.tst_flags)
        items: list[NotebookItem | CellItem]
        if config.cells:
            numbers = [i + 1 for i, c in enumerate(nb.cells) if c.cell_type == "code"]
            # An explicit node id: pytest 9 parses the cached ids of --lf / --sw / --deselect,
            # reading `[3]` as parameters; an id built by name would not compare equal.
            items = [CellItem.from_parent(self, name=f"cell[{n}]", number=n,
                                          nodeid=f"{self.nodeid}::cell[{n}]")
                     for n in numbers]
            self.notebook = nb
        else:
            items = [NotebookItem.from_parent(self, name=self.path.name, nodeid=self.nodeid,
                                              notebook=nb)]
        for item in items:
            item.nbconfig = config  # this notebook's resolved options (metadata included)
            for marker in (*config.markers, *sorted(flags)):
                item.add_marker(marker)
            if config.skip:
                item.add_marker(pytest.mark.skip(reason=config.skip))
            for flag in sorted(flags - set(config.flags)):  # nbdev_test skips it too
                item.add_marker(pytest.mark.skip(
                    reason=f"every cell is flagged {flag}: give --nbtest-flags {flag}"))
        yield from items

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> Any:
        """A load error is one paragraph naming the file; anything else, its traceback."""
        if isinstance(excinfo.value, NbTestError):
            return in_pytest_spelling(excinfo.value.message)
        return super().repr_failure(excinfo)

    # -- the kernel that this notebook's cell items share (--nbtest-cells) -----------------

    nb_session: Any = None  # the NotebookSession of the cell items, while one is open
    nb_hook: HookCallback | None = None
    nb_start_error: NbTestError | None = None
    verdicts: dict[int, bool]  # cell number -> its item's latest attempt failed

    def _open_kernel(self, item: CellItem) -> Any:
        """A fresh kernel for this notebook's cell items, started and answering."""
        from jupyter_core.utils import run_sync

        from ..execute import NotebookSession, plan_notebook

        if self.nb_start_error is not None:  # reported once, at the first cell item
            skip_here("the notebook's kernel did not start: "
                       f"{self.nb_start_error.message[:200]}")
        plan = plan_notebook(display_path(self.path), self.session_config,
                             notebook=self.notebook)
        self.nb_hook = HookCallback(item)
        session = NotebookSession(plan, [*self.config.stash.get(CALLBACKS_KEY, []),
                                         self.nb_hook])
        OPEN_SESSIONS.add(session)
        try:
            run_sync(session.start)()
        except NbTestError as exc:
            self.nb_start_error = exc
            OPEN_SESSIONS.discard(session)
            session.close()
            raise
        self.nb_session = session
        return session

    def source_line(self, number: int) -> int:
        """0-based line of cell `number`'s first source line in the file (read once)."""
        if not hasattr(self, "source_lines"):
            from .locations import source_lines

            try:
                self.source_lines = source_lines(self.path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError):
                self.source_lines = []
        lines = self.source_lines
        return lines[number - 1] if 0 < number <= len(lines) else 0

    def indices_of(self, number: int) -> list[int]:
        """The executed indices of cell `number` (its injected-parameters cell too)."""
        plan = self.nb_session.plan
        return [index for index, n in enumerate(plan.numbers)
                if n == number and plan.notebook.cells[index].cell_type == "code"]

    def kernel_before(self, item: CellItem) -> Any:
        """The kernel in the state the cells before `item`'s leave, as a whole run would.

        The open kernel is reused while it has run only earlier cells, all passed; otherwise
        (a rerun, a cell selected alone, a reordered session) a fresh kernel is started. The
        earlier cells not yet run are run here, as the item's setup. One of them failing
        skips the item, as in a whole run, when that cell's own item reported the failure;
        otherwise the item errors with that cell's report, so no failure goes unseen.
        """
        from jupyter_core.utils import run_sync

        session = self.nb_session
        if not hasattr(self, "verdicts"):
            self.verdicts = {}
        if session is not None:
            first = self.indices_of(item.number)[0]
            if max(session.cells, default=-1) >= first or (
                    session.failed_cell is not None
                    and not self.verdicts.get(session.failed_cell.number)):
                self.close_kernel()  # it ran this cell or a later one: start again
                session = None
        if session is None:
            session = self._open_kernel(item)
        assert self.nb_hook is not None
        self.nb_hook.item = item  # hooks name the item whose setup or test runs
        session.outer_limit = item.outer_limit
        first = self.indices_of(item.number)[0]
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
            from ..report import cell_failure_text

            raise NotebookFailed(
                f"cell {item.number} did not run: cell {failed.number}, which runs before it, "
                f"failed.\n\n{cell_failure_text(failed, str(session.plan.path))}",
                path=str(session.plan.path))
        return session

    def close_kernel(self) -> None:
        """Stop the cell items' kernel, publishing its result (save-failed, updated outputs)."""
        session, self.nb_session = self.nb_session, None
        if session is None:
            return
        OPEN_SESSIONS.discard(session)
        try:
            result = session.finish()
            items = [item for item in self.session.items if item.parent is self]
            if result.status == NB_FAILED and items:
                items[0].save_failed(result)  # type: ignore[attr-defined]
            elif (result.passed and session.plan.config.update_outputs
                  and all(cell.status != NOT_RUN for cell in result.cells)):
                from ..outputs.update import write_updated_outputs

                write_updated_outputs(session.plan.path, result)
        finally:
            session.close()

class UnreadableNotebook(ReportsNbTestErrors, pytest.Item):
    """A notebook that cannot be read: an error at setup, with the loader's message."""

    def __init__(self, *, error: NbTestError, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.error = error

    def setup(self) -> None:
        """Raise the load error, so pytest reports this file as an error."""
        raise self.error

    def runtest(self) -> None:
        """Never reached: setup raised."""

    def reportinfo(self) -> tuple[Path, int, str]:
        """Where pytest says the test is."""
        return self.path, 0, f"{self.nodeid} (notebook)"
