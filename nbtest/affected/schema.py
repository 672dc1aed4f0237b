"""The schema of a `--nbtest-affected` cache entry: every field, what it must be, and whether a
pass needs it. An entry that fails it is unusable: its notebook runs (store.Store.load)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from ..results import NB_ERROR, NB_FAILED, NB_PASSED, NB_SKIPPED
from .fingerprint import FORMAT

TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"  # an entry's `time`, UTC
INCOMPLETE = "incomplete"  # an entry's status: passed, but its fingerprint is incomplete
PARTIAL = "partial"  # a run's result when only some of its cell items were selected
STATUSES = frozenset({NB_PASSED, NB_FAILED, NB_ERROR, NB_SKIPPED, INCOMPLETE})


def _str(value: Any) -> bool:
    return isinstance(value, str)


def _str_or_none(value: Any) -> bool:
    return value is None or isinstance(value, str)


def _digests(value: Any) -> bool:
    """{path or name: digest or version}, all strings."""
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str)
                                           for k, v in value.items())


def _time(value: Any) -> bool:
    try:
        datetime.strptime(value, TIME_FORMAT)
    except (TypeError, ValueError):
        return False
    return True


def _json_value(value: Any) -> bool:
    if value is None or isinstance(value, (str, int, float, bool)):
        return True
    if isinstance(value, list):
        return all(map(_json_value, value))
    return isinstance(value, dict) and all(isinstance(k, str) and _json_value(v)
                                           for k, v in value.items())


def _settings(value: Any) -> bool:
    return (isinstance(value, dict) and isinstance(value.get("kernel"), str)
            and _json_value(value))


def _cells(value: Any) -> bool:
    return isinstance(value, list) and all(
        isinstance(c, list) and len(c) == 2 and type(c[0]) is int and isinstance(c[1], str)
        for c in value)


# Every field an entry may have: (required only in a pass, test, what it must be). A field
# missing, unknown or failing its test makes the entry unusable: the notebook runs.
ENTRY_SCHEMA: Mapping[str, tuple[bool, Callable[[Any], bool], str]] = {
    "format": (False, lambda v: v == FORMAT, f"the number {FORMAT}"),
    "notebook": (False, _str, "a path"),
    "status": (False, lambda v: v in STATUSES, f"one of {', '.join(sorted(STATUSES))}"),
    "nbtest": (False, _str, "a version"),
    "interpreter": (False, _str, "an interpreter"),
    "commit": (False, _str_or_none, "a commit or null"),
    "time": (False, _time, "a UTC time as YYYY-MM-DDTHH:MM:SSZ"),
    "why": (False, _str, "a text"),
    "settings": (True, _settings, "a mapping of options naming the kernel"),
    "cells": (True, _cells, "a list of [cell number, digest] pairs"),
    "files": (True, _digests, "a mapping of paths to digests"),
    "dists": (True, _digests, "a mapping of distributions to versions"),
    "depends": (True, lambda v: isinstance(v, dict) and all(
        isinstance(k, str) and _digests(d) for k, d in v.items()),
        "a mapping of globs to mappings of paths to digests"),
    "listings": (False, _digests, "a mapping of folders to digests of their names"),
    "exists": (False, lambda v: _digests(v) and set(v.values()) <= {"file", "folder"},
               "a mapping of paths to file or folder"),
    "env": (False, _digests, "a mapping of environment variables to digests"),
    "nbtest_code": (False, _str, "a digest"),
    "products": (False, lambda v: isinstance(v, list) and all(map(_str, v)),
                 "a list of paths"),
    "inputs": (False, lambda v: isinstance(v, list) and all(map(_str, v)), "a list of paths"),
    "kernelspec": (True, _str, "a digest"),
    "cache": (True, lambda v: v is True, "true"),
}
_ALWAYS = ("format", "notebook", "status", "nbtest", "interpreter", "commit", "time")


def schema_problem(entry: Mapping[str, Any]) -> str:
    """What makes `entry` unusable (`field "cells" is not a list of ...`); "" if nothing."""
    for name in entry:
        if name not in ENTRY_SCHEMA:
            return f"unknown field {name!r}"
    passed = entry.get("status") == NB_PASSED
    for name, (in_pass, test, what) in ENTRY_SCHEMA.items():
        if name not in entry:
            if name in _ALWAYS or (in_pass and passed):
                return f"field {name!r} is missing"
        elif not test(entry[name]):
            return f"field {name!r} is not {what}"
    return ""
