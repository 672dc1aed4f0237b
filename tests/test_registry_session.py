"""The this_tests registry in real pytest sessions (pytester, real kernels) on the acmelib
project of tests/helpers/registry_project.py: what a run writes, serial and under -n 2, per-cell
items, the forgetful tests listed (warn, error, off), stale entries, no API, where a .py test's
entry points. Kernel starts: the full run (5 notebooks, serial and -n 2), per-cell items (2), a
notebook that forgot this_tests under `error`. No test asserts a time.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from helpers.extras import NEEDS_XDIST
from helpers.pytest_sessions import output, run_pytest
from helpers.registry_project import (
    EXPECTED,
    INJECTING,
    NOTEBOOKS,
    QUOTED,
    REGISTRY,
    entry,
    nbtest_cmd,
    registry_text,
    write_registry,
)

import nbtest.registry.api
from nbtest import this_tests
from nbtest.callbacks.registry import RegistryCapture
from nbtest.inkernel.recorder import KernelRecorder
from nbtest.plugin.registry import RegistrySession
from nbtest.registry.file import Registry, run_command, update_registry_file

pytest_plugins = ["pytester"]


def attention(result: pytest.RunResult) -> list[str]:
    """The node ids listed under the "Attention" line, in order."""
    lines = result.stdout.lines
    start = next((i for i, line in enumerate(lines) if line.startswith("Attention:")), None)
    if start is None:
        return []
    listed = []
    for line in lines[start + 1:]:
        if not line.startswith("  "):
            break
        listed.append(line.strip())
    return listed


# -- the full run: serial, -n 2, the commands on its file ----------------------------------


@NEEDS_XDIST
def test_full_run_serial_then_xdist(pytester: pytest.Pytester, acme_project: Path,
                                    acme_notebooks, no_kernel_left) -> None:
    """`pytest tests docs`: .py entries with file/test/line, notebook entries with
    file/test/cell, bound methods as Class.method, "na" nowhere, the entry of a notebook whose
    kernel died later, quoted and injecting paths recorded as data; the forgetful tests listed.
    `-n 2` writes the same bytes. `nbtest registry show` and `list` read that file."""
    this_tests(nbtest.registry.api.this_tests, nbtest.registry.api.qualified_name,
               RegistrySession.pytest_runtest_call, RegistrySession.pytest_nbtest_notebook_done,
               RegistrySession.pytest_testnodedown, RegistrySession.worker_payload,
               RegistrySession.pytest_terminal_summary, RegistryCapture,
               KernelRecorder.record, KernelRecorder.pre_run_cell,
               "nbtest.kernel.startup.startup_code", update_registry_file, Registry.to_json,
               "nbtest.registry.cmd.run")
    acme_notebooks(*NOTEBOOKS)
    registry = acme_project / REGISTRY

    serial = run_pytest(pytester, "-p", "no:cacheprovider", "-q", "-rA", "tests", "docs")
    # Only dies.ipynb fails: the injecting path ran normally (its cell 2 checks it).
    serial.assert_outcomes(passed=14, failed=1)
    assert f"PASSED docs/{INJECTING}" in serial.stdout.lines
    assert f"PASSED docs/{QUOTED}" in serial.stdout.lines
    assert "FAILED docs/dies.ipynb - cell 2: kernel died" in output(serial)
    assert registry.read_text() == EXPECTED
    assert "na" not in json.loads(EXPECTED)
    assert attention(serial) == ["docs/forgot.ipynb", "tests/test_core.py::test_forgot"]

    registry.unlink()
    parallel = run_pytest(pytester, "-p", "no:cacheprovider", "-q", "-n", "2",
                          "tests", "docs")
    parallel.assert_outcomes(passed=14, failed=1)
    assert registry.read_text() == EXPECTED
    assert attention(parallel) == attention(serial)
    no_kernel_left()

    show = nbtest_cmd(acme_project, "registry", "show", "acmelib.core.add")
    assert show.returncode == 0, show.stderr
    assert show.stdout.splitlines() == [
        "Tests found for `acmelib.core.add`:",
        "",
        "* `pytest docs/uses.ipynb` (cell 3)",
        "* `pytest -sv tests/test_core.py::test_add` (line 9)",
        "* `pytest -sv tests/test_core.py::test_several_and_duplicates` (line 36)",
        "* `pytest -sv tests/test_core.py::test_strings` (line 29)",
        "* `pytest -sv tests/test_more.py::test_errors_at_once` (line 13)",
    ]
    listed = nbtest_cmd(acme_project, "registry", "list")
    assert listed.returncode == 0, listed.stderr
    counts = {name: int(count) for count, name in map(str.split, listed.stdout.splitlines())}
    assert counts == {name: len(items) for name, items in json.loads(EXPECTED).items()}
    assert counts["acmelib.core.add"] == 5


def test_per_cell_items_record_the_same(pytester: pytest.Pytester, acme_project: Path,
                                       acme_notebooks, no_kernel_left) -> None:
    """--nbtest-cells: the notebook's entries are the same (test = the notebook's name), and a
    notebook that forgot this_tests is listed once, not per cell."""
    this_tests(RegistrySession.pytest_nbtest_notebook_done, RegistryCapture.on_notebook_end)
    acme_notebooks("uses.ipynb", "forgot.ipynb")
    result = run_pytest(pytester, "-p", "no:cacheprovider", "--nbtest-cells", "docs")
    result.assert_outcomes(passed=5)
    uses = {"file": "docs/uses.ipynb", "test": "uses.ipynb"}
    assert json.loads(registry_text(acme_project)) == {
        "acmelib.core.Learner.fit": [{**uses, "cell": 3}],
        "acmelib.core.Learner.size": [{**uses, "cell": 5}],
        "acmelib.core.add": [{**uses, "cell": 3}],
        "acmelib.extra.helper": [{**uses, "cell": 5}],
    }
    assert attention(result) == ["docs/forgot.ipynb"]
    no_kernel_left()


# -- .py tests: capture, modes, stale entries, no API --------------------------------------


def test_missing_calls_warn_error_off(pytester: pytest.Pytester, acme_project: Path,
                                      acme_notebooks, no_kernel_left) -> None:
    """warn (default) lists the forgetful tests and passes; error lists them and fails (the
    file is still written); off says nothing, also from the ini."""
    this_tests(RegistrySession.pytest_terminal_summary, RegistrySession.pytest_sessionfinish,
               RegistrySession.pytest_runtest_logreport,
               RegistrySession.pytest_nbtest_notebook_done)
    acme_notebooks("forgot.ipynb")
    forgot = ["tests/test_core.py::test_forgot", "tests/test_core.py::test_add"]

    warn = run_pytest(pytester, "-p", "no:cacheprovider", *forgot)
    assert warn.ret == pytest.ExitCode.OK
    assert attention(warn) == ["tests/test_core.py::test_forgot"]

    error = run_pytest(pytester, "-p", "no:cacheprovider", "--nbtest-this-tests=error",
                       *forgot, "docs/forgot.ipynb")
    error.assert_outcomes(passed=3)
    assert error.ret == pytest.ExitCode.TESTS_FAILED
    assert attention(error) == ["docs/forgot.ipynb", "tests/test_core.py::test_forgot"]
    assert "--nbtest-this-tests=error: the session fails" in output(error)
    assert json.loads(registry_text(acme_project)) == {
        "acmelib.core.add": [entry("tests/test_core.py", "test_add", line=9)]}
    no_kernel_left()

    off = run_pytest(pytester, "-p", "no:cacheprovider", "--nbtest-this-tests=off", *forgot)
    assert off.ret == pytest.ExitCode.OK
    assert "Attention" not in output(off) and "test_forgot" not in output(off)

    pytester.makefile(".ini", pytest="[pytest]\npythonpath = .\nnbtest_this_tests = off\n")
    ini_off = run_pytest(pytester, "-p", "no:cacheprovider", *forgot)
    assert ini_off.ret == pytest.ExitCode.OK
    assert "Attention" not in output(ini_off)


def test_stale_pruned_unrun_kept_rerun_replaced(pytester: pytest.Pytester,
                                                acme_project: Path, acme_notebooks) -> None:
    """Entries of a file that is gone are dropped; entries of tests not run are kept (even a
    notebook's, even under a name that no longer exists); a test that ran replaces its old
    entries, so test_add, which stopped calling this_tests(mul), is no longer under mul."""
    this_tests(Registry.merged, update_registry_file, RegistrySession.pytest_sessionfinish)
    acme_notebooks("uses.ipynb")
    write_registry(acme_project, {
        "acmelib.core.mul": [entry("tests/test_core.py", "test_add", line=9),
                             entry("tests/gone.py", "test_gone", line=3),
                             entry("docs/uses.ipynb", "uses.ipynb", cell=3)],
        "acmelib.core.gone": [entry("tests/test_more.py", "test_mul", line=8)],
        "acmelib.core.add": [entry("docs/removed.ipynb", "removed.ipynb", cell=2),
                             entry("tests/test_core.py", "test_wrapped", line=24)],
    })
    result = run_pytest(pytester, "-p", "no:cacheprovider", "tests/test_core.py::test_add")
    assert result.ret == pytest.ExitCode.OK
    assert registry_text(acme_project) == """\
{
  "acmelib.core.add": [
    {
      "file": "tests/test_core.py",
      "line": 9,
      "test": "test_add"
    },
    {
      "file": "tests/test_core.py",
      "line": 24,
      "test": "test_wrapped"
    }
  ],
  "acmelib.core.gone": [
    {
      "file": "tests/test_more.py",
      "line": 8,
      "test": "test_mul"
    }
  ],
  "acmelib.core.mul": [
    {
      "cell": 3,
      "file": "docs/uses.ipynb",
      "test": "uses.ipynb"
    }
  ]
}
"""


def test_no_api_only_validates(pytester: pytest.Pytester, acme_project: Path) -> None:
    """Without `api` the registry is off: this_tests still rejects what is not a function,
    accepts anything callable, writes no file and lists nobody."""
    this_tests(nbtest.registry.api.this_tests, "nbtest.plugin.session.start_registry")
    (acme_project / "pyproject.toml").write_text(
        '[tool.pytest.ini_options]\npythonpath = ["."]\n\n'
        '[tool.nbtest]\nregistry = "acmelib/test_registry.json"\n')
    pytester.makepyfile(test_plain='''
        import os
        import pytest
        from acmelib.core import add
        from nbtest import this_tests

        def test_validates_only():
            this_tests(add, os.path.join, "os.path.join", "acmelibx.add", "na")
            with pytest.raises(ValueError, match="^'a b' is not a function$"):
                this_tests("a b")
            with pytest.raises(ValueError, match="^'42' is not a function$"):
                this_tests(42)
        ''')
    result = run_pytest(pytester, "-p", "no:cacheprovider", "test_plain.py",
                        "tests/test_core.py")
    assert result.ret == pytest.ExitCode.OK, output(result)
    result.assert_outcomes(passed=9)
    assert not (acme_project / REGISTRY).exists()
    assert "Attention" not in output(result)


def test_decorated_test_records_its_def_line(pytester: pytest.Pytester,
                                             acme_project: Path) -> None:
    this_tests(RegistrySession.pytest_runtest_call)
    pytester.makepyfile(test_deco='''
        import pytest
        from acmelib.core import add
        from nbtest import this_tests


        @pytest.mark.parametrize("n", [1, 2])
        def test_param(n):
            this_tests(add)
        ''')
    result = run_pytest(pytester, "-p", "no:cacheprovider", "test_deco.py")
    result.assert_outcomes(passed=2)
    # Recorded once for both parameters, at the `def` line (7), not the decorator's (6).
    assert json.loads(registry_text(acme_project)) == {
        "acmelib.core.add": [entry("test_deco.py", "test_param", line=7)]}


def test_method_in_a_class_gets_a_command_that_runs_it(pytester: pytest.Pytester,
                                                       acme_project: Path) -> None:
    this_tests(RegistrySession.pytest_runtest_call, run_command)
    pytester.makepyfile(test_cls='''
        from acmelib.core import add
        from nbtest import this_tests


        class TestAdd:
            def test_method(self):
                this_tests(add)
        ''')
    assert run_pytest(pytester, "-p", "no:cacheprovider", "test_cls.py").ret == 0
    (item,) = json.loads(registry_text(acme_project))["acmelib.core.add"]
    command = shlex.split(run_command(item))
    rerun = run_pytest(pytester, "-p", "no:cacheprovider", *command[1:])
    rerun.assert_outcomes(passed=1)
