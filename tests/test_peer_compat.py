"""Switching from nbmake, nbval and papermill (issue 13): what the peers do, nbtest does too.

Each test rebuilds one case of the issue with generated notebooks and real kernels: an error
shown by a post-execute hook fails its cell, the kernel name `python`, nbval's comment
markers, no stale outputs in the executed copy, nbval's repeated sanitize regexes, and
nbformat 3 notebooks converted in memory.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
import pytest
from conftest import cell_text, read_notebook
from pytester_helpers import output, run_pytest

from nbtest import NbTestConfig, run_notebook, this_tests
from nbtest.callbacks.outputs import OutputCheck
from nbtest.errors import NotebookLoadError
from nbtest.kernel.launch import kernel_spec, resolve_kernel_name
from nbtest.notebook import expects_error, is_skipped, load_notebook, marker_comments
from nbtest.outputs.compare import marked
from nbtest.outputs.sanitize import SanitizerSet, parse_sanitize_file
from nbtest.report import failure_text
from nbtest.results import FAILED, NOT_RUN, PASSED, SKIPPED

pytest_plugins = ["pytester"]


def error_output(ename: str, evalue: str) -> dict[str, Any]:
    """An `error` output as Jupyter stores it."""
    return {"output_type": "error", "ename": ename, "evalue": evalue,
            "traceback": [f"\x1b[0;31m{ename}\x1b[0m: {evalue}"]}


def stream(text: str) -> dict[str, Any]:
    """A stdout output as Jupyter stores it."""
    return {"output_type": "stream", "name": "stdout", "text": text}


def result_output(text: str, count: int) -> dict[str, Any]:
    """An execute_result output as Jupyter stores it."""
    return {"output_type": "execute_result", "execution_count": count, "metadata": {},
            "data": {"text/plain": text}}


def stored(source: str, outputs: list[dict[str, Any]], count: int | None,
           tags: list[str] | None = None) -> dict[str, Any]:
    """A code cell as a notebook saved after an earlier run holds it."""
    return {"source": source, "outputs": [nbformat.from_dict(o) for o in outputs],
            "execution_count": count, "tags": tags}


# --- 2. an error shown by a post-execute hook fails its cell -------------------------------

# A post_run_cell callback that raises after a cell ending in `# draw` ran: IPython shows the
# traceback as an `error` output while the execute reply stays `ok` (as matplotlib's inline
# backend does when it cannot draw a figure).
HOOK = """\
def draw(result):
    if result.info.raw_cell.endswith('# draw'):
        raise ValueError('cannot draw this figure')

