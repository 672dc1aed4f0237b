"""Kernel start over private IPC sockets, and a stop that leaves no process of the kernel behind.

Every kernel gets a private 0700 folder for its connection file and sockets (the Jupyter
channels use no TCP port where zmq has IPC, so jupyter_client's port race cannot happen and no
other local user can connect; ipykernel still binds one loopback port of its own, atomically,
for output of forked subprocesses), and a token in its environment that its whole process
tree inherits, so `kill` finds even descendants that left the kernel's process group.
"""

from __future__ import annotations

import copy
import os
import shutil
import signal
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import psutil

from ..errors import KernelStartError, NbTestError
from .environment import FORK_PROVISIONER, kernel_environment
from .folders import make_folder
from .reaper import later, reap, wait_gone
from .specs import kernel_spec

TOKEN_VAR = "NBTEST_KERNEL_TOKEN"
_zmq_context: Any = None
RECONNECT_IVL_MS = 5


def _shared_context() -> Any:
    """One zmq context for all kernels of this process, so none leaks per notebook."""
    global _zmq_context
    if _zmq_context is None:
        import zmq.asyncio

        _zmq_context = zmq.asyncio.Context()
    return _zmq_context


def _ipc_available() -> bool:
    import zmq

    return bool(zmq.has("ipc"))


class Kernel:
    """One started kernel: manager, client and private folder; `kill()` always cleans up."""

    def __init__(self, name: str, km: Any, kc: Any, folder: str, token: str) -> None:
        self.name = name
        self.km = km
        self.kc = kc
        self.folder = folder
        self.token = token
        self.stopped = False

    @property
    def start_method(self) -> str:
        """`fork` (from the warm template) or `spawn`."""
        return str(getattr(self.km.provisioner, "start_method", "spawn"))

    @property
    def pid(self) -> int | None:
        """The kernel process id."""
        process = getattr(self.km.provisioner, "process", None)
        return process.pid if process is not None else None

    def exit_status(self) -> int | None:
        """The kernel's exit code (negative: killed by that signal), None while it runs."""
        process = getattr(self.km.provisioner, "process", None)
        return process.poll() if process is not None else None

    async def interrupt(self) -> None:
        """Send an interrupt (SIGINT to the kernel's process group)."""
        try:
            await self.km.interrupt_kernel()
        except Exception:  # a dead kernel cannot be interrupted; kill() follows anyway
            pass

    def processes(self) -> list[psutil.Process]:
        """The kernel and every live process that carries its token."""
        found = []
        for pid in kernel_tree(self.pid, self.token):
            try:
                found.append(psutil.Process(pid))
            except psutil.Error:
                pass  # gone meanwhile
        return found

    async def wait_ready(self, timeout: float | None, notebook: str | Path | None = None) -> None:
        """Wait until the kernel answers; KernelStartError (kernel killed) if it does not."""
        try:
            await self._handshake(timeout or float("inf"))
        except BaseException as exc:
            raise self.start_failed(exc, notebook) from None
        self.kc.allow_stdin = False

    async def _handshake(self, timeout: float) -> None:
        """kernel_info until the kernel answers on shell and IOPub is seen to be connected.

        As jupyter_client's wait_for_ready, without its final wait for 0.2 s of IOPub
        silence (a fixed cost on every notebook): replies are matched by id later anyway.
        """
        from queue import Empty

        deadline = time.monotonic() + timeout
        while True:
            self.kc.kernel_info()
            try:
                msg = await self.kc.shell_channel.get_msg(timeout=1)
            except Empty:
                msg = None
            if msg is not None and msg["msg_type"] == "kernel_info_reply":
                try:  # the request's status messages prove IOPub is connected
                    await self.kc.iopub_channel.get_msg(timeout=1)
                    self.kc._handle_kernel_info_reply(msg)
                    break
                except Empty:
                    pass  # IOPub not yet subscribed: ask again
            if self.exit_status() is not None:
                raise RuntimeError("the kernel died before replying to kernel_info")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the kernel did not answer in {timeout:g} s")
        while True:  # take what is already queued, without waiting for silence
            try:
                await self.kc.iopub_channel.get_msg(timeout=0)
            except Empty:
                break

    def start_failed(self, exc: BaseException, notebook: str | Path | None) -> BaseException:
        """Kill this kernel and turn a start-up failure into the error to raise."""
        self.kill()
        if isinstance(exc, (KeyboardInterrupt, SystemExit, NbTestError)):
            return exc
        where = f"{notebook}: " if notebook else ""
        return KernelStartError(
            f"{where}kernel {self.name!r} did not start: {exc}. Run `jupyter kernelspec list` "
            "and check that kernel starts, or raise the start-up timeout (--startup-timeout).",
            kernel=self.name)

    def kill(self, grace: float = 0.0, wait: bool = True, keep_folder: bool = False) -> None:
        """Stop: SIGKILL the whole process tree, reap, close sockets, remove the folder (or,
        with `keep_folder`, leave that to remove_folder(), once what is in it has been read).

        With `grace`, the kernel first gets SIGTERM and that many seconds to exit on its own
        (coverage.py's `sigterm = true` saves its data then); the tree is killed regardless.
        With `wait=False` (and no grace), it returns once every process of the tree has been
        sent SIGKILL and the sockets are closed: waiting for the processes to exit, reaping
        and removing the folder finish on the reaper thread (reaper.settle waits for them).
        """
        if self.stopped:
            return
        self.stopped = True
        deferred = False
        try:
            if grace > 0 and self.pid is not None and self.exit_status() is None:
                try:
                    os.kill(self.pid, signal.SIGTERM)
                    wait_gone([psutil.Process(self.pid)], timeout=grace)
                except (OSError, psutil.Error):
                    pass
            victims = self.processes()
            pgid = getattr(self.km.provisioner, "pgid", None)
            if pgid:
                try:
                    os.killpg(pgid, signal.SIGKILL)
                except OSError:
                    pass
            for proc in victims:
                try:
                    proc.kill()
                except psutil.Error:
                    pass
            process = getattr(self.km.provisioner, "process", None)
            if wait or grace > 0:
                reap(victims, process)
            else:
                deferred = True
        finally:
            try:
                if self.kc is not None:
                    self.kc.stop_channels()
            finally:
                folder = None if keep_folder else self.folder
                if deferred:
                    later(lambda: reap(victims, process, folder))
                elif folder is not None:
                    shutil.rmtree(folder, ignore_errors=True)

    def remove_folder(self) -> None:
        """Remove the folder kill(keep_folder=True) kept, on the reaper thread (after reaping)."""
        later(lambda: shutil.rmtree(self.folder, ignore_errors=True))


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


