"""Tests of nbtest.utils.mem, the seed's GPU memory helpers: zeros without a GPU, readings
from the stand-in nvidia-smi with one, and an import that never pulls in torch."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from helpers.fake_nvidia_smi import gpu, install

from nbtest import this_tests
from nbtest.utils import mem
from nbtest.utils.mem import (
    GPUMemory,
    GPUMemTrace,
    gpu_cache_clear,
    gpu_mem_allocate_mbs,
    gpu_mem_consume_some,
    gpu_mem_get,
    gpu_mem_get_all,
    gpu_mem_get_free,
    gpu_mem_get_used,
    gpu_mem_reclaim,
    gpu_with_max_free_mem,
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    # use_gpu is computed once per process; each test decides afresh.
    monkeypatch.delitem(vars(mem), "use_gpu", raising=False)


@pytest.fixture
def no_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """No GPU, whatever this machine has."""
    monkeypatch.setenv("NBTEST_GPU_BACKEND", "none")


@pytest.fixture
def two_gpus(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stand-in nvidia-smi with cards of 2000 and 30000 MiB free of 40960."""
    install(tmp_path, monkeypatch, {"gpus": [gpu(0, free=2000, total=40960),
                                             gpu(1, free=30000, total=40960)]})


def test_without_a_gpu_everything_is_zero(no_gpu: None,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    this_tests(gpu_mem_get, gpu_mem_get_all, gpu_with_max_free_mem, gpu_mem_allocate_mbs,
               gpu_mem_consume_some, gpu_cache_clear, gpu_mem_reclaim, GPUMemTrace)
    assert mem.use_gpu is False
    assert gpu_mem_get() == GPUMemory(0, 0, 0) == (0, 0, 0)
    assert gpu_mem_get(3) == (0, 0, 0) and gpu_mem_get_all() == []
    assert (gpu_mem_get_free(), gpu_mem_get_used()) == (0, 0)
    assert gpu_with_max_free_mem() == (None, 0)
    assert gpu_mem_allocate_mbs(10) is None and gpu_mem_consume_some(100) is None
    gpu_cache_clear()
    gpu_mem_reclaim()
    with GPUMemTrace() as trace:
        data = [1] * 1000
    assert trace.data() == (0, 0) and data
    assert capsys.readouterr().out == "△Used Peaked MB:      0      0 (exit)\n"


def test_readings_come_from_the_probe(two_gpus: None) -> None:
    this_tests(gpu_mem_get_all, gpu_mem_get, gpu_mem_get_free, gpu_mem_get_used,
               gpu_with_max_free_mem)
    assert gpu_mem_get_all() == [(40960, 2000, 38960), (40960, 30000, 10960)]
    assert gpu_mem_get(1) == GPUMemory(total=40960, free=30000, used=10960)
    assert gpu_mem_get() == gpu_mem_get(0)  # torch has no current device here: card 0
    assert (gpu_mem_get_free(), gpu_mem_get_used()) == (2000, 38960)
    assert gpu_mem_get(2) == (0, 0, 0)
    assert gpu_with_max_free_mem() == (1, 30000)


def test_ids_are_those_after_cuda_visible_devices(two_gpus: None,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    this_tests(gpu_mem_get, gpu_mem_get_all, gpu_with_max_free_mem)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert gpu_mem_get(0) == (40960, 30000, 10960) and gpu_mem_get(1) == (0, 0, 0)
    assert gpu_with_max_free_mem() == (0, 30000)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert gpu_mem_get_all() == [] and gpu_with_max_free_mem() == (None, 0)


def test_gpu_mem_trace_with_steady_memory(two_gpus: None) -> None:
    this_tests(GPUMemTrace, GPUMemTrace.data)
    trace = GPUMemTrace(silent=True)
    with trace:
        assert any(t.name == "nbtest-GPUMemTrace" for t in threading.enumerate())
    assert trace.data() == (0, 0)
    assert trace.used_start == 38960
    assert not any(t.name == "nbtest-GPUMemTrace" for t in threading.enumerate())


def test_use_gpu_needs_torch_to_see_a_gpu(two_gpus: None) -> None:
    this_tests("nbtest.gpu.probe.cuda_available")
    # The stand-in lists GPUs, but torch cannot be imported: no GPU for torch. Made so in a
    # fresh process (use_gpu is computed once per process), whatever this machine has.
    code = ("import sys\nsys.modules['torch'] = None  # import torch raises ImportError\n"
            "import nbtest.utils.mem as m\nfrom nbtest.gpu.probe import cuda_available\n"
            "assert cuda_available() and m.use_gpu is False\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr


def test_import_without_torch_or_driver_calls(tmp_path: Path) -> None:
    this_tests(gpu_mem_get)
    code = ("import sys\n"
            "import nbtest.utils.mem as m\n"
            "assert 'use_gpu' not in vars(m)  # not computed at import\n"
            "from nbtest.utils.mem import *\n"
            "assert use_gpu is False and gpu_mem_get() == (0, 0, 0)\n"
            "assert 'torch' not in sys.modules  # no GPU: torch is never imported\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "NBTEST_GPU_BACKEND": "none"})
    assert done.returncode == 0, done.stderr
