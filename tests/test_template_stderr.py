"""The fork template's stderr (a preloaded library's import-time warning) stays off the
terminal: it is shown under -v, or when the template fails (issue 28, clean output)."""

from __future__ import annotations

import re

import pytest
from conftest import write_notebook
from pytester_helpers import output, run_pytest

from nbtest import this_tests

pytest_plugins = ["pytester"]

WARNS = "import warnings\nwarnings.warn('noisy import-time warning', UserWarning)\nVALUE = 1\n"


def test_the_templates_import_warnings_show_under_v_only(pytester: pytest.Pytester,
                                                         no_kernel_left) -> None:
    this_tests("nbtest.kernel.forkserver.ForkServer.stderr_text",
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
