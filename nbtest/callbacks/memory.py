"""MemoryCallback: the kernel's peak memory, measured from outside, and per-notebook budgets.

The harness samples the kernel's process tree (the kernel pid and its children) with psutil
from a daemon thread every ~20 ms, and once more at the end of each cell; on Linux it also
reads each process's VmHWM, the kernel's own record of its peak, so a spike between two samples
is not lost.

GPU memory is looked at at the end of every cell and once more before the kernel is stopped
(a tensor the notebook keeps to its end is seen there), besides the background cadence. The
look starts once the kernel uses CUDA: libcuda in its memory maps (torch or another library
initialised CUDA) or a figure reported by the kernel itself. The figure comes, in this order,
from the driver's per-process list (pids matched), from the framework's own peak counters
(torch's max_memory_reserved, written by the kernel after each cell: where a container hides
the kernel's pid from the driver), or from the card's used memory above what it was when the
kernel started; `peak_gpu_source` names which.

Results go into `NotebookResult.extras`: `peak_rss_mib`, and with CUDA `peak_gpu_mib`,
`peak_gpu_source` and `gpu_memory_returned` (after the kernel is gone, is its memory free
again?). A budget (`metadata.nbtest.mem_max` / `gpu_mem_max`) that is exceeded sets
`memory_violation` to a sentence with the measured figure, for the engine to fail the
notebook with.

`mem_max` is also a cap while cells run: once a sample of the tree's RSS is over it, the
sampling thread kills the kernel's tree at once (before the machine's OOM killer has to), and
the running cell fails with the figure seen (`memory_stop`, which the kernel's death detail
quotes); a cell whose end-of-cell look finds the peak over it fails too.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import replace

from ..callback import Callback, KernelFiles, NotebookRun
from ..kernel.notebook_kernel import MEMORY_STOP, PEAK_RSS
from ..kernel.reaper import settle
from ..results import CellResult, MemoryFigures, NotebookResult
from .sampler import (  # noqa: F401 - the figures' sources, as reports and tests name them
    CARD_DELTA,
    DRIVER,
    FRAMEWORK,
    MIB,
    SAMPLE_EVERY,
    TreeSampler,
    gpu_look,
)

BUDGETS = (("mem_max", "peak RSS"), ("gpu_mem_max", "peak GPU memory"))
RETURN_WAIT = 5.0  # seconds the driver gets to list the kernel's GPU memory as free again


def _over(mib: float) -> int:
    """A figure over a budget, rounded up: 200.3 MiB over 200 MiB reads 201, never 200."""
    return math.ceil(mib)


def read_budget(run: NotebookRun, name: str) -> int | None:
    """Budget `name` (bytes) of the notebook being run; None when it has none (0 or unset)."""
    return int(getattr(run.config, name) or 0) or None


class MemoryCallback(Callback):
    """Peak RSS of the kernel's process tree, its GPU memory once it uses CUDA, and budgets."""

    order = -10  # figures and violations are in the extras before reporting callbacks run

    def __init__(self, interval: float = SAMPLE_EVERY) -> None:
        self.interval = interval
        self.sampler: TreeSampler | None = None
        self.cell: int | None = None  # the cell running now (its number), if one is
        self.last_cell: int | None = None  # the cell that ran last
        self.looked = False  # the end-of-cell sample was taken by check_cell

    def before_kernel_start(self, run: NotebookRun) -> None:
        """A file for the kernel's own GPU peak (torch's counters), in its private folder:
        it goes with the kernel, whether or not the notebook reaches its end."""
        if run.kernel_folder:
            KernelFiles(gpu_peak_file=os.path.join(run.kernel_folder, "gpu-peak.jsonl")).put(
                run.startup)

    def on_notebook_start(self, run: NotebookRun) -> None:
        """Start sampling the kernel's process tree."""
        self.close()
        self.cell = self.last_cell = None
        if run.kernel_pid is not None:
            limit = read_budget(run, "mem_max")
            self.sampler = TreeSampler(run.kernel_pid, self.interval,
                                       KernelFiles.in_run(run).gpu_peak_file, run.cards_before,
                                       limit=limit,
                                       on_limit=lambda peak: self._stop(run, peak, limit or 0))
            self.sampler.on_peak = lambda peak: run.extras.__setitem__(
                PEAK_RSS, round(peak / MIB, 1))
            self.sampler.sample(full=True)
            self.sampler.start()

    def _stop(self, run: NotebookRun, peak: int, limit: int) -> None:
        """The cap was hit: say so, for the cell that fails when the kernel is found dead."""
        from ..gpu.probe import format_size

        cell = self.cell if self.cell is not None else self.last_cell
        where = "while cell {} ran" if self.cell is not None else "after cell {}"
        text = f"peak RSS {_over(peak / MIB)} MiB exceeds mem_max {format_size(limit)}"
        if cell is not None:
            text += f" ({where.format(cell)})"
        run.extras[MEMORY_STOP] = text

    def on_cell_start(self, run: NotebookRun, number: int, source: str) -> None:
        """Note which cell runs, for the cap's message."""
        self.cell = number
        self.looked = False

    def check_cell(self, run: NotebookRun, cell: object, result: CellResult) -> str | None:
        """A full sample, GPU included, while what the cell left in memory is still there;
        a peak over mem_max fails the cell that reached it."""
        sampler = self.sampler
        if sampler is None:
            return None
        sampler.sample(full=True)
        self.looked = True
        if sampler.over_limit() and not sampler.limit_hit:
            sampler.limit_hit = True  # the run stops here: the kernel is killed with it
            from ..gpu.probe import format_size

            return (f"peak RSS {_over(sampler.peak_rss / MIB)} MiB exceeds mem_max "
                    f"{format_size(sampler.limit or 0)}")
        return None

    def on_cell_end(self, run: NotebookRun, result: CellResult) -> None:
        """A full sample (unless check_cell took it), GPU included, while what the cell left
        in memory is still there."""
        self.last_cell, self.cell = result.number, None
        if self.sampler is not None and not self.looked:
            self.sampler.sample(full=True)
        self.looked = False

    def before_kernel_stop(self, run: NotebookRun) -> None:
        """The last look, while the kernel still holds what the notebook kept to its end."""
        if self.sampler is not None:
            self.sampler.sample(full=True)

    def on_notebook_end(self, run: NotebookRun, result: NotebookResult) -> None:
        """Publish the peaks, judge the budgets and check that GPU memory came back."""
        sampler, self.sampler = self.sampler, None
        if sampler is None:
            return
        sampler.stop()
        memory = MemoryFigures(round(sampler.peak_rss / MIB, 1))
        figures: dict[str, float | None] = {"mem_max": memory.peak_rss_mib}
        if sampler.cuda:
            figures["gpu_mem_max"] = sampler.peak_gpu_mib
            # The kernel's tree was sent SIGKILL; the driver frees its memory once it exited,
            # which the reaper thread waits for (kernel/reaper.py).
            settle(RETURN_WAIT)
            returned, left = gpu_memory_returned(sampler.pids)
            memory = replace(memory, peak_gpu_mib=sampler.peak_gpu_mib,
                             peak_gpu_source=sampler.gpu_source, gpu_memory_returned=returned,
                             gpu_memory_left=left or None)
        # Budgets are read here, not before the kernel starts: a pre-warmed next notebook's
        # start-up may come in between.
        budgets = {name: read_budget(run, name) for name, _ in BUDGETS}
        violations = budget_violations(figures, budgets)
        replace(memory, violation="; ".join(violations) or None).put(result.extras)

    def close(self) -> None:
        """Stop a sampler still running (a run that raised before notebook-end)."""
        if self.sampler is not None:
            self.sampler.stop()
            self.sampler = None


