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

The work is done in nbbench/preload.py; this file is the entry point.
"""

import sys

from nbbench.preload import main

if __name__ == "__main__":
    sys.exit(main(__file__, __doc__ or ""))
