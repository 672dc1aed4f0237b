"""The harness's side of the kernel's own GPU peak: `read_peak` reads the private file the
kernel appends to (inkernel/gpu_peak.py writes it after each cell, where torch initialised
CUDA).
"""

from __future__ import annotations

import json


def read_peak(path: str) -> int | None:
    """The latest peak (MiB) the kernel wrote to `path`, if any (read by the harness)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            fh.seek(max(0, fh.tell() - 512))
            lines = fh.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        try:
            return int(json.loads(line)["peak_mib"])
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short, or the first partial one of the tail
    return None
