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
from .tree import TOKEN_VAR, kernel_tree

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
        self.info_ahead: str | None = None  # a kernel_info request sent before it answered
        self.early: dict[str, dict[str, Any]] = {}  # shell replies read before asked for

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
        The request sent at launch (info_ahead) counts as the first; replies to requests
        sent ahead with it (send_execute) are kept for reply().
        """
        from queue import Empty

        deadline = time.monotonic() + timeout
        asked, self.info_ahead = self.info_ahead is not None, None
        while True:
            if not asked:
                self.kc.kernel_info()
            asked = False
            msg = await self._next_shell_reply(
                lambda m: m["msg_type"] == "kernel_info_reply", 1.0)
            if msg is not None:
                try:  # any IOPub message now proves it is connected
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

    async def _next_shell_reply(self, wanted: Callable[[dict[str, Any]], bool],
                                wait: float) -> dict[str, Any] | None:
        """The next shell reply `wanted` within `wait` seconds (None if none came); the other
        replies read meanwhile are kept in `early`, by the id of their request."""
        from queue import Empty

        end = time.monotonic() + wait
        while True:
            try:
                msg = await self.kc.shell_channel.get_msg(timeout=max(0.0, end - time.monotonic()))
            except Empty:
                return None
            if wanted(msg):
                return dict(msg)
            self.early[msg["parent_header"].get("msg_id", "")] = dict(msg)

    def send_execute(self, code: str, user_expressions: dict[str, str] | None = None) -> str:
        """Send a silent execute request now, answered or not (zmq holds it until the kernel
        has bound its sockets, so one sent with the launch runs while the kernel would
        otherwise wait for us); its id, for reply()."""
        from jupyter_client.client import KernelClient

        # The base class's method: the async client's own returns a future of the id in
        # jupyter_client 8.0 (the lowest we allow), the id itself in later releases.
        return str(KernelClient.execute(self.kc, code, silent=True, store_history=False,
                                        user_expressions=user_expressions))

    async def reply(self, msg_id: str, timeout: float | None) -> dict[str, Any]:
        """The shell reply to request `msg_id`, waiting up to `timeout` seconds (TimeoutError);
        RuntimeError if the kernel dies first. Other replies read meanwhile are kept."""
        if msg_id in self.early:
            return self.early.pop(msg_id)
        deadline = time.monotonic() + (timeout or float("inf"))
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no reply in {timeout:g} s")
            msg = await self._next_shell_reply(
                lambda m: m["parent_header"].get("msg_id") == msg_id, min(left, 1.0))
            if msg is not None:
                return msg
            if self.exit_status() is not None:
                raise RuntimeError(f"the kernel died before it replied ({self.exit_status()})")

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
    from jupyter_client.client import KernelClient
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
        # Answered once the kernel is up (the base class's method: see send_execute).
        kernel.info_ahead = str(KernelClient.kernel_info(kernel.kc))
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
