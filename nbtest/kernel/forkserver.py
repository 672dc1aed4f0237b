"""Fast kernel start, the harness's side: the handle on a template process (template.py)
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
from .template import PRELOAD_VAR

STDERR_FILE = "template.err"  # beside the template's socket: what it wrote to stderr
STDERR_TAIL = 2000  # characters of it a failed template's error quotes


class ForkedProcess:
    """A forked kernel, with the subset of Popen's interface that jupyter_client uses."""

    stdin = stdout = stderr = None

    def __init__(self, pid: int, conn: socket.socket, server: ForkServer | None = None) -> None:
        self.pid = pid
        self.server = server  # the template it was forked from
        self.returncode: int | None = None
        self._conn = conn
        self._orphaned = False  # the template is gone: no exit report will come
        self._buffer = b""
        self._lock = threading.Lock()  # the reaper thread may wait while another polls

    def poll(self) -> int | None:
        """The exit code once the template has reported it, else None."""
        if self.returncode is None:
            self._read(block=False)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the exit report; raises subprocess.TimeoutExpired like Popen."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.returncode is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired(["forked kernel"], timeout or 0)
            step = min(left, 0.1) if left is not None else 0.1
            if self._orphaned:  # nothing to block on: look again after a pause, not at once
                time.sleep(min(step, 0.02))
            self._read(block=True, timeout=step)
        return self.returncode

    def _read(self, block: bool, timeout: float | None = None) -> None:
        if not self._lock.acquire(blocking=block):
            return  # another thread is reading (the reaper's wait): poll() does not block
        try:
            if self.returncode is None:
                self._read_locked(block, timeout)
        finally:
            self._lock.release()

    def _read_locked(self, block: bool, timeout: float | None) -> None:
        if self._orphaned:
            if not _alive(self.pid):
                self.returncode = -signal.SIGKILL
            return
        self._conn.settimeout(timeout if block else 0.0)
        try:
            data = self._conn.recv(4096)
        except (BlockingIOError, socket.timeout):
            return
        except OSError:
            data = b""
        if not data:  # the template died: the kernel dies with it (or has died)
            self._orphaned = True
            self._conn.close()
            if not _alive(self.pid):
                self.returncode = -signal.SIGKILL
            return
        self._buffer += data
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            message = json.loads(line)
            if "exit" in message:
                self.returncode = int(message["exit"])
                self._conn.close()

    def stale(self) -> list[str]:
        """The files of the modules its template had loaded that changed since (then this
        kernel holds old modules: it is started again, see NotebookKernel.start)."""
        from .freshness import changed

        return changed(self.server) if self.server is not None else []

    def send_signal(self, sig: int) -> None:
        """Signal the kernel process."""
        if self.returncode is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        """SIGKILL the kernel process."""
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        """SIGTERM the kernel process."""
        self.send_signal(signal.SIGTERM)


def _alive(pid: int) -> bool:
    """Whether `pid` runs: a zombie (a killed kernel its new parent has not reaped yet, which
    can take init a second) has exited."""
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False



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
        # Its stderr (a preloaded library's import-time warning) goes to a file, not the
        # terminal: shown under -v (reports.py) and when the template fails (spawn).
        with open(os.path.join(self.folder, STDERR_FILE), "wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, *flags, "-m", "nbtest.kernel.template", self.path],
                cwd=self.folder, stdin=subprocess.DEVNULL, stderr=err, env=self.env,
                start_new_session=True)
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
        """What the template wrote to stderr (its imports' warnings; also what a kernel forked
        from it writes there before ipykernel captures its output)."""
        try:
            with open(os.path.join(os.path.dirname(self.path), STDERR_FILE), encoding="utf-8",
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

    def accepts(self, env: Mapping[str, str]) -> bool:
        """Whether a kernel with this environment starts up as the template did."""
        return not self.differences(env)

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
                return rebuild(self).spawn(args, env, cwd, timeout, folder)
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
