"""Forked and pre-warmed kernels (issue 7, items 2, 3 and 5): isolation and correctness.

A kernel forked from nbtest's warm template must be indistinguishable, for the notebook, from
one started with `python -m ipykernel_launcher`; every fault of issues 2 and 3 behaves the same
with fork on; the kernel pre-started for the next notebook has that notebook's folder and
environment, and one that is never used is shut down, whatever ends the session.

Pre-warming is exercised in real pytest sessions (pytester subprocesses). Each such session is
tagged with a unique environment variable; the template it starts inherits the tag, forked
kernels keep the template's initial environment block and spawned ones get the tag too, so
`/proc/*/environ` tells exactly which processes a session left behind. No test asserts a time:
every wait is a hang guard.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from conftest import (
    cell_text,
    check_no_kernel_left,
    cli_env,
    pid_gone,
    wait_for_file,
    write_notebook,
)
from fake_nvidia_smi import gpu, install
from pytester_helpers import (
    interrupt_once_started,
    junit_properties,
    output,
    run_pytest,
)

from nbtest import this_tests
from nbtest.config import NbTestConfig
from nbtest.execute import run_notebook
from nbtest.kernel.forkserver import ForkServer
from nbtest.kernel.launch import TOKEN_VAR
from nbtest.results import DIED, FAILED, NB_PASSED, NOT_RUN, PASSED, TIMEOUT

pytest_plugins = ["pytester"]

FORK = NbTestConfig.of(fork="yes")
SPAWN = NbTestConfig.of(fork="no")
TAG_VAR = "NBTEST_FORK_PREWARM_TAG"

# One cell that reports what the kernel looks like from inside, as JSON on stdout.
FACTS = textwrap.dedent("""\
    import json, os, random, sys
    print(json.dumps({
        "pid": os.getpid(), "ppid": os.getppid(), "cwd": os.getcwd(),
        "env": dict(os.environ), "argv": sys.argv, "path": sys.path, "name": __name__,
        "modules": sorted(sys.modules), "random": random.random(),
        "own_session": os.getsid(0) == os.getpid() and os.getpgid(0) == os.getpid(),
        "mymod_loaded": "mymod" in sys.modules, "leaked": "leaked" in globals(),
    }))
""")


def facts_of(result: Any, cell: int = 0) -> dict[str, Any]:
    """The JSON printed by the FACTS cell of an executed notebook."""
    assert result.status == NB_PASSED, [(c.status, c.detail, c.error_value)
                                        for c in result.cells]
    return json.loads(cell_text(result.notebook.cells[cell]))


def template_of(pid: int) -> ForkServer | None:
    """This process's warm template whose process is `pid`, if any."""
    return next((s for s in ForkServer._instances.values() if s.process.pid == pid), None)


