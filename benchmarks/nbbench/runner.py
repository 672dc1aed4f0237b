"""The runner: one command at a time, timed as a whole process, and what it measured.

`Runner` (bench.py) runs a command in an isolated environment (HOME and the Jupyter and
IPython folders pointed at empty temporary ones), with a timeout, and samples the process's own
peak RSS; `Case` is one command of a comparison with its runs and medians. `timed` (the preload
and nbdev scripts) times a command in the current environment, optionally with `UssSampler`
summing the kernels' USS. psutil comes from the bench venv (see venv.py).
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

from .venv import venv_python

RUN_TIMEOUT_S = 900


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


class UssSampler:
    """The kernels' USS summed over every kernel of a run, each at its peak (sampled every
    0.1 s); the fork template is not a kernel: its memory is counted once, apart."""

    def __init__(self) -> None:
        self.kernels: dict[int, int] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)

    @property
    def peak(self) -> int:
        return sum(self.kernels.values())

    def loop(self) -> None:
        import psutil

        me = psutil.Process()
        while not self.stop.wait(0.1):
            for proc in me.children(recursive=True):
                try:
                    # A spawned kernel runs ipykernel; a forked one is the template's child.
                    if "ipykernel" in " ".join(proc.cmdline()) or \
                            "nbtest.kernel.forkserver_main" in " ".join(proc.parent().cmdline()):
                        uss = proc.memory_full_info().uss
                        self.kernels[proc.pid] = max(self.kernels.get(proc.pid, 0), uss)
                except Exception:
                    continue

    def __enter__(self) -> UssSampler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def timed(cmd: list[str], cwd: Path, env: dict[str, str],
          uss: bool = False) -> tuple[float, int]:
    """Wall seconds (NaN when the command failed) and the kernels' peak summed USS (bytes,
    0 unless `uss`) of one command; a failure's output goes to stderr."""
    sampler = UssSampler()
    t0 = time.perf_counter()
    if uss:
        sampler.__enter__()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if uss:
        sampler.__exit__()
    if proc.returncode != 0:
        print(f"FAILED ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout[-3000:]}"
              f"{proc.stderr[-2000:]}", file=sys.stderr)
        return float("nan"), sampler.peak
    return wall, sampler.peak


def with_bytecode(env: dict[str, str]) -> dict[str, str]:
    """`env` with Python's bytecode cache on, as users have it (Runner's environment drops
    the PYTHON* variables for the same reason): under PYTHONDONTWRITEBYTECODE every pytest
    process and xdist worker recompiles each plugin module pytest rewrites, ~0.2-0.3 s each."""
    return {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}


def warm_up(commands: list[list[str]], modules: list[str], cwd: Path,
            env: dict[str, str]) -> None:
    """Fill the bytecode cache before timing (untimed): the kernel machinery, `modules`, and
    each pytest command's plugins, collected once."""
    code = "import " + ", ".join(["ipykernel.kernelapp", "nbclient", *modules])
    subprocess.run([sys.executable, "-c", code], env=env, capture_output=True)
    for cmd in commands:
        if "pytest" in cmd:
            subprocess.run([*cmd, "--collect-only"], cwd=cwd, env=env, capture_output=True)
