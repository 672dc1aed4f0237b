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
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parent.parent
DEFAULT_VENV = REPO / ".venv-bench"
DEFAULT_OUT = REPO / "benchmarks" / "RESULTS.md"
KEEP_MARKER = "<!-- measured by other scripts: bench.py keeps what follows -->"
KERNEL = "python3"
SLEEP_S = 2.0
N_A, CELLS_A = 20, 3
N_B, CELLS_B = 5, 30
N_D = 200
RUN_TIMEOUT_S = 900

# Each tool runs with the other notebook plugins switched off, as if it were installed alone.
NO_PEERS = {
    "nbtest": ["-p", "no:nbmake", "-p", "no:nbval"],
    "nbmake": ["-p", "no:nbtest", "-p", "no:nbval"],
    "nbval": ["-p", "no:nbtest", "-p", "no:nbmake"],
    "plain": ["-p", "no:nbtest", "-p", "no:nbmake", "-p", "no:nbval"],
}

RAW_NBCLIENT = """\
import glob, nbformat, nbclient
n = 0
for path in sorted(glob.glob('*.ipynb')):
    nb = nbformat.read(path, as_version=4)
    nbclient.execute(nb, cwd='.')
    n += 1
print(f'raw nbclient: executed {n} notebooks')
"""

# Kernel start + stop through jupyter_client, and the startup code's cost in each fresh kernel.
KERNEL_SNIPPET = """\
import json, sys, time
from jupyter_client.manager import KernelManager
from nbtest.kernel.startup import startup_code

CODE = startup_code({})

def silent(kc, src):
    t0 = time.perf_counter()
    msg_id = kc.execute(src, silent=True, store_history=False)
    while True:
        reply = kc.get_shell_msg(timeout=60)
        if reply['parent_header'].get('msg_id') == msg_id:
            break
    dt = time.perf_counter() - t0
    if reply['content']['status'] != 'ok':
        raise SystemExit(f"silent execute failed: {reply['content']}")
    return dt

mode, n = sys.argv[1], int(sys.argv[2])
res = {'start': [], 'stop_graceful': [], 'stop_now': [], 'pass_first': [], 'startup_first': [],
       'pass_warm': [], 'startup_warm': []}
if mode == 'kernels':
    for i in range(n):
        t0 = time.perf_counter()
        km = KernelManager(kernel_name=KERNEL_NAME)
        km.start_kernel()
        kc = km.client()
        kc.start_channels()
        kc.wait_for_ready(timeout=60)
        res['start'].append(time.perf_counter() - t0)
        res['pass_first'].append(silent(kc, 'pass'))
        res['startup_first'].append(silent(kc, CODE))
        kc.stop_channels()
        now = i % 2 == 1
        t0 = time.perf_counter()
        km.shutdown_kernel(now=now)
        res['stop_now' if now else 'stop_graceful'].append(time.perf_counter() - t0)
else:  # 'warm': one kernel, the startup code n times, interleaved with `pass`
    km = KernelManager(kernel_name=KERNEL_NAME)
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    silent(kc, 'pass')
    for _ in range(n):
        res['pass_warm'].append(silent(kc, 'pass'))
        res['startup_warm'].append(silent(kc, CODE))
    kc.stop_channels()
    km.shutdown_kernel(now=True)
print('BENCH-JSON ' + json.dumps(res))
""".replace("KERNEL_NAME", repr(KERNEL))

IMPORT_SNIPPET = """\
import json, sys
import pytest
import nbtest.plugin
heavy = ['nbclient', 'jupyter_client', 'zmq', 'tornado', 'nbformat', 'IPython', 'ipykernel',
         'papermill', 'tqdm', 'yaml', 'psutil', 'filelock', 'numpy', 'torch']
print('BENCH-JSON ' + json.dumps([m for m in heavy if m in sys.modules]))
"""


