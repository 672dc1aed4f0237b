"""The fork templates a pytest session starts, and what they preload (`preload = "auto"`
learns it from the last session's notebooks, kept in pytest's cache)."""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from ..callback import Callback, KernelFiles, NotebookRun
from ..config import NbTestConfig
from ..errors import NbTestError
from ..handoff import give
from ..notebook import DEFAULT_KERNEL
from ..results import NotebookResult
from .state import CONFIG_KEY, FORK_TEMPLATES_KEY


def starts_workers(config: pytest.Config) -> bool:
    return getattr(config.option, "dist", "no") != "no" and bool(
        getattr(config.option, "numprocesses", None) or getattr(config.option, "tx", None))

def may_run_notebooks(config: pytest.Config, nbconfig: NbTestConfig) -> bool:
    """Whether the session may run notebooks, known before collection: not when it only
    collects, forks nothing, or was given nothing but `.py` files."""
    if config.option.collectonly or nbconfig.fork == "no":
        return False
    return not config.args or not all(
        arg.split("::")[0].endswith(".py") for arg in config.args)

class XdistForkTemplate:
    """Under xdist: the controller starts the fork template at once, while the workers are
    still starting, and hands it to each of them
    (`nbtest.kernel.forkserver_client.ForkServer.adopt`)."""

    def __init__(self, config: pytest.Config, nbconfig: NbTestConfig) -> None:
        self.config, self.nbconfig = config, nbconfig

    @pytest.hookimpl(tryfirst=True)  # before xdist's own session start starts the workers
    def pytest_sessionstart(self) -> None:
        """Start the template (after every plugin's configure: pytest's cache is there)."""
        from ..kernel.forkserver_client import warm_up
        from ..kernel.specs import kernel_argv

        try:  # no collection yet: "auto" preloads what the last session's notebooks imported
            warm_up(kernel_argv(self.nbconfig.kernel or DEFAULT_KERNEL),
                    preload_for(self.config, self.nbconfig), str(self.config.rootpath))
        except NbTestError:
            pass  # no such kernel here: each notebook reports its own

    @pytest.hookimpl(optionalhook=True)  # xdist's hook: absent without pytest-xdist
    def pytest_configure_node(self, node: Any) -> None:
        """Pass the running templates to a worker about to start."""
        from ..kernel.forkserver_client import ForkServer

        give(node, FORK_TEMPLATES_KEY, ForkServer.describe_owned())

def preload_for(config: pytest.Config, nbconfig: NbTestConfig,
             current: dict[str, list[str]] | None = None) -> list[str]:
    """The modules the fork template preloads (see nbtest.kernel.preload)."""
    if not nbconfig.preload:
        return []
    from ..kernel.preload import AUTO, CACHE_KEY, choose

    cache = getattr(config, "cache", None)  # none under -p no:cacheprovider
    kernels = kernel_imports(config) if nbconfig.preload == AUTO else {}
    if current:  # the notebooks of this session, where their kernels reported
        resolved = {path: str(Path(path).resolve()) for path in current}
        kernels = {path: kernels[path] for path in resolved.values() if path in kernels}
    return choose(nbconfig.preload, cache.get(CACHE_KEY, {}) if cache else {}, current,
                  kernels)


KERNELS_DIR = "nbtest-imports"  # in pytest's cache: one file per notebook (xdist workers
# write their own notebooks' at once): what its kernel loaded, see nbtest.inkernel.imports


def _kernels_dir(config: pytest.Config) -> Path | None:
    cache = getattr(config, "cache", None)
    try:
        return Path(cache.mkdir(KERNELS_DIR)) if cache is not None else None
    except OSError:
        return None


