"""Collection by the pytest plugin: when notebooks are collected, which are not, node ids,
collection errors, marker registration and selection with -k / -m.

Most of these sessions are `--collect-only` and start no kernel, so they run in-process.
"""

from __future__ import annotations

import pytest
from helpers.pytest_sessions import collected_ids, notebook_maker, output, run_pytest

from nbtest import this_tests

pytest_plugins = ["pytester"]


@pytest.fixture
def nb(pytester: pytest.Pytester, make_notebook):  # type: ignore[no-untyped-def]
    """`nb(name, cells=..., **metadata)`: a notebook in the pytester folder."""
    return notebook_maker(pytester, make_notebook)


def test_collected_only_with_flag_or_ini(pytester: pytest.Pytester, nb) -> None:
    this_tests("nbtest.plugin.pytest_collect_file", "nbtest.plugin.state.nbtest_enabled")
    nb("a.ipynb")
    pytester.makepyfile(test_plain="def test_plain():\n    pass\n")

    without = pytester.runpytest("--collect-only", "-q")
    assert collected_ids(without) == ["test_plain.py::test_plain"]

    with_flag = pytester.runpytest("--nbtest", "--collect-only", "-q")
    assert collected_ids(with_flag) == ["a.ipynb", "test_plain.py::test_plain"]

    pytester.makeini("[pytest]\nnbtest = true\n")
    with_ini = pytester.runpytest("--collect-only", "-q")
    assert collected_ids(with_ini) == ["a.ipynb", "test_plain.py::test_plain"]


def test_collected_with_pyproject_ini_options(pytester: pytest.Pytester, nb) -> None:
    this_tests("nbtest.plugin.pytest_collect_file", "nbtest.plugin.state.nbtest_enabled")
    nb("a.ipynb")
    pytester.makepyprojecttoml("[tool.pytest.ini_options]\nnbtest = true\n")
    assert collected_ids(pytester.runpytest("--collect-only", "-q")) == ["a.ipynb"]
    pytester.makepyprojecttoml("[tool.pytest.ini_options]\nnbtest = false\n")
    assert collected_ids(pytester.runpytest("--collect-only", "-q")) == []


def test_checkpoints_build_and_executed_copies_never_collected(pytester: pytest.Pytester,
                                                               nb) -> None:
    this_tests("nbtest.plugin.pytest_collect_file", "nbtest.plugin.pytest_ignore_collect")
    nb("keep.ipynb")
    nb("sub/keep.ipynb")
    nb(".ipynb_checkpoints/keep-checkpoint.ipynb")
    nb("sub/.ipynb_checkpoints/keep-checkpoint.ipynb")
    nb("_build/page.ipynb")
    nb("sub/_build/jupyter_execute/page.ipynb")
    nb("keep.executed.ipynb")
    nb("sub/keep.executed.ipynb")
    result = pytester.runpytest("--nbtest", "--collect-only", "-q")
    assert collected_ids(result) == ["keep.ipynb", "sub/keep.ipynb"]


def test_node_id_is_the_path(pytester: pytest.Pytester, nb) -> None:
    """One item per notebook whose node id is its path, not `path::name`."""
    this_tests("nbtest.plugin.pytest_collect_file", "nbtest.plugin.collect.NotebookFile.collect")
    nb("docs/callback.ipynb", [("markdown", "# title"), "x = 1", ("markdown", "text"),
                               "assert x == 1", ""])
    result = pytester.runpytest("--nbtest", "--collect-only", "-q")
    assert collected_ids(result) == ["docs/callback.ipynb"]


def test_cell_node_ids_count_every_cell(pytester: pytest.Pytester, nb) -> None:
    """With --nbtest-cells one item per code cell, numbered counting markdown cells too."""
    this_tests("nbtest.plugin.collect.NotebookFile.collect", "nbtest.plugin.items.CellItem")
    nb("docs/callback.ipynb", [("markdown", "# title"), "x = 1", ("markdown", "text"),
                               "assert x == 1", ("raw", "raw"), "y = 2"])
    result = pytester.runpytest("--nbtest", "--nbtest-cells", "--collect-only", "-q")
    assert collected_ids(result) == ["docs/callback.ipynb::cell[2]",
                                     "docs/callback.ipynb::cell[4]",
                                     "docs/callback.ipynb::cell[6]"]


