"""bench_preload.py: sets H and H' against nbmake and nbval-lax, nbtest's preload off, declared
and auto, serially and with `-n 2`; the floors (probes.py); a section (sections.py)."""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

from . import probes, sections
from .cpu import cpu_by_kind
from .markdown import emit
from .runner import timed, warm_up, with_bytecode
from .sets import PRELOAD_SETS, make_preload_set
from .tools import preload_tools
from .venv import in_bench_venv


def environment(cmd: list[str]) -> dict[str, str]:
    """Auto preload learns into pytest's cache: only its runs keep the cache provider."""
    addopts = "-p no:randomly" if "--nbtest-preload=auto" in cmd else \
        "-p no:randomly -p no:cacheprovider"
    return with_bytecode({**os.environ, "PYTEST_ADDOPTS": addopts})


def measure_set(folder: Path, modules: list[str], runs: int
                ) -> tuple[dict[tuple[str, str], list[float]], dict[str, int]]:
    """Wall seconds by (tool, mode), and the kernels' peak summed USS by tool (serial)."""
    results: dict[tuple[str, str], list[float]] = {}
    uss: dict[str, int] = {}
    serial = preload_tools(sys.executable, modules, [])
    warm_up(list(serial.values()), modules, folder, environment([]))
    for mode, workers in zip(sections.MODES, ([], ["-n", "2"])):
        for tool, cmd in preload_tools(sys.executable, modules, workers).items():
            if tool.endswith("auto)"):
                timed(cmd, folder, environment(cmd))  # the session that learns
            for _ in range(runs):
                wall, peak = timed(cmd, folder, environment(cmd), uss=mode == "serial")
                results.setdefault((tool, mode), []).append(wall)
                if mode == "serial":
                    uss[tool] = max(uss.get(tool, 0), peak)
        shutil.rmtree(folder / ".pytest_cache", ignore_errors=True)
    return results, uss


def cpu_split(folder: Path, modules: list[str]) -> dict[str, tuple[float, dict[str, float]]]:
    """CPU by process of nbmake's and nbtest's (preload declared) `-n 2` runs."""
    tools = preload_tools(sys.executable, modules, ["-n", "2"])
    return {f"{tool} -n 2": cpu_by_kind(tools[tool], folder, environment(tools[tool]))
            for tool in ("nbmake", "nbtest (preload declared)")}


def main(script: str, doc: str) -> int:
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sets", default="H,H2")
    parser.add_argument("--out")
    args = parser.parse_args()
    in_bench_venv(script, sys.argv[1:])
    root = Path(tempfile.mkdtemp(prefix="nbtest-bench-preload-"))
    lines = sections.preload_header(args.runs)
    try:
        for name in args.sets.split(","):
            modules = PRELOAD_SETS[name]
            folder = make_preload_set(root, name)
            results, uss = measure_set(folder, modules, args.runs)
            imp = statistics.median(probes.floor_import(modules) for _ in range(3))
            floors = (imp, probes.floor_fork(modules), *probes.template_cost(modules))
            lines += sections.preload_set(name, modules, results, uss, floors)
            lines += sections.cpu_split(f"Set {name}, `-n 2`", cpu_split(folder, modules))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return emit(lines, args.out)
