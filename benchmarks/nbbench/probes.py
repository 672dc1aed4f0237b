"""What is measured besides the tools: fixed costs and floors.

For bench.py: a kernel's start and stop through jupyter_client and the cost of nbtest's startup
code (KERNEL_SNIPPET), the import cost of `nbtest.plugin` (IMPORT_SNIPPET under -X importtime)
and what nbtest's modules import in a session without notebooks. For bench_preload.py: the
import of the heavy modules, the physical floor (fork of a preloaded process + the cells) and
the template's start and RSS. Snippets report back on a `BENCH-JSON ...` line.
"""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .runner import Runner
from .sets import KERNEL
from .tools import pytest_cmd
from .venv import REPO

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


def bench_json(output: str) -> Any:
    """What a snippet reported on its `BENCH-JSON` line, or None."""
    m = re.search(r"^BENCH-JSON (.*)$", output, re.M)
    return json.loads(m.group(1)) if m else None


# ----------------------------------------------------------------------------- bench.py


def snippet(runner: Runner, cwd: Path, code: str, *argv: str) -> tuple[Any, str | None]:
    """Run `code` under the bench venv: its BENCH-JSON, or None and what went wrong."""
    r = runner.run([runner.py, "-c", code, *argv], cwd, watch_hwm=False)
    res = bench_json(r["output"])
    if r["rc"] != 0 or res is None:
        tail = "\n".join(r["output"].strip().splitlines()[-15:])
        print(f"  snippet FAILED (exit {r['rc']}):\n{tail}", flush=True)
        return None, f"snippet {argv}: exit {r['rc']}\n{tail}"
    return res, None


def importtime(runner: Runner, cwd: Path, n: int) -> dict[str, Any]:
    """Cumulative -X importtime of `nbtest` + `nbtest.plugin` after `import pytest`, n times."""
    totals, loaded = [], None
    for _ in range(n):
        r = runner.run([runner.py, "-X", "importtime", "-c", IMPORT_SNIPPET], cwd,
                       watch_hwm=False)
        total = 0
        for line in r["output"].splitlines():
            m = re.match(r"import time:\s+(\d+)\s+\|\s+(\d+)\s+\|( *)(\S+)", line)
            if m and not m.group(3).strip(" ") and len(m.group(3)) == 1 \
                    and m.group(4) in ("nbtest", "nbtest.plugin"):
                total += int(m.group(2))
        res = bench_json(r["output"])
        if r["rc"] == 0 and res is not None:
            totals.append(total / 1000)
            loaded = res
    return {"ms": totals, "median_ms": statistics.median(totals) if totals else None,
            "loaded": loaded}


def session_imports(runner: Runner, cwd: Path, n: int) -> dict[str, Any]:
    """`pytest --co -q` on one .py test under -X importtime: what nbtest's modules import."""
    cmd = pytest_cmd(runner.py, "nbtest", "--co", "-q", ".")
    cmd[1:1] = ["-X", "importtime"]
    totals: list[float] = []
    children: dict[str, list[float]] = {}
    for _ in range(n):
        r = runner.run(cmd, cwd, watch_hwm=False)
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


# ----------------------------------------------------------------------------- preloading


def floor_import(modules: list[str]) -> float:
    """Seconds of `python -c "import ..."`: what each spawned kernel pays again."""
    code = "import " + ", ".join(modules)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - t0


def floor_fork(modules: list[str]) -> float:
    """Per notebook: fork a process that has imported `modules`, run the cells, exit."""
    code = f"""
import os, time
import {', '.join(modules)}
import numpy as np, torch
t0 = time.perf_counter()
for _ in range(10):
    pid = os.fork()
    if pid == 0:
        a = torch.randn(100, 100); b = a @ a.T; assert np.isfinite(b.numpy()).all()
        os._exit(0)
    os.waitpid(pid, 0)
print((time.perf_counter() - t0) / 10)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    return float(out.stdout.strip().splitlines()[-1])


def template_cost(modules: list[str]) -> tuple[float, float]:
    """Seconds until a template preloading `modules` listens, and its RSS (MiB)."""
    import psutil

    from nbtest.kernel.forkserver_client import ForkServer

    t0 = time.perf_counter()
    server = ForkServer(["-Xfrozen_modules=off"], preload=modules, root=str(REPO))
    while not server.ready():
        time.sleep(0.01)
    seconds = time.perf_counter() - t0
    rss = psutil.Process(server.process.pid).memory_info().rss / 2**20
    server.stop()
    return seconds, rss
