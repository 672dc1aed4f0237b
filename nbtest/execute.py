"""run_notebook(): one notebook, one kernel. The only module that imports nbclient."""

from __future__ import annotations

import asyncio
import copy
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nbformat import NotebookNode

from .callback import Callback, Dispatcher, NotebookRun
from .config import NbTestConfig
from .errors import KernelStartError
from .kernel_startup import startup_code
from .kernels import Kernel, start_kernel
from .notebook import expects_error, is_runnable, kernel_name, load_notebook, notebook_settings
from .params import inject_parameters, injected_index
from .results import (
    DIED, FAILED, NB_FAILED, NB_PASSED, NB_SKIPPED, NOT_RUN, PASSED, SKIPPED, TIMEOUT,
    CellResult, NotebookResult,
)

OUTPUT_TAIL_LINES = 20
_INTERRUPT_GRACE = 0.2  # seconds a timed-out kernel gets to react to SIGINT before SIGKILL


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
    numbers = tuple(i + 1 - (added if where is not None and i > where else 0)
                    for i in range(len(nb.cells)))
    cwd = Path(config.cwd) if config.cwd else path.resolve().parent
    return Plan(path, nb, config, name, cwd, numbers, where)


def run_notebook(path: str | Path, config: NbTestConfig | None = None,
                 callbacks: Iterable[Callback] = ()) -> NotebookResult:
    """Run one notebook in a fresh kernel and return what happened, cell by cell."""
    return run_plan(plan_notebook(path, config), callbacks)


def run_plan(plan: Plan, callbacks: Iterable[Callback] = ()) -> NotebookResult:
    """Run a prepared notebook; the kernel is gone when this returns or raises."""
    from jupyter_core.utils import run_sync

    runner = _Runner(plan, Dispatcher(callbacks))
    if plan.config.skip:
        return runner.skipped(plan.config.skip)
    try:
        return run_sync(runner.run)()
    finally:
        runner.stop_kernel()  # also after KeyboardInterrupt / SIGTERM mid-cell


