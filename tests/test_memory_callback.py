"""Tests of MemoryCallback: real kernels through the engine on the CPU, and its GPU side with
a real child process standing in for a kernel and the stand-in nvidia-smi listing it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers.fake_nvidia_smi import app, gpu, install
from helpers.pytest_sessions import output, run_pytest

from nbtest import this_tests
from nbtest.callback import Callback, NotebookRun
from nbtest.callbacks import sampler as sampler_module
from nbtest.callbacks.memory import (
    MemoryCallback,
    TreeSampler,
    budget_violations,
    gpu_look,
    gpu_memory_returned,
)
from nbtest.config import NbTestConfig
from nbtest.errors import ConfigError
from nbtest.execute import run_notebook
from nbtest.failure_text import failure_text
from nbtest.kernel.notebook_kernel import describe_exit
from nbtest.results import DIED, FAILED, NOT_RUN, PASSED, CellResult

pytest_plugins = ["pytester"]

ALLOCATE_200MB = "b = bytearray(200 * 2**20)\nb[::4096] = b'x' * len(b[::4096])"
UUID = "GPU-00000000-aaaa-bbbb-cccc"


def sampler_threads() -> list[threading.Thread]:
    """Live sampler threads of this process."""
    return [t for t in threading.enumerate() if t.name.startswith("nbtest-memory-")]


def wait_until(check: Callable[[], bool], guard: float = 20.0) -> bool:
    """Poll `check` until true; `guard` seconds is only a hang guard."""
    deadline = time.monotonic() + guard
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def child() -> Iterator[subprocess.Popen]:
    """A child process holding ~50 MB, standing in for a kernel."""
    proc = subprocess.Popen([sys.executable, "-c", "import sys, time\n"
                             "b = bytearray(50 * 2**20); b[::4096] = b'x' * len(b[::4096])\n"
                             "print('ready', flush=True); time.sleep(300)"],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    yield proc
    proc.kill()
    proc.wait()


def test_peak_rss_of_a_notebook_allocating_200mb(make_notebook: Callable[..., Path],
                                                 no_kernel_left: Callable[[], None]) -> None:
    this_tests(MemoryCallback, run_notebook)
    path = make_notebook("alloc.ipynb", [ALLOCATE_200MB, "del b", "x = 1"])
    result = run_notebook(path, callbacks=[MemoryCallback()])
    assert result.passed
    assert result.extras["peak_rss_mib"] >= 200
    assert "memory_violation" not in result.extras
    assert "peak_gpu_mib" not in result.extras  # the kernel never initialised CUDA
    no_kernel_left()
    assert wait_until(lambda: not sampler_threads())


def test_mem_max_exceeded_sets_the_violation(make_notebook: Callable[..., Path],
                                             no_kernel_left: Callable[[], None]) -> None:
    this_tests(MemoryCallback, "nbtest.callbacks.memory.read_budget", budget_violations)
    path = make_notebook("alloc.ipynb", [ALLOCATE_200MB],
                         metadata={"nbtest": {"mem_max": "100MiB", "gpu_mem_max": "1GiB"}})
    result = run_notebook(path, callbacks=[MemoryCallback()])
    violation = result.extras["memory_violation"]
    assert violation.startswith("peak RSS ") and violation.endswith(" MiB exceeds mem_max 100 MiB")
    # The measured figure is in the message: over the cap (the cap stopped the cell there).
    assert int(violation.split()[2]) > 100
    assert result.cells[0].failed and "exceeds mem_max 100 MiB" in result.cells[0].detail
    no_kernel_left()


# Grows by 25 MiB every 50 ms, up to 1 GiB, then holds it: a runaway cell.
RUNAWAY = ("import time\nheld = []\nfor _ in range(40):\n"
           "    held.append(bytearray(25 * 2**20))\n"
           "    held[-1][::4096] = b'x' * len(held[-1][::4096])\n"
           "    time.sleep(0.05)\ntime.sleep(600)")


@pytest.mark.parametrize("fork", ["no", "yes"])
def test_mem_max_stops_a_runaway_cell_and_names_it(make_notebook: Callable[..., Path],
                                                   no_kernel_left: Callable[[], None],
                                                   fork: str) -> None:
    """mem_max is a cap: the kernel is killed once its tree is seen over it, while the cell
    runs; the cell fails (not the timeout, which is only this test's hang guard), naming the
    figure seen and the cap."""
    this_tests(TreeSampler.over_limit, "nbtest.callbacks.memory.TreeSampler._enforce",
               "nbtest.kernel.notebook_kernel.NotebookKernel.death_detail")
    path = make_notebook("runaway.ipynb", ["x = 1", RUNAWAY, "y = 2"],
                         metadata={"nbtest": {"mem_max": "200MiB", "timeout": 120}})
    result = run_notebook(path, NbTestConfig.of(fork=fork), callbacks=[MemoryCallback()])
    assert [c.status for c in result.cells] == [PASSED, DIED, NOT_RUN]
    detail = result.cells[1].detail
    assert re.fullmatch(r"kernel killed by nbtest: peak RSS (\d+) MiB exceeds mem_max 200 MiB "
                        r"\(while cell 2 ran\)", detail), detail
    seen = int(detail.split()[6])
    assert 200 < seen < 1024  # stopped on its way up, long before the cell's 1 GiB
    assert failure_text(result).splitlines()[0] == f"cell 2: {detail}"
    no_kernel_left()


def test_mem_max_fails_the_cell_whose_peak_went_over_between_samples(
        make_notebook: Callable[..., Path], no_kernel_left: Callable[[], None]) -> None:
    """A spike the background samples miss (here they are 60 s apart) is in the kernel's
    own record of its peak (VmHWM), read at the cell's end: that cell fails, not the run."""
    this_tests(MemoryCallback.check_cell)
    path = make_notebook("spike.ipynb", ["x = 1", ALLOCATE_200MB + "\ndel b", "y = 2"],
                         metadata={"nbtest": {"mem_max": "150MiB"}})
    result = run_notebook(path, callbacks=[MemoryCallback(interval=60)])
    assert [c.status for c in result.cells] == [PASSED, FAILED, NOT_RUN]
    assert re.fullmatch(r"peak RSS \d+ MiB exceeds mem_max 150 MiB", result.cells[1].detail)
    no_kernel_left()


def test_a_kernel_killed_by_sigkill_reads_like_the_memory_limit_with_its_peak(
        make_notebook: Callable[..., Path], no_kernel_left: Callable[[], None]) -> None:
    """The OOM killer's SIGKILL (here the kernel's own) is explained, with the peak seen."""
    this_tests(describe_exit, "nbtest.kernel.notebook_kernel.NotebookKernel.death_detail")
    path = make_notebook("oom.ipynb", [ALLOCATE_200MB,
                                       "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"])
    result = run_notebook(path, callbacks=[MemoryCallback()])
    detail = result.cells[1].detail
    found = re.fullmatch(r"kernel died \(killed by SIGKILL, which looks like the memory limit "
                         r"or the OOM killer; peak RSS seen (\d+) MiB\)", detail)
    assert found, detail
    assert int(found.group(1)) >= 200
    no_kernel_left()


def test_bad_budget_stops_before_the_kernel_starts(make_notebook: Callable[..., Path],
                                                   no_kernel_left: Callable[[], None]) -> None:
    this_tests(MemoryCallback, "nbtest.callbacks.memory.read_budget")
    path = make_notebook("nb.ipynb", ["x = 1"], metadata={"nbtest": {"mem_max": "lots"}})
    with pytest.raises(ConfigError, match=r"metadata\.nbtest: bad value 'lots' for 'mem_max'"):
        run_notebook(path, callbacks=[MemoryCallback()])
    no_kernel_left()


class _Boom(Callback):
    """Raises after the first cell, so the run never sends notebook-end."""

    def on_cell_end(self, run: NotebookRun, result: CellResult) -> None:
        raise RuntimeError("boom")


def test_sampler_stops_when_the_run_raises(make_notebook: Callable[..., Path],
                                           no_kernel_left: Callable[[], None]) -> None:
    this_tests(MemoryCallback, MemoryCallback.close, TreeSampler.stop)
    path = make_notebook("nb.ipynb", ["x = 1", "y = 2"])
    memory = MemoryCallback()
    with pytest.raises(RuntimeError, match="boom"):
        run_notebook(path, callbacks=[memory, _Boom()])
    no_kernel_left()
    # The kernel is gone, so the thread ends by itself; close() is there for callers too.
    assert wait_until(lambda: not sampler_threads())
    memory.close()
    assert memory.sampler is None


def test_budget_violations() -> None:
    this_tests(budget_violations)
    budgets = {"mem_max": 256 * 2**20, "gpu_mem_max": 2**30}
    assert budget_violations({"mem_max": 512.0, "gpu_mem_max": 100}, budgets) == [
        "peak RSS 512 MiB exceeds mem_max 256 MiB"]
    assert budget_violations({"mem_max": 512.0, "gpu_mem_max": 2000}, budgets)[1] == (
        "peak GPU memory 2000 MiB exceeds gpu_mem_max 1 GiB")
    assert budget_violations({"mem_max": 512.0}, {"mem_max": None}) == []
    assert budget_violations({"mem_max": 100.0, "gpu_mem_max": None}, budgets) == []


def test_sampler_reads_a_process_tree(child: subprocess.Popen) -> None:
    this_tests(TreeSampler, TreeSampler.sample)
    sampler = TreeSampler(child.pid)
    assert sampler.sample(full=True)
    assert sampler.peak_rss >= 50 * 2**20 and not sampler.cuda
    child.kill()
    child.wait()
    assert not sampler.sample(full=True)  # gone: the thread would end here


def test_gpu_memory_of_the_kernel_by_pid(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         child: subprocess.Popen) -> None:
    this_tests(gpu_look, TreeSampler.sample, gpu_memory_returned)
    install(tmp_path, monkeypatch, {"gpus": [gpu(0, free=40000, uuid=UUID)],
                                    "apps": [app(child.pid, 1100, UUID), app(1, 500, UUID)]})
    assert gpu_look({child.pid})[0] == 1100
    assert gpu_look({child.pid + 10**6})[0] is None
    sampler = TreeSampler(child.pid)
    sampler.cuda = True  # as if libcuda were mapped: torch initialised CUDA
    sampler.sample(full=True)
    assert sampler.peak_gpu_mib == 1100
    returned, left = gpu_memory_returned({child.pid}, wait=0)
    assert not returned and f"pid {child.pid} 1100 MiB on GPU 0" in left
    install(tmp_path, monkeypatch, {"gpus": [gpu(0, free=41100, uuid=UUID)],
                                    "apps": [app(1, 500, UUID)]})
    assert gpu_memory_returned({child.pid}, wait=0) == (True, "")


def test_cell_end_reads_the_maps_again_only_when_the_address_space_changed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Whether the kernel loaded libcuda is looked up in its maps; at a cell's end only when
    its address space changed size since (loading a library grows it), on the slow cadence
    always."""
    this_tests(TreeSampler.sample)
    reads: list[int] = []
    monkeypatch.setattr(sampler_module, "_uses_cuda", lambda pid: reads.append(pid) or False)
    monkeypatch.setattr(sampler_module, "SLOW_EVERY", 1e9)  # no slow-cadence look in between
    # A stand-in kernel that maps 64 MiB more when told, as loading a library maps more.
    stand_in = subprocess.Popen(
        [sys.executable, "-c", "import mmap, sys\nprint('ready', flush=True)\n"
         "sys.stdin.readline()\nm = mmap.mmap(-1, 64 * 2**20)\nprint('grown', flush=True)\n"
         "sys.stdin.readline()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert stand_in.stdin is not None and stand_in.stdout is not None
    try:
        assert stand_in.stdout.readline().strip() == "ready"
        sampler = TreeSampler(stand_in.pid)
        sampler.sample(full=True)
        sampler.sample(full=True)
        assert reads == [stand_in.pid]
        stand_in.stdin.write("grow\n")
        stand_in.stdin.flush()
        assert stand_in.stdout.readline().strip() == "grown"
        sampler.sample(full=True)
        assert reads == [stand_in.pid] * 2
        monkeypatch.setattr(sampler_module, "SLOW_EVERY", 0.0)  # every sample: slow cadence
        sampler.sample(full=True)
        sampler.sample(full=True)
        assert reads == [stand_in.pid] * 4
    finally:
        stand_in.kill()
        stand_in.wait()


def test_no_card_visible_at_the_kernels_start_means_no_maps_read(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """With no GPU seen when the kernel started, its maps are never read for libcuda."""
    this_tests(TreeSampler.sample)
    reads: list[int] = []
    monkeypatch.setattr(sampler_module, "_uses_cuda", lambda pid: reads.append(pid) or False)
    monkeypatch.setattr(sampler_module, "SLOW_EVERY", 0.0)  # every sample is on the slow cadence
    sampler = TreeSampler(os.getpid(), card_baseline={})
    for _ in range(3):
        sampler.sample(full=True)
    assert reads == [] and not sampler.cuda
    TreeSampler(os.getpid()).sample(full=True)  # this process's children are looked at too
    assert os.getpid() in reads


def test_a_session_leaves_no_file_behind(pytester: pytest.Pytester,
                                         pytester_notebook: Callable[..., Path],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever a notebook's run comes to (passed, failed, a kernel that cannot start, a
    pre-warmed kernel that `-x` leaves unused), nothing of nbtest stays in the temp folder."""
    this_tests(MemoryCallback.before_kernel_start, "nbtest.kernel.launch.private_folder",
               "nbtest.callbacks.registry.RegistryCapture.before_kernel_start",
               "nbtest.kernel.notebook_kernel.NotebookKernel.release")
    tmp = pytester.path / "tmp"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    # `api` turns the registry on: its capture keeps a file per kernel too.
    pytester.makepyprojecttoml('[tool.nbtest]\napi = ["json"]\nregistry = "registry.json"\n')
    pytester_notebook("a_passes.ipynb", ["x = 1"])
    pytester_notebook("b_fails.ipynb", ["raise ValueError('no')"])
    pytester_notebook("c_passes.ipynb", ["y = 2"])
    pytester_notebook("d_no_kernel.ipynb", ["z = 3"], kernel="no-such-kernel-xyz")
    for options in ([], ["-x"]):
        result = run_pytest(pytester, "--nbtest", "-p", "no:randomly", "-p", "no:cacheprovider",
                            *options)
        assert result.ret == pytest.ExitCode.TESTS_FAILED, output(result)
        assert sorted(p.name for p in tmp.iterdir()) == [], options
