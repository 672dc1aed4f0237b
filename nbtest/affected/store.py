"""`--nbtest-affected`: the cache of notebook results and the decision to run one or not.

One small JSON file per notebook in pytest's cache folder (`.pytest_cache/d/nbtest-affected/`,
so `--cache-clear` resets it and CI caches it with the rest), written atomically by one
process. A notebook runs unless its last run passed with a complete fingerprint equal to its
fingerprint now; `Checker.reasons` says why it runs, in words a user can act on. An entry
that is missing, corrupt, of another format or not of the schema (schema.py, every field
checked) means "run it", never an error.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..inkernel.tracker import listing_digest
from ..results import NB_ERROR, NB_FAILED, NB_PASSED, NB_SKIPPED
from .fingerprint import (
    FORMAT,
    FileDigests,
    depends_files,
    env_value,
    installed_version,
    interpreter,
    kernelspec_identity,
    nbtest_version,
    path_kind,
)
from .schema import INCOMPLETE, TIME_FORMAT, schema_problem

CACHE_FOLDER = "nbtest-affected"  # under pytest's cache: config.cache.mkdir(CACHE_FOLDER)
# The name the pytest face registers its AffectedSession under (plugin/affected.py).
AFFECTED_PLUGIN = "nbtest-affected"
class Store:
    """The per-notebook entries in one folder; reads never raise, writes are atomic."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    def path_for(self, notebook: str) -> Path:
        """The entry file of `notebook` (its path relative to the project root)."""
        name = re.sub(r"[^\w.-]+", "_", notebook)[-80:]
        return self.folder / f"{name}.{hashlib.sha1(notebook.encode()).hexdigest()[:10]}.json"

    def load(self, notebook: str) -> tuple[dict[str, Any] | None, str]:
        """(entry, "") or (None, why there is none usable)."""
        path = self.path_for(notebook)
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None, "never run with --nbtest-affected (no cache entry)"
        except (OSError, ValueError):
            return None, f"its cache entry {path.name} is unreadable"
        if not isinstance(entry, dict) or entry.get("format") != FORMAT:
            return None, f"its cache entry {path.name} is of another format"
        if entry.get("notebook") != notebook:
            return None, f"its cache entry {path.name} belongs to another notebook"
        problem = schema_problem(entry)
        if problem:
            return None, f"its cache entry {path.name} is malformed: {problem}"
        return entry, ""

    def save(self, entry: Mapping[str, Any]) -> None:
        """Write the entry of `entry["notebook"]` atomically (a temporary file renamed)."""
        from ..files import write_atomic

        text = json.dumps(entry, indent=1, sort_keys=True) + "\n"
        write_atomic(self.path_for(entry["notebook"]), text)


def entries_in(folder: Path) -> tuple[dict[str, dict[str, Any]], int]:
    """({notebook: entry} of the usable entries in an entries folder, how many were not)."""
    found: dict[str, dict[str, Any]] = {}
    bad = 0
    for path in sorted(Path(folder).glob("*.json")):
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            bad += 1
            continue
        if (not isinstance(entry, dict) or entry.get("format") != FORMAT
                or not isinstance(entry.get("notebook"), str) or schema_problem(entry)
                or path.name != Store(folder).path_for(entry["notebook"]).name):
            bad += 1
            continue
        found[entry["notebook"]] = entry
    return found, bad


