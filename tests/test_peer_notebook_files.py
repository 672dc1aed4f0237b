"""Switching from nbmake, nbval and papermill: the notebook files. The executed copy holds only
this run's outputs (no stale ones), and nbformat 3 notebooks are converted in memory while older
or newer ones are clear load errors. Generated notebooks, real kernels.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers.notebooks import cell_text, read_notebook, stored, stream
from helpers.pytest_sessions import output, run_pytest

from nbtest import run_notebook, this_tests
from nbtest.errors import NotebookLoadError
from nbtest.failure_text import failure_text
from nbtest.notebook import load_notebook

pytest_plugins = ["pytester"]


# --- no stale outputs in the executed copy -------------------------------------------------

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
        pytester: pytest.Pytester, pytester_notebook: Callable[..., Path]) -> None:
    this_tests("nbtest.plugin.items.NotebookItem.save_failed")
    pytester_notebook("stale.ipynb", STALE)
    result = run_pytest(pytester, "--nbtest", "--nbtest-save-failed", "saved", "-p",
                        "no:randomly", "-p", "no:cacheprovider")
    assert result.ret == 1, output(result)
    saved = list((pytester.path / "saved").glob("*.ipynb"))
    assert len(saved) == 1, output(result)
    assert _code_cells(read_notebook(saved[0])) == EXPECTED_COPY


# --- nbformat 3 notebooks are converted in memory (10) -------------------------------------

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
