"""--nbtest-affected never reuses a run whose inputs it did not see as they were read: a file
edited while the notebook ran, a file it read and then rewrote, folders listed, paths found
absent, environment variables, files outside the project, conftest.py files, channels it cannot
fingerprint.
"""

from __future__ import annotations

import json
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.notebooks import write_notebook
from helpers.pytest_sessions import SESSION_TIMEOUT
from test_affected import entry_of, ran, run_affected

import nbtest.affected.fingerprint
import nbtest.callbacks.affected
import nbtest.inkernel.tracker
import nbtest.inkernel.tracker_hooks
from nbtest import this_tests

pytest_plugins = ["pytester"]

PAUSE = "import time\ntime.sleep(3)  # the test edits the inputs meanwhile"


def test_a_file_edited_while_it_runs_is_not_reused(pytester: pytest.Pytester,
                                                   no_kernel_left) -> None:
    """data.txt and pkg/mod.py change while their notebooks sleep after reading them: the
    passes are not reused (`changed while it ran`), the next session runs and fails them."""
    this_tests(nbtest.callbacks.affected.digest_as_read, nbtest.inkernel.tracker.file_stat,
               nbtest.callbacks.affected.AffectedCapture.fingerprint)
    root = pytester.path
    (root / "pyproject.toml").write_text("[tool.pytest.ini_options]\nnbtest = true\n")
    (root / "data.txt").write_text("42\n")
    (root / "pkg").mkdir()
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "mod.py").write_text("VALUE = 42\n")
    write_notebook(root / "data.ipynb", [
        "assert open('data.txt').read().strip() == '42'\nopen('started-data', 'w').close()",
        PAUSE])
    write_notebook(root / "mod.ipynb", [
        "from pkg.mod import VALUE\nassert VALUE == 42\nopen('started-mod', 'w').close()",
        PAUSE])
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:randomly", "-n", "2",
                             "--nbtest-affected"], cwd=root, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        for name in ("data", "mod"):
            wait_for_file_made(root / f"started-{name}", proc)
        (root / "data.txt").write_text("41\n")
        (root / "pkg" / "mod.py").write_text("VALUE = 41\n")
        out, _ = proc.communicate(timeout=SESSION_TIMEOUT)  # hang guard
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0 and "2 passed" in out, out
    report = run_affected(root)
    assert "data.txt changed while it ran (read in cell 1)" in report, report
    assert "pkg/mod.py changed while it ran (read in cell 1)" in report, report
    outcomes, text = ran(pytester)
    assert outcomes == {"data.ipynb": "failed", "mod.ipynb": "failed"}, text
    no_kernel_left()


