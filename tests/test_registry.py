"""The this_tests registry: real pytest sessions (pytester, real kernels) on a small project,
`nbtest execute --registry`, the `nbtest registry` commands, and the functions underneath.

The project (tests/registry_helpers.py) is a package `acmelib` with `.py` tests and notebooks;
its registry is `acmelib/test_registry.json`. Kernel starts (17): the full run (5 notebooks,
serial and -n 2), per-cell items (2), a notebook that forgot this_tests under `error`, the
interrupted session, `nbtest execute` with and without `--registry` (3). No test asserts a
time; the timeouts are hang guards.
"""

from __future__ import annotations

import contextlib
import functools
import json
import multiprocessing
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytester_helpers import output, run_pytest
from registry_helpers import INJECTING, NOTEBOOKS, QUOTED, make_project

import nbtest.registry.api
from nbtest import this_tests
from nbtest.callbacks.registry import RegistryCapture
from nbtest.errors import RegistryError, ThisTestsError
from nbtest.registry.api import (
    KernelRecorder,
    in_api,
    qualified_name,
    resolve_all,
    set_recorder,
    show_tests,
    source_digest,
)
from nbtest.registry.cmd import public_functions
from nbtest.registry.file import (
    Registry,
    find_registry_path,
    format_entries,
    run_command,
    update_registry_file,
)
from nbtest.registry.session import RegistrySession

pytest_plugins = ["pytester"]

REGISTRY = "acmelib/test_registry.json"
# Hang guard for a subprocess (seconds); never a speed assertion.
HANG = 180

# What `pytest tests docs` writes for the project: keys sorted, entries sorted, indent 2.
EXPECTED = r"""{
  "acmelib.core.Learner": [
    {
      "cell": 1,
      "file": "docs/x'); import os; os._exit(3); ('.ipynb",
      "test": "x'); import os; os._exit(3); ('.ipynb"
    },
    {
      "file": "tests/test_core.py",
      "line": 36,
      "test": "test_several_and_duplicates"
    }
  ],
  "acmelib.core.Learner.fit": [
    {
      "cell": 3,
      "file": "docs/uses.ipynb",
      "test": "uses.ipynb"
    },
    {
      "file": "tests/test_core.py",
      "line": 14,
      "test": "test_fit"
    },
    {
      "file": "tests/test_core.py",
      "line": 20,
      "test": "test_unbound_and_property"
    }
  ],
  "acmelib.core.Learner.predict": [
    {
      "file": "tests/test_core.py",
      "line": 29,
      "test": "test_strings"
    }
  ],
  "acmelib.core.Learner.size": [
    {
      "cell": 5,
      "file": "docs/uses.ipynb",
      "test": "uses.ipynb"
    },
    {
      "file": "tests/test_core.py",
      "line": 20,
      "test": "test_unbound_and_property"
    }
  ],
  "acmelib.core.add": [
    {
      "cell": 3,
      "file": "docs/uses.ipynb",
      "test": "uses.ipynb"
    },
    {
      "file": "tests/test_core.py",
      "line": 9,
      "test": "test_add"
    },
    {
      "file": "tests/test_core.py",
      "line": 36,
      "test": "test_several_and_duplicates"
    },
    {
      "file": "tests/test_core.py",
      "line": 29,
      "test": "test_strings"
    },
    {
      "file": "tests/test_more.py",
      "line": 13,
      "test": "test_errors_at_once"
    }
  ],
  "acmelib.core.mul": [
    {
      "cell": 1,
      "file": "docs/dies.ipynb",
      "test": "dies.ipynb"
    },
    {
      "file": "tests/test_more.py",
      "line": 8,
      "test": "test_mul"
    }
  ],
  "acmelib.core.scaled": [
    {
      "cell": 2,
      "file": "docs/it's \"q\".ipynb",
      "test": "it's \"q\".ipynb"
    },
    {
      "file": "tests/test_core.py",
      "line": 24,
      "test": "test_wrapped"
    }
  ],
  "acmelib.extra.helper": [
    {
      "cell": 5,
      "file": "docs/uses.ipynb",
      "test": "uses.ipynb"
    },
    {
      "file": "tests/test_core.py",
      "line": 29,
      "test": "test_strings"
    }
  ]
}
"""


