"""pytest nodes for notebooks: NotebookFile collects a NotebookItem, or one CellItem per cell.

Both item kinds run through the engine's NotebookSession; the plugin adds no second path.
"""

from __future__ import annotations

import os
import re
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .callback import Callback, NotebookRun
from .config import NbTestConfig, in_pytest_spelling
from .errors import NbTestError, NotebookFailed
from .notebook import is_skipped
from .plugin import CALLBACKS_KEY, CONFIG_KEY
from .pytest_reports import EXPORTS_NOT_RUN, KERNEL_START
from .results import NB_FAILED, NB_SKIPPED, NOT_RUN, SKIPPED, CellResult, NotebookResult

# Sessions of --nbtest-cells notebooks still open; closed at session end whatever happened.
OPEN_SESSIONS: weakref.WeakSet[Any] = weakref.WeakSet()
# NotebookResult.extras shown as JUnit properties (and read back by --nbtest-mem-report).
RESULT_PROPERTIES = (("peak_rss_mib", "nbtest peak RSS MiB"),
                     ("peak_gpu_mib", "nbtest peak GPU MiB"),
                     ("peak_gpu_source", "nbtest peak GPU source"),
                     ("nbdev_exports_not_run", EXPORTS_NOT_RUN),
                     ("kernel_start", KERNEL_START))


class HookCallback(Callback):
    """Feeds the engine's events to the `pytest_nbtest_*` hooks."""

    order = 100

    def __init__(self, item: pytest.Item) -> None:
        self.item = item

    def on_notebook_start(self, run: NotebookRun) -> None:
        """Call pytest_nbtest_notebook_start."""
        self.item.ihook.pytest_nbtest_notebook_start(item=self.item, run=run)

    def on_cell_end(self, run: NotebookRun, result: CellResult) -> None:
        """Call pytest_nbtest_cell_executed."""
        self.item.ihook.pytest_nbtest_cell_executed(item=self.item, run=run, result=result)

    def on_notebook_end(self, run: NotebookRun, result: NotebookResult) -> None:
        """Call pytest_nbtest_notebook_done."""
        self.item.ihook.pytest_nbtest_notebook_done(item=self.item, run=run, result=result)