# --------------------------------------------------------------------------------------------
# One forked kernel after another, and a spawned one to compare with: started once per module.
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def probes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Facts from `first` and `second` (forked, one after the other) and `spawned` (fork=no).

    The template is restarted here so that it starts with NBTEST_PROBE_VAR=before and
    NBTEST_PROBE_GONE set; both are changed after it started, before `second` and `spawned`.
    The stand-in nvidia-smi shows two cards (2000 and 30000 MiB free) throughout.
    """
    work = tmp_path_factory.mktemp("probes")
    (work / "mymod.py").write_text("VALUE = 7\n")
    first = write_notebook(work / "first.ipynb", [FACTS, "import mymod\nleaked = 'first'"])
    second = write_notebook(work / "second.ipynb", [FACTS, "import mymod\nassert mymod.VALUE == 7"])
    spawned = write_notebook(work / "spawned.ipynb", [FACTS, "import mymod"])
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("CUDA_VISIBLE_DEVICES", raising=False)
        mp.delenv("PYTEST_XDIST_WORKER", raising=False)
        install(work / "smi", mp, {"gpus": [gpu(0, free=2000, total=40960),
                                             gpu(1, free=30000, total=40960)]})
        mp.setenv("NBTEST_PROBE_VAR", "before")
        mp.setenv("NBTEST_PROBE_GONE", "yes")
        for server in list(ForkServer._instances.values()):
            server.stop()  # the next forked kernel starts a fresh template, with this env
        found: dict[str, Any] = {"work": work}
        found["first"] = run_notebook(first, FORK)
        mp.setenv("NBTEST_PROBE_VAR", "after")
        mp.delenv("NBTEST_PROBE_GONE")
        found["second"] = run_notebook(second, FORK)
        found["spawned"] = run_notebook(spawned, SPAWN)
        found["templates"] = {s.process.pid: s for s in ForkServer._instances.values()}
    yield found  # the environment is restored: the facts were taken above
    check_no_kernel_left()


def test_forked_kernel_has_its_own_process(probes: dict[str, Any]) -> None:
    this_tests("nbtest.kernel.forkserver.ForkServer.spawn", "nbtest.kernel.provisioner.ForkProvisioner."
               "launch_kernel", "nbtest.execute.NotebookSession.launch")
    assert probes["first"].extras["kernel_start"] == "fork"
    assert probes["second"].extras["kernel_start"] == "fork"
    assert probes["spawned"].extras["kernel_start"] == "spawn"
    first, second, spawned = (facts_of(probes[k]) for k in ("first", "second", "spawned"))
    template = template_of(first["ppid"])
    assert template is not None, "a forked kernel's parent is this process's template"
    assert "nbtest.kernel.template" in " ".join(psutil.Process(template.process.pid).cmdline())
    assert second["ppid"] == first["ppid"]  # the same warm template forked both
    assert len({first["pid"], second["pid"], template.process.pid, os.getpid()}) == 4
    assert spawned["ppid"] == os.getpid()
    # Its own session and process group, as a spawned kernel has: interrupts and the kill of
    # the whole tree reach the kernel and not the template.
    assert first["own_session"] and second["own_session"] and spawned["own_session"]
    assert pid_gone(first["pid"]) and pid_gone(second["pid"])


def test_forked_kernel_runs_in_the_notebooks_folder_with_its_path(
        probes: dict[str, Any]) -> None:
    this_tests("nbtest.kernel.forkserver.ForkServer.spawn")
    work = str(probes["work"])
    first, second, spawned = (facts_of(probes[k]) for k in ("first", "second", "spawned"))
    for facts in (first, second, spawned):
        assert facts["cwd"] == work
        assert facts["argv"][0].endswith("ipykernel_launcher.py")
        assert facts["argv"][1] == "-f" and facts["argv"][2].endswith("kernel.json")
        assert facts["name"] == "__main__"
    # sys.path as a spawned kernel's: ipykernel_launcher drops the script folder and IPython
    # puts '' (the notebook's folder) before site-packages, so `import mymod` works.
    assert first["path"] == second["path"] == spawned["path"]
    assert "" in first["path"]
    assert [c.status for c in probes["second"].cells] == [PASSED, PASSED]


def test_forked_kernel_gets_the_environment_of_now_not_the_templates(
        probes: dict[str, Any]) -> None:
    """Variables outside STARTUP_VARS changed after the template started still reach it, and
    issue 5's pinning (two cards, 2000 and 30000 MiB free) puts the kernel on card 1."""
    this_tests("nbtest.kernel.forkserver.ForkServer.spawn", "nbtest.gpu.probe.kernel_gpu_env")
    first, second, spawned = (facts_of(probes[k]) for k in ("first", "second", "spawned"))
    template = probes["templates"][first["ppid"]]
    assert template.env["NBTEST_PROBE_VAR"] == "before"  # what the template started with
    assert first["env"]["NBTEST_PROBE_VAR"] == "before"
    assert first["env"]["NBTEST_PROBE_GONE"] == "yes"
    assert second["env"]["NBTEST_PROBE_VAR"] == "after"
    assert "NBTEST_PROBE_GONE" not in second["env"]
    for facts, name in ((first, "first"), (second, "second"), (spawned, "spawned")):
        env = facts["env"]
        assert env["NBTEST"] == "1"
        assert env["NBTEST_NOTEBOOK"] == str(probes["work"] / f"{name}.ipynb")
        assert env["CUDA_VISIBLE_DEVICES"] == "1"
        assert env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
        assert env[TOKEN_VAR]
    assert first["env"][TOKEN_VAR] != second["env"][TOKEN_VAR]


def test_forked_kernel_has_the_variables_a_spawned_one_has(probes: dict[str, Any]) -> None:
    """Nothing more and nothing less than a spawned kernel gets (values differ per kernel)."""
    this_tests("nbtest.kernel.forkserver.ForkServer.spawn")
    second, spawned = facts_of(probes["second"]), facts_of(probes["spawned"])
    assert set(second["env"]) ^ set(spawned["env"]) == set()


def test_forked_kernels_share_no_state(probes: dict[str, Any]) -> None:
    """A module and a global of one notebook are not in the next; the RNG is reseeded."""
    this_tests("nbtest.kernel.forkserver.ForkServer.spawn", "nbtest.kernel.template.serve")
    first, second, spawned = (facts_of(probes[k]) for k in ("first", "second", "spawned"))
    assert not first["mymod_loaded"] and not first["leaked"]
    assert not second["mymod_loaded"], "notebook 1's module is in notebook 2's sys.modules"
    assert not second["leaked"], "notebook 1's global is visible in notebook 2"
    assert first["random"] != second["random"], "forked kernels share the template's RNG state"
    # No module of the user's: a forked kernel has imported nothing a spawned one has not,
    # except the packages holding the template (it runs `python -m nbtest.kernel.template`).
    assert set(second["modules"]) - set(spawned["modules"]) <= {"nbtest", "nbtest.kernel"}
    assert "mymod" not in second["modules"] and "mymod" not in spawned["modules"]


def test_template_runs_a_single_thread(probes: dict[str, Any]) -> None:
    """Fork safety in practice: the live template has one thread (and forked fine)."""
    this_tests("nbtest.kernel.template.serve", "nbtest.kernel.template.fork_safety_problems")
    template = probes["templates"][facts_of(probes["first"])["ppid"]]
    assert template.process.poll() is None
    assert os.listdir(f"/proc/{template.process.pid}/task") == [str(template.process.pid)]