# -- fixtures and helpers ------------------------------------------------------------------


@pytest.fixture
def project(pytester: pytest.Pytester, make_notebook, monkeypatch: pytest.MonkeyPatch
            ) -> Iterator[Path]:
    """The acmelib project in the pytester folder, without notebooks (add them with
    `notebooks(...)`); kernels (started in docs/) import acmelib through PYTHONPATH."""
    monkeypatch.setenv("PYTHONPATH", str(pytester.path))
    monkeypatch.delenv("NBTEST", raising=False)
    yield make_project(pytester.path, make_notebook, notebooks={})


@pytest.fixture
def notebooks(pytester: pytest.Pytester, make_notebook):  # type: ignore[no-untyped-def]
    """`notebooks(*names)`: write these notebooks of NOTEBOOKS under docs/."""

    def write(*names: str) -> None:
        make_project(pytester.path, make_notebook, {name: NOTEBOOKS[name] for name in names})

    return write


@pytest.fixture
def acme(pytester: pytest.Pytester, project: Path) -> None:
    """acmelib importable in this process (pytester restores sys.path and sys.modules)."""
    pytester.syspathinsert()


@contextlib.contextmanager
def recording(api: tuple[str, ...] = ("acmelib",)) -> Iterator[nbtest.registry.api.TestRecorder]:
    """A fresh recorder for the acmelib API in place of the outer session's one (this test's
    own this_tests calls go to the outer one, outside the block)."""
    recorder = nbtest.registry.api.TestRecorder(api)
    outer = set_recorder(recorder)
    try:
        yield recorder
    finally:
        set_recorder(outer)


