"""In the kernel, under --nbtest-profile: where import time goes, and the output traffic.

`install(path)` adds a sink to the kernel's import timer (inkernel/imports.py: each module's
own time, and with what it imports in turn) and counts the kernel's output messages; after
each cell (IPython's post_run_cell) the totals so far replace the private file `path`, which
the harness reads when the kernel is gone (callbacks/profile.py), out of band like the
this_tests entries. Standard library only; imported by the startup code only when profiling.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

# Messages that carry what a cell shows (widgets' comm_msg: tqdm's notebook bars).
OUTPUT_TYPES = frozenset({"stream", "display_data", "update_display_data", "execute_result",
                          "error", "clear_output", "comm_msg"})


class ImportTotals:
    """The profile's sink of the kernel's import timer (inkernel/imports.py): own seconds per
    top-level package, modules per package, and the total of each module imported from
    outside any import (the notebook's own imports, with all they pulled in)."""

    def __init__(self) -> None:
        self.modules: dict[str, float] = {}  # top-level package -> own seconds
        self.counts: dict[str, int] = {}  # top-level package -> modules imported
        self.entries: dict[str, float] = {}  # imported from outside any import -> seconds

    def loaded(self, name: str, own: float, total: float, importer: str | None) -> None:
        """Add one module's figures."""
        top = name.partition(".")[0]
        self.modules[top] = self.modules.get(top, 0.0) + own
        self.counts[top] = self.counts.get(top, 0) + 1
        if importer is None:
            self.entries[name] = self.entries.get(name, 0.0) + total


class OutputCounter:
    """Counts the output messages the kernel's session serialises, and their bytes."""

    def __init__(self) -> None:
        self.messages: dict[str, list[int]] = {}  # msg_type -> [count, bytes]

    def wrap(self, session: Any) -> None:
        """Count through `session.serialize` (every message the kernel sends passes it)."""
        serialize = session.serialize

        def counted(msg: Any, ident: Any = None) -> Any:
            frames = serialize(msg, ident)
            kind = msg.get("header", {}).get("msg_type") if isinstance(msg, dict) else None
            if kind in OUTPUT_TYPES:
                seen = self.messages.setdefault(kind, [0, 0])
                seen[0] += 1
                seen[1] += sum(len(frame) for frame in frames)
            return frames

        session.serialize = counted


def write(path: str, timer: ImportTotals, outputs: OutputCounter) -> None:
    """Replace `path` with the totals so far (whole, or not at all)."""
    data = {"modules": timer.modules, "counts": timer.counts, "entries": timer.entries,
            "outputs": outputs.messages}
    partial = path + ".part"
    with open(partial, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
    os.replace(partial, path)


def install(path: str) -> None:
    """Time imports and count outputs from now on; write the totals after each cell."""
    from .imports import timer as import_timer

    timer, outputs = ImportTotals(), OutputCounter()
    import_timer().sinks.append(timer.loaded)
    shell: Any = getattr(sys.modules.get("IPython"), "get_ipython", lambda: None)()
    session = getattr(getattr(shell, "kernel", None), "session", None)
    if session is not None:
        outputs.wrap(session)

    def after_cell(result: Any = None) -> None:
        for stream in (sys.stdout, sys.stderr):  # the cell's last output, counted now
            try:
                stream.flush()
            except Exception:
                pass
        try:
            write(path, timer, outputs)
        except OSError:  # the folder went with a kernel being stopped: nothing to keep
            pass

    if shell is not None:
        shell.events.register("post_run_cell", after_cell)
