"""The pytest plugin (entry point `pytest11: nbtest`): hooks only, cheap to import.

Notebooks are collected with `--nbtest` or the ini key `nbtest = true`. Options come from the
option table in config.py as `--nbtest-<name>` and ini keys `nbtest_<name>`; the seed's
`--runslow`, `--runcpp` and `--skipint` apply to every test, notebooks and `.py` alike.

The entry point loads this plugin into every pytest session of the environment, so it stays
inert unless the session opts in (see `nbtest_active`): then every hook gives what pytest
gives without nbtest, and a project's own `--runslow` (the seed's conftest) keeps working.

The hooks are here; what they use lives beside them: state (stash keys, whether nbtest acts),
session (the resolved options, session-wide callbacks), switches (the seed's markers),
collect and items (the nodes), fork_template (fork templates, preloading), preflight (the GPU
check), reports (what pytest prints), cell_order, timeout_bridge, repeat_guard, locations.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from ..config import INI, PYTEST, in_pytest_spelling, options_for
from ..errors import NbTestError
from ..handoff import given, send
from ..notebook import NEVER_COLLECTED
from .fork_template import preload_for, remember_imports, remember_unsafe
from .preflight import preflight_items
from .session import register_plugins, session_callbacks, session_config, with_nbdev
from .state import (
    ACTIVE_KEY,
    CALLBACKS_KEY,
    CONFIG_KEY,
    FORK_TEMPLATES_KEY,
    LEFT_OUT_KEY,
    LEFT_OUT_OUTPUT,
    SWITCHES_KEY,
    TEMPLATES_KEY,
    is_notebook_item,
    nbtest_active,
    nbtest_enabled,
    note_left_out,
)
from .switches import FASTAI_SWITCHES, MARKERS, switched_off


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    """Add the pytest_nbtest_* hookspecs."""
    from .. import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    """Declare every option of the table, and the seed's marker switches."""
    group = parser.getgroup("nbtest", "run Jupyter notebooks as tests")
    group.addoption("--nbtest", action="store_true", default=False,
                    help="collect *.ipynb files as tests")
    parser.addini("nbtest", "collect *.ipynb files as tests", type="bool", default=False)
    for option in options_for(PYTEST):
        if option.name == "parameters":
            group.addoption("--nbtest-param", dest="nbtest_parameters", action="append",
                            metavar="NAME=VALUE", help="a notebook parameter; repeatable")
        elif option.is_flag:
            group.addoption(option.pytest_flag, dest=f"nbtest_{option.name}",
                            action="store_const", const=True, default=None, help=option.help)
        else:
            group.addoption(option.pytest_flag, dest=f"nbtest_{option.name}", default=None,
                            metavar=option.name.upper(), help=option.help)
    for option in options_for(INI):
        if option.name != "parameters":
            parser.addini(f"nbtest_{option.name}", option.help, default="")


