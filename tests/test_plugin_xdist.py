"""pytest-xdist: the same outcomes as a serial run, no kernel start-up race (40 notebooks
under -n 2, three times), the cells of one notebook kept on one worker, no kernel left.
"""

from __future__ import annotations

import json

import pytest
from helpers.pytest_sessions import junit_outcomes, lines_starting, notebook_maker, run_pytest

from nbtest import this_tests

pytest_plugins = ["pytester"]


@pytest.fixture
def nb(pytester: pytest.Pytester, make_notebook):  # type: ignore[no-untyped-def]
    """`nb(name, cells=..., **metadata)`: a notebook in the pytester folder."""
    return notebook_maker(pytester, make_notebook)


def test_same_outcomes_as_serial(pytester: pytest.Pytester, nb, no_kernel_left) -> None:
    this_tests("nbtest.plugin.items.NotebookItem.runtest",
               "nbtest.plugin.reports.NotebookReports.pytest_runtest_makereport")
    nb("a_pass.ipynb")
    nb("b_pass.ipynb", [("markdown", "# b"), "import os\nassert os.environ['NBTEST'] == '1'"])
    nb("c_fail.ipynb", ["x = 41", "assert x == 42, f'x is {x}'"])
    nb("d_error.ipynb", [("markdown", "# d"), "{}['missing']"])
    nb("e_timeout.ipynb", ["import time\ntime.sleep(60)"], nbtest={"timeout": 1})
    nb("f_skip.ipynb", nbtest={"skip": "not here"})
    nb("g_slow.ipynb", nbtest={"markers": ["slow"]})

    serial = run_pytest(pytester, "--nbtest", "-ra", "-p", "no:cacheprovider",
                        "--junitxml=serial.xml")
    parallel = run_pytest(pytester, "--nbtest", "-ra", "-p", "no:cacheprovider",
                          "--junitxml=parallel.xml", "-n", "2")
    expected = {"a_pass.ipynb": "passed", "b_pass.ipynb": "passed",
                "c_fail.ipynb": "failed", "d_error.ipynb": "failed",
                "e_timeout.ipynb": "failed", "f_skip.ipynb": "skipped",
                "g_slow.ipynb": "skipped"}
    assert junit_outcomes(pytester.path / "serial.xml") == expected
    assert junit_outcomes(pytester.path / "parallel.xml") == expected
    assert parallel.parseoutcomes() == serial.parseoutcomes()
    assert parallel.ret == serial.ret == pytest.ExitCode.TESTS_FAILED
    # The report text (a string) crosses from the worker intact.
    failed = sorted(lines_starting(serial, ["FAILED"]))
    assert failed == sorted(lines_starting(parallel, ["FAILED"]))
    assert "FAILED c_fail.ipynb - cell 2: AssertionError: x is 41" in failed
    assert "FAILED d_error.ipynb - cell 2: KeyError: 'missing'" in failed
    assert any(line.startswith("FAILED e_timeout.ipynb - cell 1: timed out after")
               for line in failed)
    no_kernel_left()


def test_forty_notebooks_three_times(pytester: pytest.Pytester, nb, no_kernel_left) -> None:
    """jupyter_client's port race (nbmake#129) must not bite: 3 x 40 kernel starts on 2
    workers, all pass."""
    this_tests("nbtest.plugin.items.NotebookItem.runtest", "nbtest.kernel.launch.start_kernel")
    for i in range(40):
        nb(f"nb_{i:02d}.ipynb", [f"value = {i}", f"assert value * 2 == {2 * i}"])
    for _ in range(3):
        result = run_pytest(pytester, "--nbtest", "-q", "-p", "no:cacheprovider", "-n", "2",
                            timeout=600)
        result.assert_outcomes(passed=40)
        assert result.ret == pytest.ExitCode.OK
    no_kernel_left()


CHAIN = ["x = 1", "x += 1", "assert x == 2, x",
         "import os\npid = os.getpid()", "assert os.getpid() == pid"]


@pytest.mark.parametrize("dist", [
    pytest.param([], id="default"),
    pytest.param(["--dist", "loadgroup"], id="loadgroup"),
])
def test_cells_of_a_notebook_stay_on_one_worker(pytester: pytest.Pytester, nb,
                                                no_kernel_left, dist: list[str]) -> None:
    """Each cell needs the state of the cells before it, so all pass only when a notebook's
    cells run in order in one kernel on one worker."""
    this_tests("nbtest.plugin.pytest_configure", "nbtest.plugin.items.CellItem.runtest")
    nb("a.ipynb", CHAIN)
    nb("b.ipynb", CHAIN)
    result = run_pytest(pytester, "--nbtest", "--nbtest-cells", "-rA", "-p", "no:cacheprovider",
                        "-n", "2", *dist)
    result.assert_outcomes(passed=10)
    no_kernel_left()


RECORD_CONTROLLER_MODULES = """
import json, os, sys

def pytest_unconfigure(config):
    if not hasattr(config, "workerinput"):
        with open(os.environ["NBTEST_MODULES_OUT"], "w") as fh:
            json.dump(sorted(sys.modules), fh)
"""


def test_the_controller_reads_metadata_only(pytester: pytest.Pytester, nb, monkeypatch,
                                            no_kernel_left) -> None:
    """Under xdist the controller runs no notebook: while the fork template imports, the
    controller's own CPU is taken from it, so it reads notebooks' metadata without nbformat
    and starts the template without jupyter_client."""
    this_tests("nbtest.plugin.preflight.XdistPreflight.pytest_xdist_node_collection_finished",
               "nbtest.plugin.fork_template.XdistForkTemplate.pytest_sessionstart")
    nb("a.ipynb")
    nb("b.ipynb", nbtest={"timeout": 30})
    pytester.makeconftest(RECORD_CONTROLLER_MODULES)
    monkeypatch.setenv("NBTEST_MODULES_OUT", str(pytester.path / "modules.json"))
    result = run_pytest(pytester, "--nbtest", "-p", "no:cacheprovider", "-n", "2")
    result.assert_outcomes(passed=2)
    loaded = {name.split(".")[0] for name in
              json.loads((pytester.path / "modules.json").read_text())}
    assert loaded.isdisjoint({"nbformat", "jsonschema", "jupyter_client", "zmq"}), loaded
    no_kernel_left()
