"""Switching from nbval: nbval's comment markers, its own test notebooks rebuilt, a sanitize
file that repeats a regex, `collector.skip_compare` in a conftest, every mismatching cell
reported, and skipped cells as skipped tests under --nbtest-cells. Generated notebooks, real
kernels.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import nbformat
import pytest
from helpers.notebooks import error_output, result_output, stored, stream
from helpers.pytest_sessions import output, run_pytest

from nbtest import NbTestConfig, run_notebook, this_tests
from nbtest.callbacks.outputs import OutputCheck
from nbtest.failure_text import failure_text
from nbtest.notebook import expects_error, is_skipped, marker_comments
from nbtest.outputs.compare import marked
from nbtest.outputs.sanitize import SanitizerSet, parse_sanitize_file
from nbtest.results import FAILED, NOT_RUN, PASSED, SKIPPED

pytest_plugins = ["pytester"]


# --- nbval's comment markers (# NBVAL_SKIP and the others) as nbval reads them -------------

# nbval's tests/exceptions.ipynb, rebuilt: errors expected by comment, one output ignored.
NBVAL_EXCEPTIONS = [
    stored('# NBVAL_RAISES_EXCEPTION\nraise RuntimeError("foo")',
           [error_output("RuntimeError", "foo")], 1),
    stored("import time", [], 2),
    stored('# NBVAL_IGNORE_OUTPUT\n# NBVAL_RAISES_EXCEPTION\nprint(time.time())\n'
           'raise RuntimeError("Bar")',
           [stream("1485539287.9658682\n"), error_output("RuntimeError", "Bar")], 3),
    stored("", [], None),
]


# In the style of nbval's tests/sample_notebook.ipynb: stored outputs that still match, outputs
# that differ but are ignored by comment, a skipped cell that would fail, an expected error.
NBVAL_SAMPLE = [
    ("markdown", "# Sample notebook"),
    stored('print("Hello world")', [stream("Hello world\n")], 1),
    stored("from datetime import datetime", [], 2),
    stored("# PYTEST_VALIDATE_IGNORE_OUTPUT\ndatetime.now()",
           [result_output("datetime.datetime(2015, 4, 8, 14, 17, 21, 527210)", 3)], 3),
    stored('#NBVAL_IGNORE_OUTPUT\ndatetime.today().strftime("Last executed: %Y-%m-%d")',
           [result_output("'Last executed: 2015-04-08'", 4)], 4),
    stored("# NBVAL_SKIP\n# needs a service this machine does not have\n"
           "raise ConnectionError('no service')", [stream("connected\n")], 5),
    stored("#  NBVAL_RAISES_EXCEPTION\n1 / 0", [error_output("ZeroDivisionError",
                                                             "division by zero")], 6),
    stored("# NBVAL_CHECK_OUTPUT\nprint(6 * 7)", [stream("42\n")], 7),
]


def test_marker_comments_are_read_once_for_every_marker() -> None:
    this_tests(marker_comments, is_skipped, expects_error, marked)
    code = nbformat.v4.new_code_cell
    cell = code("%%time\n  ## NBVAL_SKIP  \nx = 1  # NBVAL_RAISES_EXCEPTION\n#NBVAL_CHECK_OUTPUT")
    # Whole comment lines only, as nbval reads them: a trailing comment is no marker.
    assert marker_comments(cell) == ["NBVAL_SKIP", "NBVAL_CHECK_OUTPUT"]
    assert is_skipped(cell) and not expects_error(cell) and marked(cell) is True
    assert expects_error(code("# NBVAL_RAISES_EXCEPTION\n1/0"))
    assert marked(code("# NBVAL_IGNORE_OUTPUT\nx")) is False
    assert marked(code("# PYTEST_VALIDATE_IGNORE_OUTPUT\nx")) is False
    assert not is_skipped(code("print('# NBVAL_SKIP')"))
    # Raw JSON sources (lists of lines) are read the same way.
    assert is_skipped({"cell_type": "code", "source": ["# NBVAL_SKIP\n", "x = 1"]})


@pytest.mark.parametrize("check_outputs", [True, False], ids=["nbval", "nbval-lax"])
def test_nbval_exceptions_notebook_passes(make_notebook, no_kernel_left,
                                          check_outputs: bool) -> None:
    this_tests(run_notebook, expects_error, "nbtest.callbacks.outputs.OutputCheck")
    path = make_notebook("exceptions.ipynb", NBVAL_EXCEPTIONS)
    config = NbTestConfig.of(check_outputs=check_outputs)
    result = run_notebook(path, config, [OutputCheck.from_config(config)])
    assert result.passed, failure_text(result)
    assert [c.status for c in result.cells] == [PASSED, PASSED, PASSED, SKIPPED]
    assert [c.error_name for c in result.cells[:3]] == ["RuntimeError", None, "RuntimeError"]
    no_kernel_left()


@pytest.mark.parametrize("check_outputs", [True, False], ids=["nbval", "nbval-lax"])
def test_nbval_sample_notebook_passes(make_notebook, no_kernel_left,
                                      check_outputs: bool) -> None:
    this_tests(run_notebook, is_skipped, expects_error, marked)
    path = make_notebook("sample_notebook.ipynb", NBVAL_SAMPLE)
    config = NbTestConfig.of(check_outputs=check_outputs)
    result = run_notebook(path, config, [OutputCheck.from_config(config)])
    assert result.passed, failure_text(result)
    by_number = {c.number: c for c in result.cells}
    assert by_number[6].status == SKIPPED and by_number[6].execution_count is None
    assert by_number[7].status == PASSED and by_number[7].error_name == "ZeroDivisionError"
    assert [c.execution_count for c in result.cells] == [1, 2, 3, 4, None, 5, 6]
    no_kernel_left()


def test_nbval_raises_exception_comment_without_an_error_fails(make_notebook,
                                                               no_kernel_left) -> None:
    this_tests(run_notebook, expects_error)
    # As the raises-exception tag: a cell that must raise and does not fails the notebook.
    path = make_notebook("quiet.ipynb", ["# NBVAL_RAISES_EXCEPTION\nx = 1", "print('after')"])
    result = run_notebook(path)
    assert result.status == "failed"
    assert [c.status for c in result.cells] == [FAILED, NOT_RUN]
    assert failure_text(result).splitlines()[0].startswith("cell 1: expected an error")
    no_kernel_left()


def test_nbval_markers_under_pytest_cells(pytester: pytest.Pytester,
                                          pytester_notebook: Callable[..., Path]) -> None:
    this_tests("nbtest.plugin.items.CellItem")
    pytester_notebook("exceptions.ipynb", NBVAL_EXCEPTIONS)
    pytester_notebook("sample_notebook.ipynb", NBVAL_SAMPLE)
    result = run_pytest(pytester, "--nbtest", "--nbtest-cells", "-rs", "-p", "no:randomly",
                        "-p", "no:cacheprovider")
    text = output(result)
    # Every cell item passes (or is skipped): the `# NBVAL_SKIP` cell, which would raise, is
    # not run, and the `# NBVAL_RAISES_EXCEPTION` cells raise as expected.
    assert result.ret == 0, text
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) + outcomes.get("skipped", 0) == 11, text
    assert "ConnectionError" not in text


def test_tagged_cells_are_skipped_tests_per_cell(pytester: pytest.Pytester,
                                                 pytester_notebook) -> None:
    """With --nbtest-cells a cell that a tag or marker skips is reported skipped, as nbval."""
    this_tests("nbtest.plugin.items.CellItem.runtest")
    pytester_notebook("tags.ipynb", ["x = 1", ("code", "raise RuntimeError('no')", ["nbval-skip"]),
                                  "# NBVAL_SKIP\nraise RuntimeError('no')", "assert x == 1"])
    result = run_pytest(pytester, "--nbtest", "--nbtest-cells", "-rs", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, skipped=2)
    assert output(result).count("skipped by its tag or marker") == 2


# --- sanitize files: a repeated regex takes the later replacement (6) ----------------------

def test_sanitize_file_repeated_regex_takes_the_later_replacement() -> None:
    this_tests(parse_sanitize_file, SanitizerSet.apply)
    text = ("[one]\nregex: b\nreplace: X\n\n"
            "[two]\nregex: c\nreplace: d\n\n"
            "[three]\nregex: b\nreplace: c\n")
    rules = parse_sanitize_file(text, "sanitize.cfg")
    # nbval's dict keyed by regex: `b` keeps its first place and takes the later `c`, so
    # `b` -> `c`, then `c` -> `d`. (Both rules in file order would give X.)
    assert [(r.pattern.pattern, r.replace) for r in rules] == [("b", "c"), ("c", "d")]
    assert SanitizerSet(rules, builtin=False).apply("b") == "d"
    assert [r.name for r in rules] == ["three", "two"]


# --- output comparison: skip_compare in a conftest (7), every mismatch ---------------------

NBVAL_CONFTEST = """
def pytest_collectstart(collector):
    if collector.fspath and collector.fspath.ext == '.ipynb':
        collector.skip_compare += 'text/html', 'application/javascript', 'stderr',