def test_a_different_pythonpath_spawns_and_the_kernel_sees_it(
        tmp_path: Path, make_notebook: Callable[..., Path], monkeypatch: pytest.MonkeyPatch,
        no_kernel_left: Callable[[], None]) -> None:
    this_tests("nbtest.kernel.forkserver.ForkServer.accepts",
               "nbtest.kernel.provisioner.ForkProvisioner.launch_kernel")
    path = make_notebook("nb.ipynb", ["import sys\nprint(sys.path)",
                                      "import extra_mod\nprint(extra_mod.WHERE)"])
    warm = run_notebook(path, FORK)  # the template exists, with today's PYTHONPATH
    assert warm.extras["kernel_start"] == "fork"
    assert [c.status for c in warm.cells] == [PASSED, FAILED]  # extra_mod is not there yet
    extra = tmp_path / "extra"
    extra.mkdir()
    (extra / "extra_mod.py").write_text("WHERE = 'extra'\n")
    old = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", str(extra) + (os.pathsep + old if old else ""))
    result = run_notebook(path, FORK)
    assert result.extras["kernel_start"] == "spawn, PYTHONPATH differs from the template's"
    assert [c.status for c in result.cells] == [PASSED, PASSED]
    assert str(extra) in cell_text(result.notebook.cells[0])
    assert cell_text(result.notebook.cells[1]) == "extra\n"
    no_kernel_left()


def test_a_kernelspec_other_than_this_interpreters_launcher_is_spawned(
        tmp_path: Path, make_notebook: Callable[..., Path], monkeypatch: pytest.MonkeyPatch,
        no_kernel_left: Callable[[], None]) -> None:
    """A kernelspec that does not read `python -m ipykernel_launcher` (here: `-m ipykernel`)
    is started as its spec says, fork or not."""
    this_tests("nbtest.kernel.environment.split_kernel_command",
               "nbtest.kernel.provisioner.ForkProvisioner.launch_kernel")
    name = f"nbtest-other-{uuid.uuid4().hex[:8]}"
    spec = tmp_path / "jupyter" / "kernels" / name
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel", "-f", "{connection_file}"],
        "display_name": name, "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    path = make_notebook("nb.ipynb", ["import sys\nprint(sys.argv[0])"], kernel=name)
    result = run_notebook(path, FORK)
    assert result.extras["kernel_start"] == "spawn"
    assert [c.status for c in result.cells] == [PASSED]
    no_kernel_left()


# --------------------------------------------------------------------------------------------
# Faults with fork on: the same outcomes as issues 2 and 3 asked of spawned kernels.
# --------------------------------------------------------------------------------------------


def test_forked_kernel_ignoring_sigint_times_out_and_leaves_no_process(
        tmp_path: Path, make_notebook: Callable[..., Path],
        no_kernel_left: Callable[[], None]) -> None:
    """A cell that ignores SIGINT and spins, with a `sleep 600` child in its process group and
    one in a session of its own: the timeout kills them all."""
    this_tests("nbtest.kernel.launch.Kernel.kill", "nbtest.execute.NotebookSession.run_cell",
               "nbtest.kernel.forkserver.ForkedProcess.wait")
    path = make_notebook("spin.ipynb", [textwrap.dedent("""\
        import os, signal, subprocess
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        near = subprocess.Popen(['sleep', '600'])
        away = subprocess.Popen(['sleep', '600'], start_new_session=True)
        with open('pids.txt', 'w') as fh:
            fh.write(f'{os.getpid()} {near.pid} {away.pid}')
        while True:
            pass
        """), "print('never')"])
    result = run_notebook(path, NbTestConfig.of(fork="yes", timeout=3))
    assert result.extras["kernel_start"] == "fork"
    assert [c.status for c in result.cells] == [TIMEOUT, NOT_RUN]
    assert result.cells[0].detail.startswith("timed out after ")
    kernel, near, away = map(int, (tmp_path / "pids.txt").read_text().split())
    assert pid_gone(kernel), f"the forked kernel (pid {kernel}) survived the timeout"
    assert pid_gone(near), f"sleep 600 in the kernel's group (pid {near}) survived"
    assert pid_gone(away), f"sleep 600 in a new session (pid {away}) survived"
    no_kernel_left()


