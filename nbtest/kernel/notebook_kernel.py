"""One notebook's kernel from launch to kill: the GPU it is given, its start and startup code,
the interrupt after a timeout, the last look callbacks take, and what its death looked like.

NotebookSession (execute.py) owns one; cells never reach the kernel through here. Its life is
a KernelState that only moves forward, so ending it twice, or from two places, does nothing.
"""

from __future__ import annotations

import asyncio
import enum
import shutil
from pathlib import Path
from typing import Any

from ..errors import KernelStartError
from .launch import Kernel, launch_kernel, private_folder
from .preload import env_set_before_import
from .reaper import settle
from .startup import startup_code

INTERRUPT_GRACE = 0.2  # seconds a timed-out kernel gets to react to SIGINT before SIGKILL
# NotebookRun.extras the memory callback keeps up to date while cells run: why it killed the
# kernel (mem_max), and the peak RSS of its tree so far (MiB); a death's detail quotes them.
MEMORY_STOP, PEAK_RSS = "memory_stop", "peak_rss_mib"
STARTUP = "nbtest's startup code"  # its name among the code sent ahead


class KernelState(enum.Enum):
    """Where a notebook's kernel is in its life, in order."""

    NEW = "new"  # no process yet
    LAUNCHED = "launched"  # its process exists; it may not answer yet
    READY = "ready"  # it answered and ran nbtest's startup code
    STOPPED = "stopped"  # its whole process tree was sent SIGKILL; its folder is kept
    RELEASED = "released"  # its private folder is gone too: nothing of it is left


