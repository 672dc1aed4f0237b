"""run_notebook(): one notebook, one kernel. The only module that imports nbclient."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nbformat import NotebookNode

from .callback import Callback, Dispatcher, NotebookRun
from .config import NbTestConfig
from .errors import KernelStartError
from .kernel.launch import Kernel, launch_kernel
from .kernel.preload import env_set_before_import
from .kernel.startup import startup_code
from .nbdev import calls_export
from .notebook import (
    directives,
    expects_error,
    is_runnable,
    kernel_name,
    load_notebook,
    notebook_settings,
)
from .params import inject_parameters, injected_index
from .results import (
    CHECK_FAILED,
    DIED,
    FAILED,
    NB_FAILED,
    NB_PASSED,
    NB_SKIPPED,
    NOT_RUN,
    PASSED,
    SKIPPED,
    TIMEOUT,
    CellResult,
    NotebookResult,
)

OUTPUT_TAIL_LINES = 20
# nbclient logs timeouts and deaths as errors; nbtest reports them itself, once, per cell.
_QUIET = logging.getLogger("nbtest.nbclient")
_QUIET.setLevel(logging.CRITICAL)
Hook = Callable[[], Awaitable[None]]  # a step of run_all's caller between its own steps
_INTERRUPT_GRACE = 0.2  # seconds a timed-out kernel gets to react to SIGINT before SIGKILL
SKIP_ERRORS = frozenset({"Skipped", "SkipTest"})  # pytest.skip(), unittest.SkipTest in a cell


@dataclass(frozen=True)
class Plan:
    """A notebook ready to run: resolved config, parameters injected, cells numbered."""

    path: Path
    notebook: NotebookNode
    config: NbTestConfig
    kernel_name: str
    cwd: Path
    numbers: tuple[int, ...]  # per executed cell: its number in the input file
    injected: int | None  # executed index of the injected-parameters cell


def plan_notebook(path: str | Path, config: NbTestConfig | None = None,
                  notebook: NotebookNode | None = None) -> Plan:
    """Load `path` (unless given), resolve its config and inject its parameters."""
    path = Path(path)
    nb = notebook if notebook is not None else load_notebook(path)
    config = (config or NbTestConfig()).with_notebook(notebook_settings(nb, path))
    name = config.kernel or kernel_name(nb) or "python3"
    original = len(nb.cells)
    nb = copy.deepcopy(nb)
    if config.parameters:
        language = nb.metadata.get("kernelspec", {}).get("language") or "python"
        nb = inject_parameters(nb, config.parameters, name, language)
    where = injected_index(nb)
    added = len(nb.cells) - original  # 1 when papermill added a cell, 0 when it replaced one
    # Number cells as in the input file; an added injected cell shares its parameters cell's.
    numbers = tuple(i + 1 - (added if where is not None and i >= where else 0)
                    for i in range(len(nb.cells)))
    folder = path.resolve().parent
    # --cwd is relative to where nbtest runs; metadata.nbtest.cwd to the notebook's folder.
    cwd = folder / config.cwd if "cwd" in config.notebook and "cwd" not in config.explicit \
        else Path(config.cwd) if config.cwd else folder
    return Plan(path, nb, config, name, cwd, numbers, where)


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
        return run_sync(session.run_all)()
    finally:
        session.close()  # also after KeyboardInterrupt / SIGTERM mid-cell


class NotebookSession:
    """One notebook in one kernel, cell by cell; each cell's result is tracked as it runs.

    `run_plan` drives it in one go; pytest's per-cell items drive it one cell at a time
    (`start`, `run_cell`, `finish`), so both faces share this single execution path.
    """

    def __init__(self, plan: Plan, callbacks: Iterable[Callback] = ()) -> None:
        self.plan = plan
        self.dispatcher = Dispatcher(callbacks)
        self.kernel: Kernel | None = None
        self.client: Any = None
        self.cells: dict[int, CellResult] = {}  # by executed index
        self.replies: dict[int, dict[str, Any]] = {}
        self.started = 0.0
        self.count = 0
        self.failed_cell: CellResult | None = None
        self.skipped_by: CellResult | None = None  # the cell that called pytest.skip()
        self.stop_announced = False  # before_kernel_stop went out (once per kernel)
        # (monotonic deadline, its name in reports): a limit from outside, e.g. pytest-timeout
        self.outer_limit: tuple[float, str] | None = None
        self.run_info = NotebookRun(plan.path, plan.config, plan.notebook,
                                    sum(1 for c in plan.notebook.cells if is_runnable(c)),
                                    plan.numbers)

    @property
    def code_cells(self) -> list[int]:
        """Executed-notebook indices of the code cells, in order."""
        return [i for i, c in enumerate(self.plan.notebook.cells) if c.cell_type == "code"]

    def close(self) -> None:
        """Kill the kernel's whole process tree, if one is running; callbacks first take a
        last look at a kernel still alive and answering (before_kernel_stop)."""
        if self.kernel is not None:
            if not self.stop_announced and self.client is not None \
                    and (self.failed_cell is None or self.failed_cell.status == FAILED):
                self.stop_announced = True
                self.dispatcher.kernel_stop(self.run_info)
            self.kernel.kill(self.run_info.stop_grace)

    def skipped(self, reason: str) -> NotebookResult:
        """The result of a notebook skipped by its metadata; its copy shows no earlier run."""
        for index in self.code_cells:
            _clear(self.plan.notebook.cells[index])
        return NotebookResult(str(self.plan.path), NB_SKIPPED, 0.0, (), self.plan.notebook,
                              reason=reason, kernel_name=self.plan.kernel_name)

    async def run_all(self, after_launch: Hook | None = None,
                      after_start: Hook | None = None) -> NotebookResult:
        """Start, run every code cell in order, finish. `after_launch` runs once the kernel's
        process exists, `after_start` once it answers: the pytest face launches the next
        notebook's kernel in one of them, so it boots while this one runs."""
        try:
            await self.launch()
            if after_launch is not None:
                await after_launch()
            await self.start()
            if after_start is not None:
                await after_start()
            for index in self.code_cells:
                await self.run_cell(index)
        finally:
            self.close()  # finish() has taken its last look at the kernel by then
        return self.finish()

    async def launch(self) -> None:
        """Start the kernel process, without waiting for it: pre-warming for a later start()."""
        if self.kernel is not None:
            return
        plan = self.plan
        self.run_info.kernel_env["NBTEST_NOTEBOOK"] = str(plan.path.resolve())
        self.run_info.startup["seed"] = plan.config.seed
        # this_tests in the kernel checks names against the API even when nothing records.
        self.run_info.startup["api"] = list(plan.config.api)
        from .gpu.probe import kernel_gpu_env, probe

        # With several GPUs, the kernel gets the one with most free memory right now; the
        # cards' use now is the baseline of the memory callback's card-delta figure.
        seen = probe(processes=False)
        self.run_info.kernel_env.update(kernel_gpu_env(plan.config.gpu_min_free, seen))
        self.run_info.cards_before = {g.uuid: g.used_mib for g in seen.gpus}
        self.dispatcher.before_kernel_start(self.run_info)
        sources = [c.source for c in plan.notebook.cells if is_runnable(c)]
        self.kernel = await launch_kernel(
            plan.kernel_name, plan.cwd, self.run_info.kernel_env, plan.path,
            fork=plan.config.fork,
            spawn_if=lambda preloaded: env_set_before_import(sources, preloaded))
        self.run_info.kernel_pid = self.kernel.pid
        self.run_info.extras["kernel_start"] = self.kernel.start_method

    async def start(self) -> None:
        """Start the kernel (if launch() did not) and run the startup code; notebook-start."""
        from nbclient import NotebookClient

        plan = self.plan
        self.started = time.monotonic()
        await self.launch()
        assert self.kernel is not None
        await self.kernel.wait_ready(plan.config.startup_timeout, plan.path)
        await self._run_startup()
        self.client = NotebookClient(
            plan.notebook, km=self.kernel.km, allow_errors=True, interrupt_on_timeout=False,
            timeout_func=self._timeout_for, record_timing=False, log=_QUIET,
            on_cell_executed=lambda cell, cell_index, execute_reply:
                self.replies.__setitem__(cell_index, execute_reply))
        self.client.kc = self.kernel.kc
        self.dispatcher.notebook_start(self.run_info)

    def finish(self) -> NotebookResult:
        """Stop the kernel and build the result; notebook-end goes out."""
        self.close()
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
        violation = result.extras.get("memory_violation")
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
        project, a call of nbdev_export() that would rewrite the library."""
        if cell.get("cell_type") != "code":
            return False
        config = self.plan.config
        if set(directives(cell)) & (set(config.tst_flags) - set(config.flags)):
            return True
        return bool(config.nbdev) and calls_export(cell.source)

    def _not_reached(self, index: int) -> CellResult:
        cell = self.plan.notebook.cells[index]
        status = SKIPPED if not is_runnable(cell) or self._excluded(cell) else NOT_RUN
        _clear(cell)
        return CellResult(status=status, **self._base(index))

    async def run_cell(self, index: int) -> CellResult:
        """Run code cell `index` (after a failure, or if skipped by a tag, it is not run)."""
        from nbclient.exceptions import CellTimeoutError, DeadKernelError

        cell = self.plan.notebook.cells[index]
        base = self._base(index)
        if self.failed_cell is not None or self.skipped_by is not None or not is_runnable(cell) \
                or self._excluded(cell):
            if self.plan.config.nbdev and calls_export(cell.source):
                exports = self.run_info.extras.get("nbdev_exports_not_run", 0)
                self.run_info.extras["nbdev_exports_not_run"] = exports + 1
            self.cells[index] = self._not_reached(index)
            return self.cells[index]
        self.dispatcher.cell_start(self.run_info, base["number"], cell.source)
        self.count += 1
        limit = self._limit()
        go_on = False  # a failed check that lets the run continue (Callback.check_stops_run)
        t0 = time.monotonic()
        try:
            await self.client.async_execute_cell(cell, index, execution_count=self.count)
            result = self._judge(cell, self.replies.get(index), base, time.monotonic() - t0)
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
            await self._stop_after_timeout()
            result = CellResult(status=TIMEOUT, duration=elapsed,
                                detail=self._timeout_detail(elapsed, limit),
                                execution_count=self.count, output_tail=_tail(cell), **base)
        except DeadKernelError:
            result = CellResult(status=DIED, duration=time.monotonic() - t0,
                                detail=self._death_detail(), execution_count=self.count,
                                output_tail=_tail(cell), **base)
        self.cells[index] = result
        # A cell whose outputs differ ran cleanly: the run goes on, so one report lists every
        # mismatching cell of the notebook, as nbval's one item per cell does.
        if result.failed and not go_on:
            self.failed_cell = result
        elif result.error_name in SKIP_ERRORS and result.status == SKIPPED:
            self.skipped_by = result
        self.dispatcher.cell_end(self.run_info, result)
        return result

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

    async def _run_startup(self) -> None:
        assert self.kernel is not None
        code = startup_code(self.run_info.startup)
        reply = await self.kernel.kc.execute_interactive(
            code, silent=True, store_history=False, timeout=self.plan.config.startup_timeout,
            output_hook=lambda msg: None)
        if reply["content"]["status"] != "ok":
            content = reply["content"]
            raise KernelStartError(
                f"{self.plan.path}: nbtest's startup code failed in kernel "
                f"{self.plan.kernel_name!r}: {content.get('ename')}: {content.get('evalue')}. "
                "Is it a Python kernel? Choose another with --kernel NAME.",
                path=str(self.plan.path))

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

    def _timeout_for(self, cell: NotebookNode) -> float | None:
        return self._limit()[0]

    def _timeout_detail(self, elapsed: float, limit: tuple[float | None, str]) -> str:
        seconds, why = limit
        return f"timed out after {elapsed:.1f} s (limit {round(seconds or 0, 2):g} s{why})"

    def _judge(self, cell: NotebookNode, reply: dict[str, Any] | None, base: dict[str, Any],
               duration: float) -> CellResult:
        content = (reply or {}).get("content", {})
        common = dict(duration=duration, execution_count=self.count, output_tail=_tail(cell),
                      **base)
        # An error can also come with an `ok` reply: a post-execute hook that raised (a
        # `post_run_cell` callback, matplotlib's inline backend drawing a bad figure) only
        # shows its traceback in the outputs. Either way the cell showed an error: it raised.
        shown = next((o for o in cell.get("outputs", ()) if o.get("output_type") == "error"),
                     None)
        raised = content if content.get("status") == "error" else shown
        if raised is not None and raised.get("ename") in SKIP_ERRORS and not expects_error(cell):
            # pytest.skip("why") / unittest's SkipTest in a cell: the notebook stops, skipped.
            return CellResult(status=SKIPPED, error_name=raised.get("ename"),
                              detail=raised.get("evalue") or "skipped by the notebook",
                              **common)
        if raised is not None:
            error = dict(error_name=raised.get("ename"), error_value=raised.get("evalue"),
                         traceback=tuple(raised.get("traceback", ())))
            ok = expects_error(cell) or self.plan.config.allow_errors
            return CellResult(status=PASSED if ok else FAILED, **error, **common)
        if expects_error(cell):
            return CellResult(status=FAILED, error_name="NoError",
                              detail="the cell is tagged raises-exception but raised nothing",
                              **common)
        return CellResult(status=PASSED, **common)

    async def _stop_after_timeout(self) -> None:
        assert self.kernel is not None
        await self.kernel.interrupt()
        await asyncio.sleep(_INTERRUPT_GRACE)
        self.kernel.kill(self.run_info.stop_grace)  # whatever SIGINT did: a cell may ignore it

    def _death_detail(self) -> str:
        assert self.kernel is not None
        status = None
        process = getattr(self.kernel.km.provisioner, "process", None)
        if process is not None:
            try:
                status = process.wait(timeout=2)
            except Exception:
                status = process.poll()
        return describe_exit(status)


def describe_exit(status: int | None) -> str:
    """`kernel died (exit code 3)` or `kernel died (killed by SIGKILL)`."""
    import signal

    if status is None:
        return "kernel died"
    if status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = f"signal {-status}"
        return f"kernel died (killed by {name})"
    return f"kernel died (exit code {status})"


def _clear(cell: NotebookNode) -> None:
    """Empty a code cell that does not run: the executed copy shows this run only, as
    papermill writes it; outputs stored by an earlier run would read as this run's."""
    cell.outputs = []
    cell.execution_count = None


def _tail(cell: NotebookNode, lines: int = OUTPUT_TAIL_LINES) -> str:
    """The last lines of a cell's text output, for reports."""
    parts: list[str] = []
    for output in cell.get("outputs", ()):
        if output.get("output_type") == "stream":
            parts.append(output.get("text", "")[-20000:])
        elif "data" in output and "text/plain" in output["data"]:
            parts.append(str(output["data"]["text/plain"])[-20000:] + "\n")
    return "\n".join("".join(parts).splitlines()[-lines:])
