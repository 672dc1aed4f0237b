"""An nbtest session's resolved options (command line, ini, pyproject, nbdev project) and the
callbacks every notebook of it gets."""

from __future__ import annotations

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
from .state import CALLBACKS_KEY


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
    from .sanitizer_summary import register_summary

    output_check = OutputCheck.from_config(nbconfig, config.rootpath)
    register_summary(config, output_check)
    callbacks: list[Any] = [MemoryCallback(), output_check]
    if nbconfig.profile:
        from ..callbacks.profile import register_summary as register_profile

        callbacks.append(register_profile(config))
    if nbconfig.cov:
        from ..callbacks.coverage import KernelCoverage

        callbacks.append(KernelCoverage(config))
    if nbconfig.affected:
        from ..callbacks.affected import AffectedCapture

        callbacks.append(AffectedCapture(config.rootpath))
    return callbacks

def start_registry(config: pytest.Config, nbconfig: NbTestConfig) -> None:
    """Capture this_tests calls; refuse at once to run over a registry file that is corrupt."""
    from ..callbacks.registry import RegistryCapture
    from ..registry.file import Registry
    from .registry import RegistrySession

    path = config.rootpath / nbconfig.registry if nbconfig.registry else None
    if path is not None and not hasattr(config, "workerinput"):
        try:
            Registry.load(path)
        except NbTestError as exc:
            raise pytest.UsageError(in_pytest_spelling(exc.message)) from None
    config.pluginmanager.register(
        RegistrySession(config, path, tuple(nbconfig.api), nbconfig.this_tests),
        "nbtest-registry")
    config.stash[CALLBACKS_KEY].append(RegistryCapture(nbconfig.api))

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
