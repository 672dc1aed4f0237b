"""Every nbtest option, declared once in OPTIONS, resolved into a frozen NbTestConfig.

From the table come the pytest options (`--nbtest-<name>`), the ini / `[tool.nbtest]` keys,
the `nbtest execute` flags and the `metadata.nbtest` keys a notebook may set. Precedence:
command line > notebook metadata > `[tool.nbtest]` / pytest ini > built-in default.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .errors import ConfigError

# Where an option may be set.
CLI, PYTEST, INI, METADATA = "cli", "pytest", "ini", "metadata"


def parse_seconds(value: Any) -> float | None:
    """A duration in seconds; 0, a negative number or 'none' means no limit."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
        return None
    if isinstance(value, bool):
        raise ValueError("a number of seconds, not a boolean")
    seconds = float(value)
    return seconds if seconds > 0 else None


def parse_bool(value: Any) -> bool:
    """A boolean from a real bool or the usual ini spellings."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected true or false")


def parse_int(value: Any) -> int | None:
    """An integer, or None for 'none'."""
    if value is None or str(value).strip().lower() in ("", "none"):
        return None
    if isinstance(value, bool):
        raise ValueError("an integer, not a boolean")
    return int(value)


_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_UNITS = {
    "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}


def parse_size(value: Any) -> int:
    """A size in bytes from `8GiB`, `8GB` (10^9), `500MiB`, `500MB` or plain bytes; 0 disables."""
    if isinstance(value, bool):
        raise ValueError(f"not a size: {value!r}")
    if isinstance(value, (int, float)):
        return int(value)
    match = _SIZE.match(str(value))
    if not match:
        raise ValueError(f"not a size: {value!r} (use e.g. 8GiB, 8GB, 500MiB or a number of bytes)")
    number, unit = match.groups()
    return int(float(number) * _UNITS[(unit or "b").lower()])


def parse_str(value: Any) -> str | None:
    """A string, or None when empty."""
    return None if value is None or str(value) == "" else str(value)


def parse_str_list(value: Any) -> tuple[str, ...]:
    """A list of strings from a list or a comma / whitespace separated string."""
    if isinstance(value, str):
        return tuple(part for part in re.split(r"[,\s]+", value) if part)
    return tuple(str(part) for part in value)


def parse_preload(value: Any) -> str | tuple[str, ...]:
    """`auto`, or module names (a list, or a comma / whitespace separated string)."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    names = parse_str_list(value)
    for name in names:
        if not all(part.isidentifier() for part in name.split(".")):
            raise ValueError(f"{name!r} is not a module name")
    return names


def parse_skip(value: Any) -> str | None:
    """`metadata.nbtest.skip`: true, false or a reason."""
    if value is None or value is False:
        return None
    if value is True:
        return "skipped by notebook metadata"
    return str(value)


def parse_params(value: Any) -> Mapping[str, Any]:
    """Notebook parameters as a mapping of names to values."""
    if not isinstance(value, Mapping):
        raise ValueError("parameters must be a mapping of names to values")
    return MappingProxyType(dict(value))


def parse_float(value: Any) -> float:
    """A non-negative number."""
    number = float(value)
    if number < 0:
        raise ValueError("must not be negative")
    return number


def parse_pairs(value: Any) -> tuple[tuple[str, str], ...]:
    """Regex -> replacement pairs, from a list of pairs or a mapping."""
    items = value.items() if isinstance(value, Mapping) else value
    pairs = tuple((str(a), str(b)) for a, b in items)
    for pattern, _ in pairs:
        re.compile(pattern)
    return pairs


def parse_choice(*choices: str) -> Callable[[Any], str]:
    """A parser accepting one of `choices`."""

    def parse(value: Any) -> str:
        text = str(value).strip().lower()
        if text not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}")
        return text

    parse.__doc__ = f"One of {', '.join(choices)}."
    return parse


@dataclass(frozen=True)
class Option:
    """One option: its name, parser, default, help and where it may be set."""

    name: str
    parse: Callable[[Any], Any]
    default: Any
    help: str
    where: frozenset[str]
    cli_flag: str | None = None  # the `nbtest execute` flag, where it has one
    is_flag: bool = False  # a switch on the command line (store_true)
    merge: bool = False  # mappings merge key by key across layers instead of replacing

    @property
    def pytest_flag(self) -> str:
        """The pytest command-line spelling."""
        return "--nbtest-" + self.name.replace("_", "-")


def _opt(name: str, parse: Callable[[Any], Any], default: Any, help: str, *where: str,
         **extra: Any) -> Option:
    return Option(name, parse, default, help, frozenset(where), **extra)


