"""A kernel forked from nbtest's warm template is indistinguishable, for the notebook, from one
started with `python -m ipykernel_launcher`: its own process and session, the notebook's folder
and sys.path, the environment of now (not the template's), no state shared with the notebook
before it. Where it cannot be (another PYTHONPATH, another kernelspec), the kernel is spawned.
No test asserts a time.
"""

from __future__ import annotations

import json
import os
import sys
import textwrap
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from helpers.fake_nvidia_smi import gpu, install
from helpers.forks import FORK, template_of
from helpers.notebooks import cell_text, write_notebook
from helpers.processes import check_no_kernel_left, pid_gone

from nbtest import this_tests
from nbtest.config import NbTestConfig
from nbtest.execute import run_notebook
from nbtest.kernel.forkserver_client import ForkServer
from nbtest.kernel.tree import TOKEN_VAR
from nbtest.results import FAILED, NB_PASSED, PASSED

SPAWN = NbTestConfig.of(fork="no")


# One cell that reports what the kernel looks like from inside, as JSON on stdout.
FACTS = textwrap.dedent("""\
    import json, os, random, sys
    print(json.dumps({
        "pid": os.getpid(), "ppid": os.getppid(), "cwd": os.getcwd(),
        "env": dict(os.environ), "argv": sys.argv, "path": sys.path, "name": __name__,
        "modules": sorted(sys.modules), "random": random.random(),
        "own_session": os.getsid(0) == os.getpid() and os.getpgid(0) == os.getpid(),
        "mymod_loaded": "mymod" in sys.modules, "leaked": "leaked" in globals(),
        "frozen": __import__("gc").get_freeze_count(),
    }))
""")


def facts_of(result: Any, cell: int = 0) -> dict[str, Any]:
    """The JSON printed by the FACTS cell of an executed notebook."""
    assert result.status == NB_PASSED, [(c.status, c.detail, c.error_value)
                                        for c in result.cells]
    return json.loads(cell_text(result.notebook.cells[cell]))


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
    this_tests("nbtest.kernel.forkserver_client.ForkServer.spawn",
               "nbtest.kernel.provisioner.ForkProvisioner.launch_kernel",
               "nbtest.execute.NotebookSession.launch")
    assert probes["first"].extras["kernel_start"] == "fork"
    assert probes["second"].extras["kernel_start"] == "fork"
    assert probes["spawned"].extras["kernel_start"] == "spawn"
    first, second, spawned = (facts_of(probes[k]) for k in ("first", "second", "spawned"))
    template = template_of(first["ppid"])
    assert template is not None, "a forked kernel's parent is this process's template"
    cmdline = psutil.Process(template.process.pid).cmdline()
    assert "nbtest.kernel.forkserver_main" in " ".join(cmdline)
    assert second["ppid"] == first["ppid"]  # the same warm template forked both
    assert len({first["pid"], second["pid"], template.process.pid, os.getpid()}) == 4
    assert spawned["ppid"] == os.getpid()
    # Its own session and process group, as a spawned kernel has: interrupts and the kill of
    # the whole tree reach the kernel and not the template.
    assert first["own_session"] and second["own_session"] and spawned["own_session"]
    assert pid_gone(first["pid"]) and pid_gone(second["pid"])


def test_forked_kernel_runs_in_the_notebooks_folder_with_its_path(
        probes: dict[str, Any]) -> None:
    this_tests("nbtest.kernel.forkserver_client.ForkServer.spawn")
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
    the GPU pinning (two cards, 2000 and 30000 MiB free) puts the kernel on the freer card 1."""
    this_tests("nbtest.kernel.forkserver_client.ForkServer.spawn",
               "nbtest.gpu.probe.kernel_gpu_env")
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
    this_tests("nbtest.kernel.forkserver_client.ForkServer.spawn")
    second, spawned = facts_of(probes["second"]), facts_of(probes["spawned"])
    assert set(second["env"]) ^ set(spawned["env"]) == set()


def test_forked_kernels_share_no_state(probes: dict[str, Any]) -> None:
    """A module and a global of one notebook are not in the next; the RNG is reseeded."""
    this_tests("nbtest.kernel.forkserver_client.ForkServer.spawn",
               "nbtest.kernel.forkserver_main.serve")
    first, second, spawned = (facts_of(probes[k]) for k in ("first", "second", "spawned"))
    assert not first["mymod_loaded"] and not first["leaked"]
    assert not second["mymod_loaded"], "notebook 1's module is in notebook 2's sys.modules"
    assert not second["leaked"], "notebook 1's global is visible in notebook 2"
    assert first["random"] != second["random"], "forked kernels share the template's RNG state"
    # No module of the user's: a forked kernel has imported nothing a spawned one has not,
    # except the packages holding the template (it runs `python -m nbtest.kernel.forkserver_main`).
    assert set(second["modules"]) - set(spawned["modules"]) <= {"nbtest", "nbtest.kernel"}
    assert "mymod" not in second["modules"] and "mymod" not in spawned["modules"]
    # The template freezes its objects before forking; the kernel unfreezes them at once,
    # so what the notebook drops is collected there as in a spawned kernel.
    assert first["frozen"] == second["frozen"] == spawned["frozen"] == 0


def test_template_runs_a_single_thread(probes: dict[str, Any]) -> None:
    """Fork safety in practice: the live template has one thread (and forked fine)."""
    this_tests("nbtest.kernel.forkserver_main.serve",
               "nbtest.kernel.forkserver_main.fork_safety_problems")
    template = probes["templates"][facts_of(probes["first"])["ppid"]]
    assert template.process.poll() is None
    assert os.listdir(f"/proc/{template.process.pid}/task") == [str(template.process.pid)]


# --------------------------------------------------------------------------------------------
# Where a forked kernel would differ: spawned instead.
# --------------------------------------------------------------------------------------------


def test_a_different_pythonpath_spawns_and_the_kernel_sees_it(
        tmp_path: Path, make_notebook: Callable[..., Path], monkeypatch: pytest.MonkeyPatch,
        no_kernel_left: Callable[[], None]) -> None:
    this_tests("nbtest.kernel.forkserver_client.ForkServer.differences",
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
