"""Switching from nbmake, papermill and pytest-notebook: running a notebook as they do. An error
shown by a post-execute hook fails its cell, the kernel name `python`, pytest.skip() in a cell,
nbmake's cell metadata, pytest-notebook's nbreg skip, allow_errors and a notebook's own cwd,
papermill's --prepare-only, and messages in each face's spelling. Generated notebooks, real
kernels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers.notebooks import read_notebook
from helpers.pytest_sessions import output, run_pytest

from nbtest import NbTestConfig, run_notebook, this_tests
from nbtest.failure_text import failure_text
from nbtest.kernel.specs import kernel_spec, resolve_kernel_name
from nbtest.results import FAILED, NOT_RUN, PASSED, SKIPPED

pytest_plugins = ["pytester"]


# --- an error shown by a post-execute hook fails its cell ----------------------------------

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


# --- the kernel name `python` (3) ----------------------------------------------------------

def test_kernel_name_python_is_the_native_kernel(make_notebook, run_cli, monkeypatch,
                                                 no_kernel_left) -> None:
    this_tests(kernel_spec, resolve_kernel_name, run_notebook, "nbtest.cli.cmd_execute")
    monkeypatch.setattr("nbtest.kernel.specs._specs", {})  # a fresh lookup, not a cached python3
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


# --- every message names its own face's spelling (8) ---------------------------------------

def test_kernel_errors_name_the_pytest_flag_under_pytest(pytester: pytest.Pytester,
                                                         pytester_notebook, run_cli) -> None:
    this_tests("nbtest.config.in_pytest_spelling")
    pytester_notebook("odd.ipynb", ["x = 1"], kernel="no-such-kernel-here")
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


# --- pytest.skip() in a cell skips the notebook (9) ----------------------------------------

SKIPPING = ["x = 1", "import pytest\nif x == 1:\n    pytest.skip('needs the full data set')",
            "raise RuntimeError('never runs')"]


@pytest.mark.parametrize("mode", [[], ["--nbtest-cells"]], ids=["notebook", "cells"])
def test_pytest_skip_in_a_cell_skips_with_its_reason(pytester: pytest.Pytester, pytester_notebook,
                                                     mode: list[str]) -> None:
    this_tests("nbtest.execute.NotebookSession.run_cell",
               "nbtest.plugin.items.NotebookItem.runtest")
    pytester_notebook("partial.ipynb", SKIPPING)
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


# --- nbmake's cell metadata, pytest-notebook, papermill's --prepare-only -------------------

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


def test_pytest_notebook_nbreg_skip(pytester: pytest.Pytester, pytester_notebook) -> None:
    this_tests("nbtest.notebook.notebook_settings")
    pytester_notebook("reg.ipynb", ["raise RuntimeError('not run')"],
                   metadata={"nbreg": {"skip": True, "skip_reason": "slow on CI"}})
    result = run_pytest(pytester, "--nbtest", "-rs", "-p", "no:cacheprovider")
    result.assert_outcomes(skipped=1)
    assert "slow on CI" in output(result)


def test_allow_errors_and_a_notebooks_own_cwd_under_pytest(pytester: pytest.Pytester,
                                                           pytester_notebook) -> None:
    this_tests("nbtest.execute.plan_notebook")
    (pytester.path / "data").mkdir()
    (pytester.path / "data" / "values.txt").write_text("42")
    pytester_notebook("nbs/reads.ipynb", ["assert open('values.txt').read() == '42'"],
                   metadata={"nbtest": {"cwd": "../data"}})
    pytester_notebook("nbs/errs.ipynb", ["raise ValueError('shown, allowed')", "x = 1"])
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
