#!/usr/bin/env python3
"""Time nbtest against nbmake, nbval and a raw nbclient loop, side by side in one run.

    python3 benchmarks/bench.py --setup-only        # create / update the bench venv, then stop
    python3 benchmarks/bench.py [--runs N] [--quick] [--rss] [--out benchmarks/RESULTS.md]

Everything is timed as a whole process (interpreter start, imports, collection, kernels, run)
with the bench venv's interpreter (`.venv-bench`, which holds nbtest editable plus the `bench`
extra: nbmake, nbval, pytest-xdist), in a generated folder, with the Jupyter and IPython
folders and HOME pointed at temporary folders so no user configuration leaks in. The tools of
one comparison run in rotated order on every repetition; medians are reported, every run is
listed. A run that exits non-zero (or passes fewer items than expected) is marked FAILED and
its time is not used. Nothing here asserts a time: see benchmarks/README.md.

Standard library only until it re-executes itself under the bench venv (which has psutil).
The work is done in nbbench/ (see its __init__.py); this file is the entry point.
"""

import sys

from nbbench.compare import main

if __name__ == "__main__":
    sys.exit(main(__file__, __doc__ or ""))
