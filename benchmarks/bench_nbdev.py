"""An nbdev-like docs suite (issue 19): nbtest against nbdev_test and nbmake, side by side.

    python3 benchmarks/bench_nbdev.py [--runs 3] [--out FILE]

Generates an nbdev project (pyproject.toml's [tool.nbdev], a small package `nbdevbench`, 20
notebooks that import it plus numpy, pandas and matplotlib, with tiny cells and a few heavier
ones) and times: nbdev-test serially (`--n-workers 0`) and with its default parallel mode;
nbtest serially and with `-n 2`, preload off and auto (a first session learns, the second is
timed); nbmake serially and with `-n 2`. Runs under `.venv-bench` (the `bench` extra has
nbdev).
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
import time
from pathlib import Path

from bench_common import emit, in_bench_venv

# nbdev 3 reads its settings from pyproject.toml (nbdev 2 from settings.ini, which nbdev 3
# refuses); nbtest reads either.
PYPROJECT = """[build-system]
requires = ["setuptools>=77"]
build-backend = "setuptools.build_meta"

[project]
name = "nbdevbench"
dynamic = ["version"]
description = "bench"
requires-python = ">=3.9"

[tool.setuptools.dynamic]
version = {attr = "nbdevbench.__version__"}

[tool.nbdev]
tst_flags = "slow"
"""
PACKAGE = ('__version__ = "0.0.1"\nimport numpy as np\n\n'
           "def scale(values, k=2):\n    return np.asarray(values) * k\n")
TINY = ["x = scale([1, 2, 3])", "assert list(x) == [2, 4, 6]", "x.sum()"]
HEAVY = ["df = pd.DataFrame({'a': np.arange(20000), 'b': np.random.rand(20000)})",
         "g = df.groupby(df.a % 10).b.mean()\nassert len(g) == 10",
         "fig, ax = plt.subplots()\nax.plot(g.index, g.values)\nplt.close(fig)"]


def cell(source: str) -> dict:
    return {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
            "source": source}


def make_project(root: Path) -> Path:
    project = root / "proj"
    (project / "nbdevbench").mkdir(parents=True)
    (project / "nbs").mkdir()
    (project / "pyproject.toml").write_text(PYPROJECT)
    (project / "pytest.ini").write_text("[pytest]\n")
    (project / "nbdevbench" / "__init__.py").write_text(PACKAGE)
    for i in range(20):
        cells = [{"cell_type": "markdown", "metadata": {}, "source": f"# Notebook {i}"},
                 cell("#|hide\nimport numpy as np, pandas as pd\n"
                      "import matplotlib\nmatplotlib.use('Agg')\n"
                      "import matplotlib.pyplot as plt\nfrom nbdevbench import scale")]
        cells += [cell(s) for s in (TINY * 3 + (HEAVY if i % 4 == 0 else []))]
        nb = {"nbformat": 4, "nbformat_minor": 5, "cells": cells,
              "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                          "language": "python"}}}
        (project / "nbs" / f"{i:02d}_page.ipynb").write_text(json.dumps(nb))
    return project


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        print(f"FAILED ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-3000:]}"
              f"{proc.stderr[-2000:]}", file=sys.stderr)
        return float("nan")
    return wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out")
    args = parser.parse_args()
    in_bench_venv(__file__)
    root = Path(tempfile.mkdtemp(prefix="nbtest-bench-nbdev-"))
    project = make_project(root)
    bindir = Path(sys.executable).parent
    env = {**os.environ, "PYTHONPATH": str(project), "PYTEST_ADDOPTS": "-p no:randomly",
           "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}"}
    pt = [sys.executable, "-m", "pytest", "-q", "nbs"]
    tools = {
        "nbdev_test serial": [str(bindir / "nbdev-test"), "--n-workers", "0"],
        "nbdev_test parallel": [str(bindir / "nbdev-test")],
        "nbtest serial, no preload": [*pt, "--nbtest"],
        "nbtest serial, preload auto": [*pt, "--nbtest", "--nbtest-preload=auto"],
        "nbtest -n 2, no preload": [*pt, "--nbtest", "-n", "2"],
        "nbtest -n 2, preload auto": [*pt, "--nbtest", "--nbtest-preload=auto", "-n", "2"],
        "nbmake serial": [*pt, "--nbmake"],
        "nbmake -n 2": [*pt, "--nbmake", "-n", "2"],
    }
    results: dict[str, list[float]] = {}
    try:
        for tool, cmd in tools.items():
            if "auto" in tool:
                shutil.rmtree(project / ".pytest_cache", ignore_errors=True)
                timed(cmd, project, env)  # the session that learns
            results[tool] = [timed(cmd, project, env) for _ in range(args.runs)]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    med = {tool: statistics.median(times) for tool, times in results.items()}
    lines = ["## An nbdev-like docs suite (issue 19)", "",
             f"`benchmarks/bench_nbdev.py --runs {args.runs}`, {time.strftime('%Y-%m-%d')}, "
             f"{os.cpu_count()} cores: 20 notebooks of an nbdev project importing a local "
             "package, numpy, pandas and matplotlib (every 4th with heavier pandas/plot cells); "
             "wall seconds, median, all side by side in one run.", "",
             "| tool | wall s | vs nbdev_test serial | vs nbdev_test parallel |",
             "| --- | --- | --- | --- |"]
    for tool, value in med.items():
        lines.append(f"| {tool} | {value:.2f} | {value / med['nbdev_test serial']:.2f} | "
                     f"{value / med['nbdev_test parallel']:.2f} |")
    return emit(lines, args.out)


if __name__ == "__main__":
    sys.exit(main())
