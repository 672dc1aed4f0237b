"""What a notebook's kernel really used, for `--nbtest-affected` (the run's part of its
fingerprint; the static part is fingerprint.static_fingerprint).

Before the kernel starts, this callback asks the startup code to install the in-kernel tracker
(nbtest.affected.tracker), which appends after each cell what is new to a private file. After
the kernel is gone the file is read and the files named in it are hashed here:

`result.extras["affected"]` = `{complete, why, interpreter, files: {path: digest},
dists: {name: version}, depends: {glob: {path: digest}}}`, paths relative to the project root.
`complete` is false (and `why` says why) when the tracker could not report everything: it did
not start, its hook failed, a cell went unreported (the kernel died), or the kernel runs
another Python than nbtest (whose distributions cannot be read from here).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from ..affected.fingerprint import (
    FileDigests,
    depends_files,
    distributions_of,
    interpreter,
    relative,
)
from ..callback import Callback, NotebookRun
from ..results import NotebookResult


class AffectedCapture(Callback):
    """Installs the kernel tracker and turns its report into the run's fingerprint part."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def before_kernel_start(self, run: NotebookRun) -> None:
        """Make the private file (in the kernel's private folder, so it goes with the kernel
        however the run ends: Ctrl-C, SIGTERM, a kernel that never starts); tell the startup
        code where it is and what the root is."""
        if not run.config.cache:
            return  # metadata.nbtest.cache: false: always runs, nothing to note
        if run.kernel_folder:
            path = os.path.join(run.kernel_folder, "affected.jsonl")
            open(path, "w").close()
        else:  # a run driven by hand, without a kernel's folder
            fd, path = tempfile.mkstemp(prefix="nbtest-affected-", suffix=".jsonl")
            os.close(fd)
        roots = sorted({str(self.root), os.path.realpath(self.root)})
        run.startup["affected"] = {"file": path, "roots": roots}

    def on_notebook_end(self, run: NotebookRun, result: NotebookResult) -> None:
        """Read what the kernel wrote (then remove the file) and hash what it names."""
        path = run.startup.get("affected", {}).get("file")
        if not path:
            return
        try:
            lines = _read_lines(path)
        finally:
            try:
                os.unlink(path)
            except OSError:
                pass
        result.extras["affected"] = self.fingerprint(run, result, lines)

    def fingerprint(self, run: NotebookRun, result: NotebookResult,
                    lines: list[dict[str, Any]]) -> dict[str, Any]:
        """The run's part of the fingerprint from the tracker's lines."""
        header, reports = (lines[0] if lines else {}), lines[1:]
        ran = sum(1 for cell in result.cells if cell.execution_count)
        why = ""
        errors = [line["error"] for line in lines if line.get("error")]
        if not header.get("installed"):
            why = header.get("error") or "the kernel tracker did not start (is nbtest " \
                                          "installed in the kernel's environment?)"
        elif errors:
            why = errors[0]
        elif len(reports) < ran:
            why = f"the kernel reported {len(reports)} of the {ran} cells it ran"
        elif (header.get("interpreter"), header.get("prefix")) != (
                interpreter(), os.path.realpath(sys.prefix)):
            why = (f"the kernel runs another Python ({header.get('interpreter')} in "
                   f"{header.get('prefix')}) than nbtest: its distributions cannot be read")
        read: set[str] = set()
        written: set[str] = set()
        tops: set[str] = set()
        for line in reports:
            read.update(line.get("modules", ()), line.get("read", ()))
            written.update(line.get("written", ()))
            tops.update(line.get("tops", ()))
        digests = FileDigests()
        # A file the notebook wrote is its product, not an input, even if it read it back.
        files = {relative(p, self.root): digests(p) for p in sorted(read - written)}
        sanitize = run.config.sanitize_with
        if sanitize:  # the output check's rules are an input of the verdict too
            files[relative(self.root / sanitize, self.root)] = digests(self.root / sanitize)
        return {"complete": not why, "why": why, "interpreter": header.get("interpreter"),
                "files": files, "dists": distributions_of(sorted(tops)),
                "depends": depends_files(run.config.depends, Path(run.path).resolve().parent,
                                         self.root, digests)}


def _read_lines(path: str) -> list[dict[str, Any]]:
    """The tracker's JSON lines; a line cut short by a dying kernel ends the list."""
    lines: list[dict[str, Any]] = []
    try:
        with open(path, encoding="utf-8") as fh:
            for text in fh:
                lines.append(json.loads(text))
    except (OSError, ValueError):
        lines.append({"error": "the kernel's report was cut short"})
    return lines
