"""--nbtest-profile: where each notebook's time went, and what to preload about it.

Per notebook: the wait for its kernel (and whether it was forked or spawned), the cells' time
(the sum, the slowest) and, within it, the imports by top-level package (their own time, with
what the notebook imported itself and what that cost in all), and the output messages the
kernel sent. Imports and outputs are measured in the kernel (inkernel/profiling.py) and read from
a file in its private folder once it is gone; the rest the engine sees. The pytest face prints
a table per notebook and the imports across the session, with the modules worth preloading.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Mapping
from typing import Any

import pluggy

from ..callback import Callback, KernelFiles, NotebookRun
from ..handoff import is_worker, received, send
from ..results import NotebookResult, Profile

PROFILE_FILE = "profile.json"  # in the kernel's private folder
WORKER_KEY = "nbtest_profile"  # in an xdist worker's output: its notebooks' profiles
WORTH_PRELOADING = 0.2  # seconds an import costs over the session before it is advised
_hookimpl = pluggy.HookimplMarker("pytest")  # pytest's hook marker, without importing pytest


class ProfileCallback(Callback):
    """Puts `extras["profile"]` into each result: kernel, cells, imports, outputs."""

    def __init__(self) -> None:
        self.launched: dict[int, float] = {}  # id(run) -> when its kernel was asked for
        self.ready: dict[int, float] = {}  # id(run) -> when it answered, startup code run
        self.last_end = 0.0  # the end of the previous notebook in this process

    def before_kernel_start(self, run: NotebookRun) -> None:
        """Note the time; ask the startup code to time imports into the kernel's folder."""
        self.launched[id(run)] = time.monotonic()
        if run.kernel_folder:
            KernelFiles(profile_file=os.path.join(run.kernel_folder, PROFILE_FILE)).put(
                run.startup)

    def on_notebook_start(self, run: NotebookRun) -> None:
        """The kernel answers: its start is over."""
        self.ready[id(run)] = time.monotonic()

    def on_notebook_end(self, run: NotebookRun, result: NotebookResult) -> None:
        """Read the kernel's file (the kernel is gone, its folder not yet) and publish."""
        launched = self.launched.pop(id(run), None)
        ready = self.ready.pop(id(run), None)
        # A kernel pre-warmed while the previous notebook ran was waited for only after it.
        waited = ready - max(launched, self.last_end) if launched and ready else None
        self.last_end = time.monotonic()
        measured = read_kernel_file(KernelFiles.in_run(run).profile_file)
        notebook_profile(result, waited, measured).put(result.extras)


def read_kernel_file(path: str | None) -> dict[str, Any]:
    """What the kernel wrote (empty when it wrote nothing: no cell ended, nbtest missing)."""
    if not path:
        return {}
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def notebook_profile(result: NotebookResult, kernel_s: float | None,
                     measured: Mapping[str, Any]) -> Profile:
    """One notebook's profile."""
    ran = [c for c in result.cells if c.execution_count]
    slowest = max(ran, key=lambda c: c.duration, default=None)
    outputs = measured.get("outputs", {})
    entries = measured.get("entries", {})
    return Profile(
        wall_s=result.duration,
        kernel_s=max(kernel_s, 0.0) if kernel_s is not None else None,
        kernel_start=result.kernel_start.partition(",")[0],
        cells_s=sum(c.duration for c in ran),
        cells=len(ran),
        slowest=[slowest.number, slowest.duration] if slowest else None,
        imports_s=sum(entries.values()),
        modules=dict(measured.get("modules", {})),
        counts=dict(measured.get("counts", {})),
        entries=dict(entries),
        messages=sum(n for n, _ in outputs.values()),
        bytes=sum(b for _, b in outputs.values()),
    )


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB"):
        if n < 1024 or unit == "MiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""  # not reached


def _top(mapping: Mapping[str, float], n: int) -> list[tuple[str, float]]:
    return sorted(mapping.items(), key=lambda item: (-item[1], item[0]))[:n]


def profile_lines(profile: Mapping[str, Any]) -> list[str]:
    """One notebook's profile as a few lines (`nbtest execute --profile`); none for a
    notebook that did not run."""
    if not profile:
        return []
    kernel = profile.get("kernel_s")
    lines = [f"kernel start: {kernel:.2f} s ({profile['kernel_start'] or '?'})"
             if kernel is not None else "kernel start: not measured"]
    cells = f"cells: {profile['cells_s']:.2f} s over {profile['cells']}"
    if profile.get("slowest"):
        number, seconds = profile["slowest"]
        cells += f", slowest cell {number} {seconds:.2f} s"
    lines.append(cells)
    top = ", ".join(f"{name} {s:.2f} s" for name, s in _top(profile["modules"], 5)
                    if s >= 0.01)
    lines.append(f"imports: {profile['imports_s']:.2f} s of it" + (f" ({top})" if top else ""))
    lines.append(f"outputs: {profile['messages']} messages, {_size(profile['bytes'])}")
    return lines


