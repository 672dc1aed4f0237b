"""What a notebook's kernel imported and what each import cost, for `preload = "auto"` (and
for --nbtest-profile, inkernel/profiling.py, which adds its sink to the same timer).

The startup code installs `ImportTimer` (one per kernel: `timer()`; standard library only,
like the rest of what runs in the kernel): a meta-path finder that finds nothing itself but
times the loading of each module imported from then on, like `python -X importtime`: its own
time (`self`, without the modules it imported meanwhile) and its importer (the module whose
loading imported it, None for the notebook's code). After each cell, the learner appends what
is new to a private file as one JSON line `{module: [self_seconds, importer]}`; the harness
reads it when the notebook ends (plugin/fork_template.py) and `auto` learns from it
(preload.learned_from_kernels).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, Callable, Optional

# What a sink is told of each module loaded: (name, own seconds, total seconds, importer).
Sink = Callable[[str, float, float, Optional[str]], None]


class ImportTimer:
    """A meta-path finder timing each module's loading (it finds nothing itself); what it
    measures goes to its sinks: the `auto` learner below, and --nbtest-profile's
    (inkernel/profiling.py). One timer serves both: two would each wrap the same loader."""

    def __init__(self) -> None:
        self.stack: list[list[Any]] = []  # modules loading now: [name, time in nested loads]
        self.sinks: list[Sink] = []

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        """The spec the finders after this one find, its loader timed for this module."""
        finders = sys.meta_path
        start = finders.index(self) + 1 if self in finders else 0
        for finder in finders[start:]:
            find = getattr(finder, "find_spec", None)
            spec = find(name, path, target) if find is not None else None
            if spec is not None:
                loader = spec.loader
                # A class (BuiltinImporter, FrozenImporter) serves every module: not touched.
                if loader is not None and not isinstance(loader, type) and hasattr(
                        loader, "exec_module") and "exec_module" not in vars(loader):
                    self._time(name, loader)
                return spec
        return None

    def _time(self, name: str, loader: Any) -> None:
        run = loader.exec_module
        stack, sinks = self.stack, self.sinks

        def exec_module(module: Any) -> None:
            __tracebackhide__ = True  # noqa: F841 (IPython leaves this frame out of tracebacks)
            importer = stack[-1][0] if stack else None
            stack.append([name, 0.0])
            started = time.perf_counter()
            try:
                run(module)
            finally:
                spent = time.perf_counter() - started
                _, nested = stack.pop()
                if stack:
                    stack[-1][1] += spent
                for sink in sinks:
                    sink(name, spent - nested, spent, importer)
                try:
                    del loader.exec_module  # the loader is the module's own: as it was
                except AttributeError:
                    pass

        loader.exec_module = exec_module


def timer() -> ImportTimer:
    """The kernel's one import timer, first on sys.meta_path from the first call on."""
    found = next((f for f in sys.meta_path if isinstance(f, ImportTimer)), None)
    if found is None:
        found = ImportTimer()
        sys.meta_path.insert(0, found)
    return found


class Learner:
    """The `auto` learner's sink: each module's own time and importer, appended to a private
    file after each cell as one JSON line `{module: [self_seconds, importer]}`."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.new: dict[str, list[Any]] = {}  # loaded since the last report

    def loaded(self, name: str, own: float, total: float, importer: str | None) -> None:
        """Note one module."""
        self.new[name] = [round(own, 6), importer]

    def report(self, *args: Any) -> None:
        """IPython post_run_cell handler: append what was imported since the last report."""
        if not self.new:
            return
        new, self.new = self.new, {}
        try:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(new) + "\n")
        except OSError:
            pass  # the harness learns less; the notebook is not concerned


def install(path: str) -> None:
    """Time every import from now on and report after each cell to `path`."""
    learner = Learner(path)
    timer().sinks.append(learner.loaded)
    try:
        shell: Any = sys.modules["IPython"].get_ipython()
        shell.events.register("post_run_cell", learner.report)
    except (KeyError, AttributeError):
        pass
