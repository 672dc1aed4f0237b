"""Tests of the GPU probe and preflight: recorded NVML / nvidia-smi values, and a stand-in
nvidia-smi executable on PATH (a real process boundary) for the scenes: a busy card held by a
Jupyter kernel, a free card, two cards, hidden cards, a failing, garbled or stuck nvidia-smi."""

from __future__ import annotations

import pickle
import subprocess
from pathlib import Path
from typing import Any

import pytest
from helpers.fake_nvidia_smi import app, gpu, install

from nbtest import this_tests
from nbtest.errors import ConfigError, PreflightError
from nbtest.gpu import nvidia
from nbtest.gpu import probe as gpumod
from nbtest.gpu.nvidia import Gpu, gpus_from_smi, parse_csv
from nbtest.gpu.probe import (
    apply_visible,
    check_preflight,
    cuda_available,
    format_report,
    format_size,
    kernel_gpu_env,
    pick_gpu,
    preflight,
    probe,
)

GIB, MIB = 2**30, 2**20
BUSY_UUID = "GPU-5b0f0d6c-1111-2222-3333-444455556666"
# Recorded from a real `nvidia-smi --query-gpu=... --format=csv,noheader,nounits` (two cards).
RECORDED_GPUS = (
    "0, NVIDIA A100-SXM4-40GB, GPU-aa11bb22-0000-1111-2222-333344445555, 40960, 38960, 2000\n"
    "1, NVIDIA A100-SXM4-40GB, GPU-cc33dd44-0000-1111-2222-333344445555, 40960, 10960, 30000\n")
RECORDED_APPS = (
    "GPU-aa11bb22-0000-1111-2222-333344445555, 31337, /usr/bin/python3, 38000\n"
    "GPU-cc33dd44-0000-1111-2222-333344445555, 31338, /opt/conda/bin/python, [N/A]\n")


def no_lookup(pid: int, name: str) -> bool:
    """Jupyter detection by name only: recorded pids mean nothing on this machine."""
    return "ipykernel" in name


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("CUDA_VISIBLE_DEVICES", "PYTEST_XDIST_WORKER", "NBTEST_GPU_BACKEND"):
        monkeypatch.delenv(var, raising=False)


def busy_scene(holder_pid: int) -> dict[str, Any]:
    """4000 MiB free of 80 GiB; a Jupyter kernel holds 77000 MiB."""
    return {"gpus": [gpu(0, free=4000, total=81920, uuid=BUSY_UUID)],
            "apps": [app(holder_pid, 77000, BUSY_UUID)]}


def two_cards() -> dict[str, Any]:
    """Two cards: 2000 and 30000 MiB free."""
    return {"gpus": [gpu(0, free=2000, total=40960), gpu(1, free=30000, total=40960)]}


# --- pure parsing, recorded values -------------------------------------------------------


def test_parse_csv_keys_rows_by_requested_fields() -> None:
    this_tests(parse_csv)
    rows = parse_csv("a, b c,1\n\n x,y , 2\n", ["f1", "f2", "f3"])
    assert rows == [{"f1": "a", "f2": "b c", "f3": "1"}, {"f1": "x", "f2": "y", "f3": "2"}]
    assert parse_csv("", ["f1"]) == []
    with pytest.raises(ValueError, match="line 1 has 2 fields, expected 3"):
        parse_csv("a, b\n", ["f1", "f2", "f3"])


def test_gpus_from_recorded_smi_output() -> None:
    this_tests(gpus_from_smi)
    gpus = gpus_from_smi(RECORDED_GPUS, RECORDED_APPS, jupyter=no_lookup)
    assert [(g.index, g.physical_index, g.total_mib, g.used_mib, g.free_mib) for g in gpus] == [
        (0, 0, 40960, 38960, 2000), (1, 1, 40960, 10960, 30000)]
    assert gpus[0].name == "NVIDIA A100-SXM4-40GB"
    assert gpus[0].processes[0].pid == 31337 and gpus[0].processes[0].used_mib == 38000
    assert gpus[1].processes[0].used_mib is None  # "[N/A]": the driver would not say
    assert gpus_from_smi(RECORDED_GPUS, "No running processes found\n")[0].processes == ()


@pytest.mark.parametrize("text", ["0, A100, GPU-x, 40960, lots, 2000\n", "<html>\n",
                                  "0, A100, GPU-x, 40960\n"])
def test_gpus_from_smi_rejects_unparsable_output(text: str) -> None:
    this_tests(gpus_from_smi)
    with pytest.raises(ValueError):
        gpus_from_smi(text)