# ----------------------------------------------------------------------------- set-up


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def setup_venv(venv: Path) -> None:
    """Create (or update) the bench venv: nbtest editable + the `bench` extra, and its kernel."""
    py = venv_python(venv)
    if not py.exists():
        print(f"bench: creating {venv}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    cmd = [str(py), "-m", "pip", "install", "-q", "-c", "constraints-dev.txt", "-e", ".[bench]"]
    print("bench: " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=REPO)
    subprocess.run([str(py), "-m", "ipykernel", "install", "--sys-prefix", "--name", KERNEL],
                   check=True, cwd=REPO)


def reexec_in_venv(venv: Path, argv: list[str]) -> None:
    """Run the rest of this script under the bench venv's interpreter (it has psutil)."""
    py = venv_python(venv)
    if Path(sys.prefix).resolve() == venv.resolve():
        return
    if not py.exists():
        sys.exit(f"bench: no bench venv at {venv}; run `python3 benchmarks/bench.py --setup-only` "
                 "(or `make bench`) first")
    os.execv(str(py), [str(py), str(Path(__file__).resolve()), *argv])


# ----------------------------------------------------------------------------- notebooks


def write_notebook(path: Path, sources: list[str]) -> None:
    cells: list[dict[str, Any]] = [
        {"cell_type": "code", "execution_count": None, "id": f"c{i:03d}", "metadata": {},
         "outputs": [], "source": src} for i, src in enumerate(sources)]
    nb = {"cells": cells, "metadata": {
        "kernelspec": {"name": KERNEL, "display_name": "Python 3", "language": "python"},
        "language_info": {"name": "python"}}, "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(nb, indent=1) + "\n")


TRIVIAL = ["x = 1", "y = x + 1", "print(y)"]


def small_cells(n: int, seed: int) -> list[str]:
    return [f"v{i} = {seed} * {i} + 1\nv{i} * 2" if i % 2 else f"print('cell', {i}, {seed})"
            for i in range(n)]


def generate(root: Path) -> dict[str, Path]:
    (root / "pytest.ini").write_text("[pytest]\n")  # rootdir and config stop here
    sets = {name: root / name for name in ("W", "A", "B", "B1", "C", "D", "Dpy", "E", "I")}
    for folder in sets.values():
        folder.mkdir()
    write_notebook(sets["W"] / "warmup.ipynb", TRIVIAL)
    for i in range(N_A):
        write_notebook(sets["A"] / f"trivial_{i:03d}.ipynb", TRIVIAL)
    for i in range(N_B):
        write_notebook(sets["B"] / f"cells_{i:02d}.ipynb", small_cells(CELLS_B, i))
        write_notebook(sets["B1"] / f"cells_{i:02d}.ipynb", small_cells(1, i))
    write_notebook(sets["C"] / "sleep.ipynb", ["import time", f"time.sleep({SLEEP_S})"])
    for i in range(N_D):
        write_notebook(sets["D"] / f"trivial_{i:03d}.ipynb", TRIVIAL)
        (sets["Dpy"] / f"test_trivial_{i:03d}.py").write_text(
            "def test_trivial():\n    x = 1\n    assert x + 1 == 2\n")
    write_notebook(sets["E"] / "trivial.ipynb", TRIVIAL)
    (sets["I"] / "test_one.py").write_text("def test_one():\n    assert True\n")
    return sets


# ----------------------------------------------------------------------------- running


class Runner:
    def __init__(self, venv: Path, root: Path) -> None:
        self.venv = venv
        self.py = str(venv_python(venv))
        self.root = root
        self.logs = root / "_logs"
        self.logs.mkdir()
        self.env = self._environment()
        self.seq = 0

    def _environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("PYTEST_", "JUPYTER", "IPYTHON", "NBTEST", "PYTHON"))
               and k not in ("VIRTUAL_ENV", "MPLBACKEND", "COV_CORE_SOURCE")}
        home = self.root / "_home"
        for sub in ("", "ipython", "jupyter-config", "jupyter-data", "jupyter-runtime"):
            (home / sub).mkdir(parents=True, exist_ok=True)
        env.update({
            "HOME": str(home),
            "JUPYTER_PLATFORM_DIRS": "1",
            "IPYTHONDIR": str(home / "ipython"),
            "JUPYTER_CONFIG_DIR": str(home / "jupyter-config"),
            "JUPYTER_DATA_DIR": str(home / "jupyter-data"),
            "JUPYTER_RUNTIME_DIR": str(home / "jupyter-runtime"),
            "VIRTUAL_ENV": str(self.venv),
            "PATH": f"{self.venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        })
        return env

    def run(self, cmd: list[str], cwd: Path, watch_hwm: bool = True,
            timeout: float = RUN_TIMEOUT_S, env: dict[str, str] | None = None) -> dict[str, Any]:
        """Run one command; wall time, exit code, the process's own peak RSS (not its kids')."""
        import psutil  # noqa: F401  (present in the bench venv; used for the fallback)

        self.seq += 1
        log = self.logs / f"{self.seq:04d}.log"
        with open(log, "wb") as out:
            t0 = time.perf_counter()
            proc = subprocess.Popen(cmd, cwd=cwd, env={**self.env, **(env or {})}, stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            hwm = 0
            timed_out = False
            if watch_hwm:
                while proc.poll() is None:
                    hwm = max(hwm, _peak_rss(proc.pid))
                    if time.perf_counter() - t0 > timeout:
                        proc.kill()
                        timed_out = True
                    try:  # returns as soon as it exits: the wall time is not rounded up
                        proc.wait(timeout=0.05)
                    except subprocess.TimeoutExpired:
                        pass
            else:
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    timed_out = True
            rc = proc.wait()
            wall = time.perf_counter() - t0
        text = log.read_text(errors="replace")
        return {"wall": wall, "rc": rc, "hwm": hwm, "log": str(log), "output": text,
                "timed_out": timed_out}


def _peak_rss(pid: int) -> int:
    """VmHWM (bytes) of this one process: monotonic, so polling misses only the last moments."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import psutil

        return int(psutil.Process(pid).memory_info().rss)
    except Exception:
        return 0


def passed_count(output: str) -> int | None:
    m = re.findall(r"(\d+) passed", output)
    return int(m[-1]) if m else None


def collected_count(output: str) -> int | None:
    m = re.findall(r"(\d+) tests? collected", output)
    return int(m[-1]) if m else None


class Case:
    """One command of a comparison, with how to check that it really did its work."""

    def __init__(self, key: str, label: str, cmd: list[str], cwd: Path,
                 check: Callable[[str], str | None], env: dict[str, str] | None = None) -> None:
        self.key, self.label, self.cmd, self.cwd, self.check = key, label, cmd, cwd, check
        self.env = env or {}  # added to the runner's environment for this command only
        self.runs: list[dict[str, Any]] = []

    def ok_runs(self) -> list[dict[str, Any]]:
        return [r for r in self.runs if r["ok"]]

    def median(self, field: str = "wall") -> float | None:
        vals = [r[field] for r in self.ok_runs()]
        return statistics.median(vals) if vals and len(vals) == len(self.runs) else None

    def median_ok(self, field: str = "wall") -> float | None:
        """The median of the passing runs only (shown beside a FAILED cell, never alone)."""
        vals = [r[field] for r in self.ok_runs()]
        return statistics.median(vals) if vals else None

    @property
    def failed(self) -> bool:
        return any(not r["ok"] for r in self.runs)


def expect_passed(n: int) -> Callable[[str], str | None]:
    def check(output: str) -> str | None:
        got = passed_count(output)
        if got != n or re.search(r"\d+ (failed|error)", output):
            return f"expected {n} passed, got {got}"
        return None
    return check


def expect_collected(n: int) -> Callable[[str], str | None]:
    def check(output: str) -> str | None:
        got = collected_count(output)
        return None if got == n else f"expected {n} collected, got {got}"
    return check


def expect_text(text: str) -> Callable[[str], str | None]:
    def check(output: str) -> str | None:
        return None if text in output else f"{text!r} not in output"
    return check


def expect_files(*paths: Path) -> Callable[[str], str | None]:
    def check(output: str) -> str | None:
        missing = [p.name for p in paths if not p.exists()]
        return f"no output written: {missing}" if missing else None
    return check


# ----------------------------------------------------------------------------- the benchmark


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.runs = 1 if args.quick else args.runs
        self.venv = Path(args.venv).resolve()
        self.tmp = Path(tempfile.mkdtemp(prefix="nbtest-bench-"))
        self.sets = generate(self.tmp)
        self.runner = Runner(self.venv, self.tmp)
        self.py = self.runner.py
        self.groups: dict[str, list[Case]] = {}
        self.extra: dict[str, Any] = {}
        self.started = time.time()
        self.finished: float | None = None
        self._define()

    # -- commands

    def pytest(self, tool: str, *flags: str) -> list[str]:
        return [self.py, "-m", "pytest", "-p", "no:cacheprovider", *NO_PEERS[tool], *flags]

    def _define(self) -> None:
        s = self.sets
        a_nbval_items = N_A * CELLS_A

        def notebook_cases(folder: Path, n: int, xdist: bool, with_nbval: bool,
                           prefix: str) -> list[Case]:
            cases = [Case(f"{prefix}.nbtest", "pytest --nbtest",
                          self.pytest("nbtest", "--nbtest", "-q", "."), folder, expect_passed(n)),
                     Case(f"{prefix}.nbmake", "pytest --nbmake",
                          self.pytest("nbmake", "--nbmake", "-q", "."), folder, expect_passed(n))]
            if xdist:
                cases += [Case(f"{prefix}.nbtest-n2", "pytest --nbtest -n 2",
                               self.pytest("nbtest", "--nbtest", "-n", "2", "-q", "."), folder,
                               expect_passed(n)),
                          Case(f"{prefix}.nbmake-n2", "pytest --nbmake -n 2",
                               self.pytest("nbmake", "--nbmake", "-n", "2", "-q", "."), folder,
                               expect_passed(n))]
            if with_nbval:
                cases.append(Case(f"{prefix}.nbval", "pytest --nbval-lax",
                                  self.pytest("nbval", "--nbval-lax", "-q", "."), folder,
                                  expect_passed(a_nbval_items)))
            cases.append(Case(f"{prefix}.raw", "raw nbclient loop",
                              [self.py, "-c", RAW_NBCLIENT], folder,
                              expect_text(f"executed {n} notebooks")))
            return cases

        self.groups["A"] = notebook_cases(s["A"], N_A, xdist=True, with_nbval=True, prefix="A")
        self.groups["B"] = notebook_cases(s["B"], N_B, xdist=False, with_nbval=False, prefix="B")
        # B1 only serves the per-cell slope, which the acceptance compares for these two.
        self.groups["B1"] = [c for c in notebook_cases(s["B1"], N_B, xdist=False,
                                                       with_nbval=False, prefix="B1")
                             if c.key in ("B1.nbtest", "B1.raw")]
        self.groups["C"] = [
            Case("C.nbtest", "pytest --nbtest", self.pytest("nbtest", "--nbtest", "-q", "."),
                 s["C"], expect_passed(1)),
            Case("C.nbmake", "pytest --nbmake", self.pytest("nbmake", "--nbmake", "-q", "."),
                 s["C"], expect_passed(1)),
            # Not a tool: what no harness that starts its kernel inside pytest can beat.
            Case("C.floor", "floor: bare plugin, kernel spawned at plugin import",
                 self.pytest("plain", "-p", "floor_plugin", "-q", "."), s["C"],
                 expect_passed(1), env={"PYTHONPATH": str(REPO / "benchmarks")})]
        e = s["E"]
        self.groups["E"] = [
            Case("E.nbtest", "nbtest execute",
                 [str(self.venv / "bin" / "nbtest"), "execute", "trivial.ipynb",
                  "--output", "out-nbtest.ipynb", "--no-progress"], e,
                 expect_files(e / "out-nbtest.ipynb")),
            Case("E.jupyter", "jupyter execute",
                 [str(self.venv / "bin" / "jupyter"), "execute", "trivial.ipynb",
                  "--output=out-jupyter"], e, expect_files(e / "out-jupyter.ipynb"))]
        self.groups["D"] = [
            Case("D.nbtest", "pytest --nbtest --collect-only",
                 self.pytest("nbtest", "--nbtest", "--collect-only", "-q", "."), s["D"],
                 expect_collected(N_D)),
            Case("D.nbmake", "pytest --nbmake --collect-only",
                 self.pytest("nbmake", "--nbmake", "--collect-only", "-q", "."), s["D"],
                 expect_collected(N_D)),
            Case("D.plain", "pytest --collect-only (200 .py files)",
                 self.pytest("plain", "--collect-only", "-q", "."), s["Dpy"],
                 expect_collected(N_D))]
        i = s["I"]
        self.groups["I"] = [
            Case("I.with", "pytest --co -q (nbtest plugin loaded)",
                 [self.py, "-m", "pytest", "-p", "no:cacheprovider", *NO_PEERS["nbtest"],
                  "--co", "-q", "."], i, expect_collected(1)),
            Case("I.without", "pytest --co -q -p no:nbtest",
                 [self.py, "-m", "pytest", "-p", "no:cacheprovider", *NO_PEERS["plain"],
                  "--co", "-q", "."], i, expect_collected(1))]
        self.rss_case = Case("R.nbtest200", "pytest --nbtest (200 notebooks, serial)",
                             self.pytest("nbtest", "--nbtest", "-q", "."), s["D"],
                             expect_passed(N_D))

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
        r = self.runner.run([self.py, "-c", code, *argv], self.tmp, watch_hwm=False)
        m = re.search(r"^BENCH-JSON (.*)$", r["output"], re.M)
        if r["rc"] != 0 or not m:
            tail = "\n".join(r["output"].strip().splitlines()[-15:])
            print(f"  snippet FAILED (exit {r['rc']}):\n{tail}", flush=True)
            self.extra.setdefault("failures", []).append(f"snippet {argv}: exit {r['rc']}\n{tail}")
            return None
        return json.loads(m.group(1))

    def warm_up(self) -> None:
        print("warm-up (untimed): each tool once on one notebook", flush=True)
        w = self.sets["W"]
        for tool, flag in (("nbtest", "--nbtest"), ("nbmake", "--nbmake"),
                           ("nbval", "--nbval-lax")):
            self.runner.run(self.pytest(tool, flag, "-q", "."), w, watch_hwm=False)
        self.runner.run([self.py, "-c", RAW_NBCLIENT], w, watch_hwm=False)
        self.runner.run([self.py, "-X", "importtime", "-c", IMPORT_SNIPPET], w, watch_hwm=False)

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
            res = self.snippet(KERNEL_SNIPPET, "kernels", "4")
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
        self.extra["warm"] = self.snippet(KERNEL_SNIPPET, "warm", "20")
        print("import cost of nbtest.plugin (-X importtime), 5 samples", flush=True)
        self.extra["importtime"] = self.importtime(5)
        print("imports nbtest makes in a pytest session without notebooks (-X importtime)",
              flush=True)
        self.extra["session_imports"] = self.session_imports(3)
        if self.args.rss and not self.args.quick:
            print(f"RSS: pytest --nbtest on {N_D} notebooks, serial (one run)", flush=True)
            self.run_case(self.rss_case, 0)
        self.extra["load_after"] = os.getloadavg()
        self.extra["commit_end"] = git_commit()
        self.extra["versions"] = versions()

    def importtime(self, n: int) -> dict[str, Any]:
        totals, loaded = [], None
        for _ in range(n):
            r = self.runner.run([self.py, "-X", "importtime", "-c", IMPORT_SNIPPET],
                                self.sets["I"], watch_hwm=False)
            total = 0
            for line in r["output"].splitlines():
                m = re.match(r"import time:\s+(\d+)\s+\|\s+(\d+)\s+\|( *)(\S+)", line)
                if m and not m.group(3).strip(" ") and len(m.group(3)) == 1 \
                        and m.group(4) in ("nbtest", "nbtest.plugin"):
                    total += int(m.group(2))
            m = re.search(r"^BENCH-JSON (.*)$", r["output"], re.M)
            if r["rc"] == 0 and m:
                totals.append(total / 1000)
                loaded = json.loads(m.group(1))
        return {"ms": totals, "median_ms": statistics.median(totals) if totals else None,
                "loaded": loaded}

    def session_imports(self, n: int) -> dict[str, Any]:
        """`pytest --co -q` on one .py test under -X importtime: what nbtest's modules import."""
        cmd = [self.py, "-X", "importtime", "-m", "pytest", "-p", "no:cacheprovider",
               *NO_PEERS["nbtest"], "--co", "-q", "."]
        totals: list[float] = []
        children: dict[str, list[float]] = {}
        for _ in range(n):
            r = self.runner.run(cmd, self.sets["I"], watch_hwm=False)
            if r["rc"] != 0:
                continue
            total = 0
            nested: list[tuple[str, int]] = []
            for line in r["output"].splitlines():
                m = re.match(r"import time:\s+(\d+)\s+\|\s+(\d+)\s+\|( +)(\S+)", line)
                if not m:
                    continue
                depth = (len(m.group(3)) - 1) // 2
                if depth == 0:
                    if m.group(4).startswith("nbtest"):
                        total += int(m.group(2))
                        for name, us in nested:
                            children.setdefault(name, []).append(us / 1000)
                    nested = []
                elif depth == 1:
                    nested.append((m.group(4), int(m.group(2))))
            totals.append(total / 1000)
        top = sorted(((statistics.median(v), k) for k, v in children.items()), reverse=True)
        return {"ms": totals, "median_ms": statistics.median(totals) if totals else None,
                "top": [(k, round(v, 1)) for v, k in top[:6]]}

    # -- raw data, to re-render a report without re-measuring

    def dump(self, path: Path) -> None:
        cases = [c for cases in [*self.groups.values(), [self.rss_case]] for c in cases]
        data = {"started": self.started, "finished": self.finished or time.time(),
                "runs": self.runs, "quick": self.args.quick, "rss": self.args.rss,
                "argv_runs": self.args.runs, "cases": {c.key: c.runs for c in cases},
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

    # -- reporting

    def case(self, key: str) -> Case:
        if key == self.rss_case.key:
            return self.rss_case
        for cases in self.groups.values():
            for c in cases:
                if c.key == key:
                    return c
        raise KeyError(key)

    def med(self, key: str, field: str = "wall") -> float | None:
        try:
            return self.case(key).median(field)
        except KeyError:  # not measured in this configuration
            return None

    def analyse(self) -> dict[str, Any]:
        k = self.extra.get("kernels") or {}
        med = {key: (statistics.median(v) * 1000 if v else None) for key, v in k.items()}
        kstart = (statistics.median(k["start"]) + statistics.median(k["stop_graceful"])
                  if k.get("start") and k.get("stop_graceful") else None)
        n_cells_b, n_cells_b1 = N_B * CELLS_B, N_B * 1
        percell = {}
        for tool in ("nbtest", "nbmake", "raw"):
            wb, wb1 = self.med(f"B.{tool}"), self.med(f"B1.{tool}")
            literal = ((wb - N_B * kstart) / n_cells_b * 1000
                       if wb is not None and kstart is not None else None)
            slope = ((wb - wb1) / (n_cells_b - n_cells_b1) * 1000
                     if wb is not None and wb1 is not None else None)
            percell[tool] = {"wall_B": wb, "wall_B1": wb1, "literal_ms": literal,
                             "slope_ms": slope}
        over: dict[str, float | None] = {}
        for t in ("nbtest", "nbmake", "floor"):
            wall_c = self.med(f"C.{t}")
            over[t] = None if wall_c is None else wall_c - SLEEP_S
        warm = self.extra.get("warm") or {}
        rss20 = self.med("A.nbtest", "hwm")
        rss200 = self.rss_case.median("hwm") if self.rss_case.runs else None
        return {"kernel_ms": med, "kernel_start_s": kstart, "percell": percell,
                "overhead_C": over, "rss20": rss20, "rss200": rss200,
                "startup_warm_ms": (statistics.median(warm["startup_warm"]) * 1000
                                    if warm.get("startup_warm") else None),
                "pass_warm_ms": (statistics.median(warm["pass_warm"]) * 1000
                                 if warm.get("pass_warm") else None)}

    def ratio(self, a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None or b == 0 else a / b

    def acceptance(self, an: dict[str, Any]) -> list[tuple[str, str, str, str]]:
        def verdict(value: float | None, ok: Callable[[float], bool]) -> str:
            return "not measured" if value is None else ("met" if ok(value) else "not met")

        rows = []
        for label, num, den, limit in (
                ("A serial: nbtest / nbmake", "A.nbtest", "A.nbmake", 0.25),
                ("A serial: nbtest / nbval-lax", "A.nbtest", "A.nbval", 0.35),
                ("A -n 2: nbtest -n 2 / nbmake -n 2", "A.nbtest-n2", "A.nbmake-n2", 0.25)):
            r = self.ratio(self.med(num), self.med(den))
            if r is not None:
                rows.append((label, fmt(r, 3), f"≤ {limit}", "met" if r <= limit else "not met"))
                continue
            # A tool failed some runs: say so, and give the ratio over its passing runs only.
            partial = self.ratio(self.case(num).median_ok(), self.case(den).median_ok())
            bad = [f"{self.case(k).label}: {sum(not x['ok'] for x in self.case(k).runs)} of "
                   f"{len(self.case(k).runs)} runs FAILED" for k in (num, den)
                   if self.case(k).failed]
            rows.append((label, f"{'; '.join(bad)}; over passing runs only: {fmt(partial, 3)}",
                         f"≤ {limit}", "not measured" if partial is None else
                         f"{'met' if partial <= limit else 'not met'} (provisional)"))
        oc = an["overhead_C"]
        r = self.ratio(oc["nbtest"], oc["nbmake"])
        rows.append(("C: nbtest overhead / nbmake overhead (above the 2 s sleep)",
                     f"{fmt(r, 3)} ({fmt(oc['nbtest'])} s / {fmt(oc['nbmake'])} s)", "≤ 0.5",
                     verdict(r, lambda v: v <= 0.5)))
        floor = self.ratio(oc.get("floor"), oc["nbmake"])
        rows.append(("C reference, not a tool: floor overhead / nbmake overhead (a bare plugin "
                     "that spawns the kernel at import, before pytest parses its options)",
                     f"{fmt(floor, 3)} ({fmt(oc.get('floor'))} s / {fmt(oc['nbmake'])} s)",
                     "—", "above 0.5: the C target is out of reach on this machine"
                     if floor is not None and floor > 0.5 else "reference"))
        pc = an["percell"]
        for how, field in (("wall − 5 × kernel start+stop, / 150 cells", "literal_ms"),
                           ("slope: (wall B − wall B1) / 145 cells", "slope_ms")):
            a, b = pc["nbtest"][field], pc["raw"][field]
            rows.append((f"B per-cell overhead, {how}: nbtest vs raw nbclient",
                         f"{fmt(a, 2)} ms vs {fmt(b, 2)} ms",
                         "nbtest ≤ raw", "not measured" if a is None or b is None
                         else ("met" if a <= b else "not met")))
        if an["rss200"] is None:
            rows.append(("Harness peak RSS: 200 notebooks − 20 notebooks",
                         f"20: {fmt_mib(an['rss20'])}; 200: not run (use --rss)", "≤ 20 MiB",
                         "not measured"))
        else:
            d = (an["rss200"] - an["rss20"]) / 2**20 if an["rss20"] is not None else None
            rows.append(("Harness peak RSS: 200 notebooks − 20 notebooks",
                         f"{fmt(d, 1)} MiB ({fmt_mib(an['rss200'])} − {fmt_mib(an['rss20'])})",
                         "≤ 20 MiB", verdict(d, lambda v: v <= 20)))
        return rows

    def report(self) -> str:
        an = self.analyse()
        lines: list[str] = []
        add = lines.append
        finished = self.finished or time.time()
        now = _dt.datetime.fromtimestamp(finished).astimezone()
        add("# nbtest benchmarks")
        add("")
        add(f"Generated by `benchmarks/bench.py` on {now:%Y-%m-%d %H:%M %Z}, "
            f"{self.runs} run(s) per measurement"
            f"{' (--quick: a smoke test, not a result)' if self.args.quick else ''}, "
            f"{(finished - self.started) / 60:.1f} min in all. "
            "All times are whole-process wall clock; medians over the runs, every run listed.")
        add("")
        add("## Machine")
        add("")
        for k, v in machine_info(self.extra.get("load_before"), self.extra.get("load_after")):
            add(f"- {k}: {v}")
        loads = [r["load1"] for cases in [*self.groups.values(), [self.rss_case]]
                 for c in cases for r in c.runs if "load1" in r]
        if loads:
            add(f"- 1-minute load average at the start of each timed run: min {min(loads):.2f}, "
                f"median {statistics.median(loads):.2f}, max {max(loads):.2f} "
                f"(2 cores: above ~2 the tools compete with other work for the CPU)")
        add("")
        add("## Versions")
        add("")
        add(", ".join(f"{k} {v}" for k, v in (self.extra.get("versions") or versions())))
        c0, c1 = self.extra.get("commit_start"), self.extra.get("commit_end")
        if c0 and c1 and c0 != c1:
            add("")
            add(f"The working tree changed during the run (commit {c0} at the start, {c1} at the "
                "end): nbtest is installed editable, so later runs measured newer code.")
        elif c0 and c0.endswith("-dirty"):
            add("")
            add("nbtest was measured from a working tree with uncommitted changes (`-dirty`).")
        add("")
        add("## Acceptance (issue 7)")
        add("")
        add("| criterion | measured | target | verdict |")
        add("|---|---|---|---|")
        for row in self.acceptance(an):
            add("| " + " | ".join(row) + " |")
        add("")
        add("## Wall times")
        add("")
        add("Ratio: nbtest's median divided by this row's (rows of nbtest itself: —).")
        add("")
        add("| set | command | median (s) | nbtest / this | all runs (s) | peak RSS of the "
            "tool's own process (median; with -n 2 the controller only) |")
        add("|---|---|---|---|---|---|")
        nbtest_of = {"A": {"": "A.nbtest", "n2": "A.nbtest-n2"}, "B": {"": "B.nbtest"},
                     "B1": {"": "B1.nbtest"}, "C": {"": "C.nbtest"}, "E": {"": "E.nbtest"},
                     "D": {"": "D.nbtest"}, "I": {"": "I.with"}}
        for g, cases in self.groups.items():
            for c in cases:
                ref = nbtest_of[g]["n2" if c.key.endswith("-n2") else ""]
                if c.key == ref:
                    ratio_s = "—"
                else:
                    ratio_s = fmt(self.ratio(self.med(ref), c.median()), 3)
                add(f"| {SET_NAMES[g]} | {c.label} | {cell(c)} | {ratio_s} | "
                    f"{all_runs(c)} | {fmt_mib(c.median('hwm'))} |")
        if self.rss_case.runs:
            c = self.rss_case
            add(f"| D (200 trivial) | {c.label} | {cell(c)} | — | {all_runs(c)} | "
                f"{fmt_mib(c.median('hwm'))} |")
        add("")
        add("## Derived figures")
        add("")
        km = an["kernel_ms"]
        add(f"- Kernel start (jupyter_client `start_kernel` + `wait_for_ready`): "
            f"{fmt(km.get('start'), 0)} ms median; stop: graceful "
            f"{fmt(km.get('stop_graceful'), 0)} ms, "
            f"immediate {fmt(km.get('stop_now'), 0)} ms; kernel start + graceful stop used below: "
            f"{fmt(an['kernel_start_s'], 3)} s "
            f"({len((self.extra.get('kernels') or {}).get('start', []))} kernels).")
        add("- Per-cell overhead, set B (5 notebooks × 30 cells; B1 is the same 5 notebooks with "
            "1 cell each):")
        add("")
        add("  | tool | wall B (s) | wall B1 (s) | (wall B − 5 × kernel) / 150 (ms) | "
            "(wall B − wall B1) / 145 (ms) |")
        add("  |---|---|---|---|---|")
        for tool, label in (("nbtest", "pytest --nbtest"), ("nbmake", "pytest --nbmake"),
                            ("raw", "raw nbclient loop")):
            p = an["percell"][tool]
            add(f"  | {label} | {fmt(p['wall_B'])} | {fmt(p['wall_B1'])} | "
                f"{fmt(p['literal_ms'], 2)} | {fmt(p['slope_ms'], 2)} |")
        add("")
        add("  The first column subtracts a normal kernel's start and stop, so it credits a tool "
            "whose kernels start faster than that (pre-warmed or forked) with time it never "
            "spent; the slope column is independent of kernel start and is the fairer figure "
            "then.")
        oc = an["overhead_C"]
        add(f"- Set C (one notebook sleeping {SLEEP_S:g} s): overhead above the sleep: nbtest "
            f"{fmt(oc['nbtest'])} s, nbmake {fmt(oc['nbmake'])} s, ratio "
            f"{fmt(self.ratio(oc['nbtest'], oc['nbmake']), 3)}; the floor "
            f"(benchmarks/floor_plugin.py: kernel spawned when pytest imports the plugin, cells "
            f"run over a bare client, SIGKILL) {fmt(oc.get('floor'))} s.")
        add(f"- `nbtest execute` / `jupyter execute` (one trivial notebook): "
            f"{fmt(self.ratio(self.med('E.nbtest'), self.med('E.jupyter')), 3)}.")
        first = km.get("startup_first"), km.get("pass_first")
        add(f"- Startup code (`startup_code({{}})`, silent execute via jupyter_client): "
            f"{fmt(an['startup_warm_ms'], 2)} ms median of 20 in one kernel "
            f"(a silent `pass`: {fmt(an['pass_warm_ms'], 2)} ms); first run in a fresh kernel: "
            f"{fmt(first[0], 2)} ms (a silent `pass` just before it: {fmt(first[1], 2)} ms).")
        it = self.extra.get("importtime") or {}
        add(f"- Import of `nbtest.plugin` after `import pytest` (`-X importtime`, cumulative of "
            f"`nbtest` + `nbtest.plugin`): {fmt(it.get('median_ms'), 1)} ms median "
            f"(runs: {', '.join(fmt(v, 1) for v in it.get('ms', []))}); heavy modules loaded "
            f"after it: {', '.join(it.get('loaded') or []) or 'none'}.")
        si = self.extra.get("session_imports") or {}
        add(f"- Imports made by nbtest's modules in a pytest session without notebooks "
            f"(`-X importtime` of `pytest --co -q` on one .py test, cumulative of top-level "
            f"`nbtest*` entries): "
            f"{fmt(si.get('median_ms'), 1)} ms median; largest of what they pull in: "
            + (", ".join(f"{k} {v:.1f} ms" for k, v in si.get("top", [])) or "n/a") + ".")
        add(f"- `pytest --co -q` on one .py test: with nbtest's plugin "
            f"{fmt(self.med('I.with'), 3)} s, "
            f"without (`-p no:nbtest`) {fmt(self.med('I.without'), 3)} s, difference "
            f"{fmt_ms_diff(self.med('I.with'), self.med('I.without'))}.")
        add(f"- Collection of 200 notebooks: nbtest {fmt(self.med('D.nbtest'), 3)} s, nbmake "
            f"{fmt(self.med('D.nbmake'), 3)} s; plain pytest on 200 .py files "
            f"{fmt(self.med('D.plain'), 3)} s; nbtest / plain "
            f"{fmt(self.ratio(self.med('D.nbtest'), self.med('D.plain')), 3)}.")
        if an["rss200"] is not None:
            add(f"- Harness peak RSS (VmHWM of the pytest process, kernels not included): "
                f"20 notebooks {fmt_mib(an['rss20'])}, 200 notebooks {fmt_mib(an['rss200'])}.")
        else:
            add(f"- Harness peak RSS after 20 notebooks: {fmt_mib(an['rss20'])}; the 200-notebook "
                "run was not made (it takes several minutes serially: pass --rss).")
        fails = [(c, r) for cases in [*self.groups.values(), [self.rss_case]] for c in cases
                 for r in c.runs if not r["ok"]]
        if fails or self.extra.get("failures"):
            add("")
            add("## Failures")
            add("")
            for c, r in fails:
                add(f"- {c.key} run {r['rep'] + 1}: {r['problem']}")
                add("")
                add("  ```")
                add("\n".join("  " + ln for ln in r.get("tail", "").splitlines()))
                add("  ```")
            for f in self.extra.get("failures", []):
                add(f"- {f}")
        add("")
        add("## Commands")
        add("")
        add(f"`$PY` is `.venv-bench/bin/python` (set up by `python3 benchmarks/bench.py "
            f"--setup-only`), `$BENCH` the generated folder (holding an empty `pytest.ini`), "
            f"run with `JUPYTER_PLATFORM_DIRS=1` and HOME, `IPYTHONDIR`, `JUPYTER_CONFIG_DIR`, "
            f"`JUPYTER_DATA_DIR`, `JUPYTER_RUNTIME_DIR` pointed at empty temporary folders, the "
            f"venv's `bin` first on PATH; the kernel is the venv's `{KERNEL}` kernelspec. Every "
            "tool runs with the other notebook plugins off (`-p no:...`), as if installed alone.")
        add("")
        add("```")
        add("python3 benchmarks/bench.py" + ("" if self.args.runs == 3 else
                                                   f" --runs {self.args.runs}")
            + (" --quick" if self.args.quick else "") + (" --rss" if self.args.rss else ""))
        add("```")
        add("")
        add("```")
        for cases in [*self.groups.values(), [self.rss_case]]:
            for c in cases:
                add(f"# {c.key}: {c.label}")
                env = "".join(f"{k}={shlex.quote(v.replace(str(REPO), '.'))} "
                              for k, v in c.env.items())
                add(f"cd $BENCH/{c.cwd.name} && {env}{render(c.cmd, self.py, self.venv)}")
        add("# kernel start/stop and startup-code cost: the KERNEL_SNIPPET in bench.py, "
            "run as $PY -c SNIPPET kernels 4 (per run) and $PY -c SNIPPET warm 20 (once)")
        add("# import cost: $PY -X importtime -c 'import pytest; import nbtest.plugin'")
        add("```")
        add("")
        add("Sets: A = 20 notebooks of 3 trivial cells; B = 5 notebooks of 30 small cells "
            "(prints and expressions); B1 = B's notebooks cut to their first cell; C = one "
            f"notebook sleeping {SLEEP_S:g} s; D = 200 notebooks like A's (collection; the "
            "--rss run executes them) and 200 one-test .py files; E = one notebook like A's.")
        return "\n".join(lines) + "\n"


SET_NAMES = {"A": "A (20 trivial)", "B": "B (5 × 30 cells)", "B1": "B1 (5 × 1 cell)",
             "C": "C (sleep 2 s)", "E": "E (one notebook)", "D": "D (collect 200)",
             "I": "one .py test"}


def fmt(v: float | None, digits: int = 2) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def fmt_mib(v: float | None) -> str:
    return "n/a" if not v else f"{v / 2**20:.1f} MiB"


def fmt_ms_diff(a: float | None, b: float | None) -> str:
    return "n/a" if a is None or b is None else f"{(a - b) * 1000:+.0f} ms"


def cell(c: Case) -> str:
    if not c.failed:
        return fmt(c.median())
    bad = sum(not r["ok"] for r in c.runs)
    partial = c.median_ok()
    return f"FAILED {bad}/{len(c.runs)}" + ("" if partial is None else
                                             f" (passing runs: {fmt(partial)})")


def all_runs(c: Case) -> str:
    return ", ".join(fmt(r["wall"]) if r["ok"] else f"FAILED({r['problem']})" for r in c.runs)


def render(cmd: list[str], py: str, venv: Path) -> str:
    out = []
    for part in cmd:
        if part == py:
            out.append("$PY")
        elif part.startswith(str(venv / "bin") + "/"):
            out.append(".venv-bench/bin/" + Path(part).name)
        elif "\n" in part:
            out.append("'<raw nbclient snippet: see RAW_NBCLIENT in bench.py>'")
        else:
            out.append(shlex.quote(part))
    return " ".join(out)


def machine_info(load_before: Any, load_after: Any) -> list[tuple[str, str]]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    try:
        usable: int | None = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    def la(t: Any) -> str:
        return "n/a" if not t else ", ".join(f"{x:.2f}" for x in t)

    return [("CPUs", f"{os.cpu_count()} (usable by this process: {usable})"),
            ("CPU model", model), ("memory", mem), ("OS", platform.platform()),
            ("load average (1, 5, 15 min) before", la(load_before)),
            ("load average after", la(load_after) + " — the machine may be shared; "
             "numbers taken under load are noisy")]


def versions() -> list[tuple[str, str]]:
    from importlib import metadata

    out = [("python", platform.python_version())]
    for dist in ("pytest-nbtest", "nbclient", "jupyter_client", "ipykernel", "nbformat", "nbmake",
                 "nbval", "pytest", "pytest-xdist", "pyzmq"):
        try:
            out.append((dist, metadata.version(dist)))
        except metadata.PackageNotFoundError:
            out.append((dist, "not installed"))
    commit = git_commit()
    if commit:
        out.append(("nbtest commit", commit))
    return out


def git_commit() -> str:
    """The working tree's commit, `-dirty` when it has changes (nbtest is installed editable)."""
    try:
        return subprocess.run(["git", "describe", "--always", "--dirty"], cwd=REPO,
                              capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
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
        setup_venv(venv)
        if args.setup_only:
            return 0
    if Path(sys.prefix).resolve() != venv:
        os.environ.setdefault("NBTEST_BENCH_LOAD_BEFORE", ",".join(map(str, os.getloadavg())))
        reexec_in_venv(venv, [a for a in argv if a != "--setup"])
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
        text = bench.report()
    finally:
        if args.keep:
            print(f"bench: kept {bench.tmp}")
        else:
            shutil.rmtree(bench.tmp, ignore_errors=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # Figures other scripts measured (gpu_look_cost.py) stay below KEEP_MARKER.
    old = out.read_text() if out.exists() else ""
    if KEEP_MARKER in old:
        text = text.rstrip("\n") + "\n\n" + old[old.index(KEEP_MARKER):]
    out.write_text(text)
    print()
    print(text)
    print(f"bench: wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
