"""Plugin combinations that must never end a failing run green, with the real plugins:
pytest-timeout with pytest-rerunfailures (every attempt gets the limit), pytest-split with a
shuffler under `--nbtest-cells` (each cell item runs in exactly one group, its notebook whole
there), and pytest-repeat's `--count` (refused for notebooks, never silently ignored).
"""

from __future__ import annotations

import pytest
from conftest import write_notebook
from pytester_helpers import junit_outcomes, output, run_pytest

from nbtest import this_tests

pytest_plugins = ["pytester"]

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
