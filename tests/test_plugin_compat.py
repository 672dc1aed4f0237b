"""nbtest beside the pytest plugins notebook projects already run, for real: pytest-rerunfailures,
pytest-randomly, pytest-split, pytest-timeout, GitHub annotations, JUnit, `--lf` / `--ff` /
`--sw`, node-id selection and xdist, in notebook and per-cell mode.

The project is the one the compatibility report was made with, made smaller: quick notebooks
whose cells depend on the earlier ones, a sleeper, one failing in cell 3 (`sum is 45`), one
flaky that fails on its first run only, one `slow`, one importing a local package, and `.py`
tests. A cell item's verdict must be the one that cell has when its notebook runs whole.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from helpers.notebooks import write_notebook
from helpers.pytest_sessions import junit_outcomes, output, run_pytest

from nbtest import this_tests
from nbtest.plugin.locations import cell_source_line

pytest_plugins = ["pytester"]

CHAIN = ["x = 1", ("markdown", "y follows"), "y = x + 1", "z = y * 10", "assert z == 20"]
FLAKY = ["import os\nfirst = not os.path.exists('flaky.ran')\nopen('flaky.ran', 'w').close()",
         "assert not first, 'fails on its first run only'", "after = 1", "assert after == 1"]
FAILING = ["numbers = range(10)", ("markdown", "the sum"),
           "total = sum(numbers)\nassert total == 44, f'sum is {total}'", "print('never')"]


@pytest.fixture
def project(pytester: pytest.Pytester) -> Path:
    """The notebooks under nbs/, a local package and `.py` tests; returns nbs/."""
    nbs = pytester.path / "nbs"
    for name in ("nb01_chain", "nb02_chain", "nb03_chain"):
        write_notebook(nbs / f"{name}.ipynb", CHAIN)
    write_notebook(nbs / "nb04_sleep.ipynb",
                   ["import time\nstart = time.monotonic()", "time.sleep(0.3)",
                    "assert time.monotonic() - start >= 0.3"])
    write_notebook(nbs / "nb09_fail.ipynb", FAILING)
    write_notebook(nbs / "nb10_flaky.ipynb", FLAKY)
    write_notebook(nbs / "nb11_slow.ipynb", ["s = 1", "assert s"],
                   {"nbtest": {"markers": ["slow"]}})
    (nbs / "mypkg").mkdir()
    (nbs / "mypkg" / "__init__.py").write_text("def double(v):\n    return 2 * v\n")
    write_notebook(nbs / "nb12_local.ipynb", ["import mypkg", "assert mypkg.double(21) == 42"])
    pytester.makepyfile(test_plain="def test_one():\n    pass\n\ndef test_two():\n    pass\n")
    return nbs


_PROGRESS = re.compile(r"^(?:\[gw\d+\] \[ *\d+%\] [A-Z]+ )?(nbs/\w+)\.ipynb::cell\[(\d+)\]"
                       r"(?: [A-Z]+)?", re.M)


def run_order(text: str) -> list[tuple[str, int]]:
    """(notebook, cell number) of each cell item, in the order a `-v` session ran them."""
    return [(name, int(n)) for name, n in _PROGRESS.findall(text)]


def cells_of(text: str, notebook: str) -> list[int]:
    """The cell numbers of `notebook` in the order a `-v` session ran them."""
    return [n for name, n in run_order(text) if name == f"nbs/{notebook}"]


def no_name_errors(text: str) -> None:
    """Cells run out of order would fail with NameError: none may appear."""
    assert "NameError" not in text, text


def test_reruns_rerun_a_failed_cell_in_a_fresh_kernel_and_never_hide_a_failure(
        pytester: pytest.Pytester, project: Path, no_kernel_left) -> None:
    """Case 1: `--reruns 2` ends exit 1 with cell 3 failed; the flaky cell passes on rerun."""
    this_tests("nbtest.plugin.items.CellItem.setup",
               "nbtest.plugin.cell_kernel.CellKernel.before")
    result = run_pytest(pytester, "--nbtest", "--nbtest-cells", "--reruns", "2", "-rA",
                        "--junitxml=junit.xml")
    text = output(result)
    assert result.ret == pytest.ExitCode.TESTS_FAILED, text
    outcomes = junit_outcomes(pytester.path / "junit.xml")
    assert outcomes["nbs/nb09_fail.ipynb::cell[3]"] == "failed"
    assert outcomes["nbs/nb09_fail.ipynb::cell[4]"] == "skipped"  # as in a whole run
    assert all(outcomes[f"nbs/nb10_flaky.ipynb::cell[{n}]"] == "passed" for n in (1, 2, 3, 4))
    assert result.parseoutcomes()["rerun"] == 3  # the flaky cell once, cell 3 twice
    assert "SKIPPED [1] nbs/nb09_fail.ipynb:" in text  # at the skipped cell, not in nbtest
    assert "FAILED nbs/nb09_fail.ipynb::cell[3] - cell 3: AssertionError: sum is 45" in text
    assert 'failures="1"' in (pytester.path / "junit.xml").read_text()
    no_name_errors(text)
    no_kernel_left()


def test_reruns_of_whole_notebooks(pytester: pytest.Pytester, project: Path) -> None:
    this_tests("nbtest.plugin.items.NotebookItem.runtest")
    result = run_pytest(pytester, "--nbtest", "--reruns", "1", "-rA", "nbs")
    assert result.parseoutcomes() == {"passed": 6, "failed": 1, "skipped": 1, "rerun": 2}
    assert "FAILED nbs/nb09_fail.ipynb - cell 3: AssertionError: sum is 45" in output(result)


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_randomly_shuffles_notebooks_but_keeps_each_notebooks_cells_in_order(
        pytester: pytest.Pytester, project: Path, monkeypatch: pytest.MonkeyPatch,
        workers: list[str]) -> None:
    """Case 2: pytest-randomly, on by default once installed, reorders; no spurious failure."""
    this_tests("nbtest.plugin.cell_order.keep_cells_together")
    monkeypatch.delenv("PYTEST_ADDOPTS")  # pytest-randomly on, as for its users
    result = run_pytest(pytester, "--nbtest", "--nbtest-cells", "-v", "-p", "randomly",
                        "--randomly-seed=20261128", *workers, "-p", "no:cacheprovider")
    text = output(result)
    assert "randomly-seed=20261128" in text
    result.assert_outcomes(passed=21, failed=2, skipped=5)
    no_name_errors(text)
    for name in ("nb01_chain", "nb04_sleep", "nb09_fail", "nb10_flaky", "nb12_local"):
        numbers = cells_of(text, name)
        assert numbers == sorted(numbers) and numbers, (name, numbers)
    if not workers:  # each notebook's cells are contiguous in the one process
        order = [name for name, _ in run_order(text)]
        runs = [name for i, name in enumerate(order) if i == 0 or order[i - 1] != name]
        assert len(runs) == len(set(runs)), order


@pytest.mark.parametrize("algorithm", ["least_duration", "duration_based_chunks"])
def test_split_keeps_each_notebook_in_one_group(pytester: pytest.Pytester, project: Path,
                                                algorithm: str) -> None:
    """Case 3: every cell item lands in exactly one group, with its notebook's other cells."""
    this_tests("nbtest.plugin.cell_order.reunite_split_notebooks",
               "nbtest.plugin.cell_order.SplitWatch")
    everything = run_pytest(pytester, "--nbtest", "--nbtest-cells", "--collect-only", "-q",
                            "-p", "no:cacheprovider")
    ids = [line for line in everything.stdout.lines if "::" in line]
    assert len(ids) == 26 + 2
    # Durations that scatter a notebook's cells when items are dealt one by one.
    durations = {nodeid: (i * 7919 % 13) / 10 + 0.05 for i, nodeid in enumerate(ids)}
    (pytester.path / ".test_durations").write_text(json.dumps(durations))
    seen: list[str] = []
    for group in ("1", "2", "3"):
        result = run_pytest(pytester, "--nbtest", "--nbtest-cells", "--collect-only", "-q",
                            "--splits", "3", "--group", group, "--splitting-algorithm",
                            algorithm, "-p", "no:cacheprovider")
        mine = [line for line in result.stdout.lines if "::" in line]
        notebooks = {nodeid.split("::")[0] for nodeid in mine if ".ipynb" in nodeid}
        for notebook in notebooks:  # whole, in file order
            assert [i for i in mine if i.startswith(notebook + "::")] == \
                [i for i in ids if i.startswith(notebook + "::")]
        seen += mine
    assert sorted(seen) == sorted(ids)
    ran = run_pytest(pytester, "--nbtest", "--nbtest-cells", "--splits", "3", "--group", "2",
                     "--splitting-algorithm", algorithm, "-p", "no:cacheprovider")
    no_name_errors(output(ran))


