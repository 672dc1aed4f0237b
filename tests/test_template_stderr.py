"""The fork template's stderr (a preloaded library's import-time warning) stays off the
terminal, which shows only the session's own output: it is shown under -v, or when the template
fails."""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
from helpers.notebooks import write_notebook
from helpers.pytest_sessions import output, run_pytest

from nbtest import this_tests
from nbtest.kernel.forkserver_client import ForkServer

pytest_plugins = ["pytester"]

HANG_GUARD = 120  # seconds for the template to import; never a speed assertion
WARNS = "import warnings\nwarnings.warn('noisy import-time warning', UserWarning)\nVALUE = 1\n"


def test_the_templates_import_warnings_show_under_v_only(pytester: pytest.Pytester,
                                                         no_kernel_left) -> None:
    this_tests("nbtest.kernel.forkserver_client.ForkServer.stderr_text",
               "nbtest.plugin.reports.NotebookReports.pytest_terminal_summary")
    (pytester.path / "noisy.py").write_text(WARNS)
    for name in ("a", "b"):
        write_notebook(pytester.path / f"{name}.ipynb", ["import noisy\nassert noisy.VALUE"])
    args = ("--nbtest", "--nbtest-preload", "noisy", "-p", "no:cacheprovider")
    quiet = run_pytest(pytester, *args)
    assert quiet.ret == 0, output(quiet)
    assert "noisy import-time warning" not in output(quiet)
    verbose = run_pytest(pytester, *args, "-v")
    text = output(verbose)
    assert verbose.ret == 0, text
    assert re.findall(r"PASSED \(kernel: ([^)]+)\)", text) == ["fork", "fork"]
    assert re.search(r"nbtest: fork template stderr: .*UserWarning: noisy import-time warning",
                     text), text
    no_kernel_left()


def test_kernels_forked_later_write_to_the_harness_stderr(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_kernel_left) -> None:
    """Only the template's imports go to its file: once it serves, its stderr (which the
    kernels it forks inherit, with what a failed kernel start prints) is the harness's."""
    this_tests("nbtest.kernel.forkserver_main._stderr_to_file",
               "nbtest.kernel.forkserver_main.serve")
    (tmp_path / "noisy.py").write_text(WARNS)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")])))
    server = ForkServer((), preload=["noisy"], root=str(tmp_path))
    try:
        deadline = time.monotonic() + HANG_GUARD
        while not server.ready() and server.process.poll() is None:
            assert time.monotonic() < deadline, "the template never got ready"
            time.sleep(0.05)
        assert server.ready(), server.stderr_text()
        assert "noisy import-time warning" in server.stderr_text()
        ours = os.stat(f"/proc/{os.getpid()}/fd/2")
        theirs = os.stat(f"/proc/{server.process.pid}/fd/2")
        assert (theirs.st_dev, theirs.st_ino) == (ours.st_dev, ours.st_ino)
    finally:
        server.stop()
    no_kernel_left()