@pytest.hookimpl(wrapper=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser,
                                  args: list[str]) -> Generator[None, None, None]:
    """Declare the seed's switches after the project's conftests, unless they declared them:
    the seed's own conftest adds `--runslow`, and two declarations would crash pytest."""
    yield
    taken = {name for group in [parser._anonymous, *parser._groups]
             for option in group.options for name in [*option.names(), option.dest]}
    group = parser.getgroup("nbtest")
    owned = set()
    for _, dest, _, text in FASTAI_SWITCHES:
        if f"--{dest}" not in taken and dest not in taken:
            group.addoption(f"--{dest}", dest=dest, action="store_true", default=False,
                            help=text)
            owned.add(dest)
    early_config.stash[SWITCHES_KEY] = frozenset(owned)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Register markers, resolve the options once, keep per-cell items on one xdist worker."""
    try:
        nbconfig = session_config(config)
    except NbTestError as exc:
        raise pytest.UsageError(in_pytest_spelling(exc.message)) from None
    enabled = nbtest_enabled(config)
    config.stash[ACTIVE_KEY] = enabled or bool(nbconfig.project or nbconfig.explicit)
    if enabled:
        nbconfig = with_nbdev(config, nbconfig)
        from ..kernel.interrupt import terminate_as_interrupt, xdist_workers

        # SIGTERM: kernels stopped, folders removed; an xdist controller's workers get it too.
        undo = terminate_as_interrupt(lambda: xdist_workers(config.pluginmanager))
        if undo is not None:
            config.add_cleanup(undo)
    config.stash[CONFIG_KEY] = nbconfig
    config.stash[CALLBACKS_KEY] = []
    # none: no template can exist yet
    forkserver = sys.modules.get("nbtest.kernel.forkserver_client")
    config.stash[TEMPLATES_KEY] = forkserver.ForkServer.live() if forkserver else set()
    from . import fixture  # the `notebook` fixtures: in every session, at the cost of a name

    config.pluginmanager.register(fixture, "nbtest-fixture")
    if not nbtest_active(config):
        return  # not an nbtest session: no markers, no registry, no xdist helpers
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    try:
        # A session that collects no notebook pays nothing for the notebook-side callbacks.
        config.stash[CALLBACKS_KEY] = session_callbacks(config, nbconfig) if enabled else []
        if enabled and nbconfig.preload == "auto" and nbconfig.fork != "no":
            from .fork_template import ImportsCapture  # what kernels load: what "auto" learns

            config.stash[CALLBACKS_KEY].append(ImportsCapture(config))
        register_plugins(config, nbconfig)  # reports, summaries, registry, affected, xdist
    except NbTestError as exc:
        raise pytest.UsageError(in_pytest_spelling(exc.message)) from None
    templates = given(config, FORK_TEMPLATES_KEY)
    if templates:
        from ..kernel.forkserver_client import ForkServer

        for description in templates:
            ForkServer.adopt(description)
    # Cell items of one notebook share a kernel, so they must run on one worker: the modes
    # that would scatter them become `loadfile`, which keeps each file on one worker (xdist's
    # `loadgroup` does not group with pytest 9, and workers cannot see the switch anyway).
    if nbconfig.cells and getattr(config.option, "dist", "no") in ("load", "worksteal",
                                                                    "loadgroup"):
        config.option.dist = "loadfile"


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """Never descend into Jupyter checkpoints or Sphinx build folders."""
    if not nbtest_enabled(config):
        return None
    if collection_path.name in NEVER_COLLECTED:
        return True
    saved = config.stash[CONFIG_KEY].save_failed if CONFIG_KEY in config.stash else None
    if saved and collection_path.resolve() == Path(saved).resolve():
        return True  # the executed copies of failed notebooks are not tests
    return None


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """Collect `*.ipynb` (not the `*.executed.ipynb` copies nbtest execute writes, nor, in an
    nbdev project, the notebooks nbdev_test leaves out)."""
    if (file_path.suffix == ".ipynb" and not file_path.name.endswith(".executed.ipynb")
            and nbtest_enabled(parent.config)
            and not NEVER_COLLECTED.intersection(file_path.parts)):
        if parent.config.stash[CONFIG_KEY].nbdev:
            from ..nbdev import left_out

            why = left_out(file_path, parent.config.rootpath)
            if why:
                note_left_out(parent.config, file_path, why)
                return None
        from .collect import NotebookFile

        return NotebookFile.from_parent(parent, path=file_path)
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The seed's marker switches, for notebooks and `.py` tests alike."""
    if not nbtest_active(config):
        return
    cuda_checked: bool | None = None
    for item in items:
        reason = switched_off(config, {marker.name for marker in item.iter_markers()})
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))
        if item.get_closest_marker("cuda"):
            if cuda_checked is None:
                from ..gpu.probe import cuda_available

                cuda_checked = cuda_available()
            if not cuda_checked:
                item.add_marker(pytest.mark.skip(reason="CUDA is not available"))
    affected = None
    if config.stash[CONFIG_KEY].affected:
        from ..affected.store import AFFECTED_PLUGIN

        affected = config.pluginmanager.get_plugin(AFFECTED_PLUGIN)
    if affected is not None:  # --nbtest-affected: before the preflight, so it counts only
        affected.deselect(items)  # the notebooks that will run
    preflight_items(config, items)


