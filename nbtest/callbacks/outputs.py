"""OutputCheck: compare the outputs of marked cells with the outputs stored in the notebook.

Before the kernel starts, the stored outputs of the cells to compare are kept (the notebook
still holds them then); each such cell that ran cleanly is compared in `check_cell`, and a
mismatch fails it with `output differs (...)` and a diff. With `update_outputs` a mismatch
does not fail: it is recorded so `write_updated_outputs` can store the new outputs.

Extras put on each notebook's result:
`compared_outputs` `{cell number: new outputs}` of every compared cell, `outputs_differ`
(cell numbers whose outputs did not match) and `sanitizer_matches` `{user rule: matches}`.
"""

from __future__ import annotations

import copy
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..callback import Callback, NotebookRun
from ..outputs.compare import compare_outputs, is_compared, require_pillow
from ..outputs.sanitize import Sanitizer, SanitizerSet, user_sanitizers
from ..results import PASSED, OutputCheckRecord

if TYPE_CHECKING:
    from nbformat import NotebookNode

    from ..config import NbTestConfig
    from ..results import CellResult, NotebookResult


@dataclass
class _RunState:
    expected: dict[int, list[Any]]  # by index in the executed notebook
    compared: dict[int, list[Any]] = field(default_factory=dict)  # by input-file number
    differ: list[int] = field(default_factory=list)
    counts: Counter[str] = field(default_factory=Counter)


def _plain(outputs: Sequence[Any]) -> list[Any]:
    """Outputs as plain JSON data (no NotebookNode), safe to keep and to pickle."""
    plain: list[Any] = json.loads(json.dumps(list(outputs), default=str))
    return plain


class OutputCheck(Callback):
    """Compares the new outputs of marked cells (or all, with check_outputs) with stored ones."""

    order = 10
    check_stops_run = False  # as nbval: every mismatching cell of a notebook is reported

    def __init__(self, sanitizers: Sequence[Sanitizer] = (), builtin: bool = True) -> None:
        self.sanitizers = SanitizerSet(sanitizers, builtin)
        self.compared = 0  # cells compared in this process: the user rules were exercised
        # Keyed by id(run), so one instance serves notebooks whose runs overlap (per-cell items).
        self._runs: dict[int, _RunState] = {}

    @classmethod
    def from_config(cls, config: NbTestConfig, root: Path | None = None) -> OutputCheck:
        """The check with the config's user sanitizers (a file path relative to cwd or root)."""
        if config.compare_images:
            require_pillow()
        return cls(user_sanitizers(config, root))

    def before_kernel_start(self, run: NotebookRun) -> None:
        """Keep the stored outputs of the cells to compare, before anything runs."""
        if run.config.compare_images:
            require_pillow()
        check_all = bool(run.config.check_outputs)
        expected = {index: copy.deepcopy(list(cell.get("outputs", [])))
                    for index, cell in enumerate(run.notebook.cells)
                    if is_compared(cell, check_all)}
        self._runs[id(run)] = _RunState(expected)

    def check_cell(self, run: NotebookRun, cell: NotebookNode,
                   result: CellResult) -> str | None:
        """Compare a cell that ran cleanly; the failure text is `output differs (...)` + diff."""
        state = self._runs.get(id(run))
        if state is None or result.index not in state.expected or result.status != PASSED:
            return None
        outputs = list(cell.get("outputs", []))
        problem = compare_outputs(state.expected[result.index], outputs, self.sanitizers,
                                  rtol=run.config.rtol, compare_images=run.config.compare_images,
                                  counts=state.counts, ignore=run.config.skip_compare)
        self.compared += 1
        state.compared[result.number] = _plain(outputs)
        if problem:
            state.differ.append(result.number)
            if run.config.update_outputs:
                return None  # recorded; write_updated_outputs stores the new outputs
        return problem

    def on_notebook_end(self, run: NotebookRun, result: NotebookResult) -> None:
        """Publish the compared cells' new outputs and the user rules' match counts."""
        state = self._runs.pop(id(run), None)
        if state is None:
            return
        OutputCheckRecord(state.compared, list(state.differ),
                          {rule.name: state.counts.get(rule.name, 0)
                           for rule in self.sanitizers.user}).put(result.extras)

    # -- the session's view of the user sanitizers (nbval#204) -------------------------------
    def payload(self) -> dict[str, Any]:
        """What an xdist worker sends: cells compared and matches per user rule."""
        return {"compared": self.compared, "matches": dict(self.sanitizers.matches)}

    def merge(self, payload: Mapping[str, Any]) -> None:
        """Add a worker's payload to this (controller's) totals."""
        self.compared += int(payload.get("compared", 0))
        self.sanitizers.matches.update(payload.get("matches", {}))

    def unmatched_report(self) -> list[str]:
        """Lines naming the user sanitizers that matched nothing, once outputs were compared."""
        if not self.compared:
            return []
        return [rule.describe() for rule in self.sanitizers.unmatched()]
