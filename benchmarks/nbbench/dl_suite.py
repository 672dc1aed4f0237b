"""bench_dl.py: the deep-learning docs suite (dl_sets.py) under nbdev_test, nbmake and nbtest,
serial and with 2 workers, in interleaved rounds (the tools' order rotated each round);
medians, the ratios issue 28 sets targets for, and one profiled nbtest session."""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .dl_sets import N_NOTEBOOKS, cell_count, make_dl_project
from .markdown import emit, row
from .runner import warm_up, with_bytecode
from .tools import NO_PEERS, floor_cmd
from .venv import in_bench_venv

RUN_TIMEOUT_S = 1800
# Issue 28's targets: (tool, its peer, the ratio it must not exceed).
TARGETS = (("nbtest serial, preload auto", "nbdev_test serial", 1.2),
           ("nbtest -n 2, preload auto", "nbdev_test 2 workers", 1.5),
           ("nbtest serial, preload auto", "nbmake serial", 0.25),
           ("nbtest -n 2, preload auto", "nbmake -n 2", 0.25))
# What a kernel per notebook costs before any harness work (benchmarks/floor_kernels.py, with
# the modules nbtest's "auto" chose preloaded): the floor a target may be out of reach behind.
FLOORS = (("floor: a kernel per notebook, 1 at a time", "nbdev_test serial",
           "nbtest serial, preload auto"),
          ("floor: a kernel per notebook, 2 at a time", "nbdev_test 2 workers",
           "nbtest -n 2, preload auto"))


def dl_tools(py: str, notebooks: int) -> dict[str, list[str]]:
    """The command lines, run in the project folder (nbdev-test is in py's bin folder)."""
    nbdev_test = str(Path(py).parent / "nbdev-test")
    pt = [py, "-m", "pytest", "-q", "nbs"]
    nbtest = [*pt, *NO_PEERS["nbtest"], "--nbtest"]
    nbmake = [*pt, *NO_PEERS["nbmake"], "--nbmake"]
    return {
        "nbdev_test serial": [nbdev_test, "--n-workers", "0"],
        "nbdev_test 2 workers": [nbdev_test, "--n-workers", "2"],
        "nbtest serial": nbtest,
        "nbtest -n 2": [*nbtest, "-n", "2"],
        "nbtest serial, preload auto": [*nbtest, "--nbtest-preload=auto"],
        "nbtest -n 2, preload auto": [*nbtest, "--nbtest-preload=auto", "-n", "2"],
        "nbmake serial": nbmake,
        "nbmake -n 2": [*nbmake, "-n", "2"],
    }


