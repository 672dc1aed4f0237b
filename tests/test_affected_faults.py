"""--nbtest-affected under faults: a mistyped cache entry, a cache that cannot be written, a run
that is interrupted or whose kernel never starts. Each means "run it" or a warning, never an
INTERNALERROR, a lost summary or a file left in the temp folder.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from helpers.notebooks import write_notebook
from helpers.processes import wait_for_file
from helpers.pytest_sessions import SESSION_TIMEOUT
from test_affected import ENTRIES, build_project, entry_of, ran, run_affected

import nbtest.affected.schema
import nbtest.affected.store
import nbtest.callbacks.affected
import nbtest.kernel.interrupt
import nbtest.plugin.affected
from nbtest import this_tests
from nbtest.affected.schema import ENTRY_SCHEMA
from nbtest.affected.store import Store, new_entry

pytest_plugins = ["pytester"]

# A value of the wrong type for each field of an entry (settings, cells, files, dists and
# depends first).
MISTYPED = {"settings": None, "cells": "xx", "files": [1, 2], "dists": None, "depends": "x",
            "format": "1", "notebook": None, "status": "fine", "nbtest": 3,
            "interpreter": ["cpython"], "commit": 7, "time": "yesterday", "why": {},
            "kernelspec": None, "cache": "yes", "listings": [1], "env": {"X": 1},
            "exists": {"a": "elsewhere"}, "nbtest_code": 5, "products": "model.json",
            "inputs": [3]}
# Fields an entry may lack (older entries, and `inputs` is for entries other than passes).
OPTIONAL = {"listings", "env", "exists", "nbtest_code", "products", "inputs"}


def a_passed_entry(notebook: str) -> dict:
    """A well-formed passed entry, as the session writes one."""
    return new_entry(notebook, "passed", "abc1234", settings={"kernel": "python3", "timeout": 5},
                     cells=[[1, "d" * 32]], files={"data/d.csv": "e" * 32},
                     dists={"pytest": "8.0"}, depends={"*.bin": {"w.bin": "f" * 32}},
                     listings={"inputs": "a" * 32}, env={"NB_LEVEL": "unset"},
                     exists={"data": "folder"}, nbtest_code="c" * 32, products=["out.json"],
                     inputs=["data/d.csv"],
                     kernelspec="k" * 32, cache=True)


def test_every_field_is_checked(tmp_path: Path) -> None:
    """Each field of an entry mistyped, missing or unknown: no entry, a reason naming it."""
    this_tests(nbtest.affected.store.Store.load, nbtest.affected.schema.schema_problem)
    store = Store(tmp_path)
    good = a_passed_entry("n.ipynb")
    assert set(MISTYPED) == set(ENTRY_SCHEMA) and set(good) | {"why"} == set(ENTRY_SCHEMA)
    store.save(good)
    assert store.load("n.ipynb") == (good, "")
    name = store.path_for("n.ipynb").name
    for field, bad in MISTYPED.items():
        store.path_for("n.ipynb").write_text(json.dumps({**good, field: bad}))
        entry, why = store.load("n.ipynb")
        assert entry is None, field
        if field not in ("format", "notebook"):
            assert why.startswith(f"its cache entry {name} is malformed: field {field!r} is "
                                  "not "), why
    for field in set(good) - {"format", "notebook"} - OPTIONAL:
        store.path_for("n.ipynb").write_text(json.dumps({k: v for k, v in good.items()
                                                         if k != field}))
        assert store.load("n.ipynb")[1].endswith(f"field {field!r} is missing"), field
    store.save({**good, "extra": 1})
    assert store.load("n.ipynb")[1].endswith("unknown field 'extra'")
    failed = new_entry("n.ipynb", "failed", None, why="cell 1: boom")
    store.save(failed)
    assert store.load("n.ipynb") == (failed, "")  # a failure needs no fingerprint


def test_mistyped_entries_run_and_are_rewritten(pytester: pytest.Pytester,
                                                no_kernel_left) -> None:
    """Five mistyped fields (settings, cells, files, dists, depends) in real entries: each
    notebook runs (no INTERNALERROR), `nbtest affected` says why, and its entry is written anew."""
    this_tests(nbtest.affected.store.Checker.decide,
               nbtest.plugin.affected.AffectedSession.deselect)
    project = build_project(pytester.path)
    for name in ("nb5", "nb6"):
        write_notebook(project / f"{name}.ipynb", [f"{name} = 1"])
    ran(pytester)
    bad = dict(zip(("nb1", "nb2", "nb3", "nb5", "nb6"), list(MISTYPED.items())[:5]))
    for name, (field, value) in bad.items():
        path, entry = entry_of(project, f"{name}.ipynb")
        path.write_text(json.dumps({**entry, field: value}))
    report = run_affected(project)
    for name, (field, _) in bad.items():
        assert f"  {name}.ipynb: its cache entry " in report
        assert f" is malformed: field {field!r} is not " in report, report
    outcomes, text = ran(pytester)
    assert set(outcomes) == {f"{name}.ipynb" for name in bad} | {"nb4.ipynb"}, text
    assert "INTERNALERROR" not in text
    assert set(ran(pytester)[0]) == {"nb4.ipynb"}
    no_kernel_left()


def session(root: Path, *args: str, env: dict[str, str] | None = None,
            ) -> tuple[int, str]:
    """(exit status, output) of `pytest --nbtest-affected ARGS` in `root`, its output
    through pipes (no file written for it)."""
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:randomly",
                           "--nbtest-affected", *args], cwd=root, capture_output=True,
                          text=True, timeout=SESSION_TIMEOUT, env={**os.environ, **(env or {})})
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.parametrize("workers", [pytest.param([], id="serial"),
                                     pytest.param(["-n", "2"], id="xdist")])
def test_cache_folder_cannot_be_made(pytester: pytest.Pytester, workers: list[str],
                                     no_kernel_left) -> None:
    """A file where the entries' folder goes (as a read-only cache): one warning, every
    notebook runs, the summary line and the exit status are those of a plain run."""
    this_tests(nbtest.plugin.affected.AffectedSession.warn_unwritable,
               nbtest.plugin.affected.AffectedSession.deselect)
    project = build_project(pytester.path)
    (project / ENTRIES).parent.mkdir(parents=True)
    (project / ENTRIES).write_text("not a folder")
    for _ in range(2):
        code, text = session(project, *workers)
        assert code == 1 and "INTERNALERROR" not in text, text
        assert "1 failed, 3 passed" in text, text
        assert text.count("could not write the --nbtest-affected cache") == 1, text
        assert "nbtest: 0 of 4 notebooks unchanged" in text
    no_kernel_left()


FULL_DISK = """\
import resource, signal


