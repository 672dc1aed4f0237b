"""The GPU probe and preflight: the GPUs a kernel will see, their free memory, who holds it.

Backends, in order: NVML (nvidia-ml-py, the `gpu` extra), `nvidia-smi`, none. A backend that
fails falls to the next and says why (`Probe.reasons`, shown by `-v`); NBTEST_GPU_BACKEND
(nvml, smi or none) forces one. `CUDA_VISIBLE_DEVICES` is applied as CUDA applies it, and
reported indices are the kernel's (0..n-1 in the order given). Indices in it are read in PCI
bus order, nvidia-smi's; that is CUDA's order too when `CUDA_DEVICE_ORDER=PCI_BUS_ID` or the
cards are alike, and `kernel_gpu_env` sets it for kernels.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace

from ..errors import ConfigError, PreflightError
from .nvidia import MIB, Gpu, GpuProcess, read_nvml, read_smi

__all__ = ["Gpu", "GpuProcess", "Probe", "PreflightReport", "probe", "cuda_available",
           "apply_visible", "pick_gpu", "kernel_gpu_env", "preflight", "judge",
           "format_report", "check_preflight", "format_size"]

BACKEND_VAR = "NBTEST_GPU_BACKEND"
BACKENDS = ("nvml", "smi", "none")
# Within this much of the freest card, xdist workers count cards as equally free and spread.
TIE_MIB = 1024


@dataclass(frozen=True)
class Probe:
    """One look at the GPUs: the visible ones, the backend that answered, why others failed."""

    gpus: tuple[Gpu, ...]
    backend: str  # nvml, smi or none
    reasons: tuple[str, ...] = ()  # one line per backend that failed
    total: int = 0  # GPUs on the machine, before CUDA_VISIBLE_DEVICES
    visible_spec: str | None = None  # CUDA_VISIBLE_DEVICES as it was, None when unset


def apply_visible(spec: str | None, gpus: Sequence[Gpu]) -> list[Gpu]:
    """The GPUs `CUDA_VISIBLE_DEVICES=spec` lets a process see, renumbered 0..n-1 in its order.

    As in CUDA: unset means all; entries are indices or `GPU-` uuid prefixes; the list ends
    at the first entry that names no card (or a card twice), so `""` and `-1` mean none.
    """
    if spec is None:
        return [replace(g, index=i) for i, g in enumerate(gpus)]
    chosen: list[Gpu] = []
    for token in (t.strip() for t in spec.split(",")):
        if token.isdigit():
            found = [g for g in gpus if g.physical_index == int(token)]
        elif token.upper().startswith("GPU-"):
            found = [g for g in gpus if g.uuid.lower().startswith(token.lower())]
        else:
            found = []
        if len(found) != 1 or found[0] in chosen:  # no card, an ambiguous prefix, a repeat
            break
        chosen.append(found[0])
    return [replace(g, index=i) for i, g in enumerate(chosen)]


def _forced_backend() -> str | None:
    value = os.environ.get(BACKEND_VAR, "").strip().lower()
    if value and value not in BACKENDS:
        raise ConfigError(f"{BACKEND_VAR}={value!r}: expected one of {', '.join(BACKENDS)}",
                          key=BACKEND_VAR)
    return value or None


def probe(backend: str | None = None, processes: bool = True) -> Probe:
    """Look at the GPUs now, with `backend` or NBTEST_GPU_BACKEND's, else the first that works.

    processes=False skips listing the processes that hold memory (one driver call less).
    """
    forced = backend or _forced_backend()
    spec = os.environ.get("CUDA_VISIBLE_DEVICES")
    reasons: list[str] = []
    for name in [forced] if forced else ["nvml", "smi"]:
        if name == "none":
            reasons.append(f"{BACKEND_VAR}=none")
            break
        try:
            gpus = (read_nvml if name == "nvml" else read_smi)(processes)
        except Exception as exc:  # any failure of a probe means "try the next", never a crash
            label = "NVML" if name == "nvml" else "nvidia-smi"
            detail = str(exc) or type(exc).__name__
            # RuntimeErrors are nvidia.py's own sentences; others keep their type for -v.
            reasons.append(f"{label}: {detail}" if isinstance(exc, RuntimeError)
                           else f"{label}: {type(exc).__name__}: {detail}")
            continue
        return Probe(tuple(apply_visible(spec, gpus)), name, tuple(reasons), len(gpus), spec)
    return Probe((), "none", tuple(reasons), 0, spec)


def cuda_available() -> bool:
    """Whether at least one GPU is visible to a kernel started now."""
    return bool(probe(processes=False).gpus)


def xdist_worker() -> int | None:
    """This pytest-xdist worker's number (`PYTEST_XDIST_WORKER=gw3` gives 3), else None."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "")
    return int(name[2:]) if name.startswith("gw") and name[2:].isdigit() else None


