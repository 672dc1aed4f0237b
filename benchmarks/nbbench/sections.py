"""The sections bench_preload.py and bench_nbdev.py print (and write to --out); they go below
KEEP_MARKER at the end of RESULTS.md, where bench.py keeps them."""

from __future__ import annotations

import os
import statistics
import time

from .markdown import row

MODES = ("serial", "-n 2")
FLOOR = ("The floor rows are not tools. \"no pytest\": `benchmarks/floor_kernels.py`, one "
         "process, starts nbtest's fork template with the same preload, forks a fresh ipykernel "
         "per notebook (one at a time beside the serial runs, two beside `-n 2`), runs the code "
         "cells over a bare blocking client and kills the kernel. A pytest plugin that gives "
         "every notebook a fresh kernel pays all of that, plus pytest's own start, collection "
         "and exit, and with `-n 2` the xdist workers'.")
FLOOR_IN_PYTEST = ("\"in pytest\": `benchmarks/floor_xdist.py`, a bare plugin doing the same "
                   "per notebook, which starts the template the moment pytest imports it (before "
                   "options, configuration or collection: sooner than a real plugin can know the "
                   "session runs notebooks), with pytest and xdist as they are.")
CONDITIONS = ("Each pytest tool runs with the other notebook plugins off (`-p no:...`), and "
              "with the bytecode cache on and warmed first (untimed), as users have them.")


def preload_header(runs: int) -> list[str]:
    return ["## Preloading: sets H and H' (issue 16)", "",
            f"`benchmarks/bench_preload.py --runs {runs}`, {time.strftime('%Y-%m-%d')}, "
            f"{os.cpu_count()} cores; wall seconds, median of {runs} runs, all tools side "
            f"by side in one run; ratio = tool / nbmake in the same mode. {CONDITIONS}", ""]


def preload_set(name: str, modules: list[str], results: dict[tuple[str, str], list[float]],
                uss: dict[str, int], floors: tuple[float, float, float, float]) -> list[str]:
    """One set's table (tools in the order measured) and its floors: the import's seconds,
    the fork floor's, the template's start seconds and its RSS (MiB)."""
    lines = [f"### Set {name}: 10 notebooks importing {', '.join(modules)}", "",
             "| tool | serial s | ratio | -n 2 s | ratio | kernels' peak summed USS |",
             "| --- | --- | --- | --- | --- | --- |"]
    base = {m: statistics.median(results[("nbmake", m)]) for m in MODES}
    for tool in dict.fromkeys(t for t, _ in results):
        cells = []
        for mode in MODES:
            value = statistics.median(results[(tool, mode)])
            cells += [f"{value:.2f}", f"{value / base[mode]:.2f}"]
        lines.append(row(tool, *cells, f"{uss.get(tool, 0) / 2**20:.0f} MiB"))
    imp, fork, start, rss = floors
    return lines + ["", f"{FLOOR} {FLOOR_IN_PYTEST}", "",
                    f"- `python -c \"import {', '.join(modules)}\"`: {imp:.2f} s "
                    "(what each spawned kernel pays again)",
                    f"- physical floor per notebook (fork of a preloaded process + the cells): "
                    f"{fork * 1000:.0f} ms",
                    f"- template preloading them: ready after {start:.2f} s, RSS {rss:.0f} MiB",
                    ""]


def nbdev_suite(runs: int, results: dict[str, list[float]]) -> list[str]:
    med = {tool: statistics.median(times) for tool, times in results.items()}
    lines = ["## An nbdev-like docs suite (issue 19)", "",
             f"`benchmarks/bench_nbdev.py --runs {runs}`, {time.strftime('%Y-%m-%d')}, "
             f"{os.cpu_count()} cores: 20 notebooks of an nbdev project importing a local "
             "package, numpy, pandas and matplotlib (every 4th with heavier pandas/plot cells); "
             f"wall seconds, median, all side by side in one run. {CONDITIONS}", "",
             "| tool | wall s | vs nbdev_test serial | vs nbdev_test parallel |",
             "| --- | --- | --- | --- |"]
    for tool, value in med.items():
        lines.append(row(tool, f"{value:.2f}", f"{value / med['nbdev_test serial']:.2f}",
                         f"{value / med['nbdev_test parallel']:.2f}"))
    return lines + ["", FLOOR.replace("one at a time beside the serial runs, two beside `-n 2`",
                                      "one or two at a time")]


def cpu_split(title: str, split: dict[str, tuple[float, dict[str, float]]]) -> list[str]:
    """Where each run's CPU went (cpu.py), and the wall time it implies at the least."""
    from .cpu import KINDS

    cores = os.cpu_count() or 1
    lines = [f"#### {title}: CPU seconds by process (one sampled run each)", "",
             row("run", "wall s", *KINDS, "total CPU s", f"total / {cores} cores"),
             row(*["---"] * (len(KINDS) + 4))]
    for name, (wall, cpu) in split.items():
        total = sum(cpu.values())
        lines.append(row(name, f"{wall:.2f}", *(f"{cpu[k]:.2f}" for k in KINDS),
                         f"{total:.2f}", f"{total / cores:.2f}"))
    return lines + ["", "Sampling every 3 ms costs a little CPU of its own (wall times here are "
                    "not the table's above); a process's last milliseconds can be missed.", ""]
