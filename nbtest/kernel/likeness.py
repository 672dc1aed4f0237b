"""The fork template imports the user's preload in a kernel's likeness (`kernel_like`).

Libraries decide at import whether they run in a notebook (fastcore's IN_NOTEBOOK checks for a
ZMQInteractiveShell, tqdm.auto for an IPKernelApp in the shell's config): a module preloaded in
the template must decide as it would imported in a spawned kernel's cell, or preloading would
change the notebook's code path (console progress bars instead of HTML ones).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def kernel_like(folder: str) -> Iterator[None]:
    """Imports made inside see what they would see in a kernel's cell: an IPython kernel
    shell (`get_ipython()` is a ZMQInteractiveShell whose config has an IPKernelApp section),
    `__IPYTHON__` and `get_ipython` in builtins, the shell's displayhook, a `__main__` without
    `__file__`, the launcher's `sys.argv` and the kernel's MPLBACKEND. Libraries decide at
    import whether they run in a notebook (HTML progress bars, inline plots); a preloaded
    module must decide as it would in the kernel. Afterwards all of it is undone (the forked
    kernel makes its own shell) and, like the kernel's shell, it started no thread."""
    import atexit
    import importlib.util

    from ipykernel.zmqshell import ZMQInteractiveShell
    from traitlets.config import Config

    env, argv, main = dict(os.environ), list(sys.argv), sys.modules.get("__main__")
    launcher = importlib.util.find_spec("ipykernel_launcher")
    connection = os.path.join(folder, "kernel.json")  # each kernel has its own: a stand-in
    os.environ.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")  # as
    # IPKernelApp sets it before the first cell
    # As launch.py starts an ipykernel: an in-memory history (no saving thread, either).
    sys.argv = [getattr(launcher, "origin", None) or "ipykernel_launcher.py", "-f", connection,
                "--HistoryManager.hist_file=:memory:"]
    config = Config()
    config.IPKernelApp.connection_file = connection
    config.HistoryManager.hist_file = ":memory:"
    shell = ZMQInteractiveShell.instance(config=config)
    atexit.unregister(shell.atexit_operations)
    ours = {k: v for k, v in os.environ.items() if env.get(k) != v}  # TERM, PAGER, ...
    try:
        with shell.builtin_trap, shell.display_trap:  # as while a cell runs
            yield
    finally:
        ZMQInteractiveShell.clear_instance()
        sys.argv = argv
        if main is not None:
            sys.modules["__main__"] = main
        for key, value in ours.items():  # the kernel's own shell sets them; what a module
            if os.environ.get(key) == value:  # set is kept (the template passes it on)
                if key in env:
                    os.environ[key] = env[key]
                else:
                    del os.environ[key]
