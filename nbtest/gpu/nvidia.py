"""Reading NVIDIA GPUs: NVML values and `nvidia-smi` CSV into Gpu / GpuProcess records.

The parsers are pure (text or plain values in, records out) so they are tested with recorded
output; `read_nvml` and `read_smi` do the I/O and raise on any failure, for nbtest.gpu.probe's probe
to fall to the next backend. Indices here are physical: nvidia-smi's (PCI bus) numbering.
"""

from __future__ import annotations

import csv
import io
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

MIB = 2**20
SMI_TIMEOUT = 10.0  # seconds; a hung driver must not hang the test run
GPU_FIELDS = ("index", "name", "uuid", "memory.total", "memory.used", "memory.free")
APP_FIELDS = ("gpu_uuid", "pid", "process_name", "used_memory")
_NOT_A_NUMBER = ("n/a", "not supported", "insufficient permissions", "unknown error")


@dataclass(frozen=True)
class GpuProcess:
    """A compute process holding memory on a GPU."""

    pid: int
    name: str
    used_mib: int | None  # None where the driver does not say (no permission, WDDM)
    gpu_uuid: str
    jupyter: bool = False  # a Jupyter kernel (ipykernel in its command line)


@dataclass(frozen=True)
class Gpu:
    """One GPU: `index` as the kernel sees it, `physical_index` as nvidia-smi numbers it."""

    index: int
    physical_index: int
    name: str
    uuid: str
    total_mib: int
    used_mib: int
    free_mib: int
    processes: tuple[GpuProcess, ...] = ()


def parse_csv(text: str, fields: Sequence[str]) -> list[dict[str, str]]:
    """Rows of `nvidia-smi --format=csv,noheader,nounits` output, keyed by `fields`."""
    rows = []
    for number, row in enumerate(csv.reader(io.StringIO(text), skipinitialspace=True), 1):
        if not "".join(row).strip():
            continue
        if len(row) != len(fields):
            raise ValueError(f"line {number} has {len(row)} fields, expected {len(fields)} "
                             f"({','.join(fields)}): {','.join(row)[:80]!r}")
        rows.append({f: value.strip() for f, value in zip(fields, row)})
    return rows


def _number(value: str, what: str, optional: bool = False) -> int | None:
    if optional and value.strip("[] ").lower() in _NOT_A_NUMBER:
        return None
    try:
        return int(float(value))
    except ValueError:
        raise ValueError(f"{what} is not a number: {value!r}") from None


def is_jupyter_kernel(pid: int, name: str = "") -> bool:
    """Whether process `pid` (named `name` by the driver) is a Jupyter kernel."""
    if "ipykernel" in name:
        return True
    import psutil

    try:
        return "ipykernel" in " ".join(psutil.Process(pid).cmdline())
    except (psutil.Error, OSError):  # another container's pid namespace, or gone already
        return False


def gpus_from_smi(gpu_csv: str, apps_csv: str = "",
                  jupyter: Callable[[int, str], bool] = is_jupyter_kernel) -> list[Gpu]:
    """GPUs (physical order) from the two `nvidia-smi --query-*` outputs nbtest asks for.

    `jupyter(pid, name)` flags Jupyter kernels; pass `lambda pid, name: False` for no lookup.
    """
    processes: dict[str, list[GpuProcess]] = {}
    if apps_csv.strip().lower().startswith("no running"):  # older drivers say so even in CSV
        apps_csv = ""
    for row in parse_csv(apps_csv, APP_FIELDS):
        pid = _number(row["pid"], "pid")
        assert pid is not None
        used = _number(row["used_memory"], "used_memory", optional=True)
        name = row["process_name"]
        processes.setdefault(row["gpu_uuid"], []).append(
            GpuProcess(pid, name, used, row["gpu_uuid"], jupyter(pid, name)))
    gpus = []
    for row in parse_csv(gpu_csv, GPU_FIELDS):
        index, total, used, free = (_number(row[f], f) for f in
                                    ("index", "memory.total", "memory.used", "memory.free"))
        assert index is not None and total is not None and used is not None and free is not None
        gpus.append(Gpu(index, index, row["name"], row["uuid"], total, used, free,
                        tuple(processes.get(row["uuid"], ()))))
    return gpus