def test_nvml_values_to_records() -> None:
    this_tests(nvidia.process_from_nvml, nvidia.gpu_from_nvml)
    # As pynvml returns them: names and uuids as str (or bytes, older versions), memory in
    # bytes, usedGpuMemory None where NVML_VALUE_NOT_AVAILABLE.
    holder = nvidia.process_from_nvml(4242, 77000 * MIB, b"GPU-abc", b"python3",
                                      jupyter=no_lookup)
    blind = nvidia.process_from_nvml(4243, None, "GPU-abc", "ipykernel_launcher",
                                     jupyter=no_lookup)
    card = nvidia.gpu_from_nvml(0, b"NVIDIA H100 80GB HBM3", "GPU-abc", 85899345920,
                                81537269760, 4362076160, [holder, blind])
    assert (holder.pid, holder.name, holder.used_mib, holder.gpu_uuid) == (
        4242, "python3", 77000, "GPU-abc")
    assert blind.used_mib is None and blind.jupyter and not holder.jupyter
    assert (card.name, card.total_mib, card.used_mib, card.free_mib) == (
        "NVIDIA H100 80GB HBM3", 81920, 77760, 4160)
    assert card.processes == (holder, blind)


def test_records_are_frozen_and_pickle() -> None:
    this_tests(Gpu, gpus_from_smi)
    card = gpus_from_smi(RECORDED_GPUS, RECORDED_APPS, jupyter=no_lookup)[0]
    with pytest.raises(AttributeError):
        card.free_mib = 1  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(card)) == card


@pytest.mark.parametrize(("spec", "physical"), [
    (None, [0, 1, 2]),
    ("", []),
    ("-1", []),
    ("1", [1]),
    ("2,0", [2, 0]),
    ("0,7,1", [0]),           # CUDA stops at the first entry that names no card
    ("1,1", [1]),             # and at a repeat
    ("GPU-cc33", [1]),        # a uuid prefix
    ("GPU-", []),             # an ambiguous prefix names no card
    (" 2 , GPU-aa11bb22", [2, 0]),
])
def test_cuda_visible_devices_selects_and_renumbers(spec: str | None,
                                                    physical: list[int]) -> None:
    this_tests(apply_visible)
    cards = gpus_from_smi(RECORDED_GPUS + RECORDED_GPUS.splitlines()[0].replace(
        "0, ", "2, ", 1).replace("aa11bb22", "ee55ff66") + "\n")
    seen = apply_visible(spec, cards)
    assert [g.physical_index for g in seen] == physical
    assert [g.index for g in seen] == list(range(len(physical)))


def test_pick_gpu_most_free_and_xdist_spreading() -> None:
    this_tests(pick_gpu)
    def card(i: int, free: int) -> Gpu:
        return Gpu(i, i, "A100", f"GPU-{i}", 40960, 40960 - free, free)

    pair = [card(0, 2000), card(1, 30000)]
    assert pick_gpu(pair) == pair[1] and pick_gpu([]) is None
    assert all(pick_gpu(pair, worker=w) == pair[1] for w in range(4))  # clearly freer wins
    alike = [card(0, 40000), card(1, 39800), card(2, 10000)]
    assert [pick_gpu(alike, worker=w).index for w in range(4)] == [0, 1, 0, 1]  # type: ignore
    assert pick_gpu(alike).index == 0  # type: ignore[union-attr]
    # Cards short of the requirement are passed over while another meets it.
    assert pick_gpu([card(0, 9000), card(1, 8000)], min_free=8500 * MIB).index == 0  # type: ignore


def test_format_size() -> None:
    this_tests(format_size)
    assert [format_size(n) for n in (8 * GIB, 500 * MIB, 8 * 10**9, 1234)] == [
        "8 GiB", "500 MiB", "8 GB", "1234 bytes"]


# --- through the stand-in nvidia-smi ------------------------------------------------------


def test_busy_card_refuses_and_names_the_holder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                kernel_holder: subprocess.Popen) -> None:
    this_tests(preflight, format_report, check_preflight, probe)
    install(tmp_path, monkeypatch, busy_scene(kernel_holder.pid))
    report = preflight(8 * GIB)
    assert not report.ok and report.probe.backend == "smi"
    assert report.gpus[0].processes[0].jupyter  # found by its command line
    text = format_report(report)
    assert "4000 MiB free of 81920 MiB" in text
    assert f"pid {kernel_holder.pid}" in text and "77000 MiB  (Jupyter kernel)" in text
    assert "shut down idle Jupyter kernels" in text
    for how in ("--nbtest-gpu-min-free 2GiB", '[tool.nbtest] gpu_min_free = "0"',
                "nbtest preflight --min-free 2GiB"):
        assert how in text
    with pytest.raises(PreflightError) as info:
        check_preflight(8 * GIB)
    assert info.value.exit_code == 3 and "4000 MiB" in info.value.message
    assert pickle.loads(pickle.dumps(info.value)).message == info.value.message
    assert preflight(2 * GIB).ok  # --min-free 2GiB
    assert check_preflight(0).ok  # 0 disables


def test_free_card_passes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    this_tests(check_preflight, format_report, cuda_available, kernel_gpu_env)
    install(tmp_path, monkeypatch, {"gpus": [gpu(0, free=80000)], "apps": []})
    report = check_preflight(8 * GIB)
    assert report.ok and "GPU 0 has 80000 MiB free" in report.reason
    assert "no compute process holds memory" in format_report(report)
    assert cuda_available()
    assert kernel_gpu_env(8 * GIB) == {}  # one card: nothing to choose