OPTIONS: tuple[Option, ...] = (
    _opt("timeout", parse_seconds, 600.0, "per-cell timeout in seconds (0: none)",
         CLI, PYTEST, INI, METADATA, cli_flag="--timeout"),
    _opt("notebook_timeout", parse_seconds, None, "whole-notebook timeout in seconds",
         CLI, PYTEST, INI, METADATA, cli_flag="--notebook-timeout"),
    _opt("startup_timeout", parse_seconds, 60.0, "kernel start-up timeout in seconds",
         CLI, PYTEST, INI, cli_flag="--startup-timeout"),
    _opt("nbdev", parse_bool, False, "follow nbdev's conventions (automatic in a project "
         "whose settings.ini or [tool.nbdev] says it is one)", PYTEST, INI),
    _opt("flags", parse_str_list, (), "nbdev test flags whose cells and notebooks run "
         "(nbdev_test's --flags; --runslow gives slow)", PYTEST, INI),
    _opt("tst_flags", parse_str_list, (), "nbdev's test flags (settings.ini tst_flags): cells "
         "carrying one run only when it is given", INI),
    _opt("preload", parse_preload, (),
         "modules the fork template imports before forking kernels (numpy,torch,...), or "
         "auto: those most notebooks import", CLI, PYTEST, INI, cli_flag="--preload"),
    _opt("fork", parse_choice("auto", "yes", "no"), "auto",
         "fork Python kernels from a warm template (auto: once one is ready, spawning until "
         "then; pytest starts it when two or more notebooks will fork; yes: always, starting "
         "and waiting for it; no: always spawn)",
         CLI, PYTEST, INI, cli_flag="--fork"),
    _opt("kernel", parse_str, None, "kernel name, instead of the notebook's kernelspec",
         CLI, PYTEST, INI, METADATA, cli_flag="--kernel"),
    _opt("cwd", parse_str, None, "working directory of the kernel (default: the notebook's "
         "folder; in metadata, relative to it)", CLI, METADATA, cli_flag="--cwd"),
    _opt("allow_errors", parse_bool, False, "keep running after a cell error; the notebook passes",
         CLI, PYTEST, INI, METADATA, cli_flag="--allow-errors", is_flag=True),
    _opt("seed", parse_int, None, "seed random, numpy and torch in the kernel",
         CLI, PYTEST, INI, cli_flag="--seed"),
    _opt("parameters", parse_params, MappingProxyType({}), "papermill-style notebook parameters",
         CLI, PYTEST, INI, METADATA, merge=True),
    _opt("skip", parse_skip, None, "skip the notebook (true or a reason)", METADATA),
    _opt("markers", parse_str_list, (), "pytest markers of the notebook", METADATA),
    _opt("cells", parse_bool, False, "one test item per code cell", PYTEST, INI, is_flag=True),
    _opt("save_failed", parse_str, None, "folder for the executed copies of failing notebooks",
         PYTEST, INI),
    _opt("gpu_min_free", parse_size, 8 * 2**30, "free GPU memory needed to run (0: no check)",
         CLI, PYTEST, INI, METADATA, cli_flag="--gpu-min-free"),
    _opt("mem_max", parse_size, 0, "fail a notebook whose kernel's peak RSS exceeds this (0: none)",
         PYTEST, INI, METADATA),
    _opt("gpu_mem_max", parse_size, 0, "fail a notebook whose peak GPU memory exceeds this",
         PYTEST, INI, METADATA),
    _opt("mem_report", parse_bool, False, "print a table of each notebook's wall time and memory",
         PYTEST, INI, is_flag=True),
    _opt("profile", parse_bool, False, "per notebook: time in kernel start, imports (by module), "
         "cells; output traffic", CLI, PYTEST, INI, cli_flag="--profile", is_flag=True),
    _opt("check_outputs", parse_bool, False,
         "compare every code cell's stored outputs, as --nbval does", CLI, PYTEST, INI,
         cli_flag="--check-outputs", is_flag=True),
    _opt("update_outputs", parse_bool, False,
         "rewrite the stored outputs of compared cells from a passing run", CLI, PYTEST,
         cli_flag="--update-outputs", is_flag=True),
    _opt("compare_images", parse_bool, False, "compare images by their decoded pixels",
         CLI, PYTEST, INI, METADATA, cli_flag="--compare-images", is_flag=True),
    _opt("rtol", parse_float, 0.0, "relative tolerance for numbers in compared text",
         CLI, PYTEST, INI, METADATA, cli_flag="--rtol"),
    _opt("sanitize_with", parse_str, None, "a file of regex / replacement pairs (nbval format)",
         CLI, PYTEST, INI, cli_flag="--sanitize-with"),
    _opt("sanitizers", parse_pairs, (), "regex -> replacement pairs applied before comparing",
         INI),
    _opt("skip_compare", parse_str_list, (),
         "output keys never compared (stderr, text/html, ...; nbval's skip_compare)",
         PYTEST, INI, METADATA),
    _opt("cov", parse_bool, False, "measure coverage inside notebook kernels too (pytest-cov)",
         PYTEST, INI, is_flag=True),
    _opt("this_tests", parse_choice("warn", "error", "off"), "warn",
         "what to do about tests that never call this_tests", PYTEST, INI),
    _opt("registry", parse_str, None, "path of the this_tests registry file", INI),
    _opt("api", parse_str_list, (), "packages whose functions this_tests may name", INI),
    _opt("docs_root", parse_str, "docs_src", "folder of the documentation notebooks", INI),
    _opt("affected", parse_bool, False, "run only the notebooks whose fingerprint changed "
         "since their last pass (kept in pytest's cache)", PYTEST, INI, is_flag=True),
    _opt("affected_max_age", parse_seconds, 7.0, "days a pass is reused at most under "
         "--nbtest-affected (0 or none: no limit); older, the notebook runs", PYTEST, INI),
    _opt("affected_trust", parse_str_list, (), "channels whose use does not stop "
         "--nbtest-affected from reusing a pass: subprocess, socket, sqlite (what they read "
         "is then unseen)", INI, METADATA),
    _opt("depends", parse_str_list, (), "globs (relative to the notebook) of files it reads "
         "unseen (from C code, services): part of its fingerprint", METADATA),
    _opt("cache", parse_bool, True, "false: always run under --nbtest-affected (network, "
         "clocks, randomness to re-check)", METADATA),
)