class NotebookKernel:
    """The kernel of one notebook run. `run_info` is the callbacks' NotebookRun (its
    kernel_env and startup settings shape the kernel); `dispatcher` sends kernel events."""

    def __init__(self, path: Path, kernel_name: str, cwd: Path, config: Any, sources: list[str],
                 run_info: Any, dispatcher: Any) -> None:
        self.path, self.kernel_name, self.cwd, self.config = path, kernel_name, cwd, config
        self.sources = sources  # the code that will run: what decides fork or spawn
        self.run_info, self.dispatcher = run_info, dispatcher
        self.kernel: Kernel | None = None
        self.state = KernelState.NEW
        # Code sent with the launch, before the kernel answers (send_ahead), by name: the
        # startup code first; start() puts their replies in `answers`.
        self.ahead: dict[str, str] = {}
        self.sent: dict[str, str] = {}  # name -> id of the request sent to this kernel
        self.answers: dict[str, dict[str, Any]] = {}

    async def launch(self) -> None:
        """Start the kernel process, without waiting for it: pre-warming for a later start()."""
        if self.state is not KernelState.NEW:
            return
        config, info = self.config, self.run_info
        info.kernel_env["NBTEST_NOTEBOOK"] = str(self.path.resolve())
        info.startup["seed"] = config.seed
        # this_tests in the kernel checks names against the API even when nothing records.
        info.startup["api"] = list(config.api)
        if config.nbdev:  # as nbdev_test: IN_TEST=1, the project's folder first on sys.path
            from ..nbdev import kernel_setup

            env, info.startup["sys_path"] = kernel_setup(self.path)
            info.kernel_env.update(env)
        from ..gpu.probe import kernel_gpu_env, probe

        # With several GPUs, the kernel gets the one with most free memory right now; the
        # cards' use now is the baseline of the memory callback's card-delta figure.
        seen = probe(processes=False)
        info.kernel_env.update(kernel_gpu_env(config.gpu_min_free, seen))
        info.cards_before = {g.uuid: g.used_mib for g in seen.gpus}
        # The folder first, so what callbacks put in it goes with the kernel, however it ends.
        info.kernel_folder = private_folder()
        try:
            self.dispatcher.before_kernel_start(info)
            self.kernel = await launch_kernel(
                self.kernel_name, self.cwd, info.kernel_env, self.path, fork=config.fork,
                spawn_if=lambda preloaded: env_set_before_import(self.sources, preloaded),
                folder=info.kernel_folder)
        except BaseException:  # no kernel (unknown name, failed start): the folder goes now
            shutil.rmtree(info.kernel_folder, ignore_errors=True)
            raise
        self.state = KernelState.LAUNCHED
        info.kernel_pid = self.kernel.pid
        info.extras["kernel_start"] = self.kernel.start_method
        # The startup code goes now: a pre-warmed kernel has run it before start() asks.
        self.ahead = {STARTUP: startup_code(info.startup), **self.ahead}
        self.sent = {name: self.kernel.send_execute(code) for name, code in self.ahead.items()}

    def send_ahead(self, name: str, code: str) -> None:
        """Run `code` silently in the kernel as soon as it is up, after the startup code;
        start() waits for its reply and keeps it in `answers[name]`."""
        self.ahead[name] = code
        if self.kernel is not None:
            self.sent[name] = self.kernel.send_execute(code)

    async def start(self) -> Kernel:
        """Launch (unless done), wait until the kernel answers, run the startup code, and
        wait for the end of the kernels stopped before (reaper.settle)."""
        await self.launch()
        assert self.kernel is not None
        process = getattr(self.kernel.km.provisioner, "process", None)
        if getattr(process, "stale", lambda: [])():  # forked (pre-warmed) before a preloaded
            self.kernel.kill(wait=False)  # module's file changed: it holds the old module
            self.kernel, self.state = None, KernelState.NEW
            del self.ahead[STARTUP]  # the new kernel gets what was sent ahead again
            await self.launch()  # from a template rebuilt with the new file
            assert self.kernel is not None
        await self.kernel.wait_ready(self.config.startup_timeout, self.path)
        try:
            for name, msg_id in self.sent.items():
                self.answers[name] = await self.kernel.reply(msg_id, self.config.startup_timeout)
        except BaseException as exc:
            raise self.kernel.start_failed(exc, self.path) from None
        content = self.answers.pop(STARTUP)["content"]
        if content["status"] != "ok":
            raise KernelStartError(
                f"{self.path}: nbtest's startup code failed in kernel "
                f"{self.kernel_name!r}: {content.get('ename')}: {content.get('evalue')}. "
                "Is it a Python kernel? Choose another with --kernel NAME.",
                path=str(self.path))
        # The kernels stopped before this one finish exiting in the background, meanwhile;
        # they are gone before this notebook's first cell, their memory (GPU too) free again.
        settle()
        self.state = KernelState.READY
        return self.kernel

    def stop(self, last_look: bool) -> None:
        """Kill the kernel's whole process tree, if one is running; with `last_look`,
        callbacks first look at the kernel, still alive and answering (before_kernel_stop).
        Every process has been sent SIGKILL on return; their exit is awaited in the background
        (kernel/reaper.py) while the next notebook's kernel answers and runs its startup code
        (start() waits for it before the first cell). STOPPED from here on."""
        if self.state in (KernelState.STOPPED, KernelState.RELEASED):
            return
        if self.kernel is None:  # never launched, or its launch failed (its folder went then)
            self.state = KernelState.STOPPED
            return
        self.state = KernelState.STOPPED  # first: the last look is taken once, whatever it does
        try:
            if last_look:
                self.dispatcher.kernel_stop(self.run_info)
        finally:
            # The folder stays until release(): notebook-end reads what callbacks kept there.
            self.kernel.kill(self.run_info.stop_grace, wait=False, keep_folder=True)

    def release(self) -> None:
        """Stop the kernel (unless done) and remove its private folder: the run is over.
        RELEASED from here on."""
        if self.state is KernelState.RELEASED:
            return
        try:
            self.stop(last_look=False)
        finally:
            self.state = KernelState.RELEASED
            if self.kernel is not None:
                self.kernel.remove_folder()

    async def stop_after_timeout(self) -> None:
        """Interrupt, give the cell a moment, then kill: whatever SIGINT did, a cell may
        ignore it."""
        assert self.kernel is not None
        await self.kernel.interrupt()
        await asyncio.sleep(INTERRUPT_GRACE)
        self.stop(last_look=False)

    def death_detail(self) -> str:
        """How the kernel died, from its exit status."""
        assert self.kernel is not None
        status = None
        process = getattr(self.kernel.km.provisioner, "process", None)
        if process is not None:
            try:
                status = process.wait(timeout=2)
            except Exception:
                status = process.poll()
        extras = self.run_info.extras
        if extras.get(MEMORY_STOP):
            return f"kernel killed by nbtest: {extras[MEMORY_STOP]}"
        return describe_exit(status, extras.get(PEAK_RSS))


def describe_exit(status: int | None, peak_rss_mib: float | None = None) -> str:
    """`kernel died (exit code 3)` or `kernel died (killed by SIGKILL)`; a SIGKILL nbtest did
    not send is most often the kernel's OOM killer (or a container's memory limit): say so,
    with the peak RSS seen, if known."""
    import signal

    if status is None:
        return "kernel died"
    if status < 0:
        try:
            name = signal.Signals(-status).name
        except ValueError:
            name = f"signal {-status}"
        if -status == signal.SIGKILL:
            seen = f"; peak RSS seen {peak_rss_mib:.0f} MiB" if peak_rss_mib else ""
            return (f"kernel died (killed by SIGKILL, which looks like the memory limit or "
                    f"the OOM killer{seen})")
        return f"kernel died (killed by {name})"
    return f"kernel died (exit code {status})"
