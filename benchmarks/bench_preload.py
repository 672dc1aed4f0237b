"""Set H and H' (issue 16): notebooks that import heavy libraries, nbtest with and without
preloading against nbmake and nbval-lax, side by side in one run.

    python3 benchmarks/bench_preload.py [--runs 3] [--sets H,H2] [--out FILE]

Set H: 10 notebooks, each `import numpy as np, torch`, a 100x100 matmul and an assert.
Set H' (H2): the same, also importing pandas and matplotlib. Each tool runs each set serially
and with `-n 2`; nbtest runs with preload off, declared (`--nbtest-preload numpy,torch,...`) and
auto (a first session learns, the second is timed). Also measured: `python -c "import ..."`
(what each spawned kernel pays), the physical floor (fork of a preloaded process plus the
cells' own work), the template's start and RSS, and the kernels' summed USS at its peak
(copy-on-write pages of a forked kernel are not its own). Runs under `.venv-bench` (make bench
sets it up); prints a Markdown section and writes it to --out when given.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench_common import REPO, emit, in_bench_venv

SETS = {"H": ["numpy", "torch"], "H2": ["numpy", "torch", "pandas", "matplotlib"]}
CELLS = ["import numpy as np, torch{extra}",
         "a = torch.randn(100, 100)\nb = a @ a.T\nassert b.shape == (100, 100)",
         "assert np.isfinite(b.numpy()).all()"]


def notebook(imports: list[str]) -> dict:
    extra = "".join(f"\nimport {m}" for m in imports if m not in ("numpy", "torch"))
    cells = [{"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
              "source": src.format(extra=extra)} for src in CELLS]
    return {"nbformat": 4, "nbformat_minor": 5, "cells": cells,
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                        "language": "python"}}}


def make_set(root: Path, name: str) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "pytest.ini").write_text("[pytest]\n")
    for i in range(10):
        (folder / f"nb{i:02d}.ipynb").write_text(json.dumps(notebook(SETS[name])))
    return folder


class UssSampler:
    """The kernels' USS summed over every kernel of a run, each at its peak (sampled every
    0.1 s); the fork template is not a kernel: its memory is counted once, apart."""

    def __init__(self) -> None:
        self.kernels: dict[int, int] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)

    @property
    def peak(self) -> int:
        return sum(self.kernels.values())

    def loop(self) -> None:
        import psutil

        me = psutil.Process()
        while not self.stop.wait(0.1):
            for proc in me.children(recursive=True):
                try:
                    # A spawned kernel runs ipykernel; a forked one is the template's child.
                    if "ipykernel" in " ".join(proc.cmdline()) or \
                            "nbtest.kernel.template" in " ".join(proc.parent().cmdline()):
                        uss = proc.memory_full_info().uss
                        self.kernels[proc.pid] = max(self.kernels.get(proc.pid, 0), uss)
                except Exception:
                    continue

    def __enter__(self) -> UssSampler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def timed(cmd: list[str], cwd: Path, uss: bool = False) -> tuple[float, int, bool]:
    """Wall seconds, peak summed USS (bytes) and success of one command."""
    env = {**os.environ, "PYTEST_ADDOPTS": "-p no:randomly -p no:cacheprovider"
           if "--nbtest-preload=auto" not in cmd else "-p no:randomly"}
    sampler = UssSampler()
    t0 = time.perf_counter()
    if uss:
        sampler.__enter__()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if uss:
        sampler.__exit__()
    if proc.returncode != 0:
        print(f"FAILED ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-2000:]}",
              file=sys.stderr)
    return wall, sampler.peak, proc.returncode == 0


def tools(modules: list[str]) -> dict[str, list[str]]:
    py = sys.executable
    pt = [py, "-m", "pytest", "-q"]
    declared = f"--nbtest-preload={','.join(modules)}"
    return {
        "nbmake": [*pt, "--nbmake"],
        "nbval-lax": [*pt, "--nbval-lax"],
        "nbtest (no preload)": [*pt, "--nbtest"],
        "nbtest (preload declared)": [*pt, "--nbtest", declared],
        "nbtest (preload auto)": [*pt, "--nbtest", "--nbtest-preload=auto"],
    }


def floor_import(modules: list[str]) -> float:
    code = "import " + ", ".join(modules)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - t0


def floor_fork(modules: list[str]) -> float:
    """Per notebook: fork a process that has imported `modules`, run the cells, exit."""
    code = f"""
