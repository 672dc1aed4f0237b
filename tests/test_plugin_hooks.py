"""Every pytest hook nbtest implements exists in a pytest with no third-party plugins, or is
marked optional: an install without pytest-xdist (it is not a dependency) must never crash
with pluggy's "unknown hook".

The walk registers each plugin object nbtest defines in a plugin manager that holds only
pytest's own plugins, as pluggy would when the session registers it; a real session with the
third-party plugins blocked then runs the features that register those objects.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Iterator

import pytest
from _pytest.config import get_config
from helpers.pytest_sessions import output, run_pytest

import nbtest
import nbtest.hookspecs
from nbtest import this_tests

pytest_plugins = ["pytester"]

# Modules that need an optional extra, or run only inside a kernel: they define no hooks.
NOT_IMPORTED = ("nbtest.kernel.forkserver_main",)
# The third-party hooks nbtest implements today: the walk must find them, or it walks nothing.
THIRD_PARTY = {"pytest_testnodedown", "pytest_configure_node",
               "pytest_xdist_node_collection_finished", "pytest_timeout_set_timer",
               "pytest_timeout_cancel_timer"}


def nbtest_modules() -> Iterator[object]:
    """Every module of the nbtest package."""
    yield nbtest
    for info in pkgutil.walk_packages(nbtest.__path__, "nbtest."):
        if info.name not in NOT_IMPORTED:
            yield importlib.import_module(info.name)


def plugin_objects() -> Iterator[tuple[str, object]]:
    """(name, object) for each module or class of nbtest that implements a pytest hook; a
    class stands for its instances (made without __init__: only the methods matter)."""
    seen: set[int] = set()
    for module in nbtest_modules():
        name = getattr(module, "__name__", "")
        if any(attr.startswith("pytest_") and callable(getattr(module, attr))
               for attr in vars(module)):
            yield name, module
        for cls_name, cls in vars(module).items():
            if (inspect.isclass(cls) and cls.__module__ == name and id(cls) not in seen
                    and any(attr.startswith("pytest_")
                            and inspect.isfunction(inspect.getattr_static(cls, attr))
                            for attr in dir(cls))):
                seen.add(id(cls))
                yield f"{name}.{cls_name}", object.__new__(cls)


def bare_plugin_manager() -> pytest.PytestPluginManager:
    """pytest's plugin manager with pytest's own plugins and nbtest's hookspecs, nothing else
    (entry points are loaded only when a session parses its arguments)."""
    manager = get_config().pluginmanager
    manager.add_hookspecs(nbtest.hookspecs)
    return manager


def test_every_hook_nbtest_registers_is_known_to_a_bare_pytest_or_optional() -> None:
    """Registering each of nbtest's plugin objects in a pytest without pytest-xdist,
    pytest-timeout or any other third-party plugin raises nothing."""
    this_tests("nbtest.plugin.pytest_configure",
               "nbtest.plugin.registry.RegistrySession.pytest_testnodedown",
               "nbtest.plugin.affected.AffectedSession.pytest_testnodedown",
               "nbtest.plugin.sanitizer_summary.SanitizerSummary.pytest_testnodedown",
               "nbtest.plugin.fork_template.XdistForkTemplate.pytest_configure_node",
               "nbtest.plugin.preflight.XdistPreflight.pytest_xdist_node_collection_finished")
    manager = bare_plugin_manager()
    assert not manager.hasplugin("xdist") and not manager.hasplugin("timeout")
    found: set[str] = set()
    problems = []
    for name, plugin in plugin_objects():
        found.update(attr for attr in dir(plugin) if attr.startswith("pytest_"))
        try:
            manager.register(plugin, f"walk-{name}")
            manager.check_pending()
        except Exception as exc:  # pluggy's PluginValidationError, named in the message
            problems.append(f"{name}: {exc}")
        finally:
            if manager.is_registered(plugin):
                manager.unregister(plugin)
    assert not problems, "\n".join(problems)
    assert THIRD_PARTY <= found, f"the walk missed {sorted(THIRD_PARTY - found)}"


BLOCKED = ("xdist", "xdist.looponfail", "split", "rerunfailures", "timeout", "html",
           "randomly", "sugar", "pytest_github_actions_annotate_failures", "cov")


def test_a_session_without_third_party_plugins_runs_registry_affected_and_output_checks(
        pytester: pytest.Pytester, no_kernel_left) -> None:
    """The README's `api` example, --nbtest-affected and output checks, with every
    third-party plugin blocked (`pytest -p no:xdist ...`): the notebooks run, exit 0."""
    this_tests("nbtest.plugin.registry.RegistrySession.pytest_sessionfinish",
               "nbtest.plugin.affected.AffectedSession.pytest_sessionfinish",
               "nbtest.plugin.session.register_plugins")
    pytester.makepyprojecttoml('[tool.nbtest]\napi = ["mylib"]\nregistry = "registry.json"\n')
    pytester.makepyfile(mylib="def double(v):\n    return 2 * v\n")
    import nbformat

    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("from nbtest import this_tests\nimport mylib\n"
                                  "this_tests(mylib.double)\nassert mylib.double(2) == 4"),
        nbformat.v4.new_code_cell("print(6)", metadata={"tags": ["nbtest-check-output"]},
                                  outputs=[nbformat.v4.new_output("stream", text="6\n")])])
    nbformat.write(nb, str(pytester.path / "double.ipynb"))
    blocked = [arg for plugin in BLOCKED for arg in ("-p", f"no:{plugin}")]
    for _ in range(2):  # the second session reads the affected cache the first one wrote
        result = run_pytest(pytester, *blocked, "--nbtest", "--nbtest-affected",
                            "--nbtest-check-outputs", "double.ipynb")
        text = output(result)
        assert "INTERNALERROR" not in text, text
        assert result.ret == pytest.ExitCode.OK, text
    assert "mylib.double" in (pytester.path / "registry.json").read_text()
    assert "1 of 1 notebooks unchanged" in text, text
    no_kernel_left()
