"""The Callback base class and the one dispatcher of execution events.

Events, in order: before kernel start (callbacks may add environment variables and startup
data), notebook start, then per cell: cell start, cell end (and error or timeout
when the cell failed that way), then notebook end. Built-in features (progress bar, timing,
memory, registry capture) are callbacks too.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from .results import Record, optional_field

if TYPE_CHECKING:
    from nbformat import NotebookNode

    from .config import NbTestConfig
    from .results import CellResult, NotebookResult


@dataclass
class NotebookRun:
    """What callbacks can see of the notebook being run."""

    path: Path
    config: NbTestConfig
    notebook: NotebookNode
    cells_to_run: int  # code cells that will run
    numbers: tuple[int, ...] = ()  # per cell of `notebook`: its number in the input file
    kernel_pid: int | None = None
    extras: dict[str, Any] = field(default_factory=dict)  # copied into NotebookResult.extras
    kernel_env: dict[str, str] = field(default_factory=dict)  # added to the kernel's environment
    # JSON data for the startup code: the records below (Record.put), and the seed, the API
    # packages and sys.path folders kernel/notebook_kernel.py puts there.
    startup: dict[str, Any] = field(default_factory=dict)
    stop_grace: float = 0.0  # seconds between SIGTERM and SIGKILL at the end (coverage needs it)
    cards_before: dict[str, int] = field(default_factory=dict)  # used MiB per GPU uuid at start
    # The kernel's private folder (0700), removed with the kernel however its run ends: where
    # a callback keeps a file the kernel writes (from before_kernel_start on).
    kernel_folder: str | None = None

    def private_file(self, name: str) -> str:
        """An empty file `name` for the kernel to write to, in its private folder (a temp file
        `nbtest-NAME` when the run was driven by hand, without one); its path."""
        if self.kernel_folder:
            path = os.path.join(self.kernel_folder, name)
            open(path, "w").close()
            return path
        stem, dot, suffix = name.rpartition(".")
        fd, path = tempfile.mkstemp(prefix=f"nbtest-{stem or suffix}-",
                                    suffix=f".{suffix}" if dot else "")
        os.close(fd)
        return path


@dataclass(frozen=True)
class RegistrySettings(Record):
    """For the kernel's this_tests recorder: its file, the API packages, and each code cell's
    [number, source digest] (how it knows the running cell)."""

    KEY: ClassVar[str] = "registry"
    file: str
    api: list[str]
    cells: list[list[Any]]


@dataclass(frozen=True)
class AffectedSettings(Record):
    """For the kernel's --nbtest-affected tracker: its file, the project's root (as given and
    resolved) and the private folders whose files are not inputs."""

    KEY: ClassVar[str] = "affected"
    file: str
    roots: list[str]
    private: list[str]


@dataclass(frozen=True)
class KernelFiles(Record):
    """Files in the kernel's private folder that kernel-side helpers write, each asked for by
    one callback: what the notebook imports (preload = "auto"), the profile, the GPU peak."""

    imports: str | None = optional_field()
    profile_file: str | None = optional_field()
    gpu_peak_file: str | None = optional_field()

    @classmethod
    def in_run(cls, run: NotebookRun) -> KernelFiles:
        """The files asked for in `run` so far."""
        return cls.of(run.startup) or cls()


class Callback:
    """Override the events you need; every method is a no-op here."""

    order = 0  # lower runs first

    def before_kernel_start(self, run: NotebookRun) -> None:
        """Add to `run.kernel_env` or `run.startup` before the kernel starts."""

    def on_notebook_start(self, run: NotebookRun) -> None:
        """The kernel is up and the startup code ran; no cell has run yet."""

    def on_cell_start(self, run: NotebookRun, number: int, source: str) -> None:
        """Cell `number` (1-based, counting every cell) is about to run."""

    # Whether a cell this callback's check_cell fails ends the run, as a cell error does.
    # Output checks say no: the run goes on, and the report lists every mismatching cell.
    check_stops_run = True

    def check_cell(self, run: NotebookRun, cell: NotebookNode,
                   result: CellResult) -> str | None:
        """After a cell passed: return a failure text (first line: the headline) to fail it."""
        return None

    def on_cell_end(self, run: NotebookRun, result: CellResult) -> None:
        """A cell finished, whatever its status."""

    def on_error(self, run: NotebookRun, result: CellResult) -> None:
        """A cell raised (or a raises-exception cell did not), or the kernel died."""

    def on_timeout(self, run: NotebookRun, result: CellResult) -> None:
        """A cell ran past its time limit; the kernel is about to be stopped."""

    def before_kernel_stop(self, run: NotebookRun) -> None:
        """The last cell has run and the kernel is still alive, about to be stopped (not
        called when it died or timed out): a last look at what it holds."""

    def on_notebook_end(self, run: NotebookRun, result: NotebookResult) -> None:
        """The notebook is over and its kernel is gone."""


class Dispatcher:
    """Sends each event to every callback, in `order`."""

    def __init__(self, callbacks: Iterable[Callback] = ()) -> None:
        self.callbacks = sorted(callbacks, key=lambda cb: cb.order)

    def before_kernel_start(self, run: NotebookRun) -> None:
        """Dispatch before_kernel_start."""
        for cb in self.callbacks:
            cb.before_kernel_start(run)

    def notebook_start(self, run: NotebookRun) -> None:
        """Dispatch on_notebook_start."""
        for cb in self.callbacks:
            cb.on_notebook_start(run)

    def cell_start(self, run: NotebookRun, number: int, source: str) -> None:
        """Dispatch on_cell_start."""
        for cb in self.callbacks:
            cb.on_cell_start(run, number, source)

    def check_cell(self, run: NotebookRun, cell: NotebookNode,
                   result: CellResult) -> tuple[str, bool] | None:
        """The first failure a callback finds in a cell that passed, and whether it ends the
        run (the callback's `check_stops_run`); None when none does."""
        for cb in self.callbacks:
            problem = cb.check_cell(run, cell, result)
            if problem:
                return problem, cb.check_stops_run
        return None

    def cell_end(self, run: NotebookRun, result: CellResult) -> None:
        """Dispatch on_error / on_timeout where they apply, then on_cell_end."""
        from .results import DIED, FAILED, TIMEOUT

        for cb in self.callbacks:
            if result.status in (FAILED, DIED):
                cb.on_error(run, result)
            elif result.status == TIMEOUT:
                cb.on_timeout(run, result)
            cb.on_cell_end(run, result)

    def kernel_stop(self, run: NotebookRun) -> None:
        """Dispatch before_kernel_stop."""
        for cb in self.callbacks:
            cb.before_kernel_stop(run)

    def notebook_end(self, run: NotebookRun, result: NotebookResult) -> None:
        """Dispatch on_notebook_end."""
        for cb in self.callbacks:
            cb.on_notebook_end(run, result)


def load_callback(spec: str) -> Callback:
    """A Callback from `module:Name` (a class is instantiated without arguments)."""
    import importlib

    from .errors import UsageError

    module_name, sep, attr = spec.partition(":")
    if not sep:
        raise UsageError(f"--callback {spec!r}: write MODULE:NAME, e.g. mypkg.cbs:Timer")
    try:
        obj = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise UsageError(f"--callback {spec!r}: cannot load it: {exc}") from None
    obj = obj() if isinstance(obj, type) else obj
    if not isinstance(obj, Callback):
        raise UsageError(f"--callback {spec!r} is not an nbtest.Callback")
    return obj
