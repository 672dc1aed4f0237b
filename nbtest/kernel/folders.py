"""The private folders of kernels (`nbtest-XXXXXXXX`) and fork templates (`nbtest-fork-...`)
in the temp dir, and the sweep of those whose owner died without removing them.

A harness killed outright (SIGKILL, the OOM killer, a power cut of the process) cannot remove
the folders it made: each holds a kernel's connection file, with its HMAC key, and its
sockets. So each folder gets a small `owner.json` when it is made: the owner's pid, its start
time (a reused pid has another), and the boot, pid namespace and host it runs in (a pid
means nothing outside them). The first folder a process makes starts a sweep of the temp
dir: a folder of our naming, of our user, whose owner.json names a process of this boot,
namespace and host that is gone, is removed. A folder without owner.json (being made right
now, or by an older nbtest) or whose owner cannot be judged is left alone: a live session's
folder, a concurrent pytest's included, is never touched.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import tempfile
import threading
from typing import Any

import psutil

OWNER_FILE = "owner.json"
# What tempfile.mkdtemp makes with our prefixes (8 characters of [a-z0-9_]).
NAME = re.compile(r"nbtest-(fork-)?[a-z0-9_]{8}")
START_SLACK = 0.05  # seconds: two readings of one process's start time agree within this
_swept = threading.Event()  # this process has started its one sweep


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii", errors="replace") as fh:
            return fh.read().strip()
    except OSError:
        return ""


def _namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def identity(pid: int | None = None) -> dict[str, Any]:
    """What tells process `pid` (this one by default) apart, in owner.json's shape."""
    proc = psutil.Process(pid)
    return {"pid": proc.pid, "started": proc.create_time(),
            "boot": _read("/proc/sys/kernel/random/boot_id"), "pidns": _namespace(),
            "host": socket.gethostname()}


def make_folder(prefix: str = "nbtest-") -> str:
    """A new private (0700) folder in the temp dir, owned (owner.json) by this process; the
    first one of this process also sweeps the folders dead owners left (in the background)."""
    folder = tempfile.mkdtemp(prefix=prefix)
    try:
        # Written under another name, then renamed: a sweep never reads half a file.
        part = os.path.join(folder, f".{OWNER_FILE}.part")
        with open(part, "w", encoding="utf-8") as fh:
            json.dump(identity(), fh)
        os.replace(part, os.path.join(folder, OWNER_FILE))
    except (OSError, psutil.Error):
        pass  # a folder without owner.json is never swept, only left: still usable
    if not _swept.is_set():
        _swept.set()
        from .reaper import later

        later(_sweep_temp_dir)
    return folder


def _sweep_temp_dir() -> None:
    sweep()


def owner_gone(owner: dict[str, Any], here: dict[str, Any] | None = None) -> bool:
    """Whether the process owner.json describes has exited; False when it cannot be told
    (another boot, pid namespace or host: its pid means nothing here)."""
    here = here or identity()
    if any(owner.get(key) != here[key] for key in ("boot", "pidns", "host")):
        return False
    try:
        pid, started = int(owner["pid"]), float(owner["started"])
    except (KeyError, TypeError, ValueError):
        return False
    try:
        proc = psutil.Process(pid)
        if abs(proc.create_time() - started) > START_SLACK:
            return True  # the pid was reused: the owner is gone
        return bool(proc.status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:  # cannot look (permissions): alive, for all we know
        return False


def sweep(where: str | None = None) -> list[str]:
    """Remove the folders of our naming in `where` (the temp dir) whose owner is gone;
    returns them."""
    where = where or tempfile.gettempdir()
    here = identity()
    me = os.getuid()
    removed = []
    try:
        entries = list(os.scandir(where))
    except OSError:
        return []
    for entry in entries:
        if not NAME.fullmatch(entry.name):
            continue
        try:
            if not entry.is_dir(follow_symlinks=False) or entry.stat(
                    follow_symlinks=False).st_uid != me:
                continue
            with open(os.path.join(entry.path, OWNER_FILE), encoding="utf-8") as fh:
                owner = json.load(fh)
        except (OSError, ValueError):
            continue
        if isinstance(owner, dict) and owner_gone(owner, here):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(entry.path)
    return removed
