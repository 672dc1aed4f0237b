"""Plugin combinations that must never end a failing run green, with the real plugins:
pytest-timeout with pytest-rerunfailures (every attempt gets the limit), pytest-split with a
shuffler under `--nbtest-cells` (each cell item runs in exactly one group, its notebook whole
there), and pytest-repeat's `--count` (refused for notebooks, never silently ignored).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers.notebooks import write_notebook
from helpers.pytest_sessions import junit_outcomes, output, run_pytest

from nbtest import this_tests

pytest_plugins = ["pytester"]

# The in-process sessions below load pytest-randomly, which imports numpy to reseed it;
# pytester then drops every module the session imported, and numpy cannot be imported twice
# in one process ("cannot load module more than once"): later tests of this worker would
# fail to import it. Imported here, before any session, it stays.
try:
    import numpy  # noqa: F401
except ImportError:
    pass

# -- pytest-timeout + pytest-rerunfailures -------------------------------------------------


@pytest.mark.parametrize("method", ["signal", "thread"])
@pytest.mark.parametrize("mode", [[], ["--nbtest-cells"]], ids=["notebook", "cells"])
def test_every_rerun_gets_the_pytest_timeout_limit(pytester: pytest.Pytester, method: str,
                                                    mode: list[str], no_kernel_left) -> None:
    """A notebook that always outruns `--timeout` fails on its rerun too: a timeout is never
    turned into a pass by running the test again without the limit."""
    this_tests("nbtest.plugin.timeout_bridge.TimeoutBridge.pytest_runtest_setup",
               "nbtest.plugin.timeout_bridge.TimeoutBridge.pytest_timeout_cancel_timer")
    write_notebook(pytester.path / "slow.ipynb", ["import time", "time.sleep(3)"])
    result = run_pytest(pytester, "--nbtest", *mode, "--timeout", "1",
                        f"--timeout-method={method}", "--reruns", "1", "-rA",
                        "--junitxml=junit.xml", "-p", "no:cacheprovider")
    text = output(result)
    assert result.ret == pytest.ExitCode.TESTS_FAILED, text
    assert result.parseoutcomes()["rerun"] >= 1, text
    sleeper = "slow.ipynb::cell[2]" if mode else "slow.ipynb"
    assert junit_outcomes(pytester.path / "junit.xml")[sleeper] == "failed", text
    assert "timed out after" in text and "pytest-timeout 1 s" in text
    no_kernel_left()


# -- pytest-split + a shuffler + --nbtest-cells ----------------------------------------------

SPLIT_NOTEBOOKS = {
    "a.ipynb": ["x = 1", "y = x + 1", "assert y == 2"],
    "b.ipynb": ["x = 1", "assert x == 2, 'x is 1'", "z = x"],  # cell 2 fails, cell 3 skips
    "c.ipynb": ["import os", "p = os.sep", "assert p"],
    "d.ipynb": ["q = 3", "assert q == 3"],
}
SHUFFLERS = {"randomly": ["-p", "randomly", "--randomly-seed={seed}"],
             "random-order": ["-p", "no:randomly", "--random-order-seed={seed}"]}
_COLLECTED = re.compile(r"(\d+)/(\d+) tests? collected \((\d+) deselected\)")


@pytest.fixture
def split_project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Four tiny notebooks and two `.py` tests; the sessions choose their shuffler."""
    monkeypatch.delenv("PYTEST_ADDOPTS")  # each session says -p randomly / -p no:randomly
    for name, cells in SPLIT_NOTEBOOKS.items():
        write_notebook(pytester.path / name, cells)
    pytester.makepyfile(test_plain="def test_one():\n    pass\n\ndef test_two():\n    pass\n")
    return pytester.path


def _collected(pytester: pytest.Pytester, *args: str) -> tuple[list[str], str]:
    """The node ids a `--collect-only -q` session (in process: no kernel starts) selects,
    and its count line."""
    result = pytester.runpytest_inprocess("--nbtest", "--nbtest-cells", "--nbtest-fork=no",
                                          "--collect-only", "-q", "-p", "no:cacheprovider",
                                          *args)
    lines = result.stdout.lines
    return [line for line in lines if "::" in line], next(
        (line for line in lines if "collected" in line), "")


