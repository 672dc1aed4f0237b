"""What both sides of a kernel start agree on: the kernel's environment, the command's shape,
the variables that make a template differ, and the provisioner's name.

It sits below launch.py, forkserver_client.py, forkserver_main.py and provisioner.py, which all
import it, so none of them needs another to know these (no import cycle).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

FORK_PROVISIONER = "nbtest-fork"  # the jupyter_client.kernel_provisioners entry point's name
_INLINE_BACKEND = "module://matplotlib_inline.backend_inline"
_NON_GUI_BACKENDS = {"agg", "pdf", "ps", "svg", "cairo", "pgf", "template"}

# Variables that shape an interpreter at start-up: a kernel is forked only when they match
# the template's, else it is spawned normally (a different sys.path or site would differ).
STARTUP_VARS = ("PYTHONPATH", "PYTHONHOME", "PYTHONSAFEPATH", "PYTHONNOUSERSITE",
                "PYTHONUSERBASE", "PYTHONSTARTUP", "PYTHONWARNINGS", "PYTHONDEVMODE",
                "PYTHONUTF8", "PYTHONIOENCODING", "PYTHONHASHSEED", "COVERAGE_PROCESS_START",
                "COVERAGE_PROCESS_CONFIG",
                "LD_PRELOAD", "LD_LIBRARY_PATH", "VIRTUAL_ENV", "OMP_WAIT_POLICY")
# OpenMP's threads busy-wait after each parallel region (GNU libgomp: 300,000 spins). A kernel
# waits for its next cell right after one, so its idle threads spin on while another notebook's
# kernel needs that core: under -n 2 that doubled the kernels' CPU time and cost a third of the
# wall time (benchmarks/RESULTS.md). Kernels wait passively unless the user chose.
OPENMP_WAIT = {"OMP_WAIT_POLICY": "PASSIVE"}
_OPENMP_CHOICES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")


def kernel_environment(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment for a kernel, with nbtest's variables and a non-GUI backend."""
    env = dict(os.environ)
    backend = env.get("MPLBACKEND", "")
    if not backend.startswith("module://") and backend.lower() not in _NON_GUI_BACKENDS:
        env["MPLBACKEND"] = _INLINE_BACKEND
    env["NBTEST"] = "1"
    env["PYDEVD_DISABLE_FILE_VALIDATION"] = "1"  # debugpy's frozen-modules warning is noise
    if not any(name in env for name in _OPENMP_CHOICES):
        env.update(OPENMP_WAIT)  # read when libgomp loads: in the template, for forked kernels
    env.update(extra)
    return env



def split_kernel_command(argv: Sequence[str]) -> tuple[list[str], list[str]] | None:
    """(interpreter flags, launcher arguments) of `python [-X...] -m ipykernel_launcher ARGS`."""
    if not argv or os.path.realpath(argv[0]) != os.path.realpath(sys.executable):
        return None
    rest = list(argv[1:])
    flags = []
    while rest and rest[0].startswith("-") and rest[0] != "-m":
        flags.append(rest.pop(0))
    if rest[:2] != ["-m", "ipykernel_launcher"]:
        return None
    return flags, rest[2:]
