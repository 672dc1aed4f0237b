"""What a pytest session that is killed or terminated mid-notebook leaves behind: SIGTERM is a
clean interrupt (kernels killed, folders removed, also under xdist), and the folders a
SIGKILL leaves (a kernel's connection file holds its HMAC key) are swept by the next run,
while a live session's folders are never touched (nbtest/kernel/folders.py)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from helpers.processes import cli_env, pid_gone
from helpers.pytest_sessions import output, run_pytest

from nbtest import this_tests
from nbtest.kernel.folders import OWNER_FILE, identity, make_folder, owner_gone, sweep

pytest_plugins = ["pytester"]

HANG_GUARD = 120  # seconds: a session that does not end by then is a failure, never a timing

# Writes NAME.json (the kernel's pid, a child's, its private folder), then waits to be stopped.
WAITS = """
import json, os, pathlib, subprocess, time
from ipykernel.connect import get_connection_file
child = subprocess.Popen(["sleep", "600"])
pathlib.Path("{name}.part").write_text(json.dumps({{
    "folder": os.path.dirname(get_connection_file()), "pids": [os.getpid(), child.pid]}}))
os.replace("{name}.part", "{name}.json")
time.sleep(600)
"""


@pytest.fixture
def temp_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A temp dir of the test's own (TMPDIR, here and in the sessions it starts): the sweeps
    never see the machine's. Short: a unix socket's path has at most 107 bytes."""
    tmp = Path(tempfile.mkdtemp(prefix="nbf-"))
    monkeypatch.setenv("TMPDIR", str(tmp))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    yield tmp
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture
def start_pytest(pytester: pytest.Pytester) -> Iterator[Callable[..., subprocess.Popen]]:
    """`start_pytest(*args)`: a real pytest session in the background, in a session of its
    own; whatever is left of it is killed at teardown."""
    started: list[subprocess.Popen] = []

    def start(*args: str) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "-m", "pytest", "--nbtest", "-p", "no:cacheprovider",
             *args], cwd=pytester.path, env=cli_env(),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        proc.communicate()


def wait_for(paths: list[Path], proc: subprocess.Popen) -> list[dict]:
    """What each notebook wrote once it runs (hang guard: HANG_GUARD s)."""
    deadline = time.monotonic() + HANG_GUARD
    while not all(p.exists() for p in paths):
        if proc.poll() is not None:
            raise AssertionError(f"pytest exited ({proc.returncode}) first:\n"
                                 f"{proc.communicate()[0]}")
        assert time.monotonic() < deadline, "the notebooks did not start"
        time.sleep(0.05)
    return [json.loads(p.read_text()) for p in paths]


def ours(temp: Path) -> list[str]:
    return sorted(p.name for p in temp.iterdir() if p.name.startswith("nbtest-"))


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["plain", "xdist"])
def test_sigterm_to_pytest_stops_the_kernels_and_removes_their_folders(
        pytester: pytest.Pytester, pytester_notebook: Callable[..., Path], temp_dir: Path,
        start_pytest: Callable[..., subprocess.Popen], no_kernel_left: Callable[[], None],
        workers: list[str]) -> None:
    """SIGTERM (to pytest alone: under xdist the workers get it from the controller) ends
    the session as Ctrl-C does: exit 2, every kernel and its child gone, no folder left;
    under xdist the workers end with it, at once."""
    this_tests("nbtest.kernel.interrupt.terminate_as_interrupt",
               "nbtest.kernel.interrupt.xdist_workers", "nbtest.plugin.pytest_configure")
    names = ["a", "b"] if workers else ["a"]
    for name in names:
        pytester_notebook(f"{name}.ipynb", [WAITS.format(name=name)])
    proc = start_pytest(*workers, *[f"{n}.ipynb" for n in names])
    seen = wait_for([pytester.path / f"{n}.json" for n in names], proc)
    helpers = [p.pid for p in psutil.Process(proc.pid).children()]  # workers, template
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=HANG_GUARD)
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, out
    assert "KeyboardInterrupt" in out
    assert all(pid_gone(pid) for s in seen for pid in s["pids"]), out
    assert all(pid_gone(pid) for pid in helpers)
    assert ours(temp_dir) == [], out
    no_kernel_left()


