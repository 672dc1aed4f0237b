"""Inside a kernel: what a notebook really used, for `--nbtest-affected` (runs in the kernel).

The startup code calls `install(settings)` when the session fingerprints notebooks. It adds an
audit hook that notes the files opened for reading (under the project root, and, in a cell,
anywhere but the interpreter's and Jupyter's own folders), with their size, mtime and inode
at the first read (the harness checks them again before it hashes the file, so a file edited
while the notebook ran is never taken as read), and those written (the notebook's products,
not its inputs, unless it read them first). `os.stat` and `os.lstat` are wrapped (so
`os.path.exists`, `isfile`, `Path.exists` are seen): a path found absent in a cell is a
dependency (its absence), one found present is too (its kind). `os.environ` is replaced by a
mapping that notes the variables a cell reads (`os.environ[...]`, `.get`, `in`, `os.getenv`)
unless the notebook set them first. An IPython `post_run_cell` handler, after each cell,
appends to a private file what is new since the last cell: files read or imported (a module's
source stat'ed when it is loaded), the top-level names of the other imported modules (the
harness maps them to distributions), paths checked, variables read and files written. The
harness reads that file after the kernel is gone, so nothing shows in outputs, and a kernel
that dies simply leaves the file short (that run is never reused). Standard library only: it
runs in every kernel.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from typing import Any

# Audit events of channels whose inputs nbtest cannot fingerprint: a run that used one (in a
# cell) is not reused unless the project trusts that channel (affected_trust).
CHANNELS = {"subprocess.Popen": "subprocess", "os.system": "subprocess",
            "os.posix_spawn": "subprocess", "os.exec": "subprocess", "os.spawn": "subprocess",
            "os.fork": "subprocess", "pty.spawn": "subprocess", "socket.connect": "socket",
            "socket.sendto": "socket", "urllib.Request": "socket", "sqlite3.connect": "sqlite"}
LISTINGS = frozenset({"os.listdir", "os.scandir"})  # glob.glob lists through os.scandir
MAKES = {"os.mkdir": 0, "os.rename": 1, "os.link": 1, "os.symlink": 1}  # event: made path's arg
# Folders under the project root whose files are never inputs of a notebook's verdict.
_STAT = os.stat  # the real one: install() wraps os.stat, and the tracker's own use is no read
_IGNORED_PARTS = frozenset({"__pycache__", ".git", ".pytest_cache", ".ipynb_checkpoints",
                            ".mypy_cache", ".ruff_cache"})


class Tracker:
    """The in-kernel side: the audit hook, the per-cell report, the file they go to."""

    def __init__(self, path: str, roots: list[str], private: list[str] | None = None) -> None:
        self.path = path
        self.roots = tuple(os.path.join(os.path.normpath(r), "") for r in roots)
        # The interpreter's own folders (a virtualenv inside the project included): their
        # modules are covered by the distributions' versions, not hashed one by one.
        self.excluded = tuple(os.path.join(os.path.realpath(p), "") for p in
                              {sys.prefix, sys.base_prefix, sys.exec_prefix,
                               sys.base_exec_prefix, *_site_folders()})
        # Outside the project: what the machine, the kernel and Jupyter keep for themselves
        # (caches, history, runtime files, the harness's private folder), never an input.
        # nbtest's own package too: its code is fingerprinted whole (fingerprint.nbtest_code).
        nbtest_folder = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        self.outside_excluded = tuple(os.path.join(os.path.realpath(p), "") for p in
                                      {*_own_folders(), *(private or ()), nbtest_folder})
        # file -> its stat (size, mtime, inode) when first read (it existed then)
        self.read: dict[str, list[int] | None] = {}
        self.absent: set[str] = set()  # paths found absent (opened, stat'ed) before made
        self.exists: dict[str, str] = {}  # path stat'ed in a cell: "file" or "folder"
        self.env_read: set[str] = set()  # variables a cell read before setting them
        self.env_set: set[str] = set()  # variables the notebook set (not inputs after)
        self.written: set[str] = set()
        self.modules_seen: set[str] = set()
        self.sent: dict[str, set[str]] = {"read": set(), "written": set()}
        self.channels: dict[str, str] = {}  # channel: the event that used it first
        self.listed: dict[str, str | None] = {}  # folder: digest of its names when listed
        self.in_cell = False  # between pre_run_cell and post_run_cell (not nbtest's own code)
        self.listing = False  # the hook's own listdir: not a notebook's listing
        self.marker: tuple[int, str | None] = (0, None)
        self.out: Any = None
        self.error = ""

    # -- the audit hook: called for every audit event of the process, so it returns at once
    # for anything but `open`, and never raises into the notebook's code.
    def audit(self, event: str, args: tuple[Any, ...]) -> None:
        """sys.addaudithook callback: note project files opened, for reading (with their stat
        at the first read, before any write) or writing."""
        if event != "open":
            if event in CHANNELS or event in LISTINGS:
                self.other(event, args)
            elif event in MAKES:
                self.made(args[MAKES[event]] if len(args) > MAKES[event] else None)
            return
        try:
            target, mode, flags = args
            if isinstance(target, int):
                return  # an already open descriptor
            path = os.fsdecode(target)
            path = os.path.normpath(path if os.path.isabs(path) else
                                    os.path.join(os.getcwd(), path))
            if path.startswith(self.excluded) or (not path.startswith(self.roots)
                                                  and not self.in_cell):
                return
            if isinstance(mode, str):
                writes = any(c in mode for c in "wax+")
            else:
                writes = bool((flags or 0) & (os.O_WRONLY | os.O_RDWR))
            kept = self._kept(path)
            if kept is None:
                return
            if writes:
                self.written.add(kept)
            elif kept not in self.read and kept not in self.written:
                # A file read back after the notebook wrote it is its product, not an input.
                found = file_stat(kept)
                if found is None:
                    self.absent.add(kept)  # absent when it looked: its absence is an input
                else:
                    self.read[kept] = found
        except Exception as exc:  # noted, and the fingerprint is then incomplete
            if not self.error:
                self.error = f"audit hook failed: {type(exc).__name__}: {exc}"

    def other(self, event: str, args: tuple[Any, ...]) -> None:
        """A channel used in a cell, or a project folder listed (with its names then)."""
        try:
            if event in CHANNELS:
                if self.in_cell:
                    self.channels.setdefault(CHANNELS[event], event)
                return
            if self.listing:
                return
            target = args[0] if args else None
            if isinstance(target, int):
                return
            path = os.path.normpath(os.path.abspath(os.fsdecode(target if target is not None
                                                                else ".")))
            inside = path.startswith(self.roots) or os.path.join(path, "") in self.roots
            if (not inside and (not self.in_cell or path.startswith(self.outside_excluded))
                    or path.startswith(self.excluded) or path in self.listed):
                return
            if _IGNORED_PARTS.intersection(path.split(os.sep)):
                return
            self.listing = True
            try:
                self.listed[path] = listing_digest(path)
            finally:
                self.listing = False
        except Exception as exc:
            if not self.error:
                self.error = f"audit hook failed: {type(exc).__name__}: {exc}"

    def made(self, target: Any) -> None:
        """A folder or link the notebook made (mkdir, rename, link): a product."""
        try:
            if target is None or isinstance(target, int):
                return
            path = os.path.normpath(os.path.abspath(os.fsdecode(target)))
            kept = self._kept(path)
            if kept is not None:
                self.written.add(kept)
        except Exception as exc:
            if not self.error:
                self.error = f"audit hook failed: {type(exc).__name__}: {exc}"

    def checked(self, target: Any, found: Any) -> None:
        """`os.stat(target)` in a cell gave `found` (a stat result, None when absent): the
        path's existence and kind are inputs, unless it was read or made by the notebook."""
        if not self.in_cell or isinstance(target, int) or self.listing:
            return
        try:
            path = os.path.normpath(os.path.abspath(os.fsdecode(target)))
            kept = self._kept(path)
            if kept is None or kept in self.read or kept in self.written:
                return
            if found is None:
                if kept not in self.exists:
                    self.absent.add(kept)
            elif kept not in self.exists:
                self.exists[kept] = "folder" if stat.S_ISDIR(found.st_mode) else "file"
        except Exception as exc:
            if not self.error:
                self.error = f"stat hook failed: {type(exc).__name__}: {exc}"

    def variable(self, key: Any, sets: bool = False) -> None:
        """A cell read (or set) environment variable `key`."""
        if not self.in_cell or not isinstance(key, str):
            return
        if sets:
            self.env_set.add(key)
        elif key not in self.env_set:
            self.env_read.add(key)

    def start_cell(self, *_: Any) -> None:
        """IPython pre_run_cell handler: a cell of the notebook runs from now on."""
        self.in_cell = True

    def _kept(self, path: str) -> str | None:
        """The project file `path` stands for, if it may be an input, else None (a module's
        cached bytecode stands for its source: `pkg/__pycache__/b.cpython-311.pyc` is
        `pkg/b.py`, whose content is what counts; bytecode embeds mtimes)."""
        if path.startswith(self.excluded):
            return None
        if not path.startswith(self.roots):
            if not self.in_cell or path.startswith(self.outside_excluded) or path in (
                    self.path, os.sep):
                return None
        if path.endswith(".pyc"):
            folder, name = os.path.split(path)
            if os.path.basename(folder) != "__pycache__":
                return None  # a sourceless module: its distribution or nothing
            path = os.path.join(os.path.dirname(folder), name.split(".")[0] + ".py")
        if _IGNORED_PARTS.intersection(path.split(os.sep)):
            return None
        return path

    def report(self, *_: Any) -> None:
        """IPython post_run_cell handler: append what is new since the last cell (one line
        per cell, `{}` when nothing is: the harness counts them)."""
        try:
            record: dict[str, Any] = {}
            modules = sys.modules
            # New modules are appended to sys.modules, so its size and last key show at once
            # whether there is any (the scan of every name is for when there is).
            marker = (len(modules), next(reversed(modules), None))
            if marker != self.marker:
                self.marker = marker
                self._scan_modules(record)
            if len(self.read) != len(self.sent["read"]):  # both only grow
                new = self.read.keys() - self.sent["read"]
                self.sent["read"] |= new
                record["read"] = [[p, self.read[p]] for p in sorted(new)]
            self.in_cell = False
            for key, names in (("absent", self.absent), ("env", self.env_read)):
                new = names - self.sent.setdefault(key, set())
                if new:
                    self.sent[key] |= new
                    record[key] = sorted(new)
            for key, found in (("channels", self.channels), ("listed", self.listed),
                               ("exists", self.exists)):
                new = found.keys() - self.sent.setdefault(key, set())
                if new:
                    self.sent[key] |= new
                    record[key] = {k: found[k] for k in sorted(new)}
            if len(self.written) != len(self.sent["written"]):
                new = self.written - self.sent["written"]
                self.sent["written"] |= new
                record["written"] = sorted(new)
            if self.error:
                record["error"] = self.error
            self._append(record)
        except Exception as exc:
            self._append({"error": f"report failed: {type(exc).__name__}: {exc}"})

    def _scan_modules(self, record: dict[str, Any]) -> None:
        """Note the new modules: project files among the files read (stat'ed now unless their
        loading was seen by the audit hook), other modules as top-level names in `record`."""
        names = sys.modules.keys() - self.modules_seen
        self.modules_seen.update(names)
        tops = set()
        for name in names:
            file = getattr(sys.modules.get(name), "__file__", None)
            path = self._kept(os.path.normpath(os.path.abspath(file))) if file else None
            if path is None:
                tops.add(name.partition(".")[0])
            elif path not in self.read:
                self.read[path] = file_stat(path)
        if tops:
            record["tops"] = sorted(tops)

    def _append(self, record: dict[str, Any]) -> None:
        # The harness's private file is outside the project root: the hook ignores it. It
        # stays open, line-buffered: a line is in the file as soon as the cell's reply is.
        if self.out is None:
            self.out = open(self.path, "a", encoding="utf-8", buffering=1)
        self.out.write(json.dumps(record) + "\n" if record else "{}\n")