def child_env() -> dict[str, str]:
    """Our environment for a pytest or nbtest subprocess, without the outer session's
    pytest or nbtest variables."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith("PYTEST_") and k != "NBTEST"}


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_pytest(root: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
                            cwd=root, env=child_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, preexec_fn=_default_sigint)


def nbtest_cmd(root: Path, *args: str) -> subprocess.CompletedProcess:
    """`python -m nbtest.cli ARGS` in the project folder."""
    return subprocess.run([sys.executable, "-m", "nbtest.cli", *args], cwd=root,
                          env=child_env(), capture_output=True, text=True, timeout=HANG,
                          preexec_fn=_default_sigint)


def registry_text(root: Path) -> str:
    return (root / REGISTRY).read_text()


def write_registry(root: Path, data: dict) -> str:
    """Write `data` as the project's registry, in the file's own format; return the text."""
    registry = Registry({name: list(items) for name, items in data.items()})
    text = registry.to_json()
    (root / REGISTRY).write_text(text)
    return text


def entry(file: str, test: str, line: int | None = None, cell: int | None = None) -> dict:
    found = {"file": file, "test": test}
    found.update({"line": line} if line is not None else {"cell": cell})
    return found


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


def test_full_run_serial_then_xdist(pytester: pytest.Pytester, project: Path, notebooks,
                                    no_kernel_left) -> None:
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
    notebooks(*NOTEBOOKS)
    registry = project / REGISTRY

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

    show = nbtest_cmd(project, "registry", "show", "acmelib.core.add")
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
    listed = nbtest_cmd(project, "registry", "list")
    assert listed.returncode == 0, listed.stderr
    counts = {name: int(count) for count, name in map(str.split, listed.stdout.splitlines())}
    assert counts == {name: len(items) for name, items in json.loads(EXPECTED).items()}
    assert counts["acmelib.core.add"] == 5


def test_per_cell_items_record_the_same(pytester: pytest.Pytester, project: Path, notebooks,
                                       no_kernel_left) -> None:
    """--nbtest-cells: the notebook's entries are the same (test = the notebook's name), and a
    notebook that forgot this_tests is listed once, not per cell."""
    this_tests(RegistrySession.pytest_nbtest_notebook_done, RegistryCapture.on_notebook_end)
    notebooks("uses.ipynb", "forgot.ipynb")
    result = run_pytest(pytester, "-p", "no:cacheprovider", "--nbtest-cells", "docs")
    result.assert_outcomes(passed=5)
    uses = {"file": "docs/uses.ipynb", "test": "uses.ipynb"}
    assert json.loads(registry_text(project)) == {
        "acmelib.core.Learner.fit": [{**uses, "cell": 3}],
        "acmelib.core.Learner.size": [{**uses, "cell": 5}],
        "acmelib.core.add": [{**uses, "cell": 3}],
        "acmelib.extra.helper": [{**uses, "cell": 5}],
    }
    assert attention(result) == ["docs/forgot.ipynb"]
    no_kernel_left()


# -- .py tests: capture, modes, stale entries, no API --------------------------------------


def test_missing_calls_warn_error_off(pytester: pytest.Pytester, project: Path, notebooks,
                                      no_kernel_left) -> None:
    """warn (default) lists the forgetful tests and passes; error lists them and fails (the
    file is still written); off says nothing, also from the ini."""
    this_tests(RegistrySession.pytest_terminal_summary, RegistrySession.pytest_sessionfinish,
               RegistrySession.pytest_runtest_logreport,
               RegistrySession.pytest_nbtest_notebook_done)
    notebooks("forgot.ipynb")
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
    assert json.loads(registry_text(project)) == {
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
                                                project: Path, notebooks) -> None:
    """Entries of a file that is gone are dropped; entries of tests not run are kept (even a
    notebook's, even under a name that no longer exists); a test that ran replaces its old
    entries, so test_add, which stopped calling this_tests(mul), is no longer under mul."""
    this_tests(Registry.merged, update_registry_file, RegistrySession.pytest_sessionfinish)
    notebooks("uses.ipynb")
    write_registry(project, {
        "acmelib.core.mul": [entry("tests/test_core.py", "test_add", line=9),
                             entry("tests/gone.py", "test_gone", line=3),
                             entry("docs/uses.ipynb", "uses.ipynb", cell=3)],
        "acmelib.core.gone": [entry("tests/test_more.py", "test_mul", line=8)],
        "acmelib.core.add": [entry("docs/removed.ipynb", "removed.ipynb", cell=2),
                             entry("tests/test_core.py", "test_wrapped", line=24)],
    })
    result = run_pytest(pytester, "-p", "no:cacheprovider", "tests/test_core.py::test_add")
    assert result.ret == pytest.ExitCode.OK
    assert registry_text(project) == """\
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


def test_no_api_only_validates(pytester: pytest.Pytester, project: Path) -> None:
    """Without `api` the registry is off: this_tests still rejects what is not a function,
    accepts anything callable, writes no file and lists nobody."""
    this_tests(nbtest.registry.api.this_tests, "nbtest.plugin.session.start_registry")
    (project / "pyproject.toml").write_text(
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
    assert not (project / REGISTRY).exists()
    assert "Attention" not in output(result)


def test_decorated_test_records_its_def_line(pytester: pytest.Pytester, project: Path) -> None:
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
    assert json.loads(registry_text(project)) == {
        "acmelib.core.add": [entry("test_deco.py", "test_param", line=7)]}


def test_method_in_a_class_gets_a_command_that_runs_it(pytester: pytest.Pytester,
                                                       project: Path) -> None:
    this_tests(RegistrySession.pytest_runtest_call, run_command)
    pytester.makepyfile(test_cls='''
        from acmelib.core import add
        from nbtest import this_tests


        class TestAdd:
            def test_method(self):
                this_tests(add)
        ''')
    assert run_pytest(pytester, "-p", "no:cacheprovider", "test_cls.py").ret == 0
    (item,) = json.loads(registry_text(project))["acmelib.core.add"]
    command = shlex.split(run_command(item))
    rerun = run_pytest(pytester, "-p", "no:cacheprovider", *command[1:])
    rerun.assert_outcomes(passed=1)


# -- two sessions at once, corrupt files, Ctrl-C -------------------------------------------


def test_two_sessions_at_once_lose_nothing(project: Path) -> None:
    """Two pytest processes with the same registry, started together on disjoint files: the
    file holds the union of their entries (each merges under the lock)."""
    this_tests(update_registry_file, RegistrySession.pytest_sessionfinish)
    expected = json.loads(EXPECTED)
    wanted = {name: [e for e in items if e["file"].startswith("tests/")]
              for name, items in expected.items()}
    wanted = {name: items for name, items in wanted.items() if items}
    for _ in range(2):  # twice: the second pair merges into the first pair's file
        first = start_pytest(project, "tests/test_core.py")
        second = start_pytest(project, "tests/test_more.py")
        outs = [proc.communicate(timeout=HANG)[0] for proc in (first, second)]
        assert [first.returncode, second.returncode] == [0, 0], outs
        assert json.loads(registry_text(project)) == wanted


def test_corrupt_registry_is_never_overwritten(pytester: pytest.Pytester,
                                               project: Path) -> None:
    """`{bad` at the start: a usage error naming the file, which keeps its bytes, also under
    -n 2. Corrupted during the session: the session fails naming it, and it stays corrupt."""
    this_tests(Registry.load, "nbtest.plugin.session.start_registry", update_registry_file)
    registry = project / REGISTRY
    registry.write_bytes(b"{bad")
    for extra in ([], ["-n", "2"]):
        result = run_pytest(pytester, "-p", "no:cacheprovider", *extra, "tests")
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        assert str(registry) in output(result)
        assert "cannot be read" in output(result)
        assert registry.read_bytes() == b"{bad"

    result = corrupt_during_session(pytester, registry)
    assert result.ret != pytest.ExitCode.OK
    assert str(registry) in output(result)
    assert registry.read_bytes() == b'["not", "an object"]'

    for bad in ("", "[]", '{"acmelib.core.add": {"file": "x"}}'):
        registry.write_text(bad)
        if bad:
            with pytest.raises(RegistryError, match="cannot be read"):
                Registry.load(registry)
        else:  # an empty file is an empty registry
            assert Registry.load(registry).entries == {}


def corrupt_during_session(pytester: pytest.Pytester, registry: Path) -> pytest.RunResult:
    """A session whose one test replaces the (valid) registry by a JSON list."""
    registry.write_text("{}\n")
    pytester.makepyfile(test_corrupts=f'''
        from pathlib import Path
        from acmelib.core import add
        from nbtest import this_tests

        def test_corrupts():
            this_tests(add)
            Path({str(registry)!r}).write_bytes(b'["not", "an object"]')
        ''')
    return run_pytest(pytester, "-p", "no:cacheprovider", "test_corrupts.py")


def test_corrupt_at_session_end_is_a_clear_error(pytester: pytest.Pytester,
                                                 project: Path) -> None:
    this_tests(RegistrySession.pytest_sessionfinish)
    registry = project / REGISTRY
    result = corrupt_during_session(pytester, registry)
    assert registry.read_bytes() == b'["not", "an object"]'
    assert "Traceback" not in output(result) and "INTERNALERROR" not in output(result)
    assert "1 passed" in output(result)
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_interrupted_session_writes_nothing(project: Path, make_notebook,
                                            no_kernel_left) -> None:
    """SIGINT while a notebook sleeps, after the .py tests and the notebook's first cell
    recorded their entries: the session ends as interrupted and the file keeps its bytes."""
    this_tests(RegistrySession.pytest_sessionfinish)
    make_notebook(project / "docs" / "sleeps.ipynb", [
        "from nbtest import this_tests\nfrom acmelib.core import add\nthis_tests(add)",
        "open('started', 'w').close()\nimport time\ntime.sleep(120)"])
    before = write_registry(project, {"acmelib.core.mul": [
        entry("tests/test_core.py", "test_add", line=9)]})

    proc = start_pytest(project, "tests/test_core.py", "docs/sleeps.ipynb")
    started = project / "docs" / "started"
    deadline = time.monotonic() + HANG
    while not started.exists():
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, "the notebook never started its sleep"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=HANG)[0]
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, out
    assert registry_text(project) == before
    no_kernel_left()


# -- nbtest execute --registry -------------------------------------------------------------


def test_execute_records_only_with_registry(project: Path, make_notebook, notebooks,
                                            no_kernel_left) -> None:
    """Without --registry the file is untouched; with it, the notebook's old entries are
    replaced by this run's (cells counted with markdown), others kept; the in-kernel errors
    are exact; nothing of the capture shows in the executed notebook."""
    this_tests("nbtest.cli.cmd_execute", "nbtest.cli._record_registry", RegistryCapture,
               RegistryCapture.on_notebook_end, KernelRecorder)
    notebooks("uses.ipynb")
    make_notebook(project / "docs" / "plain.ipynb", NOTEBOOKS["uses.ipynb"][:5])
    before = write_registry(project, {
        "acmelib.core.mul": [entry("docs/uses.ipynb", "uses.ipynb", cell=2),
                             entry("tests/test_more.py", "test_mul", line=8)]})

    plain = nbtest_cmd(project, "execute", "docs/plain.ipynb")
    assert plain.returncode == 0, plain.stderr
    assert registry_text(project) == before

    recorded = nbtest_cmd(project, "execute", "--registry", "docs/uses.ipynb")
    assert recorded.returncode == 0, recorded.stderr
    uses = {"file": "docs/uses.ipynb", "test": "uses.ipynb"}
    assert json.loads(registry_text(project)) == {
        "acmelib.core.Learner.fit": [{**uses, "cell": 3}],
        "acmelib.core.Learner.size": [{**uses, "cell": 5}],
        "acmelib.core.add": [{**uses, "cell": 3}],
        "acmelib.core.mul": [entry("tests/test_more.py", "test_mul", line=8)],
        "acmelib.extra.helper": [{**uses, "cell": 5}],
    }
    executed = (project / "docs" / "uses.executed.ipynb").read_text()
    assert "nbtest-this-tests" not in executed and "_nbtest_startup" not in executed
    cells = json.loads(executed)["cells"]
    assert [c.get("outputs") for c in cells if c["cell_type"] == "code"][:3] == [[], [], []]
    assert "".join(cells[5]["outputs"][0]["text"]) == "errors ok\n"
    no_kernel_left()


def test_execute_validates_against_the_api_without_registry(project: Path, make_notebook,
                                                            no_kernel_left) -> None:
    this_tests("nbtest.cli.cmd_execute", "nbtest.kernel.startup.startup_code")
    make_notebook(project / "docs" / "outside.ipynb",
                  ['from nbtest import this_tests\nthis_tests("os.path.join")'])
    result = nbtest_cmd(project, "execute", "docs/outside.ipynb")
    no_kernel_left()
    assert "'os.path.join' is not in the acmelib API" in result.stderr
    assert result.returncode == 1


# -- nbtest registry missing / check, show_tests -------------------------------------------


def test_registry_missing_and_check(project: Path) -> None:
    """`missing` lists public API functions no test names (not private ones, not names left
    out of __all__, not re-exports, not other packages); `check` exits 0, then 1 naming a
    function removed from acmelib."""
    this_tests("nbtest.registry.cmd.run", public_functions)
    write_registry(project, {
        "acmelib.core.add": [entry("tests/test_core.py", "test_add", line=9)],
        "acmelib.core.Learner.fit": [entry("tests/test_core.py", "test_fit", line=14)],
        "acmelib.core.mul": [entry("tests/test_more.py", "test_mul", line=8)],
    })
    missing = nbtest_cmd(project, "registry", "missing")
    assert missing.returncode == 0, missing.stderr
    *names, total = missing.stdout.splitlines()
    assert set(names) - {"acmelib.core.Learner.size"} == {
        "acmelib.core.Learner", "acmelib.core.Learner.predict", "acmelib.core.logged",
        "acmelib.core.scaled", "acmelib.extra.helper"}
    assert names == sorted(names)
    assert total == f"{len(names)} public functions, classes or methods without a test"

    check = nbtest_cmd(project, "registry", "check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "up to date" in check.stdout

    core = project / "acmelib" / "core.py"
    core.write_text(core.read_text().replace("def mul(a, b):\n    return a * b\n", ""))
    stale = nbtest_cmd(project, "registry", "check")
    assert stale.returncode == 1, stale.stdout + stale.stderr
    assert "stale: acmelib.core.mul no longer exists (tests: tests/test_more.py)" \
        in stale.stdout
    assert "acmelib.core.add" not in stale.stdout


def test_registry_show_resolves_like_show_tests(project: Path) -> None:
    this_tests("nbtest.registry.cmd.run", show_tests)
    write_registry(project, {
        "acmelib.core.add": [entry("tests/test_core.py", "test_add", line=9)]})
    shown = nbtest_cmd(project, "registry", "show", "acmelib.add")
    assert "pytest -sv tests/test_core.py::test_add" in shown.stdout


def test_command_of_a_quoted_path_runs_it() -> None:
    this_tests(run_command)
    quoted = {"file": f"docs/{QUOTED}", "test": QUOTED, "cell": 2}
    assert shlex.split(run_command(quoted)) == ["pytest", f"docs/{QUOTED}"]


def test_show_tests_markdown(project: Path, acme: None) -> None:
    """show_tests(func, registry=path): Markdown listing each test with its command; the
    registry is found from pyproject.toml when not given; a re-export resolves."""
    this_tests(show_tests, format_entries, find_registry_path)
    write_registry(project, {"acmelib.core.add": [
        entry("tests/test_core.py", "test_add", line=9),
        entry("docs/uses.ipynb", "uses.ipynb", cell=3)]})
    import acmelib
    from acmelib.core import add, mul

    expected = ("Tests found for `acmelib.core.add`:\n\n"
                "* `pytest docs/uses.ipynb` (cell 3)\n"
                "* `pytest -sv tests/test_core.py::test_add` (line 9)")
    shown = show_tests(add, registry=str(project / REGISTRY))
    assert type(shown).__name__ == "Markdown"
    assert shown.data == expected
    assert show_tests("acmelib.add").data == expected  # found from the cwd's pyproject.toml
    assert show_tests(acmelib.add, registry=str(project / REGISTRY)).data == expected
    assert show_tests(mul, registry=str(project / REGISTRY)).data == (
        "No tests found for `acmelib.core.mul`. To contribute a test, call "
        "`this_tests(acmelib.core.mul)`.")
    assert find_registry_path(project / "docs") == project / REGISTRY


# -- this_tests in this process -------------------------------------------------------------


def test_this_tests_resolves_every_kind_of_callable(acme: None) -> None:
    this_tests(nbtest.registry.api.this_tests, qualified_name, resolve_all,
               nbtest.registry.api.TestRecorder.record)
    import acmelib
    from acmelib.core import Learner, add, scaled

    class Local:
        @classmethod
        def make(cls) -> None: ...

    names = [
        (add, "acmelib.core.add"),
        (acmelib.add, "acmelib.core.add"),  # a re-export: where it is defined
        (Learner, "acmelib.core.Learner"),
        (Learner.fit, "acmelib.core.Learner.fit"),  # unbound
        (Learner().fit, "acmelib.core.Learner.fit"),  # bound: the live object
        (Learner.size, "acmelib.core.Learner.size"),  # a property: its getter
        (Learner.size.fget, "acmelib.core.Learner.size"),
        (scaled, "acmelib.core.scaled"),  # @functools.wraps: the wrapped function
        ("acmelib.core.Learner.size", "acmelib.core.Learner.size"),
        ("acmelib.add", "acmelib.core.add"),
        ("acmelib.core.Learner.fit", "acmelib.core.Learner.fit"),
        (os.path.join, "posixpath.join"),
    ]
    for func, name in names:
        assert qualified_name(func) == name, func
    assert "acmelib.extra" not in sys.modules  # a module not imported yet is imported
    assert qualified_name("acmelib.extra.helper") == "acmelib.extra.helper"
    assert "acmelib.extra" in sys.modules
    for bad in ("acmelib.core add", "acmelib.core.nope", "acmelib.nope.add", "acmelib",
                "acmelib.core", "nosuchpackage.f", "", 42, None, 3.5, Learner().size,
                functools.partial(add, 1), lambda: None, Local.make):
        with pytest.raises(ThisTestsError) as info:
            qualified_name(bad)
        assert str(info.value) == f"'{bad}' is not a function"

    with recording() as recorder:
        nbtest.registry.api.this_tests(add, Learner().fit, "na", "acmelib.core.add", acmelib.add)
        nbtest.registry.api.this_tests("na")
        nbtest.registry.api.this_tests(Learner.size, scaled, add)
    assert recorder.names == ["acmelib.core.add", "acmelib.core.Learner.fit",
                              "acmelib.core.Learner.size", "acmelib.core.scaled"]
    assert recorder.called


def test_this_tests_errors_at_once(acme: None) -> None:
    """Each bad argument raises at the call, with the exact message, and nothing of that
    call is recorded; "na" alone counts as a call. No recorder: validation only."""
    this_tests(nbtest.registry.api.this_tests, resolve_all, in_api)
    from acmelib.core import add, mul

    cases = [
        ("acmelib.core add", "'acmelib.core add' is not a function"),
        ("acmelib.core.nope", "'acmelib.core.nope' is not a function"),
        (42, "'42' is not a function"),
        ("os.path.join", "'os.path.join' is not in the acmelib API"),
        (os.path.join, "'posixpath.join' is not in the acmelib API"),
        ("acmelibx.add", "'acmelibx.add' is not in the acmelib API"),
        (len, "'builtins.len' is not in the acmelib API"),
    ]
    with recording() as recorder:
        for bad, message in cases:
            with pytest.raises(ThisTestsError) as info:
                nbtest.registry.api.this_tests(add, bad, mul)
            assert str(info.value) == message
        assert recorder.names == [] and not recorder.called
        nbtest.registry.api.this_tests("na")
        assert recorder.names == [] and recorder.called

        set_recorder(None)  # no recorder: validation only, any package
        nbtest.registry.api.this_tests(os.path.join, "na", add)
        with pytest.raises(ThisTestsError, match="^'a b' is not a function$"):
            nbtest.registry.api.this_tests("a b")

    with pytest.raises(ThisTestsError) as info:
        resolve_all(["os.path.join"], ("acmelib", "acmelibx"))
    assert str(info.value) == "'os.path.join' is not in the acmelib, acmelibx API"
    assert resolve_all(["acmelibx.add", "na", add], ("acmelib", "acmelibx")) == [
        "acmelibx.add", "acmelib.core.add"]


def test_in_api() -> None:
    this_tests(in_api)
    assert in_api("acmelib.core.add", ["acmelib"])
    assert in_api("acmelib", ["acmelib"])
    assert not in_api("acmelibx.add", ["acmelib"])
    assert not in_api("acme.add", ["acmelib"])
    assert in_api("acmelibx.add", ["acmelib", "acmelibx"])
    assert in_api("anything.at.all", [])


# -- the in-kernel recorder and the registry file ------------------------------------------


def test_kernel_recorder_cells_and_file(tmp_path: Path) -> None:
    """Calls land in the file at once, each with the cell IPython was about to run (matched by
    digest, in order, so equal sources get their own numbers); other code leaves it be."""
    this_tests(KernelRecorder, KernelRecorder.pre_run_cell, KernelRecorder.record,
               source_digest)
    path = tmp_path / "calls.jsonl"

    class Info:
        def __init__(self, raw_cell: str) -> None:
            self.raw_cell = raw_cell

    cells = [[2, source_digest("x = 1")], [3, source_digest("this_tests(f)")],
             [5, source_digest("this_tests(f)")]]
    recorder = KernelRecorder(str(path), ["acmelib"], cells)
    assert recorder.api == ("acmelib",)
    recorder.record(["early"])
    for source, names in [("x = 1", ["a"]), ("this_tests(f)", ["b"]),
                          ("this_tests(f)", ["d", "e"])]:
        recorder.pre_run_cell(Info(source))
        recorder.record(names)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(line["names"], line["cell"]) for line in lines] == [
        (["early"], None), (["a"], 2), (["b"], 3), (["d", "e"], 5)]
    assert source_digest("x = 1") != source_digest("x = 2")
    assert len(source_digest("\udcff")) == 16


def test_registry_file_format_and_merge(tmp_path: Path) -> None:
    this_tests(Registry, Registry.add, Registry.to_json, Registry.merged, Registry.load,
               Registry.save)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_x.py").write_text("")
    registry = Registry()
    registry.add("pkg.b", entry("tests/test_x.py", "test_b", line=12))
    registry.add("pkg.a", entry("tests/test_x.py", "test_z", line=3))
    registry.add("pkg.a", entry("docs/n.ipynb", "n.ipynb", cell=5))
    registry.add("pkg.a", entry("tests/test_x.py", "test_a", line=30))
    registry.add("pkg.a", entry("tests/test_x.py", "test_a", line=30))  # once
    registry.add("pkg.empty", entry("x", "y", line=1))
    registry.entries["pkg.empty"].clear()  # a name left without entries is not written
    text = registry.to_json()
    assert json.loads(text) == {
        "pkg.a": [entry("docs/n.ipynb", "n.ipynb", cell=5),
                  entry("tests/test_x.py", "test_a", line=30),
                  entry("tests/test_x.py", "test_z", line=3)],
        "pkg.b": [entry("tests/test_x.py", "test_b", line=12)]}
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"
    path = tmp_path / "sub" / "reg.json"
    assert Registry.load(path).entries == {}  # missing: empty
    registry.save(path)
    assert path.read_text() == text
    assert Registry.load(path).to_json() == text

    merged = Registry.load(path).merged(
        Registry({"pkg.c": [entry("tests/test_x.py", "test_a", line=30)]}),
        ran={("tests/test_x.py", "test_a")}, root=tmp_path)
    # test_a ran: its entries are replaced; docs/n.ipynb does not exist: pruned.
    assert merged.entries == {"pkg.a": [entry("tests/test_x.py", "test_z", line=3)],
                              "pkg.b": [entry("tests/test_x.py", "test_b", line=12)],
                              "pkg.c": [entry("tests/test_x.py", "test_a", line=30)]}


def _update_in_process(args: tuple[str, str, int]) -> None:
    path, root, index = args
    new = Registry({f"pkg.f{index}": [entry("tests/test_x.py", f"test_{index}", line=index)]})
    update_registry_file(path, new, [("tests/test_x.py", f"test_{index}")], Path(root))


def test_update_registry_file_from_many_processes(tmp_path: Path) -> None:
    """Eight processes merging at once under the lock: every entry is in the file."""
    this_tests(update_registry_file)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_x.py").write_text("")
    path = tmp_path / "reg.json"
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        pool.map(_update_in_process, [(str(path), str(tmp_path), i) for i in range(1, 9)])
    assert sorted(Registry.load(path).entries) == [f"pkg.f{i}" for i in range(1, 9)]
    assert not list(tmp_path.glob(".reg.json.*"))  # no temporary file left

    path.write_text("{bad")
    with pytest.raises(RegistryError) as info:
        _update_in_process((str(path), str(tmp_path), 9))
    assert str(path) in str(info.value)
    assert path.read_text() == "{bad"


def test_run_command_and_format() -> None:
    this_tests(run_command, format_entries)
    assert run_command(entry("tests/test_x.py", "test_a", line=3)) == \
        "pytest -sv tests/test_x.py::test_a"
    assert run_command(entry("docs/n.ipynb", "n.ipynb", cell=2)) == "pytest docs/n.ipynb"
    assert format_entries("pkg.f", []).startswith("No tests found for `pkg.f`.")
    assert format_entries("pkg.f", [entry("tests/t.py", "test_a", line=3)]) == (
        "Tests found for `pkg.f`:\n\n* `pytest -sv tests/t.py::test_a` (line 3)")
