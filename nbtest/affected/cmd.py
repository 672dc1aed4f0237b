"""`nbtest affected [PATHS] [--json] [-- PYTEST_ARGS]`: which notebooks would run, and why.

It asks pytest itself: a collection-only session with `--nbtest --nbtest-affected` (so the
rootdir, the cache folder, the conftests and the options are those of the real run), whose
decisions it prints for humans or, with `--json`, for CI scripts. No kernel starts.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from collections.abc import Sequence
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


class _Decisions:
    """A plugin object that keeps the session's decisions once collection is over."""

    def __init__(self) -> None:
        self.found: list[Any] | None = None
        self.root = ""

    def pytest_collection_finish(self, session: Any) -> None:
        """Take the decisions of nbtest's affected session."""
        from .session import AFFECTED_PLUGIN

        plugin = session.config.pluginmanager.get_plugin(AFFECTED_PLUGIN)
        self.root = str(session.config.rootpath)
        self.found = plugin.decisions if plugin is not None else None


def decide(paths: Sequence[str], pytest_args: Sequence[str]) -> tuple[str, list[Any], str]:
    """(rootdir, decisions, pytest's output) of a collection-only affected session."""
    import pytest

    plugin = _Decisions()
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        code = pytest.main(["--nbtest", "--nbtest-affected", "--collect-only", "-q",
                            "-p", "no:randomly", *pytest_args, *paths], plugins=[plugin])
    if code not in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED):
        raise UsageError(f"pytest could not collect the notebooks (exit {int(code)}):\n"
                         f"{out.getvalue().strip()}")
    return plugin.root, plugin.found or [], out.getvalue()


def run(args: argparse.Namespace, pytest_args: Sequence[str] = ()) -> int:
    """Print which notebooks would run and why; exit 0 (2 when pytest cannot collect)."""
    root, decisions, _ = decide(args.paths, pytest_args)
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