def test_two_cards_pin_the_kernel_to_the_freer(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    this_tests(kernel_gpu_env, pick_gpu)
    install(tmp_path, monkeypatch, two_cards())
    assert kernel_gpu_env(8 * GIB) == {"CUDA_VISIBLE_DEVICES": "1",
                                       "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw2")
    assert kernel_gpu_env(8 * GIB)["CUDA_VISIBLE_DEVICES"] == "1"


def test_xdist_workers_spread_over_equally_free_cards(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    this_tests(kernel_gpu_env, pick_gpu)
    install(tmp_path, monkeypatch, {"gpus": [gpu(0, free=80000), gpu(1, free=79900)]})
    chosen = []
    for worker in ("gw0", "gw1", "gw2"):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        chosen.append(kernel_gpu_env(8 * GIB)["CUDA_VISIBLE_DEVICES"])
    assert chosen == ["0", "1", "0"]


def test_cuda_visible_devices_empty_means_no_gpu(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    this_tests(preflight, format_report, cuda_available, kernel_gpu_env)
    install(tmp_path, monkeypatch, two_cards())
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    report = preflight(8 * GIB)
    assert report.ok and report.gpus == ()
    text = format_report(report)
    assert text.count("\n") == 0 and "no GPU visible" in text and "hides all 2" in text
    assert not cuda_available() and kernel_gpu_env(8 * GIB) == {}


def test_cuda_visible_devices_index_and_uuid(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    this_tests(probe, apply_visible, preflight, format_report, kernel_gpu_env)
    scene = two_cards()
    install(tmp_path, monkeypatch, scene)
    for spec in ("1", scene["gpus"][1]["uuid"][:12]):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", spec)
        seen = probe().gpus
        assert [(g.index, g.physical_index, g.free_mib) for g in seen] == [(0, 1, 30000)]
        assert "[physical GPU 1]" in format_report(preflight(8 * GIB))
        assert kernel_gpu_env(8 * GIB) == {}
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,0")
    # Two visible, in the given order: the freer is the kernel's index 0, physical card 1.
    assert [g.physical_index for g in probe().gpus] == [1, 0]
    assert kernel_gpu_env(0)["CUDA_VISIBLE_DEVICES"] == "1"


def test_failing_smi_falls_to_none_with_a_reason(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    this_tests(probe, preflight, format_report)
    install(tmp_path, monkeypatch, {**two_cards(), "exit": 9})
    result = probe()
    assert result.backend == "none" and result.gpus == ()
    assert any("exited 9" in r and "couldn't communicate" in r for r in result.reasons)
    report = preflight(8 * GIB)
    assert report.ok  # no GPU: run on the CPU
    assert "exited 9" in format_report(report, verbose=True)
    assert "exited 9" not in format_report(report)


@pytest.mark.parametrize("where", [True, "gpu", "compute-apps"])
def test_garbage_output_falls_to_none_with_a_reason(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    where: bool | str) -> None:
    this_tests(probe)
    install(tmp_path, monkeypatch, {**two_cards(), "garbage": where})
    result = probe()
    assert result.backend == "none" and result.gpus == ()
    assert any(r.startswith("nvidia-smi: ValueError: line 1 has") for r in result.reasons)


def test_stuck_smi_times_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    this_tests(probe, nvidia.run_smi)
    install(tmp_path, monkeypatch, {**two_cards(), "sleep": 30})
    monkeypatch.setattr(nvidia, "SMI_TIMEOUT", 0.5)
    result = probe()
    assert result.backend == "none"
    assert any("no answer within 0.5 s" in r for r in result.reasons)


def test_no_smi_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Said, and no process started for it (a fast-tier test: the guard would fail it)."""
    this_tests(probe, nvidia.run_smi)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert probe("smi").reasons == ("nvidia-smi: nvidia-smi is not on PATH",)


def test_nvml_failure_falls_to_smi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    this_tests(probe, format_report)
    install(tmp_path, monkeypatch, two_cards())
    monkeypatch.delenv("NBTEST_GPU_BACKEND")

    def no_driver(processes: bool = True) -> list[Gpu]:
        raise OSError("NVML Shared Library Not Found")

    monkeypatch.setattr(gpumod, "read_nvml", no_driver)
    result = probe()
    assert result.backend == "smi" and len(result.gpus) == 2
    assert result.reasons == ("NVML: OSError: NVML Shared Library Not Found",)
    assert "not used: NVML" in format_report(preflight(8 * GIB), verbose=True)


def test_backend_forced_by_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    this_tests(probe, cuda_available)
    install(tmp_path, monkeypatch, two_cards())
    monkeypatch.setenv("NBTEST_GPU_BACKEND", "none")
    assert probe().backend == "none" and not cuda_available()
    monkeypatch.setenv("NBTEST_GPU_BACKEND", "cuda")
    with pytest.raises(ConfigError, match="NBTEST_GPU_BACKEND='cuda'"):
        probe()