def file_stat(path: str) -> list[int] | None:
    """[size, mtime in ns, inode] of the file at `path`, None when there is none: what tells
    whether it changed since (the harness compares it again before hashing the file)."""
    try:
        st = _STAT(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def listing_digest(path: str) -> str | None:
    """A digest of the sorted names in folder `path`; None when there is no such folder."""
    import hashlib

    try:
        names = sorted(os.listdir(path))
    except OSError:
        return None
    return hashlib.sha256("\0".join(names).encode()).hexdigest()[:32]


def _own_folders() -> list[str]:
    """Folders outside the project that hold the machine's, the kernel's and Jupyter's own
    state (never a notebook's input): /proc, /sys, /dev, caches, IPython's and Jupyter's."""
    home = os.path.expanduser("~")
    found = ["/proc", "/sys", "/dev", "/run",
             os.environ.get("XDG_CACHE_HOME") or os.path.join(home, ".cache"),
             os.environ.get("IPYTHONDIR") or os.path.join(home, ".ipython"),
             os.path.join(home, ".jupyter"), os.path.join(home, ".local", "share", "jupyter")]
    try:
        from jupyter_core import paths

        found += [paths.jupyter_runtime_dir(), paths.jupyter_data_dir(),
                  paths.jupyter_config_dir()]
    except Exception:  # no jupyter_core in this kernel: the defaults above
        pass
    return found


def _site_folders() -> list[str]:
    try:
        import site

        return [*site.getsitepackages(), site.getusersitepackages()]
    except Exception:  # a virtualenv's old site module lacks them: the prefixes cover it
        return []
