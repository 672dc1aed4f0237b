"""The --nbtest-* options in real sessions: parameters, timeouts and their precedence, saved
failing notebooks, the seed, kernel choice, and usage errors for bad values.
"""

from __future__ import annotations

import json

import pytest
from helpers.pytest_sessions import collected_ids, notebook_maker, output, run_pytest

from nbtest import this_tests

pytest_plugins = ["pytester"]

SLEEPER = ["import time\ntime.sleep(60)"]


@pytest.fixture
def nb(pytester: pytest.Pytester, make_notebook):  # type: ignore[no-untyped-def]
    """`nb(name, cells=..., **metadata)`: a notebook in the pytester folder."""
    return notebook_maker(pytester, make_notebook)


def test_param_reaches_the_parameters_cell(pytester: pytest.Pytester, nb) -> None:
    this_tests("nbtest.params.parse_assignment", "nbtest.params.inject_parameters",
               "nbtest.plugin.items.NotebookItem.runtest", "nbtest.plugin.items.CellItem.runtest")
    nb("params.ipynb", [("markdown", "# n"), ("code", "n = 1\nname = 'x'", ["parameters"]),
                        "assert n == 3, f'n is {n}'\nassert name == 'penguins'"])
    result = run_pytest(pytester, "--nbtest", "-ra", "--nbtest-param", "n=3",
                        "--nbtest-param", "name=penguins")
    result.assert_outcomes(passed=1)

    cells = run_pytest(pytester, "--nbtest", "--nbtest-cells", "-rA", "--nbtest-param", "n=3",
                       "--nbtest-param", "name=penguins")
    cells.assert_outcomes(passed=2)


@pytest.mark.parametrize("bad", ["3n=1", "n", "=1", "my-name=2"])
def test_bad_param_is_a_usage_error(pytester: pytest.Pytester, nb, bad: str) -> None:
    this_tests("nbtest.params.parse_assignment", "nbtest.plugin.pytest_configure")
    nb("params.ipynb")
    result = pytester.runpytest("--nbtest", "--nbtest-param", bad)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"bad parameter {bad!r}: write NAME=VALUE, NAME a Python identifier" \
        in output(result)


def test_timeout_precedence(pytester: pytest.Pytester, nb, no_kernel_left) -> None:
    """command line > metadata.nbtest.timeout > ini `nbtest_timeout` or [tool.nbtest] timeout.

    Every notebook sleeps far past every limit, so the limit in its failure line tells
    which layer won.
    """
    this_tests("nbtest.plugin.pytest_configure", "nbtest.config.NbTestConfig",
               "nbtest.config.project_layer", "nbtest.plugin.items.NotebookItem.runtest")
    nb("plain.ipynb", SLEEPER)
    nb("meta.ipynb", SLEEPER, nbtest={"timeout": 1})

    pytester.makefile(".ini", pytest="[pytest]\nnbtest_timeout = 0.5\n")
    ini = run_pytest(pytester, "--nbtest", "-ra")
    ini.assert_outcomes(failed=2)
    ini.stdout.fnmatch_lines(["FAILED meta.ipynb - cell 1: timed out after * s (limit 1 s)",
                              "FAILED plain.ipynb - cell 1: timed out after * s (limit 0.5 s)"],
                             consecutive=False)

    cli = run_pytest(pytester, "--nbtest", "-ra", "--nbtest-timeout", "2")
    cli.assert_outcomes(failed=2)
    cli.stdout.fnmatch_lines(["FAILED meta.ipynb - cell 1: timed out after * s (limit 2 s)",
                              "FAILED plain.ipynb - cell 1: timed out after * s (limit 2 s)"],
                             consecutive=False)

    (pytester.path / "pytest.ini").unlink()
    pytester.makepyprojecttoml("[tool.nbtest]\ntimeout = 0.75\n")
    project = run_pytest(pytester, "--nbtest", "-ra")
    project.assert_outcomes(failed=2)
    project.stdout.fnmatch_lines(
        ["FAILED meta.ipynb - cell 1: timed out after * s (limit 1 s)",
         "FAILED plain.ipynb - cell 1: timed out after * s (limit 0.75 s)"],
        consecutive=False)
    no_kernel_left()


def test_notebook_timeout(pytester: pytest.Pytester, nb) -> None:
    """The whole-notebook limit (which counts the kernel's start too) stops the sleeping
    cell with what was left of it."""
    this_tests("nbtest.plugin.items.NotebookItem.runtest",
               "nbtest.execute.NotebookSession.run_cell")
    nb("steps.ipynb", ["import time", "time.sleep(60)", "print('never')"])
    result = run_pytest(pytester, "--nbtest", "-ra", "--nbtest-notebook-timeout", "3")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        ["cell 2: timed out after * s (limit * s, notebook limit 3 s)"])


