"""--nbtest-cov: code that only a notebook's kernel runs shows as covered in pytest-cov's report.

Each test runs a real pytest session in a subprocess over a tiny package, `covpkg`, whose
`only_in_notebook()` is called from a notebook and from nowhere else.
"""

from __future__ import annotations

import json
from pathlib import Path

import psutil
import pytest
from helpers.pytest_sessions import output, run_pytest

from nbtest import this_tests
from nbtest.callbacks.coverage import KernelCoverage

pytest_plugins = ["pytester"]

COVPKG = '''\
def only_in_notebook(x):
    doubled = x * 2
    return doubled + 1


def from_python():
    return "py"
'''
# A plain test imports covpkg too, so the report lists it whatever the kernels record.
TEST_PY = "import covpkg\n\n\ndef test_python():\n    assert covpkg.from_python() == 'py'\n"
CALL = "import covpkg\nassert covpkg.only_in_notebook(2) == 5"


@pytest.fixture
def project(pytester: pytest.Pytester, make_notebook, monkeypatch: pytest.MonkeyPatch) -> Path:
    """covpkg, a test of it, and a notebook calling only_in_notebook(), in pytester's folder."""
    # When this suite itself runs under coverage, these variables would start the outer
    # measurement in the inner session too; the inner session must depend on its flags only.
    for name in ("COVERAGE_PROCESS_CONFIG", "COVERAGE_PROCESS_START"):
        monkeypatch.delenv(name, raising=False)
    (pytester.path / "covpkg").mkdir()
    (pytester.path / "covpkg" / "__init__.py").write_text(COVPKG)
    (pytester.path / "test_covpkg.py").write_text(TEST_PY)
    make_notebook(pytester.path / "calls.ipynb", [CALL])
    return pytester.path


def body_lines() -> set[int]:
    """Line numbers of only_in_notebook's body."""
    return {n for n, line in enumerate(COVPKG.splitlines(), 1) if "doubled" in line}


def covpkg_report(folder: Path) -> dict:
    """The JSON report's entry for covpkg/__init__.py."""
    files = json.loads((folder / "cov.json").read_text())["files"]
    return next(entry for name, entry in files.items() if name.endswith("__init__.py"))


@pytest.mark.parametrize("kernel_cov", [True, False], ids=["nbtest-cov", "no-nbtest-cov"])
def test_function_called_only_from_notebook(pytester: pytest.Pytester, project: Path,
                                            kernel_cov: bool, no_kernel_left) -> None:
    this_tests(KernelCoverage)
    args = ["--nbtest", "--cov=covpkg", "--cov-report=json:cov.json", "-p", "no:cacheprovider"]
    result = run_pytest(pytester, *args, *(["--nbtest-cov"] if kernel_cov else []))
    result.assert_outcomes(passed=2)
    entry = covpkg_report(project)
    assert 7 in entry["executed_lines"]  # from_python(), run by the plain test
    if kernel_cov:
        assert body_lines() <= set(entry["executed_lines"]), output(result)
    else:
        assert body_lines() <= set(entry["missing_lines"]), output(result)
    assert not list(project.glob(".coverage.*")), "kernel data files were not combined"
    no_kernel_left()


def test_xdist_workers_measure_their_kernels(pytester: pytest.Pytester, project: Path,
                                             no_kernel_left) -> None:
    this_tests(KernelCoverage)
    result = run_pytest(pytester, "--nbtest", "--cov=covpkg", "--cov-report=json:cov.json",
                        "--nbtest-cov", "-n", "2", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    assert body_lines() <= set(covpkg_report(project)["executed_lines"]), output(result)
    no_kernel_left()


def test_timed_out_kernel_leaves_nothing_behind(pytester: pytest.Pytester, project: Path,
                                                make_notebook, no_kernel_left) -> None:
    """The kill after a timeout still takes the kernel and its children, coverage or not."""
    this_tests(KernelCoverage)
    make_notebook(project / "calls.ipynb", [
        "import os, pathlib, subprocess, sys\n"
        "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)'])\n"
        "pathlib.Path('pids.txt').write_text(f'{os.getpid()} {child.pid}')\n" + CALL,
        "import time\ntime.sleep(120)",
    ])
    result = run_pytest(pytester, "--nbtest", "--cov=covpkg", "--nbtest-cov",
                        "--nbtest-timeout", "2", "-ra", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    assert "timed out" in output(result)
    no_kernel_left()
    for pid in map(int, (project / "pids.txt").read_text().split()):
        assert not psutil.pid_exists(pid) or \
            psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, f"pid {pid} is alive"


def test_without_measurement_it_warns_and_runs(pytester: pytest.Pytester,
                                               project: Path) -> None:
    this_tests(KernelCoverage)
    result = run_pytest(pytester, "--nbtest", "--nbtest-cov", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    assert "no coverage measurement is running" in output(result)
