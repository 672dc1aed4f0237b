"""nbtest is loaded into every pytest session of its environment: where a session does not use
it, the session's outcomes, exit code and report are those of pytest without nbtest.

Each case is one plain `.py` project run twice in a real subprocess, with nbtest installed and
with `-p no:nbtest`, and the two outputs compared line by line once the lines that name the
loaded plugins and the timings are set aside.
"""

from __future__ import annotations

import json
import os
import re
import textwrap
from pathlib import Path

import pytest
from helpers.pytest_sessions import MARKED_PY, output, run_pytest

import nbtest
from nbtest import this_tests

pytest_plugins = ["pytester"]

CASES: dict[str, dict[str, str]] = {
    "collection_error": {"test_bad.py": "import no_such_module_for_nbtest_xyz\n"},
    "syntax_error": {"test_syntax.py": "def test_x(:\n    pass\n",
                     "test_ok.py": "def test_ok():\n    pass\n"},
    "import_error_in_conftest_helper": {
        "helper.py": "raise ImportError('helper is broken')\n",
        "test_uses.py": "import helper\n\ndef test_x():\n    pass\n"},
    "module_level_skip": {
        "test_skipmod.py": "import pytest\npytest.skip('not here', allow_module_level=True)\n",
        "test_ok.py": "def test_ok():\n    pass\n"},
    "xfail_and_xpass": {"test_xf.py": """
import pytest

@pytest.mark.xfail(reason="known")
def test_xfail():
    assert False

@pytest.mark.xfail(reason="fixed?")
def test_xpass():
    pass

@pytest.mark.xfail(strict=True)
def test_xpass_strict():
    pass
"""},
    "fixture_errors": {"test_fix.py": """
import pytest

@pytest.fixture
def broken_setup():
    raise RuntimeError("setup broke")

@pytest.fixture
def broken_teardown():
    yield 1
    raise RuntimeError("teardown broke")

def test_setup(broken_setup):
    pass

def test_teardown(broken_teardown):
    pass

def test_fails():
    assert 1 == 2

def test_passes():
    pass
"""},
    "markers_of_the_seed_unregistered": {"test_marked.py": textwrap.dedent(MARKED_PY)},
    "conftest_declares_runslow": {
        "conftest.py": """
import pytest

def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False, help="run slow tests")
    parser.addoption("--skipint", action="store_true", default=False, help="skip int")

def pytest_collection_modifyitems(config, items):
    if not config.getoption("--runslow"):
        for item in items:
            if "slow" in item.keywords:
                item.add_marker(pytest.mark.skip(reason="project: give --runslow"))
""",
        "test_slow.py": """
import pytest

@pytest.mark.slow
def test_slow():
    pass

def test_fast():
    pass
"""},
    "nothing_collected": {"notes.txt": "no tests here\n"},
    "a_notebook_but_nbtest_not_asked": {
        "test_ok.py": "def test_ok():\n    pass\n",
        "stray.ipynb": "{ this is not even JSON",
    },
}
# Sessions with options a plain project uses: -ra, -x, --strict-markers, xdist, --runslow.
OPTIONS = {
    "collection_error": [["-ra"], ["-n", "2"]],
    "syntax_error": [["-ra"], ["-x"]],
    "import_error_in_conftest_helper": [["-ra"]],
    "module_level_skip": [["-rA"], ["-n", "2", "-rA"]],
    "xfail_and_xpass": [["-rA"], ["-n", "2", "-rA"]],
    "fixture_errors": [["-rA"], ["-x", "-rA"], ["-n", "2", "-rA"]],
    "markers_of_the_seed_unregistered": [["-rA"], ["--strict-markers", "-rA"]],
    "conftest_declares_runslow": [["-rA"], ["--runslow", "-rA"], ["--skipint", "-rA"]],
    "nothing_collected": [[]],
    "a_notebook_but_nbtest_not_asked": [["-rA"]],
}
# Lines that name what is loaded, or time it: they differ by construction, not by behaviour.
_VARIES = re.compile(r"^(platform |cachedir:|rootdir:|plugins:|configfile:|created: |"
                     r"\d+ workers? \[|\[gw\d\] |initialized: |ready: )")
_TIMING = re.compile(r" in \d+\.\d+s( \(\d+:\d+:\d+\))?")


def _unprogressed(line: str) -> str:
    """A progress line with its letters sorted (xdist prints them as workers finish)."""
    match = re.match(r"^([.FEsxX]+)(\s+\[\s*\d+%\])$", line)
    return "".join(sorted(match.group(1))) + match.group(2) if match else line


