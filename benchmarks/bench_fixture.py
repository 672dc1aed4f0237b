"""50 function-scoped uses of nbtest's `notebook` fixture against the same 50 tests written with
testbook, side by side in one run. A script, not a test: nothing asserts a time.

Each side is one pytest session in a subprocess of the bench venv's Python (testbook is a
benchmark dependency only: `pip install testbook` into .venv-bench), with this checkout's
nbtest first on PYTHONPATH. Both run the same 50 tests on the same notebook (an import, a
function, a small class); each test gets a fresh kernel with every cell run and calls the
function and a method through refs. The sessions alternate (`--runs N` pairs); the median
wall time of each side and their ratio are printed as a RESULTS.md section.

    python benchmarks/bench_fixture.py [--runs 1] [--tests 50] [--python .venv-bench/bin/python]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CELLS = ["import math", "def area(r):\n    return math.pi * r * r",
         "class Box:\n    def __init__(self, n):\n        self.n = n\n"
         "    def double(self):\n        return self.n * 2\nbox = Box(21)"]
NBTEST_TEST = """
def test_{i}(notebook):
    nb = notebook("shapes.ipynb", run="all")
    assert round(nb.ref("area")(1), 2) == 3.14
    assert nb.ref("box").double() == 42
"""
TESTBOOK_TEST = """
@testbook("shapes.ipynb", execute=True)
def test_{i}(tb):
    assert round(tb.ref("area")(1), 2) == 3.14
    assert tb.ref("box").double() == 42
"""


def write_project(folder: Path, tests: int) -> None:
    """The notebook and the two test files."""
    cells = [{"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
              "source": source} for source in CELLS]
    notebook = {"nbformat": 4, "nbformat_minor": 5, "cells": cells,
                "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                            "language": "python"}}}
    (folder / "shapes.ipynb").write_text(json.dumps(notebook))
    (folder / "pytest.ini").write_text("[pytest]\n")
    (folder / "test_nbtest.py").write_text(
        "".join(NBTEST_TEST.format(i=i) for i in range(tests)))
    (folder / "test_testbook.py").write_text(
        "from testbook import testbook\n" + "".join(TESTBOOK_TEST.format(i=i)
                                                    for i in range(tests)))


def run_side(python: str, folder: Path, test_file: str, tests: int) -> float:
    """One pytest session; its wall time (it must pass every test)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTEST_ADDOPTS": ""}
    t0 = time.perf_counter()
    done = subprocess.run([python, "-m", "pytest", "-q", "-p", "no:randomly", "-p",
                           "no:cacheprovider", test_file], cwd=folder, env=env,
                          capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0 or f"{tests} passed" not in done.stdout:
        sys.exit(f"{test_file} failed:\n{done.stdout[-3000:]}\n{done.stderr[-2000:]}")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--tests", type=int, default=50)
    parser.add_argument("--python", default=str(REPO.parent / "main" / ".venv-bench" / "bin"
                                                / "python"))
    args = parser.parse_args()
    versions = subprocess.run(
        [args.python, "-c", "import testbook, nbclient, ipykernel; print(testbook.__version__,"
         " nbclient.__version__, ipykernel.__version__)"], capture_output=True, text=True)
    if versions.returncode != 0:
        sys.exit(f"{args.python} has no testbook: pip install testbook into the bench venv")
    walls: dict[str, list[float]] = {"nbtest": [], "testbook": []}
    with tempfile.TemporaryDirectory(prefix="bench-fixture-") as tmp:
        folder = Path(tmp)
        write_project(folder, args.tests)
        for _ in range(args.runs):
            walls["nbtest"].append(run_side(args.python, folder, "test_nbtest.py", args.tests))
            walls["testbook"].append(run_side(args.python, folder, "test_testbook.py",
                                              args.tests))
    nbtest, testbook = (statistics.median(walls[k]) for k in ("nbtest", "testbook"))
    ratio = nbtest / testbook
    testbook_v, nbclient_v, ipykernel_v = versions.stdout.split()
    load = os.getloadavg()[0]
    print(f"""
## The notebook fixture against testbook (bench_fixture.py)

{args.tests} function-scoped tests, each a fresh kernel on the same 3-cell notebook (every cell
run, a function and a method called through refs), one pytest session per side, {args.runs}
run(s) alternating; wall time of the whole session (pytest's start included).

| side | wall s (median) | per test ms |
| --- | --- | --- |
| nbtest `notebook` fixture (forked kernels) | {nbtest:.2f} | {1000 * nbtest / args.tests:.0f} |
| testbook {testbook_v} (`@testbook(..., execute=True)`) | {testbook:.2f} | \
{1000 * testbook / args.tests:.0f} |

Every run, in order: nbtest {", ".join(f"{w:.2f}" for w in walls["nbtest"])} s; testbook \
{", ".join(f"{w:.2f}" for w in walls["testbook"])} s.

Ratio nbtest / testbook: **{ratio:.3f}** (target ≤ 0.1: {"met" if ratio <= 0.1 else "**not met**"}).
nbclient {nbclient_v}, ipykernel {ipykernel_v}; 1-minute load average at the end {load:.1f}.
""")


if __name__ == "__main__":
    main()
