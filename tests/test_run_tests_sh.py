"""`nbtest run` and `./run_tests.sh` in a throwaway copy of the repository layout: globs from
the root, file names expanded by the shell inside docs_src, `--` pytest arguments, exit codes.

Selection is compared through `-- --collect-only -q` (no kernel); one real run per face.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.pytest_sessions import REPO, SESSION_TIMEOUT, venv_env

from nbtest import this_tests

NBTEST = Path(sys.executable).parent / "nbtest"
CALLBACKS = ["docs_src/callback.ipynb", "docs_src/callbacks.a.ipynb"]
ALL = [*CALLBACKS, "docs_src/other.ipynb"]

pytestmark = pytest.mark.skipif(not NBTEST.exists(),
                                reason="the nbtest console script is not installed here")


@pytest.fixture
def layout(tmp_path: Path, make_notebook) -> Path:  # type: ignore[no-untyped-def]
    """run_tests.sh, a pyproject naming docs_src, and three docs notebooks (other fails)."""
    shutil.copy(REPO / "run_tests.sh", tmp_path / "run_tests.sh")
    (tmp_path / "pyproject.toml").write_text(
        "[tool.pytest.ini_options]\nnbtest = true\n\n[tool.nbtest]\ndocs_root = \"docs_src\"\n")
    for name in ("callback", "callbacks.a"):
        make_notebook(f"docs_src/{name}.ipynb", [("markdown", f"# {name}"),
                                                 f"name = {name!r}", "assert name"])
    make_notebook("docs_src/other.ipynb", ["assert 1 == 2, 'other fails'"])
    make_notebook("docs_src/.ipynb_checkpoints/callback-checkpoint.ipynb", ["x = 1"])
    make_notebook("docs_src/_build/callback_built.ipynb", ["x = 1"])
    return tmp_path


def run(args: list[str] | str, cwd: Path, shell: bool = False) -> subprocess.CompletedProcess:
    """Run a command (through `bash -c` when `shell`, so bash expands globs) with the
    virtualenv active, as a developer's shell would have it."""
    command = ["bash", "-c", args] if shell else args
    return subprocess.run(command, cwd=cwd, env=venv_env(), capture_output=True, text=True,
                          timeout=SESSION_TIMEOUT)


def ids(proc: subprocess.CompletedProcess) -> list[str]:
    """Node ids from `--collect-only -q` output."""
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return [line for line in proc.stdout.splitlines()
            if line.strip() and " " not in line and ("::" in line or line.endswith(".ipynb"))]


def test_nbtest_run_selects_by_glob_under_root(layout: Path) -> None:
    this_tests("nbtest.cli.cmd_run", "nbtest.cli.select_notebooks")
    collect = ["--", "--collect-only", "-q"]
    nbtest = str(NBTEST)
    assert ids(run([nbtest, "run", "--root", "docs_src", "callback*", *collect],
                   layout)) == CALLBACKS
    # A name without .ipynb, and several patterns; each notebook once; the root from
    # [tool.nbtest] docs_root. (No pattern at all: see the run_tests.sh test.)
    assert ids(run([nbtest, "run", "other", "callback.ipynb", "callback*", *collect],
                   layout)) == ["docs_src/other.ipynb", *CALLBACKS]


def test_nbtest_run_glob_matching_nothing_is_an_error(layout: Path) -> None:
    this_tests("nbtest.cli.cmd_run", "nbtest.cli.select_notebooks")
    proc = run([str(NBTEST), "run", "callback*", "nosuch*"], layout)
    assert proc.returncode == 2
    assert "'nosuch*' matches no notebook under docs_src" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = run([str(NBTEST), "run", "--root", "missing"], layout)
    assert proc.returncode == 2
    assert "missing" in proc.stderr


def test_nbtest_run_exit_code_is_pytests(layout: Path, no_kernel_left) -> None:
    this_tests("nbtest.cli.cmd_run")
    failing = run([str(NBTEST), "run", "o*", "--", "-q", "-p", "no:cacheprovider"], layout)
    assert failing.returncode == pytest.ExitCode.TESTS_FAILED, failing.stdout
    assert "1 failed" in failing.stdout
    assert "test session starts" not in failing.stdout  # `-q` reached pytest
    assert "FAILED docs_src/other.ipynb - cell 1: AssertionError: other fails" \
        in failing.stdout
    usage = run([str(NBTEST), "run", "o*", "--", "--no-such-pytest-option"], layout)
    assert usage.returncode == pytest.ExitCode.USAGE_ERROR
    no_kernel_left()


def test_run_tests_sh_same_notebooks_from_root_and_docs_src(layout: Path) -> None:
    this_tests("nbtest.cli.cmd_run", "nbtest.cli.select_notebooks")
    collect = "-- --collect-only -q"
    from_root_quoted = run(["./run_tests.sh", "callback*", "--", "--collect-only", "-q"],
                           layout)
    # Unquoted at the root: nothing there matches, so bash passes the glob on as it is.
    from_root_unquoted = run(f"./run_tests.sh callback* {collect}", layout, shell=True)
    # Inside docs_src bash expands it to file names.
    from_docs = run(f"../run_tests.sh callback* {collect}", layout / "docs_src", shell=True)
    assert ids(from_root_quoted) == CALLBACKS
    assert ids(from_root_unquoted) == CALLBACKS
    assert ids(from_docs) == CALLBACKS
    # No argument: all of docs_src, never checkpoints or build folders.
    assert ids(run(f"./run_tests.sh {collect}", layout, shell=True)) == ALL
    assert not (layout / ".venv").exists()  # the active virtualenv was used


def test_run_tests_sh_runs_and_passes_from_docs_src(layout: Path, no_kernel_left) -> None:
    this_tests("nbtest.cli.cmd_run")
    proc = run("../run_tests.sh callback* -- -p no:cacheprovider", layout / "docs_src",
               shell=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 passed" in proc.stdout
    no_kernel_left()


def test_run_tests_sh_ignores_executed_copies_expanded_by_the_shell(layout: Path,
                                                                     make_notebook) -> None:
    this_tests("nbtest.cli.select_notebooks")
    make_notebook("docs_src/callback.executed.ipynb", ["x = 1"])
    collect = "-- --collect-only -q"
    assert ids(run(f"./run_tests.sh callback* {collect}", layout, shell=True)) == CALLBACKS
    assert ids(run(f"../run_tests.sh callback* {collect}", layout / "docs_src",
                   shell=True)) == CALLBACKS
