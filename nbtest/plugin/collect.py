"""The pytest collector of a notebook file: NotebookFile yields a NotebookItem, or one CellItem
per cell, and for cell items owns the one kernel they share (cell_kernel.py), closed by its
teardown.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..config import NbTestConfig, in_pytest_spelling
from ..errors import NbTestError
from .items import CellItem, NotebookItem, ReportsNbTestErrors, display_path
from .state import CONFIG_KEY

# nbval's NotebookFile.skip_compare: what its users' conftests extend in pytest_collectstart
# (`collector.skip_compare += ('stderr',)`); what they add is not compared (skip_compare).
NBVAL_SKIP_COMPARE = ("metadata", "traceback", "prompt_number", "output_type", "name",
                      "execution_count", "application/vnd.jupyter.widget-view+json")

class NotebookFile(pytest.File):
    """A `.ipynb` file: read once here, then one item (or one per code cell)."""

    skip_compare: tuple[str, ...] = NBVAL_SKIP_COMPARE
    notebook: Any = None  # the notebook as read, once collected
    plan: Any = None  # the notebook resolved (nbtest.plan.Plan), once collected

    @property
    def session_config(self) -> NbTestConfig:
        """The options its notebook runs with, before its metadata: the session's, plus what
        a conftest set on this collector."""
        return self.__dict__.get("_session_config") or self.config.stash[CONFIG_KEY]

    @session_config.setter
    def session_config(self, value: NbTestConfig) -> None:
        self.__dict__["_session_config"] = value

    def collect(self) -> Iterator[pytest.Item]:
        """Load the notebook, resolve it once into the plan its items run (options from its
        metadata parsed here, and nowhere else), and yield its items, with their markers."""
        import dataclasses

        from ..notebook import load_notebook
        from ..plan import plan_notebook

        try:
            nb = load_notebook(display_path(self.path))
            plan = plan_notebook(display_path(self.path), self.session_config, notebook=nb)
            added = [key for key in self.skip_compare if key not in NBVAL_SKIP_COMPARE]
            if added:  # an nbval conftest's pytest_collectstart extended it
                self.session_config = self.session_config.with_explicit(skip_compare=(
                    *plan.config.notebook.get("skip_compare", ()), *added))
                plan = dataclasses.replace(
                    plan, config=self.session_config.with_notebook(plan.config.notebook))
        except NbTestError as exc:
            # An error of this file alone: the rest of the session still runs.
            yield UnreadableNotebook.from_parent(self, name=self.path.name, nodeid=self.nodeid,
                                                 error=exc)
            return
        self.notebook = nb  # as read: what the affected fingerprint and preload read
        self.plan = plan
        config = plan.config
        flags: set[str] = set()
        if config.nbdev:
            from ..nbdev import not_run, notebook_flags
            from .state import note_left_out

            try:
                why = not_run(nb, display_path(self.path))
            except NbTestError as exc:  # front matter that is not YAML
                yield UnreadableNotebook.from_parent(self, name=self.path.name,
                                                     nodeid=self.nodeid, error=exc)
                return
            if why:
                note_left_out(self.config, self.path, why)
                return
            flags = notebook_flags([c for c in nb.cells if c.cell_type == "code"],
                                   config.tst_flags)
        items: list[NotebookItem | CellItem]
        if config.cells:
            numbers = [i + 1 for i, c in enumerate(nb.cells) if c.cell_type == "code"]
            # An explicit node id: pytest 9 parses the cached ids of --lf / --sw / --deselect,
            # reading `[3]` as parameters; an id built by name would not compare equal.
            items = [CellItem.from_parent(self, name=f"cell[{n}]", number=n,
                                          nodeid=f"{self.nodeid}::cell[{n}]", plan=plan)
                     for n in numbers]
            from .cell_kernel import CellKernel

            self.cell_kernel = CellKernel(self)
        else:
            items = [NotebookItem.from_parent(self, name=self.path.name, nodeid=self.nodeid,
                                              plan=plan)]
        for item in items:
            for marker in (*config.markers, *sorted(flags)):
                item.add_marker(marker)
            if config.skip:
                item.add_marker(pytest.mark.skip(reason=config.skip))
            for flag in sorted(flags - set(config.flags)):  # nbdev_test skips it too
                item.add_marker(pytest.mark.skip(
                    reason=f"every cell is flagged {flag}: give --nbtest-flags {flag}"))
        yield from items

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException],
                     style: Any = None) -> Any:
        """A load error is one paragraph naming the file; anything else, its traceback."""
        if isinstance(excinfo.value, NbTestError):
            return in_pytest_spelling(excinfo.value.message)
        return super().repr_failure(excinfo)

    def source_line(self, number: int) -> int:
        """0-based line of cell `number`'s first source line in the file (read once)."""
        if not hasattr(self, "source_lines"):
            from .locations import source_lines

            try:
                self.source_lines = source_lines(self.path.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError):
                self.source_lines = []
        lines = self.source_lines
        return lines[number - 1] if 0 < number <= len(lines) else 0

    def teardown(self) -> None:
        """Close the kernel its cell items shared (pytest's SetupState calls this after the
        file's last item, or at session end when the run was cut short)."""
        kernel = self.__dict__.get("cell_kernel")
        if kernel is not None:
            kernel.close()


class UnreadableNotebook(ReportsNbTestErrors, pytest.Item):
    """A notebook that cannot be read: an error at setup, with the loader's message."""

    def __init__(self, *, error: NbTestError, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.error = error

    def setup(self) -> None:
        """Raise the load error, so pytest reports this file as an error."""
        raise self.error

    def runtest(self) -> None:
        """Never reached: setup raised."""

    def reportinfo(self) -> tuple[Path, int, str]:
        """Where pytest says the test is."""
        return self.path, 0, f"{self.nodeid} (notebook)"
