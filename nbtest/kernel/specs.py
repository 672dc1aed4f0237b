"""Kernelspecs by name: the full lookup jupyter_client makes, and a quick one for the argv.

`kernel_spec` is what a kernel starts from (looked up once per process). `kernel_argv` serves
the fork template's early start: read straight from `kernel.json` in Jupyter's folders, it
costs no import of jupyter_client (about 60 ms here), so the template begins its own imports
that much sooner; any name it does not find there goes through `kernel_spec`.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from ..errors import NoSuchKernelError

# jupyter_client's kernelspec lookup imports ipykernel, which (6.20 and the like, on Python
# 3.11+) imports debugpy into the harness, and debugpy prints a frozen-modules warning on our
# stderr at import unless this is set. Kernels get it from kernel_environment; the harness
# gets it here, before any lookup, unless the user set it.
os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
_specs: dict[str, Any] = {}
# What jupyter_client finds by file name alone (its names are matched lower-cased; "python"
# is its alias of the native kernel, left to the full lookup).
_PLAIN_NAME = re.compile(r"[a-z0-9._-]+")


def installed_kernels() -> dict[str, str]:
    """Installed kernelspec names mapped to their resource folders."""
    from jupyter_client.kernelspec import KernelSpecManager

    return dict(KernelSpecManager().find_kernel_specs())


def resolve_kernel_name(name: str) -> str:
    """The kernelspec name jupyter_client starts for `name`: its KernelManager takes `python`
    as the native kernel, `python3` (notebooks of papermill and old Jupyters ask for it)."""
    from jupyter_client.kernelspec import NATIVE_KERNEL_NAME

    return NATIVE_KERNEL_NAME if name == "python" else name


def kernel_spec(name: str, notebook: str | Path | None = None) -> Any:
    """The kernelspec `name` (looked up once per process: a lookup scans every kernel folder),
    or NoSuchKernelError listing the installed kernelspecs."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    asked, name = name, resolve_kernel_name(name)
    if name not in _specs:
        try:
            _specs[name] = _in_jupyter_folders(name) or KernelSpecManager().get_kernel_spec(name)
        except NoSuchKernel:
            known = ", ".join(sorted(installed_kernels())) or "none"
            where = f"{notebook}: " if notebook else ""
            raise NoSuchKernelError(
                f"{where}no kernel named {asked!r} is installed (installed: {known}). "
                "Install it, or choose one with --kernel NAME or metadata.nbtest.kernel.",
                kernel=asked, installed=known) from None
    return _specs[name]


def kernel_argv(name: str) -> list[str]:
    """The command line of kernelspec `name`: from the first of Jupyter's folders holding
    `NAME/kernel.json`, as the full lookup would find it, else from `kernel_spec`."""
    if _PLAIN_NAME.fullmatch(name) and name != "python" and name not in _specs:
        from jupyter_core.paths import jupyter_path

        for folder in jupyter_path("kernels"):
            try:
                with open(os.path.join(folder, name, "kernel.json"), encoding="utf-8") as fh:
                    argv = json.load(fh).get("argv")
            except (OSError, ValueError, AttributeError):
                continue
            if isinstance(argv, list) and argv:
                return [str(part) for part in argv]
    return list(kernel_spec(name).argv)


def _in_jupyter_folders(name: str) -> Any:
    """The kernelspec `name` when one of Jupyter's own folders holds it, else None.

    The default search looks in these folders first too; its last folder, IPython's legacy
    `kernels`, costs an import of IPython to locate (about a tenth of a second, and more
    objects to sweep at exit) and rarely holds one, so it is left to the default search, as is
    ipykernel's built-in `python3`, which jupyter_client offers only after every folder.
    """
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    from jupyter_core.paths import jupyter_path

    manager = KernelSpecManager(kernel_dirs=jupyter_path("kernels"))
    try:
        spec = manager.get_kernel_spec(name)
    except NoSuchKernel:
        return None
    return spec if os.path.dirname(spec.resource_dir) in manager.kernel_dirs else None