def pytest_sessionfinish(session):
    # From here on every write to a file fails (EFBIG), as on a full disk.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
"""


@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs RLIMIT_FSIZE")
def test_full_disk_at_the_end(pytester: pytest.Pytester, no_kernel_left) -> None:
    """Entries that cannot be written after the notebooks passed: a warning, the summary
    line and exit 0 (pytest's own cache warns alike); nothing half-written stays."""
    this_tests(nbtest.plugin.affected.AffectedSession.pytest_sessionfinish,
               nbtest.affected.store.Store.save)
    project = build_project(pytester.path)
    (project / "conftest.py").write_text(FULL_DISK)
    code, text = session(project, "nb1.ipynb", "nb2.ipynb", "nb3.ipynb")
    assert code == 0 and "3 passed" in text and "Traceback" not in text, text
    assert text.count("could not write the --nbtest-affected cache") == 1, text
    assert [p.name for p in (project / ENTRIES).iterdir()] == []
    no_kernel_left()


@pytest.fixture
def tmp() -> Iterator[Path]:
    """A temp folder for the session under test, with a short path (kernels' IPC sockets
    live under it, and a socket's path has at most 107 bytes)."""
    folder = Path(tempfile.mkdtemp(prefix="nbt-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def leftovers(tmp: Path) -> list[str]:
    """The tracker files left anywhere under the temp folder `tmp`."""
    return sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*affected*"))


def test_kernel_that_never_starts_leaves_nothing(pytester: pytest.Pytester, tmp: Path,
                                                 no_kernel_left) -> None:
    """A kernel whose process exits at once: the run errors, no tracker file stays."""
    this_tests(nbtest.callbacks.affected.AffectedCapture.before_kernel_start)
    kernels = pytester.path / "jupyter" / "kernels" / "broken"
    kernels.mkdir(parents=True)
    (kernels / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-c", "import sys; sys.exit(3)", "{connection_file}"],
        "display_name": "broken", "language": "python"}))
    (pytester.path / "project").mkdir()
    project = pytester.path / "project"
    (project / "pyproject.toml").write_text("[tool.pytest.ini_options]\nnbtest = true\n")
    write_notebook(project / "nb.ipynb", ["x = 1"])
    code, text = session(project, "--nbtest-kernel", "broken", "--nbtest-startup-timeout", "10",
                         env={"TMPDIR": str(tmp), "JUPYTER_PATH": str(kernels.parent.parent)})
    assert code == 1 and "INTERNALERROR" not in text, text
    assert leftovers(tmp) == []
    no_kernel_left()


@pytest.mark.parametrize("signum,workers", [
    pytest.param(signal.SIGINT, [], id="ctrl-c"),
    pytest.param(signal.SIGTERM, [], id="sigterm"),
    pytest.param(signal.SIGINT, ["-n", "2"], id="ctrl-c-xdist"),
    pytest.param(signal.SIGTERM, ["-n", "2"], id="sigterm-xdist")])
def test_interrupted_run_leaves_nothing(pytester: pytest.Pytester, signum: int,
                                        workers: list[str], tmp: Path,
                                        no_kernel_left) -> None:
    """Ctrl-C (to the whole process group, as a terminal sends it) or SIGTERM while
    notebooks run: no tracker file stays in the temp folder."""
    this_tests(nbtest.callbacks.affected.AffectedCapture.on_notebook_end,
               nbtest.kernel.interrupt.terminate_as_interrupt)
    project = pytester.path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text("[tool.pytest.ini_options]\nnbtest = true\n")
    for name in ("a", "b"):
        write_notebook(project / f"{name}.ipynb", [
            f"import time\nopen('started-{name}', 'w').write('1')\ntime.sleep(600)"])
    proc = subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:randomly",
                             "--nbtest-affected", *workers], cwd=project,
                            env={**os.environ, "TMPDIR": str(tmp)}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        for name in ("a", "b") if workers else ("a",):
            wait_for_file(project / f"started-{name}", proc=proc)
        os.killpg(proc.pid, signum) if signum == signal.SIGINT else proc.send_signal(signum)
        out, _ = proc.communicate(timeout=60)  # hang guard
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode != 0, out
    assert leftovers(tmp) == [], out
    no_kernel_left()


