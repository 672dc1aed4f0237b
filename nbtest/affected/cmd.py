"""`nbtest affected [PATHS] [--json] [--merge DIR ...] [-- PYTEST_ARGS]`: which notebooks
would run, and why.

It asks pytest itself: a collection-only session with `--nbtest --nbtest-affected` (so the
rootdir, the cache folder, the conftests and the options are those of the real run), whose
decisions it prints for humans or, with `--json`, for CI scripts. No kernel starts. `--merge`
first merges other caches' entries (the groups of a split CI run) into this project's cache,
per notebook the newest (store.merge).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import UsageError


def add_parser(commands: Any) -> None:
    """Register the `affected` subcommand."""
    parser = commands.add_parser(
        "affected", help="which notebooks --nbtest-affected would run, and why")
    parser.add_argument("paths", nargs="*", metavar="PATH",
                        help="notebooks or folders, as given to pytest (default: pytest's)")
    parser.add_argument("--json", action="store_true",
                        help="print a JSON object: {root, run: [...], unchanged: [...]}")
    parser.add_argument("--merge", nargs="+", default=[], metavar="DIR",
                        help="first merge these caches' entries (.pytest_cache folders of "
                             "split CI groups) into this project's cache, newest wins")


class _Decisions:
    """A plugin object that keeps the session's decisions once collection is over."""

    def __init__(self) -> None:
        self.found: list[Any] | None = None
        self.root = ""
        self.store: Any = None

    def pytest_collection_finish(self, session: Any) -> None:
        """Take the decisions of nbtest's affected session."""
        from .store import AFFECTED_PLUGIN

        plugin = session.config.pluginmanager.get_plugin(AFFECTED_PLUGIN)
        self.root = str(session.config.rootpath)
        self.found = plugin.decisions if plugin is not None else None
        self.store = plugin.store if plugin is not None else None


def decide(paths: Sequence[str], pytest_args: Sequence[str]) -> tuple[str, list[Any], str]:
    """(rootdir, decisions, pytest's output) of a collection-only affected session."""
    root, decisions, out, _ = _session(paths, pytest_args)
    return root, decisions, out


def _session(paths: Sequence[str], pytest_args: Sequence[str]) -> tuple[str, list[Any], str,
                                                                         Any]:
    """decide()'s, and the session's Store (None when pytest's cache is off)."""
    import pytest

    plugin = _Decisions()
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = pytest.main(["--nbtest", "--nbtest-affected", "--collect-only", "-q",
                            "-p", "no:randomly", *pytest_args, *paths], plugins=[plugin])
    if code not in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        raise UsageError(f"pytest could not collect the notebooks (exit {int(code)}):\n"
                         f"{out.getvalue().strip()}")
    return plugin.root, plugin.found or [], out.getvalue(), plugin.store


def entries_folder(path: str) -> Path:
    """The entries folder of a cache given as a `.pytest_cache` folder, a project folder
    holding one, or the entries folder itself."""
    from .store import CACHE_FOLDER

    base = Path(path)
    for folder in (base / "d" / CACHE_FOLDER, base / ".pytest_cache" / "d" / CACHE_FOLDER,
                   base):
        if folder.is_dir() and (folder != base or any(base.glob("*.json"))):
            return folder
    raise UsageError(f"--merge {path}: no --nbtest-affected entries there (give a "
                     ".pytest_cache folder, or a project folder holding one)")


def merge_into(paths: Sequence[str], pytest_args: Sequence[str], sources: Sequence[str]) -> str:
    """Merge the caches `sources` into the project's (found as the real run would); a line
    saying what was merged."""
    from .store import merge

    folders = [entries_folder(source) for source in sources]
    _, _, _, store = _session(paths, pytest_args)
    if store is None:
        raise UsageError("--merge: pytest's cache is off (-p no:cacheprovider): nowhere to "
                         "merge into")
    store.folder.mkdir(parents=True, exist_ok=True)
    taken, ignored = merge(store, folders)
    bad = f"; {ignored} unusable entries ignored" if ignored else ""
    return (f"merged {len(folders)} caches into {store.folder}: {taken} newer entries "
            f"taken{bad}")


def run(args: argparse.Namespace, pytest_args: Sequence[str] = ()) -> int:
    """Print which notebooks would run and why; exit 0 (2 when pytest cannot collect)."""
    merged = merge_into(args.paths, pytest_args, args.merge) if args.merge else ""
    root, decisions, _ = decide(args.paths, pytest_args)
    if merged:
        print(merged, file=sys.stderr if args.json else sys.stdout)
    runs = sorted((d for d in decisions if d.runs), key=lambda d: d.notebook)
    unchanged = sorted((d for d in decisions if not d.runs), key=lambda d: d.notebook)
    if args.json:
        json.dump({"root": root, "run": [d.as_json() for d in runs],
                   "unchanged": [d.as_json() for d in unchanged]}, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    print(f"{len(runs)} of {len(decisions)} notebooks would run:")
    for decision in runs:
        print(f"  {decision.notebook}: {decision.describe()}")
    if unchanged:
        print(f"{len(unchanged)} unchanged since their last pass, not run:")
        for decision in unchanged:
            print(f"  {decision.notebook}: {decision.describe()}")
    return 0
