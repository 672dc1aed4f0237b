"""How notebook tests appear in pytest's reports: the crash line, the failing cell's line in the
`.ipynb` file, the JUnit classname, the `-v` status word and the --nbtest-mem-report table.

A plugin object registered only in sessions that use nbtest (plugin.nbtest_active).
"""

from __future__ import annotations

import sys
from collections.abc import Generator
from typing import Any

import pytest

from ..config import NbTestConfig
from ..handoff import received
from .state import EXPORTS_NOT_RUN, KERNEL_START, LEFT_OUT_OUTPUT


def _notebook_path(nodeid: str) -> str | None:
    """The notebook file of a node id, when it names one."""
    path = nodeid.split("::")[0]
    return path if path.endswith(".ipynb") else None


def junit_classname(path: str) -> str:
    """A notebook test's JUnit classname: the notebook's path as in its node id
    (`docs/x.y.ipynb`; pytest's own would be empty, its dotted form ambiguous)."""
    return path


def junit_name(nodeid: str) -> str:
    """A notebook test's JUnit name: the file name (`x.y.ipynb`) or the cell (`cell[3]`),
    not pytest's dotted path again (`docs.x.y.ipynb`)."""
    path, _, rest = nodeid.partition("::")
    return rest or path.rsplit("/", 1)[-1]


def failure_heading(item: pytest.Item) -> str:
    """The title of a failed cell item's section: `x.ipynb cell[3]`, naming the notebook.

    Not `x.ipynb::cell[3]`: a location domain that ends the node id has its dots turned into
    `::` in pytest's -v lines (`x::ipynb::cell[3]`), as if it were `Class.method`."""
    return f"{item.path.name} {item.name}"


def text_repr(text: str, path: str, line: int) -> Any:
    """A failure text as pytest's own exception repr, its first line the crash line."""
    from _pytest._code.code import (
        ReprEntryNative,
        ReprExceptionInfo,
        ReprFileLocation,
        ReprTraceback,
    )

    lines = text.splitlines()
    crash = ReprFileLocation(path, line + 1, lines[0] if lines else "failed")
    entry = ReprEntryNative([line + "\n" for line in lines])
    return ReprExceptionInfo(reprtraceback=ReprTraceback([entry], None, "native"),
                             reprcrash=crash)


class NotebookReports:
    """The report hooks of a session that uses nbtest."""

    def __init__(self, config: pytest.Config, nbconfig: NbTestConfig) -> None:
        self.config = config
        self.mem_report = nbconfig.mem_report
        self.memory_rows: list[tuple[str, float, Any, Any]] = []  # on the controller
        self.exports_not_run = 0
        self.in_summary = False
        self.left_out: list[tuple[str, str]] | None = None  # from the first xdist worker

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item,
                                  call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
        """A failing notebook's report: its crash line (`-ra` shows `cell 4: AssertionError:
        ...`) and its location at the failing cell's first source line in the file."""
        from .items import CellItem, NotebookItem
        from .locations import cell_source_line

        report = yield
        if report.failed and isinstance(item, (NotebookItem, CellItem)):
            error = call.excinfo.value if call.excinfo is not None else None
            number = getattr(error, "cell", None) or getattr(item, "number", None)
            line = cell_source_line(item.path, number) if number else 0
            heading = failure_heading(item) if isinstance(item, CellItem) else report.location[2]
            report.location = (report.location[0], line, heading)
            if isinstance(report.longrepr, str):
                report.longrepr = text_repr(report.longrepr, str(item.path), line)
        return report

    @pytest.hookimpl(tryfirst=True)  # before junitxml writes the test case
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """JUnit classname and name of a notebook test; memory figures for --nbtest-mem-report."""
        path = _notebook_path(report.nodeid)
        if path is None:
            return
        from _pytest.junitxml import xml_key

        xml = self.config.stash.get(xml_key, None)
        if xml is not None:
            reporter = xml.node_reporter(report)
            reporter.add_attribute("classname", junit_classname(path))
            reporter.add_attribute("name", junit_name(report.nodeid))
        props = dict(report.user_properties)
        if report.when == "call":
            self.exports_not_run += int(str(props.get(EXPORTS_NOT_RUN, 0)))
        if report.when == "call" and "nbtest peak RSS MiB" in props:
            gpu, source = props.get("nbtest peak GPU MiB"), props.get("nbtest peak GPU source")
            self.memory_rows.append((report.nodeid, report.duration,
                                     props.get("nbtest peak RSS MiB"),
                                     f"{gpu} ({source})" if gpu and source else gpu))

    def pytest_report_teststatus(self, report: pytest.TestReport) -> Any:
        """With -v, the progress line says how each kernel started: `PASSED (kernel: fork)`;
        the short summary keeps pytest's plain word."""
        start = dict(getattr(report, "user_properties", ())).get(KERNEL_START)
        if (start and report.when == "call" and self.config.getoption("verbose") > 0
                and not self.in_summary):
            word = report.outcome.upper()
            return report.outcome, word[0] if word != "PASSED" else ".", (
                f"{word} (kernel: {start})", {"green": report.passed, "red": report.failed})
        return None

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        """Under xdist: the notebooks an nbdev project leaves out, as a worker collected them
        (each worker collects them all: the first one that reports is enough)."""
        left_out = received(node, LEFT_OUT_OUTPUT) if self.left_out is None else None
        if left_out is not None:
            self.left_out = [tuple(pair) for pair in left_out]

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """The --nbtest-mem-report table: notebook, wall, peak RSS, peak GPU. (pytest writes
        its short summary after this hook: from here on, status words are plain.)"""
        self.in_summary = True
        if self.left_out and self.config.getoption("verbose") > 0:
            for shown, why in self.left_out:
                terminalreporter.write_line(f"nbtest: nbdev: left out {shown}: {why}")
        if self.exports_not_run:
            terminalreporter.write_line(
                f"nbtest: nbdev: {self.exports_not_run} cell(s) calling nbdev_export() or "
                "notebook2script() were not run: they would rewrite the library's source")
        forkserver = sys.modules.get("nbtest.kernel.forkserver_client")
        if forkserver is not None:  # what the fork template could not preload, once
            from ..kernel.preload import report_lines

            verbose = self.config.getoption("verbose") > 0
            for server in forkserver.ForkServer.owned_servers():
                for line in report_lines(server.preload_status()):
                    terminalreporter.write_line(f"nbtest: {line}")
                for line in server.stderr_text().splitlines() if verbose else ():
                    terminalreporter.write_line(f"nbtest: fork template stderr: {line}")
        rows = self.memory_rows
        if not rows or not self.mem_report:
            return
        terminalreporter.section("nbtest memory report", sep="=")
        width = max(len(row[0]) for row in rows)
        terminalreporter.write_line(f"{'notebook':<{width}}  {'wall s':>8}  "
                                    f"{'peak RSS MiB':>12}  peak GPU MiB (source)")
        for nodeid, wall, rss, gpu in sorted(rows):
            terminalreporter.write_line(f"{nodeid:<{width}}  {wall:8.2f}  {rss or '-':>12}  "
                                        f"{gpu or '-'}")