get_ipython().events.register('post_run_cell', draw)"""


def test_an_error_shown_by_a_post_execute_hook_fails_the_cell(make_notebook,
                                                              no_kernel_left) -> None:
    this_tests(run_notebook, "nbtest.execute.NotebookSession.run_cell", failure_text)
    path = make_notebook("hook.ipynb", [
        HOOK,                                   # cell 1
        "x = 1  # draw",                        # cell 2: the hook raises after it
        "print('after')",                       # cell 3: not run
    ])
    result = run_notebook(path)
    assert result.status == "failed"
    assert [c.status for c in result.cells] == [PASSED, FAILED, NOT_RUN]
    cell = result.failed_cell
    assert cell is not None and cell.number == 2
    assert (cell.error_name, cell.error_value) == ("ValueError", "cannot draw this figure")
    assert any("cannot draw this figure" in line for line in cell.traceback)
    text = failure_text(result)
    assert text.splitlines()[0] == "cell 2: ValueError: cannot draw this figure"
    assert "draw(result)" in text or "raise ValueError" in text  # the hook's traceback
    no_kernel_left()


@pytest.mark.parametrize("how", ["raises-exception tag", "NBVAL_RAISES_EXCEPTION comment",
                                 "allow_errors"])
def test_a_hook_error_is_allowed_where_errors_are(make_notebook, no_kernel_left,
                                                  how: str) -> None:
    this_tests(run_notebook, "nbtest.execute.NotebookSession.run_cell")
    drawn: Any = "x = 1  # draw"
    if how == "raises-exception tag":
        drawn = ("code", "x = 1  # draw", ["raises-exception"])
    elif how == "NBVAL_RAISES_EXCEPTION comment":
        drawn = "# NBVAL_RAISES_EXCEPTION\nx = 1  # draw"
    config = NbTestConfig.of(allow_errors=True) if how == "allow_errors" else None
    result = run_notebook(make_notebook("hook.ipynb", [HOOK, drawn, "print('after')"]), config)
    assert result.passed, failure_text(result)
    assert [c.status for c in result.cells] == [PASSED, PASSED, PASSED]
    assert result.cells[1].error_name == "ValueError"
    no_kernel_left()


def test_cli_execute_fails_a_cell_whose_hook_raised(make_notebook, run_cli,
                                                    no_kernel_left) -> None:
    this_tests("nbtest.cli.cmd_execute")
    path = make_notebook("hook.ipynb", [HOOK, "x = 1  # draw"])
    proc = run_cli("execute", path, "--no-progress")
    assert proc.returncode == 1, proc.stderr
    assert "cell 2: ValueError: cannot draw this figure" in proc.stderr
    no_kernel_left()


# --- 3. the kernel name `python` ----------------------------------------------------------

def test_kernel_name_python_is_the_native_kernel(make_notebook, run_cli, monkeypatch,
                                                 no_kernel_left) -> None:
    this_tests(kernel_spec, resolve_kernel_name, run_notebook, "nbtest.cli.cmd_execute")
    monkeypatch.setattr("nbtest.kernel.launch._specs", {})  # a fresh lookup, not a cached python3
    # jupyter_client's KernelManager starts `python3` for `python`; other names are kept.
    assert resolve_kernel_name("python") == "python3"
    assert resolve_kernel_name("python3") == "python3"
    assert resolve_kernel_name("python2") == "python2"
    assert kernel_spec("python").argv == kernel_spec("python3").argv
    path = make_notebook("native.ipynb", ["import sys\nprint(sys.version_info[0])"],
                         kernel="python")
    result = run_notebook(path)
    assert result.passed, failure_text(result)
    assert result.cells[0].output_tail == "3"
    proc = run_cli("execute", path, "--no-progress")
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("execute", make_notebook("other.ipynb", ["x = 1"]), "--no-progress",
                   "--kernel", "python")
    assert proc.returncode == 0, proc.stderr
    no_kernel_left()


# --- 4. nbval's comment markers -----------------------------------------------------------

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
                                          notebook_maker: Callable[..., Path]) -> None:
    this_tests("nbtest.plugin.items.CellItem")
    notebook_maker("exceptions.ipynb", NBVAL_EXCEPTIONS)
    notebook_maker("sample_notebook.ipynb", NBVAL_SAMPLE)
    result = run_pytest(pytester, "--nbtest", "--nbtest-cells", "-rs", "-p", "no:randomly",
                        "-p", "no:cacheprovider")
    text = output(result)
    # Every cell item passes (or is skipped): the `# NBVAL_SKIP` cell, which would raise, is
    # not run, and the `# NBVAL_RAISES_EXCEPTION` cells raise as expected.
    assert result.ret == 0, text
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) + outcomes.get("skipped", 0) == 11, text
    assert "ConnectionError" not in text


@pytest.fixture
def notebook_maker(pytester: pytest.Pytester, make_notebook) -> Callable[..., Path]:
    """make_notebook writing into the pytester folder."""
    return lambda name, cells, **kw: make_notebook(pytester.path / name, cells, **kw)


# --- 5. no stale outputs in the executed copy ---------------------------------------------

STALE = [
    ("markdown", "# stale outputs"),
    stored("print('fresh')", [stream("old 1\n")], 11),
    stored("raise RuntimeError('broken')", [stream("old 2\n")], 12),
    stored("print('never run')", [stream("old 3: looks like this run's\n")], 13),
    stored("print('skipped')", [stream("old 4\n")], 14, tags=["skip-execution"]),
    stored("# NBVAL_SKIP\nprint('skipped too')", [stream("old 5\n")], 15),
]


def _code_cells(nb: Any) -> list[tuple[int | None, str]]:
    return [(c.execution_count, cell_text(c)) for c in nb.cells if c.cell_type == "code"]


EXPECTED_COPY = [(1, "fresh\n"), (2, "RuntimeError: broken\n"), (None, ""), (None, ""),
                 (None, "")]


def test_executed_notebook_holds_only_this_runs_outputs(make_notebook, run_cli,
                                                        no_kernel_left) -> None:
    this_tests(run_notebook, "nbtest.cli.cmd_execute")
    path = make_notebook("stale.ipynb", STALE)
    result = run_notebook(path)
    assert result.status == "failed"
    assert _code_cells(result.notebook) == EXPECTED_COPY
    out = path.with_name("out.ipynb")
    proc = run_cli("execute", path, "-o", out, "--no-progress")
    assert proc.returncode == 1, proc.stderr
    assert _code_cells(read_notebook(out)) == EXPECTED_COPY
    assert _code_cells(read_notebook(path))[2] == (13, "old 3: looks like this run's\n")
    no_kernel_left()


def test_skipped_notebook_copy_holds_no_outputs(make_notebook, run_cli) -> None:
    this_tests(run_notebook, "nbtest.execute.NotebookSession.skipped")
    path = make_notebook("skipped.ipynb", STALE, metadata={"nbtest": {"skip": "not here"}})
    result = run_notebook(path)
    assert result.status == "skipped"
    assert _code_cells(result.notebook) == [(None, "")] * 5
    out = path.with_name("out.ipynb")
    proc = run_cli("execute", path, "-o", out, "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert _code_cells(read_notebook(out)) == [(None, "")] * 5


def test_saved_failed_notebook_holds_only_this_runs_outputs(
        pytester: pytest.Pytester, notebook_maker: Callable[..., Path]) -> None:
    this_tests("nbtest.plugin.items.NotebookItem.save_failed")
    notebook_maker("stale.ipynb", STALE)
    result = run_pytest(pytester, "--nbtest", "--nbtest-save-failed", "saved", "-p",
                        "no:randomly", "-p", "no:cacheprovider")
    assert result.ret == 1, output(result)
    saved = list((pytester.path / "saved").glob("*.ipynb"))
    assert len(saved) == 1, output(result)
    assert _code_cells(read_notebook(saved[0])) == EXPECTED_COPY


# --- 6. nbval sanitize files: a repeated regex takes the later replacement ----------------

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


# --- 10. nbformat 3 notebooks are converted in memory -------------------------------------

def _v3_cell(source: str, outputs: list[dict[str, Any]] | None = None,
             count: int | None = None) -> dict[str, Any]:
    return {"cell_type": "code", "collapsed": False, "input": source.splitlines(True),
            "language": "python", "metadata": {}, "outputs": outputs or [],
            "prompt_number": count}


V3 = {
    "metadata": {"name": "", "kernelspec": {"name": "python3", "display_name": "Python 3",
                                            "language": "python"}},
    "nbformat": 3, "nbformat_minor": 0,
    "worksheets": [{"metadata": {}, "cells": [
        {"cell_type": "heading", "level": 1, "metadata": {}, "source": ["An old notebook"]},
        _v3_cell("x = 6\ny = 7", count=1),
        {"cell_type": "markdown", "metadata": {}, "source": ["some *text*"]},
        _v3_cell("print(x * y)", [{"output_type": "stream", "stream": "stdout",
                                   "text": ["old\n"]}], 2),
    ]}],
}


def test_nbformat3_notebook_runs_converted_in_memory(tmp_path: Path, run_cli,
                                                     no_kernel_left) -> None:
    this_tests(load_notebook, "nbtest.notebook.notebook_from_dict", run_notebook,
               "nbtest.cli.cmd_execute")
    path = tmp_path / "old.ipynb"
    path.write_text(json.dumps(V3, indent=1))
    before = path.read_bytes()
    nb = load_notebook(path)
    assert nb.nbformat == 4
    assert [c.cell_type for c in nb.cells] == ["markdown", "code", "markdown", "code"]
    assert nb.cells[1].source == "x = 6\ny = 7"
    result = run_notebook(path)
    assert result.passed, failure_text(result)
    assert [c.number for c in result.cells] == [2, 4]
    assert result.cells[1].output_tail == "42"
    out = tmp_path / "out.ipynb"
    proc = run_cli("execute", path, "-o", out, "--no-progress")
    assert proc.returncode == 0, proc.stderr
    written = read_notebook(out)
    assert written.nbformat == 4 and cell_text(written.cells[3]) == "42\n"
    assert path.read_bytes() == before  # the input is never written
    no_kernel_left()


@pytest.mark.parametrize(("data", "says"), [
    pytest.param({"nbformat": 3, "nbformat_minor": 0, "worksheets": "garbage"},
                 "uses nbformat 3, which nbformat cannot convert", id="broken-v3"),
    pytest.param({"nbformat": 2, "nbformat_minor": 0, "metadata": {}},
                 "uses nbformat 2, which nbformat cannot convert", id="broken-v2"),
    pytest.param({"nbformat": 1}, "uses nbformat 1, which nbformat cannot convert",
                 id="broken-v1"),
    pytest.param({"nbformat": 5, "nbformat_minor": 0, "cells": []},
                 "uses nbformat 5, newer than", id="v5"),
])
def test_unconvertible_notebooks_are_clear_load_errors(tmp_path: Path, run_cli,
                                                       data: dict[str, Any], says: str) -> None:
    this_tests(load_notebook, "nbtest.notebook.notebook_from_dict", "nbtest.cli.cmd_execute")
    path = tmp_path / "bad.ipynb"
    path.write_text(json.dumps(data))
    with pytest.raises(NotebookLoadError) as info:
        load_notebook(path)
    message = info.value.message
    assert message.startswith(f"{path}: {says}")
    assert "Jupyter" in message or "pip install" in message  # what to do
    proc = run_cli("execute", path, "--no-progress")
    assert proc.returncode == 2 and says in proc.stderr and "Traceback" not in proc.stderr


# --- 7. nbval's conftest pattern `collector.skip_compare += (...)` ----------------------------

NBVAL_CONFTEST = """
def pytest_collectstart(collector):
    if collector.fspath and collector.fspath.ext == '.ipynb':
        collector.skip_compare += 'text/html', 'application/javascript', 'stderr',