def _comparable(text: str) -> list[str]:
    lines = []
    for line in text.splitlines():
        if _VARIES.match(line.strip()):
            continue
        lines.append(_TIMING.sub(" in Ns", line.rstrip()))
    return lines


@pytest.mark.parametrize("case,options", [(case, opts) for case, variants in OPTIONS.items()
                                          for opts in variants],
                         ids=lambda value: "_".join(value) if isinstance(value, list) else value)
def test_plain_session_is_the_same_with_and_without_nbtest(pytester: pytest.Pytester,
                                                           case: str,
                                                           options: list[str]) -> None:
    this_tests("nbtest.plugin.state.nbtest_active",
               "nbtest.plugin.pytest_load_initial_conftests")
    for name, text in CASES[case].items():
        (pytester.path / name).write_text(text.lstrip("\n"))
    args = ["-p", "no:cacheprovider", "-p", "no:randomly", *options]
    without = run_pytest(pytester, "-p", "no:nbtest", *args)
    with_nbtest = run_pytest(pytester, *args)
    seen = _comparable(output(with_nbtest))
    # nbtest's own frames: its package folder, not any path that merely contains "nbtest"
    # (a checkout cloned into a folder named nbtest has its venv under .../nbtest/.venv).
    ours_path = str(Path(nbtest.__file__).resolve().parent) + os.sep
    assert not [line for line in seen if "INTERNALERROR" in line or ours_path in line], seen
    assert with_nbtest.ret == without.ret, output(with_nbtest)
    for stream in ("stdout", "stderr"):
        ours = _comparable(getattr(with_nbtest, stream).str())
        theirs = _comparable(getattr(without, stream).str())
        if "-n" in options:  # workers finish in any order: the same lines, not the same order
            ours, theirs = sorted(map(_unprogressed, ours)), sorted(map(_unprogressed, theirs))
        assert ours == theirs


def test_a_collection_error_is_pytests_exit_2_not_an_internal_error(
        pytester: pytest.Pytester) -> None:
    """The bug as reported: a plain failing import ended in an INTERNALERROR through nbtest."""
    this_tests("nbtest.plugin.state.nbtest_active")
    pytester.makepyfile(test_bad="import no_such_module_xyz\n")
    result = run_pytest(pytester, "-v")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert "INTERNALERROR" not in output(result)
    result.stdout.fnmatch_lines(["*ModuleNotFoundError: No module named 'no_such_module_xyz'*",
                                 "*1 error*"])


def test_the_seeds_switches_defer_to_a_conftest_that_declares_them(
        pytester: pytest.Pytester) -> None:
    """In a project that uses nbtest, a conftest's own `--runslow` wins and works as written."""
    this_tests("nbtest.plugin.pytest_load_initial_conftests", "nbtest.plugin.switches.switched_off")
    pytester.makeini("[pytest]\nnbtest = true\n")
    for name, text in CASES["conftest_declares_runslow"].items():
        (pytester.path / name).write_text(text.lstrip("\n"))
    default = run_pytest(pytester, "-rs", "-p", "no:randomly")
    default.assert_outcomes(passed=1, skipped=1)
    default.stdout.fnmatch_lines(["*project: give --runslow*"])
    given = run_pytest(pytester, "--runslow", "--runcpp", "-p", "no:randomly")
    given.assert_outcomes(passed=2)


RECORD_MODULES = """
import json, os, sys

def pytest_unconfigure(config):
    with open(os.environ["NBTEST_MODULES_OUT"], "w") as fh:
        json.dump(sorted(sys.modules), fh)
"""


def test_a_plain_session_imports_no_notebook_machinery(pytester: pytest.Pytester,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Loaded into every session, nbtest must cost it nothing heavy: nbformat (jsonschema),
    nbclient, jupyter_client, zmq and psutil come in only with notebooks."""
    this_tests("nbtest.plugin.state.nbtest_active")
    pytester.makeconftest(RECORD_MODULES)
    pytester.makepyfile(test_ok="def test_ok():\n    pass\n")
    added = {}
    for label, extra in (("with", []), ("without", ["-p", "no:nbtest"])):
        out = pytester.path / f"modules-{label}.json"
        monkeypatch.setenv("NBTEST_MODULES_OUT", str(out))
        result = run_pytest(pytester, "-p", "no:cacheprovider", "-p", "no:randomly", *extra)
        assert result.ret == 0, output(result)
        added[label] = set(json.loads(out.read_text()))
    assert {name.split(".")[0] for name in added["with"] - added["without"]} == {"nbtest"}
