"""nbdev projects run as nbdev_test 3.3 runs them.

Each test builds the smallest nbdev project that shows one of nbdev's rules (read from
nbdev/test.py, nbdev/doclinks.py's nbglob and fastcore/nbio.py): which notebooks it tests,
which cells it runs, and what the kernel sees.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers.notebooks import write_notebook
from helpers.pytest_sessions import collected_ids, output, run_pytest

from nbtest import nbdev, this_tests

pytest_plugins = ["pytester"]

SETTINGS = "[DEFAULT]\nrepo = mylib\nlib_name = mylib\nlib_path = mylib\nnbs_path = nbs\n"
FAIL = "raise RuntimeError('must not run')"
RUN = ("-p", "no:cacheprovider", "-p", "no:randomly")


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    """An nbdev project (settings.ini) with nbtest on, and no notebook yet."""
    pytester.makefile(".ini", settings=SETTINGS)
    pytester.makeini("[pytest]\nnbtest = true\n")
    return pytester


def test_a_cell_calling_nbdev_export_anywhere_is_not_run(project: pytest.Pytester,
                                                         no_kernel_left) -> None:
    """`import nbdev; nbdev.nbdev_export()` on one line is left out, as nbdev's
    `'nbdev_export(' in cell.source` leaves it out."""
    this_tests("nbtest.nbdev.calls_export", "nbtest.execute.NotebookSession.run_cell")
    write_notebook(project.path / "nbs" / "00_core.ipynb", [
        "x = 1", "import os; nbdev_export()", "y = 2; notebook2script()", "assert x == 1"])
    result = run_pytest(project, *RUN)
    text = output(result)
    assert result.ret == 0, text
    result.assert_outcomes(passed=1)
    assert "NameError" not in text
    no_kernel_left()


def test_folders_starting_with_underscore_or_dot_are_left_out(project: pytest.Pytester) -> None:
    """nbglob's skip_folder_re `^[_.]`: any folder between nbs/ and the notebook."""
    this_tests("nbtest.nbdev.left_out", "nbtest.plugin.pytest_collect_file")
    nbs = project.path / "nbs"
    write_notebook(nbs / "00_core.ipynb", ["x = 1"])
    write_notebook(nbs / "_old" / "stale.ipynb", [FAIL])
    write_notebook(nbs / "tutorials" / "_drafts" / "deep" / "draft.ipynb", [FAIL])
    write_notebook(nbs / "tutorials" / "intro.ipynb", ["x = 1"])
    result = run_pytest(project, "--collect-only", "-q", *RUN)
    assert collected_ids(result) == ["nbs/00_core.ipynb", "nbs/tutorials/intro.ipynb"]
    verbose = output(run_pytest(project, "--collect-only", "-v", *RUN))
    assert "left out nbs/_old/stale.ipynb: it is in _old/, whose name starts with _" in verbose
    assert "left out nbs/tutorials/_drafts/deep/draft.ipynb: it is in _drafts/" in verbose
    root = project.path
    assert nbdev.left_out(nbs / ".hidden" / "x.ipynb", root) == \
        "it is in .hidden/, whose name starts with ."
    assert nbdev.left_out(nbs / ".x.ipynb", root) == "its name starts with ."
    # The folders above the notebooks' folder do not count: a project inside `_work/` is tested.
    assert nbdev.left_out(root / "_work" / "x.ipynb", root / "_work") is None


def test_front_matter_eval_false_is_every_cells_default(project: pytest.Pytester,
                                                        no_kernel_left) -> None:
    """A raw first cell `---` / `eval: false` / `---`: only `#| eval: true` cells run."""
    this_tests("nbtest.nbdev.default_eval", "nbtest.nbdev.cell_evals", "nbtest.nbdev.front_matter",
               "nbtest.execute.NotebookSession._excluded")
    write_notebook(project.path / "nbs" / "00_core.ipynb", [
        ("raw", "---\ntitle: core\neval: false\n---"), FAIL,
        "#| eval: true\nopen('ran.txt', 'w').write('yes')", "#|eval\nassert True",
        "#| eval: false\n" + FAIL])
    result = run_pytest(project, *RUN)
    text = output(result)
    assert result.ret == 0, text
    result.assert_outcomes(passed=1)
    assert (project.path / "nbs" / "ran.txt").read_text() == "yes"  # its own eval: true won
    no_kernel_left()