"""


def test_nbval_skip_compare_in_a_conftest_is_honoured(pytester: pytest.Pytester,
                                                      notebook_maker) -> None:
    this_tests("nbtest.plugin.collect.NotebookFile.collect", "nbtest.outputs.compare.compare_outputs")
    pytester.makeconftest(NBVAL_CONFTEST)
    stderr = {"output_type": "stream", "name": "stderr", "text": "old warning\n"}
    notebook_maker("warns.ipynb", [stored(
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


# --- 8. every message names its own face's spelling -----------------------------------------

def test_kernel_errors_name_the_pytest_flag_under_pytest(pytester: pytest.Pytester,
                                                         notebook_maker, run_cli) -> None:
    this_tests("nbtest.config.in_pytest_spelling")
    notebook_maker("odd.ipynb", ["x = 1"], kernel="no-such-kernel-here")
    result = run_pytest(pytester, "--nbtest", "-p", "no:cacheprovider")
    text = output(result)
    assert "--nbtest-kernel NAME" in text and "--kernel NAME" not in text.replace(
        "--nbtest-kernel NAME", "")
    cli = run_cli("execute", pytester.path / "odd.ipynb", "--no-progress")
    assert cli.returncode == 2 and "--kernel NAME" in cli.stderr
    assert "--nbtest-kernel" not in cli.stderr


def test_in_pytest_spelling_replaces_whole_flags_only() -> None:
    this_tests("nbtest.config.in_pytest_spelling")
    from nbtest.config import in_pytest_spelling

    assert in_pytest_spelling("use --kernel NAME or --timeout 5 (--startup-timeout)") == \
        "use --nbtest-kernel NAME or --nbtest-timeout 5 (--nbtest-startup-timeout)"
    assert in_pytest_spelling("--kernel-name stays, --cwd has no pytest flag") == \
        "--kernel-name stays, --cwd has no pytest flag"


# --- 9. pytest.skip() in a cell skips the notebook -------------------------------------------

SKIPPING = ["x = 1", "import pytest\nif x == 1:\n    pytest.skip('needs the full data set')",
            "raise RuntimeError('never runs')"]


@pytest.mark.parametrize("mode", [[], ["--nbtest-cells"]], ids=["notebook", "cells"])
def test_pytest_skip_in_a_cell_skips_with_its_reason(pytester: pytest.Pytester, notebook_maker,
                                                     mode: list[str]) -> None:
    this_tests("nbtest.execute.NotebookSession.run_cell", "nbtest.plugin.items.NotebookItem.runtest")
    notebook_maker("partial.ipynb", SKIPPING)
    result = run_pytest(pytester, "--nbtest", *mode, "-rs", "-p", "no:cacheprovider")
    text = output(result)
    assert result.ret == pytest.ExitCode.OK, text
    assert "needs the full data set" in text and "never runs" not in text
    if mode:
        result.assert_outcomes(passed=1, skipped=2)
    else:
        result.assert_outcomes(skipped=1)


def test_pytest_skip_in_a_cell_under_execute(make_notebook, run_cli) -> None:
    this_tests("nbtest.execute.NotebookSession.finish")
    path = make_notebook("partial.ipynb", SKIPPING)
    result = run_notebook(path)
    assert result.status == "skipped" and "needs the full data set (cell 2)" == result.reason
    assert [c.status for c in result.cells] == [PASSED, SKIPPED, NOT_RUN]
    cli = run_cli("execute", path, "--no-progress")
    assert cli.returncode == 0 and "skipped" in cli.stderr and "needs the full data" in cli.stderr


# --- switching obstacles: nbmake's cell metadata, nbval's every mismatch, pytest-notebook, ----
# --- papermill's --prepare-only, allow_errors and a notebook's own cwd under pytest ----------

def test_nbmake_mock_and_post_cell_execute(make_notebook, no_kernel_left) -> None:
    this_tests("nbtest.execute.NotebookSession.run_cell")
    path = make_notebook("nbmake.ipynb", [
        {"source": "epochs = 10\nconfig = 'prod.json'",
         "metadata": {"nbmake": {"mock": {"epochs": 2, "config": "/test/config.json"}}}},
        "assert (epochs, config) == (2, '/test/config.json')",
        {"source": "x = 1\ny = 2\nz = 0", "metadata": {"nbmake": {"post_cell_execute": [
            "y = 3", "z = x + y"]}}},
        "assert z == 4",
    ])
    assert run_notebook(path).passed
    boom = make_notebook("boom.ipynb", [
        {"source": "x = 1", "metadata": {"nbmake": {"post_cell_execute": [
            "raise Exception('boom!')"]}}}, "y = 2"])
    result = run_notebook(boom)
    assert result.status == "failed" and result.failed_cell.number == 1
    assert "boom!" in failure_text(result)
    no_kernel_left()


def test_every_mismatching_cell_is_reported(make_notebook) -> None:
    this_tests("nbtest.report.failure_text")
    path = make_notebook("many.ipynb", [
        stored("print(1)", [stream("one\n")], 1),
        stored("print(2)", [stream("2\n")], 2),
        stored("print(3)", [stream("three\n")], 3),
    ])
    result = run_notebook(path, NbTestConfig.of(check_outputs=True), [OutputCheck()])
    assert [c.status for c in result.cells] == [FAILED, PASSED, FAILED]
    text = failure_text(result)
    assert text.startswith("cell 1: output differs (stdout)") and "cell 3:" in text


def test_pytest_notebook_nbreg_skip(pytester: pytest.Pytester, notebook_maker) -> None:
    this_tests("nbtest.notebook.notebook_settings")
    notebook_maker("reg.ipynb", ["raise RuntimeError('not run')"],
                   metadata={"nbreg": {"skip": True, "skip_reason": "slow on CI"}})
    result = run_pytest(pytester, "--nbtest", "-rs", "-p", "no:cacheprovider")
    result.assert_outcomes(skipped=1)
    assert "slow on CI" in output(result)


def test_allow_errors_and_a_notebooks_own_cwd_under_pytest(pytester: pytest.Pytester,
                                                           notebook_maker) -> None:
    this_tests("nbtest.execute.plan_notebook")
    (pytester.path / "data").mkdir()
    (pytester.path / "data" / "values.txt").write_text("42")
    notebook_maker("nbs/reads.ipynb", ["assert open('values.txt').read() == '42'"],
                   metadata={"nbtest": {"cwd": "../data"}})
    notebook_maker("nbs/errs.ipynb", ["raise ValueError('shown, allowed')", "x = 1"])
    strict = run_pytest(pytester, "--nbtest", "-p", "no:cacheprovider")
    strict.assert_outcomes(passed=1, failed=1)
    allowed = run_pytest(pytester, "--nbtest", "--nbtest-allow-errors", "-p", "no:cacheprovider")
    allowed.assert_outcomes(passed=2)


def test_execute_prepare_only_writes_the_parameterised_notebook(make_notebook, run_cli,
                                                                tmp_path: Path) -> None:
    this_tests("nbtest.cli.cmd_execute")
    path = make_notebook("params.ipynb", [("code", "n = 1", ["parameters"]),
                                          "raise RuntimeError('not run')"])
    out = tmp_path / "prepared.ipynb"
    cli = run_cli("execute", path, "-p", "n", "3", "--prepare-only", "-o", out)
    assert cli.returncode == 0, cli.stderr
    cells = read_notebook(out).cells
    assert [c.source for c in cells][1].strip() == "# Parameters\nn = 3"
    assert all(not c.get("outputs") for c in cells if c.cell_type == "code")


def test_tagged_cells_are_skipped_tests_per_cell(pytester: pytest.Pytester,
                                                 notebook_maker) -> None:
    """With --nbtest-cells a cell that a tag or marker skips is reported skipped, as nbval."""
    this_tests("nbtest.plugin.items.CellItem.runtest")
    notebook_maker("tags.ipynb", ["x = 1", ("code", "raise RuntimeError('no')", ["nbval-skip"]),
                                  "# NBVAL_SKIP\nraise RuntimeError('no')", "assert x == 1"])
    result = run_pytest(pytester, "--nbtest", "--nbtest-cells", "-rs", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, skipped=2)
    assert output(result).count("skipped by its tag or marker") == 2
