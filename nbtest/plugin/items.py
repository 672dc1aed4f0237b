"""pytest items for notebooks: a NotebookItem per notebook, or (--nbtest-cells) one CellItem
per cell sharing its file's kernel (collect.py makes them).

Both item kinds run through the engine's NotebookSession; the plugin adds no second path.
"""

from __future__ import annotations

import os
import re
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ..callback import Callback, NotebookRun
from ..config import in_pytest_spelling
from ..errors import NbTestError, NotebookFailed
from ..notebook import is_skipped
from ..results import NB_FAILED, NB_SKIPPED, SKIPPED, CellResult, NotebookResult
from .state import CALLBACKS_KEY, CONFIG_KEY, EXPORTS_NOT_RUN, KERNEL_START

if TYPE_CHECKING:
    from ..plan import Plan

# Pre-warmed sessions of notebook items still open; closed at session end whatever happened.
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


def display_path(path: Path) -> Path:
    """The notebook path relative to the current directory when it is below it."""
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


class ReportsNbTestErrors:
    """nbtest's own errors are reported as their one paragraph, in every phase (pytest formats
    setup and teardown errors with _repr_failure_py, the call phase with repr_failure)."""

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> Any:
        """The error's paragraph (for a failed notebook: failure_text.py's text), else a
        traceback."""
        if isinstance(excinfo.value, NbTestError):
            return in_pytest_spelling(excinfo.value.message)
        return super().repr_failure(excinfo)  # type: ignore[misc]

    def _repr_failure_py(self, excinfo: pytest.ExceptionInfo[BaseException],
                         style: Any = None) -> Any:
        if isinstance(excinfo.value, NbTestError):
            return in_pytest_spelling(excinfo.value.message)
        return super()._repr_failure_py(excinfo, style)  # type: ignore[misc]


class _NotebookItemBase(ReportsNbTestErrors, pytest.Item):
    """What both item kinds share: the notebook's plan, the report and the callbacks."""

    outer_limit: tuple[float, str] | None = None  # a deadline from outside (timeout_bridge)

    def __init__(self, *, plan: Plan, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.plan = plan  # the notebook resolved once, at collection (its options: plan.config)

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

        from ..files import write_atomic

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

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.next_item: pytest.Item | None = None  # set by the plugin before the run
        self.prewarmed: Any = None  # a NotebookSession whose kernel is already booting
        self.ran = False  # a session was made for it: too late to pre-warm one

    def new_session(self) -> Any:
        """The NotebookSession for this notebook (the pre-warmed one, if any)."""
        from ..execute import NotebookSession

        session, self.prewarmed = self.prewarmed, None
        if session is None:
            session = NotebookSession(self.plan, self.callbacks())
        self.ran = True
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
                and not nxt.ran and not nxt.get_closest_marker("skip")):
            session = nxt.new_session()
            nxt.prewarmed = session
            OPEN_SESSIONS.add(session)  # ended at session end, should its item never run
            try:
                await session.launch()  # its item's run_all enters it: `async with` ends it
            except NbTestError:
                nxt.prewarmed = None  # the next item reports its own start failure
                OPEN_SESSIONS.discard(session)
                session.close()

    def runtest(self) -> None:
        """Run the notebook in a fresh kernel; fail with the report of its failing cell."""
        from jupyter_core.utils import run_sync

        from ..failure_text import failure_text

        session = self.new_session()
        session.outer_limit = self.outer_limit
        OPEN_SESSIONS.discard(session)  # pre-warmed: from here on this item ends it
        # `with`: a KeyboardInterrupt out of the event loop skips run_all's `async with`.
        with session:
            result = run_sync(session.run_all)(
                lambda: self.prewarm_next(session, early=True),
                lambda: self.prewarm_next(session, early=False))
        self.record(result.cells, result.extras)
        if result.status == NB_SKIPPED:  # a cell called pytest.skip()
            skip_here(result.reason)
        if result.status == NB_FAILED:
            self.save_failed(result)
            failed = result.failed_cell
            raise NotebookFailed(failure_text(result, color=color(self.config)),
                                 path=str(session.plan.path),
                                 cell=failed.number if failed is not None else None)
        if session.plan.config.update_outputs and result.passed:
            from ..outputs.update import write_updated_outputs

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
        self.parent.cell_kernel.before(self)  # type: ignore[union-attr]

    def runtest(self) -> None:
        """Run this cell (and an injected-parameters cell that belongs to it)."""
        from jupyter_core.utils import run_sync

        from ..failure_text import cell_failure_text

        kernel: Any = self.parent.cell_kernel  # type: ignore[union-attr]
        session = kernel.before(self)
        for index in kernel.indices_of(self.number):
            result = run_sync(session.run_cell)(index)
            self.record((result,), {"kernel_start": session.kernel.start_method})
            kernel.verdicts[self.number] = result.failed
            if session.skipped_by is result:  # the cell called pytest.skip()
                skip_here(result.detail)
            if result.status == SKIPPED:  # a skip tag or marker, or nothing to run
                skip_here("skipped by its tag or marker" if is_skipped(
                    session.plan.notebook.cells[index]) else "an empty cell")
            if result.failed:
                raise NotebookFailed(cell_failure_text(result, str(session.plan.path),
                                                       color(self.config)))


def skip_here(reason: str) -> None:
    """Skip the running item, reported at the item's own location (its cell in the notebook),
    as pytest's skip markers are, not at this line of nbtest."""
    raise pytest.skip.Exception(reason, _use_item_location=True)


def close_open_sessions() -> None:
    """Kill the pre-warmed kernels left open (Ctrl-C, -x, the next item deselected)."""
    for session in list(OPEN_SESSIONS):
        session.close()
    OPEN_SESSIONS.clear()


def color(config: pytest.Config) -> bool:
    return config.getoption("color", "auto") == "yes" or os.environ.get("PY_COLORS") == "1"