def test_save_failed_writes_the_executed_copy(pytester: pytest.Pytester, nb) -> None:
    this_tests("nbtest.plugin.items.NotebookItem.save_failed",
               "nbtest.plugin.items.NotebookItem.runtest", "nbtest.plugin.items.CellItem.runtest")
    nb("nbs/good.ipynb")
    nb("nbs/sums.ipynb", [("markdown", "# sums"), "total = 41\nprint('total', total)",
                          "assert total == 42, 'sum is 42'", "print('never')"])
    result = run_pytest(pytester, "--nbtest", "--nbtest-save-failed", "saved", "nbs")
    result.assert_outcomes(passed=1, failed=1)
    saved = sorted(p.name for p in (pytester.path / "saved").iterdir())
    assert saved == ["nbs_sums.ipynb"]
    cells = json.loads((pytester.path / "saved" / "nbs_sums.ipynb").read_text())["cells"]
    assert "".join(cells[1]["outputs"][0]["text"]) == "total 41\n"
    error = cells[2]["outputs"][-1]
    assert (error["output_type"], error["ename"], error["evalue"]) == \
        ("error", "AssertionError", "sum is 42")
    assert cells[3]["outputs"] == []  # never ran

    # The same with per-cell items, into a folder named in the ini.
    pytester.makeini("[pytest]\nnbtest_save_failed = from_ini\n")
    cells_run = run_pytest(pytester, "--nbtest", "--nbtest-cells", "nbs/sums.ipynb")
    cells_run.assert_outcomes(passed=1, failed=1, skipped=1)
    assert sorted(p.name for p in (pytester.path / "from_ini").iterdir()) == \
        ["nbs_sums.ipynb"]


def test_saved_copies_are_not_collected_by_the_next_run(pytester: pytest.Pytester,
                                                        nb) -> None:
    this_tests("nbtest.plugin.pytest_ignore_collect",
               "nbtest.plugin.items.NotebookItem.save_failed")
    nb("sums.ipynb", ["assert 41 == 42, 'sum is 42'"])
    pytester.makeini("[pytest]\nnbtest = true\nnbtest_save_failed = failed_notebooks\n")
    run_pytest(pytester).assert_outcomes(failed=1)
    assert (pytester.path / "failed_notebooks").is_dir()
    assert collected_ids(pytester.runpytest("--collect-only", "-q")) == ["sums.ipynb"]


def test_seed(pytester: pytest.Pytester, nb) -> None:
    this_tests("nbtest.plugin.items.NotebookItem.runtest", "nbtest.kernel.startup.startup_code")
    nb("seeded.ipynb", ["import random\nfirst = random.random()",
                        "assert first == random.Random(7).random(), first"])
    result = run_pytest(pytester, "--nbtest", "-ra", "--nbtest-seed", "7")
    result.assert_outcomes(passed=1)


def test_unknown_kernel_fails_the_notebook_listing_installed_ones(
        pytester: pytest.Pytester, nb) -> None:
    this_tests("nbtest.kernel.specs.kernel_spec", "nbtest.plugin.items.NotebookItem.runtest")
    nb("a.ipynb")
    nb("b.ipynb", nbtest={"kernel": "python3"})
    result = run_pytest(pytester, "--nbtest", "-ra", "--nbtest-kernel", "nosuch")
    result.assert_outcomes(failed=2)
    text = output(result)
    assert "a.ipynb: no kernel named 'nosuch' is installed (installed: " in text
    assert "python3" in text.split("is installed (installed: ")[1].split(")")[0]
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_unknown_kernel_with_cells_is_one_paragraph(pytester: pytest.Pytester, nb) -> None:
    this_tests("nbtest.kernel.specs.kernel_spec", "nbtest.plugin.items.CellItem.setup")
    nb("a.ipynb", ["x = 1", "y = 2"])
    result = pytester.runpytest("--nbtest", "--nbtest-cells", "--nbtest-kernel", "nosuch")
    text = output(result)
    assert "a.ipynb: no kernel named 'nosuch' is installed" in text
    assert "_pytest/runner.py" not in text and "Traceback" not in text
    assert result.parseoutcomes().get("passed", 0) == 0


def test_kernel_from_metadata(pytester: pytest.Pytester, nb) -> None:
    this_tests("nbtest.kernel.specs.kernel_spec", "nbtest.plugin.items.NotebookItem.runtest",
               "nbtest.plugin.collect.NotebookFile.collect")
    nb("a.ipynb", nbtest={"kernel": "nosuch-either"})
    result = run_pytest(pytester, "--nbtest", "-ra")
    result.assert_outcomes(failed=1)
    assert "no kernel named 'nosuch-either' is installed" in output(result)


@pytest.mark.parametrize(("args", "ini", "expected"), [
    (["--nbtest-timeout", "soon"], "", "bad value 'soon' for 'timeout'"),
    (["--nbtest-notebook-timeout", "x"], "", "bad value 'x' for 'notebook_timeout'"),
    (["--nbtest-seed", "1.5"], "", "bad value '1.5' for 'seed'"),
    ([], "[pytest]\nnbtest_timeout = later\n", "bad value 'later' for 'timeout'"),
    ([], "[pytest]\nnbtest_cells = maybe\n", "bad value 'maybe' for 'cells'"),
], ids=["timeout", "notebook-timeout", "seed", "ini-timeout", "ini-cells"])
def test_bad_option_value_is_a_usage_error(pytester: pytest.Pytester, nb, args: list[str],
                                           ini: str, expected: str) -> None:
    this_tests("nbtest.plugin.pytest_configure", "nbtest.config.parse_layer")
    nb("a.ipynb")
    if ini:
        pytester.makeini(ini)
    result = pytester.runpytest("--nbtest", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert expected in output(result)


def test_bad_pyproject_table_is_a_usage_error(pytester: pytest.Pytester, nb) -> None:
    this_tests("nbtest.plugin.pytest_configure", "nbtest.config.project_layer")
    nb("a.ipynb")
    pytester.makepyprojecttoml("[tool.nbtest]\ntimeuot = 5\n")
    result = pytester.runpytest("--nbtest")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "unknown nbtest option 'timeuot'" in output(result)
    assert "pyproject.toml" in output(result)
