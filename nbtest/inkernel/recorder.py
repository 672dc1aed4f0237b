"""In the kernel: the recorder this_tests() hands its names to (registry/api.py resolves them).

The slot holds the recorder of the running test: the pytest plugin installs a TestRecorder
per `.py` test (registry/api.py), the startup code calls `install` in each kernel, which
installs a KernelRecorder (each call appended to a private file the harness reads, with its
cell) or, without a file, an ApiChecker. Standard library only: it runs in every kernel.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any, Protocol


class Recorder(Protocol):
    """Receives the resolved names of one this_tests call."""

    api: tuple[str, ...]

    def record(self, names: list[str]) -> None:
        """Keep `names` for the running test."""


_recorder: Recorder | None = None


def current_recorder() -> Recorder | None:
    """The recorder of the running test, if one is installed."""
    return _recorder


def set_recorder(recorder: Recorder | None) -> Recorder | None:
    """Install the recorder for the running test; returns the previous one."""
    global _recorder
    previous, _recorder = _recorder, recorder
    return previous


class KernelRecorder:
    """Inside a kernel: appends each call to a file the harness reads, tagged with the cell.

    The cell is found by matching the source IPython is about to run against the notebook's
    cells (by hash, in order), so no extra message per cell is needed. Each call is written
    and flushed at once, so it survives a later timeout or kernel death.
    """

    def __init__(self, path: str, api: Sequence[str], cells: Sequence[Sequence[Any]]) -> None:
        self.api = tuple(api)
        self.path = path
        self.cells = [(int(number), str(digest)) for number, digest in cells]
        self.position = 0
        self.cell: int | None = None

    def pre_run_cell(self, info: Any) -> None:
        """IPython event: find which notebook cell is starting."""
        digest = source_digest(getattr(info, "raw_cell", "") or "")
        for offset, (number, cell_digest) in enumerate(self.cells[self.position:]):
            if cell_digest == digest:
                self.cell, self.position = number, self.position + offset + 1
                return

    def record(self, names: list[str]) -> None:
        """Append the names with the current cell number."""
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps({"names": names, "cell": self.cell, "called": True}) + "\n")
            fh.flush()


def source_digest(source: str) -> str:
    """A short digest of a cell's source, to match cells without sending their text."""
    return hashlib.sha1(source.encode("utf-8", "surrogatepass")).hexdigest()[:16]


def install(settings: dict[str, Any]) -> None:
    """Called by the startup code in a kernel: record this notebook's this_tests calls (or,
    without a file, only check them against the API)."""
    if not settings.get("file"):
        set_recorder(ApiChecker(settings.get("api", ())))
        return
    recorder = KernelRecorder(settings["file"], settings.get("api", ()), settings["cells"])
    set_recorder(recorder)
    ip = _ipython()
    if ip is not None:
        ip.events.register("pre_run_cell", recorder.pre_run_cell)


class ApiChecker:
    """A recorder that records nothing: this_tests only checks names against the API."""

    def __init__(self, api: Sequence[str]) -> None:
        self.api = tuple(api)

    def record(self, names: list[str]) -> None:
        """Nothing to keep."""


def _ipython() -> Any:
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()
