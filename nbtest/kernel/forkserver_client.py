"""Fast kernel start, the harness's side: the handle on a template process (forkserver_main.py)
and the forked kernels it hands back, with the part of Popen's interface jupyter_client uses.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

from .environment import STARTUP_VARS, kernel_environment, split_kernel_command
from .forked import ForkedProcess
from .forkserver_main import PRELOAD_VAR, TEMPLATE_STDERR

STDERR_TAIL = 2000  # characters of it a failed template's error quotes


def warm_up(argv: Sequence[str], preload: Sequence[str] = (), root: str = "") -> None:
    """Start the template for kernels run as `argv` now, so it has imported by first use;
    it also imports the `preload` modules (see preload.py), `root` being the project's."""
    argv = list(argv)
    if argv and argv[0] in ("python", "python3"):  # as jupyter_client substitutes it
        argv[0] = sys.executable
    parts = split_kernel_command(argv)
    if parts is not None:
        ForkServer.get(parts[0], preload, root)


class _Adopted:
    """The part of Popen's interface ForkServer uses, for a template another process owns."""

    def __init__(self, pid: int) -> None:
        self.pid = pid

    def poll(self) -> int | None:
        """None while the template runs (a zombie, not yet reaped by its owner, is dead)."""
        try:
            import psutil

            running = psutil.Process(self.pid).status() != psutil.STATUS_ZOMBIE
        except Exception:
            running = False
        return None if running else -signal.SIGKILL


