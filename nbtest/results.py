"""What a run produced: CellResult per cell, NotebookResult per notebook (frozen, picklable),
and the typed records (Record) callbacks keep in a result's extras as plain values."""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any, ClassVar, TypeVar

# Cell statuses.
PASSED, FAILED, SKIPPED, TIMEOUT, DIED, NOT_RUN = (
    "passed", "failed", "skipped", "timeout", "died", "not run")
# error_name of a cell that ran cleanly but failed a callback's check (outputs, memory).
CHECK_FAILED = "CheckFailed"
# Notebook statuses.
NB_PASSED, NB_FAILED, NB_SKIPPED, NB_ERROR = "passed", "failed", "skipped", "error"
# the extras key saying how the kernel started (kernel/notebook_kernel.py)
KERNEL_START = "kernel_start"
NBDEV_EXPORTS_NOT_RUN = "nbdev_exports_not_run"  # extras: cells calling nbdev_export(), left out


@dataclass(frozen=True)
class CellResult:
    """One cell as it ran: number from 1 counting every cell of the input file."""

    number: int
    index: int  # position in the executed notebook (0-based)
    source: str
    status: str
    duration: float = 0.0
    execution_count: int | None = None
    error_name: str | None = None
    error_value: str | None = None
    traceback: tuple[str, ...] = ()
    output_tail: str = ""
    injected: bool = False  # the injected-parameters cell
    detail: str = ""  # timeout limit, exit code or signal of a dead kernel, ...

    @property
    def failed(self) -> bool:
        """Whether this cell made the notebook fail."""
        return self.status in (FAILED, TIMEOUT, DIED)

    @property
    def label(self) -> str:
        """How reports name the cell: `cell 7`."""
        if self.injected:
            return (f"cell {self.number} (injected parameters)" if self.number
                    else "the injected parameters cell")
        return f"cell {self.number}"


@dataclass(frozen=True)
class NotebookResult:
    """One notebook run: status, timing, per-cell results and the executed notebook."""

    path: str
    status: str
    duration: float
    cells: tuple[CellResult, ...] = ()
    notebook: Any = None  # the executed nbformat notebook, nothing of nbtest's injected
    reason: str = ""  # why skipped, or the harness error
    kernel_name: str = ""
    # Filled by callbacks, as plain values: the records below put theirs here (Record.put),
    # other callbacks their own keys.
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """Whether the notebook passed."""
        return self.status == NB_PASSED

    @property
    def kernel_start(self) -> str:
        """How the kernel started: `fork`, `spawn` or `spawn, WHY`; "" when none did."""
        return str(self.extras.get(KERNEL_START, ""))

    @property
    def failed_cell(self) -> CellResult | None:
        """The cell that failed the notebook, if one did."""
        return next((c for c in self.cells if c.failed), None)

    def slowest(self, n: int = 3) -> list[CellResult]:
        """The `n` slowest cells that ran."""
        ran = [c for c in self.cells if c.status not in (SKIPPED, NOT_RUN)]
        return sorted(ran, key=lambda c: c.duration, reverse=True)[:n]


def optional_field(key: str | None = None) -> Any:
    """A record field left out of its dict when None (`key`: its key there, if not its name)."""
    return field(default=None, metadata={"omit": True, **({"key": key} if key else {})})


def _key(item: Field[Any]) -> str:
    return str(item.metadata.get("key", item.name))


@dataclass(frozen=True)
class Record:
    """A frozen record kept in a string-keyed dict (a result's extras, a run's startup data) as
    the plain values it serialises to: what users and the kernel read stays a dict. `KEY`: the
    one key holding the record's dict; "" when its fields are keys of their own."""

    KEY: ClassVar[str] = ""

    def as_dict(self) -> dict[str, Any]:
        """The record's plain values by key, in field order."""
        return {_key(f): getattr(self, f.name) for f in fields(self)
                if not (f.metadata.get("omit") and getattr(self, f.name) is None)}

    def put(self, into: MutableMapping[str, Any]) -> None:
        """Write the record into `into`, under `KEY` or key by key (a key already there
        keeps its place)."""
        if self.KEY:
            into[self.KEY] = self.as_dict()
        else:
            into.update(self.as_dict())

    @classmethod
    def of(cls: type[R], found: Mapping[str, Any]) -> R | None:
        """The record `found` holds; None when it holds none (a field without default is
        missing)."""
        data = found.get(cls.KEY) if cls.KEY else found
        if not isinstance(data, Mapping):
            return None
        values = {f.name: data[_key(f)] for f in fields(cls) if _key(f) in data}
        required = {f.name for f in fields(cls)
                    if f.default is MISSING and f.default_factory is MISSING}
        return cls(**values) if required <= values.keys() else None


R = TypeVar("R", bound=Record)


@dataclass(frozen=True)
class MemoryFigures(Record):
    """The memory callback's figures (MiB, of the kernel's process tree) and budget verdict.
    The GPU's are there once the kernel used CUDA (`gpu_memory_returned` is then set), its
    figure None when no source gave one."""

    peak_rss_mib: float
    peak_gpu_mib: float | None = None
    peak_gpu_source: str | None = None  # where the GPU figure came from
    gpu_memory_returned: bool | None = None  # after the kernel was shut down
    gpu_memory_left: str | None = optional_field()  # what still held GPU memory then
    violation: str | None = optional_field("memory_violation")  # the budgets gone over

    def as_dict(self) -> dict[str, Any]:
        """The figures by key; no GPU key for a kernel that never used CUDA."""
        found = super().as_dict()
        if self.gpu_memory_returned is None:
            for name in ("peak_gpu_mib", "peak_gpu_source", "gpu_memory_returned"):
                del found[name]
        return found


@dataclass(frozen=True)
class CellTimings(Record):
    """The timing callback's table: seconds by cell number, and the slowest cells."""

    timings: dict[int, float]
    slowest: list[tuple[int, float]]


@dataclass(frozen=True)
class OutputCheckRecord(Record):
    """The output check's record: each compared cell's new outputs (by cell number), the
    cells that differ, and the matches of each user sanitizer."""

    compared: dict[int, list[Any]] = field(metadata={"key": "compared_outputs"})
    differ: list[int] | None = optional_field("outputs_differ")  # None: not known, all of them
    sanitizer_matches: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ThisTestsCapture(Record):
    """The notebook's this_tests calls: whether any was made, and (name, cell number) each."""

    KEY: ClassVar[str] = "this_tests"
    called: bool
    entries: list[tuple[str, int | None]]


@dataclass(frozen=True)
class AffectedRecord(Record):
    """What the kernel really used, for --nbtest-affected (callbacks/affected.py says how)."""

    KEY: ClassVar[str] = "affected"
    complete: bool
    why: str
    interpreter: str | None
    files: dict[str, str]  # path: digest or "missing"
    listings: dict[str, str]
    exists: dict[str, str]
    env: dict[str, str]
    products: list[str]
    dists: dict[str, str]
    depends: dict[str, dict[str, str]]


@dataclass(frozen=True)
class Profile(Record):
    """One notebook's --nbtest-profile breakdown, JSON-serialisable (it travels from xdist
    workers): wall, kernel and cells' time, imports and outputs."""

    KEY: ClassVar[str] = "profile"
    wall_s: float
    kernel_s: float | None
    kernel_start: str
    cells_s: float
    cells: int
    slowest: list[Any] | None  # [cell number, seconds]
    imports_s: float
    modules: dict[str, Any]
    counts: dict[str, Any]
    entries: dict[str, float]
    messages: int
    bytes: int