def test_last_failed_failed_first_stepwise_and_node_ids(pytester: pytest.Pytester,
                                                        project: Path) -> None:
    """Case 4: the cached ids round-trip; a cell run alone gets its earlier cells as setup."""
    this_tests("nbtest.plugin.collect.NotebookFile.collect",
               "nbtest.plugin.cell_kernel.CellKernel.before")
    first = run_pytest(pytester, "--nbtest", "--nbtest-cells", "nbs")
    assert first.ret == pytest.ExitCode.TESTS_FAILED
    cached = json.loads((pytester.path / ".pytest_cache/v/cache/lastfailed").read_text())
    assert "nbs/nb09_fail.ipynb::cell[3]" in cached

    last_failed = run_pytest(pytester, "--nbtest", "--nbtest-cells", "--lf", "-rA", "nbs")
    last_failed.assert_outcomes(failed=1, passed=1)  # the flaky cell passes now
    assert "not in selected tests" not in output(last_failed)
    assert "cell 3: AssertionError: sum is 45" in output(last_failed)

    failed_first = run_pytest(pytester, "--nbtest", "--nbtest-cells", "--ff", "-v", "nbs")
    order = re.findall(r"(nbs/\w+\.ipynb::cell\[\d+\]) ", output(failed_first))
    assert order[:3] == [f"nbs/nb09_fail.ipynb::cell[{n}]" for n in (1, 3, 4)], order
    no_name_errors(output(failed_first))

    run_pytest(pytester, "--nbtest", "--nbtest-cells", "--sw", "nbs")
    stepwise = run_pytest(pytester, "--nbtest", "--nbtest-cells", "--sw", "-v", "nbs")
    assert "previously failed test not found" not in output(stepwise)
    assert re.findall(r"(nbs/\w+\.ipynb::cell\[\d+\]) ", output(stepwise))[0] == \
        "nbs/nb09_fail.ipynb::cell[3]"
    no_name_errors(output(stepwise))

    alone = run_pytest(pytester, "--nbtest", "--nbtest-cells", "nbs/nb01_chain.ipynb::cell[5]")
    alone.assert_outcomes(passed=1)
    picked = run_pytest(pytester, "--nbtest", "--nbtest-cells", "-k", "nb09 and cell and 4",
                        "-rA", "nbs")
    picked.assert_outcomes(errors=1)  # cell 3 failed in its setup: an error, never a pass
    assert "cell 4 did not run: cell 3, which runs before it, failed" in output(picked)
    deselected = run_pytest(pytester, "--nbtest", "--nbtest-cells", "nbs/nb01_chain.ipynb",
                            "--deselect", "nbs/nb01_chain.ipynb::cell[3]")
    deselected.assert_outcomes(passed=3)


