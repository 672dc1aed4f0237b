"""bench.py: sets A-I, every tool side by side, repeated in rotated order; RESULTS.md.

`Bench` generates the sets (sets.py), builds the cases (tools.py), runs them with the runner
(runner.py) and the probes (probes.py), keeps the raw measurements (to JSON and back, for
--report-from); figures.py derives the acceptance figures and report.py renders the page.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from . import probes
from .machine import git_commit, versions
from .markdown import write_results
from .report import report
from .runner import Case, Runner
from .sets import KERNEL, N_D, generate
from .tools import NOTEBOOK_FLAG, RAW_NBCLIENT, comparison, pytest_cmd
from .venv import DEFAULT_VENV, REPO, in_bench_venv, setup_venv

DEFAULT_OUT = REPO / "benchmarks" / "RESULTS.md"


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.runs = 1 if args.quick else args.runs
        self.venv = Path(args.venv).resolve()
        self.tmp = Path(tempfile.mkdtemp(prefix="nbtest-bench-"))
        self.sets = generate(self.tmp)
        self.runner = Runner(self.venv, self.tmp)
        self.py = self.runner.py
        self.groups, self.rss_case = comparison(self.py, self.venv, self.sets)
        self.extra: dict[str, Any] = {}
        self.started = time.time()
        self.finished: float | None = None

    # -- running

    def run_case(self, case: Case, rep: int) -> None:
        for stale in case.cwd.glob("out-*.ipynb"):
            stale.unlink()
        load1 = os.getloadavg()[0]
        r = self.runner.run(case.cmd, case.cwd, env=case.env)
        r["load1"] = load1
        problem = None
        if r["timed_out"]:
            problem = "timed out"
        elif r["rc"] != 0:
            problem = f"exit {r['rc']}"
        else:
            problem = case.check(r["output"])
        r.update(rep=rep, ok=problem is None, problem=problem)
        tail = "\n".join(r.pop("output").strip().splitlines()[-25:])
        if problem:
            r["tail"] = tail
        case.runs.append(r)
        status = "ok" if problem is None else f"FAILED ({problem}; log {r['log']})"
        print(f"  [{rep + 1}/{self.runs}] {case.key:<12} {r['wall']:7.2f} s  "
              f"rss {r['hwm'] / 2**20:6.1f} MiB  {status}", flush=True)

    def snippet(self, code: str, *argv: str) -> Any:
        res, failure = probes.snippet(self.runner, self.tmp, code, *argv)
        if failure:
            self.extra.setdefault("failures", []).append(failure)
        return res

    def warm_up(self) -> None:
        print("warm-up (untimed): each tool once on one notebook", flush=True)
        w = self.sets["W"]
        for tool, flag in NOTEBOOK_FLAG.items():
            self.runner.run(pytest_cmd(self.py, tool, flag, "-q", "."), w, watch_hwm=False)
        self.runner.run([self.py, "-c", RAW_NBCLIENT], w, watch_hwm=False)
        self.runner.run([self.py, "-X", "importtime", "-c", probes.IMPORT_SNIPPET], w,
                        watch_hwm=False)

    def measure(self) -> None:
        self.extra["commit_start"] = git_commit()
        self.warm_up()
        kernels: dict[str, list[float]] = {}
        order = ["A", "B", "B1", "C", "E", "D", "I"]
        for rep in range(self.runs):
            print(f"repetition {rep + 1}/{self.runs}", flush=True)
            groups = order[rep % len(order):] + order[:rep % len(order)]
            for g in groups:
                cases = self.groups[g]
                k = rep % len(cases)
                for case in cases[k:] + cases[:k]:
                    self.run_case(case, rep)
            res = self.snippet(probes.KERNEL_SNIPPET, "kernels", "4")
            if res:
                for key, vals in res.items():
                    kernels.setdefault(key, []).extend(vals)
                print(f"  kernel start {statistics.median(res['start']):.3f} s, "
                      f"stop {statistics.median(res['stop_graceful']):.3f} s graceful / "
                      f"{statistics.median(res['stop_now']):.3f} s now", flush=True)
        # I: import cost is cheap; take more samples than the notebook runs.
        extra_i = max(0, (3 if self.args.quick else 7) - self.runs)
        for rep in range(self.runs, self.runs + extra_i):
            cases = self.groups["I"]
            for case in cases[rep % 2:] + cases[:rep % 2]:
                self.run_case(case, rep)
        self.extra["kernels"] = kernels
        print("startup code: 20 silent executes in one kernel", flush=True)
        self.extra["warm"] = self.snippet(probes.KERNEL_SNIPPET, "warm", "20")
        print("import cost of nbtest.plugin (-X importtime), 5 samples", flush=True)
        self.extra["importtime"] = probes.importtime(self.runner, self.sets["I"], 5)
        print("imports nbtest makes in a pytest session without notebooks (-X importtime)",
              flush=True)
        self.extra["session_imports"] = probes.session_imports(self.runner, self.sets["I"], 3)
        if self.args.rss and not self.args.quick:
            print(f"RSS: pytest --nbtest on {N_D} notebooks, serial (one run)", flush=True)
            self.run_case(self.rss_case, 0)
        self.extra["load_after"] = os.getloadavg()
        self.extra["commit_end"] = git_commit()
        self.extra["versions"] = versions()

    # -- raw data, to re-render a report without re-measuring

    def all_cases(self) -> list[Case]:
        return [c for cases in [*self.groups.values(), [self.rss_case]] for c in cases]

    def dump(self, path: Path) -> None:
        data = {"started": self.started, "finished": self.finished or time.time(),
                "runs": self.runs, "quick": self.args.quick, "rss": self.args.rss,
                "argv_runs": self.args.runs, "cases": {c.key: c.runs for c in self.all_cases()},
                "extra": self.extra}
        path.write_text(json.dumps(data, indent=1))

    def load(self, path: Path) -> None:
        data = json.loads(path.read_text())
        self.started, self.finished, self.runs = data["started"], data["finished"], data["runs"]
        self.args.quick, self.args.rss = data["quick"], data["rss"]
        self.args.runs = data["argv_runs"]
        self.extra = data["extra"]
        for key, runs in data["cases"].items():
            self.case(key).runs = runs

    def case(self, key: str) -> Case:
        for c in self.all_cases():
            if c.key == key:
                return c
        raise KeyError(key)

    def med(self, key: str, field: str = "wall") -> float | None:
        try:
            return self.case(key).median(field)
        except KeyError:  # not measured in this configuration
            return None


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
