"""The jupyter_client kernel provisioner that forks kernels from nbtest's template process.

It is LocalProvisioner in every respect (connection file, IPC sockets, signals to the process
group, kill) except how the process comes to be: where the kernelspec is a Python kernel of
this interpreter, the kernel is forked from the template (nbtest.kernel.forkserver_client);
elsewhere, or when its `fork` is "no" (or "auto" and no template is running and ready), it is
spawned as usual. Its options come as the provisioner's config in the kernelspec's
`kernel_provisioner` stanza (launch.py writes it), which jupyter_client passes to the constructor.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.provisioning.local_provisioner import LocalProvisioner
from traitlets import Any as AnyTrait
from traitlets import Unicode


class ForkProvisioner(LocalProvisioner):
    """LocalProvisioner whose kernels are forked from a warm template when possible."""

    start_method = "spawn"
    fork = Unicode("no", help='"yes", "no" or "auto": see the fork option')
    # Given the template's preloaded modules, why this kernel must be spawned (None: it need
    # not); a callable, so not a configurable trait.
    spawn_if = AnyTrait(None, allow_none=True)

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> KernelConnectionInfo:
        """Fork the kernel from the template, or fall back to spawning it."""
        from .environment import split_kernel_command
        from .forkserver_client import ForkServer

        env = kwargs.get("env") or {}
        parts = split_kernel_command(cmd)
        mode = self.fork
        if mode != "no" and parts is not None:
            flags, args = parts
            # auto: only a template someone started (the pytest face, when two or more
            # notebooks will fork) and that is ready: waiting for its imports costs more.
            server = ForkServer.get(flags) if mode == "yes" else ForkServer.running(flags)
            # A template that preloads the user's modules is worth waiting for: a kernel
            # spawned meanwhile would import them itself, at the same cost.
            wait = mode == "yes" or bool(server is not None and server.preload)
            differ = server.differences(env) if server is not None else []
            spawn_if = self.spawn_if
            why = spawn_if(server.preload) if server and server.preload and spawn_if else None
            if differ:  # -v says why: e.g. an xdist worker whose PYTHONPATH is its own
                self.start_method = f"spawn, {' '.join(differ)} differs from the template's"
            elif why:  # e.g. OMP_NUM_THREADS set before `import torch`, preloaded
                self.start_method = f"spawn, {why}"
            elif server is not None and (wait or server.ready()):
                cwd = str(kwargs.get("cwd") or pathlib.Path.cwd())
                # The kernel's private folder holds its connection file.
                folder = os.path.dirname(getattr(self.parent, "connection_file", "") or "")
                try:
                    forked = server.spawn(args, env, cwd, folder=folder or None)
                except (RuntimeError, OSError) as exc:  # template unsafe or gone: spawn
                    self.log.warning("nbtest: cannot fork a kernel (%s); spawning it", exc)
                    return await super().launch_kernel(cmd, **kwargs)
                # Popen's interface, as far as LocalProvisioner and nbtest use it.
                self.process = forked  # type: ignore[assignment]
                self.pid = self.pgid = forked.pid  # the child called setsid()
                self.cwd = cwd
                self.start_method = "fork"
                return self.connection_info
        return await super().launch_kernel(cmd, **kwargs)
