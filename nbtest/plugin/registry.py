"""The pytest side of the registry: capture per test, merge once per session, list the missing.

Each process records the this_tests calls of the tests it runs; under xdist the workers send
theirs to the controller (nbtest.handoff), and only the controller (or the single
process) writes the file, atomically and under a lock. An interrupted session writes nothing.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from ..errors import NbTestError
from ..handoff import received, send
from ..inkernel.recorder import set_recorder
from ..registry.api import TestRecorder
from ..registry.file import Registry, update_registry_file
from ..results import NB_PASSED, ThisTestsCapture

WORKER_KEY = "nbtest_registry"


def test_identity(item: pytest.Function) -> tuple[str, str, int]:
    """(file, test, line) of a `.py` test: the file relative to rootdir, the test as its node
    id names it without parameters (`test_x`, `TestX::test_y`), the line of its `def`."""
    file, _, rest = item.nodeid.partition("::")
    test = re.sub(r"\[.*\]$", "", rest)
    try:
        lines, start = inspect.getsourcelines(inspect.unwrap(item.function))
        offset = next(i for i, text in enumerate(lines)
                      if text.lstrip().startswith(("def ", "async def ")))
        line = start + offset
    except (OSError, TypeError, StopIteration):
        line = (item.location[1] or 0) + 1
    return file, test, line


class RegistrySession:
    """A pytest plugin object, registered by nbtest.plugin when `[tool.nbtest] api` is set."""

    def __init__(self, config: pytest.Config, path: Path | None, api: tuple[str, ...],
                 mode: str) -> None:
        self.config = config
        self.path = path
        self.api = api
        self.mode = mode  # warn / error / off: what to do about tests that never call it
        self.new = Registry()
        self.ran: set[tuple[str, str]] = set()
        self.missing: list[str] = []
        self.called: dict[str, bool] = {}
        self.error = ""  # why the registry file could not be written

    # -- capture ---------------------------------------------------------------------------
    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, Any, Any]:
        """Install a recorder around a `.py` test's call."""
        if not isinstance(item, pytest.Function):
            return (yield)
        recorder = TestRecorder(self.api)
        previous = set_recorder(recorder)
        try:
            return (yield)
        finally:
            set_recorder(previous)
            file, test, line = test_identity(item)
            self.ran.add((file, test))
            # The notebook cells it ran through the notebook fixture (plugin/fixture.py).
            cells = getattr(item, "nbtest_notebook_cells", None)
            extra = {"notebooks": {k: sorted(v) for k, v in cells.items()}} if cells else {}
            for name in recorder.names:
                self.new.add(name, {"file": file, "test": test, "line": line, **extra})
            self.called[item.nodeid] = recorder.called

    def pytest_nbtest_notebook_done(self, item: pytest.Item, run: Any, result: Any) -> None:
        """Take the notebook's captured calls (read by callbacks.registry) into the registry."""
        file = item.nodeid.split("::")[0]
        test = Path(file).name
        captured = ThisTestsCapture.of(result.extras) or ThisTestsCapture(False, [])
        self.ran.add((file, test))
        for name, cell in captured.entries:
            self.new.add(name, {"file": file, "test": test, "cell": cell})
        if not captured.called and result.status == NB_PASSED and file not in self.missing:
            self.missing.append(file)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """A `.py` test that passed without calling this_tests is listed at the end."""
        if report.when == "call" and report.passed and self.called.get(report.nodeid) is False:
            self.missing.append(report.nodeid)

    # -- xdist -----------------------------------------------------------------------------
    def worker_payload(self) -> dict[str, Any]:
        """What a worker sends to the controller."""
        return {"entries": self.new.entries, "ran": sorted(self.ran), "missing": self.missing}

    @pytest.hookimpl(optionalhook=True)  # xdist's hook: absent without pytest-xdist
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """Controller: merge what a worker captured."""
        data = received(node, WORKER_KEY)
        if not data:
            return
        for name, entries in data["entries"].items():
            for entry in entries:
                self.new.add(name, entry)
        self.ran.update(tuple(pair) for pair in data["ran"])
        self.missing += [m for m in data["missing"] if m not in self.missing]

    # -- the end ---------------------------------------------------------------------------
    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        """Write the file (controller or single process), unless the session was interrupted."""
        if send(self.config, WORKER_KEY, self.worker_payload()):
            return
        if exitstatus == pytest.ExitCode.INTERRUPTED or self.path is None:
            return
        try:
            update_registry_file(self.path, self.new, self.ran, self.config.rootpath)
        except NbTestError as exc:  # e.g. the file was corrupted during the session
            self.error = exc.message
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
            return
        if self.missing and self.mode == "error" and exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """The seed's "Attention" block: tests that never called this_tests."""
        if self.error:
            terminalreporter.write_line(f"nbtest: {self.error}", red=True)
        if not self.missing or self.mode == "off":
            return
        terminalreporter.section("nbtest: tests without this_tests", sep="=", yellow=True)
        terminalreporter.write_line(
            "Attention: these tests ran without calling this_tests(...); add a call naming the "
            "functions they exercise (or this_tests('na')):")
        for nodeid in sorted(self.missing):
            terminalreporter.write_line(f"  {nodeid}")
        if self.mode == "error":
            terminalreporter.write_line("--nbtest-this-tests=error: the session fails because "
                                        "of these tests", red=True)
