"""The registry file when sessions collide or break: two pytest sessions at once, a corrupt
file (at the start, during the session), Ctrl-C. Real pytest sessions on the acmelib project
of tests/helpers/registry_project.py; one kernel start (the interrupted session). The timeouts are
hang guards, never speed assertions.
"""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest
from helpers.pytest_sessions import output, run_pytest
from helpers.registry_project import (
    EXPECTED,
    HANG,
    REGISTRY,
    entry,
    registry_text,
    start_pytest,
    write_registry,
)

from nbtest import this_tests
from nbtest.errors import RegistryError
from nbtest.plugin.registry import RegistrySession
from nbtest.registry.file import Registry, update_registry_file

pytest_plugins = ["pytester"]


def test_two_sessions_at_once_lose_nothing(acme_project: Path) -> None:
    """Two pytest processes with the same registry, started together on disjoint files: the
    file holds the union of their entries (each merges under the lock)."""
    this_tests(update_registry_file, RegistrySession.pytest_sessionfinish)
    expected = json.loads(EXPECTED)
    wanted = {name: [e for e in items if e["file"].startswith("tests/")]
              for name, items in expected.items()}
    wanted = {name: items for name, items in wanted.items() if items}
    for _ in range(2):  # twice: the second pair merges into the first pair's file
        first = start_pytest(acme_project, "tests/test_core.py")
        second = start_pytest(acme_project, "tests/test_more.py")
        outs = [proc.communicate(timeout=HANG)[0] for proc in (first, second)]
        assert [first.returncode, second.returncode] == [0, 0], outs
        assert json.loads(registry_text(acme_project)) == wanted


def test_corrupt_registry_is_never_overwritten(pytester: pytest.Pytester,
                                               acme_project: Path) -> None:
    """`{bad` at the start: a usage error naming the file, which keeps its bytes, also under
    -n 2. Corrupted during the session: the session fails naming it, and it stays corrupt."""
    this_tests(Registry.load, "nbtest.plugin.session.start_registry", update_registry_file)
    registry = acme_project / REGISTRY
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
                                                 acme_project: Path) -> None:
    this_tests(RegistrySession.pytest_sessionfinish)
    registry = acme_project / REGISTRY
    result = corrupt_during_session(pytester, registry)
    assert registry.read_bytes() == b'["not", "an object"]'
    assert "Traceback" not in output(result) and "INTERNALERROR" not in output(result)
    assert "1 passed" in output(result)
    assert result.ret == pytest.ExitCode.TESTS_FAILED


def test_interrupted_session_writes_nothing(acme_project: Path, make_notebook,
                                            no_kernel_left) -> None:
    """SIGINT while a notebook sleeps, after the .py tests and the notebook's first cell
    recorded their entries: the session ends as interrupted and the file keeps its bytes."""
    this_tests(RegistrySession.pytest_sessionfinish)
    make_notebook(acme_project / "docs" / "sleeps.ipynb", [
        "from nbtest import this_tests\nfrom acmelib.core import add\nthis_tests(add)",
        "open('started', 'w').close()\nimport time\ntime.sleep(120)"])
    before = write_registry(acme_project, {"acmelib.core.mul": [
        entry("tests/test_core.py", "test_add", line=9)]})

    proc = start_pytest(acme_project, "tests/test_core.py", "docs/sleeps.ipynb")
    started = acme_project / "docs" / "started"
    deadline = time.monotonic() + HANG
    while not started.exists():
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, "the notebook never started its sleep"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=HANG)[0]
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, out
    assert registry_text(acme_project) == before
    no_kernel_left()