def learned_preload(project: Path) -> list[str]:
    """The modules `--nbtest-preload auto` chose from the kernels of the session that learned
    (what they reported, kept in pytest's cache)."""
    from nbtest.kernel.preload import learned_from_kernels
    from nbtest.plugin.fork_template import KERNELS_DIR

    kernels = {}
    for path in sorted((project / ".pytest_cache" / "d" / KERNELS_DIR).glob("*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        kernels[record["notebook"]] = record["modules"]
    return learned_from_kernels(kernels)


def run_once(cmd: list[str], cwd: Path, env: dict[str, str], notebooks: int) -> tuple[float, str]:
    """Wall seconds (NaN unless it exited 0 and, for pytest, passed every notebook), output."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=RUN_TIMEOUT_S)
    wall = time.perf_counter() - t0
    out = proc.stdout + proc.stderr
    passed = re.findall(r"(\d+) passed", out)
    ok = proc.returncode == 0 and ("pytest" not in cmd or (
        passed and int(passed[-1]) == notebooks and not re.search(r"\d+ (failed|error)", out)))
    if not ok:
        print(f"FAILED ({proc.returncode}): {' '.join(cmd)}\n{out[-3000:]}", file=sys.stderr)
    return (wall if ok else float("nan")), out


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def main(script: str, doc: str) -> int:
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--notebooks", type=int, default=N_NOTEBOOKS,
                        help="use the first N notebooks (a smoke test: fewer)")
    parser.add_argument("--quick", action="store_true", help="1 round: a smoke test")
    parser.add_argument("--targets-only", action="store_true",
                        help="leave out the runs no target or floor needs (nbtest without preload)")
    parser.add_argument("--out")
    args = parser.parse_args()
    in_bench_venv(script, sys.argv[1:])
    runs = 1 if args.quick else args.runs
    root = Path(tempfile.mkdtemp(prefix="nbtest-bench-dl-"))
    project = make_dl_project(root)
    for extra in sorted((project / "nbs").glob("*.ipynb"))[args.notebooks:]:
        extra.unlink()
    n = args.notebooks
    bindir = Path(sys.executable).parent
    env = with_bytecode({**os.environ, "PYTHONPATH": str(project),
                         "PYTEST_ADDOPTS": "-p no:randomly",
                         "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"})
    tools = dl_tools(sys.executable, n)
    if args.targets_only:
        tools = {tool: cmd for tool, cmd in tools.items() if not tool.startswith("nbtest")
                 or "preload" in tool}
    results: dict[str, list[float]] = {tool: [] for tool in tools}
    loads = [load()]
    try:
        warm_up(list(tools.values()), ["torch", "pandas", "matplotlib.pyplot", "nbdev",
                                       "dlbench.basics"], project, env)
        # --nbtest-preload auto learns in a first session (untimed); the timed ones are later.
        run_once(tools["nbtest serial, preload auto"], project, env, n)
        preload = ",".join(learned_preload(project))
        print(f"bench: preload auto chose {preload}", file=sys.stderr, flush=True)
        for jobs, (floor, _, _) in enumerate(FLOORS, start=1):
            tools[floor], results[floor] = floor_cmd(sys.executable, "nbs", preload, jobs), []
        names = list(tools)
        for round_ in range(runs):
            shift = round_ % len(names)
            for tool in names[shift:] + names[:shift]:
                results[tool].append(run_once(tools[tool], project, env, n)[0])
                print(f"bench: round {round_ + 1} {tool}: {results[tool][-1]:.2f} s "
                      f"(load {load()})", file=sys.stderr, flush=True)
            loads.append(load())
        plain = dl_tools(sys.executable, n)["nbtest serial"]
        profile = run_once([*plain, "--nbtest-profile"], project, env, n)[1]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return emit(section(runs, n, results, loads, profile), args.out)


def section(runs: int, n: int, results: dict[str, list[float]], loads: list[str],
            profile: str) -> list[str]:
    """RESULTS.md's section: the table, the targets, the profile's advice."""
    med = {tool: statistics.median(times) for tool, times in results.items()}
    cells = cell_count() * n // N_NOTEBOOKS
    lines = ["## A deep-learning library's docs suite (issue 28)", "",
             f"`benchmarks/bench_dl.py --runs {runs}`, {time.strftime('%Y-%m-%d')}, "
             f"{os.cpu_count()} cores, niceness {os.nice(0)} (load average 1/5/15 min "
             f"before and after each round: {'; '.join(loads)}). {n} nbdev notebooks "
             f"(~{cells} code cells) of a generated library `dlbench` (20 submodules, entered "
             "through `dlbench.basics`, `.data.all`, `.torch_core`, `.tabular.all`, "
             "`.vision.all`, `.text.core`) importing torch, numpy, pandas, matplotlib; each "
             "trains a tiny MLP on synthetic data with a tqdm bar, shows DataFrames and a plot. "
             f"Wall seconds, median of {runs} interleaved rounds (every run listed); "
             "`--nbtest-preload auto` timed from its second session.", "",
             "| tool | median s | runs | vs nbdev_test serial | vs nbdev_test 2 workers "
             "| vs nbmake serial |", "| --- | --- | --- | --- | --- | --- |"]
    for tool, value in med.items():
        lines.append(row(tool, f"{value:.2f}", ", ".join(f"{t:.1f}" for t in results[tool]),
                         f"{value / med['nbdev_test serial']:.2f}",
                         f"{value / med['nbdev_test 2 workers']:.2f}",
                         f"{value / med['nbmake serial']:.2f}"))
    lines += ["", "| target | ratio | met |", "| --- | --- | --- |"]
    for tool, peer, limit in TARGETS:
        ratio = med[tool] / med[peer]
        lines.append(row(f"{tool} ≤ {limit}× {peer}", f"{ratio:.2f}",
                         "yes" if ratio <= limit else "**no**"))
    lines += ["", "| floor | floor / peer | nbtest / floor |", "| --- | --- | --- |"]
    for floor, peer, tool in FLOORS:
        if floor in med:
            lines.append(row(f"{floor} (peer: {peer}; nbtest: {tool})",
                             f"{med[floor] / med[peer]:.2f}", f"{med[tool] / med[floor]:.2f}"))
    advice = [line for line in profile.partition("nbtest profile")[2].splitlines()
              if line.startswith(("imports by", "consider", "  [tool.nbtest]"))]
    lines += ["", "`--nbtest-profile` of one `nbtest serial` session (no preload) says:", "",
              "```text", *advice, "```", ""]
    return lines
