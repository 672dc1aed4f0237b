"""Notebook and per-cell items in real pytest sessions with real kernels: outcomes, failure
lines, skips by metadata and markers, per-cell items in one kernel, JUnit XML, --durations,
--lf, and no kernel left after -x or Ctrl-C.
"""

from __future__ import annotations

import pytest
from helpers.pytest_sessions import (
    MARKED_PY,
    interrupt_once_started,
    junit_outcomes,
    junit_properties,
    notebook_maker,
    output,
    run_pytest,
)

from nbtest import this_tests

pytest_plugins = ["pytester"]

# Fails at its cell 4 (markdown cells count), the second code cell.
FAILING = [("markdown", "# sums"), "total = 40 + 1", ("markdown", "check it"),
           "assert total == 42, 'sum is 42'", "print('never reached')"]


@pytest.fixture
def nb(pytester: pytest.Pytester, make_notebook):  # type: ignore[no-untyped-def]
    """`nb(name, cells=..., **metadata)`: a notebook in the pytester folder."""
    return notebook_maker(pytester, make_notebook)


def test_passed_and_failed_with_the_failing_cell_line(pytester: pytest.Pytester, nb,
                                                      no_kernel_left) -> None:
    this_tests("nbtest.plugin.items.NotebookItem.runtest",
               "nbtest.plugin.reports.NotebookReports.pytest_runtest_makereport",
               "nbtest.failure_text.failure_text")
    nb("good.ipynb", ["x = 1", ("markdown", "then"), "assert x == 1"])
    nb("sums.ipynb", FAILING)
    nb("divide.ipynb", ["x = 1", "x / 0"])
    result = run_pytest(pytester, "--nbtest", "-ra")
    result.assert_outcomes(passed=1, failed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines([
        "FAILED divide.ipynb - cell 2: ZeroDivisionError: division by zero",
        "FAILED sums.ipynb - cell 4: AssertionError: sum is 42",
    ], consecutive=False)
    text = output(result)
    # The report: headline, the cell's source with the failing line marked, the traceback,
    # and no terminal colour codes (PY_COLORS=0 under pytester).
    assert "-->   1 | assert total == 42, 'sum is 42'" in text
    assert "sums.ipynb cell 4 (In [2]):" in text
    assert "\x1b[" not in text
    assert "never reached" not in text
    no_kernel_left()


def test_skipped_by_metadata_with_its_reason(pytester: pytest.Pytester, nb) -> None:
    this_tests("nbtest.plugin.items.NotebookItem.runtest",
               "nbtest.plugin.collect.NotebookFile.collect")
    nb("later.ipynb", nbtest={"skip": True})
    nb("nodata.ipynb", nbtest={"skip": "needs the penguins dataset"})
    nb("runs.ipynb", nbtest={"skip": False})
    result = run_pytest(pytester, "--nbtest", "-rs")
    result.assert_outcomes(passed=1, skipped=2)
    result.stdout.fnmatch_lines(["SKIPPED [[]1[]] later.ipynb*: skipped by notebook metadata",
                                 "SKIPPED [[]1[]] nodata.ipynb*: needs the penguins dataset"],
                                consecutive=False)





def test_marker_switches_on_py_tests(pytester: pytest.Pytester,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The seed's --runslow / --runcpp / --skipint and the cuda skip apply to `.py` tests of a
    project that uses nbtest (here: a `[tool.nbtest]` table and no notebook)."""
    this_tests("nbtest.plugin.pytest_collection_modifyitems", "nbtest.plugin.state.nbtest_active")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    pytester.makepyprojecttoml("[tool.nbtest]\ntimeout = 60\n")
    pytester.makepyfile(test_marked=MARKED_PY)

    default = pytester.runpytest("-rs")
    default.assert_outcomes(passed=2, skipped=3)
    default.stdout.fnmatch_lines([
        "SKIPPED * test_marked.py:*: marked slow: pass --runslow to run it "
        "(nbtest skips slow tests without it)",
        "SKIPPED * test_marked.py:*: marked cpp: pass --runcpp to run it "
        "(nbtest skips cpp tests without it)",
        "SKIPPED * test_marked.py:*: CUDA is not available",
    ], consecutive=False)

    switched = pytester.runpytest("-rs", "--runslow", "--runcpp", "--skipint")
    switched.assert_outcomes(passed=3, skipped=2)
    switched.stdout.fnmatch_lines(["SKIPPED * test_marked.py:*: CUDA is not available",
                                   "SKIPPED * test_marked.py:*: marked integration: "
                                   "--skipint given"],
                                  consecutive=False)


def test_runslow_and_runcpp_run_marked_notebooks(pytester: pytest.Pytester, nb,
                                                 no_kernel_left) -> None:
    this_tests("nbtest.plugin.pytest_collection_modifyitems",
               "nbtest.plugin.items.NotebookItem.runtest")
    nb("train.ipynb", nbtest={"markers": ["slow"]})
    nb("kernels.ipynb", nbtest={"markers": ["cpp"]})
    nb("data.ipynb", nbtest={"markers": ["integration"]})
    result = run_pytest(pytester, "--nbtest", "--runslow", "--runcpp", "-rA")
    result.assert_outcomes(passed=3)
    no_kernel_left()


def test_marked_notebooks_are_skipped_with_the_seeds_reasons(
        pytester: pytest.Pytester, nb, monkeypatch: pytest.MonkeyPatch) -> None:
    this_tests("nbtest.plugin.pytest_collection_modifyitems", "nbtest.gpu.probe.cuda_available")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    nb("train.ipynb", nbtest={"markers": ["slow"]})
    nb("kernels.ipynb", nbtest={"markers": ["cpp"]})
    nb("gpu.ipynb", nbtest={"markers": ["cuda"]})
    nb("data.ipynb", nbtest={"markers": ["integration"]})
    result = run_pytest(pytester, "--nbtest", "--skipint", "-rs")
    result.assert_outcomes(skipped=4)
    result.stdout.fnmatch_lines([
        "SKIPPED [[]1[]] data.ipynb*: marked integration: --skipint given",
        "SKIPPED [[]1[]] gpu.ipynb*: CUDA is not available",
        "SKIPPED [[]1[]] kernels.ipynb*: marked cpp: pass --runcpp to run it "
        "(nbtest skips cpp tests without it)",
        "SKIPPED [[]1[]] train.ipynb*: marked slow: pass --runslow to run it "
        "(nbtest skips slow tests without it)",
    ], consecutive=False)


STEPS = [("markdown", "# steps"), "x = 1", "y = x + 1", ("markdown", "check"),
         "assert y == 3, f'y is {y}'", "z = 3", "print(z)"]


def test_cells_fail_at_third_code_cell(pytester: pytest.Pytester, nb, no_kernel_left) -> None:
    """Cells 2 and 3 pass (3 sees cell 2's `x`: one kernel), cell 5 fails, 6 and 7 are
    skipped with `cell 5 failed`; the next notebook starts with a fresh kernel."""
    this_tests("nbtest.plugin.items.CellItem.runtest", "nbtest.plugin.items.CellItem.setup",
               "nbtest.plugin.collect.NotebookFile.teardown")
    nb("steps.ipynb", STEPS)
    nb("zfresh.ipynb", ["import os\nassert 'y' not in globals()", "a = 1", "assert a == 1"])
    result = run_pytest(pytester, "--nbtest", "--nbtest-cells", "-rA", "--junitxml=cells.xml")
    result.assert_outcomes(passed=5, failed=1, skipped=2)
    result.stdout.fnmatch_lines([
        "PASSED steps.ipynb::cell[[]2[]]",
        "PASSED steps.ipynb::cell[[]3[]]",
        "PASSED zfresh.ipynb::cell[[]1[]]",
        "SKIPPED [[]1[]] steps.ipynb:*: cell 5 failed",  # each at its own cell's line
        "SKIPPED [[]1[]] steps.ipynb:*: cell 5 failed",
        "FAILED steps.ipynb::cell[[]5[]] - cell 5: AssertionError: y is 2",
    ], consecutive=False)
    assert "steps.ipynb::cell[6]" not in result.stdout.str().replace("PASSED", "")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    # JUnit: one testcase per cell, with its time as a property; the skip has its reason.
    xml = pytester.path / "cells.xml"
    assert junit_outcomes(xml) == {
        "steps.ipynb::cell[2]": "passed", "steps.ipynb::cell[3]": "passed",
        "steps.ipynb::cell[5]": "failed", "steps.ipynb::cell[6]": "skipped",
        "steps.ipynb::cell[7]": "skipped", "zfresh.ipynb::cell[1]": "passed",
        "zfresh.ipynb::cell[2]": "passed", "zfresh.ipynb::cell[3]": "passed"}
    properties = junit_properties(xml)
    assert set(properties["steps.ipynb::cell[5]"]) == {"cell 5 seconds"}
    assert set(properties["zfresh.ipynb::cell[3]"]) == {"cell 3 seconds"}
    assert properties["steps.ipynb::cell[6]"] == {}
    assert 'message="cell 5 failed"' in xml.read_text()
    no_kernel_left()


# A conftest noting, at each kernel's last look, whether a collector's teardown stops it.
STOP_WHERE = """
import traceback

from nbtest.callback import Callback
from nbtest.plugin.state import CALLBACKS_KEY


class Where(Callback):
    def before_kernel_stop(self, run):
        frames = traceback.extract_stack()
        by_teardown = any(f.name == "teardown" and f.filename.endswith("collect.py")
                          for f in frames)
        with open("stops.txt", "a") as fh:
            fh.write(f"{run.path.name} {'teardown' if by_teardown else 'elsewhere'}\\n")


def pytest_sessionstart(session):
    session.config.stash[CALLBACKS_KEY].append(Where())
"""


def test_cells_stopped_by_x_leave_no_kernel(pytester: pytest.Pytester, nb,
                                            no_kernel_left) -> None:
    """-x in the middle of a notebook's cells: the kernel is stopped by its NotebookFile's
    teardown (pytest's SetupState, at session end), not left to a sweep."""
    this_tests("nbtest.plugin.items.CellItem.runtest",
               "nbtest.plugin.collect.NotebookFile.teardown",
               "nbtest.plugin.cell_kernel.CellKernel.close")
    pytester.makeconftest(STOP_WHERE)
    nb("steps.ipynb", ["x = 1", "assert x == 2", "y = 3", "z = 4"])
    nb("zlater.ipynb", ["a = 1"])
    result = run_pytest(pytester, "--nbtest", "--nbtest-cells", "-x", "-rA")
    result.assert_outcomes(passed=1, failed=1)
    assert "stopping after 1 failures" in output(result)
    assert "zlater.ipynb" not in result.stdout.str()
    assert (pytester.path / "stops.txt").read_text() == "steps.ipynb teardown\n"
    no_kernel_left()


@pytest.mark.parametrize("cells", [False, True], ids=["notebook", "cells"])
def test_ctrl_c_while_a_cell_runs_leaves_no_kernel(pytester: pytest.Pytester, nb,
                                                   no_kernel_left, cells: bool) -> None:
    """Ctrl-C mid-cell: no kernel left; a per-cell notebook's kernel is stopped by its
    NotebookFile's teardown."""
    this_tests("nbtest.plugin.items.NotebookItem.runtest", "nbtest.plugin.items.CellItem.runtest",
               "nbtest.plugin.collect.NotebookFile.teardown")
    pytester.makeconftest(STOP_WHERE)
    nb("sleeper.ipynb", ["x = 1",
                         "import time\nopen('sleeping.txt', 'w').write('yes')\ntime.sleep(120)",
                         "y = 2"])
    args = ["--nbtest", "-p", "no:cacheprovider", *(["--nbtest-cells"] if cells else []),
            "sleeper.ipynb"]
    interrupt_once_started(args, pytester.path, pytester.path / "sleeping.txt")
    if cells:
        assert (pytester.path / "stops.txt").read_text() == "sleeper.ipynb teardown\n"
    no_kernel_left()


def test_junit_durations_and_last_failed(pytester: pytest.Pytester, nb) -> None:
    this_tests("nbtest.plugin.items.NotebookItem.runtest",
               "nbtest.plugin.items.NotebookItem.record")
    nb("good.ipynb", ["x = 1", ("markdown", "then"), "assert x == 1"])
    nb("sums.ipynb", FAILING)

    first = run_pytest(pytester, "--nbtest", "-ra", "--junitxml=first.xml",
                       "--durations=3", "--durations-min=0")
    first.assert_outcomes(passed=1, failed=1)
    xml = pytester.path / "first.xml"
    assert junit_outcomes(xml) == {"good.ipynb": "passed", "sums.ipynb": "failed"}
    properties = junit_properties(xml)
    assert set(properties["good.ipynb"]) == {"cell 1 seconds", "cell 3 seconds"}
    assert set(properties["sums.ipynb"]) == {"cell 2 seconds", "cell 4 seconds"}
    assert all(float(v) >= 0 for p in properties.values() for v in p.values())
    assert 'message="cell 4: AssertionError: sum is 42"' in xml.read_text()
    for name in ("good.ipynb", "sums.ipynb"):  # in the order of their times
        first.stdout.fnmatch_lines(["*slowest 3 durations*", f"*s call * {name}"],
                                   consecutive=False)

    again = run_pytest(pytester, "--nbtest", "--lf", "-rA")
    again.assert_outcomes(failed=1)
    assert "run-last-failure: rerun previous 1 failure" in again.stdout.str()
    assert "collected 1 item" in again.stdout.str()
    assert "good.ipynb" not in again.stdout.str().split("short test summary")[-1]


def test_verbose_lines_show_the_node_ids(pytester: pytest.Pytester, nb) -> None:
    this_tests("nbtest.plugin.items.NotebookItem.reportinfo", "nbtest.plugin.items.CellItem.setup")
    # An unknown kernel fails each item before any kernel starts: no kernel is needed here.
    nb("docs/a.ipynb")
    result = pytester.runpytest("--nbtest", "-v", "--nbtest-kernel", "nosuch")
    result.stdout.fnmatch_lines(["docs/a.ipynb FAILED*"])
    cells = pytester.runpytest("--nbtest", "--nbtest-cells", "-v", "--nbtest-kernel", "nosuch")
    cells.stdout.fnmatch_lines(["docs/a.ipynb::cell[[]1[]] ERROR*"])