def wait_for_file_made(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Wait (hang guard) until the empty file `path` exists."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.05)


def test_a_file_read_then_rewritten_always_runs(pytester: pytest.Pytester,
                                                no_kernel_left) -> None:
    """A notebook that reads a file and then rewrites it is never reused (its next run
    reads what it wrote); one that writes a file and reads it back is (its product)."""
    this_tests(nbtest.inkernel.tracker.Tracker.audit)
    root = pytester.path
    (root / "pyproject.toml").write_text("[tool.pytest.ini_options]\nnbtest = true\n")
    (root / "count.txt").write_text("0")
    write_notebook(root / "counts.ipynb", [
        "n = int(open('count.txt').read())\nassert n < 1, n",
        "open('count.txt', 'w').write(str(n + 1))"])
    write_notebook(root / "product.ipynb", [
        "open('made.txt', 'w').write('x')", "assert open('made.txt').read() == 'x'"])
    assert ran(pytester)[0] == {"counts.ipynb": "passed", "product.ipynb": "passed"}
    assert "count.txt read, then written by the notebook (read in cell 1)" in run_affected(root)
    assert ran(pytester)[0] == {"counts.ipynb": "failed"}
    no_kernel_left()


def test_listings_and_untracked_channels(pytester: pytest.Pytester, no_kernel_left) -> None:
    """A folder listed (glob) is a dependency: a new file there runs the notebook. A run
    that used a subprocess or sqlite is never reused, and `nbtest affected` says so, unless
    the notebook trusts that channel (affected_trust)."""
    this_tests(nbtest.inkernel.tracker.Tracker.other, nbtest.inkernel.tracker.listing_digest,
               "nbtest.affected.store.Checker.reasons")
    root = pytester.path
    (root / "pyproject.toml").write_text("[tool.pytest.ini_options]\nnbtest = true\n")
    (root / "inputs").mkdir()
    (root / "inputs" / "a.csv").write_text("x\n")
    (root / "s.txt").write_text("ok")
    write_notebook(root / "sub.ipynb", [
        "x = 1", "import subprocess\nout = subprocess.run(['cat', 's.txt'], "
        "capture_output=True, text=True).stdout\nassert out == 'ok', out"])
    write_notebook(root / "db.ipynb", ["import sqlite3\nsqlite3.connect(':memory:').close()"])
    write_notebook(root / "globbed.ipynb", [
        "import glob\nassert len(glob.glob('inputs/*.csv')) == 1"])
    write_notebook(root / "trusted.ipynb", ["import subprocess\nsubprocess.run(['true'])"],
                   {"nbtest": {"affected_trust": ["subprocess"]}})
    assert set(ran(pytester)[0]) == {"sub.ipynb", "db.ipynb", "globbed.ipynb",
                                     "trusted.ipynb"}
    report = run_affected(root)
    assert "ran a subprocess (cell 2): will always run" in report, report
    assert "opened a sqlite database (cell 1): will always run" in report, report
    assert set(ran(pytester)[0]) == {"sub.ipynb", "db.ipynb"}
    (root / "inputs" / "b.csv").write_text("y\n")
    assert "globbed.ipynb: the listing of inputs changed" in run_affected(root)
    outcomes, text = ran(pytester)
    assert outcomes == {"sub.ipynb": "passed", "db.ipynb": "passed",
                        "globbed.ipynb": "failed"}, text
    no_kernel_left()


def test_every_input_kind_changed_runs_and_fails(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
        tmp_path_factory: pytest.TempPathFactory, no_kernel_left) -> None:
    """Ten notebooks, each reading one kind of input: after a passing session each input changes
    so that its notebook fails, and the affected session runs all ten (none reused), fails them,
    and `nbtest affected` names why each runs."""
    this_tests(nbtest.inkernel.tracker.Tracker.checked, nbtest.inkernel.tracker.Tracker.variable,
               nbtest.inkernel.tracker_hooks.TrackedEnviron, nbtest.affected.fingerprint.env_value,
               nbtest.affected.fingerprint.conftest_paths, nbtest.affected.fingerprint.path_kind,
               "nbtest.affected.store.Checker.reasons")
    root = pytester.path
    outside = tmp_path_factory.mktemp("outside")  # not under the project root
    (outside / "good.txt").write_text("good")
    (outside / "bad.txt").write_text("bad")
    (outside / "tmp.txt").write_text("good")
    (root / "pyproject.toml").write_text("[tool.pytest.ini_options]\nnbtest = true\n")
    (root / "s.txt").write_text("good")
    (root / "count.txt").write_text("0")
    (root / "inputs").mkdir()
    (root / "inputs" / "a.csv").write_text("x\n")
    (root / "conf").mkdir()
    (root / "conf" / "conftest.py").write_text("import os\nos.environ['NB_CONF'] = 'good'\n")
    db = sqlite3.connect(root / "data.db")
    db.execute("create table t (v text)")
    db.execute("insert into t values ('good')")
    db.commit()
    db.close()
    server = socket.socket()  # bound, not listening: a connection is refused until listen()
    server.bind(("127.0.0.1", 0))
    port = server.getsockname()[1]
    monkeypatch.setenv("NB_NAMED", str(outside / "good.txt"))
    monkeypatch.delenv("NB_LEVEL", raising=False)
    notebooks = {
        "named": "import os\nassert open(os.environ['NB_NAMED']).read() == 'good'",
        "env": "import os\nassert os.getenv('NB_LEVEL', '1') == '1'",
        "tmp": f"assert open({str(outside / 'tmp.txt')!r}).read() == 'good'",
        "sub": "import subprocess\nout = subprocess.run(['cat', 's.txt'], capture_output=True, "
               "text=True).stdout\nassert out == 'good', out",
        "net": f"import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), "
               "timeout=30).close()\nexcept OSError:\n    up = False\nelse:\n    up = True\n"
               "assert not up, 'a server answers'",
        "globbed": "import glob\nassert len(glob.glob('inputs/*.csv')) == 1",
        "db": "import sqlite3\nwith sqlite3.connect('data.db') as db:\n"
              "    assert db.execute('select v from t').fetchone()[0] == 'good'",
        "stop": "import os\nassert not os.path.exists('STOP')",
        "counts": "n = int(open('count.txt').read())\nassert n < 1, n\n"
                  "open('count.txt', 'w').write(str(n + 1))",
        "conf/conf": "import os\nassert os.environ['NB_CONF'] == 'good'",
    }
    for name, source in notebooks.items():
        write_notebook(root / f"{name}.ipynb", [source])
    everything = {f"{name}.ipynb" for name in notebooks}
    try:
        outcomes, text = ran(pytester)
        assert outcomes == dict.fromkeys(everything, "passed"), text
        monkeypatch.setenv("NB_NAMED", str(outside / "bad.txt"))
        monkeypatch.setenv("NB_LEVEL", "2")
        (outside / "tmp.txt").write_text("bad")
        (root / "s.txt").write_text("bad")
        server.listen()
        (root / "inputs" / "b.csv").write_text("y\n")
        with sqlite3.connect(root / "data.db") as db:
            db.execute("update t set v = 'bad'")
        db.close()
        (root / "STOP").write_text("")
        (root / "conf" / "conftest.py").write_text("import os\nos.environ['NB_CONF'] = 'bad'\n")
        report = run_affected(root)
        assert "10 of 10 notebooks would run" in report, report
        for line in (
                "named.ipynb: environment variable NB_NAMED changed",
                "env.ipynb: environment variable NB_LEVEL set",
                f"tmp.ipynb: file changed: {outside / 'tmp.txt'}",
                "sub.ipynb: its last run", "ran a subprocess (cell 1): will always run",
                "net.ipynb: its last run", "opened a network connection (cell 1)",
                "globbed.ipynb: the listing of inputs changed",
                "db.ipynb: its last run", "opened a sqlite database (cell 1)",
                "stop.ipynb: file added: STOP",
                "counts.ipynb: its last run", "count.txt read, then written by the notebook",
                "conf/conf.ipynb: file changed: conf/conftest.py"):
            assert line in report, (line, report)
        outcomes, text = ran(pytester)
        assert outcomes == dict.fromkeys(everything, "failed"), text
        assert "nbtest: 0 of 10 notebooks unchanged" in text, text
    finally:
        server.close()
    no_kernel_left()


def test_verdict_options_and_nbtest_code(pytester: pytest.Pytester, no_kernel_left) -> None:
    """A pytest option that changes verdicts (--runxfail), and nbtest's own code when it is not a
    regular install (here: a checkout on PYTHONPATH), are part of the fingerprint."""
    this_tests(nbtest.affected.fingerprint.verdict_options,
               nbtest.affected.fingerprint.nbtest_code, "nbtest.affected.store.Checker.reasons")
    root = pytester.path
    (root / "pyproject.toml").write_text("[tool.pytest.ini_options]\nnbtest = true\n")
    write_notebook(root / "plain.ipynb", ["x = 1"])
    assert ran(pytester)[0] == {"plain.ipynb": "passed"}
    assert ran(pytester)[0] == {}
    outcomes, text = ran(pytester, "--runxfail")
    assert outcomes == {"plain.ipynb": "passed"}, text  # xfail markers now fail or pass
    assert ran(pytester, "--runxfail")[0] == {}
    assert "plain.ipynb: setting pytest --runxfail changed (True -> None)" in run_affected(root)
    path, entry = entry_of(root, "plain.ipynb")
    assert entry["nbtest_code"] == nbtest.affected.fingerprint.nbtest_code()
    path.write_text(json.dumps({**entry, "nbtest_code": "0" * 32, "exists": {
        "gone.txt": "file", "pyproject.toml": "folder"}, "env": {"NB_WAS_SET": "0" * 32}}))
    report = run_affected(root)
    for reason in ("nbtest's own code changed", "file removed: gone.txt",
                   "pyproject.toml is now a file", "environment variable NB_WAS_SET unset"):
        assert reason in report, (reason, report)
    no_kernel_left()
