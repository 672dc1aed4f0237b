"""bench_nbdev.py: the nbdev-like project (sets.py) under nbdev-test, nbtest and nbmake
(tools.py), each timed --runs times (auto preload after a first session that learns)."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

from . import sections
from .cpu import cpu_by_kind
from .markdown import emit
from .runner import timed, warm_up, with_bytecode
from .sets import make_nbdev_project
from .tools import nbdev_tools
from .venv import in_bench_venv

# The runs whose CPU is split by process: issue 19's `-n 2` target against its peer.
CPU_SPLIT = ("nbdev_test parallel", "nbtest serial, preload auto", "nbtest -n 2, preload auto")


def main(script: str, doc: str) -> int:
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out")
    args = parser.parse_args()
    in_bench_venv(script, sys.argv[1:])
    root = Path(tempfile.mkdtemp(prefix="nbtest-bench-nbdev-"))
    project = make_nbdev_project(root)
    bindir = Path(sys.executable).parent
    env = with_bytecode({**os.environ, "PYTHONPATH": str(project),
                         "PYTEST_ADDOPTS": "-p no:randomly",
                         "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"})
    results: dict[str, list[float]] = {}
    tools = nbdev_tools(sys.executable)
    try:
        warm_up(list(tools.values()), ["numpy", "pandas", "matplotlib.pyplot", "nbdev"],
                project, env)
        for tool, cmd in tools.items():
            if "auto" in tool:
                shutil.rmtree(project / ".pytest_cache", ignore_errors=True)
                timed(cmd, project, env)  # the session that learns
            results[tool] = [timed(cmd, project, env)[0] for _ in range(args.runs)]
        # The cache holds what the last auto session learned: these runs preload it too.
        split = {tool: cpu_by_kind(tools[tool], project, env) for tool in CPU_SPLIT}
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return emit(sections.nbdev_suite(args.runs, results)
                + ["", *sections.cpu_split("The nbdev-like suite", split)], args.out)
