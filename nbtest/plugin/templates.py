"""The fork templates a pytest session starts, and what they preload (`preload = "auto"`
learns it from the last session's notebooks, kept in pytest's cache)."""

from __future__ import annotations

from typing import Any

import pytest

from ..config import NbTestConfig
from ..errors import NbTestError
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
    still starting, and hands it to each of them (`nbtest.kernel.forkserver.ForkServer.adopt`)."""

    def __init__(self, config: pytest.Config, nbconfig: NbTestConfig) -> None:
        self.config, self.nbconfig = config, nbconfig

    @pytest.hookimpl(tryfirst=True)  # before xdist's own session start starts the workers
    def pytest_sessionstart(self) -> None:
        """Start the template (after every plugin's configure: pytest's cache is there)."""
        from ..kernel.forkserver import warm_up
        from ..kernel.specs import kernel_argv

        try:  # no collection yet: "auto" preloads what the last session's notebooks imported
            warm_up(kernel_argv(self.nbconfig.kernel or "python3"),
                    preload_for(self.config, self.nbconfig), str(self.config.rootpath))
        except NbTestError:
            pass  # no such kernel here: each notebook reports its own

    @pytest.hookimpl(optionalhook=True)  # xdist's hook: absent without pytest-xdist
    def pytest_configure_node(self, node: Any) -> None:
        """Pass the running templates to a worker about to start."""
        from ..kernel.forkserver import ForkServer

        node.workerinput[FORK_TEMPLATES_KEY] = ForkServer.describe_owned()

def preload_for(config: pytest.Config, nbconfig: NbTestConfig,
             current: dict[str, list[str]] | None = None) -> list[str]:
    """The modules the fork template preloads (see nbtest.kernel.preload)."""
    if not nbconfig.preload:
        return []
    from ..kernel.preload import CACHE_KEY, choose

    cache = getattr(config, "cache", None)  # none under -p no:cacheprovider
    return choose(nbconfig.preload, cache.get(CACHE_KEY, {}) if cache else {}, current)

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