def _text(value: str | bytes) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def process_from_nvml(pid: int, used_bytes: int | None, gpu_uuid: str | bytes,
                      name: str | bytes = "",
                      jupyter: Callable[[int, str], bool] = is_jupyter_kernel) -> GpuProcess:
    """A GpuProcess from NVML's values (usedGpuMemory in bytes, None when not available)."""
    name = _text(name)
    used = None if used_bytes is None else int(used_bytes) // MIB
    return GpuProcess(int(pid), name, used, _text(gpu_uuid), jupyter(int(pid), name))


def gpu_from_nvml(index: int, name: str | bytes, uuid: str | bytes, total_bytes: int,
                  used_bytes: int, free_bytes: int,
                  processes: Sequence[GpuProcess] = ()) -> Gpu:
    """A Gpu from NVML's values (nvmlDeviceGetMemoryInfo is in bytes)."""
    return Gpu(index, index, _text(name), _text(uuid), int(total_bytes) // MIB,
               int(used_bytes) // MIB, int(free_bytes) // MIB, tuple(processes))


def read_nvml(processes: bool = True) -> list[Gpu]:
    """Every GPU of the machine through NVML; raises when the library or driver is missing."""
    import pynvml  # the optional `gpu` extra; ImportError falls to nvidia-smi

    pynvml.nvmlInit()
    try:
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            uuid = _text(pynvml.nvmlDeviceGetUUID(handle))
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            running = pynvml.nvmlDeviceGetComputeRunningProcesses(handle) if processes else []
            holders = [process_from_nvml(p.pid, p.usedGpuMemory, uuid, _nvml_name(pynvml, p.pid))
                       for p in running]
            gpus.append(gpu_from_nvml(index, pynvml.nvmlDeviceGetName(handle), uuid,
                                      memory.total, memory.used, memory.free, holders))
        return gpus
    finally:
        pynvml.nvmlShutdown()


def _nvml_name(pynvml: Any, pid: int) -> str:
    try:
        return _text(pynvml.nvmlSystemGetProcessName(pid))
    except pynvml.NVMLError:  # a process of another user or namespace
        return "?"


def run_smi(query: str, fields: Sequence[str]) -> str:
    """The stdout of `nvidia-smi --query-<query>=<fields> --format=csv,noheader,nounits`."""
    # Looked up first: where there is none (most CI machines), no process is forked for it,
    # once per kernel start.
    smi = shutil.which("nvidia-smi")
    if smi is None:
        raise RuntimeError("nvidia-smi is not on PATH")
    command = [smi, f"--query-{query}={','.join(fields)}", "--format=csv,noheader,nounits"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=SMI_TIMEOUT,
                              stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise RuntimeError("nvidia-smi is not on PATH") from None
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"nvidia-smi gave no answer within {SMI_TIMEOUT:g} s") from None
    except OSError as exc:
        raise RuntimeError(f"cannot run nvidia-smi: {exc}") from None
    if done.returncode != 0:
        said = (done.stderr.strip() or done.stdout.strip()).splitlines()
        raise RuntimeError(f"nvidia-smi --query-{query} exited {done.returncode}"
                           + (f": {said[0][:160]}" if said else ""))
    return done.stdout


def read_smi(processes: bool = True) -> list[Gpu]:
    """Every GPU of the machine through nvidia-smi; raises on a failed run or odd output."""
    gpu_csv = run_smi("gpu", GPU_FIELDS)
    return gpus_from_smi(gpu_csv, run_smi("compute-apps", APP_FIELDS) if processes else "")