@pytest.mark.parametrize("shuffler", sorted(SHUFFLERS))
@pytest.mark.parametrize("algorithm", ["duration_based_chunks", "least_duration"])
def test_split_and_shuffle_run_each_cell_once_with_its_notebook_whole(
        pytester: pytest.Pytester, split_project: Path, shuffler: str, algorithm: str) -> None:
    """For every seed: the groups' items are the whole session, each once; a notebook's cells
    are all in one group; each group's "deselected" is what the others run."""
    this_tests("nbtest.plugin.cell_order.split_share", "nbtest.plugin.cell_order.SplitWatch",
               "nbtest.plugin.cell_order.reunite_split_notebooks")
    everything, _ = _collected(pytester, "-p", "no:randomly")
    assert len(everything) == 11 + 2
    for seed in range(11):
        shuffle = [arg.format(seed=seed) for arg in SHUFFLERS[shuffler]]
        seen: list[str] = []
        for group in ("1", "2", "3"):
            mine, counts = _collected(pytester, *shuffle, "--splits", "3", "--group", group,
                                      "--splitting-algorithm", algorithm)
            where = (seed, group, mine)
            for notebook in {nodeid.split("::")[0] for nodeid in mine if ".ipynb" in nodeid}:
                assert sorted(i for i in mine if i.startswith(notebook + "::")) == \
                    sorted(i for i in everything if i.startswith(notebook + "::")), where
            match = _COLLECTED.search(counts)
            assert match, (where, counts)
            selected, total, deselected = map(int, match.groups())
            assert (selected, total, deselected) == \
                (len(mine), len(everything), len(everything) - len(mine)), (where, counts)
            seen += mine
        assert sorted(seen) == sorted(everything), (seed, seen)


def test_split_groups_verdicts_are_the_full_runs(pytester: pytest.Pytester,
                                                 split_project: Path, no_kernel_left) -> None:
    """The union of the groups' verdicts, run for real, is the full run's: with this seed,
    every group once left out the failing notebook, and all three exited 0."""
    this_tests("nbtest.plugin.cell_order.split_share",
               "nbtest.plugin.cell_order.reunite_split_notebooks")
    shuffle = ["-p", "randomly", "--randomly-seed=7"]
    full = run_pytest(pytester, "--nbtest", "--nbtest-cells", "--junitxml=full.xml",
                      "-p", "no:cacheprovider", *shuffle)
    assert full.ret == pytest.ExitCode.TESTS_FAILED
    expected = junit_outcomes(pytester.path / "full.xml")
    assert expected["b.ipynb::cell[2]"] == "failed" and len(expected) == 13
    union: dict[str, str] = {}
    for group in ("1", "2", "3"):
        run_pytest(pytester, "--nbtest", "--nbtest-cells", f"--junitxml=g{group}.xml",
                   "-p", "no:cacheprovider", *shuffle, "--splits", "3", "--group", group,
                   "--splitting-algorithm", "least_duration")
        outcomes = junit_outcomes(pytester.path / f"g{group}.xml")
        assert not set(outcomes) & set(union), (group, outcomes, union)
        union.update(outcomes)
    assert union == expected
    no_kernel_left()


# -- pytest-repeat --------------------------------------------------------------------------


@pytest.mark.parametrize("args", [[], ["--nbtest-cells"], ["-n", "2"]],
                         ids=["notebook", "cells", "xdist"])
def test_repeat_count_is_refused_for_notebooks(pytester: pytest.Pytester, args: list[str],
                                               no_kernel_left) -> None:
    """`--count 3` would run each notebook once: a usage error naming the notebook, before any
    kernel starts; `.py` tests alone are repeated as pytest-repeat does."""
    this_tests("nbtest.plugin.repeat_guard.RepeatGuard.refusal",
               "nbtest.plugin.repeat_guard.RepeatGuard.pytest_collection_modifyitems",
               "nbtest.plugin.repeat_guard.RepeatGuard.pytest_xdist_node_collection_finished")
    write_notebook(pytester.path / "nb.ipynb", ["x = 1", "assert x == 1"])
    pytester.makepyfile(test_plain="def test_one():\n    pass\n")
    result = run_pytest(pytester, "--nbtest", "--count", "3", *args, "-p", "no:cacheprovider")
    text = output(result)
    assert result.ret == pytest.ExitCode.USAGE_ERROR, text
    assert "--count 3 cannot repeat notebook tests (nb.ipynb)" in text
    assert "passed" not in text and "_pytest.outcomes.Exit" not in text
    plain = run_pytest(pytester, "--nbtest", "--count", "3", *args, "test_plain.py")
    plain.assert_outcomes(passed=3)
    no_kernel_left()
