"""Helpers of the pytest-plugin tests: real pytest sessions in a subprocess, their outcomes.

The notebooks themselves are written with conftest's `make_notebook` (absolute paths under
`pytester.path`, through `notebook_maker`).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

# Hang guard for one pytest session in a subprocess (seconds); never a speed assertion.
SESSION_TIMEOUT = 180
REPO = Path(__file__).resolve().parent.parent.parent


def run_pytest(pytester: pytest.Pytester, *args: str | Path,
               timeout: float = SESSION_TIMEOUT) -> pytest.RunResult:
    """A real pytest session in a subprocess (its own asyncio, zmq and kernels), where SIGINT
    raises KeyboardInterrupt as Ctrl-C does in a terminal, wherever this suite runs."""
    # A shell without job control starts background jobs with SIGINT ignored, and a child
    # inherits that (a Python handler, by contrast, is reset to the default on exec).
    ignored = (threading.current_thread() is threading.main_thread()
               and signal.getsignal(signal.SIGINT) is signal.SIG_IGN)
    if ignored:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        return pytester.runpytest_subprocess(*map(str, args), timeout=timeout)
    finally:
        if ignored:
            signal.signal(signal.SIGINT, signal.SIG_IGN)


def output(result: pytest.RunResult) -> str:
    """stdout and stderr of a session, joined."""
    return result.stdout.str() + "\n" + result.stderr.str()


def _junit_test_name(case: ET.Element) -> str:
    """A test case's name as junit_outcomes keys it: its node id (a notebook test's classname
    is the notebook's path, its name the file name or `cell[N]`)."""
    classname, name = case.get("classname", ""), case.get("name", "")
    if classname.endswith(".ipynb"):
        return classname if name == classname.rsplit("/", 1)[-1] else f"{classname}::{name}"
    return "::".join(p for p in (classname, name) if p)


def junit_outcomes(path: Path) -> dict[str, str]:
    """`{test name: passed | failed | skipped | error}` from a JUnit XML file.

    The name is the node id's: `x.ipynb::cell[3]` (per-cell items), `x.ipynb` (a notebook),
    `classname::name` (a `.py` test).
    """
    outcomes: dict[str, str] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        name = _junit_test_name(case)
        tags = {child.tag for child in case}
        outcome = next((t for t in ("failure", "error", "skipped") if t in tags), "passed")
        outcomes[name] = {"failure": "failed"}.get(outcome, outcome)
    return outcomes


def junit_properties(path: Path, prefix: str = "cell ") -> dict[str, dict[str, str]]:
    """`{test name: {property: value}}` from a JUnit XML file (names as in junit_outcomes),
    for the properties whose name starts with `prefix` (the per-cell times by default)."""
    found: dict[str, dict[str, str]] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        name = _junit_test_name(case)
        found[name] = {p.get("name", ""): p.get("value", "")
                       for p in case.iter("property") if p.get("name", "").startswith(prefix)}
    return found


def collected_ids(result: pytest.RunResult) -> list[str]:
    """The node ids printed by `--collect-only -q`, in order."""
    return [line.strip() for line in result.stdout.lines
            if line.strip() and not line.startswith((" ", "=", "!"))
            and ("::" in line or line.strip().endswith((".ipynb", ".py")))
            and " " not in line.strip()]


def venv_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Our environment with the interpreter's virtualenv active (bin first on PATH)."""
    env = dict(os.environ)
    bindir = str(Path(sys.executable).parent)
    env["VIRTUAL_ENV"] = sys.prefix
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    env.pop("NBTEST", None)
    env.update(extra or {})
    return env


def lines_starting(result: pytest.RunResult, prefixes: Sequence[str]) -> list[str]:
    """The output lines that start with one of `prefixes` (e.g. short-summary lines)."""
    return [line for line in result.stdout.lines if line.startswith(tuple(prefixes))]


def notebook_maker(pytester: pytest.Pytester, make_notebook: Callable[..., Path]
                   ) -> Callable[..., Path]:
    """`nb(name, cells=..., **metadata) -> Path`: a notebook under pytester.path.

    Keyword arguments become the notebook's metadata (e.g. `nbtest={"skip": True}`).
    """

    def make(name: str, cells: Sequence = ("x = 1", "assert x == 1"), **metadata: object) -> Path:
        return make_notebook(pytester.path / name, list(cells), metadata or None)

    return make


def interrupt_once_started(args: Sequence[str], cwd: Path, marker: Path,
                           on_started: Callable[[], object] = lambda: None) -> str:
    """Run pytest `args` in `cwd`, SIGINT it (as Ctrl-C does) once a cell has written `marker`
    (`on_started` runs just before), and return its output; it must end as interrupted."""
    proc = subprocess.Popen([sys.executable, "-m", "pytest", *args], cwd=cwd,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + SESSION_TIMEOUT  # hang guard, not a speed check
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), "the sleeping cell never started"
        on_started()
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "KeyboardInterrupt" in out, out
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, out
    return out


# A `.py` test module with one test per seed marker (slow, cpp, cuda, integration) and one plain.
MARKED_PY = """
    import pytest

    @pytest.mark.slow
    def test_slow():
        pass

    @pytest.mark.cpp
    def test_cpp():
        pass

    @pytest.mark.cuda
    def test_cuda():
        pass

    @pytest.mark.integration
    def test_integration():
        pass

    def test_plain():
        pass
    """
