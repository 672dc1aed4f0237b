"""In the fork template and in each kernel forked from it: preloading's own half.

The template (kernel/forkserver_main.py) imports the user's modules with `preload_modules`, checking
after each whether a fork is still safe (threads, CUDA), and records the file of every module
loaded (`module_files`: kernel/freshness.py compares them before each fork); `fork_problems`
is its last look before a fork; `after_fork` runs in each forked kernel. What the harness
decides (which modules, what it learned) is kernel/preload.py. Standard library only.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


# ------------------------------------------------------------------------ in the template
def native_threads() -> int:
    """Threads of this process as the OS counts them (Python's and native ones)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return threading.active_count()


def _maps() -> str:
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as fh:
            return fh.read()
    except OSError:
        return ""


# Thread pools that survive a fork: OpenBLAS (pthreads build) and LLVM's and Intel's OpenMP
# runtimes shut their workers down or rebuild them through pthread_atfork. GNU OpenMP (libgomp)
# does not: a child that uses it after the parent started its pool hangs.
_FORK_SAFE_POOL = re.compile(r"openblas|libomp[.\-_]|libiomp", re.I)
_GNU_OPENMP = re.compile(r"libgomp", re.I)


def _libraries(maps: str) -> set[str]:
    """The shared libraries mapped in this process (paths), from /proc/self/maps."""
    return {line.split()[-1] for line in maps.splitlines()
            if ".so" in line and line.split()[-1].startswith("/")}


def _pools(libraries: Iterable[str]) -> tuple[set[str], set[str]]:
    """(fork-safe pool libraries, GNU OpenMP libraries) among `libraries`, by file name."""
    names = {path.rpartition("/")[2]: path for path in libraries}
    safe = {path for name, path in names.items() if _FORK_SAFE_POOL.search(name)}
    gnu = {path for name, path in names.items() if _GNU_OPENMP.search(name)}
    return safe, gnu


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _cuda_initialised() -> bool:
    torch: Any = sys.modules.get("torch")
    try:
        if torch is not None and torch.cuda.is_initialized():
            return True
    except Exception:
        pass
    try:  # any library that opened the driver's device files has initialised it
        return any(os.readlink(f"/proc/self/fd/{fd}").startswith("/dev/nvidia")
                   for fd in os.listdir("/proc/self/fd"))
    except OSError:
        return False


def preload_modules(names: Sequence[str]) -> dict[str, Any]:
    """Import `names` in order, checking fork safety after each: the template's status (with
    the files of every module loaded, see freshness.py)."""
    import importlib

    loaded: list[str] = []
    failed: dict[str, str] = {}
    unsafe: dict[str, str] = {}
    allowed_native = 0  # threads of fork-safe pools (pthread_atfork shuts them down)
    seconds: dict[str, float] = {}
    for name in names:
        before_py, before_native = threading.active_count(), native_threads()
        had_libraries, had_cuda = _libraries(_maps()), _cuda_initialised()
        started = time.monotonic()
        try:
            importlib.import_module(name)
        except BaseException as exc:  # SystemExit from a module too: skip it, say why
            failed[name] = f"{type(exc).__name__}: {exc}"
            continue
        seconds[name] = round(time.monotonic() - started, 3)
        loaded.append(name)
        new_py = threading.active_count() - before_py
        new_native = native_threads() - before_native - new_py
        gnu_pool = False
        if new_native > 0:  # a pool library mapped by this import may own them: each such
            # pool starts at most one worker per CPU (a second OpenBLAS beside numpy's, say)
            safe, gnu = _pools(_libraries(_maps()) - had_libraries)
            excused = min(new_native, len(safe) * _cpus())
            allowed_native += excused
            new_native -= excused
            gnu_pool = bool(gnu)
        reasons = []
        if new_py > 0:
            reasons.append(f"it started {new_py} Python thread{'s' * (new_py > 1)}")
        if new_native > 0:
            why = " (a GNU OpenMP pool, libgomp, which does not survive a fork)" * gnu_pool
            reasons.append(f"it started {new_native} native thread{'s' * (new_native > 1)}{why}")
        if not had_cuda and _cuda_initialised():
            reasons.append("it initialised CUDA (kernels must do that after the fork)")
        if reasons:
            unsafe[name] = "; ".join(reasons)
    return {"loaded": loaded, "failed": failed, "unsafe": unsafe, "seconds": seconds,
            "allowed_native": allowed_native,
            "files": module_files(os.environ.get("NBTEST_PROJECT_ROOT", ""))}


def fork_problems(status: Mapping[str, Any]) -> list[str]:
    """Why forking the template now would be unsafe, after preloading: native threads beyond
    the OpenBLAS pools (Python threads and zmq are fork_safety_problems' to find)."""
    extra = native_threads() - threading.active_count() - int(status.get("allowed_native", 0))
    return [f"{extra} native threads are running"] if extra > 0 else []


# ---------------------------------------------------------------------- in a forked kernel
def after_fork(status: Mapping[str, Any]) -> None:
    """In a kernel just forked from a preloaded template: fresh random state."""
    numpy: Any = sys.modules.get("numpy")
    if numpy is not None:
        try:
            numpy.random.seed()  # the legacy global RandomState, from fresh entropy
        except Exception:
            pass
    torch: Any = sys.modules.get("torch")
    if torch is not None:
        try:
            torch.seed()  # the default generators, from fresh entropy
        except Exception:
            pass


def stat_of(path: str) -> list[int] | None:
    """[mtime_ns, size, inode] of a file, None when it is gone."""
    try:
        info = os.stat(path)
    except OSError:
        return None
    return [info.st_mtime_ns, info.st_size, info.st_ino]


def digest_of(path: str) -> str:
    """A digest of a file's content ("" when unreadable)."""
    import hashlib

    try:
        with open(path, "rb") as fh:
            return hashlib.blake2b(fh.read(), digest_size=16).hexdigest()
    except OSError:
        return ""


def module_files(root: str) -> dict[str, list[Any]]:
    """The file of every module loaded now: [mtime_ns, size, inode, digest]. The digest (of
    the content) only for files under the project `root`, which a notebook may rewrite with
    the same content (an nbdev export); elsewhere a new stat counts as a change."""
    files: dict[str, list[Any]] = {}
    inside = os.path.abspath(root) + os.sep if root else None
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if not isinstance(path, str) or path in files:
            continue
        seen = stat_of(path)
        if seen is not None:
            under = inside is not None and os.path.abspath(path).startswith(inside)
            files[path] = [*seen, digest_of(path) if under else ""]
    return files
