"""bench.py: sets A-I, every tool side by side, repeated in rotated order; RESULTS.md.

`main` reads the options, runs a measure.Bench (or loads one from --report-from's JSON) and
has report.py render the page, figures.py deriving the acceptance figures.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

from .markdown import write_results
from .measure import Bench
from .report import report
from .sets import KERNEL, N_D
from .venv import DEFAULT_VENV, REPO, in_bench_venv, setup_venv

DEFAULT_OUT = REPO / "benchmarks" / "RESULTS.md"


def main(script: str, doc: str, argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=doc.split("\n")[0])
    p.add_argument("--runs", type=int, default=3, help="repetitions per measurement (default 3)")
    p.add_argument("--quick", action="store_true", help="one run of everything, a smoke test")
    p.add_argument("--rss", action="store_true",
                   help=f"also run pytest --nbtest on {N_D} notebooks for peak RSS (minutes)")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="where to write the results")
    p.add_argument("--venv", default=str(DEFAULT_VENV), help="the bench venv (default .venv-bench)")
    p.add_argument("--setup", action="store_true", help="create / update the bench venv first")
    p.add_argument("--setup-only", action="store_true", help="create / update the venv, stop")
    p.add_argument("--keep", action="store_true", help="keep the generated folder and its logs")
    p.add_argument("--json", help="also write the raw measurements to this JSON file")
    p.add_argument("--report-from", metavar="JSON",
                   help="measure nothing: re-render --out from a --json file of an earlier run")
    args = p.parse_args(argv)
    if args.runs < 1:
        p.error("--runs must be at least 1")
    venv = Path(args.venv).resolve()
    if args.setup or args.setup_only:
        setup_venv(venv, KERNEL)
        if args.setup_only:
            return 0
    if Path(sys.prefix).resolve() != venv:
        os.environ.setdefault("NBTEST_BENCH_LOAD_BEFORE", ",".join(map(str, os.getloadavg())))
        in_bench_venv(script, [a for a in argv if a != "--setup"], venv)
    load = os.environ.pop("NBTEST_BENCH_LOAD_BEFORE", None)
    bench = Bench(args)
    bench.extra["load_before"] = (tuple(float(x) for x in load.split(",")) if load
                                  else os.getloadavg())
    try:
        if args.report_from:
            bench.load(Path(args.report_from))
        else:
            print(f"bench: generated sets in {bench.tmp}; {bench.runs} run(s) each", flush=True)
            bench.measure()
            bench.finished = time.time()
            if args.json:
                bench.dump(Path(args.json))
        text = report(bench)
    finally:
        if args.keep:
            print(f"bench: kept {bench.tmp}")
        else:
            shutil.rmtree(bench.tmp, ignore_errors=True)
    out = Path(args.out)
    text = write_results(out, text)
    print()
    print(text)
    print(f"bench: wrote {out}")
    return 0
