"""nbdev projects: nbtest runs what nbdev_test runs, and says why it leaves the rest.

The project holds one of each convention nbdev_test honours: settings.ini with nbdev's keys, a
`_private.ipynb` that fails, a `.notest` folder, `skip_exec` front matter, `#|eval: false` cells
that would fail, a cell calling `nbdev_export()` that would fail, and a notebook of `#|slow`
cells under `tst_flags = slow`.
"""

from __future__ import annotations

import pytest
from helpers.notebooks import write_notebook
from helpers.pytest_sessions import collected_ids, output, run_pytest

from nbtest import this_tests
from nbtest.nbdev import calls_export, front_matter, left_out, project_settings
from nbtest.notebook import directives, is_skipped

pytest_plugins = ["pytester"]

SETTINGS = """[DEFAULT]
repo = mylib
lib_name = mylib
nbs_path = nbs
tst_flags = slow
"""
FAIL = "raise RuntimeError('must not run')"
# What -v says of the notebooks nbdev_test would not run, in the project below.
LEFT_OUT = ("left out nbs/_private.ipynb: its name starts with _",
            "left out nbs/scratch/draft.ipynb: scratch/ holds a .notest file",
            "left out nbs/01_skipped.ipynb: its front matter says skip_exec: true",
            "left out nbs/02_yaml.ipynb: its front matter says skip_exec: true")


@pytest.fixture
def nbdev_project(pytester: pytest.Pytester) -> pytest.Pytester:
    """An nbdev-style project with one of each convention nbdev_test honours."""
    pytester.makefile(".ini", settings=SETTINGS)
    pytester.makeini("[pytest]\nnbtest = true\n")
    nbs = pytester.path / "nbs"
    write_notebook(nbs / "00_core.ipynb", [
        ("markdown", "# core\n> the core module"),
        "#|default_exp core\n#|hide\nx = 1",
        "#|eval: false\n" + FAIL,
        "#| eval:false\n" + FAIL,
        "#|export\ndef double(v):\n    return 2 * v",
        "assert double(x) == 2",
        "#|hide\nimport nbdev\nnbdev.nbdev_export()",
        "from nbdev import nbdev_export\nnbdev_export()"])
    write_notebook(nbs / "_private.ipynb", [FAIL])
    write_notebook(nbs / "scratch" / "draft.ipynb", [FAIL])
    (nbs / "scratch" / ".notest").write_text("")
    write_notebook(nbs / "01_skipped.ipynb", [("markdown", "# Skipped\n\n- skip_exec: true"),
                                              FAIL])
    write_notebook(nbs / "02_yaml.ipynb", [("raw", "---\ntitle: yaml\nskip_exec: true\n---"),
                                           FAIL])
    write_notebook(nbs / "03_slow.ipynb", ["#|slow\nimport time\nslow_done = True",
                                           "#|slow\nassert slow_done"])
    write_notebook(nbs / "04_mixed.ipynb", ["y = 1", f"#|slow\n{FAIL.replace('must', 'slow')}",
                                            "assert y == 1"])
    return pytester


def test_nbdev_conventions_collect_skip_and_say_why(nbdev_project: pytest.Pytester,
                                                    no_kernel_left) -> None:
    this_tests("nbtest.nbdev.left_out", "nbtest.plugin.pytest_collect_file",
               "nbtest.execute.NotebookSession.run_cell")
    listed = run_pytest(nbdev_project, "--collect-only", "-q", "-p", "no:cacheprovider")
    assert collected_ids(listed) == ["nbs/00_core.ipynb", "nbs/03_slow.ipynb",
                                     "nbs/04_mixed.ipynb"]
    result = run_pytest(nbdev_project, "-v", "-rs", "-p", "no:cacheprovider")
    text = output(result)
    assert result.ret == 0, text
    result.assert_outcomes(passed=2, skipped=1)
    for line in (*LEFT_OUT, "every cell is flagged slow: give --nbtest-flags slow",
                 "2 cell(s) calling nbdev_export() or notebook2script() were not run"):
        assert line in text, line
    assert "must not run" not in text
    flagged = run_pytest(nbdev_project, "-v", "--nbtest-flags", "slow", "-p", "no:cacheprovider")
    assert flagged.ret == 1  # the slow cell of 04_mixed now runs, and fails as written
    flagged.assert_outcomes(passed=2, failed=1)
    assert "slow not run" in output(flagged)
    runslow = run_pytest(nbdev_project, "--runslow", "-p", "no:cacheprovider",
                         "nbs/03_slow.ipynb")
    runslow.assert_outcomes(passed=1)
    no_kernel_left()


def test_under_xdist_the_controller_says_what_was_left_out(nbdev_project: pytest.Pytester,
                                                          no_kernel_left) -> None:
    """-n 2 -v: the workers collect, the controller prints each left-out notebook once."""
    this_tests("nbtest.plugin.reports.NotebookReports.pytest_testnodedown",
               "nbtest.plugin.pytest_collection_finish")
    result = run_pytest(nbdev_project, "-v", "-n", "2", "-p", "no:cacheprovider")
    text = output(result)
    assert result.ret == 0, text
    result.assert_outcomes(passed=2, skipped=1)
    for line in LEFT_OUT:
        assert text.count(line) == 1, line
    quiet = output(run_pytest(nbdev_project, "-n", "2", "-p", "no:cacheprovider"))
    assert "left out" not in quiet  # said under -v only, as serially
    no_kernel_left()


def test_without_settings_ini_nothing_changes(pytester: pytest.Pytester) -> None:
    this_tests("nbtest.nbdev.project_settings")
    pytester.makeini("[pytest]\nnbtest = true\n")
    write_notebook(pytester.path / "_private.ipynb", ["x = 1"])
    write_notebook(pytester.path / "exports.ipynb", ["def nbdev_export():\n    return 1",
                                                     "assert nbdev_export() == 1"])
    result = run_pytest(pytester, "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)


def test_directives_and_front_matter() -> None:
    this_tests(directives, is_skipped, front_matter, calls_export, left_out, project_settings)
    cell = {"cell_type": "code", "source": "#| eval:  false\n#|hide\n# a comment\nx = 1"}
    assert directives(cell) == {"eval": "false", "hide": ""} and is_skipped(cell)
    assert not is_skipped({"cell_type": "code", "source": "#|export\nx = 1"})
    assert not is_skipped({"cell_type": "code", "source": "x = 1\n#| eval: false"})
    # nbdev's rule (fastcore's does_cell_eval): the call's name and parenthesis anywhere.
    assert calls_export("import nbdev; nbdev.nbdev_export()")
    assert calls_export("nbdev.nbdev_export()") and calls_export("notebook2script()")
    assert calls_export("# nbdev_export() is run by the release script")
    assert not calls_export("from nbdev import nbdev_export")
    nb = {"cells": [{"cell_type": "markdown",
                     "source": "# Title\n> summary\n\n- skip_exec: true\n- skip_showdoc: true"}]}
    assert front_matter(nb) == {"title": "Title", "description": "summary", "skip_exec": True,
                                "skip_showdoc": True}
    # `- key: value` lines count only under a `# Title`, as nbdev's md_frontmatter reads them.
    assert front_matter({"cells": [{"cell_type": "markdown", "source": "- skip_exec: true"}]}) \
        == {}
    layered = {"metadata": {"nbdev": {"eval": "true", "skip_exec": "false"}}, "cells": [
        {"cell_type": "code", "source": "x = 1"},
        {"cell_type": "raw", "source": "---\neval: false\n---"}]}
    assert front_matter(layered) == {"eval": False, "skip_exec": "false"}
