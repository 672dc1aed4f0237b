"""The fork template's side: a process that has imported the kernel machinery forks kernels.

`python -m nbtest.kernel.forkserver_main SOCKET` imports ipykernel, IPython, zmq and tornado (plus
the user's preload modules, see preload.py) and creates no thread and no zmq context, so
forking it is safe. Per request it forks a child that becomes a fresh kernel exactly as
`python -m ipykernel_launcher -f FILE` would: new session (its own process group, so
interrupts and the kill of the whole tree work as for a spawned kernel), the notebook's cwd,
environment, `sys.argv`, `sys.path[0]`, a reseeded RNG, and `ipykernel_launcher` run as
`__main__`. The template reports each child's exit status back over the request's socket,
which is how kernel death is detected and explained. The harness's side is forkserver_client.py.
"""

from __future__ import annotations

import json
import os
import selectors
import signal
import socket
import sys
import threading
from collections.abc import Mapping
from typing import Any

# The template's environment protocol (forkserver_client.py sets it). Nothing of nbtest is imported
# here: a forked kernel has only the packages `python -m nbtest.kernel.forkserver_main` needs.
PRELOAD_VAR = "NBTEST_PRELOAD"  # JSON list: the user's modules the template imports
DROPPED_VAR = "NBTEST_PRELOAD_DROPPED"  # JSON mapping: modules found unsafe, and why
STDERR_FD_VAR = "NBTEST_TEMPLATE_STDERR_FD"  # the harness's stderr, kept across a re-exec
TEMPLATE_STDERR = "template.err"  # beside the socket: what the imports wrote to stderr
# A client that connects must send its request at once (the harness does): a silent one must
# not hold the loop, which also hears of the harness's death.
REQUEST_TIMEOUT_S = 10.0

# What a fresh ipykernel imports before the first cell (found by comparing sys.modules):
# none of these starts a thread or creates a zmq context at import.
PRELOAD = ("ipykernel.kernelapp", "ipykernel.ipkernel", "ipykernel.zmqshell",
           "ipykernel.debugger", "IPython.core.completer", "IPython.core.history",
           "IPython.core.debugger", "sqlite3", "pdb", "pydoc", "code", "gzip", "mimetypes",
           "xmlrpc.client", "http.server", "email.parser", "faulthandler", "unicodedata",
           # ... and what the kernel imports while it initializes, after the fork
           "runpy", "tornado.platform.asyncio", "IPython.core.oinspect", "IPython.core.logger",
           "IPython.core.completerlib", "IPython.extensions.storemagic", "IPython.utils.wildcard")


def _preload() -> None:
    """Import the kernel machinery once, so forked kernels skip it."""
    import importlib

    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except Exception:  # an optional piece missing here is imported (or not) by the kernel
            pass


def fork_safety_problems() -> list[str]:
    """Why forking this process now would be unsafe (threads, a zmq context), if it would."""
    problems = []
    if threading.active_count() != 1:
        problems.append(f"{threading.active_count()} threads are running")
    zmq = sys.modules.get("zmq")
    if zmq is not None and getattr(zmq.Context, "_instance", None) is not None:
        problems.append("a zmq context exists")
    return problems


_gc_imported_here = False  # whether `gc` is in sys.modules only because of _freeze_heap


def _freeze_heap() -> None:
    """Collect and freeze the template's objects: a kernel forked with the counts the imports
    left starts a full collection over every imported object (a third of its start's CPU,
    copying each page it touches); frozen, the counts are zero at each fork."""
    global _gc_imported_here
    _gc_imported_here = "gc" not in sys.modules
    import gc

    gc.collect()
    gc.freeze()


def _thaw_heap() -> None:
    """In the kernel: unfreeze at once (the template's objects are collectable there as in a
    spawned kernel, just not all traversed right away); drop `gc` if only we imported it."""
    sys.modules["gc"].unfreeze()  # imported by _freeze_heap, in the template
    if _gc_imported_here:
        del sys.modules["gc"]


