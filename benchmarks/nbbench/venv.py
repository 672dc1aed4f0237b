"""The bench venv, `.venv-bench`: its set-up, and re-executing a script under it.

It holds nbtest editable plus the `bench` extra (nbmake, nbval, pytest-xdist, nbdev, psutil,
torch, ...) and a `python3` kernelspec; the peers never go into `.venv`.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
DEFAULT_VENV = REPO / ".venv-bench"


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def setup_venv(venv: Path, kernel: str) -> None:
    """Create (or update) the bench venv: nbtest editable + the `bench` extra, and its kernel."""
    py = venv_python(venv)
    if not py.exists():
        print(f"bench: creating {venv}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    cmd = [str(py), "-m", "pip", "install", "-q", "-c", "constraints-dev.txt", "-e", ".[bench]"]
    print("bench: " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    subprocess.run(cmd, check=True, cwd=REPO)
    subprocess.run([str(py), "-m", "ipykernel", "install", "--sys-prefix", "--name", kernel],
                   check=True, cwd=REPO)


def in_bench_venv(script: str, argv: list[str], venv: Path = DEFAULT_VENV) -> None:
    """Re-run `script` with `argv` under the bench venv's interpreter unless this is it."""
    if Path(sys.prefix).resolve() == venv.resolve():
        return
    py = venv_python(venv)
    if not py.exists():
        sys.exit(f"{Path(script).name}: no bench venv at {venv}; run `python3 "
                 "benchmarks/bench.py --setup-only` (or `make bench`) first")
    os.execv(str(py), [str(py), str(Path(script).resolve()), *argv])
