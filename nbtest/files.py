"""Writing files so that nothing is ever half-written or lost: temporary file + rename."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

from .errors import UsageError


def write_atomic(path: str | Path, text: str) -> None:
    """Replace `path` by `text` atomically; an existing file keeps its mode, a new one gets the
    usual 0666 minus the umask (mkstemp alone would leave 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        os.chmod(tmp, path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_writable(path: str | Path, what: str = "the output") -> None:
    """Raise UsageError unless `write_atomic(path, ...)` can work: `path` is no folder, its
    nearest existing parent is a folder we can create files in. Nothing is left behind: the
    target is not created, a probe file is made and removed in that folder."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"cannot write {what} {path}: it is a folder; give a file name")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"cannot write {what} {path}: {parent} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", dir=parent)
    except OSError as exc:
        raise UsageError(f"cannot write {what} {path}: cannot create a file in {parent} "
                         f"({why(exc)})") from None
    os.close(fd)
    os.unlink(probe)


def why(exc: OSError) -> str:
    """`No space left on device` (errno's words), without the path an OSError repeats."""
    return exc.strerror or errno.errorcode.get(exc.errno or 0, "") or str(exc)