def _stderr_to_file(file: str) -> int:
    """Point fd 2 at `file` (appending); return an fd of the harness's stderr, kept inheritable
    and named in the environment, so a re-exec without an unsafe module finds it again."""
    kept = os.environ.get(STDERR_FD_VAR)
    if kept is None:
        harness = os.dup(2)
        os.set_inheritable(harness, True)
        os.environ[STDERR_FD_VAR] = str(harness)
    else:
        harness = int(kept)
    fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(fd, 2)
    os.close(fd)
    return harness


def _preload_user_modules(path: str) -> dict[str, Any]:
    """Import the modules of PRELOAD_VAR; if one makes forking unsafe, start this template
    again (same pid: adopters keep it) without it. Returns the status, also written to
    preload.json beside the socket."""
    names = json.loads(os.environ.get(PRELOAD_VAR) or "[]")
    if not names:
        return {}
    from ..inkernel.preload import preload_modules
    from .likeness import kernel_like
    from .preload import STATUS_FILE, safe_subset

    with kernel_like(os.path.dirname(path)):
        status = preload_modules(names)
    if status["unsafe"]:
        dropped = {**json.loads(os.environ.get(DROPPED_VAR) or "{}"), **status["unsafe"]}
        os.environ[PRELOAD_VAR] = json.dumps(safe_subset(names, status))
        os.environ[DROPPED_VAR] = json.dumps(dropped)
        argv = list(getattr(sys, "orig_argv", [])) or [sys.executable, "-m",
                                                         "nbtest.kernel.forkserver_main", path]
        os.execv(sys.executable, argv)
    status["unsafe"] = json.loads(os.environ.get(DROPPED_VAR) or "{}")
    with open(os.path.join(os.path.dirname(path), STATUS_FILE), "w", encoding="utf-8") as fh:
        json.dump(status, fh)
    return status


def _become_kernel(request: Mapping[str, Any], preloaded: Mapping[str, Any]) -> None:
    """In the forked child: turn into `python -m ipykernel_launcher ARGS` and never return."""
    import random
    import runpy

    code = 0
    try:
        _thaw_heap()
        os.setsid()
        _become_subreaper()  # what the notebook starts and orphans stays in this tree
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGCHLD):
            default = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
            signal.signal(sig, default)
        signal.set_wakeup_fd(-1)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.path[0] = os.getcwd()  # as `python -m` sets it
        random.seed()  # the template's RNG state must not be shared by every kernel
        if preloaded:
            from ..inkernel.preload import after_fork

            after_fork(preloaded)
        sys.argv = ["ipykernel_launcher", *request["argv"]]
        runpy.run_module("ipykernel_launcher", run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def serve(path: str) -> None:
    """The template's loop: accept requests, fork kernels, report their exits."""
    before = dict(os.environ)
    # The imports' stderr (a library's import-time warning) goes to a file the harness shows
    # under -v or when the template fails; the kernels forked later write to the harness's
    # stderr again, as spawned ones do (a kernel's failed start must reach the terminal).
    harness_stderr = _stderr_to_file(os.path.join(os.path.dirname(path), TEMPLATE_STDERR))
    try:
        _preload()
        preloaded = _preload_user_modules(path)
    finally:
        sys.stderr.flush()
        os.dup2(harness_stderr, 2)
        os.close(harness_stderr)  # kernels inherit fd 2 alone, and no variable of ours
        os.environ.pop(STDERR_FD_VAR, None)
    # Variables the imports set (debugpy's PYDEVD_USE_FRAME_EVAL, ...): a spawned kernel has
    # them, so each forked kernel gets them too, unless its own environment says otherwise.
    added = {k: v for k, v in os.environ.items() if before.get(k) != v}
    _freeze_heap()
    parent = os.getppid()
    _die_with_parent()
    # The orphans of a kernel that died on its own come to us, not to init: we kill them.
    _become_subreaper()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes the selector via the pipe
    # SIGTERM (the owner's stop) also arrives through the pipe: the kernels go with us.
    signal.signal(signal.SIGTERM, lambda *_: None)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ, "accept")
    selector.register(wake_r, selectors.EVENT_READ, "child")
    children: dict[int, socket.socket] = {}
    folders: dict[int, str] = {}  # each running kernel's private folder, made by the harness
    own = os.path.dirname(path)
    retired = False
    while True:
        for key, _ in selector.select(timeout=1.0):
            if key.data == "accept":
                conn, _ = listener.accept()
                conn.settimeout(REQUEST_TIMEOUT_S)
                try:
                    request = json.loads(conn.makefile("r").readline())
                except (OSError, ValueError):  # silent, gone, or not a request
                    conn.close()
                    continue
                conn.settimeout(None)
                if request.get("retire"):  # a newer template serves from now on: exit once
                    conn.close()  # the kernels forked from this one are gone
                    selector.unregister(listener)
                    listener.close()
                    os.unlink(path)
                    retired = True
                    continue
                problems = fork_safety_problems()
                if preloaded:
                    from ..inkernel.preload import fork_problems

                    problems += fork_problems(preloaded)
                if problems:
                    conn.sendall((json.dumps({"error": "; ".join(problems)}) + "\n").encode())
                    conn.close()
                    continue
                pid = os.fork()
                if pid == 0:
                    selector.close()
                    listener.close()
                    for other in children.values():
                        other.close()
                    os.close(wake_r)
                    os.close(wake_w)
                    conn.close()
                    _become_kernel({**request, "env": {**added, **request["env"]}}, preloaded)
                children[pid] = conn
                if request.get("folder"):
                    folders[pid] = request["folder"]
                conn.sendall((json.dumps({"pid": pid}) + "\n").encode())
            elif signal.SIGTERM in os.read(wake_r, 4096):  # the owner's stop, or its death
                _exit_with_kernels(children, [*folders.values(), own])
        _reap(children, folders)
        if retired and not children:
            _exit_with_kernels(children, [*folders.values(), own])
        if os.getppid() != parent:  # the harness is gone: so are we, and our kernels
            _exit_with_kernels(children, [*folders.values(), own])


