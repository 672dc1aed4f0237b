"""Capture of `this_tests` calls made inside a notebook's kernel.

Before the kernel starts, this callback asks the startup code to install a recorder that
appends each call, with its cell number, to a private file; after the kernel is gone it reads
that file into `result.extras["this_tests"]`. The file outlives the kernel, so calls made
before a timeout or a kernel death are kept, and nothing ever shows in the notebook's outputs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

from ..callback import Callback, NotebookRun, RegistrySettings
from ..inkernel.recorder import source_digest
from ..notebook import is_runnable
from ..results import NotebookResult, ThisTestsCapture


class RegistryCapture(Callback):
    """Collects a notebook's this_tests calls: `extras["this_tests"] = {called, entries}`."""

    def __init__(self, api: Sequence[str]) -> None:
        self.api = list(api)

    def before_kernel_start(self, run: NotebookRun) -> None:
        """Name the kernel's file (in its private folder: it goes with the kernel, however
        the run ends) and tell the startup code about it and the cells."""
        # The file's path travels in run.startup, so one instance serves overlapping runs.
        path = run.private_file("this-tests.jsonl")
        cells = [[run.numbers[i], source_digest(cell.source)]
                 for i, cell in enumerate(run.notebook.cells) if is_runnable(cell)]
        RegistrySettings(path, self.api, cells).put(run.startup)

    def on_notebook_end(self, run: NotebookRun, result: NotebookResult) -> None:
        """Read what the kernel wrote, then remove the file."""
        called, entries = False, []
        settings = RegistrySettings.of(run.startup)
        path = settings.file if settings else None
        if path:
            try:
                with open(path, encoding="utf-8") as fh:
                    for line in fh:
                        record = json.loads(line)
                        called = True
                        entries += [(name, record.get("cell")) for name in record["names"]]
            except (OSError, ValueError):
                pass  # a line cut short by a dying kernel: keep what was read
            finally:
                try:
                    os.unlink(path)
                except OSError:
                    pass
        ThisTestsCapture(called, entries).put(result.extras)
