"""A notebook's fingerprint for `--nbtest-affected`: what its verdict depends on, as digests.

Content only, never mtimes, and paths relative to the project root, so a fresh clone with the
cache folder copied over compares equal. The static part is read from the notebook without a
kernel (code cells, the options that change how it runs or is judged, its kernel); the part
a run adds (project files imported or opened, distributions imported) comes from
callbacks.affected. Outputs and markdown cells are no part of it, except the stored outputs
of cells whose outputs are compared (they are what the check reads).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import stat
import sys
from collections.abc import Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

from ..config import OPTIONS, NbTestConfig

FORMAT = 1  # of the cache entries; another value means "run it"
# Options that change neither what a notebook runs nor how its result is judged.
NOT_FINGERPRINTED = frozenset({"fork", "save_failed", "mem_report", "cov", "this_tests",
                               "registry", "docs_root", "affected", "cells", "depends",
                               "cache", "update_outputs", "affected_max_age"})
_CHUNK = 1 << 20


def digest(data: bytes) -> str:
    """A short content digest (128 bits of SHA-256, in hex)."""
    return hashlib.sha256(data).hexdigest()[:32]


def _plain(value: Any) -> Any:
    """An option value as canonical JSON data (mappings sorted, tuples as lists)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in sorted(value.items())}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _json(data: Any) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str).encode()


def relative(path: str | Path, root: Path) -> str:
    """`path` relative to the project root, with `/` (absolute when outside it)."""
    absolute = os.path.abspath(path)
    for base, target in ((str(root), absolute),
                         (os.path.realpath(root), os.path.realpath(absolute))):
        rel = os.path.relpath(target, base)
        if not rel.startswith(".."):  # symlinked folders: the kernel sees real paths
            return rel.replace(os.sep, "/")
    return absolute


def static_fingerprint(nb: Any, config: NbTestConfig, path: Path, root: Path) -> dict[str, Any]:
    """What can be read without a kernel: code cells, options, kernel, depends globs."""
    from ..notebook import DEFAULT_KERNEL, kernel_name
    from ..outputs.compare import is_compared

    cells = []
    for number, cell in enumerate(nb.cells, start=1):
        if cell.get("cell_type") != "code":
            continue  # markdown and raw cells do not run
        metadata = cell.get("metadata", {})
        compared = is_compared(cell, config.check_outputs)
        cells.append([number, digest(_json({
            "source": cell.get("source", ""), "tags": sorted(metadata.get("tags", ()) or ()),
            "nbmake": metadata.get("nbmake"),
            "outputs": cell.get("outputs", []) if compared else None}))])
    settings = {o.name: _plain(getattr(config, o.name)) for o in OPTIONS
                if o.name not in NOT_FINGERPRINTED}
    settings["kernel"] = config.kernel or kernel_name(nb) or DEFAULT_KERNEL
    settings["language"] = nb.metadata.get("kernelspec", {}).get("language")
    static = {"notebook": relative(path, root), "settings": settings, "cells": cells,
              "depends": list(config.depends), "cache": bool(config.cache)}
    code = nbtest_code()
    if code is not None:
        static["nbtest_code"] = code
    return static


class FileDigests:
    """Digests of files by path, each file read once while the object lives."""

    def __init__(self) -> None:
        self.known: dict[str, str] = {}

    def __call__(self, path: str | Path) -> str:
        """The content digest of `path`; `missing` or `folder` when it is not a file."""
        key = os.path.abspath(path)
        if key not in self.known:
            self.known[key] = file_digest(key)
        return self.known[key]


def file_digest(path: str) -> str:
    """The content digest of the file at `path`; `missing` or `folder` when there is none."""
    if os.path.isdir(path):
        return "folder"
    sha = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(_CHUNK), b""):
                sha.update(block)
    except OSError:
        return "missing"
    return sha.hexdigest()[:32]


def depends_files(globs: Iterable[str], folder: Path, root: Path,
                  digests: FileDigests) -> dict[str, dict[str, str]]:
    """Per `metadata.nbtest.depends` glob (relative to the notebook's folder, `**` allowed):
    the files it matches now, with their digests."""
    found: dict[str, dict[str, str]] = {}
    for pattern in globs:
        matches = glob.glob(os.path.join(folder, pattern), recursive=True)
        found[pattern] = {relative(m, root): digests(m) for m in sorted(matches)
                          if os.path.isfile(m)}
    return found


def conftest_paths(notebook: Path, root: Path) -> list[Path]:
    """`conftest.py` in each folder from the project root down to the notebook's (pytest
    loads them all for it), whether there is one or not."""
    folder = notebook.parent
    found = []
    while True:
        found.append(folder / "conftest.py")
        if folder == root or folder == Path(os.path.realpath(root)) or folder.parent == folder:
            break
        if root not in folder.parents and Path(os.path.realpath(root)) not in folder.parents:
            break  # a notebook outside the root: its own folder only
        folder = folder.parent
    return found[::-1]


