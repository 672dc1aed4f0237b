"""`nbtest.open_notebook(path, run=...)`: a live kernel on a notebook, for a test or a script.

The handle runs the notebook's cells through the engine's NotebookSession (the one execution
path: callbacks, per-cell timeouts, memory figures), in a kernel forked from the fork template
(kernel/forkserver_client.py), and reaches the notebook's objects through refs.py's kernel side.
The pytest fixtures `notebook` and `module_notebook` (plugin/fixture.py) hand out the same
handles, one per use, and close them after the test or module, whatever happened.
"""

from __future__ import annotations

import contextlib
import inspect
import textwrap
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Union

from .config import NbTestConfig, parse_layer
from .errors import (
    CallTimeout,
    KernelCodeError,
    KernelStartError,
    PreflightError,
    UsageError,
)
from .handle_kernel import install_code
from .handle_wire import KernelWire
from .refs import CellOutput, encode_argument

KERNEL_SIDE = "nbtest's kernel side"  # its name among the code sent with the launch
OPEN: weakref.WeakSet[NotebookHandle] = weakref.WeakSet()  # closed at session end regardless
Selector = Union[int, str, Iterable[Union[int, str]], bool, None]


class NotebookHandle(KernelWire):
    """A live kernel on one notebook: run its cells, reach its objects, inject and patch."""

    def __init__(self, path: str | Path, config: NbTestConfig | None = None,
                 timeout: float | None = None, callbacks: Sequence[Any] = ()) -> None:
        from .plan import plan_notebook

        config = config or NbTestConfig()
        if config.fork == "auto":  # one template start, not a spawn beside it, for many kernels
            config = config.with_explicit(fork="yes")
        self.plan = plan_notebook(path, config)
        self.path = self.plan.path
        self.timeout = timeout if timeout is not None else self.plan.config.timeout
        self.callbacks = list(callbacks)
        self.session: Any = None
        self.closed = False
        self.result: Any = None  # the NotebookResult, once closed
        self.ran: list[int] = []  # numbers of the cells run, in order
        self.unread = 0  # requests since IOPub was last read (see _send)
        self.released: list[int] = []  # keys of objects whose Refs are gone (refs.Ref)
        self.registry_seen = 0  # bytes of the kernel's this_tests file taken (the fixture)
        # Told of each cell run, after it ran (the fixture credits the running test).
        self.noted: Callable[[NotebookHandle, int], None] | None = None

    # -- life --------------------------------------------------------------------------
    def launch(self) -> NotebookHandle:
        """Check the GPU (when the notebook asks for one) and start the kernel process without
        waiting for it: a spare the fixture forks while the test before runs."""
        from jupyter_core.utils import run_sync

        from .execute import NotebookSession

        need = int(self.plan.config.gpu_min_free)
        if need:
            from .gpu.probe import format_report, preflight

            report = preflight(need)
            if not report.ok:
                raise PreflightError(f"{self.path}: {format_report(report)}", path=str(self.path))
        self.session = NotebookSession(self.plan, self.callbacks)
        self.plan = self.session.plan  # the session's own copy: the one its runs write into
        cells = [[self.plan.numbers[i], cell.source]
                 for i, cell in enumerate(self.plan.notebook.cells) if cell.cell_type == "code"]
        # Installed as the kernel comes up, with the startup code: a spare has both done
        # before the test that takes it waits for its kernel.
        self.session.life.send_ahead(KERNEL_SIDE, install_code(cells))
        OPEN.add(self)
        try:
            run_sync(self.session.launch)()
        except BaseException:
            self.close()
            raise
        return self

    def start(self) -> NotebookHandle:
        """Launch (unless done), wait for the kernel, install the kernel side; the handle is
        closed again if any of it fails."""
        from jupyter_core.utils import run_sync

        if self.session is None:
            self.launch()
        try:
            run_sync(self._start)()
        except BaseException:
            self.close()
            raise
        return self

    async def _start(self) -> None:
        await self.session.start()
        reply = self.session.life.answers.pop(KERNEL_SIDE)
        if reply["content"]["status"] != "ok":
            raise KernelStartError(f"{self.path}: nbtest's kernel side did not install: "
                                   f"{reply['content'].get('evalue')}", path=str(self.path))

    def close(self) -> Any:
        """Stop the kernel (its whole process tree) and return the run's NotebookResult
        (cells run, memory figures, this_tests calls); a second call returns it again."""
        if self.closed or self.session is None:
            return self.result
        self.closed = True
        OPEN.discard(self)
        try:
            if self.session.client is not None:
                self.result = self.session.finish()
        finally:
            self.session.close()
        return self.result

    def __enter__(self) -> NotebookHandle:
        return self if self.session is not None else self.start()

    def __exit__(self, *exc: object) -> None:
        from .kernel.reaper import settle

        self.close()
        settle()

    # -- cells -------------------------------------------------------------------------
    def indices(self, selector: Selector = None) -> list[int]:
        """Executed-notebook indices of the code cells `selector` names: a cell number
        (as nbtest's reports count, from 1, every cell), a tag, a list of those, or
        None / True / "all" for every code cell."""
        cells, numbers = self.plan.notebook.cells, self.plan.numbers
        code = [i for i, cell in enumerate(cells) if cell.cell_type == "code"]
        if selector is None or selector is True or selector == "all":
            return code
        chosen: list[int] = []
        for one in [selector] if isinstance(selector, (int, str)) else list(selector):
            if isinstance(one, bool) or not isinstance(one, (int, str)):
                raise UsageError(f"{self.path}: cannot select cells with {one!r}: give cell "
                                 "numbers (from 1, as nbtest's reports count), tags or 'all'")
            if isinstance(one, int):
                found = [i for i in code if numbers[i] == one]
                what = f"no code cell {one}; its code cells are " + \
                    ", ".join(str(numbers[i]) for i in code)
            else:
                found = [i for i in code if one in cells[i].get("metadata", {}).get("tags", ())]
                what = f"no code cell is tagged {one!r}"
            if not found:
                raise UsageError(f"{self.path}: {what}", path=str(self.path))
            chosen += found
        return chosen

    def run(self, *selectors: Selector, timeout: float | None = None) -> list[CellOutput]:
        """Run the cells named (every code cell when none is), in the order given; raise
        KernelCodeError at the first that fails (CallTimeout past the limit)."""
        from jupyter_core.utils import run_sync

        self._alive()
        indices = [i for s in (selectors or (None,)) for i in self.indices(s)]
        done = []
        for index in indices:
            result = run_sync(self._run_cell)(index, timeout or self.timeout)
            self.ran.append(result.number)
            if self.noted is not None:
                self.noted(self, result.number)
            if result.failed:
                self._cell_failed(result)
            done.append(self.output(result.number, index))
        return done

    async def _run_cell(self, index: int, limit: float | None) -> Any:
        session = self.session
        session.failed_cell = session.skipped_by = None  # a test may go on after a failure
        session.outer_limit = (time.monotonic() + limit, f"limit {limit:g} s") if limit else None
        return await session.run_cell(index)

    def _cell_failed(self, result: Any) -> None:
        from .failure_text import cell_failure_text, failing_line
        from .results import FAILED, TIMEOUT

        text = cell_failure_text(result, str(self.path))
        fields = {"path": str(self.path), "cell": result.number, "ename": result.error_name,
                  "evalue": result.error_value}
        if result.status == TIMEOUT:
            raise CallTimeout(text, **fields)
        cell, line = result.number, failing_line(result)
        if result.status == FAILED and not self.session.kernel.stopped:
            inner = [f for f in self._ask({"op": "last"}, "last") if f[0] is not None]
            if inner:
                cell, line = inner[-1][0], inner[-1][1]
        where = f"{self.path}, cell {cell}" + (f", line {line}" if line else "")
        raise KernelCodeError(f"{where}: {result.error_name or result.status}: "
                              f"{result.error_value or result.detail}\n\n{text}",
                              **{**fields, "cell": cell, "line": line})

    def output(self, cell: int | str, index: int | None = None) -> CellOutput:
        """The outputs of cell `cell` (number or tag) as its last run left them."""
        index = self.indices(cell)[0] if index is None else index
        node = self.plan.notebook.cells[index]
        return CellOutput(self.plan.numbers[index], [dict(o) for o in node.get("outputs", [])])

    # -- objects -----------------------------------------------------------------------
    def ref(self, name: str) -> Any:
        """The value of `name` (any expression) in the kernel: plain JSON values as Python
        objects, anything else as a Ref whose calls and attributes run in the kernel."""
        return self._ask({"op": "eval", "expr": name}, name)

    __getitem__ = ref

    def inject(self, code: str | Callable[..., Any], args: Sequence[Any] = (),
               kwargs: dict[str, Any] | None = None, run: bool = True,
               timeout: float | None = None) -> Any:
        """Run `code` in the kernel and return its CellOutput; given a function, define it
        there (its source) and, with `run`, call it with `args`, returning what it returns."""
        if callable(code):
            source = textwrap.dedent(inspect.getsource(code))
            self._execute(source, timeout, f"inject({code.__name__})")
            return self.ref(code.__name__)(*args, **(kwargs or {})) if run else None
        if not isinstance(code, str):
            raise UsageError("inject takes code (a str) or a function")
        return self._execute(textwrap.dedent(code), timeout, "injected code")

    def _execute(self, code: str, timeout: float | None, name: str) -> CellOutput:
        from jupyter_core.utils import run_sync
        from nbformat.v4 import output_from_msg

        outputs: list[Any] = []

        def keep(msg: dict[str, Any]) -> None:
            if msg["msg_type"] in ("stream", "display_data", "execute_result", "error"):
                outputs.append(dict(output_from_msg(msg)))

        reply = run_sync(self._send)(code, {}, timeout or self.timeout, name, keep)
        content = reply["content"]
        if content["status"] != "ok":
            frames = [f for f in self._ask({"op": "last"}, "last") if f[0] is not None]
            raise self._code_error(content.get("ename"), content.get("evalue"), frames, name,
                                   "\n".join(content.get("traceback", ())))
        return CellOutput(None, outputs)

    @contextlib.contextmanager
    def patch(self, target: str, *args: Any, **kwargs: Any) -> Iterator[Any]:
        """unittest.mock.patch(target, ...) in the kernel for the block; yields a Ref on the
        mock (`.call_count`, `.call_args`, `.calls`, `.assert_called_with(...)`)."""
        yield from self._patched({"args": encode_argument([target, *args]),
                                  "kwargs": encode_argument(kwargs)}, f"patch({target!r})")

    @contextlib.contextmanager
    def patch_dict(self, in_dict: str, values: Any = (), clear: bool = False,
                   **kwargs: Any) -> Iterator[Any]:
        """unittest.mock.patch.dict(in_dict, values, clear) in the kernel for the block."""
        yield from self._patched({"dict": True, "args": encode_argument([in_dict, values, clear]),
                                  "kwargs": encode_argument(kwargs)}, f"patch_dict({in_dict!r})")

    def _patched(self, req: dict[str, Any], name: str) -> Iterator[Any]:
        data = self._request({"op": "patch", **req}, name)
        try:
            yield self._answer(data, name)
        finally:
            if not self.closed and not self.session.kernel.stopped:
                self._ask({"op": "unpatch", "key": data["key"]}, name)


@contextlib.contextmanager
def open_notebook(path: str | Path, run: Selector = None, *,
             timeout: float | None = None, config: NbTestConfig | None = None,
             **options: Any) -> Iterator[NotebookHandle]:
    """A live kernel on `path` for the block, with the `run` cells run (see
    NotebookHandle.indices; `run=None` runs none); `options` are nbtest options by name
    (e.g. `kernel="python3"`, `timeout=30`). The kernel is gone after the block."""
    if options:
        config = (config or NbTestConfig()).with_explicit(
            **parse_layer(options, None, "nbtest.open_notebook()"))
    with NotebookHandle(path, config, timeout) as handle:
        if run is not None:
            handle.run(run)
        yield handle
