"""GPU memory helpers of fastai v1's test suite (tests/utils/mem.py), importable without torch.

Sizes are in MiB (the seed's "MBs"). Readings come from nbtest.gpu.probe's probe (NVML, else
nvidia-smi), for the GPUs this process may see; the functions that allocate import torch when
called. Without a GPU nothing raises: readings are zeros, allocations return None.

    from nbtest.utils.mem import *
    if use_gpu:
        with GPUMemTrace() as mtrace:
            x = gpu_mem_allocate_mbs(100)
        used, peaked = mtrace.data()
"""

from __future__ import annotations

import gc
import sys
import threading
from collections import namedtuple
from typing import Any

__all__ = ["GPUMemory", "GPUMemTrace", "use_gpu", "gpu_mem_get", "gpu_mem_get_all",
           "gpu_mem_get_free", "gpu_mem_get_used", "gpu_mem_get_used_no_cache",
           "gpu_with_max_free_mem", "gpu_mem_allocate_mbs", "gpu_mem_consume_some",
           "gpu_cache_clear", "gpu_mem_reclaim"]

GPUMemory = namedtuple("GPUMemory", ["total", "free", "used"])
GPUMemory.__doc__ = "Total, free and used memory of one GPU, in MiB."
_NO_GPU = GPUMemory(0, 0, 0)
PEAK_EVERY = 0.005  # seconds between GPUMemTrace's peak samples
use_gpu: bool  # whether torch can use a GPU here; set on first access, by __getattr__


def __getattr__(name: str) -> Any:
    # `use_gpu` is the seed's module constant; computing it lazily keeps the import free of
    # driver calls and of torch (imported only once a GPU is seen).
    if name == "use_gpu":
        return _gpu()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _use_gpu() -> bool:
    """torch.cuda.is_available(), asked only when the probe sees a GPU and torch is installed."""
    from ..gpu.probe import cuda_available

    if not cuda_available():
        return False
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def _gpu() -> bool:
    """`use_gpu`, computed once."""
    if "use_gpu" not in globals():
        globals()["use_gpu"] = _use_gpu()
    return bool(globals()["use_gpu"])


def _loaded_torch() -> Any:
    """torch, if this process has imported it and initialised CUDA; else None."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_initialized():
        return None
    return torch


def _current_device() -> int:
    torch = _loaded_torch()
    return int(torch.cuda.current_device()) if torch is not None else 0


def gpu_mem_get_all() -> list[GPUMemory]:
    """Total, free and used MiB of every visible GPU, in the order torch numbers them."""
    from ..gpu.probe import probe

    return [GPUMemory(g.total_mib, g.free_mib, g.used_mib)
            for g in probe(processes=False).gpus]


def gpu_mem_get(id: int | None = None) -> GPUMemory:
    """Total, free and used MiB of GPU `id` (default: torch's current device); zeros if none."""
    memory = gpu_mem_get_all()
    index = _current_device() if id is None else id
    return memory[index] if 0 <= index < len(memory) else _NO_GPU


def gpu_mem_get_free() -> int:
    """Free MiB of the current GPU (0 without one)."""
    return int(gpu_mem_get().free)


def gpu_mem_get_used() -> int:
    """Used MiB of the current GPU (0 without one)."""
    return int(gpu_mem_get().used)


def gpu_mem_get_used_no_cache() -> int:
    """Used MiB of the current GPU after gc and emptying torch's cache."""
    gpu_mem_reclaim()
    return gpu_mem_get_used()


def gpu_with_max_free_mem() -> tuple[int | None, int]:
    """(index, free MiB) of the visible GPU with the most free memory; (None, 0) without one."""
    from ..gpu.probe import pick_gpu, probe

    best = pick_gpu(probe(processes=False).gpus)
    return (None, 0) if best is None else (best.index, best.free_mib)


def gpu_mem_allocate_mbs(n: int) -> Any:
    """A float32 CUDA tensor of `n` MiB (None without a GPU); keep it to keep the memory."""
    if not _gpu():
        return None
    import torch

    return torch.ones(n * 2**18, dtype=torch.float32, device="cuda")


def gpu_mem_consume_some(n: int) -> Any:
    """An n x n float32 CUDA tensor (n=2000: about 16 MB); None without a GPU."""
    if not _gpu():
        return None
    import torch

    return torch.ones((n, n), dtype=torch.float32, device="cuda")


def gpu_cache_clear() -> None:
    """torch.cuda.empty_cache(), when this process uses CUDA through torch."""
    torch = _loaded_torch()
    if torch is not None:
        torch.cuda.empty_cache()


def gpu_mem_reclaim() -> None:
    """gc.collect() (objects in reference cycles), then empty torch's CUDA cache."""
    gc.collect()
    gpu_cache_clear()


class GPUMemTrace:
    """Records the change in used GPU memory, and the peak above it, over a block (MiB).

    `data()` is (delta_used, delta_peaked) as in fastai: delta_peaked is how far the peak rose
    above where usage ended. The peak is sampled by a thread; without a GPU both stay 0.
    """

    def __init__(self, silent: bool = False, ctx: str | None = None,
                 on_exit_report: bool = True) -> None:
        self.silent = silent
        self.ctx = ctx
        self.on_exit_report = on_exit_report
        self.device = 0
        self.used_start = self.used_peak = 0
        self.delta_used = self.delta_peaked = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _used(self) -> int:
        return int(gpu_mem_get(self.device).used)

    def _watch(self) -> None:
        while not self._stop.wait(PEAK_EVERY):
            self.used_peak = max(self.used_peak, self._used())

    def reset(self) -> None:
        """Start counting from the memory in use now."""
        self.used_start = self.used_peak = gpu_mem_get_used_no_cache()
        self.delta_used = self.delta_peaked = 0

    def start(self) -> GPUMemTrace:
        """Start tracing (done by `with`)."""
        self.device = _current_device()
        self.reset()
        if self._thread is None and gpu_mem_get_all():
            self._stop.clear()
            self._thread = threading.Thread(target=self._watch, name="nbtest-GPUMemTrace",
                                            daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop tracing and keep the figures."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=15)
            self._thread = None
        self._settle()

    def _settle(self) -> None:
        used = gpu_mem_get_used_no_cache()
        self.used_peak = max(self.used_peak, used)
        self.delta_used = used - self.used_start
        self.delta_peaked = self.used_peak - used  # fastai's: peak - start - delta_used

    def data(self) -> tuple[int, int]:
        """(delta_used, delta_peaked) in MiB, up to now if still tracing."""
        if self._thread is not None:
            self._settle()
        return self.delta_used, self.delta_peaked

    def report(self, subctx: str | None = None) -> None:
        """Print the figures with the context labels, unless silent."""
        if not self.silent:
            label = " ".join(part for part in (self.ctx, subctx) if part)
            print(f"{self}" + (f" ({label})" if label else ""))

    def __enter__(self) -> GPUMemTrace:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        if self.on_exit_report:
            self.report("exit")

    def __repr__(self) -> str:
        used, peaked = self.data()
        return f"△Used Peaked MB: {used:6,.0f} {peaked:6,.0f}"