def _display_path(path: Path) -> Path:
    """The notebook path relative to the current directory when it is below it."""
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


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
        from .notebook import load_notebook, notebook_settings

        try:
            nb = load_notebook(_display_path(self.path))
            settings = notebook_settings(nb, _display_path(self.path))
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
            from .nbdev import notebook_flags, skips_exec
            from .plugin import note_left_out

            if skips_exec(nb):
                note_left_out(self.config, self.path, "its front matter says skip_exec: true")
                return
            flags = notebook_flags([c for c in nb.cells if c.cell_type == "code"],
                                   config.tst_flags)
        items: list[_NotebookItemBase]
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

        from .execute import NotebookSession, plan_notebook

        if self.nb_start_error is not None:  # reported once, at the first cell item
            _skip_here("the notebook's kernel did not start: "
                       f"{self.nb_start_error.message[:200]}")
        plan = plan_notebook(_display_path(self.path), self.session_config,
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
            _skip_here(f"{session.skipped_by.detail} (cell {session.skipped_by.number})")
        failed = session.failed_cell
        if failed is not None and failed.number != item.number:
            if self.verdicts.get(failed.number):
                _skip_here(f"cell {failed.number} failed")
            from .report import cell_failure_text

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
                from .update_outputs import write_updated_outputs

                write_updated_outputs(session.plan.path, result)
        finally:
            session.close()


class _ReportsNbTestErrors:
    """nbtest's own errors are reported as their one paragraph, in every phase (pytest formats
    setup and teardown errors with _repr_failure_py, the call phase with repr_failure)."""

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> Any:
        """The error's paragraph (for a failed notebook: report.py's text), else a traceback."""
        if isinstance(excinfo.value, NbTestError):
            return in_pytest_spelling(excinfo.value.message)
        return super().repr_failure(excinfo)  # type: ignore[misc]

    def _repr_failure_py(self, excinfo: pytest.ExceptionInfo[BaseException],
                         style: Any = None) -> Any:
        if isinstance(excinfo.value, NbTestError):
            return in_pytest_spelling(excinfo.value.message)
        return super()._repr_failure_py(excinfo, style)  # type: ignore[misc]


class UnreadableNotebook(_ReportsNbTestErrors, pytest.Item):
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


class _NotebookItemBase(_ReportsNbTestErrors, pytest.Item):
    """What both item kinds share: the report and the callbacks."""

    nbconfig: NbTestConfig  # the notebook's resolved options, set at collection
    outer_limit: tuple[float, str] | None = None  # a deadline from outside (timeout_bridge)

    def callbacks(self) -> list[Callback]:
        """The session's callbacks plus the pytest hook feeder for this item."""
        return [*self.config.stash.get(CALLBACKS_KEY, []), HookCallback(self)]

    def reportinfo(self) -> tuple[Path, int, str]:
        """Where pytest says the test is: a cell item at its cell's first source line in the
        file. The domain is the name within the file, as a function's is (`cell[3]`; pytest
        and pytest-sugar print `path::domain`); a notebook's must not end the node id, or
        pytest would turn the dots of `x.ipynb` into `::`, taking it for `Class.method`."""
        if isinstance(self, CellItem):
            return self.path, self.parent.source_line(self.number), self.name  # type: ignore[union-attr]
        return self.path, 0, f"{self.path.name} (notebook)"

    def save_failed(self, result: NotebookResult) -> None:
        """Write the executed copy of a failing notebook to --nbtest-save-failed DIR."""
        folder = self.config.stash[CONFIG_KEY].save_failed
        if not folder or result.notebook is None:
            return
        import nbformat

        from .files import write_atomic

        name = re.sub(r"[^\w.-]+", "_", self.nodeid.split("::")[0])
        write_atomic(Path(folder) / name, nbformat.writes(result.notebook))

    def record(self, cells: tuple[CellResult, ...], extras: dict[str, Any] | None = None) -> None:
        """Per-cell durations, memory peaks and the kernel's start method as JUnit properties
        (user_properties travel with the report, also from xdist workers)."""
        for cell in cells:
            if cell.execution_count:
                self.user_properties.append((f"cell {cell.number} seconds",
                                             f"{cell.duration:.3f}"))
        for key, name in RESULT_PROPERTIES:
            if (extras or {}).get(key) is not None:
                self.user_properties.append((name, str(extras[key])))  # type: ignore[index]


class NotebookItem(_NotebookItemBase):
    """One notebook as one test."""

    def __init__(self, *, notebook: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.notebook = notebook
        self.next_item: pytest.Item | None = None  # set by the plugin before the run
        self.prewarmed: Any = None  # a NotebookSession whose kernel is already booting

    def new_session(self) -> Any:
        """The NotebookSession for this notebook (the pre-warmed one, if any)."""
        from .execute import NotebookSession, plan_notebook

        session, self.prewarmed = self.prewarmed, None
        if session is None:
            parent: Any = self.parent
            plan = plan_notebook(_display_path(self.path), parent.session_config,
                                 notebook=self.notebook)
            session = NotebookSession(plan, self.callbacks())
        self.notebook = None  # the plan holds its own copy; keep the harness small
        return session

    async def prewarm_next(self, session: Any, early: bool) -> None:
        """Launch the next notebook's kernel now, so it boots while this one runs.

        `early` (this kernel's process was just launched, it has not answered yet): only a
        forked kernel lets the next one boot alongside it; two normal spawns at once on two
        cores would slow both and the fork template's own start (it is asked again later).
        """
        if early and session.kernel.start_method != "fork":
            return
        nxt = self.next_item
        if (isinstance(nxt, NotebookItem) and nxt.prewarmed is None
                and nxt.notebook is not None and not nxt.get_closest_marker("skip")):
            session = nxt.new_session()
            nxt.prewarmed = session
            OPEN_SESSIONS.add(session)
            try:
                await session.launch()
            except NbTestError:
                nxt.prewarmed = None  # the next item reports its own start failure
                OPEN_SESSIONS.discard(session)

    def runtest(self) -> None:
        """Run the notebook in a fresh kernel; fail with the report of its failing cell."""
        from jupyter_core.utils import run_sync

        from .report import failure_text

        session = self.new_session()
        session.outer_limit = self.outer_limit
        OPEN_SESSIONS.add(session)
        try:
            result = run_sync(session.run_all)(
                lambda: self.prewarm_next(session, early=True),
                lambda: self.prewarm_next(session, early=False))
        finally:
            # A KeyboardInterrupt out of the event loop skips run_all's own clean-up.
            session.close()
            OPEN_SESSIONS.discard(session)
        self.record(result.cells, result.extras)
        if result.status == NB_SKIPPED:  # a cell called pytest.skip()
            _skip_here(result.reason)
        if result.status == NB_FAILED:
            self.save_failed(result)
            failed = result.failed_cell
            raise NotebookFailed(failure_text(result, color=_color(self.config)),
                                 path=str(session.plan.path),
                                 cell=failed.number if failed is not None else None)
        if session.plan.config.update_outputs and result.passed:
            from .update_outputs import write_updated_outputs

            write_updated_outputs(session.plan.path, result)

    def drop_prewarmed(self) -> None:
        """Kill a pre-warmed kernel this item never used (it was skipped or not run)."""
        if self.prewarmed is not None:
            self.prewarmed.close()
            OPEN_SESSIONS.discard(self.prewarmed)
            self.prewarmed = None


class CellItem(_NotebookItemBase):
    """One code cell, tested in the state its notebook's earlier cells leave: whatever runs it
    (in order, alone, rerun, shuffled, split), the earlier cells run first, as its setup."""

    def __init__(self, *, number: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.number = number

    def setup(self) -> None:
        """Bring the notebook's kernel to the state just before this cell."""
        self.parent.kernel_before(self)  # type: ignore[union-attr]

    def runtest(self) -> None:
        """Run this cell (and an injected-parameters cell that belongs to it)."""
        from jupyter_core.utils import run_sync

        from .report import cell_failure_text

        parent: Any = self.parent
        session = parent.kernel_before(self)
        for index in parent.indices_of(self.number):
            result = run_sync(session.run_cell)(index)
            self.record((result,), {"kernel_start": session.kernel.start_method})
            parent.verdicts[self.number] = result.failed
            if session.skipped_by is result:  # the cell called pytest.skip()
                _skip_here(result.detail)
            if result.status == SKIPPED:  # a skip tag or marker, or nothing to run
                _skip_here("skipped by its tag or marker" if is_skipped(
                    session.plan.notebook.cells[index]) else "an empty cell")
            if result.failed:
                raise NotebookFailed(cell_failure_text(result, str(session.plan.path),
                                                       _color(self.config)))

    def finish_unless_followed(self, nextitem: pytest.Item | None) -> None:
        """After the notebook's last cell item, stop the kernel and publish the result."""
        if nextitem is None or nextitem.parent is not self.parent:
            self.parent.close_kernel()  # type: ignore[union-attr]


def _skip_here(reason: str) -> None:
    """Skip the running item, reported at the item's own location (its cell in the notebook),
    as pytest's skip markers are, not at this line of nbtest."""
    raise pytest.skip.Exception(reason, _use_item_location=True)


def close_open_sessions() -> None:
    """Kill the kernels of per-cell notebooks left open (Ctrl-C, -x, deselection)."""
    for session in list(OPEN_SESSIONS):
        session.close()
    OPEN_SESSIONS.clear()


def _color(config: pytest.Config) -> bool:
    return config.getoption("color", "auto") == "yes" or os.environ.get("PY_COLORS") == "1"
