"""The sampler behind MemoryCallback: one kernel's process tree, its RSS every ~20 ms from a
daemon thread (and VmHWM, the kernel's own record of its peak, on the slow cadence), its GPU
memory once it uses CUDA, and the `mem_max` cap enforced while cells run."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable

import psutil

from ..gpu.peak import read_peak

MIB = 2**20
SAMPLE_EVERY = 0.02  # seconds between RSS samples
SLOW_EVERY = 0.5  # seconds between the costlier looks: child list, VmHWM, CUDA, GPU probe


def _vm_hwm(pid: int) -> int:
    """Peak RSS of one process in bytes, as Linux recorded it (0 elsewhere)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _uses_cuda(pid: int) -> bool:
    """Whether process `pid` has loaded the CUDA driver library (Linux; False elsewhere)."""
    try:
        with open(f"/proc/{pid}/maps", "rb") as fh:
            return b"libcuda.so" in fh.read()
    except OSError:
        return False


# Where a GPU figure came from, as reports name it.
DRIVER, FRAMEWORK, CARD_DELTA = "driver per process", "torch counters", "card delta"


def gpu_look(pids: set[int]) -> tuple[int | None, dict[str, int]]:
    """One probe: what the driver lists for processes `pids` (None: none of them), and the
    used MiB, by uuid, of each visible card that lists no process at all: where a container
    hides every pid, the kernel alone on such a card is what its use grew by (not under
    xdist, whose workers share cards)."""
    from ..gpu.probe import probe, xdist_worker

    cards = probe().gpus
    held = [p.used_mib or 0 for g in cards for p in g.processes if p.pid in pids]
    unlisted = {} if xdist_worker() is not None else \
        {g.uuid: g.used_mib for g in cards if not g.processes}
    return (sum(held) if held else None), unlisted