def test_notebooks_whose_kernel_is_not_python_are_left_out(project: pytest.Pytester) -> None:
    """nbdev_test passes a notebook whose kernelspec's language is not python, unrun."""
    this_tests("nbtest.nbdev.not_run", "nbtest.plugin.collect.NotebookFile.collect")
    nbs = project.path / "nbs"
    write_notebook(nbs / "00_core.ipynb", ["x = 1"])
    write_notebook(nbs / "01_r.ipynb", ["x <- 1"], kernel=None, metadata={
        "kernelspec": {"name": "ir", "display_name": "R", "language": "R"}})
    result = run_pytest(project, "--collect-only", "-v", *RUN)
    text = output(result)
    assert "01_r.ipynb>" not in text and "no kernel named" not in text, text
    assert ("left out nbs/01_r.ipynb: its kernel's language is R, not python: "
            "nbdev_test does not run it") in text


def test_the_kernel_has_in_test_and_the_project_folder_on_sys_path(
        pytester: pytest.Pytester, no_kernel_left) -> None:
    """nbdev_test sets IN_TEST=1 and puts the project's folder first on sys.path, so the
    library imports uninstalled from a notebook in nbs/; other projects get neither. (The
    projects are subfolders: pytester puts its own folder on the session's PYTHONPATH.)"""
    this_tests("nbtest.nbdev.kernel_setup", "nbtest.kernel.notebook_kernel.NotebookKernel.launch",
               "nbtest.kernel.startup.startup_code")
    for name, settings in (("proj", SETTINGS), ("plain", None)):
        folder = pytester.path / name
        (folder / "mylib").mkdir(parents=True)
        (folder / "mylib" / "__init__.py").write_text("")
        (folder / "mylib" / "core.py").write_text("def double(v):\n    return 2 * v\n")
        (folder / "pytest.ini").write_text("[pytest]\nnbtest = true\n")
        if settings:
            (folder / "settings.ini").write_text(settings)
    write_notebook(pytester.path / "proj" / "nbs" / "00_core.ipynb", [
        "import os\nassert os.environ.get('IN_TEST') == '1', os.environ.get('IN_TEST')",
        "import sys\nfrom mylib.core import double\nassert double(2) == 4"])
    result = run_pytest(pytester, "--rootdir", "proj", "proj", *RUN)
    text = output(result)
    assert result.ret == 0, text
    result.assert_outcomes(passed=1)
    write_notebook(pytester.path / "plain" / "nbs" / "check.ipynb", [
        "import os, sys\nassert 'IN_TEST' not in os.environ",
        "try:\n    import mylib\nexcept ImportError:\n    pass\nelse:\n"
        "    raise AssertionError(sys.path)"])
    result = run_pytest(pytester, "--rootdir", "plain", "plain", *RUN)
    assert result.ret == 0, output(result)
    no_kernel_left()


def test_notest_leaves_out_its_own_folders_notebooks_only(project: pytest.Pytester) -> None:
    """nbdev 3.3's _keep_file looks for `.notest` beside the notebook, not above it."""
    this_tests("nbtest.nbdev.left_out")
    nbs = project.path / "nbs"
    write_notebook(nbs / "scratch" / "draft.ipynb", [FAIL])
    (nbs / "scratch" / ".notest").write_text("")
    write_notebook(nbs / "scratch" / "kept" / "sub.ipynb", ["x = 1"])
    result = run_pytest(project, "--collect-only", "-q", *RUN)
    assert collected_ids(result) == ["nbs/scratch/kept/sub.ipynb"]


def test_tool_nbdev_tables_default_to_nbdev_3s_notest_flag(tmp_path: Path) -> None:
    """nbdev 3's defaults: `tst_flags = "notest"` unless `[tool.nbdev]` says otherwise."""
    this_tests("nbtest.nbdev.project_settings", "nbtest.nbdev.project_folder")
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "mylib"\n\n[tool.nbdev]\n')
    assert nbdev.project_settings(tmp_path)["tst_flags"] == ["notest"]
    (tmp_path / "pyproject.toml").write_text('[tool.nbdev]\ntst_flags = "slow cuda"\n')
    assert nbdev.project_settings(tmp_path)["tst_flags"] == ["slow", "cuda"]
    assert nbdev.project_folder(tmp_path / "nbs" / "sub") == tmp_path
