"""A deep-learning library's nbdev docs suite (issue 28): nbtest against nbdev_test and nbmake.

    python3 benchmarks/bench_dl.py [--runs 3] [--quick] [--notebooks N] [--targets-only]
                                    [--out FILE]

Generates an nbdev project (nbbench/dl_sets.py): a mid-size library `dlbench` importing
torch, numpy, pandas, matplotlib and tqdm, and 20 notebooks entering it through different
submodules, each training a tiny model with a progress bar, showing DataFrames and a plot. Times
nbdev_test (serial, 2 workers), nbmake (serial, -n 2) and nbtest (serial, -n 2, and both with
`--nbtest-preload auto` after a first session that learns) in interleaved rounds; prints a
Markdown section (for RESULTS.md) with the medians, the ratios and the targets. Runs under
`.venv-bench`.

The work is done in nbbench/dl_suite.py; this file is the entry point.
"""

import sys

from nbbench.dl_suite import main

if __name__ == "__main__":
    sys.exit(main(__file__, __doc__ or ""))
