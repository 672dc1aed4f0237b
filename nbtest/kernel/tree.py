"""Which processes are one kernel's: its descendants, and every process of this user that
carries its token in the environment (even one that left the kernel's process group), found
in one pass over /proc."""

from __future__ import annotations

import os

import psutil

TOKEN_VAR = "NBTEST_KERNEL_TOKEN"  # in each kernel's environment; its tree inherits it


def processes_with_token(token: str) -> list[psutil.Process]:
    """Live processes of this user whose environment carries `token` (the kernel's tree)."""
    found = []
    for pid in _scan_proc(token)[0]:
        try:
            found.append(psutil.Process(pid))
        except psutil.Error:
            continue
    return found


def kernel_tree(root: int | None, token: str) -> list[int]:
    """The pids of `root` (the kernel), its descendants and this user's processes carrying
    `token`: one pass over /proc (a kill's cost is that pass, once per notebook or test)."""
    tokened, parents = _scan_proc(token)
    found = set(tokened)
    if root is None:
        return sorted(found)
    if parents is None:  # no /proc: psutil's own walk
        try:
            return sorted(found | {root} | {p.pid for p in
                                            psutil.Process(root).children(recursive=True)})
        except psutil.Error:
            return sorted(found)
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    stack = [root] if root in parents else []
    while stack:
        pid = stack.pop()
        found.add(pid)
        stack.extend(children.get(pid, ()))
    return sorted(found)


def _scan_proc(token: str) -> tuple[set[int], dict[int, int] | None]:
    """This user's pids whose environment carries `token` (whole entries only, not a
    prefix), and every process's parent; (set(), None) where there is no /proc."""
    if not os.path.isdir("/proc"):
        return set(), None
    needle = f"\0{TOKEN_VAR}={token}\0".encode()
    me = os.getuid()
    tokened: set[int] = set()
    parents: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                stat = fh.read()
            # After the command's closing parenthesis: state, then the parent's pid.
            parents[pid] = int(stat[stat.rindex(b")") + 2:].split()[1])
            if entry.stat().st_uid != me:
                continue
            with open(f"/proc/{pid}/environ", "rb") as fh:
                if needle in b"\0" + fh.read() + b"\0":
                    tokened.add(pid)
        except (OSError, ValueError, IndexError):
            continue
    return tokened, parents