def pick_gpu(gpus: Sequence[Gpu], min_free: int = 0, worker: int | None = None) -> Gpu | None:
    """The visible GPU with the most free memory (None when there is none).

    Only cards with `min_free` bytes free are candidates, unless none has. Under xdist
    (`worker` given) every card within TIE_MIB (or 5 %) of the freest counts as tied, and
    worker N takes tied card N modulo their number in index order: workers that start together
    see the same free memory and would otherwise all pile onto one card, while a card that is
    clearly fuller is still avoided. Later notebooks re-probe and see the kernels already there.
    """
    candidates = [g for g in gpus if g.free_mib * MIB >= min_free] or list(gpus)
    if not candidates:
        return None
    best = max(candidates, key=lambda g: (g.free_mib, -g.index))
    if worker is None:
        return best
    margin = max(TIE_MIB, best.free_mib // 20)
    tied = sorted((g for g in candidates if best.free_mib - g.free_mib <= margin),
                  key=lambda g: g.index)
    return tied[worker % len(tied)]


def kernel_gpu_env(min_free: int = 0, result: Probe | None = None) -> dict[str, str]:
    """Environment that puts a kernel on the freest GPU, when two or more are visible; else {}.

    CUDA_VISIBLE_DEVICES gets the card's physical index (nvidia-smi's numbering, whatever the
    parent's CUDA_VISIBLE_DEVICES said) and CUDA_DEVICE_ORDER=PCI_BUS_ID makes CUDA number
    cards as nvidia-smi does, so the index means the same card to both.
    """
    result = result if result is not None else probe(processes=False)
    if len(result.gpus) < 2:
        return {}
    card = pick_gpu(result.gpus, min_free, xdist_worker())
    assert card is not None
    return {"CUDA_VISIBLE_DEVICES": str(card.physical_index), "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}


@dataclass(frozen=True)
class PreflightReport:
    """The preflight's verdict: whether to run, why, and what the probe saw."""

    ok: bool
    reason: str
    min_free: int  # bytes asked for; 0 or less: no check
    probe: Probe

    @property
    def gpus(self) -> tuple[Gpu, ...]:
        """The visible GPUs."""
        return self.probe.gpus


def format_size(nbytes: int) -> str:
    """`8 GiB`, `500 MiB`, `8 GB` or `1234 bytes`: a size as a person would write it."""
    for unit, size in (("GiB", 2**30), ("MiB", MIB), ("GB", 10**9), ("MB", 10**6)):
        if nbytes and nbytes % size == 0:
            return f"{nbytes // size} {unit}"
    return f"{nbytes} bytes"


def _need(min_free: int) -> str:
    text = format_size(min_free)
    return text if text.endswith("MiB") else f"{text} ({-(-min_free // MIB)} MiB)"


def judge(result: Probe, min_free: int) -> PreflightReport:
    """The verdict on `result` for a requirement of `min_free` bytes on at least one GPU."""
    if not result.gpus:
        if result.visible_spec is not None and result.total:
            why = (f"CUDA_VISIBLE_DEVICES={result.visible_spec!r} hides all {result.total} "
                   "GPUs of this machine")
        elif result.backend != "none":
            why = f"{'NVML' if result.backend == 'nvml' else 'nvidia-smi'} lists none"
        else:
            why = "no NVIDIA driver answered"
        return PreflightReport(True, f"no GPU visible ({why})", min_free, result)
    best = max(result.gpus, key=lambda g: (g.free_mib, -g.index))
    most = f"GPU {best.index} has {best.free_mib} MiB free"
    if min_free <= 0:
        return PreflightReport(True, f"{most}; the check is off (gpu_min_free = 0)",
                               min_free, result)
    if best.free_mib * MIB >= min_free:
        return PreflightReport(True, f"{most}, {_need(min_free)} needed", min_free, result)
    if len(result.gpus) == 1:
        why = f"GPU {best.index} has only {best.free_mib} MiB free, {_need(min_free)} needed"
    else:
        why = (f"no visible GPU has {_need(min_free)} free; the most is {best.free_mib} MiB, "
               f"on GPU {best.index}")
    return PreflightReport(False, why, min_free, result)


def preflight(min_free: int, result: Probe | None = None) -> PreflightReport:
    """Probe now (unless `result` is given) and judge against `min_free` bytes."""
    return judge(result if result is not None else probe(), min_free)


def table_lines(gpus: Sequence[Gpu], verbose: bool = False) -> list[str]:
    """One line per GPU (free / total) and one per process holding memory on it."""
    lines = []
    for g in gpus:
        where = f" [physical GPU {g.physical_index}]" if g.physical_index != g.index else ""
        uuid = f" {g.uuid}" if verbose else ""
        lines.append(f"  GPU {g.index}{where}: {g.name}{uuid}, {g.free_mib} MiB free of "
                     f"{g.total_mib} MiB ({g.free_mib / 1024:.1f} of {g.total_mib / 1024:.1f} "
                     "GiB)")
        for p in g.processes:
            used = "? MiB" if p.used_mib is None else f"{p.used_mib} MiB"
            flag = "  (Jupyter kernel)" if p.jupyter else ""
            lines.append(f"      pid {p.pid}  {p.name}  {used}{flag}")
        if not g.processes:
            lines.append("      no compute process holds memory on it")
    return lines


def _advice(report: PreflightReport) -> list[str]:
    kernels = [p for g in report.gpus for p in g.processes if p.jupyter]
    held = sum(p.used_mib or 0 for p in kernels)
    lines = ["To run, free GPU memory or ask for less:",
             "  - shut down idle Jupyter kernels (Jupyter: Kernel > Shut Down Kernel, or the "
             "Running tab)"]
    if kernels:
        pids = ", ".join(str(p.pid) for p in kernels)
        lines.append(f"    here {len(kernels)} Jupyter kernel{'s' if len(kernels) > 1 else ''} "
                     f"hold{'' if len(kernels) > 1 else 's'} {held} MiB (pid {pids})")
    lines += ["  - or stop the other processes listed above that you do not need",
              "  - or lower the requirement (0 disables it):",
              "      pytest --nbtest-gpu-min-free 2GiB    nbtest execute --gpu-min-free 2GiB NB",
              '      pyproject.toml: [tool.nbtest] gpu_min_free = "0"',
              '      one notebook: metadata {"nbtest": {"gpu_min_free": "2GiB"}}',
              "  - check again with: nbtest preflight --min-free 2GiB"]
    return lines


def _probe_lines(result: Probe) -> list[str]:
    spec = "unset" if result.visible_spec is None else repr(result.visible_spec)
    lines = [f"  backend: {result.backend}; {result.total} GPU(s) on the machine, "
             f"{len(result.gpus)} visible (CUDA_VISIBLE_DEVICES {spec})"]
    return lines + [f"  not used: {reason}" for reason in result.reasons]


def format_report(report: PreflightReport, verbose: bool = False) -> str:
    """The preflight report for people: one line without a GPU, else a table and advice."""
    if not report.gpus:
        lines = [f"nbtest: {report.reason}; notebooks run on the CPU"]
    else:
        verdict = "passed" if report.ok else "refused to run"
        lines = [f"nbtest: GPU preflight {verdict}: {report.reason}",
                 *table_lines(report.gpus, verbose)]
        if not report.ok:
            lines += _advice(report)
    if verbose:
        lines += _probe_lines(report.probe)
    return "\n".join(lines)


def check_preflight(min_free: int, result: Probe | None = None) -> PreflightReport:
    """The report when the requirement is met (or no GPU is visible); else PreflightError."""
    report = preflight(min_free, result)
    if not report.ok:
        raise PreflightError(format_report(report), min_free=min_free)
    return report
