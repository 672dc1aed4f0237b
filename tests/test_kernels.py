"""Kernels: IPC transport in a private folder, the environment, unknown kernels, start-up
failures, and a stop that leaves no process of the kernel's tree."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pytest
import zmq
from helpers.processes import kernel_processes, pid_gone
from jupyter_core.utils import run_sync

from nbtest import this_tests
from nbtest.errors import KernelStartError, NoSuchKernelError
from nbtest.kernel.environment import kernel_environment
from nbtest.kernel.launch import RECONNECT_IVL_MS, launch_kernel, start_kernel
from nbtest.kernel.specs import installed_kernels, kernel_argv, kernel_spec
from nbtest.kernel.tree import TOKEN_VAR, kernel_tree, processes_with_token

HANG_GUARD = 60


def _execute(kernel, code: str) -> str:
    """Run `code` in a started kernel and return its stdout."""
    out: list[str] = []

    def hook(msg: dict) -> None:
        if msg["msg_type"] == "stream":
            out.append(msg["content"]["text"])

    reply = run_sync(kernel.kc.execute_interactive)(code, timeout=30, output_hook=hook)
    assert reply["content"]["status"] == "ok", reply["content"]
    return "".join(out)


SPAWN = """
import subprocess
same = subprocess.Popen(["sleep", "600"])
away = subprocess.Popen(["sleep", "601"], start_new_session=True)
print(same.pid, away.pid)
"""


def test_kernel_talks_ipc_in_a_private_folder_and_kill_leaves_nothing(tmp_path: Path,
                                                                      no_kernel_left) -> None:
    this_tests(start_kernel, "nbtest.kernel.launch.launch_kernel",
               "nbtest.kernel.launch.Kernel.kill", processes_with_token)
    # Spawned on purpose: a kernel forked from a template that the xdist controller started
    # (and this worker adopted) carries the controller's environment in /proc/PID/environ,
    # so the leak detector's per-process tag would not match it, whichever template was warm.
    kernel = run_sync(start_kernel)("python3", tmp_path, {"EXTRA_VAR": "x"}, 60, fork="no")
    assert kernel.start_method == "spawn"
    folder = Path(kernel.folder)
    try:
        # rwx for us only (jupyter_client adds the sticky bit, against tmp cleaners).
        assert stat.S_IMODE(folder.stat().st_mode) & 0o777 == 0o700
        info = json.loads((folder / "kernel.json").read_text())
        assert info["transport"] == "ipc"
        assert info["ip"].startswith(str(folder) + os.sep)
        proc = psutil.Process(kernel.pid)
        assert proc.cwd() == str(tmp_path)
        seen = _execute(kernel, "import os, sys\nprint(os.environ['NBTEST'], "
                        f"os.environ['{TOKEN_VAR}'], os.environ['EXTRA_VAR'], sys.prefix)")
        # NBTEST=1, the token, the extra variable; the venv's own kernel, not a global one.
        assert seen.rstrip("\n").split(" ", 3) == ["1", kernel.token, "x", sys.prefix]
        # Every Jupyter channel is a unix socket inside the private folder.
        conns = proc.net_connections(kind="all")
        bound = {c.laddr for c in conns if c.family.name == "AF_UNIX" and c.laddr}
        assert {f"{info['ip']}-{info[k]}" for k in
                ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")} <= bound
        assert all(path.startswith(str(folder)) for path in bound)
        # The client retries its connects soon, not after zmq's default 100 ms: a kernel that
        # binds just after the client's first try is usable at once.
        assert kernel.kc.shell_channel.socket.getsockopt(zmq.RECONNECT_IVL) == RECONNECT_IVL_MS
        # No TCP port for the protocol. The one loopback listener that may exist is ipykernel's
        # own IOPub pipe for forked subprocesses (bound atomically by the kernel and
        # authenticated by a random id: no port race, no foreign client of the protocol).
        tcp = [c for c in proc.net_connections(kind="tcp") if c.status == psutil.CONN_LISTEN]
        print("kernel TCP listeners:", [(c.laddr.ip, c.laddr.port) for c in tcp])
        assert len(tcp) <= 1 and all(c.laddr.ip == "127.0.0.1" for c in tcp)
        # Children, one of them in a new session (out of the kernel's process group).
        same, away = map(int, _execute(kernel, SPAWN).split())
        # Popen returns once the child execs (vfork), which can be a moment before the new
        # program's environment is readable in /proc: give the scan that moment.
        deadline = time.monotonic() + 10
        while not {p.pid for p in processes_with_token(kernel.token)} >= {same, away} \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        assert {p.pid for p in processes_with_token(kernel.token)} >= {same, away}
        # The tests' own leak detector sees all of them (so its silence elsewhere means much).
        assert {p.pid for p in kernel_processes()} >= {kernel.pid, same, away}
        assert kernel.pid in {p.pid for p in kernel_processes(kernels_only=True)}
    finally:
        kernel.kill()
    assert not folder.exists()
    assert pid_gone(kernel.pid) and pid_gone(same) and pid_gone(away)
    kernel.kill()  # a second kill is harmless
    no_kernel_left()


def test_installed_kernels_and_unknown_names() -> None:
    this_tests(installed_kernels, kernel_spec)
    kernels = installed_kernels()
    assert "python3" in kernels
    kernel_spec("python3")
    with pytest.raises(NoSuchKernelError) as info:
        kernel_spec("julia-0.1", "nb.ipynb")
    err = info.value
    assert err.message.startswith("nb.ipynb: no kernel named 'julia-0.1' is installed")
    assert "python3" in err.installed and "--kernel" in err.message
    assert err.kernel == "julia-0.1" and err.exit_code == 2


@pytest.mark.parametrize(("given", "expected"), [
    (None, "module://matplotlib_inline.backend_inline"),
    ("TkAgg", "module://matplotlib_inline.backend_inline"),
    ("agg", "agg"),
    ("module://my.backend", "module://my.backend"),
])
def test_kernel_environment(monkeypatch: pytest.MonkeyPatch, given: str | None,
                            expected: str) -> None:
    this_tests(kernel_environment)
    if given is None:
        monkeypatch.delenv("MPLBACKEND", raising=False)
    else:
        monkeypatch.setenv("MPLBACKEND", given)
    monkeypatch.setenv("NBTEST", "0")
    env = kernel_environment({"NBTEST_NOTEBOOK": "/x.ipynb"})
    assert env["MPLBACKEND"] == expected
    assert env["NBTEST"] == "1"
    assert env["NBTEST_NOTEBOOK"] == "/x.ipynb"
    assert env["PATH"] == os.environ["PATH"]


@pytest.mark.parametrize("given", [{}, {"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "0"},
                                   {"KMP_BLOCKTIME": "200"}])
def test_kernels_wait_passively_unless_the_user_chose(monkeypatch: pytest.MonkeyPatch,
                                                      given: dict[str, str]) -> None:
    """An idle kernel's OpenMP threads do not spin (that took the CPU of the kernel beside
    it under -n 2), unless the user set OpenMP's waiting: then theirs is kept."""
    this_tests(kernel_environment)
    for name in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME"):
        monkeypatch.delenv(name, raising=False)
    for name, value in given.items():
        monkeypatch.setenv(name, value)
    env = kernel_environment({})
    assert env.get("OMP_WAIT_POLICY") == given.get("OMP_WAIT_POLICY",
                                                   None if given else "PASSIVE")
    assert all(env[name] == value for name, value in given.items())