@pytest.mark.parametrize("method", ["signal", "thread"])
@pytest.mark.parametrize("mode", [[], ["--nbtest-cells"]], ids=["notebook", "cells"])
def test_pytest_timeout_names_the_running_cell_and_leaves_nothing(
        pytester: pytest.Pytester, method: str, mode: list[str], no_kernel_left) -> None:
    """Case 5: the report is nbtest's own timeout report; no kernel or template outlives it."""
    this_tests("nbtest.plugin.timeout_bridge.TimeoutBridge.pytest_timeout_set_timer")
    write_notebook(pytester.path / "a.ipynb", ["x = 1"])
    write_notebook(pytester.path / "sleepy.ipynb",
                   ["x = 1", "import time\nprint('sleeping now', flush=True)\ntime.sleep(60)",
                    "y = 2"])
    result = run_pytest(pytester, "--nbtest", *mode, "--timeout", "2",
                        f"--timeout-method={method}", "--nbtest-fork=yes")
    text = output(result)
    assert result.ret == pytest.ExitCode.TESTS_FAILED, text
    assert "cell 2: timed out after" in text and "pytest-timeout 2 s" in text
    assert "time.sleep(60)" in text and "sleeping now" in text
    assert len(text.splitlines()) < 120, text  # the cell's report, not asyncio's internals
    no_kernel_left()