def _summed(profiles: Iterable[Mapping[str, Any]], key: str) -> list[tuple[str, float, int]]:
    """(name, seconds over the session, notebooks) of the profiles' `key` figures, costliest
    first."""
    seconds: dict[str, float] = {}
    notebooks: dict[str, int] = {}
    for profile in profiles:
        for name, s in profile.get(key, {}).items():
            seconds[name] = seconds.get(name, 0.0) + s
            notebooks[name] = notebooks.get(name, 0) + 1
    return [(name, s, notebooks[name]) for name, s in _top(seconds, len(seconds))]


def session_imports(profiles: Iterable[Mapping[str, Any]]) -> list[tuple[str, float, int]]:
    """(top-level package, own seconds over the session, notebooks), costliest first."""
    return _summed(profiles, "modules")


def preload_advice(profiles: Iterable[Mapping[str, Any]]) -> list[tuple[str, float, int]]:
    """(module, seconds over the session, notebooks) of the modules notebooks imported
    themselves, two notebooks or more, costing WORTH_PRELOADING or more: what to preload."""
    from ..kernel.preload import NEVER

    return [(name, s, count) for name, s, count in _summed(profiles, "entries")
            if count >= 2 and s >= WORTH_PRELOADING and name.partition(".")[0] not in NEVER]


def summary_lines(rows: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The session's profile: a table per notebook, the imports, what to preload."""
    width = max([len("notebook"), *(len(name) for name in rows)])
    lines = [f"{'notebook':<{width}}  {'wall s':>7}  {'kernel s':>14}  {'cells s':>7}  "
             f"{'imports s':>9}  {'slowest cell':>14}  outputs"]
    for name, p in sorted(rows.items()):
        kernel = f"{p['kernel_s']:.2f} ({p['kernel_start'] or '?'})" \
            if p.get("kernel_s") is not None else "-"
        slowest = f"{p['slowest'][0]}: {p['slowest'][1]:.2f} s" if p.get("slowest") else "-"
        lines.append(f"{name:<{width}}  {p['wall_s']:7.2f}  {kernel:>14}  {p['cells_s']:7.2f}  "
                     f"{p['imports_s']:9.2f}  {slowest:>14}  {p['messages']} msgs, "
                     f"{_size(p['bytes'])}")
    imports = [row for row in session_imports(rows.values()) if row[1] >= 0.01][:8]
    if imports:
        lines.append("imports by package (own time, all notebooks): " + ", ".join(
            f"{name} {s:.2f} s ({n} nb)" for name, s, n in imports))
    advice = preload_advice(rows.values())[:5]
    if advice:
        names = ", ".join(f"{name} ({s:.2f} s over {n} notebooks)" for name, s, n in advice)
        listed = ", ".join(f'"{name}"' for name, _, _ in advice)
        lines.append(f"consider preloading: {names}")
        lines.append(f"  [tool.nbtest] preload = [{listed}] (or --nbtest-preload) imports them "
                     "once, in the fork template")
    return lines


class ProfileSummary:
    """The pytest side: collects the profiles (from xdist workers too) and prints them."""

    def __init__(self, config: Any) -> None:
        self.config = config
        self.rows: dict[str, dict[str, Any]] = {}  # notebook path (as in node ids) -> profile

    def pytest_nbtest_notebook_done(self, item: Any, run: Any, result: Any) -> None:
        """Keep the notebook's profile."""
        profile = Profile.of(result.extras)
        if profile is not None:
            self.rows[item.nodeid.split("::")[0]] = profile.as_dict()

    def pytest_sessionfinish(self, session: Any, exitstatus: int) -> None:
        """An xdist worker hands its profiles to the controller."""
        send(self.config, WORKER_KEY, self.rows)

    @_hookimpl(optionalhook=True)  # xdist's hook: absent without pytest-xdist
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """Controller: take a worker's profiles."""
        payload = received(node, WORKER_KEY)
        if payload:
            self.rows.update(payload)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """The "nbtest profile" section."""
        if not self.rows or is_worker(self.config):
            return
        terminalreporter.section("nbtest profile", sep="=")
        for line in summary_lines(self.rows):
            terminalreporter.write_line(line)