async def start_kernel(name: str, cwd: str | Path, extra_env: Mapping[str, str],
                       startup_timeout: float | None, notebook: str | Path | None = None,
                       fork: str = "auto") -> Kernel:
    """Start kernel `name` in `cwd` and wait until it answers; raise KernelStartError if not."""
    kernel = await launch_kernel(name, cwd, extra_env, notebook, fork)
    await kernel.wait_ready(startup_timeout, notebook)
    return kernel


async def launch_kernel(name: str, cwd: str | Path, extra_env: Mapping[str, str],
                        notebook: str | Path | None = None, fork: str = "auto",
                        spawn_if: Callable[[Sequence[str]], str | None] | None = None,
                        folder: str | None = None) -> Kernel:
    """Start the kernel process of `name` in `cwd` without waiting for it to answer; in
    `folder` (from private_folder()), if the caller made it first: it goes with the kernel.

    `fork` ("auto", "yes", "no"; see the option): a Python kernel of this interpreter may be
    forked from nbtest's warm template (forkserver_client.py); `kernel.start_method` says which.
    """
    import zmq
    from jupyter_client.manager import AsyncKernelManager

    spec = copy.deepcopy(kernel_spec(name, notebook))
    # The provisioner's options, as its config (given the template's preloaded modules,
    # spawn_if says why this kernel must be spawned, if it must).
    spec.metadata["kernel_provisioner"] = {"provisioner_name": FORK_PROVISIONER,
                                           "config": {"fork": fork, "spawn_if": spawn_if}}
    folder = folder or private_folder()
    token = uuid.uuid4().hex
    transport = "ipc" if _ipc_available() else "tcp"
    km = AsyncKernelManager(kernel_name=name, transport=transport, context=_shared_context(),
                            connection_file=os.path.join(folder, "kernel.json"))
    km._kernel_spec = spec  # the cached lookup, so the manager does not scan again
    kernel = Kernel(name, km, None, folder, token)
    env = kernel_environment({**extra_env, TOKEN_VAR: token})
    try:
        # As nbclient does: history in memory, not in a sqlite file every kernel contends for.
        extra = ["--HistoryManager.hist_file=:memory:"] if km.ipykernel else []
        await _start_without_pause(km, cwd=str(cwd), env=env, extra_arguments=extra)
        kernel.kc = km.client()
        # The client connects before the kernel has bound its sockets, and zmq retries only
        # every 100 ms by default: retrying sooner lets the first request in once it is ready.
        kernel.kc.context.setsockopt(zmq.RECONNECT_IVL, RECONNECT_IVL_MS)
        # No stdin (input() in a cell raises, as allow_stdin is off) and no heartbeat: the
        # manager tells whether the kernel lives, and each would cost a socket (hb a thread).
        kernel.kc.start_channels(stdin=False, hb=False)
    except BaseException as exc:
        raise kernel.start_failed(exc, notebook) from None
    return kernel


def private_folder() -> str:
    """A new private (0700) folder for one kernel's connection file, sockets and files; it
    names its owner, so a later run removes it if this process dies first (folders.py)."""
    return make_folder("nbtest-")


async def _start_without_pause(km: Any, **kwargs: Any) -> None:
    """km.start_kernel, less the 10 ms sleep its decorator (jupyter_client's in_pending_state,
    "so tests can capture the state") adds to every start: the decorated method's own body,
    then the `ready` future resolved as the decorator would. Without the body, the method."""
    body = getattr(type(km).start_kernel, "__wrapped__", None)
    if body is None:
        await km.start_kernel(**kwargs)
        return
    await body(km, **kwargs)
    if not km.ready.done():
        km.ready.set_result(None)
