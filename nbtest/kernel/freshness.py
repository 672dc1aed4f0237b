"""Preloaded modules stay fresh: a kernel never mixes old modules with new ones.

The template records the file of every module it has loaded (inkernel/preload.py's
`module_files`, in its status).
Before each fork the harness checks them (`changed`: a stat each, a hash only where the stat
changed, so a rewrite with the same content, an nbdev export, is no change); when one changed,
a new template replaces the old one (`rebuild`), which retires: it forks no more and exits once
its kernels have. A kernel forked (pre-warmed) before the change is started again
(notebook_kernel.NotebookKernel.start, through ForkedProcess.stale).
"""

from __future__ import annotations

import socket
from collections.abc import Mapping, Sequence
from typing import Any

from ..inkernel.preload import digest_of, stat_of

# The templates are forkserver_client.ForkServer objects, typed Any here: forkserver imports this
# module, not the other way round.


def changed_files(files: Mapping[str, Sequence[Any]], same: dict[str, list[int]]) -> list[str]:
    """The files of `files` (module_files' record) whose content is not what it was: stat
    first, hash only when the stat differs (and remember in `same` a new stat whose content
    is unchanged, so the next check is a stat again)."""
    changed = []
    for path, (*recorded, digest) in files.items():
        now = stat_of(path)
        if now == recorded or (now is not None and same.get(path) == now):
            continue
        if now is not None and digest and digest_of(path) == digest:
            same[path] = now
            continue
        changed.append(path)
    return changed


def changed(server: Any) -> list[str]:
    """The files of the modules this preloaded template has loaded whose content changed
    since it imported them."""
    if not server.preload:
        return []
    return changed_files(server.preload_status().get("files", {}), server.same_files)


def rebuild(old: Any) -> Any:
    """A new template in place of `old` (same flags and preload), which retires."""
    ForkServer = type(old)  # noqa: N806 (the class, as forkserver names it)
    with ForkServer._lock:
        key = tuple(old.flags)
        if ForkServer._instances.get(key) is old:
            ForkServer._instances[key] = ForkServer(old.flags, preload=old.preload,
                                                    root=old.root)
            if old.owned:  # an adopted one is its owner's to stop
                ForkServer._retired.append(old)
                retire(old)
        return ForkServer._instances[key]


def retire(server: Any) -> None:
    """Ask the template to fork no more and exit once its kernels have exited."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.connect(server.path)
            conn.sendall(b'{"retire": true}\n')
    except OSError:
        pass  # gone already, or not listening yet: stop() at the end ends it