def test_forked_kernel_is_interrupted_like_a_spawned_one(tmp_path: Path,
                                                         no_kernel_left: Callable[[], None]
                                                         ) -> None:
    """SIGINT to the kernel's process group raises KeyboardInterrupt in the running cell; the
    kernel lives on and runs the next request."""
    this_tests("nbtest.kernel.launch.Kernel.interrupt", "nbtest.kernel.launch.start_kernel")
    from jupyter_core.utils import run_sync

    from nbtest.kernel.launch import start_kernel

    marker = tmp_path / "running.txt"

    async def scenario() -> tuple[dict[str, Any], dict[str, Any], str]:
        kernel = await start_kernel("python3", tmp_path, {}, 60, fork="yes")
        try:
            assert kernel.start_method == "fork"
            code = ("import time\nopen('running.txt', 'w').write('yes')\n"
                    "time.sleep(60)")
            running = asyncio.ensure_future(kernel.kc.execute_interactive(
                code, timeout=60, output_hook=lambda msg: None))
            deadline = time.monotonic() + 60  # hang guard
            while not marker.exists() and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            await kernel.interrupt()
            interrupted = await running
            texts: list[str] = []
            after = await kernel.kc.execute_interactive(
                "print(6 * 7)", timeout=60,
                output_hook=lambda msg: texts.append(msg["content"].get("text", "")))
            return interrupted["content"], after["content"], "".join(texts)
        finally:
            kernel.kill()

    interrupted, after, text = run_sync(scenario)()
    assert interrupted["status"] == "error" and interrupted["ename"] == "KeyboardInterrupt"
    assert after["status"] == "ok" and text == "42\n"
    no_kernel_left()


@pytest.mark.parametrize(("code", "detail"), [
    ("import os\nos._exit(3)", "kernel died (exit code 3)"),
    ("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", "kernel died (killed by SIGKILL)"),
], ids=["exit-code", "sigkill"])
def test_forked_kernel_death_is_explained(make_notebook: Callable[..., Path],
                                          no_kernel_left: Callable[[], None], code: str,
                                          detail: str) -> None:
    """The template reports the child's exit status: code and signal, as for a spawned one."""
    this_tests("nbtest.kernel.forkserver.ForkedProcess.poll", "nbtest.execute.describe_exit")
    path = make_notebook("dies.ipynb", ["x = 1", code, "y = 2"])
    result = run_notebook(path, FORK)
    assert result.extras["kernel_start"] == "fork"
    assert [c.status for c in result.cells] == [PASSED, DIED, NOT_RUN]
    assert result.cells[1].detail == detail
    no_kernel_left()


# --------------------------------------------------------------------------------------------
# Fork safety and the template's life.
# --------------------------------------------------------------------------------------------


def test_fork_safety_problems_in_a_fresh_interpreter() -> None:
    """After the preload alone: nothing; a thread or a zmq context: named."""
    this_tests("nbtest.kernel.template.fork_safety_problems", "nbtest.kernel.template._preload")
    code = textwrap.dedent("""\
        import json, threading, time
        import nbtest.kernel.template as fs
        fs._preload()
        found = [fs.fork_safety_problems()]
        import zmq
        context = zmq.Context.instance()
        found.append(fs.fork_safety_problems())
        threading.Thread(target=time.sleep, args=(30,), daemon=True).start()
        found.append(fs.fork_safety_problems())
        print(json.dumps(found))
        """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, env=cli_env())
    assert proc.returncode == 0, proc.stderr
    clean, with_context, with_thread = json.loads(proc.stdout)
    assert clean == []
    assert with_context == ["a zmq context exists"]
    assert with_thread == ["2 threads are running", "a zmq context exists"]


