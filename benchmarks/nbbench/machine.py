"""What a report records of where it was measured: the machine, the versions, the commit."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

from .venv import REPO


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