class ForkServer:
    """The harness's handle on one template process (started lazily, killed at exit).

    Under xdist the controller starts the template and every worker adopts it (`adopt`,
    through the worker's input): one template's imports instead of one per worker, begun
    while the workers are still starting.
    """

    _instances: dict[tuple[str, ...], ForkServer] = {}
    _retired: list[ForkServer] = []  # replaced by a new template; stopped with the others
    _lock = threading.Lock()

    def __init__(self, flags: Sequence[str], adopted: Mapping[str, Any] | None = None,
                 preload: Sequence[str] = (), root: str = "") -> None:
        self.flags = list(flags)
        self.owned = adopted is None
        self.preload = list(preload)
        self.root = root
        self._status: dict[str, Any] = {}
        self.same_files: dict[str, list[int]] = {}  # rewritten with the same content
        self.process: Any
        if adopted is not None:
            self.folder = ""
            self.path = str(adopted["path"])
            self.env = dict(adopted["env"])
            self.process = _Adopted(int(adopted["pid"]))
            self.preload = list(adopted.get("preload", ()))
            self.root = str(adopted.get("root", ""))
            return
        from .folders import make_folder

        self.folder = make_folder("nbtest-fork-")
        self.path = os.path.join(self.folder, "fork.sock")
        # The template imports with a kernel's environment: some modules read it at import.
        self.env = kernel_environment({})
        if self.preload:
            self.env.update({PRELOAD_VAR: json.dumps(self.preload), "NBTEST_PROJECT_ROOT": root})
        # Same interpreter, same flags (ipykernel's spec has -Xfrozen_modules=off) as the spec.
        # What its imports write to stderr (a preloaded library's import-time warning) goes
        # to TEMPLATE_STDERR, not the terminal: shown under -v (reports.py) and
        # when the template fails (spawn). Its kernels write to our stderr.
        self.process = subprocess.Popen(
            [sys.executable, *flags, "-m", "nbtest.kernel.forkserver_main", self.path],
            cwd=self.folder, stdin=subprocess.DEVNULL, env=self.env, start_new_session=True)
        atexit.register(self.stop)

    @classmethod
    def get(cls, flags: Sequence[str] = (), preload: Sequence[str] = (),
            root: str = "") -> ForkServer:
        """The template for these interpreter flags, started on first use (again if it died;
        the first start decides what it preloads)."""
        with cls._lock:
            server = cls._instances.get(tuple(flags))
            if server is None or server.process.poll() is not None:
                server = cls._instances[tuple(flags)] = ForkServer(flags, preload=preload,
                                                                   root=root)
            return server

    def preload_status(self) -> dict[str, Any]:
        """What the template preloaded, skipped and dropped ({} before it is ready)."""
        from .preload import STATUS_FILE

        if self._status:
            return self._status
        try:
            with open(os.path.join(os.path.dirname(self.path), STATUS_FILE),
                      encoding="utf-8") as fh:
                self._status = dict(json.load(fh))
        except (OSError, ValueError):
            return {}
        return self._status

    def stderr_text(self) -> str:
        """What the template's imports wrote to stderr (a library's import-time warnings)."""
        try:
            with open(os.path.join(os.path.dirname(self.path), TEMPLATE_STDERR), encoding="utf-8",
                      errors="replace") as fh:
                return fh.read()
        except OSError:
            return ""

    @classmethod
    def running(cls, flags: Sequence[str] = ()) -> ForkServer | None:
        """The live template for these flags, if one was started; starts none."""
        with cls._lock:
            server = cls._instances.get(tuple(flags))
        return server if server is not None and server.process.poll() is None else None

    @classmethod
    def adopt(cls, description: Mapping[str, Any]) -> None:
        """Use the running template `description` (from `describe`) for its flags."""
        server = cls(description["flags"], adopted=description)
        with cls._lock:
            if server.process.poll() is None:
                cls._instances.setdefault(tuple(server.flags), server)

    @classmethod
    def owned_servers(cls) -> list[ForkServer]:
        """The live templates this process started."""
        with cls._lock:
            return [s for s in cls._instances.values() if s.owned and s.process.poll() is None]

    @classmethod
    def describe_owned(cls) -> list[dict[str, Any]]:
        """What another process needs to adopt each running template this process owns."""
        with cls._lock:
            servers = [s for s in cls._instances.values()
                       if s.owned and s.process.poll() is None]
        return [{"flags": s.flags, "path": s.path, "pid": s.process.pid, "preload": s.preload,
                 "root": s.root, "env": {k: s.env[k] for k in STARTUP_VARS if k in s.env}}
                for s in servers]

    def ready(self) -> bool:
        """Whether the template has finished its imports (it listens only after them)."""
        return os.path.exists(self.path)

    def differences(self, env: Mapping[str, str]) -> list[str]:
        """The start-up variables whose value in `env` is not the template's."""
        return [k for k in STARTUP_VARS if env.get(k) != self.env.get(k)]

    @classmethod
    def live(cls) -> set[int]:
        """Identities of the templates this process knows now (see stop_all)."""
        with cls._lock:
            return {id(server) for server in cls._instances.values()}

    @classmethod
    def stop_all(cls, keep: set[int] = frozenset()) -> None:  # type: ignore[assignment]
        """Stop the templates this process owns and forget adopted ones, except `keep`
        (`live()` at a session's start): a template never outlives the session that
        started it, even in a process that outlives the session (an xdist socket server)."""
        with cls._lock:
            servers = [s for s in cls._instances.values() if id(s) not in keep]
            servers += [s for s in cls._retired if id(s) not in keep]
            cls._retired[:] = [s for s in cls._retired if id(s) in keep]
        for server in servers:
            server.stop()

    def spawn(self, args: Sequence[str], env: Mapping[str, str], cwd: str,
              timeout: float = 30.0, folder: str | None = None) -> ForkedProcess:
        """Fork a kernel with launcher arguments `args` in `cwd` with `env`; `folder`, the
        kernel's private one, is removed by the template if the harness dies first. A template
        whose preloaded modules' files changed is replaced first (freshness.py)."""
        if self.preload and self.ready():
            from .freshness import changed, rebuild

            if changed(self):
                fresh: ForkServer = rebuild(self)
                return fresh.spawn(args, env, cwd, timeout, folder)
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        deadline = time.monotonic() + timeout
        while True:
            try:
                conn.connect(self.path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if self.process.poll() is not None or time.monotonic() > deadline:
                    conn.close()
                    said = self.stderr_text().strip()[-STDERR_TAIL:]
                    raise RuntimeError("nbtest's kernel template process did not start"
                                       + (f"; its stderr:\n{said}" if said else "")) from None
                time.sleep(0.01)
        # ipykernel watches its parent, read from JPY_PARENT_PID when ipykernel was imported,
        # i.e. in the template: the parent of a forked kernel is the template, so say so.
        parent = str(self.process.pid)
        env = {**env, "JPY_PARENT_PID": parent}
        args = [*args, f"--IPKernelApp.parent_handle={parent}"]
        request = {"argv": list(args), "env": env, "cwd": cwd, "folder": folder}
        conn.sendall((json.dumps(request) + "\n").encode())
        conn.settimeout(timeout)
        buffer = b""
        while b"\n" not in buffer:
            data = conn.recv(4096)
            if not data:
                break
            buffer += data
        line, _, rest = buffer.partition(b"\n")
        reply = json.loads(line or b"{}")
        if "pid" not in reply:
            conn.close()
            raise RuntimeError(f"the kernel template refused to fork: {reply.get('error')}")
        process = ForkedProcess(int(reply["pid"]), conn, self)
        process._buffer = rest  # an exit report may already have followed
        return process

    def stop(self) -> None:
        """Stop the template and its kernels (SIGTERM; SIGKILL if it lingers); an adopted
        template is only forgotten: its owner stops it."""
        with self._lock:
            if self._instances.get(tuple(self.flags)) is self:
                del self._instances[tuple(self.flags)]
        if not self.owned:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        import shutil

        shutil.rmtree(self.folder, ignore_errors=True)