def test_template_refusing_to_fork_falls_back_to_spawn(tmp_path: Path,
                                                       make_notebook: Callable[..., Path],
                                                       no_kernel_left: Callable[[], None]
                                                       ) -> None:
    """A template that is not fork-safe (a sitecustomize starts a thread in every interpreter
    of this PYTHONPATH) refuses each request; the provisioner spawns the kernel instead and
    the notebook runs as usual. Real processes throughout: a harness, its template, a kernel."""
    this_tests("nbtest.kernel.provisioner.ForkProvisioner.launch_kernel",
               "nbtest.kernel.forkserver.ForkServer.spawn", "nbtest.kernel.template.fork_safety_problems")
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import threading, time\n"
        "threading.Thread(target=time.sleep, args=(3600,), daemon=True).start()\n")
    path = make_notebook("nb.ipynb", ["import os\nprint(os.getppid())"])
    harness = textwrap.dedent("""\
        import json, logging, os, sys
        from nbtest.config import NbTestConfig
        from nbtest.execute import run_notebook
        from nbtest.kernel.forkserver import ForkServer
        logging.basicConfig()  # the provisioner's warning goes to stderr
        result = run_notebook(sys.argv[1], NbTestConfig.of(fork="yes"))
        ppid = int(result.notebook.cells[0].outputs[0]["text"])
        templates = [s.process.poll() is None for s in ForkServer._instances.values()]
        print(json.dumps({"status": result.status, "start": result.extras["kernel_start"],
                          "kernel_parent_is_harness": ppid == os.getpid(),
                          "templates_alive": templates}))
        """)
    old = os.environ.get("PYTHONPATH")
    env = cli_env({"PYTHONPATH": str(site) + (os.pathsep + old if old else "")})
    proc = subprocess.run([sys.executable, "-c", harness, str(path)], capture_output=True,
                          text=True, timeout=120, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report == {"status": "passed", "start": "spawn", "kernel_parent_is_harness": True,
                      "templates_alive": [True]}  # asked, and refused
    assert "refused to fork" in proc.stderr and "threads are running" in proc.stderr
    no_kernel_left()


def test_stopping_the_template_stops_its_kernels(tmp_path: Path) -> None:
    """A template stopped while a kernel it forked still runs (an xdist worker that crashed
    leaves such kernels) takes the kernel with it; an adopted template is only forgotten."""
    this_tests("nbtest.kernel.forkserver.ForkServer.stop", "nbtest.kernel.template.serve",
               "nbtest.kernel.forkserver.ForkServer.adopt")
    from nbtest.kernel.launch import start_kernel

    for server in list(ForkServer._instances.values()):
        server.stop()  # an own template for this test, not one adopted from the controller
    kernel = asyncio.run(start_kernel("python3", tmp_path, {}, 60, fork="yes"))
    try:
        assert kernel.start_method == "fork"
        template = template_of(psutil.Process(kernel.pid).ppid())
        assert template is not None and template.owned
        description = ForkServer.describe_owned()[0]
        adopted = ForkServer(description["flags"], adopted=description)
        assert adopted.ready() and adopted.process.poll() is None
        adopted.stop()
        assert template.process.poll() is None and not pid_gone(kernel.pid, timeout=0)
        template.stop()
        assert pid_gone(kernel.pid, timeout=10), "the kernel outlived its template"
        assert adopted.process.poll() is not None
    finally:
        kernel.kill()
    check_no_kernel_left()


def test_template_and_its_kernels_die_with_the_harness(tmp_path: Path,
                                                       make_notebook: Callable[..., Path],
                                                       no_kernel_left: Callable[[], None]
                                                       ) -> None:
    """SIGKILL the process that owns the template while a forked kernel runs a cell: neither
    the template nor the kernel outlives it."""
    this_tests("nbtest.kernel.template.serve", "nbtest.kernel.template._die_with_parent")
    path = make_notebook("sleeps.ipynb", [
        "import os, time\n"
        "open('kernel.txt', 'w').write(f'{os.getpid()} {os.getppid()}')\n"
        "time.sleep(600)"])
    harness = ("import sys\nfrom nbtest.config import NbTestConfig\n"
               "from nbtest.execute import run_notebook\n"
               "run_notebook(sys.argv[1], NbTestConfig.of(fork='yes'))\n")
    proc = subprocess.Popen([sys.executable, "-c", harness, str(path)], cwd=tmp_path,
                            env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    try:
        kernel, template = map(int, wait_for_file(tmp_path / "kernel.txt", 120, proc).split())
        assert "nbtest.kernel.template" in " ".join(psutil.Process(template).cmdline())
        assert psutil.Process(template).ppid() == proc.pid
        proc.kill()
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert pid_gone(template, timeout=10), f"the template (pid {template}) outlived its harness"
    assert pid_gone(kernel, timeout=10), f"the forked kernel (pid {kernel}) outlived its harness"
    no_kernel_left()


# --------------------------------------------------------------------------------------------
# Pre-warming, in real pytest sessions.
# --------------------------------------------------------------------------------------------

# Each notebook of these sessions writes `<name>.json`: its pid, NBTEST_NOTEBOOK, cwd, parent
# and the other live kernels forked by the same template at the moment its first cell runs
# (by then, the next notebook's pre-warmed kernel has been forked).
REPORT = textwrap.dedent("""\
    import json, os, psutil
    me = psutil.Process()
    parent = me.parent()

    def live_children():
        # Other kernels of a shared template come and go: skip those exiting meanwhile.
        for p in parent.children():
            try:
                if p.pid != me.pid and p.status() != psutil.STATUS_ZOMBIE:
                    yield p.pid, " ".join(p.cmdline())
            except psutil.Error:
                pass

    children = list(live_children())  # a forked kernel's cmdline is its template's
    siblings = [pid for pid, _ in children]
    name = os.path.basename(os.environ["NBTEST_NOTEBOOK"])[:-len(".ipynb")]
    with open(os.path.join(os.environ["NBTEST_REPORTS"], name + ".json"), "w") as fh:
        json.dump({"pid": os.getpid(), "notebook": os.environ["NBTEST_NOTEBOOK"],
                   "cwd": os.getcwd(), "siblings": siblings, "ppid": parent.pid,
                   "parent": " ".join(parent.cmdline()),
                   "worker": os.environ.get("PYTEST_XDIST_WORKER"),
                   # of a spawned kernel (the harness's children): templates started
                   "templates": [c for _, c in children if "nbtest.kernel.template" in c]}, fh)
""")



# A conftest for those sessions: once the session is over (pytest_unconfigure runs after
# nbtest's own session-finish clean-up, also after -x or Ctrl-C), it lists what is still alive
# of the session's kernels, other than the warm template that is stopped at exit. It must be
# looked at from inside: once pytest has exited, a leaked kernel dies on its own within a
# second (ipykernel's parent poller) and the leak could no longer be seen.
CONFTEST_WATCH = f"""
import json, os, psutil

def pytest_unconfigure(config):
    needle = ("\\0{TAG_VAR}=" + os.environ["{TAG_VAR}"] + "\\0").encode()
    alive = []
    for proc in psutil.process_iter():
        try:
            if proc.pid == os.getpid():
                continue
            with open(f"/proc/{{proc.pid}}/environ", "rb") as fh:
                if needle not in b"\\0" + fh.read() + b"\\0":
                    continue
            if proc.status() == psutil.STATUS_ZOMBIE:
                continue
            cmdline = " ".join(proc.cmdline())
            if "nbtest.kernel.template" in cmdline and proc.ppid() == os.getpid():
                continue  # the warm template: stopped at exit
            alive.append(f"pid {{proc.pid}}: {{cmdline[:150]}}")
        except (OSError, psutil.Error):
            continue
    with open(os.path.join(os.environ["NBTEST_REPORTS"], "alive_at_end.json"), "w") as fh:
        json.dump(alive, fh)
"""


def tagged_processes(tag: str) -> list[psutil.Process]:
    """Live (non-zombie) processes whose initial environment carries `TAG_VAR=tag`."""
    needle = f"\0{TAG_VAR}={tag}\0".encode()
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry.name}/environ", "rb") as fh:
                if needle not in b"\0" + fh.read() + b"\0":
                    continue
            proc = psutil.Process(int(entry.name))
            if proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (OSError, psutil.Error):
            continue
    return found


def assert_nothing_left(tag: str, reports: Path) -> None:
    """No kernel was alive when the session ended, and no process of it is alive now."""
    alive = json.loads((reports / "alive_at_end.json").read_text())
    assert alive == [], "kernels alive at the end of the session:\n" + "\n".join(alive)
    left = tagged_processes(tag)
    if left:
        lines = []
        for proc in left:
            try:
                lines.append(f"  pid {proc.pid}: {' '.join(proc.cmdline())[:150]}")
                proc.kill()
            except psutil.Error:
                pass
        raise AssertionError("processes left behind by the session:\n" + "\n".join(lines))


@pytest.fixture
def session(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
            ) -> Iterator[dict[str, Any]]:
    """A tag for the pytest sessions of this test, the reports folder, and a notebook maker."""
    tag = uuid.uuid4().hex
    reports = pytester.path / "reports"
    reports.mkdir()
    monkeypatch.setenv(TAG_VAR, tag)
    monkeypatch.setenv("NBTEST_REPORTS", str(reports))
    # Always fork (not "auto", which spawns until the template is ready), so what each
    # notebook sees of the template's other kernels does not depend on timing.
    # Preload on (a stdlib module): every fault test here also holds for a preloaded template.
    monkeypatch.setenv("PYTEST_ADDOPTS",
                       "-p no:randomly --nbtest-fork=yes --nbtest-preload decimal")
    pytester.makeconftest(CONFTEST_WATCH)

    def nb(name: str, cells: list[Any] | None = None, **metadata: Any) -> Path:
        return write_notebook(pytester.path / name, [REPORT, *(cells or ())], metadata or None)

    def report(name: str) -> dict[str, Any] | None:
        path = reports / f"{name}.json"
        return json.loads(path.read_text()) if path.exists() else None

    yield {"tag": tag, "nb": nb, "report": report, "reports": reports}
    for proc in tagged_processes(tag):  # a failed test still leaves nothing running
        try:
            proc.kill()
        except psutil.Error:
            pass


def test_three_notebooks_each_get_their_own_prewarmed_kernel(
        pytester: pytest.Pytester, session: dict[str, Any]) -> None:
    """While a notebook runs, the next one's kernel is already forked, in that notebook's
    folder with its NBTEST_NOTEBOOK; the last one pre-starts nothing."""
    this_tests("nbtest.plugin.items.NotebookItem.prewarm_next", "nbtest.plugin.items.NotebookItem.new_session",
               "nbtest.plugin.pytest_runtest_protocol")
    paths = [session["nb"](f"d{i}/{name}.ipynb") for i, name in enumerate("abc", 1)]
    result = run_pytest(pytester, "--nbtest", "--nbtest-fork", "yes", "-p", "no:cacheprovider",
                        "--junitxml=out.xml")
    result.assert_outcomes(passed=3)
    a, b, c = (session["report"](name) for name in "abc")
    assert len({a["pid"], b["pid"], c["pid"]}) == 3
    for facts, path in zip((a, b, c), paths):
        assert facts["notebook"] == str(path.resolve())
        assert facts["cwd"] == str(path.parent.resolve())
        assert "nbtest.kernel.template" in facts["parent"]
    assert a["siblings"] == [b["pid"]], "b's kernel was not pre-started while a ran"
    assert b["siblings"] == [c["pid"]], "c's kernel was not pre-started while b ran"
    assert c["siblings"] == []
    starts = junit_properties(pytester.path / "out.xml", prefix="nbtest kernel start")
    assert {name: p["nbtest kernel start"] for name, p in starts.items()} == {
        f"d{i}.{name}.ipynb": "fork" for i, name in enumerate("abc", 1)}  # JUnit: dots
    assert_nothing_left(session["tag"], session["reports"])


def test_xdist_workers_fork_from_one_template_the_controller_started(
        pytester: pytest.Pytester, session: dict[str, Any]) -> None:
    """Under -n 2 both workers fork their kernels from the controller's template: one
    template's imports, begun while the workers start, not one per worker."""
    this_tests("nbtest.plugin.templates.XdistForkTemplate", "nbtest.kernel.forkserver.ForkServer.adopt",
               "nbtest.kernel.forkserver.ForkServer.describe_owned")
    names = [f"n{i}" for i in range(6)]
    for name in names:
        session["nb"](f"{name}.ipynb")
    result = run_pytest(pytester, "--nbtest", "-n", "2", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=6)
    reports = [session["report"](name) for name in names]
    assert {r["worker"] for r in reports} == {"gw0", "gw1"}
    assert len({r["ppid"] for r in reports}) == 1, "kernels of both workers, one template"
    assert "nbtest.kernel.template" in reports[0]["parent"]
    assert_nothing_left(session["tag"], session["reports"])


def test_a_single_notebook_starts_no_template(pytester: pytest.Pytester,
                                              session: dict[str, Any],
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """fork=auto with one notebook: its kernel is spawned at once and no template is started
    to compete with it for the CPU."""
    this_tests("nbtest.plugin.pytest_collection_finish")
    monkeypatch.setenv("PYTEST_ADDOPTS", "-p no:randomly")  # not the fixture's fork=yes
    session["nb"]("solo.ipynb")
    result = run_pytest(pytester, "--nbtest", "-v", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)
    solo = session["report"]("solo")
    assert "nbtest.kernel.template" not in solo["parent"]
    assert solo["templates"] == []
    assert any("solo.ipynb" in line and "kernel: spawn" in line for line in result.stdout.lines)
    assert_nothing_left(session["tag"], session["reports"])


def test_fork_no_spawns_every_kernel(pytester: pytest.Pytester, session: dict[str, Any]) -> None:
    this_tests("nbtest.kernel.provisioner.ForkProvisioner.launch_kernel", "nbtest.kernel.launch.launch_kernel")
    for name in "ab":
        session["nb"](f"{name}.ipynb")
    result = run_pytest(pytester, "--nbtest", "--nbtest-fork", "no", "-p", "no:cacheprovider",
                        "--junitxml=out.xml")
    result.assert_outcomes(passed=2)
    a, b = session["report"]("a"), session["report"]("b")
    assert "nbtest.kernel.template" not in a["parent"] + b["parent"]
    assert "pytest" in a["parent"]
    starts = junit_properties(pytester.path / "out.xml", prefix="nbtest kernel start")
    assert {p["nbtest kernel start"] for p in starts.values()} == {"spawn"}
    assert_nothing_left(session["tag"], session["reports"])


def test_verbose_output_names_the_start_up(pytester: pytest.Pytester,
                                           session: dict[str, Any]) -> None:
    this_tests("nbtest.plugin.items.NotebookItem.runtest")
    session["nb"]("a.ipynb")
    result = run_pytest(pytester, "--nbtest", "--nbtest-fork", "yes", "-v", "-p",
                        "no:cacheprovider")
    result.assert_outcomes(passed=1)
    assert any("a.ipynb" in line and "fork" in line for line in result.stdout.lines), \
        result.stdout.str()


@pytest.mark.parametrize("how", [["--deselect", "d2/b.ipynb"], ["-k", "not d2"]],
                         ids=["deselect", "k"])
def test_deselected_next_notebook_gets_no_kernel(pytester: pytest.Pytester,
                                                 session: dict[str, Any], how: list[str]
                                                 ) -> None:
    this_tests("nbtest.plugin.items.NotebookItem.prewarm_next")
    for i, name in enumerate("abc", 1):
        session["nb"](f"d{i}/{name}.ipynb")
    result = run_pytest(pytester, "--nbtest", "-p", "no:cacheprovider", *how)
    result.assert_outcomes(passed=2, deselected=1)
    a, b, c = (session["report"](name) for name in "abc")
    assert b is None
    assert a["siblings"] == [c["pid"]] and c["siblings"] == []
    assert_nothing_left(session["tag"], session["reports"])


CONFTEST_SKIPIF = """
import pytest

def pytest_collection_modifyitems(items):
    for item in items:
        if item.name == "b.ipynb":
            item.add_marker(pytest.mark.skipif(True, reason="skipif by conftest"))
"""


@pytest.mark.parametrize("how", ["slow-marker", "skipif-by-conftest"])
def test_skipped_next_notebook_leaves_no_kernel(pytester: pytest.Pytester,
                                                session: dict[str, Any], how: str) -> None:
    """`slow` without --runslow: no kernel is pre-started for it. A skipif marker added by a
    conftest is not seen before the skip: the pre-started kernel is killed at its teardown,
    before the following notebook runs."""
    this_tests("nbtest.plugin.items.NotebookItem.prewarm_next",
               "nbtest.plugin.items.NotebookItem.drop_prewarmed", "nbtest.plugin.pytest_runtest_teardown")
    session["nb"]("a.ipynb")
    if how == "slow-marker":
        session["nb"]("b.ipynb", nbtest={"markers": ["slow"]})
    else:
        session["nb"]("b.ipynb")
        pytester.makeconftest(CONFTEST_WATCH + CONFTEST_SKIPIF)
    session["nb"]("c.ipynb")
    result = run_pytest(pytester, "--nbtest", "-p", "no:cacheprovider", "-rs")
    result.assert_outcomes(passed=2, skipped=1)
    a, b, c = (session["report"](name) for name in "abc")
    assert b is None
    assert c["siblings"] == [], "a kernel pre-started for the skipped notebook is still alive"
    if how == "slow-marker":
        assert a["siblings"] == []  # nothing pre-started for a notebook that will be skipped
    else:
        assert len(a["siblings"]) == 1  # b's kernel was pre-started, then dropped
    assert_nothing_left(session["tag"], session["reports"])


def test_x_after_a_failure_kills_the_prewarmed_kernel(pytester: pytest.Pytester,
                                                      session: dict[str, Any]) -> None:
    this_tests("nbtest.plugin.items.close_open_sessions", "nbtest.plugin.pytest_sessionfinish")
    session["nb"]("a.ipynb", ["assert False, 'a fails'"])
    session["nb"]("b.ipynb")
    result = run_pytest(pytester, "--nbtest", "-p", "no:cacheprovider", "-x")
    result.assert_outcomes(failed=1)
    assert "stopping after 1 failures" in output(result)
    a = session["report"]("a")
    assert len(a["siblings"]) == 1  # b's kernel had been pre-started
    assert session["report"]("b") is None
    assert_nothing_left(session["tag"], session["reports"])


def interrupt_while_a_sleeps(pytester: pytest.Pytester, session: dict[str, Any]
                             ) -> dict[str, Any]:
    """Run a.ipynb (its cell starts a `sleep 600` in a session of its own, then sleeps) and
    b.ipynb; SIGINT the pytest process while a's cell sleeps. What a saw, and what was left."""
    session["nb"]("a.ipynb", [
        "import subprocess, time\n"
        "away = subprocess.Popen(['sleep', '600'], start_new_session=True,\n"
        "                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
        "open('away.pid', 'w').write(str(away.pid))\n"
        "open('sleeping.txt', 'w').write('yes')\n"
        "time.sleep(120)"])
    session["nb"]("b.ipynb")
    seen: dict[str, Any] = {}
    interrupt_once_started(["--nbtest", "-p", "no:cacheprovider"], pytester.path,
                           pytester.path / "sleeping.txt",
                           on_started=lambda: seen.update(a=session["report"]("a")))
    a = seen["a"]
    assert session["report"]("b") is None
    alive = json.loads((session["reports"] / "alive_at_end.json").read_text())
    return {"a": a, "away": int((pytester.path / "away.pid").read_text()), "alive": alive}


def test_ctrl_c_kills_the_prewarmed_kernel(pytester: pytest.Pytester,
                                           session: dict[str, Any]) -> None:
    """The kernel pre-started for b is gone when the interrupted session ends."""
    this_tests("nbtest.plugin.items.close_open_sessions", "nbtest.kernel.forkserver.ForkServer.stop")
    seen = interrupt_while_a_sleeps(pytester, session)
    assert len(seen["a"]["siblings"]) == 1  # b's kernel was pre-started and waiting
    prewarmed = seen["a"]["siblings"][0]
    assert not any(line.startswith(f"pid {prewarmed}:") for line in seen["alive"]), seen["alive"]
    assert pid_gone(prewarmed, timeout=0)


def test_ctrl_c_kills_the_running_kernel_before_the_session_ends(
        pytester: pytest.Pytester, session: dict[str, Any]) -> None:
    this_tests("nbtest.plugin.items.NotebookItem.runtest", "nbtest.plugin.items.close_open_sessions")
    seen = interrupt_while_a_sleeps(pytester, session)
    assert seen["alive"] == [], "alive when the session ended:\n" + "\n".join(seen["alive"])
    # Today the `sleep 600` the cell started in a session of its own (it carries the kernel's
    # token) even outlives pytest: nothing kills it once the kernel is gone.
    assert pid_gone(seen["away"], timeout=10)
    assert_nothing_left(session["tag"], session["reports"])


def test_last_failed_runs_only_the_failure_and_leaves_nothing(pytester: pytest.Pytester,
                                                              session: dict[str, Any]) -> None:
    this_tests("nbtest.plugin.items.NotebookItem.prewarm_next")
    session["nb"]("a.ipynb")
    session["nb"]("b.ipynb", ["assert False, 'b fails'"])
    session["nb"]("c.ipynb")
    first = run_pytest(pytester, "--nbtest")
    first.assert_outcomes(passed=2, failed=1)
    assert_nothing_left(session["tag"], session["reports"])
    for path in session["reports"].iterdir():
        path.unlink()
    again = run_pytest(pytester, "--nbtest", "--lf")
    again.assert_outcomes(failed=1)
    assert session["report"]("a") is None and session["report"]("c") is None
    assert session["report"]("b")["siblings"] == []
    assert_nothing_left(session["tag"], session["reports"])
