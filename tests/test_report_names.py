"""How notebook tests are named in pytest's reports: the failure section's title of a cell item
names its notebook, and JUnit XML gives the notebook's path and the file or cell name, not
pytest's dotted path twice. Real pytest sessions, real kernels.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers.pytest_sessions import junit_outcomes, output, run_pytest

from nbtest import this_tests

pytest_plugins = ["pytester"]

CELLS = ["x = 1", ("markdown", "check"), "assert x == 2, 'x is 1'"]


@pytest.mark.parametrize("mode", [[], ["--nbtest-cells"]], ids=["notebook", "cells"])
def test_headings_and_junit_names_name_the_notebook_once(
        pytester: pytest.Pytester, make_notebook: Callable[..., Path],
        no_kernel_left: Callable[[], None], mode: list[str]) -> None:
    this_tests("nbtest.plugin.reports.failure_heading", "nbtest.plugin.reports.junit_name",
               "nbtest.plugin.reports.junit_classname",
               "nbtest.plugin.reports.NotebookReports.pytest_runtest_logreport")
    make_notebook(pytester.path / "docs_src" / "x.y.ipynb", CELLS)
    result = run_pytest(pytester, "--nbtest", *mode, "-v", "-p", "no:cacheprovider",
                        "--junitxml=junit.xml")
    text = output(result)
    assert result.ret == 1, text
    cases = [(c.get("classname"), c.get("name"))
             for c in ET.parse(pytester.path / "junit.xml").getroot().iter("testcase")]
    if mode:
        heading = "x.y.ipynb cell[3]"
        assert cases == [("docs_src/x.y.ipynb", "cell[1]"), ("docs_src/x.y.ipynb", "cell[3]")]
        assert "docs_src/x.y.ipynb::cell[3] FAILED" in text  # -v: the node id, unmangled
    else:
        heading = "x.y.ipynb (notebook)"
        assert cases == [("docs_src/x.y.ipynb", "x.y.ipynb")]
    titles = [line.strip("_ ") for line in text.splitlines() if line.startswith("____")]
    assert titles == [heading], text
    assert "::ipynb" not in text and "docs_src.x" not in text
    assert set(junit_outcomes(pytester.path / "junit.xml").values()) >= {"failed"}
    no_kernel_left()