def newest(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The entry to keep of one notebook's entries from several caches: the newest; at the
    same second, one that is not a pass (never trust a pass over a failure)."""
    return max(entries, key=lambda e: (e["time"], e["status"] != NB_PASSED))


def merge(target: Store, sources: list[Path]) -> tuple[int, int]:
    """Merge the entries of the `sources` folders into `target`, per notebook the newest
    entry of all (target's own included): the group of a split CI run that ran a notebook
    has its newest entry, the others only the older copy they restored. Returns (entries
    taken from the sources, entries ignored as unusable)."""
    mine, _ = entries_in(target.folder)
    taken = ignored = 0
    candidates: dict[str, list[dict[str, Any]]] = {n: [e] for n, e in mine.items()}
    for source in sources:
        found, bad = entries_in(source)
        ignored += bad
        for notebook, entry in found.items():
            candidates.setdefault(notebook, []).append(entry)
    for notebook, entries in sorted(candidates.items()):
        kept = newest(entries)
        if kept is not mine.get(notebook):
            target.save(kept)
            taken += 1
    return taken, ignored


def new_entry(notebook: str, status: str, commit: str | None, **fields: Any) -> dict[str, Any]:
    """An entry: the notebook, its outcome, nbtest's version and when (UTC) and at which
    commit it ran, plus `fields` (a pass carries its whole fingerprint)."""
    return {"format": FORMAT, "notebook": notebook, "status": status, "nbtest": nbtest_version(),
            "interpreter": interpreter(), "commit": commit,
            "time": datetime.now(timezone.utc).strftime(TIME_FORMAT), **fields}


def when(entry: Mapping[str, Any]) -> str:
    """`abc1234, 2026-11-20` (or the date alone outside git): when an entry was made."""
    date = str(entry.get("time", ""))[:10]
    return ", ".join(part for part in (entry.get("commit"), date) if part)


@dataclass
class Decision:
    """Whether one notebook runs, and why (or since when it is unchanged)."""

    notebook: str
    reasons: list[str] = field(default_factory=list)
    entry: dict[str, Any] | None = None

    @property
    def runs(self) -> bool:
        """It runs unless nothing changed since its last pass."""
        return bool(self.reasons)

    def describe(self) -> str:
        """One line: the reasons it runs, or since when it is unchanged."""
        if self.runs:
            return "; ".join(self.reasons)
        assert self.entry is not None
        return f"unchanged since its pass ({when(self.entry)})"

    def as_json(self) -> dict[str, Any]:
        """What `nbtest affected --json` prints for it."""
        data: dict[str, Any] = {"notebook": self.notebook, "runs": self.runs,
                                "reasons": self.reasons}
        if not self.runs and self.entry is not None:
            data.update(passed=self.entry.get("time"), commit=self.entry.get("commit"))
        return data


class Checker:
    """Compares notebooks' fingerprints now with their entries; files are read once each.
    A pass older than `max_age` days (None: no limit) is not reused."""

    def __init__(self, root: Path, store: Store | None, max_age: float | None = None) -> None:
        self.root = Path(root)
        self.store = store
        self.max_age = max_age
        self.digests = FileDigests()
        self.now = datetime.now(timezone.utc)
        # By the path as entries write it: hundreds of entries name the same files and
        # folders, each hashed or listed once (no Path object per reference either).
        self.by_name: dict[str, str] = {}
        self.listings: dict[str, str] = {}

    def file(self, path: str) -> str:
        """The digest now of `path` as an entry names it (relative to the root, or not)."""
        found = self.by_name.get(path)
        if found is None:
            found = self.by_name[path] = self.digests(os.path.join(self.root, path))
        return found

    def listing(self, folder: str) -> str:
        """The digest now of the names in `folder` as an entry names it; `missing`."""
        found = self.listings.get(folder)
        if found is None:
            found = self.listings[folder] = listing_digest(
                os.path.join(self.root, folder)) or "missing"
        return found

    def decide(self, static: Mapping[str, Any]) -> Decision:
        """The decision for a notebook whose static fingerprint (read now) is `static`."""
        notebook = static["notebook"]
        if not static["cache"]:
            return Decision(notebook, ["metadata.nbtest.cache is false: it always runs"])
        if self.store is None:
            return Decision(notebook, ["pytest's cache is off (-p no:cacheprovider)"])
        entry, problem = self.store.load(notebook)
        if entry is None:
            return Decision(notebook, [problem])
        return Decision(notebook, self.reasons(entry, static), entry)

    def reasons(self, entry: Mapping[str, Any], static: Mapping[str, Any]) -> list[str]:
        """Why the notebook runs, given its entry: empty when nothing changed since a pass."""
        status = entry.get("status")
        if status != NB_PASSED:
            why = f": {entry['why']}" if entry.get("why") else ""
            return [f"its last run ({when(entry)}) {_outcome(status)}{why}"]
        found = self._age(entry)
        for key, now in (("nbtest", nbtest_version()), ("interpreter", interpreter())):
            if entry.get(key) != now:
                found.append(f"{key} changed ({entry.get(key)} -> {now})")
        if entry.get("nbtest_code") != static.get("nbtest_code"):
            found.append("nbtest's own code changed (it is installed editable)")
        kernel = static["settings"].get("kernel")
        if entry.get("kernelspec") != kernelspec_identity(kernel, str(self.root)):
            found.append(f"the kernelspec {kernel!r} changed")
        found += _setting_changes(entry.get("settings", {}), static["settings"])
        found += _cell_changes(entry.get("cells", []), static["cells"])
        for path, old in sorted(entry.get("files", {}).items()):
            now = self.file(path)
            if now != old:
                how = "removed" if now == "missing" else "added" if old == "missing" else \
                    "changed"
                found.append(f"file {how}: {path}")
        for folder, old in sorted(entry.get("listings", {}).items()):
            now = self.listing(folder)
            if now != old:
                found.append(f"the listing of {folder} changed")
        for path, old in sorted(entry.get("exists", {}).items()):
            now = path_kind(self.root / path)
            if now != old:
                found.append(f"file removed: {path}" if now == "missing" else
                             f"{path} is now a {now}")
        for name, old in sorted(entry.get("env", {}).items()):
            now = env_value(name)
            if now != old:
                how = "unset" if now == "unset" else "set" if old == "unset" else "changed"
                found.append(f"environment variable {name} {how}")
        for dist, version in sorted(entry.get("dists", {}).items()):
            installed = installed_version(dist)
            if installed != version:
                found.append(f"distribution {dist} changed ({version} -> "
                             f"{installed or 'not installed'})")
        folder = (self.root / static["notebook"]).parent
        depends = depends_files(static["depends"], folder, self.root, self.digests)
        old_depends = entry.get("depends", {})
        for pattern in sorted(set(depends) | set(old_depends)):
            if depends.get(pattern) != old_depends.get(pattern):
                changed = sorted(set(depends.get(pattern, {}).items())
                                 ^ set(old_depends.get(pattern, {}).items()))
                names = sorted({path for path, _ in changed}) or ["the glob itself"]
                found.append(f"depends {pattern!r} changed: {', '.join(names)}")
        return found


    def _age(self, entry: Mapping[str, Any]) -> list[str]:
        """A pass too old to reuse (affected_max_age), or dated in the future."""
        made = datetime.strptime(entry["time"], TIME_FORMAT).replace(tzinfo=timezone.utc)
        days = (self.now - made).total_seconds() / 86400
        if days < -1:  # a clock far ahead, or a forged entry
            return [f"its pass ({when(entry)}) is dated in the future"]
        if self.max_age is not None and days > self.max_age:
            return [f"its pass ({when(entry)}) is older than {self.max_age:g} days "
                    "(affected_max_age)"]
        return []


def follow_products(decisions: list[Decision], root: Path) -> dict[str, int]:
    """Notebooks that feed each other (one reads a file another wrote, its product): a
    consumer runs whenever one of its producers runs, and a consumer that runs while an
    input it read is a missing product pulls that product's producer in. Reasons are added
    to `decisions`; the result ranks the notebooks that run (a producer's rank is below its
    consumers'), the order to run them in."""
    producers: dict[str, list[Decision]] = {}
    for decision in decisions:
        for path in (decision.entry or {}).get("products", ()):
            producers.setdefault(path, []).append(decision)

    def fed(decision: Decision) -> list[tuple[str, str, Decision]]:
        """(path, digest when read, producer) of each input some other notebook makes."""
        entry = decision.entry or {}
        files = entry.get("files") or dict.fromkeys(entry.get("inputs", ()), "read")
        return [(path, old, producer) for path, old in sorted(files.items())
                for producer in producers.get(path, ()) if producer is not decision]

    changed = True
    while changed:  # until no decision changes: a chain a -> b -> c follows through
        changed = False
        for decision in decisions:
            for path, old, producer in fed(decision):
                if producer.runs and not decision.runs:
                    decision.reasons.append(f"its input {path} is made by "
                                            f"{producer.notebook}, which runs")
                    changed = True
                elif (decision.runs and not producer.runs and old != "missing"
                      and path_kind(root / path) == "missing"):
                    producer.reasons.append(f"its product {path}, read by "
                                            f"{decision.notebook}, is missing")
                    changed = True
    ranks: dict[str, int] = {}

    def rank(decision: Decision, seen: frozenset[str]) -> int:
        if decision.notebook not in ranks:
            below = [rank(producer, seen | {decision.notebook}) + 1
                     for _, _, producer in fed(decision)
                     if producer.runs and producer.notebook not in seen]
            ranks[decision.notebook] = max(below, default=0)
        return ranks[decision.notebook]

    for decision in decisions:
        if decision.runs:
            rank(decision, frozenset())
    return ranks


def _outcome(status: Any) -> str:
    return {NB_FAILED: "failed", NB_ERROR: "errored", NB_SKIPPED: "was skipped",
            INCOMPLETE: "passed but its fingerprint is incomplete"}.get(str(status),
                                                                          f"ended {status}")


def _setting_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    return [f"setting {name} changed ({old.get(name)!r} -> {new.get(name)!r})"
            for name in sorted(set(old) | set(new)) if old.get(name) != new.get(name)]


def _cell_changes(old: list[Any], new: list[Any]) -> list[str]:
    if [d for _, d in old] == [d for _, d in new]:
        return []
    if len(old) != len(new):
        return [f"code cells added or removed ({len(old)} -> {len(new)})"]
    numbers = [str(n) for (_, a), (n, b) in zip(old, new) if a != b]
    return [f"code cell{'s' if len(numbers) > 1 else ''} {', '.join(numbers)} changed"]