@pytest.mark.parametrize("mode", [[], ["--nbtest-cells"]], ids=["notebook", "cells"])
def test_annotations_junit_classname_and_summary(pytester: pytest.Pytester, project: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 mode: list[str]) -> None:
    """Cases 6 and 7: the location is the failing cell's line in the file; JUnit classname
    is the notebook's path, its name the file's or the cell's; the short summary has pytest's
    plain words."""
    this_tests("nbtest.plugin.locations.cell_source_line", "nbtest.plugin.reports.junit_classname")
    monkeypatch.setenv("GITHUB_ACTIONS", "true")
    path = project / "nb09_fail.ipynb"
    result = run_pytest(pytester, "--nbtest", *mode, "-v", "--junitxml=junit.xml", path)
    text = output(result)
    line = cell_source_line(path, 3) + 1
    lines = path.read_text().splitlines()
    assert "total = sum(numbers)" in lines[line - 1]
    assert f"::error file=nbs/nb09_fail.ipynb,line={line}::" in text, text
    xml = (pytester.path / "junit.xml").read_text()
    name = 'name="cell[3]"' if mode else 'name="nb09_fail.ipynb"'
    assert f'classname="nbs/nb09_fail.ipynb" {name}' in xml and 'classname=""' not in xml
    summary = text[text.index("short test summary info"):]
    assert "(kernel:" not in summary and "FAILED nbs/nb09_fail.ipynb" in summary
    assert "(kernel: " in text[:text.index("short test summary info")]


def test_per_cell_mode_forks_kernels_from_the_template(pytester: pytest.Pytester,
                                                       project: Path) -> None:
    """Case 9: per-cell mode starts the fork template as notebook mode does."""
    this_tests("nbtest.plugin.pytest_collection_finish")
    result = run_pytest(pytester, "--nbtest", "--nbtest-cells", "-v", "-p", "no:cacheprovider",
                        "nbs/nb01_chain.ipynb", "nbs/nb02_chain.ipynb", "nbs/nb03_chain.ipynb")
    result.assert_outcomes(passed=12)
    assert "(kernel: fork)" in output(result)


def test_fork_templates_end_with_the_session_that_started_them(pytester: pytest.Pytester,
                                                                no_kernel_left) -> None:
    """Case 8: a process that outlives its sessions (an xdist socket server runs one session
    after another in one process) keeps no template: each session starts and stops its own."""
    this_tests("nbtest.plugin.pytest_unconfigure",
               "nbtest.kernel.forkserver_client.ForkServer.stop_all")
    for name in ("a", "b"):
        write_notebook(pytester.path / f"{name}.ipynb", ["import os\nx = os.getpid()"])
    pytester.makepyfile(server="""
        import os, sys, psutil, pytest
        for session in range(2):
            code = pytest.main(["--nbtest", "--nbtest-fork=yes", "-q", "-p", "no:randomly",
                                "-p", "no:cacheprovider", "a.ipynb", "b.ipynb"])
            assert code == 0, code
            from nbtest.kernel.forkserver_client import ForkServer
            templates = [p for p in psutil.Process().children(recursive=True)
                         if "nbtest.kernel.forkserver_main" in " ".join(p.cmdline())]
            print("session", session, "templates", len(templates), len(ForkServer._instances))
        """)
    result = pytester.runpython(pytester.path / "server.py")
    assert result.ret == 0, output(result)
    assert "session 0 templates 0 0" in output(result)
    assert "session 1 templates 0 0" in output(result)
    no_kernel_left()


def test_a_worker_whose_environment_differs_says_why_it_spawns(pytester: pytest.Pytester
                                                                ) -> None:
    """Case 8: an xdist worker with its own PYTHONPATH cannot use the controller's template,
    and `-v` says so instead of a silent spawn."""
    this_tests("nbtest.kernel.forkserver_client.ForkServer.differences")
    for name in ("a", "b"):
        write_notebook(pytester.path / f"{name}.ipynb", ["x = 1"])
    result = run_pytest(pytester, "--nbtest", "-v", "--tx",
                        f"popen//env:PYTHONPATH={pytester.path / 'lib'}", "--dist", "load")
    result.assert_outcomes(passed=2)
    assert output(result).count("(kernel: spawn, PYTHONPATH differs from the template's)") == 2


@pytest.mark.parametrize("mode", [[], ["--nbtest-cells"]], ids=["notebook", "cells"])
def test_pytest_sugar_names_each_test_once(pytester: pytest.Pytester, mode: list[str]) -> None:
    """Case 7: pytest-sugar prints `path::domain`; the domain is the name within the file."""
    this_tests("nbtest.plugin.items._NotebookItemBase.reportinfo")
    write_notebook(pytester.path / "nbs" / "x.ipynb", ["x = 1", "assert x"])
    result = run_pytest(pytester, "--nbtest", *mode, "-v", "--force-sugar",
                        "-p", "no:cacheprovider")
    text = output(result)
    assert result.ret == 0, text
    assert "nbs/x.ipynb::nbs/x.ipynb" not in text
    expected = "nbs/x.ipynb::cell[2]" if mode else "nbs/x.ipynb::x.ipynb (notebook)"
    assert expected in text, text
