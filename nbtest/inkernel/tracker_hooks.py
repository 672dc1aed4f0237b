"""Inside a kernel: the hooks that feed the tracker (inkernel/tracker.py), installed by the
startup code under `--nbtest-affected`: an audit hook, `os.stat` and `os.lstat` wrapped, and
`os.environ` behind a mapping that notes reads. Standard library only: it runs in every kernel.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from .tracker import Tracker


class TrackedEnviron(os._Environ[str]):
    """`os.environ` in a tracked kernel: the same variables (the same underlying mapping, so
    `putenv` still follows), with each read and write in a cell told to the tracker."""

    def __init__(self, base: Any, tracker: Tracker) -> None:
        self.__dict__.update(base.__dict__)
        self._nbtest_tracker = tracker

    def __getitem__(self, key: str) -> str:
        self._nbtest_tracker.variable(key)
        return super().__getitem__(key)

    def __setitem__(self, key: str, value: str) -> None:
        self._nbtest_tracker.variable(key, sets=True)
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self._nbtest_tracker.variable(key, sets=True)
        super().__delitem__(key)


def _wrap_stat(tracker: Tracker, real: Any) -> Any:
    """`os.stat` (or `os.lstat`) telling the tracker what a cell found at a path."""

    def stat_and_note(path: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            found = real(path, *args, **kwargs)
        except (FileNotFoundError, NotADirectoryError):
            if not args and kwargs.get("dir_fd") is None:
                tracker.checked(path, None)
            raise
        if not args and kwargs.get("dir_fd") is None:
            tracker.checked(path, found)
        return found

    stat_and_note.__wrapped__ = real  # type: ignore[attr-defined]
    stat_and_note.__name__ = real.__name__
    stat_and_note.__doc__ = real.__doc__
    # shutil and pathlib ask `os.stat in os.supports_dir_fd` (and the like): the same answer.
    for supports in (os.supports_dir_fd, os.supports_fd, os.supports_follow_symlinks):
        if real in supports:
            supports.add(stat_and_note)
    return stat_and_note


def install(settings: dict[str, Any]) -> None:
    """Start tracking (called by the startup code); say which interpreter this kernel runs."""
    tracker = Tracker(settings["file"], settings["roots"], settings.get("private"))
    version = ".".join(map(str, sys.version_info[:3]))
    header = {"installed": True, "prefix": os.path.realpath(sys.prefix),
              "interpreter": f"{sys.implementation.name}-{version}"}
    try:
        from IPython import get_ipython

        shell = get_ipython()
        if shell is None:
            raise RuntimeError("not running under IPython")
        sys.addaudithook(tracker.audit)
        os.stat = _wrap_stat(tracker, os.stat)
        os.lstat = _wrap_stat(tracker, os.lstat)
        # The same variables behind a mapping that notes reads (not a new environment).
        os.environ = TrackedEnviron(os.environ, tracker)  # noqa: B003
        shell.events.register("pre_run_cell", tracker.start_cell)
        shell.events.register("post_run_cell", tracker.report)
    except Exception as exc:
        header = {"error": f"tracking could not start: {type(exc).__name__}: {exc}"}
    tracker._append(header)