def test_old_or_future_passes_are_not_reused(pytester: pytest.Pytester,
                                             no_kernel_left) -> None:
    """A pass older than affected_max_age (7 days by default) or dated in the future runs
    again, with the reason; the limit can be raised or lifted (0)."""
    this_tests(nbtest.affected.store.Checker._age, nbtest.affected.store.Checker.reasons)
    root = pytester.path
    (root / "pyproject.toml").write_text("[tool.pytest.ini_options]\nnbtest = true\n")
    for name in ("old", "future", "fresh"):
        write_notebook(root / f"{name}.ipynb", [f"{name} = 1"])
    ran(pytester)

    def date(name: str, days: float) -> None:
        path, entry = entry_of(root, f"{name}.ipynb")
        then = datetime.now(timezone.utc) + timedelta(days=days)
        path.write_text(json.dumps({**entry, "time": then.strftime("%Y-%m-%dT%H:%M:%SZ")}))

    date("old", -8)
    date("future", 3)
    report = run_affected(root)
    assert " old.ipynb: its pass (" in report and \
        ") is older than 7 days (affected_max_age)" in report, report
    assert " future.ipynb: its pass (" in report and ") is dated in the future" in report
    assert set(ran(pytester)[0]) == {"old.ipynb", "future.ipynb"}
    date("old", -8)
    assert ran(pytester, "--nbtest-affected-max-age", "30")[0] == {}
    assert ran(pytester, "--nbtest-affected-max-age", "0")[0] == {}
    assert set(ran(pytester)[0]) == {"old.ipynb"}
    no_kernel_left()