def _fake_kernelspec(root: Path, name: str, argv: list[str]) -> None:
    spec = root / "kernels" / name
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps(
        {"argv": argv, "display_name": name, "language": "python"}))


def test_kernelspec_lookup_order_is_jupyters_own(tmp_path: Path, monkeypatch) -> None:
    this_tests(kernel_spec)
    # Jupyter's folders are searched first, IPython's legacy `kernels` folder last, as the
    # default search does; the legacy folder is still found, when nothing else has the name.
    monkeypatch.setattr("nbtest.kernel.specs._specs", {})
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "share"))
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    _fake_kernelspec(tmp_path / "share", "both", ["jupyter-folder"])
    _fake_kernelspec(tmp_path / "ipython", "both", ["ipython-folder"])
    _fake_kernelspec(tmp_path / "ipython", "legacy", ["ipython-folder"])
    assert kernel_spec("both").argv == ["jupyter-folder"]
    assert kernel_spec("legacy").argv == ["ipython-folder"]
    with pytest.raises(NoSuchKernelError, match="no kernel named 'nowhere'"):
        kernel_spec("nowhere")


def test_the_quick_argv_lookup_agrees_with_the_full_one(tmp_path: Path, monkeypatch) -> None:
    this_tests(kernel_argv, kernel_spec)
    # The fork template's early start reads kernel.json itself; what it finds must be what a
    # kernel then starts from, and what it cannot find goes through the full lookup.
    monkeypatch.setattr("nbtest.kernel.specs._specs", {})
    monkeypatch.setenv("JUPYTER_PATH", f"{tmp_path / 'first'}{os.pathsep}{tmp_path / 'second'}")
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    _fake_kernelspec(tmp_path / "first", "both", ["first-folder"])
    _fake_kernelspec(tmp_path / "second", "both", ["second-folder"])
    _fake_kernelspec(tmp_path / "second", "late", ["second-folder"])
    _fake_kernelspec(tmp_path / "ipython", "legacy", ["ipython-folder"])
    broken = tmp_path / "first" / "kernels" / "late"
    broken.mkdir()
    (broken / "kernel.json").write_text("{not json")
    for name in ("both", "legacy", "python"):
        assert kernel_argv(name) == list(kernel_spec(name).argv), name
    assert kernel_argv("both") == ["first-folder"]
    assert kernel_argv("late") == ["second-folder"]  # a broken spec is passed over
    with pytest.raises(NoSuchKernelError, match="no kernel named 'nowhere'"):
        kernel_argv("nowhere")
    out = subprocess.run(  # and it needs no jupyter_client, which the template must not wait for
        [sys.executable, "-c", "import sys; from nbtest.kernel.specs import kernel_argv; "
         "print(kernel_argv('both'), 'jupyter_client' in sys.modules)"],
        capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['first-folder'] False"


def test_a_legacy_python3_kernelspec_beats_ipykernels_builtin(tmp_path: Path,
                                                              monkeypatch) -> None:
    this_tests(kernel_spec)
    # With no `python3` in any Jupyter folder, jupyter_client takes IPython's legacy folder
    # before ipykernel's built-in spec; nbtest's quicker lookup must not change that.
    monkeypatch.setattr("nbtest.kernel.specs._specs", {})
    only_ours = lambda *parts: [str(tmp_path.joinpath("share", *parts))]  # noqa: E731
    monkeypatch.setattr("jupyter_core.paths.jupyter_path", only_ours)
    monkeypatch.setattr("jupyter_client.kernelspec.jupyter_path", only_ours)
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    _fake_kernelspec(tmp_path / "ipython", "python3", ["legacy-python3"])
    assert kernel_spec("python3").argv == ["legacy-python3"]


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """tempfile's folder moved into tmp_path, to see the kernel folders come and go."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def test_kernel_that_exits_at_start_is_a_start_error(tmp_path: Path, monkeypatch, private_tmp,
                                                     no_kernel_left) -> None:
    this_tests(start_kernel, "nbtest.kernel.launch.Kernel.start_failed")
    _fake_kernelspec(tmp_path / "share", "exits", [sys.executable, "-c", "raise SystemExit(5)",
                                                   "{connection_file}"])
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "share"))
    t0 = time.monotonic()
    with pytest.raises(KernelStartError) as info:
        run_sync(start_kernel)("exits", tmp_path, {}, 30, "nb.ipynb")
    print(f"dead-at-start kernel reported after {time.monotonic() - t0:.2f} s")
    assert time.monotonic() - t0 < HANG_GUARD
    assert info.value.message.startswith("nb.ipynb: kernel 'exits' did not start")
    assert info.value.kernel == "exits"
    assert not list(private_tmp.iterdir())  # the private folder is gone
    no_kernel_left()


def test_kernel_that_never_answers_hits_the_startup_timeout(tmp_path: Path, monkeypatch,
                                                            private_tmp, no_kernel_left) -> None:
    this_tests(start_kernel, "nbtest.kernel.launch.Kernel.kill")
    # A "kernel" that starts a grandchild in its own session and then never answers.
    code = ("import subprocess, time; subprocess.Popen(['sleep', '600'], "
            "start_new_session=True); time.sleep(600)")
    _fake_kernelspec(tmp_path / "share", "mute", [sys.executable, "-c", code,
                                                  "{connection_file}"])
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "share"))
    t0 = time.monotonic()
    with pytest.raises(KernelStartError, match="did not start"):
        run_sync(start_kernel)("mute", tmp_path, {}, 2)
    elapsed = time.monotonic() - t0
    print(f"start-up timeout of 2 s reported after {elapsed:.2f} s")
    assert elapsed < HANG_GUARD
    assert not list(private_tmp.iterdir())
    no_kernel_left()


def test_cli_kernel_start_failure_is_one_paragraph(tmp_path: Path, make_notebook, run_cli,
                                                   no_kernel_left) -> None:
    this_tests("nbtest.cli.cmd_execute", start_kernel)
    _fake_kernelspec(tmp_path / "share", "exits", [sys.executable, "-c", "raise SystemExit(5)",
                                                   "{connection_file}"])
    path = make_notebook("nb.ipynb", ["x = 1"], kernel="exits")
    proc = run_cli("execute", path, "--no-progress", env={"JUPYTER_PATH": str(tmp_path / "share")})
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "kernel 'exits' did not start" in proc.stderr
    no_kernel_left()


def _token_sweep(other_token: str) -> tuple[bool, bool]:
    """Start two processes, one with a token and one with `other_token`; which are found?"""
    token = os.urandom(16).hex()
    child = subprocess.Popen(["sleep", "60"], env={**os.environ, TOKEN_VAR: token})
    other = subprocess.Popen(["sleep", "60"],
                             env={**os.environ, TOKEN_VAR: other_token.format(token=token)})
    try:
        found = {p.pid for p in processes_with_token(token)}
        return child.pid in found, other.pid in found
    finally:
        for proc in (child, other):
            proc.kill()
            proc.wait()


def test_processes_with_token_finds_only_that_token() -> None:
    this_tests(processes_with_token)
    assert _token_sweep(os.urandom(16).hex()) == (True, False)


def test_kernel_tree_is_the_descendants_and_the_token_carriers() -> None:
    """One pass over /proc finds what a kill must reach: the kernel, every descendant (one
    that cleared its environment too) and any process that carries the token; nothing else."""
    this_tests("nbtest.kernel.tree.kernel_tree")
    token = os.urandom(16).hex()
    env = {**os.environ, TOKEN_VAR: token}
    tree = subprocess.Popen(["sh", "-c", "sleep 60 & env -i sleep 61 & wait"], env=env)
    away = subprocess.Popen(["sleep", "62"], env=env, start_new_session=True)
    other = subprocess.Popen(["sleep", "63"])
    try:
        deadline = time.monotonic() + 10
        while len(psutil.Process(tree.pid).children()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        kids = {p.pid for p in psutil.Process(tree.pid).children()}
        found = set(kernel_tree(tree.pid, token))
        assert found >= {tree.pid, away.pid, *kids} and len(kids) == 2
        assert other.pid not in found
        assert set(kernel_tree(None, token)) >= {tree.pid, away.pid}
    finally:
        for child in psutil.Process(tree.pid).children():
            child.kill()
        for proc in (tree, away, other):
            proc.kill()
            proc.wait()


def test_processes_with_token_matches_the_whole_value() -> None:
    this_tests(processes_with_token)
    assert _token_sweep("{token}0") == (True, False)


@pytest.mark.parametrize("fork", ["yes", "no"])
def test_a_started_kernel_is_ready_with_only_the_channels_nbtest_uses(tmp_path: Path, fork: str,
                                                                      no_kernel_left) -> None:
    """The start skips jupyter_client's pause after start_kernel, yet its manager reads as
    started (`ready` resolved); the client opens no stdin (allow_stdin is off) and no
    heartbeat channel (the manager says whether the kernel lives)."""
    this_tests(start_kernel, "nbtest.kernel.launch.launch_kernel")
    kernel = run_sync(start_kernel)("python3", tmp_path, {}, 60, fork=fork)
    try:
        assert kernel.km.ready.done() and kernel.km.ready.exception() is None
        assert kernel.km.has_kernel and run_sync(kernel.km.is_alive)()
        assert kernel.kc._stdin_channel is None and kernel.kc._hb_channel is None
        assert not kernel.kc.allow_stdin
        assert _execute(kernel, "print(6 * 7)").strip() == "42"
        assert run_sync(kernel.kc.is_alive)()
    finally:
        kernel.kill()
    no_kernel_left()


def test_fork_options_reach_the_provisioner_as_its_config(tmp_path: Path,
                                                         no_kernel_left) -> None:
    """`fork` and `spawn_if` travel in the kernelspec's provisioner stanza, which
    jupyter_client hands to ForkProvisioner's constructor: nothing is set on the manager."""
    this_tests("nbtest.kernel.launch.launch_kernel",
               "nbtest.kernel.provisioner.ForkProvisioner.launch_kernel")

    def never(preloaded: object) -> None:
        return None

    kernel = run_sync(launch_kernel)("python3", tmp_path, {}, fork="no", spawn_if=never)
    try:
        provisioner = kernel.km.provisioner
        assert (provisioner.fork, provisioner.spawn_if) == ("no", never)
        assert not hasattr(kernel.km, "nbtest_fork") and kernel.start_method == "spawn"
    finally:
        kernel.kill()
    no_kernel_left()
