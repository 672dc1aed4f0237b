"""An nbtest session's resolved options (command line, ini, pyproject, nbdev project), the
callbacks every notebook of it gets and the pytest plugin objects it registers (one table)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from ..config import (
    INI,
    PYTEST,
    NbTestConfig,
    in_pytest_spelling,
    options_for,
    parse_layer,
    project_layer,
)
from ..errors import NbTestError
from ..handoff import is_worker
from .state import CALLBACKS_KEY, nbtest_enabled


def session_config(config: pytest.Config) -> NbTestConfig:
    raw: dict[str, Any] = {}
    for option in options_for(PYTEST):
        value = config.getoption(f"nbtest_{option.name}")
        if value is not None:
            raw[option.name] = value
    if "parameters" in raw:
        from ..params import parse_assignment  # imports nbformat: only when asked for

        raw["parameters"] = dict(parse_assignment(text) for text in raw["parameters"])
    ini = {o.name: config.getini(f"nbtest_{o.name}") for o in options_for(INI)
           if o.name != "parameters"}
    ini = {name: value for name, value in ini.items() if value not in ("", None)}
    return NbTestConfig(explicit=parse_layer(raw, PYTEST, "command line"),
                        project=project_layer(config.rootpath, ini))

def session_callbacks(config: pytest.Config, nbconfig: NbTestConfig) -> list[Any]:
    """The callbacks every notebook of the session gets: memory, output checks, coverage,
    the profile."""
    from ..callbacks.memory import MemoryCallback
    from ..callbacks.outputs import OutputCheck

    callbacks: list[Any] = [MemoryCallback(), OutputCheck.from_config(nbconfig, config.rootpath)]
    if nbconfig.profile:
        from ..callbacks.profile import ProfileCallback

        callbacks.append(ProfileCallback())
    if nbconfig.cov:
        from ..callbacks.coverage import KernelCoverage

        callbacks.append(KernelCoverage(config))
    if nbconfig.affected:
        from ..callbacks.affected import AffectedCapture

        callbacks.append(AffectedCapture(config.rootpath))
    return callbacks

def start_registry(config: pytest.Config, nbconfig: NbTestConfig) -> Any:
    """Capture this_tests calls (the session's RegistrySession, to register); refuse at once to
    run over a registry file that is corrupt."""
    from ..callbacks.registry import RegistryCapture
    from ..registry.file import Registry
    from .registry import RegistrySession

    path = config.rootpath / nbconfig.registry if nbconfig.registry else None
    if path is not None and not is_worker(config):
        try:
            Registry.load(path)
        except NbTestError as exc:
            raise pytest.UsageError(in_pytest_spelling(exc.message)) from None
    config.stash[CALLBACKS_KEY].append(RegistryCapture(nbconfig.api))
    return RegistrySession(config, path, tuple(nbconfig.api), nbconfig.this_tests)

def _new(spec: str, *args: Any) -> Any:
    """An instance of `module:Class`, imported only now that the session wants one."""
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)(*args)

def _sanitizer_summary(config: pytest.Config, nbconfig: NbTestConfig) -> Any:
    from ..callbacks.outputs import OutputCheck
    from .sanitizer_summary import SanitizerSummary

    check = next(cb for cb in config.stash[CALLBACKS_KEY] if isinstance(cb, OutputCheck))
    return SanitizerSummary(check, config)

def _xdist_controller(config: pytest.Config) -> bool:
    return bool(config.pluginmanager.hasplugin("xdist")) and not is_worker(config)

def _forks_for_workers(config: pytest.Config, nbconfig: NbTestConfig) -> bool:
    from .fork_template import may_run_notebooks, starts_workers

    return (_xdist_controller(config) and nbtest_enabled(config) and starts_workers(config)
            and may_run_notebooks(config, nbconfig))

Choice = Callable[[pytest.Config, NbTestConfig], Any]


@dataclass(frozen=True)
class PluginObject:
    """A pytest plugin object an nbtest session registers: its name, when, and how made."""

    name: str
    wanted: Choice
    make: Choice


# In the order they are registered (pytest calls a later one's hooks first: the terminal
# summary's sections come in the reverse order). After the session's callbacks exist.
PLUGIN_OBJECTS = (
    PluginObject("nbtest-reports", lambda c, nb: True,
                 lambda c, nb: _new("nbtest.plugin.reports:NotebookReports", c, nb)),
    PluginObject("nbtest-split-watch",  # before pytest-split registers its own (cell_order)
                 lambda c, nb: nb.cells and getattr(c.option, "splits", None),
                 lambda c, nb: _new("nbtest.plugin.cell_order:SplitWatch", c)),
    PluginObject("nbtest-timeout-bridge", lambda c, nb: c.pluginmanager.hasplugin("timeout"),
                 lambda c, nb: _new("nbtest.plugin.timeout_bridge:TimeoutBridge")),
    PluginObject("nbtest-repeat-guard", lambda c, nb: c.pluginmanager.hasplugin("repeat"),
                 lambda c, nb: _new("nbtest.plugin.repeat_guard:RepeatGuard", c)),
    PluginObject("nbtest-sanitizer-summary", lambda c, nb: nbtest_enabled(c),
                 _sanitizer_summary),
    PluginObject("nbtest-profile", lambda c, nb: nbtest_enabled(c) and nb.profile,
                 lambda c, nb: _new("nbtest.callbacks.profile:ProfileSummary", c)),
    PluginObject("nbtest-registry", lambda c, nb: nb.api, start_registry),
    PluginObject("nbtest-affected", lambda c, nb: nbtest_enabled(c) and nb.affected,
                 lambda c, nb: _new("nbtest.plugin.affected:AffectedSession", c)),
    PluginObject("nbtest-xdist-preflight", lambda c, nb: _xdist_controller(c),
                 lambda c, nb: _new("nbtest.plugin.preflight:XdistPreflight", c)),
    PluginObject("nbtest-xdist-fork", _forks_for_workers,
                 lambda c, nb: _new("nbtest.plugin.fork_template:XdistForkTemplate", c, nb)),
)

def register_plugins(config: pytest.Config, nbconfig: NbTestConfig) -> None:
    """Register the plugin objects of PLUGIN_OBJECTS the session wants (an nbtest session)."""
    for plugin in PLUGIN_OBJECTS:
        if plugin.wanted(config, nbconfig):
            config.pluginmanager.register(plugin.make(config, nbconfig), plugin.name)

def with_nbdev(config: pytest.Config, nbconfig: NbTestConfig) -> NbTestConfig:
    """In an nbdev project (or with `nbdev = true`): its conventions on, its tst_flags, and the
    flags given (`--runslow` gives `slow`)."""
    chosen = "nbdev" in nbconfig.explicit or "nbdev" in nbconfig.project
    if chosen and not nbconfig.nbdev:
        return nbconfig
    from ..nbdev import project_settings

    settings = project_settings(config.rootpath) or ({} if chosen else None)
    if settings is None:
        return nbconfig
    values: dict[str, Any] = {"nbdev": True}
    if "tst_flags" not in nbconfig.project and "tst_flags" not in nbconfig.explicit:
        values["tst_flags"] = tuple(settings.get("tst_flags", ()))
    runslow = ("slow",) if config.getoption("runslow", False) else ()
    values["flags"] = tuple(sorted({*nbconfig.flags, *runslow}))
    return nbconfig.with_explicit(**values)