def path_kind(path: str | Path) -> str:
    """`file`, `folder` or `missing`: what is at `path` (links followed)."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return "missing"
    return "folder" if stat.S_ISDIR(mode) else "file"


# Variables that say how this session was started, not what the notebook computes: they
# differ between `pytest`, `nbtest affected` and xdist workers, so they are never inputs.
UNTRACKED_VARIABLES = frozenset({"_", "PWD", "OLDPWD", "SHLVL", "PYTEST_CURRENT_TEST",
                                 "PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT",
                                 "PYTEST_XDIST_TESTRUNUID", "NBTEST", "NBTEST_PROJECT_ROOT",
                                 "PYDEVD_DISABLE_FILE_VALIDATION", "COLUMNS", "LINES"})


def tracked_variable(name: str) -> bool:
    """Whether environment variable `name` read by a notebook is part of its fingerprint."""
    return name not in UNTRACKED_VARIABLES and not name.startswith(("JPY_", "NBTEST_KERNEL"))


def env_value(name: str) -> str:
    """Environment variable `name` of this process (the kernels' environment is made from
    it) as a digest, so no secret is written to the cache; `unset` when it is not set."""
    value = os.environ.get(name)
    return "unset" if value is None else digest(value.encode("utf-8", "surrogateescape"))


@cache
def nbtest_code() -> str | None:
    """A digest of nbtest's own source files when nbtest is not installed in the
    interpreter's folders (an editable install, or a checkout on PYTHONPATH): editing them
    can change any verdict. None for a regular install (its version says it all)."""
    package = Path(__file__).resolve().parent.parent
    prefixes = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix)}
    if any(str(package).startswith(os.path.join(p, "")) for p in prefixes):
        return None
    sha = hashlib.sha256()
    for source in sorted(package.rglob("*.py")):
        sha.update(str(source.relative_to(package)).encode() + b"\0")
        sha.update(source.read_bytes() + b"\0")
    return sha.hexdigest()[:32]


# pytest options (dest, ini or flag) that change a notebook's verdict, not only what runs.
VERDICT_OPTIONS = (("runxfail", "--runxfail"), ("pythonwarnings", "-W"),
                   ("timeout", "--timeout"), ("reruns", "--reruns"))
VERDICT_INI = ("xfail_strict", "filterwarnings")


def verdict_options(config: Any) -> dict[str, Any]:
    """The pytest options of this session that change verdicts, as `settings` entries
    (`pytest --runxfail`: value); those of plugins not installed are left out."""
    found: dict[str, Any] = {}
    for dest, flag in VERDICT_OPTIONS:
        value = config.getoption(dest, None)
        if value not in (None, False, [], 0):
            found[f"pytest {flag}"] = _plain(value)
    for name in VERDICT_INI:
        try:
            value = config.getini(name)
        except ValueError:
            continue
        if value not in (None, False, [], ""):
            found[f"pytest ini {name}"] = _plain(value)
    return found


def interpreter() -> str:
    """This Python, as `implementation-major.minor.micro`."""
    return f"{sys.implementation.name}-{'.'.join(map(str, sys.version_info[:3]))}"


def nbtest_version() -> str:
    """The running nbtest's version."""
    from .. import __version__

    return __version__


@cache
def kernelspec_identity(name: str, root: str) -> str:
    """The installed kernelspec `name` as a digest of what starts it (argv, language,
    environment); `not installed` when there is none. Paths are written so that a clone
    elsewhere agrees: the project root as `<root>`, and nbtest's own interpreter (a virtualenv
    elsewhere, or `python`, which jupyter_client starts as it) as `<python>`: the interpreter
    and the distributions are compared on their own."""
    from ..errors import NbTestError
    from ..kernel.specs import kernel_spec

    try:
        spec = kernel_spec(name)
    except NbTestError:
        return "not installed"
    argv = [str(a) for a in spec.argv]
    if argv and (argv[0] in ("python", f"python{sys.version_info[0]}")
                 or os.path.abspath(argv[0]) == os.path.abspath(sys.executable)):
        argv[0] = "<python>"
    env = {k: str(v).replace(root, "<root>") for k, v in (spec.env or {}).items()}
    return digest(_json({"argv": [a.replace(root, "<root>") for a in argv],
                         "language": spec.language, "env": env}))


_top_names: dict[str, list[str]] | None = None


def distributions_of(tops: Iterable[str]) -> dict[str, str]:
    """{distribution: version} of the installed distributions that provide these top-level
    import names (the standard library provides none)."""
    global _top_names
    from importlib import metadata

    if _top_names is None:
        _top_names = dict(metadata.packages_distributions())
    found: dict[str, str] = {}
    for top in tops:
        for dist in _top_names.get(top, ()):
            version = installed_version(dist)
            if version is not None:
                found[dist] = version
    return found


@cache
def installed_version(dist: str) -> str | None:
    """The installed version of distribution `dist`, or None."""
    from importlib import metadata

    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def git_commit(root: Path) -> str | None:
    """The short commit checked out in the repository holding `root`, read from `.git`
    without running git; None outside a repository."""
    for folder in (root, *root.parents):
        dot_git = folder / ".git"
        if dot_git.exists():
            break
    else:
        return None
    try:
        if dot_git.is_file():  # a worktree or submodule: `gitdir: PATH`
            dot_git = (folder / dot_git.read_text().split(":", 1)[1].strip()).resolve()
        head = (dot_git / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return head[:7]
        ref = head.split(":", 1)[1].strip()
        common = dot_git / "commondir"
        base = (dot_git / common.read_text().strip()).resolve() if common.is_file() else dot_git
        for where in (dot_git, base):
            if (where / ref).is_file():
                return (where / ref).read_text().strip()[:7]
        packed = base / "packed-refs"
        for line in packed.read_text().splitlines() if packed.is_file() else ():
            if line.endswith(" " + ref):
                return line[:7]
    except (OSError, IndexError):
        pass
    return None
