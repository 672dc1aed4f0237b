"""The registry file: load, merge a session's entries, save atomically under a lock.

Format (keys sorted, indent 2, entries sorted):
    {"pkg.mod.func": [{"file": "tests/test_x.py", "test": "test_name", "line": 12},
                      {"file": "docs_src/registry.ipynb", "test": "registry.ipynb", "cell": 5}]}
Tests that ran this session replace their old entries; entries of tests that did not run are
kept, unless their file no longer exists or (a `.py` file) no longer defines the test: a test
renamed or moved to another file leaves no ghost behind. A file that cannot be parsed is never
overwritten.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import RegistryError
from ..files import write_atomic

Entry = dict[str, Any]


def _entry_key(entry: Entry) -> tuple[str, str, int]:
    return (entry["file"], entry["test"], int(entry.get("line") or entry.get("cell") or 0))


@dataclass
class Registry:
    """Function name -> the tests (file, test, line or cell) that exercise it."""

    entries: dict[str, list[Entry]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path) -> Registry:
        """Read a registry file; a missing file is an empty registry, a corrupt one an error."""
        path = Path(path)
        if not path.exists():
            return cls()
        try:
            data = json.loads(path.read_text(encoding="utf-8") or "{}")
            if not isinstance(data, dict) or not all(isinstance(v, list) for v in data.values()):
                raise ValueError("expected an object mapping names to lists of entries")
        except (OSError, ValueError) as exc:
            raise RegistryError(
                f"{path}: the this_tests registry cannot be read ({exc}); it was left as it is. "
                "Fix it, or delete it to have it rebuilt by the next full test run.",
                path=str(path)) from None
        return cls({name: list(items) for name, items in data.items()})

    def add(self, name: str, entry: Entry) -> None:
        """Add one entry (duplicates ignored)."""
        items = self.entries.setdefault(name, [])
        if entry not in items:
            items.append(entry)

    def merged(self, new: Registry, ran: Iterable[tuple[str, str]], root: Path) -> Registry:
        """This registry updated by a session: `ran` holds the (file, test) pairs that ran."""
        ran = set(ran)
        texts: dict[str, str | None] = {}  # each file read once
        kept = Registry()
        for name, items in self.entries.items():
            for entry in items:
                if (entry["file"], entry["test"]) not in ran and _still_there(root, entry, texts):
                    kept.add(name, entry)
        for name, items in new.entries.items():
            for entry in items:
                kept.add(name, entry)
        return kept

    def to_json(self) -> str:
        """The file's text: keys sorted, entries sorted, indent 2."""
        data = {name: sorted(items, key=_entry_key)
                for name, items in sorted(self.entries.items()) if items}
        return json.dumps(data, indent=2, sort_keys=True) + "\n"

    def save(self, path: str | Path) -> None:
        """Write atomically (temporary file + rename)."""
        write_atomic(path, self.to_json())


def _still_there(root: Path, entry: Entry, texts: dict[str, str | None]) -> bool:
    """Whether an entry's test may still exist: its file does and, for a `.py` test, still
    has its `def` (a test made another way is kept while its file is unreadable)."""
    path = root / entry["file"]
    if entry["file"] not in texts:
        try:
            texts[entry["file"]] = path.read_text(encoding="utf-8") if path.is_file() else None
        except (OSError, UnicodeDecodeError):
            texts[entry["file"]] = ""
    text = texts[entry["file"]]
    if text is None:
        return False
    if path.suffix != ".py" or not text:
        return True
    name = re.escape(entry["test"].split("::")[-1])
    return re.search(rf"^\s*(async\s+)?def\s+{name}\s*\(", text, re.M) is not None


def update_registry_file(path: str | Path, new: Registry, ran: Iterable[tuple[str, str]],
                         root: Path) -> Registry:
    """Merge a session into the file under a lock, so concurrent sessions lose nothing."""
    from filelock import FileLock

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".lock", timeout=60):
        merged = Registry.load(path).merged(new, ran, root)
        merged.save(path)
    return merged


def find_project_root(start: Path | None = None) -> Path | None:
    """The nearest folder, from `start` (the current one) up, that holds a pyproject.toml."""
    here = (start or Path.cwd()).resolve()
    return next((f for f in (here, *here.parents) if (f / "pyproject.toml").is_file()), None)


def find_registry_path(start: Path | None = None) -> Path | None:
    """The registry file named by `[tool.nbtest] registry` of the nearest pyproject.toml."""
    from ..config import read_pyproject

    root = find_project_root(start)
    name = read_pyproject(root).get("registry") if root is not None else None
    return root / name if root is not None and name else None


def run_command(entry: Mapping[str, Any]) -> str:
    """The command that runs the test of an entry."""
    if "cell" in entry or entry["file"].endswith(".ipynb"):
        return f"pytest {shlex.quote(entry['file'])}"
    return f"pytest -sv {shlex.quote(entry['file'] + '::' + entry['test'])}"


def format_entries(name: str, entries: list[Entry]) -> str:
    """Markdown listing the tests of `name`, each with its command."""
    if not entries:
        return f"No tests found for `{name}`. To contribute a test, call `this_tests({name})`."
    lines = [f"Tests found for `{name}`:", ""]
    for entry in sorted(entries, key=_entry_key):
        where = f"cell {entry['cell']}" if "cell" in entry else f"line {entry.get('line')}"
        lines.append(f"* `{run_command(entry)}` ({where})")
    return "\n".join(lines)
