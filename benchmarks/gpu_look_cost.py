"""The cost of the memory callback's per-cell look (issue 14): RSS + VmHWM only (what each
cell's end cost before), against the look with the GPU part (the kernel's memory map read for
the CUDA driver, the kernel's own counters file, and, once CUDA is seen, the GPU probe).

Measured on a process that has imported torch (CPU build here: a large memory map, no CUDA,
so no probe runs) and on a bare Python process. Run: .venv/bin/python benchmarks/gpu_look_cost.py
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time

from nbtest.callbacks.memory import TreeSampler

ROUNDS = 300


def per_look(sampler: TreeSampler, gpu: bool) -> float:
    """Median seconds of one full sample."""
    times = []
    for _ in range(ROUNDS):
        t0 = time.perf_counter()
        sampler.sample(full=True, gpu=gpu)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    """Print one line per process kind: the look without and with its GPU part."""
    for label, code in (("bare python", "import time; time.sleep(60)"),
                        ("python with torch imported",
                         "import torch, time; print('ready', flush=True); time.sleep(60)")):
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
        try:
            if "torch" in code:
                proc.stdout.readline()  # type: ignore[union-attr]
            else:
                time.sleep(0.5)
            with tempfile.NamedTemporaryFile(suffix=".jsonl") as counters:
                sampler = TreeSampler(proc.pid, framework_file=counters.name)
                with open(f"/proc/{proc.pid}/maps", "rb") as fh:
                    size = len(fh.read())
                before, after = per_look(sampler, gpu=False), per_look(sampler, gpu=True)
            print(f"{label}: memory map {size / 1024:.0f} KiB; cell-end look "
                  f"{before * 1e3:.3f} ms without the GPU part, {after * 1e3:.3f} ms with it")
        finally:
            proc.kill()
            proc.wait()


if __name__ == "__main__":
    main()