def _exit_with_kernels(children: dict[int, socket.socket], folders: list[str]) -> None:
    """Kill every kernel still running (a crashed xdist worker's, say), remove their
    folders and ours (a harness killed outright cannot), then exit."""
    import shutil  # here, not at the top: a forked kernel imports what a spawned one does

    for pid in children:
        _kill_group(pid)
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)
    os._exit(0)


def _reap(children: dict[int, socket.socket], folders: dict[int, str]) -> None:
    """Report the kernels that exited; kill what their trees left to us (a subreaper) and
    reap it: every child that is not one of our kernels is such an orphan."""
    while True:
        _kill_orphans(children)
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        folders.pop(pid, None)  # the harness removes the folder of a kernel it stopped
        conn = children.pop(pid, None)
        if conn is not None:
            try:
                code = os.waitstatus_to_exitcode(status)
                conn.sendall((json.dumps({"exit": code}) + "\n").encode())
            except OSError:
                pass
            conn.close()


def _own_children() -> list[int]:
    """Our child processes (Linux's /proc; none found elsewhere)."""
    found: list[int] = []
    try:
        for task in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{task}/children", encoding="ascii") as fh:
                found += [int(pid) for pid in fh.read().split()]
    except (OSError, ValueError):
        pass
    return found


def _kill_orphans(children: dict[int, socket.socket]) -> None:
    for pid in _own_children():
        if pid not in children:
            _kill_group(pid)
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def _become_subreaper() -> None:
    """Linux: orphaned descendants are reparented to this process instead of init, so a
    daemon a notebook double-forks (new session, cleared environment) stays findable in
    its kernel's tree and dies with it."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        pass


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass


def _die_with_parent() -> None:
    """Linux: the kernel sends us SIGTERM when the harness dies, however it dies; the loop
    then kills our kernels, removes their folders and ours, and exits."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # the getppid() check in the loop still ends us within a second



if __name__ == "__main__":
    serve(sys.argv[1])
