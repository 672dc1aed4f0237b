"""run_notebook(): one notebook, one kernel. The only module that imports nbclient.

NotebookSession runs the cells; it leaves the kernel's life to kernel/notebook_kernel.py
(NotebookKernel) and the judging of each cell's reply to verdict.py; plan.py prepares the notebook.
"""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

from nbformat import NotebookNode

from .callback import Callback, Dispatcher, NotebookRun
from .config import NbTestConfig
from .kernel.launch import Kernel
from .kernel.notebook_kernel import KernelState, NotebookKernel
from .kernel.reaper import settle
from .nbdev import calls_export, cell_evals, default_eval
from .notebook import directives, is_runnable
from .plan import Plan, plan_notebook
from .results import (
    CHECK_FAILED,
    DIED,
    FAILED,
    NB_FAILED,
    NB_PASSED,
    NB_SKIPPED,
    NBDEV_EXPORTS_NOT_RUN,
    NOT_RUN,
    PASSED,
    SKIPPED,
    TIMEOUT,
    CellResult,
    MemoryFigures,
    NotebookResult,
)
from .verdict import SKIP_ERRORS, clear_outputs, judge_cell, output_tail, timeout_detail

__all__ = ["KernelState", "NotebookSession", "Plan", "plan_notebook", "run_notebook", "run_plan"]

# nbclient logs timeouts and deaths as errors; nbtest reports them itself, once, per cell.
_QUIET = logging.getLogger("nbtest.nbclient")
_QUIET.setLevel(logging.CRITICAL)
Hook = Callable[[], Awaitable[None]]  # a step of run_all's caller between its own steps


def run_notebook(path: str | Path, config: NbTestConfig | None = None,
                 callbacks: Iterable[Callback] = ()) -> NotebookResult:
    """Run one notebook in a fresh kernel and return what happened, cell by cell."""
    return run_plan(plan_notebook(path, config), callbacks)


def run_plan(plan: Plan, callbacks: Iterable[Callback] = ()) -> NotebookResult:
    """Run a prepared notebook; the kernel is gone when this returns or raises."""
    from jupyter_core.utils import run_sync

    session = NotebookSession(plan, callbacks)
    if plan.config.skip:
        return session.skipped(plan.config.skip)
    try:
        with session:  # also after KeyboardInterrupt / SIGTERM mid-cell
            return run_sync(session.run_all)()
    finally:
        settle()  # the kernel's processes have exited and its folder is gone