OPTIONS_BY_NAME: Mapping[str, Option] = MappingProxyType({o.name: o for o in OPTIONS})


def in_pytest_spelling(message: str) -> str:
    """A message written with `nbtest execute`'s flags, as the pytest face spells them
    (`--kernel NAME` -> `--nbtest-kernel NAME`): every message names its own face's flag."""
    for option in OPTIONS:
        if option.cli_flag and PYTEST in option.where:
            message = re.sub(rf"(?<![\w-]){re.escape(option.cli_flag)}(?![\w-])",
                             option.pytest_flag, message)
    return message


def options_for(where: str) -> tuple[Option, ...]:
    """The options that may be set in `where` (CLI, PYTEST, INI or METADATA)."""
    return tuple(o for o in OPTIONS if where in o.where)


def parse_layer(raw: Mapping[str, Any], where: str | None, source: str) -> dict[str, Any]:
    """Parse one layer of raw values (settable in `where`; None: anywhere), naming `source`."""
    parsed: dict[str, Any] = {}
    for key, value in raw.items():
        option = OPTIONS_BY_NAME.get(key)
        if option is None or (where is not None and where not in option.where):
            known = ", ".join(o.name for o in (options_for(where) if where else OPTIONS))
            raise ConfigError(f"{source}: unknown nbtest option {key!r} (known: {known})",
                              source=source, key=key)
        try:
            parsed[key] = option.parse(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{source}: bad value {value!r} for {key!r}: {exc}",
                              source=source, key=key) from None
    return parsed


@dataclass(frozen=True)
class NbTestConfig:
    """Resolved options: explicit (command line / API) > notebook > project > default."""

    explicit: Mapping[str, Any] = field(default_factory=dict)
    notebook: Mapping[str, Any] = field(default_factory=dict)
    project: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, **explicit: Any) -> NbTestConfig:
        """A config from keyword values, parsed as if given on the command line."""
        return cls(explicit=parse_layer(explicit, None, "configuration"))

    def __getattr__(self, name: str) -> Any:
        option = OPTIONS_BY_NAME.get(name)
        if option is None:
            raise AttributeError(name)
        layers = (self.project, self.notebook, self.explicit)
        if option.merge:
            merged = dict(option.default)
            for layer in layers:
                merged.update(layer.get(name, {}))
            return MappingProxyType(merged)
        for layer in reversed(layers):
            if name in layer:
                return layer[name]
        return option.default

    def with_notebook(self, settings: Mapping[str, Any]) -> NbTestConfig:
        """This config with a notebook's parsed metadata layer."""
        return NbTestConfig(self.explicit, dict(settings), self.project)

    def with_explicit(self, **values: Any) -> NbTestConfig:
        """This config with more explicit (already parsed) values."""
        return NbTestConfig({**self.explicit, **values}, self.notebook, self.project)


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file's data; ConfigError naming the file when it cannot be read."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on old interpreters only
        import tomli as tomllib
    try:
        return dict(tomllib.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read it: {exc}", path=str(path)) from None


def read_pyproject(rootdir: Path) -> dict[str, Any]:
    """The raw `[tool.nbtest]` table of `rootdir/pyproject.toml`, or {}."""
    path = Path(rootdir) / "pyproject.toml"
    if not path.is_file():
        return {}
    table = read_toml(path).get("tool", {}).get("nbtest", {})
    return dict(table) if isinstance(table, Mapping) else {}


def project_layer(rootdir: Path, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The parsed project layer: `[tool.nbtest]` of rootdir, then `extra` (ini values) on top."""
    raw = read_pyproject(rootdir)
    raw.update(extra or {})
    # `nbtest = true` in the ini belongs to pytest collection, not to this table.
    raw.pop("nbtest", None)
    return parse_layer(raw, INI, f"{Path(rootdir) / 'pyproject.toml'} [tool.nbtest]")