class _Runner:
    """Drives one notebook through nbclient, tracking each cell's result as it runs."""

    def __init__(self, plan: Plan, dispatcher: Dispatcher) -> None:
        self.plan = plan
        self.dispatcher = dispatcher
        self.kernel: Kernel | None = None
        self.cells: list[CellResult] = []
        self.run_info = NotebookRun(plan.path, plan.config, plan.notebook,
                                    sum(1 for c in plan.notebook.cells if is_runnable(c)))

    def stop_kernel(self) -> None:
        """Kill the kernel's whole process tree, if one is running."""
        if self.kernel is not None:
            self.kernel.kill()

    def skipped(self, reason: str) -> NotebookResult:
        """The result of a notebook skipped by its metadata."""
        return NotebookResult(str(self.plan.path), NB_SKIPPED, 0.0, (), self.plan.notebook,
                              reason=reason, kernel_name=self.plan.kernel_name)

    async def run(self) -> NotebookResult:
        """Start the kernel, run the startup code, then every cell in order."""
        from nbclient import NotebookClient

        plan, started = self.plan, time.monotonic()
        try:
            self.kernel = await start_kernel(plan.kernel_name, plan.cwd,
                                             {"NBTEST_NOTEBOOK": str(plan.path.resolve())},
                                             plan.config.startup_timeout, plan.path)
            self.run_info.kernel_pid = self.kernel.pid
            await self._run_startup()
            replies: dict[int, dict[str, Any]] = {}
            client = NotebookClient(
                plan.notebook, km=self.kernel.km, allow_errors=True, interrupt_on_timeout=False,
                timeout_func=self._cell_timeout_func(started), record_timing=False,
                on_cell_executed=lambda cell, cell_index, execute_reply:
                    replies.__setitem__(cell_index, execute_reply))
            client.kc = self.kernel.kc
            self.dispatcher.notebook_start(self.run_info)
            await self._run_cells(client, replies, started)
        finally:
            self.stop_kernel()
        failed = any(c.failed for c in self.cells)
        result = NotebookResult(str(plan.path), NB_FAILED if failed else NB_PASSED,
                                time.monotonic() - started, tuple(self.cells), plan.notebook,
                                kernel_name=plan.kernel_name, extras=self.run_info.extras)
        self.dispatcher.notebook_end(self.run_info, result)
        return result

    async def _run_startup(self) -> None:
        assert self.kernel is not None
        code = startup_code({"seed": self.plan.config.seed})
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

    def _cell_timeout_func(self, started: float) -> Any:
        cell_limit = self.plan.config.timeout
        notebook_limit = self.plan.config.notebook_timeout

        def timeout_for(cell: NotebookNode) -> float | None:
            if notebook_limit is None:
                return cell_limit
            left = max(notebook_limit - (time.monotonic() - started), 0.01)
            return left if cell_limit is None else min(cell_limit, left)

        return timeout_for

    async def _run_cells(self, client: Any, replies: dict[int, dict[str, Any]],
                         started: float) -> None:
        from nbclient.exceptions import CellTimeoutError, DeadKernelError

        plan, count, stopped = self.plan, 0, False
        for index, cell in enumerate(plan.notebook.cells):
            if cell.cell_type != "code":
                continue
            number = plan.numbers[index]
            base = {"number": number, "index": index, "source": cell.source,
                    "injected": index == plan.injected}
            if stopped or not is_runnable(cell):
                self.cells.append(CellResult(status=NOT_RUN if stopped else SKIPPED, **base))
                continue
            self.dispatcher.cell_start(self.run_info, number, cell.source)
            count += 1
            limit = client.timeout_func(cell)
            t0 = time.monotonic()
            try:
                await client.async_execute_cell(cell, index, execution_count=count)
                result = self._judge(cell, replies.get(index), base, time.monotonic() - t0, count)
            except CellTimeoutError:
                elapsed = time.monotonic() - t0
                await self._stop_after_timeout()
                whole = plan.config.notebook_timeout is not None and limit != plan.config.timeout
                detail = (f"timed out after {elapsed:.1f} s (limit {limit:g} s"
                          + (f", notebook limit {plan.config.notebook_timeout:g} s)" if whole
                             else ")"))
                result = CellResult(status=TIMEOUT, duration=elapsed, detail=detail,
                                    execution_count=count, output_tail=_tail(cell), **base)
            except DeadKernelError:
                result = CellResult(status=DIED, duration=time.monotonic() - t0,
                                    detail=self._death_detail(), execution_count=count,
                                    output_tail=_tail(cell), **base)
            self.cells.append(result)
            self.dispatcher.cell_end(self.run_info, result)
            stopped = result.failed

    def _judge(self, cell: NotebookNode, reply: dict[str, Any] | None, base: dict[str, Any],
               duration: float, count: int) -> CellResult:
        content = (reply or {}).get("content", {})
        raised = content.get("status") == "error"
        common = dict(duration=duration, execution_count=count, output_tail=_tail(cell), **base)
        if raised:
            error = dict(error_name=content.get("ename"), error_value=content.get("evalue"),
                         traceback=tuple(content.get("traceback", ())))
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
        self.kernel.kill()  # whatever the interrupt did: a cell may ignore SIGINT

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


def _tail(cell: NotebookNode, lines: int = OUTPUT_TAIL_LINES) -> str:
    """The last lines of a cell's text output, for reports."""
    parts: list[str] = []
    for output in cell.get("outputs", ()):
        if output.get("output_type") == "stream":
            parts.append(output.get("text", "")[-20000:])
        elif "data" in output and "text/plain" in output["data"]:
            parts.append(str(output["data"]["text/plain"])[-20000:] + "\n")
    return "\n".join("".join(parts).splitlines()[-lines:])