class NotebookSession:
    """One notebook in one kernel, cell by cell; each cell's result is tracked as it runs.

    `run_plan` drives it in one go; pytest's per-cell items drive it one cell at a time
    (`start`, `run_cell`, `finish`), so both faces share this single execution path. Its
    kernel's life is a context: `async with session:` launches it (unless pre-warmed) and
    leaving the block ends it (KernelState.RELEASED), however it is left; `with session:`
    ends it too, around an event loop a KeyboardInterrupt may leave without unwinding.
    """

    def __init__(self, plan: Plan, callbacks: Iterable[Callback] = ()) -> None:
        # Its own copy of the notebook: the run writes outputs into it, the plan stays as is.
        self.plan = plan = dataclasses.replace(plan, notebook=copy.deepcopy(plan.notebook))
        self.dispatcher = Dispatcher(callbacks)
        self.client: Any = None
        self.cells: dict[int, CellResult] = {}  # by executed index
        self.replies: dict[int, dict[str, Any]] = {}
        self.started = 0.0
        self.count = 0
        self.failed_cell: CellResult | None = None
        self.skipped_by: CellResult | None = None  # the cell that called pytest.skip()
        self._nbdev_eval: bool | None = None  # nbdev: a cell's default eval, once read
        # (monotonic deadline, its name in reports): a limit from outside, e.g. pytest-timeout
        self.outer_limit: tuple[float, str] | None = None
        self.run_info = NotebookRun(plan.path, plan.config, plan.notebook,
                                    sum(1 for c in plan.notebook.cells if is_runnable(c)),
                                    plan.numbers)
        self.life = NotebookKernel(plan.path, plan.kernel_name, plan.cwd, plan.config,
                                   [c.source for c in plan.notebook.cells if is_runnable(c)],
                                   self.run_info, self.dispatcher)

    @property
    def kernel(self) -> Kernel | None:
        """The running kernel, once launched."""
        return self.life.kernel

    @property
    def code_cells(self) -> list[int]:
        """Executed-notebook indices of the code cells, in order."""
        return [i for i, c in enumerate(self.plan.notebook.cells) if c.cell_type == "code"]

    @property
    def state(self) -> KernelState:
        """Where its kernel is in its life."""
        return self.life.state

    async def __aenter__(self) -> NotebookSession:
        await self.launch()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.close()

    def __enter__(self) -> NotebookSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Kill the kernel's whole process tree, if one is running, and remove its folder:
        the run is over, finished or abandoned (done once: later calls do nothing). Callbacks
        first take a last look at a kernel still alive and answering (before_kernel_stop)."""
        try:
            self._stop()
        finally:
            self.life.release()

    def _stop(self) -> None:
        self.life.stop(last_look=self.client is not None and (
            self.failed_cell is None or self.failed_cell.status == FAILED))
    def skipped(self, reason: str) -> NotebookResult:
        """The result of a notebook skipped by its metadata; its copy shows no earlier run."""
        for index in self.code_cells:
            clear_outputs(self.plan.notebook.cells[index])
        return NotebookResult(str(self.plan.path), NB_SKIPPED, 0.0, (), self.plan.notebook,
                              reason=reason, kernel_name=self.plan.kernel_name)

    async def run_all(self, after_launch: Hook | None = None,
                      after_start: Hook | None = None) -> NotebookResult:
        """Start, run every code cell in order, finish. `after_launch` runs once the kernel's
        process exists, `after_start` once it answers: the pytest face launches the next
        notebook's kernel in one of them, so it boots while this one runs."""
        async with self:
            if after_launch is not None:
                await after_launch()
            await self.start()
            if after_start is not None:
                await after_start()
            for index in self.code_cells:
                await self.run_cell(index)
            return self.finish()

    async def launch(self) -> None:
        """Start the kernel process, without waiting for it: pre-warming for a later start()."""
        await self.life.launch()
    async def start(self) -> None:
        """Start the kernel (if launch() did not) and run the startup code; notebook-start."""
        from nbclient import NotebookClient

        plan = self.plan
        self.started = time.monotonic()
        kernel = await self.life.start()
        self.client = NotebookClient(
            plan.notebook, km=kernel.km, allow_errors=True, interrupt_on_timeout=False,
            timeout_func=lambda cell: self._limit()[0], record_timing=False, log=_QUIET,
            on_cell_executed=lambda cell, cell_index, execute_reply:
                self.replies.__setitem__(cell_index, execute_reply))
        self.client.kc = kernel.kc
        self.dispatcher.notebook_start(self.run_info)
    def finish(self) -> NotebookResult:
        """Stop the kernel and build the result; notebook-end goes out, then the kernel's
        folder goes (callbacks read what they kept there at notebook-end)."""
        self._stop()
        try:
            return self._result()
        finally:
            self.life.release()

    def _result(self) -> NotebookResult:
        for index in self.code_cells:  # cells never reached (an interrupted session)
            if index not in self.cells:
                self.cells[index] = self._not_reached(index)
        ordered = tuple(self.cells[i] for i in sorted(self.cells))
        failed = any(c.failed for c in ordered)
        skip = self.skipped_by
        status = NB_FAILED if failed else NB_SKIPPED if skip is not None else NB_PASSED
        result = NotebookResult(str(self.plan.path), status,
                                time.monotonic() - self.started, ordered, self.plan.notebook,
                                kernel_name=self.plan.kernel_name, extras=self.run_info.extras,
                                reason=f"{skip.detail} (cell {skip.number})" if skip else "")
        self.dispatcher.notebook_end(self.run_info, result)
        memory = MemoryFigures.of(result.extras)
        violation = memory.violation if memory else None
        if violation and result.status == NB_PASSED:  # a budget the whole notebook exceeded
            result = dataclasses.replace(result, status=NB_FAILED,
                                         reason=f"memory budget exceeded: {violation}")
        return result

    def _base(self, index: int) -> dict[str, Any]:
        cell = self.plan.notebook.cells[index]
        return {"number": self.plan.numbers[index], "index": index, "source": cell.source,
                "injected": index == self.plan.injected}

    def _excluded(self, cell: NotebookNode) -> bool:
        """A cell this run leaves out: an nbdev flag not given (`#|slow`), or, in an nbdev
        project, one nbdev_test does not run (front matter `eval: false`, a call of
        nbdev_export() that would rewrite the library)."""
        if cell.get("cell_type") != "code":
            return False
        config = self.plan.config
        if set(directives(cell)) & (set(config.tst_flags) - set(config.flags)):
            return True
        if not config.nbdev:
            return False
        if self._nbdev_eval is None:  # the front matter's `eval`, every cell's default
            self._nbdev_eval = default_eval(self.plan.notebook, self.plan.path)
        return not cell_evals(cell, self._nbdev_eval)

    def _not_reached(self, index: int) -> CellResult:
        cell = self.plan.notebook.cells[index]
        status = SKIPPED if not is_runnable(cell) or self._excluded(cell) else NOT_RUN
        clear_outputs(cell)
        return CellResult(status=status, **self._base(index))

    async def run_cell(self, index: int) -> CellResult:
        """Run code cell `index` (after a failure, or if skipped by a tag, it is not run)."""
        from nbclient.exceptions import CellTimeoutError, DeadKernelError

        cell = self.plan.notebook.cells[index]
        base = self._base(index)
        if self.failed_cell is not None or self.skipped_by is not None or not is_runnable(cell) \
                or self._excluded(cell):
            if self.plan.config.nbdev and calls_export(cell.source):
                exports = self.run_info.extras.get(NBDEV_EXPORTS_NOT_RUN, 0)
                self.run_info.extras[NBDEV_EXPORTS_NOT_RUN] = exports + 1
            self.cells[index] = self._not_reached(index)
            return self.cells[index]
        self.dispatcher.cell_start(self.run_info, base["number"], cell.source)
        self.count += 1
        limit = self._limit()
        go_on = False  # a failed check that lets the run continue (Callback.check_stops_run)
        t0 = time.monotonic()
        try:
            await self.client.async_execute_cell(cell, index, execution_count=self.count)
            result = judge_cell(cell, self.replies.get(index), bool(self.plan.config.allow_errors),
                                duration=time.monotonic() - t0, execution_count=self.count,
                                output_tail=output_tail(cell), **base)
            if result.status == PASSED:
                result = await self._after_cell(cell, result)
            found = self.dispatcher.check_cell(self.run_info, cell, result)
            if found and result.status == PASSED:
                problem, stops = found
                result = dataclasses.replace(result, status=FAILED, error_name=CHECK_FAILED,
                                             detail=problem)
                go_on = not stops
        except CellTimeoutError:
            elapsed = time.monotonic() - t0
            stuck_at = await self._interrupted_traceback()
            await self.life.stop_after_timeout()
            result = CellResult(status=TIMEOUT, duration=elapsed, traceback=stuck_at,
                                detail=timeout_detail(elapsed, limit),
                                execution_count=self.count, output_tail=output_tail(cell), **base)
        except DeadKernelError:
            result = CellResult(status=DIED, duration=time.monotonic() - t0,
                                detail=self.life.death_detail(), execution_count=self.count,
                                output_tail=output_tail(cell), **base)
        self.cells[index] = result
        # A cell whose outputs differ ran cleanly: the run goes on, so one report lists every
        # mismatching cell of the notebook, as nbval's one item per cell does.
        if result.failed and not go_on:
            self.failed_cell = result
        elif result.error_name in SKIP_ERRORS and result.status == SKIPPED:
            self.skipped_by = result
        self.dispatcher.cell_end(self.run_info, result)
        return result

    async def _interrupted_traceback(self) -> tuple[str, ...]:
        """Interrupt a timed-out cell; its KeyboardInterrupt's traceback shows the line it was
        stuck on (empty when the cell ignores SIGINT or does not answer within the grace)."""
        from queue import Empty

        from .kernel.notebook_kernel import INTERRUPT_GRACE

        if self.kernel is None:
            return ()
        await self.kernel.interrupt()
        deadline = time.monotonic() + INTERRUPT_GRACE
        try:
            while (left := deadline - time.monotonic()) > 0:
                msg = await self.kernel.kc.shell_channel.get_msg(timeout=left)
                if msg.get("msg_type") == "execute_reply":
                    return tuple(msg["content"].get("traceback") or ())
        except (Empty, Exception):  # only a report's detail: the timeout stands regardless
            pass
        return ()

    async def _after_cell(self, cell: NotebookNode, result: CellResult) -> CellResult:
        """nbmake's cell metadata, run silently after the cell: `nbmake.mock` (globals set to
        these values) and `nbmake.post_cell_execute` (lines of code). An error fails the
        cell, as in nbmake."""
        import json

        nbmake = cell.get("metadata", {}).get("nbmake") or {}
        code = []
        if nbmake.get("mock"):
            code.append(f"globals().update(__import__('json').loads({json.dumps(nbmake['mock'])!r}))")
        code += list(nbmake.get("post_cell_execute") or ())
        if not code:
            return result
        assert self.kernel is not None
        reply = await self.kernel.kc.execute_interactive(
            "\n".join(code), silent=True, store_history=False, output_hook=lambda msg: None,
            timeout=self._limit()[0])
        content = reply["content"]
        if content["status"] == "ok":
            return result
        return dataclasses.replace(
            result, status=FAILED, error_name=content.get("ename"),
            error_value=content.get("evalue"), traceback=tuple(content.get("traceback", ())),
            detail="the cell's nbmake.mock / nbmake.post_cell_execute metadata raised")

    def _limit(self) -> tuple[float | None, str]:
        """Seconds the next cell may run, and how a report names the limit that binds (the
        cell's own, the notebook's, or one set from outside, e.g. pytest-timeout's)."""
        now = time.monotonic()
        limits: list[tuple[float, str]] = []
        if self.plan.config.timeout is not None:
            limits.append((self.plan.config.timeout, ""))
        whole = self.plan.config.notebook_timeout
        if whole is not None:
            limits.append((max(whole - (now - self.started), 0.01),
                           f", notebook limit {whole:g} s"))
        if self.outer_limit is not None:
            deadline, name = self.outer_limit
            limits.append((max(deadline - now, 0.01), f", {name}"))
        return min(limits) if limits else (None, "")