def test_unreadable_notebook_is_an_error_for_that_file_alone(pytester: pytest.Pytester,
                                                            nb) -> None:
    """pytest's default for a collection error would stop the whole session (exit 2, nothing
    run); an unreadable notebook is instead an error of that file alone, with the loader's
    message naming the file and the place: the other notebooks run and the exit code is 1."""
    this_tests("nbtest.plugin.collect.NotebookFile.collect",
               "nbtest.plugin.collect.UnreadableNotebook.runtest")
    nb("good.ipynb")
    (pytester.path / "conflict.ipynb").write_text('{\n  "cells": [\n<<<<<<< HEAD\n')
    (pytester.path / "notanotebook.ipynb").write_text('{"hello": 1}\n')
    result = run_pytest(pytester, "--nbtest", "-ra")
    result.assert_outcomes(passed=1, errors=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    text = output(result)
    assert ("conflict.ipynb: is not valid JSON: Expecting value at line 3, column 1."
            in text)
    assert "notanotebook.ipynb: is JSON but not a Jupyter notebook" in text
    result.stdout.fnmatch_lines(["ERROR conflict.ipynb*", "ERROR notanotebook.ipynb*"],
                                consecutive=False)


def test_unreadable_notebook_error_is_one_paragraph(pytester: pytest.Pytester) -> None:
    this_tests("nbtest.plugin.collect.UnreadableNotebook.runtest", "nbtest.notebook.load_notebook")
    (pytester.path / "conflict.ipynb").write_text('{\n  "cells": [\n<<<<<<< HEAD\n')
    result = pytester.runpytest("--nbtest", "-ra")
    result.assert_outcomes(errors=1)
    text = output(result)
    assert "conflict.ipynb: is not valid JSON: Expecting value at line 3, column 1." in text
    assert "Traceback" not in text and "nbtest/notebook.py" not in text
    assert "_pytest/runner.py" not in text


def test_markers_registered_under_strict_markers(pytester: pytest.Pytester, nb) -> None:
    this_tests("nbtest.plugin.pytest_configure", "nbtest.plugin.collect.NotebookFile.collect")
    nb("marked.ipynb", nbtest={"markers": ["slow", "integration", "cuda", "cpp"]})
    pytester.makepyfile(test_marked="""
        import pytest

        @pytest.mark.slow
        @pytest.mark.integration
        @pytest.mark.cuda
        @pytest.mark.cpp
        def test_marked():
            pass
        """)
    result = pytester.runpytest("--nbtest", "--strict-markers", "--collect-only", "-q",
                                "-W", "error::pytest.PytestUnknownMarkWarning")
    assert result.ret == pytest.ExitCode.OK
    assert collected_ids(result) == ["marked.ipynb", "test_marked.py::test_marked"]
    assert "warning" not in output(result).lower()
    markers = pytester.runpytest("--nbtest", "--markers").stdout.str()
    for name in ("slow", "integration", "cuda", "cpp"):
        assert f"@pytest.mark.{name}:" in markers


def test_unknown_notebook_marker_fails_under_strict_markers(pytester: pytest.Pytester,
                                                           nb) -> None:
    this_tests("nbtest.plugin.collect.NotebookFile.collect")
    nb("typo.ipynb", nbtest={"markers": ["slwo"]})
    result = pytester.runpytest("--nbtest", "--strict-markers", "--collect-only", "-q")
    assert "'slwo' not found in `markers` configuration option" in output(result)
    assert result.ret != pytest.ExitCode.OK


def test_selection_with_m_and_k(pytester: pytest.Pytester, nb) -> None:
    this_tests("nbtest.plugin.collect.NotebookFile.collect",
               "nbtest.plugin.pytest_collection_modifyitems")
    nb("train_fast.ipynb")
    nb("train_slow.ipynb", nbtest={"markers": ["slow"]})
    nb("data.ipynb", nbtest={"markers": ["integration"]})

    not_slow = pytester.runpytest("--nbtest", "--collect-only", "-q", "-m", "not slow")
    assert collected_ids(not_slow) == ["data.ipynb", "train_fast.ipynb"]
    only_integration = pytester.runpytest("--nbtest", "--collect-only", "-q",
                                          "-m", "integration")
    assert collected_ids(only_integration) == ["data.ipynb"]
    by_name = pytester.runpytest("--nbtest", "--collect-only", "-q", "-k", "train")
    assert collected_ids(by_name) == ["train_fast.ipynb", "train_slow.ipynb"]
    by_name_not = pytester.runpytest("--nbtest", "--collect-only", "-q",
                                     "-k", "train and not slow")
    assert collected_ids(by_name_not) == ["train_fast.ipynb"]


def test_cell_items_carry_the_notebook_markers(pytester: pytest.Pytester, nb) -> None:
    this_tests("nbtest.plugin.collect.NotebookFile.collect", "nbtest.plugin.items.CellItem")
    nb("slow.ipynb", ["a = 1", "b = 2"], nbtest={"markers": ["slow"]})
    nb("fast.ipynb", ["a = 1"])
    result = pytester.runpytest("--nbtest", "--nbtest-cells", "--collect-only", "-q",
                                "-m", "not slow")
    assert collected_ids(result) == ["fast.ipynb::cell[1]"]


# A conftest counting every parse of a notebook's metadata into nbtest options, by file.
COUNT_PARSES = """
import nbtest.notebook

parse = nbtest.notebook.metadata_settings


def counted(metadata, path):
    with open("parses.txt", "a") as fh:
        fh.write(f"{path}\\n")
    return parse(metadata, path)


nbtest.notebook.metadata_settings = counted
"""


@pytest.mark.parametrize("cells", [False, True], ids=["notebook", "cells"])
def test_a_notebook_is_resolved_once(pytester: pytest.Pytester, nb, no_kernel_left,
                                     cells: bool) -> None:
    """Collection builds each notebook's plan (its metadata parsed once); its items, the
    affected deselection, the preflight and the run all use that plan."""
    this_tests("nbtest.plugin.collect.NotebookFile.collect", "nbtest.plan.plan_notebook",
               "nbtest.plugin.state.is_notebook_item")
    pytester.makeconftest(COUNT_PARSES)
    nb("a.ipynb", ["x = 1", "assert x == 1"], nbtest={"timeout": 30})
    nb("b.ipynb", ["y = 2"], nbtest={"gpu_min_free": 0})
    args = ["--nbtest", "--nbtest-affected", *(["--nbtest-cells"] if cells else [])]
    result = run_pytest(pytester, *args)
    result.assert_outcomes(passed=3 if cells else 2)
    parses = (pytester.path / "parses.txt").read_text().split()
    assert sorted(parses) == ["a.ipynb", "b.ipynb"]
    no_kernel_left()