@pytest.hookimpl(tryfirst=True)  # before xdist's worker sends the collected ids
def pytest_collection_finish(session: pytest.Session) -> None:
    """Keep each notebook's cells together and in order; start the fork template while
    pytest gets ready, if notebooks will fork kernels."""
    if not nbtest_active(session.config):
        return
    left_out = [(os.path.relpath(path, session.config.invocation_params.dir), why)
                for path, why in session.config.stash.get(LEFT_OUT_KEY, [])]
    send(session.config, LEFT_OUT_OUTPUT, left_out)  # an xdist worker: the controller says it
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and session.config.getoption("verbose") > 0:
        for shown, why in left_out:
            reporter.write_line(f"nbtest: nbdev: left out {shown}: {why}")
    items: list[Any] = session.items
    if session.config.stash[CONFIG_KEY].cells:
        from .cell_order import keep_cells_together, reunite_split_notebooks

        reunite_split_notebooks(session.config, items)
        keep_cells_together(items)
    # One entry per notebook: its plan, and the notebook as read (its file's).
    notebooks = {item.path: (item.plan, item.parent.notebook) for item in items
                 if is_notebook_item(item) and not item.get_closest_marker("skip")}
    forking = [plan for plan, _ in notebooks.values() if plan.config.fork != "no"]
    imports = remember_imports(session.config, notebooks)
    if not forking:
        return  # nothing imported: a session without notebooks pays nothing here
    if len(forking) == 1 and forking[0].config.fork == "auto":
        return  # one kernel starts sooner spawned; a template would only take CPU from it
    names = {plan.kernel_name for plan in forking}
    from ..kernel.forkserver_client import warm_up
    from ..kernel.specs import kernel_argv

    preload = preload_for(session.config, session.config.stash[CONFIG_KEY], imports)
    for name in sorted(names)[:3]:
        try:
            warm_up(kernel_argv(name), preload, str(session.config.rootpath))
        except NbTestError:
            pass  # an unknown kernel is reported by its notebook


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Tell a notebook item which item follows, so it can pre-warm that kernel."""
    if "nbtest.plugin.items" not in sys.modules:
        return None  # no notebook item exists: nothing to import per test
    from .items import NotebookItem

    if isinstance(item, NotebookItem):
        item.next_item = nextitem


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Drop a pre-warmed kernel its notebook item never used."""
    if "nbtest.plugin.items" not in sys.modules:
        return
    from .items import NotebookItem

    if isinstance(item, NotebookItem):
        item.drop_prewarmed()


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop the fork templates this session started: a process that outlives the session
    (an xdist socket server, pytester in-process) must not keep them, nor pick one next time."""
    forkserver = sys.modules.get("nbtest.kernel.forkserver_client")
    if forkserver is not None:
        remember_unsafe(config, forkserver.ForkServer)
        forkserver.ForkServer.stop_all(keep=config.stash.get(TEMPLATES_KEY, set()))


@pytest.hookimpl(wrapper=True)
def pytest_sessionfinish(session: pytest.Session) -> Generator[None, None, None]:
    """Around pytest's own teardown of what is still set up (a per-cell notebook cut short by
    -x or Ctrl-C: its NotebookFile's teardown kills that kernel, publishing nothing): kill the
    pre-warmed kernels never used, and wait for the end of every kernel's stop (its
    processes gone, its folder removed)."""
    if "nbtest.plugin.items" not in sys.modules:
        return (yield)
    from .cell_kernel import ENDING_KEY

    session.config.stash[ENDING_KEY] = True
    try:
        return (yield)
    finally:
        from ..kernel.reaper import settle
        from .items import close_open_sessions

        close_open_sessions()
        settle()  # the end of every kernel's stop (kernel/reaper.py): processes gone, folders too