"""


def test_nbval_skip_compare_in_a_conftest_is_honoured(pytester: pytest.Pytester,
                                                      pytester_notebook) -> None:
    this_tests("nbtest.plugin.collect.NotebookFile.collect",
               "nbtest.outputs.compare.compare_outputs")
    pytester.makeconftest(NBVAL_CONFTEST)
    stderr = {"output_type": "stream", "name": "stderr", "text": "old warning\n"}
    pytester_notebook("warns.ipynb", [stored(
        "import sys\nprint('same')\nprint('new warning', file=sys.stderr)",
        [stream("same\n"), stderr], 1)])
    result = run_pytest(pytester, "--nbtest", "--nbtest-check-outputs", "-p", "no:cacheprovider")
    assert "INTERNALERROR" not in output(result)
    result.assert_outcomes(passed=1)  # stderr differs, and is not compared
    without = pytester.path / "conftest.py"
    without.unlink()
    result = run_pytest(pytester, "--nbtest", "--nbtest-check-outputs", "-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    assert "output differs (stderr)" in output(result)


def test_every_mismatching_cell_is_reported(make_notebook) -> None:
    this_tests("nbtest.failure_text.failure_text")
    path = make_notebook("many.ipynb", [
        stored("print(1)", [stream("one\n")], 1),
        stored("print(2)", [stream("2\n")], 2),
        stored("print(3)", [stream("three\n")], 3),
    ])
    result = run_notebook(path, NbTestConfig.of(check_outputs=True), [OutputCheck()])
    assert [c.status for c in result.cells] == [FAILED, PASSED, FAILED]
    text = failure_text(result)
    assert text.startswith("cell 1: output differs (stdout)") and "cell 3:" in text
