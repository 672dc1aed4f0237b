"""In the kernel, under --nbtest-profile: where import time goes, and the output traffic.

`install(path)` puts a finder first on sys.meta_path that times each module's execution (its
own time, and with what it imports in turn) and counts the kernel's output messages; after
each cell (IPython's post_run_cell) the totals so far replace the private file `path`, which
the harness reads when the kernel is gone (callbacks/profile.py), out of band like the
this_tests entries. Standard library only; imported by the startup code only when profiling.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

# Messages that carry what a cell shows (widgets' comm_msg: tqdm's notebook bars).
OUTPUT_TYPES = frozenset({"stream", "display_data", "update_display_data", "execute_result",
                          "error", "clear_output", "comm_msg"})


class ImportTimer:
    """A meta-path finder that finds nothing itself: it asks the finders after it and times
    the execution of what they found, through the loader's exec_module."""

    def __init__(self) -> None:
        self.modules: dict[str, float] = {}  # top-level package -> own seconds
        self.counts: dict[str, int] = {}  # top-level package -> modules imported
        self.entries: dict[str, float] = {}  # imported from outside any import -> seconds
        self.stacks: dict[int, list[list[float]]] = {}  # per thread: [start, children]
        self.finding: set[tuple[int, str]] = set()

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        """The spec the other finders give, its exec_module timed (once)."""
        import _thread

        key = (_thread.get_ident(), name)
        if key in self.finding:
            return None
        self.finding.add(key)
        found_at = time.perf_counter()
        try:
            spec = None
            for finder in list(sys.meta_path):
                find = getattr(finder, "find_spec", None)
                if finder is self or find is None:
                    continue
                spec = find(name, path, target)
                if spec is not None:
                    break
        finally:
            self.finding.discard(key)
        loader = getattr(spec, "loader", None)
        if loader is None or isinstance(loader, type) or not hasattr(loader, "exec_module"):
            return spec  # builtin and frozen modules: their class is the loader, left alone
        try:
            self._wrap(loader, name, time.perf_counter() - found_at)
        except (AttributeError, TypeError):  # a loader without an instance dict
            pass
        return spec

    def _wrap(self, loader: Any, name: str, finding: float) -> None:
        own = vars(loader)
        previous = own.get("exec_module")
        run_module = loader.exec_module

        def exec_module(module: Any) -> None:
            # Put back what was there first: a loader shared by several modules times each.
            if previous is None:
                own.pop("exec_module", None)
            else:
                own["exec_module"] = previous
            self._timed(name, finding, run_module, module)

        own["exec_module"] = exec_module

    def _timed(self, name: str, finding: float, run_module: Any, module: Any) -> None:
        import _thread

        stack = self.stacks.setdefault(_thread.get_ident(), [])
        frame = [time.perf_counter() - finding, 0.0]
        stack.append(frame)
        try:
            run_module(module)
        finally:
            stack.pop()
            total = time.perf_counter() - frame[0]
            top = name.partition(".")[0]
            self.modules[top] = self.modules.get(top, 0.0) + total - frame[1]
            self.counts[top] = self.counts.get(top, 0) + 1
            if stack:
                stack[-1][1] += total
            else:
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


def write(path: str, timer: ImportTimer, outputs: OutputCounter) -> None:
    """Replace `path` with the totals so far (whole, or not at all)."""
    data = {"modules": timer.modules, "counts": timer.counts, "entries": timer.entries,
            "outputs": outputs.messages}
    partial = path + ".part"
    with open(partial, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
    os.replace(partial, path)


def install(path: str) -> None:
    """Time imports and count outputs from now on; write the totals after each cell."""
    timer, outputs = ImportTimer(), OutputCounter()
    sys.meta_path.insert(0, timer)  # type: ignore[arg-type]
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
