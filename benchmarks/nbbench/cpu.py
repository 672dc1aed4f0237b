"""Where a run's CPU goes, by kind of process: why `-n 2` on 2 cores has a floor.

`cpu_by_kind` runs one command and samples every process of its tree with psutil every few
milliseconds, keeping each process's last CPU time (user + system) seen: the pytest controller,
the xdist workers, nbtest's fork template, the kernels (forked from the template, or spawned),
and any other process. A process's last few milliseconds before it exits can be missed, so the
sums are lower bounds. On N cores a run cannot take less wall time than its CPU time / N.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # psutil is in .venv-bench: the scripts import this before re-executing there
    import psutil

SAMPLE_S = 0.003
EXEC_WINDOW_S = 0.5  # a young process is classified again at each sample: it may not have exec'd
KINDS = ("controller", "xdist workers", "fork template", "kernels", "other")
# The command line execnet gives a `popen` gateway, i.e. an xdist worker.
EXECNET_BOOTSTRAP = "import sys;exec(eval(sys.stdin.readline()))"


def _kind(proc: psutil.Process, root: int, templates: set[int]) -> str:
    if proc.pid == root:
        return "controller"
    cmdline = " ".join(proc.cmdline())
    if "nbtest.kernel.forkserver_main" in cmdline:
        if proc.ppid() in templates:
            return "kernels"  # a forked kernel keeps its template's command line
        templates.add(proc.pid)
        return "fork template"
    if "ipykernel" in cmdline:
        return "kernels"
    if EXECNET_BOOTSTRAP in cmdline:
        return "xdist workers"
    return "other"


def cpu_by_kind(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, dict[str, float]]:
    """Wall seconds of `cmd` and its CPU seconds by kind of process (KINDS)."""
    import psutil

    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    root = psutil.Process(proc.pid)
    templates: set[int] = set()
    seen: dict[tuple[int, float], list] = {}  # (pid, start time): [kind, cpu seconds]
    while proc.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
        except psutil.Error:
            break
        for p in tree:
            try:
                times = p.cpu_times()
                key = (p.pid, p.create_time())
                if key not in seen or time.time() - key[1] < EXEC_WINDOW_S:
                    # Seen between fork and exec, a process has its parent's command line.
                    seen[key] = [_kind(p, proc.pid, templates), 0.0]
                seen[key][1] = times.user + times.system
            except psutil.Error:
                continue
        time.sleep(SAMPLE_S)
    wall = time.perf_counter() - t0
    totals = dict.fromkeys(KINDS, 0.0)
    for kind, cpu in seen.values():
        totals[kind] += cpu
    return wall, totals