def test_sigkill_leaves_folders_that_the_next_run_removes(
        pytester: pytest.Pytester, pytester_notebook: Callable[..., Path], temp_dir: Path,
        start_pytest: Callable[..., subprocess.Popen], no_kernel_left: Callable[[], None]
        ) -> None:
    """Nothing can clean up after SIGKILL: the kernel's folder (with its connection file)
    stays; it names its dead owner, so the next run removes it."""
    this_tests(make_folder, sweep, "nbtest.kernel.launch.private_folder")
    pytester_notebook("a.ipynb", [WAITS.format(name="a")])
    proc = start_pytest("a.ipynb")
    seen, = wait_for([pytester.path / "a.json"], proc)
    proc.kill()
    proc.communicate(timeout=HANG_GUARD)
    folder = Path(seen["folder"])
    assert (folder / "kernel.json").exists()  # left behind, as nothing could remove it
    assert json.loads((folder / OWNER_FILE).read_text())["pid"] == proc.pid
    for pid in seen["pids"]:  # the kernel ends by itself once it sees its parent gone
        if not pid_gone(pid, timeout=30):
            psutil.Process(pid).kill()
    (pytester.path / "a.ipynb").unlink()
    pytester_notebook("b.ipynb", ["x = 1"])
    result = run_pytest(pytester, "--nbtest", "-p", "no:cacheprovider", "b.ipynb")
    result.assert_outcomes(passed=1)
    assert ours(temp_dir) == [], output(result)
    no_kernel_left()


def test_the_sweep_removes_only_our_folders_whose_owner_is_gone(temp_dir: Path) -> None:
    """Folders of a live owner (this process, another one), without owner.json (being made,
    or an older nbtest's), of another naming, or of another pid namespace stay; those of an
    exited owner, or of a pid now another process's (its start time differs), go."""
    this_tests(sweep, owner_gone, identity)
    other = subprocess.Popen(["sleep", "600"])
    gone = subprocess.Popen(["true"])
    gone.wait()
    try:
        me, them = identity(), identity(other.pid)
        owners = {
            "nbtest-live0000": me, "nbtest-fork-live1111": them,
            "nbtest-dead0000": {**me, "pid": gone.pid},
            "nbtest-fork-dead1111": {**me, "pid": gone.pid},
            "nbtest-reused00": {**them, "started": them["started"] - 100},
            "nbtest-elsewher": {**me, "pid": gone.pid, "pidns": "pid:[1]"},
            "other-dead0000": {**me, "pid": gone.pid},
            "nbtest-dead000": {**me, "pid": gone.pid},  # 7 characters: not mkdtemp's
            "nbtest-noowner0": None,
        }
        for name, owner in owners.items():
            (temp_dir / name).mkdir()
            if owner is not None:
                (temp_dir / name / OWNER_FILE).write_text(json.dumps(owner))
            (temp_dir / name / "kernel.json").write_text("{}")
        (temp_dir / "nbtest-notadir").write_text(json.dumps({**me, "pid": gone.pid}))
        removed = sweep(str(temp_dir))
        assert sorted(Path(p).name for p in removed) == [
            "nbtest-dead0000", "nbtest-fork-dead1111", "nbtest-reused00"]
        assert sorted(p.name for p in temp_dir.iterdir()) == [
            "nbtest-dead000", "nbtest-elsewher", "nbtest-fork-live1111", "nbtest-live0000",
            "nbtest-noowner0", "nbtest-notadir", "other-dead0000"]
    finally:
        other.kill()
        other.wait()


def test_a_folder_names_its_owner(temp_dir: Path) -> None:
    """make_folder writes owner.json: this process, as identity() describes it."""
    this_tests(make_folder, identity)
    folder = Path(make_folder())
    try:
        assert folder.parent == temp_dir and folder.name.startswith("nbtest-")
        assert json.loads((folder / OWNER_FILE).read_text()) == identity()
        assert not owner_gone(identity())
    finally:
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()
