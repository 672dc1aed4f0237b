"""What a notebook's kernel really used, for `--nbtest-affected` (the run's part of its
fingerprint; the static part is fingerprint.static_fingerprint).

Before the kernel starts, this callback asks the startup code to install the in-kernel tracker
(nbtest.inkernel.tracker), which appends after each cell what is new to a private file. After
the kernel is gone the file is read and the files named in it are hashed here, each only if
its size, mtime and inode are still those the kernel saw when it read it (checked before and
after hashing): a file changed while the notebook ran makes the fingerprint incomplete.

`result.extras["affected"]` = `{complete, why, interpreter, files: {path: digest or "missing"},
listings: {folder: digest}, exists: {path: kind}, env: {variable: digest of its value},
products: [path written],
dists: {name: version}, depends: {glob: {path: digest}}}`, paths relative to the project root
(absolute outside it). `files` also holds each conftest.py from the root down to the
notebook's folder ("missing" where there is none: one added there runs the notebook).
`complete` is false (and `why` says why) when the tracker could not report everything: it did
not start, its hook failed, a cell went unreported (the kernel died), the kernel runs another
Python than nbtest (whose distributions cannot be read from here), or a file it read changed
while it ran (edited meanwhile, or rewritten by the notebook after reading it).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from ..affected.fingerprint import (
    FileDigests,
    conftest_paths,
    depends_files,
    distributions_of,
    env_value,
    file_digest,
    interpreter,
    path_kind,
    relative,
    tracked_variable,
)
from ..callback import AffectedSettings, Callback, NotebookRun
from ..inkernel.tracker import file_stat, listing_digest
from ..results import AffectedRecord, NotebookResult

# What a run did through a channel nbtest cannot fingerprint, in `nbtest affected`'s words.
CHANNEL_WORDS = {"subprocess": "ran a subprocess", "socket": "opened a network connection",
                 "sqlite": "opened a sqlite database"}


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
        path = run.private_file("affected.jsonl")
        roots = sorted({str(self.root), os.path.realpath(self.root)})
        private = [os.path.dirname(path)] if run.kernel_folder else []
        AffectedSettings(path, roots, private).put(run.startup)

    def on_notebook_end(self, run: NotebookRun, result: NotebookResult) -> None:
        """Read what the kernel wrote (then remove the file) and hash what it names."""
        settings = AffectedSettings.of(run.startup)
        if settings is None or not settings.file:
            return
        path = settings.file
        try:
            lines = _read_lines(path)
        finally:
            try:
                os.unlink(path)
            except OSError:
                pass
        self.fingerprint(run, result, lines).put(result.extras)

    def fingerprint(self, run: NotebookRun, result: NotebookResult,
                    lines: list[dict[str, Any]]) -> AffectedRecord:
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
        executed = [cell.number for cell in result.cells if cell.execution_count]
        read: dict[str, tuple[Any, int | None]] = {}  # path: (stat when read, cell)
        written: set[str] = set()
        tops: set[str] = set()
        channels: dict[str, int | None] = {}  # channel: the first cell that used it
        listed: dict[str, tuple[Any, int | None]] = {}  # folder: (names' digest, cell)
        absent: dict[str, int | None] = {}  # path found absent: the cell that looked
        exists: dict[str, tuple[str, int | None]] = {}  # path stat'ed: (its kind, cell)
        variables: set[str] = set()
        for index, line in enumerate(reports):
            cell = executed[index] if index < len(executed) else None
            for path, seen in line.get("read", ()):
                read.setdefault(path, (seen, cell))
            for path in line.get("absent", ()):
                absent.setdefault(path, cell)
            for path, kind in line.get("exists", {}).items():
                exists.setdefault(path, (kind, cell))
            variables.update(line.get("env", ()))
            written.update(line.get("written", ()))
            tops.update(line.get("tops", ()))
            for channel in line.get("channels", ()):
                channels.setdefault(channel, cell)
            for folder, seen in line.get("listed", {}).items():
                listed.setdefault(folder, (seen, cell))
        files: dict[str, str] = {}
        changed = []
        for path, (seen, cell) in sorted(read.items()):
            found = digest_as_read(path, seen)
            if found is None:
                where = f" (read in cell {cell})" if cell else ""
                how = "read, then written by the notebook" if path in written else \
                    "changed while it ran"
                changed.append(f"{relative(path, self.root)} {how}{where}")
            else:
                files[relative(path, self.root)] = found
        for path, cell in sorted(absent.items()):
            rel = relative(path, self.root)
            if rel in files:
                continue  # it appeared and was read: its content is the input
            if path in written or path_kind(path) == "missing":
                files[rel] = "missing"  # absent when it looked: a file there now runs it
            else:
                where = f" (looked for in cell {cell})" if cell else ""
                changed.append(f"{rel} appeared while it ran{where}")
        present: dict[str, str] = {}
        for path, (kind, cell) in sorted(exists.items()):
            rel = relative(path, self.root)
            if rel in files or path in written:
                continue
            if path_kind(path) != kind:
                where = f" (looked for in cell {cell})" if cell else ""
                changed.append(f"{rel} changed while it ran{where}")
            else:
                present[rel] = kind
        listings: dict[str, str] = {}
        for folder, (seen, cell) in sorted(listed.items()):
            if listing_digest(folder) != seen:
                where = f" (listed in cell {cell})" if cell else ""
                changed.append(f"the listing of {relative(folder, self.root)} changed while "
                               f"it ran{where}")
            else:
                listings[relative(folder, self.root)] = seen or "missing"
        untrusted = [f"{CHANNEL_WORDS.get(c, c)} (cell {cell})" if cell else CHANNEL_WORDS.get(c, c)
                     for c, cell in channels.items() if c not in run.config.affected_trust]
        if untrusted and not why:
            why = f"{', '.join(untrusted)}: will always run (affected_trust lets it be reused)"
        if changed and not why:
            more = f" (and {len(changed) - 1} more)" if len(changed) > 1 else ""
            why = changed[0] + more
        digests = FileDigests()
        sanitize = run.config.sanitize_with
        if sanitize:  # the output check's rules are an input of the verdict too
            files[relative(self.root / sanitize, self.root)] = digests(self.root / sanitize)
        for conftest in conftest_paths(Path(run.path).resolve(), self.root):
            files[relative(conftest, self.root)] = digests(conftest)  # "missing": none yet
        env = {name: env_value(name) for name in sorted(variables) if tracked_variable(name)}
        return AffectedRecord(
            complete=not why, why=why, interpreter=header.get("interpreter"), files=files,
            listings=listings, exists=present, env=env,
            products=sorted({relative(path, self.root) for path in written}),
            dists=distributions_of(sorted(tops)),
            depends=depends_files(run.config.depends, Path(run.path).resolve().parent,
                                  self.root, digests))


def digest_as_read(path: str, seen: Any) -> str | None:
    """The digest of the file at `path` as the kernel read it (`seen`: its stat then, None
    when it was absent), or None when it is not the same file any more."""
    if file_stat(path) != seen:
        return None
    found = file_digest(path)
    return found if file_stat(path) == seen else None


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
