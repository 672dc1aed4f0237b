"""An nbdev-like docs suite (issue 19): nbtest against nbdev_test and nbmake, side by side.

    python3 benchmarks/bench_nbdev.py [--runs 3] [--out FILE]

Generates an nbdev project (pyproject.toml's [tool.nbdev], a small package `nbdevbench`, 20
notebooks that import it plus numpy, pandas and matplotlib, with tiny cells and a few heavier
ones) and times: nbdev-test serially (`--n-workers 0`) and with its default parallel mode;
nbtest serially and with `-n 2`, preload off and auto (a first session learns, the second is
timed); nbmake serially and with `-n 2`. Runs under `.venv-bench` (the `bench` extra has
nbdev).

The work is done in nbbench/nbdev_suite.py; this file is the entry point.
"""

import sys

from nbbench.nbdev_suite import main

if __name__ == "__main__":
    sys.exit(main(__file__, __doc__ or ""))
