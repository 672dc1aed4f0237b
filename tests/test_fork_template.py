"""The warm template's fork safety and life: what makes it refuse to fork, the spawn that
replaces a refused fork, and that neither it nor its kernels outlive whoever stops or owns it.
Real processes throughout; every wait is a hang guard.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import psutil
from helpers.forks import template_of
from helpers.processes import check_no_kernel_left, cli_env, pid_gone, wait_for_file

from nbtest import this_tests
from nbtest.kernel.forkserver_client import ForkServer


def test_fork_safety_problems_in_a_fresh_interpreter() -> None:
    """After the preload alone: nothing; a thread or a zmq context: named."""
    this_tests("nbtest.kernel.forkserver_main.fork_safety_problems",
               "nbtest.kernel.forkserver_main._preload")
    code = textwrap.dedent("""\
        import json, threading, time
        import nbtest.kernel.forkserver_main as fs
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
               "nbtest.kernel.forkserver_client.ForkServer.spawn",
               "nbtest.kernel.forkserver_main.fork_safety_problems")
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
        from nbtest.kernel.forkserver_client import ForkServer
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
    this_tests("nbtest.kernel.forkserver_client.ForkServer.stop",
               "nbtest.kernel.forkserver_main.serve",
               "nbtest.kernel.forkserver_client.ForkServer.adopt")
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
    the template nor the kernel outlives it, nor do their folders."""
    this_tests("nbtest.kernel.forkserver_main.serve",
               "nbtest.kernel.forkserver_main._die_with_parent")
    path = make_notebook("sleeps.ipynb", [
        "import os, time\n"
        "from ipykernel.kernelapp import IPKernelApp\n"
        "with open('folder.txt', 'w') as fh:\n"
        "    fh.write(os.path.dirname(IPKernelApp.instance().connection_file))\n"
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
        assert "nbtest.kernel.forkserver_main" in " ".join(psutil.Process(template).cmdline())
        folders = [Path((tmp_path / "folder.txt").read_text()),
                   Path(psutil.Process(template).cmdline()[-1]).parent]
        assert all(folder.is_dir() for folder in folders), folders
        assert psutil.Process(template).ppid() == proc.pid
        proc.kill()
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert pid_gone(template, timeout=10), f"the template (pid {template}) outlived its harness"
    assert pid_gone(kernel, timeout=10), f"the forked kernel (pid {kernel}) outlived its harness"
    assert not [folder for folder in folders if folder.exists()]
    no_kernel_left()