def budget_violations(figures: dict[str, float | None],
                      budgets: dict[str, int | None]) -> list[str]:
    """`peak RSS 512 MiB exceeds mem_max 256 MiB` for each measured figure over its budget."""
    from ..gpu.probe import format_size

    found = []
    for name, what in BUDGETS:
        budget, figure = budgets.get(name), figures.get(name)
        if budget and figure is not None and figure * MIB > budget:
            found.append(f"{what} {_over(figure)} MiB exceeds {name} {format_size(budget)}")
    return found


def gpu_memory_returned(pids: set[int], wait: float = RETURN_WAIT) -> tuple[bool, str]:
    """Whether no process of `pids` holds GPU memory any more, and if some still do, which."""
    from ..gpu.probe import probe

    deadline = time.monotonic() + wait
    while True:
        try:
            held = [(g, p) for g in probe().gpus for p in g.processes if p.pid in pids]
        except Exception as exc:  # the driver cannot tell us: say so rather than guess
            return False, f"cannot check GPU memory after the kernel was shut down: {exc}"
        if not held:
            return True, ""
        if time.monotonic() > deadline:
            return False, "GPU memory still held after the kernel was shut down: " + ", ".join(
                f"pid {p.pid} {p.used_mib if p.used_mib is not None else '?'} MiB on GPU "
                f"{g.index}" for g, p in held)
        time.sleep(0.2)
