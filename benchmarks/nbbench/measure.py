"""bench.py's measurements: `Bench` generates the sets (sets.py), builds the cases (tools.py),
runs them with the runner (runner.py) and the probes (probes.py), and keeps the raw
measurements (to JSON and back, for --report-from). figures.py and report.py read a Bench;
compare.py runs one.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from . import probes
from .machine import git_commit, versions
from .runner import Case, Runner
from .sets import N_D, generate
from .tools import NOTEBOOK_FLAG, RAW_NBCLIENT, comparison, pytest_cmd


class Bench:
    """One bench.py run: its sets, cases and measurements."""

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
