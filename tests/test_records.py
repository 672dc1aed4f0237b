"""The typed records a run's callbacks keep in `NotebookResult.extras` and `NotebookRun.startup`
serialise to the dicts users, the kernel and the docs read; the xdist hand-off carries a
payload from a worker to its controller as it was."""

from __future__ import annotations

import pickle
from types import SimpleNamespace

from nbtest import this_tests
from nbtest.callback import AffectedSettings, KernelFiles, RegistrySettings
from nbtest.handoff import give, given, is_worker, received, send
from nbtest.results import (
    CellTimings,
    MemoryFigures,
    NotebookResult,
    OutputCheckRecord,
    ThisTestsCapture,
)


def test_extras_records_serialise_to_the_documented_dicts() -> None:
    """Each record writes the keys the docs name (a kernel without CUDA: no GPU key), keeps
    a key's place when it is there already, and reads back as it was written."""
    this_tests("nbtest.results.Record.put", "nbtest.results.Record.of",
               MemoryFigures.as_dict, "nbtest.results.NotebookResult.kernel_start")
    extras = {"kernel_start": "fork", "peak_rss_mib": 10.0}  # the live figure, then the run's
    MemoryFigures(210.5, violation="peak RSS 210.5 MiB exceeds mem_max 200 MiB").put(extras)
    CellTimings({1: 0.5, 2: 1.5}, [(2, 1.5), (1, 0.5)]).put(extras)
    OutputCheckRecord({1: []}, [1], {"rule": 0}).put(extras)
    ThisTestsCapture(True, [("json.dumps", 2)]).put(extras)
    assert extras == {"kernel_start": "fork", "peak_rss_mib": 210.5,
                      "memory_violation": "peak RSS 210.5 MiB exceeds mem_max 200 MiB",
                      "timings": {1: 0.5, 2: 1.5}, "slowest": [(2, 1.5), (1, 0.5)],
                      "compared_outputs": {1: []}, "outputs_differ": [1],
                      "sanitizer_matches": {"rule": 0},
                      "this_tests": {"called": True, "entries": [("json.dumps", 2)]}}
    assert list(extras)[:3] == ["kernel_start", "peak_rss_mib", "memory_violation"]
    cuda = MemoryFigures(300.0, None, None, True).as_dict()
    assert cuda == {"peak_rss_mib": 300.0, "peak_gpu_mib": None, "peak_gpu_source": None,
                    "gpu_memory_returned": True}  # CUDA used, no figure: the keys say so
    result = NotebookResult("nb.ipynb", "passed", 1.0, extras=extras)
    assert MemoryFigures.of(result.extras) == MemoryFigures(
        210.5, violation="peak RSS 210.5 MiB exceeds mem_max 200 MiB")
    assert ThisTestsCapture.of(result.extras) == ThisTestsCapture(True, [("json.dumps", 2)])
    assert OutputCheckRecord.of({"compared_outputs": {}}) == OutputCheckRecord({})
    assert result.kernel_start == "fork" and NotebookResult("x", "error", 0.0).kernel_start == ""
    assert MemoryFigures.of({}) is None and ThisTestsCapture.of({"this_tests": 1}) is None
    assert pickle.loads(pickle.dumps(result)) == result


def test_startup_records_serialise_to_the_startup_codes_settings() -> None:
    """What callbacks ask of the startup code is the JSON-able dict it reads."""
    this_tests("nbtest.results.Record.put", KernelFiles.in_run)
    startup: dict = {"seed": 1}
    RegistrySettings("/k/this-tests.jsonl", ["mylib"], [[2, "ab12"]]).put(startup)
    AffectedSettings("/k/affected.jsonl", ["/p"], ["/k"]).put(startup)
    KernelFiles(gpu_peak_file="/k/gpu-peak.jsonl").put(startup)
    KernelFiles(profile_file="/k/profile.json").put(startup)
    assert startup == {"seed": 1, "registry": {"file": "/k/this-tests.jsonl", "api": ["mylib"],
                                               "cells": [[2, "ab12"]]},
                       "affected": {"file": "/k/affected.jsonl", "roots": ["/p"],
                                    "private": ["/k"]},
                       "gpu_peak_file": "/k/gpu-peak.jsonl", "profile_file": "/k/profile.json"}
    run = SimpleNamespace(startup=startup)
    assert KernelFiles.in_run(run) == KernelFiles(None, "/k/profile.json", "/k/gpu-peak.jsonl")
    assert KernelFiles.in_run(SimpleNamespace(startup={})) == KernelFiles()


def test_the_handoff_carries_a_payload_from_worker_to_controller_and_back() -> None:
    """A worker's payload reaches the controller as JSON would carry it; a controller or a
    single process sends nothing; what the controller gives a worker reaches it."""
    this_tests(send, received, is_worker, give, given)
    worker = SimpleNamespace(workerinput={}, workeroutput={})
    controller = SimpleNamespace()
    assert is_worker(worker) and not is_worker(controller)
    assert send(worker, "nbtest_x", {"ran": [("a.ipynb", "a.ipynb")], "n": 2}) is True
    assert send(controller, "nbtest_x", {"n": 1}) is False
    node = SimpleNamespace(workeroutput=worker.workeroutput)  # what xdist hands back
    assert received(node, "nbtest_x") == {"ran": [["a.ipynb", "a.ipynb"]], "n": 2}
    assert received(node, "nbtest_y") is None
    assert received(SimpleNamespace(), "nbtest_x") is None  # a worker that crashed
    starting = SimpleNamespace(workerinput={})
    give(starting, "nbtest_t", [{"flags": ["-X"]}])
    assert given(SimpleNamespace(workerinput=starting.workerinput), "nbtest_t") == \
        [{"flags": ["-X"]}]
    assert given(controller, "nbtest_t") is None