def kernel_imports(config: pytest.Config) -> dict[str, dict[str, list[Any]]]:
    """What the kernels of earlier sessions loaded, per notebook (those that still exist)."""
    folder = _kernels_dir(config)
    found: dict[str, dict[str, list[Any]]] = {}
    for path in sorted(folder.glob("*.json")) if folder is not None else ():
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
            if os.path.exists(record["notebook"]):
                found[record["notebook"]] = dict(record["modules"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a bad record teaches nothing
    return found


class ImportsCapture(Callback):
    """With `preload = "auto"`: each notebook's kernel reports what it loaded and what that
    cost (nbtest.inkernel.imports); kept in pytest's cache for the next session's choice."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config  # its cache comes after nbtest's pytest_configure

    @property
    def folder(self) -> Path | None:
        """Where the records go (None without pytest's cache)."""
        return _kernels_dir(self.config)

    def before_kernel_start(self, run: NotebookRun) -> None:
        """Tell the startup code where to report (a file in the kernel's private folder)."""
        if self.folder is not None and run.kernel_folder:
            path = os.path.join(run.kernel_folder, "imports.jsonl")
            open(path, "w").close()
            KernelFiles(imports=path).put(run.startup)

    def on_notebook_end(self, run: NotebookRun, result: NotebookResult) -> None:
        """Keep what the kernel reported. A kernel forked from a preloaded template did not
        load the preloaded packages itself: what the notebook's last record says of those is
        kept (so they stay preloaded while the notebook is as it was)."""
        path, folder = KernelFiles.in_run(run).imports, self.folder
        if not path or folder is None:
            return
        modules: dict[str, list[Any]] = {}
        try:
            with open(path, encoding="utf-8") as fh:
                for line in fh:
                    modules.update(json.loads(line))
        except (OSError, ValueError):
            pass  # a line cut short by a dying kernel: keep what was read
        notebook = str(Path(run.path).resolve())
        target = folder / (hashlib.sha1(notebook.encode()).hexdigest()[:20] + ".json")
        if result.kernel_start.startswith("fork"):
            forkserver = sys.modules.get("nbtest.kernel.forkserver_client")
            servers = list(forkserver.ForkServer._instances.values()) if forkserver else []
            tops = {name.partition(".")[0] for server in servers for name in server.preload}
            try:
                before = json.loads(target.read_text(encoding="utf-8")).get("modules", {})
            except (OSError, ValueError, AttributeError):
                before = {}
            modules = {**{name: cost for name, cost in before.items()
                          if name.partition(".")[0] in tops}, **modules}
            # Never recorded (preloaded from the first session on, as written): what the
            # template's import of it cost, for a module the notebook imports as written.
            from ..kernel.preload import notebook_imports

            written = {name.partition(".")[0] for name in notebook_imports(
                cell.source for cell in run.notebook.cells if cell.cell_type == "code")}
            known = {name.partition(".")[0] for name in modules}
            for server in servers:
                for name, seconds in server.preload_status().get("seconds", {}).items():
                    top = name.partition(".")[0]
                    if top in written and top not in known:
                        modules.setdefault(name, [seconds, None])
        try:
            temporary = target.with_suffix(f".{os.getpid()}.tmp")
            temporary.write_text(json.dumps({"notebook": notebook, "modules": modules}),
                                 encoding="utf-8")
            os.replace(temporary, target)
        except OSError:
            pass  # a read-only cache: the next session learns less

def remember_imports(config: pytest.Config, notebooks: dict[Any, Any]) -> dict[str, list[str]]:
    """With `preload = "auto"`: each notebook's imports, kept for the next session too."""
    cache = getattr(config, "cache", None)
    if config.stash[CONFIG_KEY].preload != "auto" or cache is None:
        return {}
    from ..kernel.preload import CACHE_KEY, notebook_imports

    imports = {str(path): notebook_imports(c.source for c in nb.cells if c.cell_type == "code")
               for path, (_, nb) in notebooks.items() if nb is not None}
    record = cache.get(CACHE_KEY, {})
    cache.set(CACHE_KEY, {**record, "imports": imports})
    return imports

def remember_unsafe(config: pytest.Config, servers: Any) -> None:
    """Modules a template of this session found unsafe to preload: "auto" leaves them out."""
    found = [name for server in servers.owned_servers()
             for name in server.preload_status().get("unsafe", {})]
    cache = getattr(config, "cache", None)
    if found and cache is not None:
        from ..kernel.preload import CACHE_KEY

        record = cache.get(CACHE_KEY, {})
        cache.set(CACHE_KEY, {**record, "unsafe": sorted({*record.get("unsafe", ()), *found})})
