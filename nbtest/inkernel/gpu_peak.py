"""In the kernel: the framework's own record of its peak GPU memory, for the harness.

Where the driver lists no process of the kernel (a container hides host pids from NVML), the
harness cannot see the kernel's GPU memory from outside. The kernel knows it: after each cell
(IPython's post_run_cell), if torch has initialised CUDA, its peak reserved memory over every
device is appended to a private file the harness reads (gpu/peak.py), out of band like the
this_tests entries. Standard library only; torch is never imported here, only looked up.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def framework_peak_mib() -> int | None:
    """torch's peak reserved CUDA memory in MiB over its devices, if it initialised CUDA."""
    torch: Any = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None)
    try:
        if cuda is None or not cuda.is_initialized():
            return None
        peak = sum(cuda.max_memory_reserved(d) for d in range(cuda.device_count()))
    except Exception:  # a broken or partial torch install: no figure, never an error
        return None
    return int(peak // 2**20)


def install(path: str) -> None:
    """Append `{"peak_mib": N}` to `path` after each cell whose peak grew (runs in the kernel)."""
    last: list[int] = [0]

    def after_cell(result: Any = None) -> None:
        peak = framework_peak_mib()
        if peak is not None and peak > last[0]:
            last[0] = peak
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({"peak_mib": peak, "source": "torch"}) + "\n")

    shell: Any = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    if shell is not None:
        shell.events.register("post_run_cell", after_cell)