import os, time
import {', '.join(modules)}
import numpy as np, torch
t0 = time.perf_counter()
for _ in range(10):
    pid = os.fork()
    if pid == 0:
        a = torch.randn(100, 100); b = a @ a.T; assert np.isfinite(b.numpy()).all()
        os._exit(0)
    os.waitpid(pid, 0)
print((time.perf_counter() - t0) / 10)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    return float(out.stdout.strip().splitlines()[-1])


def template_cost(modules: list[str]) -> tuple[float, float]:
    """Seconds until a template preloading `modules` listens, and its RSS (MiB)."""
    import psutil

    from nbtest.kernel.forkserver import ForkServer

    t0 = time.perf_counter()
    server = ForkServer(["-Xfrozen_modules=off"], preload=modules, root=str(REPO))
    while not server.ready():
        time.sleep(0.01)
    seconds = time.perf_counter() - t0
    rss = psutil.Process(server.process.pid).memory_info().rss / 2**20
    server.stop()
    return seconds, rss


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sets", default="H,H2")
    parser.add_argument("--out")
    args = parser.parse_args()
    in_bench_venv(__file__)
    root = Path(tempfile.mkdtemp(prefix="nbtest-bench-preload-"))
    lines = ["## Preloading: sets H and H' (issue 16)", "",
             f"`benchmarks/bench_preload.py --runs {args.runs}`, {time.strftime('%Y-%m-%d')}, "
             f"{os.cpu_count()} cores; wall seconds, median of {args.runs} runs, all tools side "
             "by side in one run; ratio = tool / nbmake in the same mode.", ""]
    try:
        for name in args.sets.split(","):
            modules = SETS[name]
            folder = make_set(root, name)
            results: dict[tuple[str, str], list[float]] = {}
            uss: dict[str, int] = {}
            for mode, extra in (("serial", []), ("-n 2", ["-n", "2"])):
                for tool, cmd in tools(modules).items():
                    if extra and tool == "nbval-lax":  # nbval's cells must stay on one worker
                        cmd = [*cmd, "--dist", "loadfile"]
                    if tool.endswith("auto)"):
                        timed([*cmd, *extra], folder)  # the session that learns
                    for _ in range(args.runs):
                        wall, peak, ok = timed([*cmd, *extra], folder, uss=mode == "serial")
                        results.setdefault((tool, mode), []).append(wall if ok else float("nan"))
                        if mode == "serial":
                            uss[tool] = max(uss.get(tool, 0), peak)
                shutil.rmtree(folder / ".pytest_cache", ignore_errors=True)
            lines += [f"### Set {name}: 10 notebooks importing {', '.join(modules)}", "",
                      "| tool | serial s | ratio | -n 2 s | ratio | kernels' peak summed USS |",
                      "| --- | --- | --- | --- | --- | --- |"]
            base = {m: statistics.median(results[("nbmake", m)]) for m in ("serial", "-n 2")}
            for tool in tools(modules):
                cells = []
                for mode in ("serial", "-n 2"):
                    value = statistics.median(results[(tool, mode)])
                    cells += [f"{value:.2f}", f"{value / base[mode]:.2f}"]
                peak = uss.get(tool, 0) / 2**20
                lines.append(f"| {tool} | {' | '.join(cells)} | {peak:.0f} MiB |")
            imp = statistics.median(floor_import(modules) for _ in range(3))
            fork = floor_fork(modules)
            start, rss = template_cost(modules)
            lines += ["", f"- `python -c \"import {', '.join(modules)}\"`: {imp:.2f} s "
                      "(what each spawned kernel pays again)",
                      f"- physical floor per notebook (fork of a preloaded process + the cells): "
                      f"{fork * 1000:.0f} ms",
                      f"- template preloading them: ready after {start:.2f} s, RSS {rss:.0f} MiB",
                      ""]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return emit(lines, args.out)


if __name__ == "__main__":
    sys.exit(main())