class TreeSampler:
    """Samples one kernel's process tree; a daemon thread calls `sample()` until stopped."""

    def __init__(self, pid: int, interval: float = SAMPLE_EVERY,
                 framework_file: str | None = None,
                 card_baseline: dict[str, int] | None = None, limit: int | None = None,
                 on_limit: Callable[[int], None] | None = None) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_rss = 0  # bytes
        # A cap on the tree's RSS (bytes): over it, the sampling thread kills the tree and
        # calls on_limit(peak), once.
        self.limit, self.on_limit = limit, on_limit
        self.limit_hit = False
        self.on_peak: Callable[[int], None] | None = None  # told each new peak (bytes)
        self.peak_gpu_mib: int | None = None
        self.gpu_source: str | None = None  # DRIVER, FRAMEWORK or CARD_DELTA
        self.framework_file = framework_file  # where the kernel writes torch's peak
        self.card_baseline = card_baseline or {}  # each card's used MiB at kernel start
        self.cuda = False
        # No card was visible when the kernel started (an empty baseline, not an unknown one):
        # its maps are not read for libcuda (a look that costs ~1 ms per cell with numpy and
        # pandas loaded, and could find no card).
        self.cuda_possible = card_baseline is None or bool(card_baseline)
        self.pids: set[int] = {pid}  # every process of the tree seen, for the GPU lookups
        self._vms: dict[int, int] = {}  # per process: its address space's size, last sampled
        self._maps_read_at: dict[int, int | None] = {}  # ... when its maps were last read
        try:
            self._procs: dict[int, psutil.Process] = {pid: psutil.Process(pid)}
        except psutil.Error:
            self._procs = {}
        self._slow_at = time.monotonic()  # the tree is the kernel alone when sampling starts
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"nbtest-memory-{pid}",
                                        daemon=True)

    def start(self) -> None:
        """Start sampling in the background."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and wait for it (bounded: a sample never blocks for long)."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=15)

    @property
    def running(self) -> bool:
        """Whether the sampling thread is alive."""
        return self._thread.is_alive()

    def _loop(self) -> None:
        # Ends by itself once the kernel is gone, so a run that raised (and never sent
        # notebook-end) leaves no thread behind: the engine always kills the kernel.
        while not self._stop.is_set() and self.sample():
            if self.over_limit():
                self._enforce()
                return
            self._stop.wait(self.interval)

    def over_limit(self) -> bool:
        """Whether the peak RSS seen is over the cap (False without one)."""
        return bool(self.limit) and self.peak_rss > (self.limit or 0)

    def _enforce(self) -> None:
        """Tell on_limit (the figure goes into the cell's failure), then SIGKILL the tree: the
        kernel's process group (it leads one) and every process of the tree seen."""
        with self._lock:
            if self.limit_hit:
                return
            self.limit_hit = True
            peak, procs = self.peak_rss, list(self._procs.values())
        if self.on_limit is not None:
            self.on_limit(peak)
        root = self._procs.get(self.pid)
        try:
            if root is not None and root.is_running() and os.getpgid(self.pid) == self.pid:
                os.killpg(self.pid, signal.SIGKILL)
        except OSError:
            pass
        for proc in procs:
            try:
                proc.kill()  # psutil checks first that the pid was not reused
            except psutil.Error:
                pass

    def sample(self, full: bool = False, gpu: bool = True) -> bool:
        """Take one sample (`full`: the slow looks too, the GPU one only with `gpu`); False
        once the kernel is gone."""
        with self._lock:
            before = self.peak_rss
            now = time.monotonic()
            # Listing the tree scans every process of the machine: on the slow cadence only,
            # not at each cell's end (`full` adds the cheap per-process looks there).
            refresh = now - self._slow_at >= SLOW_EVERY
            slow = full or refresh
            if refresh:
                self._slow_at = now
                if not self._refresh_tree():
                    return False
            elif not self._alive():
                return False
            rss = 0
            for pid, proc in list(self._procs.items()):
                try:
                    info = proc.memory_info()
                except psutil.Error:
                    self._procs.pop(pid, None)
                    continue
                rss += info.rss
                self._vms[pid] = info.vms
            self.peak_rss = max(self.peak_rss, rss)
            if slow:
                self._slow_looks(gpu=refresh or gpu, every=refresh)
            if self.peak_rss > before and self.on_peak is not None:
                self.on_peak(self.peak_rss)
            return self.pid in self._procs

    def _alive(self) -> bool:
        try:
            return bool(self._procs[self.pid].status() != psutil.STATUS_ZOMBIE)
        except (KeyError, psutil.Error):
            return False

    def _refresh_tree(self) -> bool:
        try:
            root = self._procs.get(self.pid) or psutil.Process(self.pid)
            if root.status() == psutil.STATUS_ZOMBIE:
                return False
            children = root.children(recursive=True)
        except psutil.Error:
            return False
        known = self._procs
        self._procs = {self.pid: root, **{c.pid: known.get(c.pid, c) for c in children}}
        self.pids.update(self._procs)
        return True

    def _slow_looks(self, gpu: bool, every: bool = True) -> None:
        for pid in list(self._procs):
            self.peak_rss = max(self.peak_rss, _vm_hwm(pid))
        if not gpu:
            return
        framework = read_peak(self.framework_file) if self.framework_file else None
        if not self.cuda:
            self.cuda = framework is not None or (self.cuda_possible and
                                                  self._loaded_cuda(every))
        if not self.cuda:
            return
        try:
            used, cards = gpu_look(self.pids)
        except Exception:  # a failing probe must not stop the RSS sampling
            used, cards = None, {}
        delta = max((cards[uuid] - before for uuid, before in self.card_baseline.items()
                     if uuid in cards), default=None)
        for figure, source in ((used, DRIVER), (framework, FRAMEWORK), (delta, CARD_DELTA)):
            if figure is not None and (source != CARD_DELTA or figure > 0):
                # The best source seen wins: a driver figure replaces a counter's for good.
                rank = (DRIVER, FRAMEWORK, CARD_DELTA).index
                if self.gpu_source is None or rank(source) < rank(self.gpu_source):
                    self.gpu_source, self.peak_gpu_mib = source, figure
                elif source == self.gpu_source:
                    self.peak_gpu_mib = max(self.peak_gpu_mib or 0, figure)
                break


    def _loaded_cuda(self, every: bool) -> bool:
        """Whether a process of the tree has libcuda in its memory maps. Reading the maps is
        the costly part of a cell's end: a process's are read again only when its address
        space changed size since they were last read (loading a library grows it), except on
        the slow cadence (`every`), which reads them all."""
        for pid in list(self._procs):
            size = self._vms.get(pid)
            if every or size is None or self._maps_read_at.get(pid, -1) != size:
                self._maps_read_at[pid] = size
                if _uses_cuda(pid):
                    return True
        return False
