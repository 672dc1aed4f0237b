"""The pytest plugin (entry point `pytest11: nbtest`): hooks only, cheap to import.

Notebooks are collected with `--nbtest` or the ini key `nbtest = true`. Options come from the
option table in config.py as `--nbtest-<name>` and ini keys `nbtest_<name>`; the seed's
`--runslow`, `--runcpp` and `--skipint` apply to every test, notebooks and `.py` alike.

The entry point loads this plugin into every pytest session of the environment, so it stays
inert unless the session opts in (see `nbtest_active`): then every hook gives what pytest
gives without nbtest, and a project's own `--runslow` (the seed's conftest) keeps working.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from .config import (
    INI,
    PYTEST,
    NbTestConfig,
    in_pytest_spelling,
    options_for,
    parse_layer,
    project_layer,
)
from .errors import NbTestError

ACTIVE_KEY = pytest.StashKey[bool]()
CONFIG_KEY = pytest.StashKey[NbTestConfig]()  # the session's resolved options
CALLBACKS_KEY = pytest.StashKey[list]()  # session-wide callbacks (registry, memory, ...)
TEMPLATES_KEY = pytest.StashKey["set[int]"]()  # fork templates that predate the session
SWITCHES_KEY = pytest.StashKey["frozenset[str]"]()  # the seed switches nbtest declared itself
# The seed's marker switches: marker, option (`--DEST`), whether the option runs the marker's
# tests (else it skips them), help.
SEED_SWITCHES = (
    ("slow", "runslow", True, "run slow tests"),
    ("cpp", "runcpp", True, "run cuda cpp extension tests"),
    ("integration", "skipint", False, "skip integration tests"),
)
MARKERS = {
    "slow": "slow test; skipped unless --runslow is given",
    "integration": "integration test; skipped with --skipint",
    "cuda": "needs a CUDA device; skipped when none is visible",
    "cpp": "needs the CUDA C++ extension build; skipped unless --runcpp is given",
}
NEVER_COLLECTED = {".ipynb_checkpoints", "_build"}
# pytest's own exit codes are 0-5; this one says the GPU preflight refused to start.
PREFLIGHT_EXIT = 6
FORK_TEMPLATES_KEY = "nbtest_fork_templates"  # in an xdist worker's input: see XdistForkTemplate
AFFECTED_PLUGIN = "nbtest-affected"  # the AffectedSession of --nbtest-affected, when on


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    """Add the pytest_nbtest_* hookspecs."""
    from . import hookspecs

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
    for _, dest, _, text in SEED_SWITCHES:
        if f"--{dest}" not in taken and dest not in taken:
            group.addoption(f"--{dest}", dest=dest, action="store_true", default=False,
                            help=text)
            owned.add(dest)
    early_config.stash[SWITCHES_KEY] = frozenset(owned)


def _session_config(config: pytest.Config) -> NbTestConfig:
    raw: dict[str, Any] = {}
    for option in options_for(PYTEST):
        value = config.getoption(f"nbtest_{option.name}")
        if value is not None:
            raw[option.name] = value
    if "parameters" in raw:
        from .params import parse_assignment  # imports nbformat: only when asked for

        raw["parameters"] = dict(parse_assignment(text) for text in raw["parameters"])
    ini = {o.name: config.getini(f"nbtest_{o.name}") for o in options_for(INI)
           if o.name != "parameters"}
    ini = {name: value for name, value in ini.items() if value not in ("", None)}
    return NbTestConfig(explicit=parse_layer(raw, PYTEST, "command line"),
                        project=project_layer(config.rootpath, ini))


def nbtest_enabled(config: pytest.Config) -> bool:
    """Whether notebooks are collected in this session."""
    return bool(config.getoption("nbtest") or config.getini("nbtest"))


def nbtest_active(config: pytest.Config) -> bool:
    """Whether nbtest acts in this session: it collects notebooks, or the project configures
    nbtest (`[tool.nbtest]`, `nbtest_*` ini keys) or an `--nbtest-*` option was given.
    Anywhere else every hook gives what pytest gives without nbtest."""
    return config.stash.get(ACTIVE_KEY, False)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Register markers, resolve the options once, keep per-cell items on one xdist worker."""
    try:
        nbconfig = _session_config(config)
    except NbTestError as exc:
        raise pytest.UsageError(in_pytest_spelling(exc.message)) from None
    enabled = nbtest_enabled(config)
    config.stash[ACTIVE_KEY] = enabled or bool(nbconfig.project or nbconfig.explicit)
    if enabled:
        nbconfig = _with_nbdev(config, nbconfig)
    config.stash[CONFIG_KEY] = nbconfig
    config.stash[CALLBACKS_KEY] = []
    forkserver = sys.modules.get("nbtest.forkserver")  # none: no template can exist yet
    config.stash[TEMPLATES_KEY] = forkserver.ForkServer.live() if forkserver else set()
    if not nbtest_active(config):
        return  # not an nbtest session: no markers, no registry, no xdist helpers
    for name, text in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    from .pytest_reports import NotebookReports

    config.pluginmanager.register(NotebookReports(config, nbconfig), "nbtest-reports")
    if nbconfig.cells:
        from .cell_order import watch_splits

        watch_splits(config)  # before pytest-split registers its own plugin (see cell_order)
    if config.pluginmanager.hasplugin("timeout"):
        from .timeout_bridge import TimeoutBridge

        config.pluginmanager.register(TimeoutBridge(), "nbtest-timeout-bridge")
    try:
        # A session that collects no notebook pays nothing for the notebook-side callbacks.
        config.stash[CALLBACKS_KEY] = _session_callbacks(config, nbconfig) if enabled else []
        if nbconfig.api:
            _start_registry(config, nbconfig)
        if enabled and nbconfig.affected:
            from .affected_session import AffectedSession

            config.pluginmanager.register(AffectedSession(config), AFFECTED_PLUGIN)
    except NbTestError as exc:
        raise pytest.UsageError(in_pytest_spelling(exc.message)) from None
    if config.pluginmanager.hasplugin("xdist") and not hasattr(config, "workerinput"):
        config.pluginmanager.register(XdistPreflight(config), "nbtest-xdist-preflight")
        if enabled and _starts_workers(config) and _may_run_notebooks(config, nbconfig):
            config.pluginmanager.register(XdistForkTemplate(config, nbconfig),
                                          "nbtest-xdist-fork")
    templates = getattr(config, "workerinput", {}).get(FORK_TEMPLATES_KEY)
    if templates:
        from .forkserver import ForkServer

        for description in templates:
            ForkServer.adopt(description)
    # Cell items of one notebook share a kernel, so they must run on one worker: the modes
    # that would scatter them become `loadfile`, which keeps each file on one worker (xdist's
    # `loadgroup` does not group with pytest 9, and workers cannot see the switch anyway).
    if nbconfig.cells and getattr(config.option, "dist", "no") in ("load", "worksteal",
                                                                    "loadgroup"):
        config.option.dist = "loadfile"


def _session_callbacks(config: pytest.Config, nbconfig: NbTestConfig) -> list[Any]:
    """The callbacks every notebook of the session gets: memory, output checks, coverage."""
    from .callbacks.memory import MemoryCallback
    from .callbacks.outputs import OutputCheck, register_summary

    output_check = OutputCheck.from_config(nbconfig, config.rootpath)
    register_summary(config, output_check)
    callbacks: list[Any] = [MemoryCallback(), output_check]
    if nbconfig.cov:
        from .callbacks.coverage import KernelCoverage

        callbacks.append(KernelCoverage(config))
    if nbconfig.affected:
        from .callbacks.affected import AffectedCapture

        callbacks.append(AffectedCapture(config.rootpath))
    return callbacks


def _start_registry(config: pytest.Config, nbconfig: NbTestConfig) -> None:
    """Capture this_tests calls; refuse at once to run over a registry file that is corrupt."""
    from .callbacks.registry import RegistryCapture
    from .registry_file import Registry
    from .registry_session import RegistrySession

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
            from .nbdev import left_out

            why = left_out(file_path, parent.config.rootpath)
            if why:
                note_left_out(parent.config, file_path, why)
                return None
        from .items import NotebookFile

        return NotebookFile.from_parent(parent, path=file_path)
    return None


LEFT_OUT_KEY = pytest.StashKey[list]()  # (path, why) of notebooks an nbdev project leaves out


def note_left_out(config: pytest.Config, path: Path, why: str) -> None:
    """Remember a notebook nbdev_test would not test, to say why under -v."""
    config.stash.setdefault(LEFT_OUT_KEY, []).append((path, why))


def _with_nbdev(config: pytest.Config, nbconfig: NbTestConfig) -> NbTestConfig:
    """In an nbdev project (or with `nbdev = true`): its conventions on, its tst_flags, and the
    flags given (`--runslow` gives `slow`)."""
    chosen = "nbdev" in nbconfig.explicit or "nbdev" in nbconfig.project
    if chosen and not nbconfig.nbdev:
        return nbconfig
    from .nbdev import project_settings

    settings = project_settings(config.rootpath) or ({} if chosen else None)
    if settings is None:
        return nbconfig
    values: dict[str, Any] = {"nbdev": True}
    if "tst_flags" not in nbconfig.project and "tst_flags" not in nbconfig.explicit:
        values["tst_flags"] = tuple(settings.get("tst_flags", ()))
    runslow = ("slow",) if config.getoption("runslow", False) else ()
    values["flags"] = tuple(sorted({*nbconfig.flags, *runslow}))
    return nbconfig.with_explicit(**values)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The seed's marker switches, for notebooks and `.py` tests alike."""
    if not nbtest_active(config):
        return
    cuda_checked: bool | None = None
    for item in items:
        reason = _switched_off(config, {marker.name for marker in item.iter_markers()})
        if reason:
            item.add_marker(pytest.mark.skip(reason=reason))
        if item.get_closest_marker("cuda"):
            if cuda_checked is None:
                from .gpu import cuda_available

                cuda_checked = cuda_available()
            if not cuda_checked:
                item.add_marker(pytest.mark.skip(reason="CUDA is not available"))
    affected = config.pluginmanager.get_plugin(AFFECTED_PLUGIN)
    if affected is not None:  # --nbtest-affected: before the preflight, so it counts only
        affected.deselect(items)  # the notebooks that will run
    _preflight(config, items)


def _switched_off(config: pytest.Config, markers: set[str]) -> str | None:
    """Why a test with these markers is skipped by the seed's switches, if it is (a switch
    the project's conftest declared is the project's to apply)."""
    owned = config.stash.get(SWITCHES_KEY, frozenset())
    nbconfig = config.stash.get(CONFIG_KEY, None)
    given = set(nbconfig.flags) if nbconfig is not None else set()  # --nbtest-flags slow
    for marker, dest, runs, _ in SEED_SWITCHES:
        if marker in given:
            continue
        if dest in owned and marker in markers and bool(config.getoption(dest)) != runs:
            return f"need --{dest} option to run" if runs else f"--{dest} given"
    return None


def _preflight(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Stop before any notebook runs when no visible GPU has the free memory they need."""
    if hasattr(config, "workerinput"):
        return  # under xdist the controller checks once (XdistPreflight), not each worker
    running: list[Any] = [item for item in items
                          if _is_notebook_item(item) and not item.get_closest_marker("skip")]
    run_preflight(config, max((int(item.nbconfig.gpu_min_free) for item in running), default=0))


def run_preflight(config: pytest.Config, need: int) -> None:
    """Probe once: exit with PREFLIGHT_EXIT if no GPU has `need` bytes free; say if none."""
    if not need:
        return  # no notebook will run, or none asks for GPU memory
    from .gpu import format_report, preflight

    report = preflight(need)
    if report.ok and not report.gpus:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"nbtest: {report.reason}")
    elif not report.ok:
        pytest.exit(format_report(report), returncode=PREFLIGHT_EXIT)


def _starts_workers(config: pytest.Config) -> bool:
    return getattr(config.option, "dist", "no") != "no" and bool(
        getattr(config.option, "numprocesses", None) or getattr(config.option, "tx", None))


def _may_run_notebooks(config: pytest.Config, nbconfig: NbTestConfig) -> bool:
    """Whether the session may run notebooks, known before collection: not when it only
    collects, forks nothing, or was given nothing but `.py` files."""
    if config.option.collectonly or nbconfig.fork == "no":
        return False
    return not config.args or not all(
        arg.split("::")[0].endswith(".py") for arg in config.args)


class XdistForkTemplate:
    """Under xdist: the controller starts the fork template at once, while the workers are
    still starting, and hands it to each of them (`nbtest.forkserver.ForkServer.adopt`)."""

    def __init__(self, config: pytest.Config, nbconfig: NbTestConfig) -> None:
        self.config, self.nbconfig = config, nbconfig

    @pytest.hookimpl(tryfirst=True)  # before xdist's own session start starts the workers
    def pytest_sessionstart(self) -> None:
        """Start the template (after every plugin's configure: pytest's cache is there)."""
        from .forkserver import warm_up
        from .kernels import kernel_spec

        try:  # no collection yet: "auto" preloads what the last session's notebooks imported
            warm_up(kernel_spec(self.nbconfig.kernel or "python3").argv,
                    _preload(self.config, self.nbconfig), str(self.config.rootpath))
        except NbTestError:
            pass  # no such kernel here: each notebook reports its own

    def pytest_configure_node(self, node: Any) -> None:
        """Pass the running templates to a worker about to start."""
        from .forkserver import ForkServer

        node.workerinput[FORK_TEMPLATES_KEY] = ForkServer.describe_owned()


class XdistPreflight:
    """Under xdist: the controller runs the preflight when the first worker has collected
    notebooks. It sees node ids only, so it reads those notebooks' metadata itself: one that
    its metadata or the seed's switches skip asks for nothing (a skip added by a conftest is
    known to the workers alone)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.done = False

    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        """Check once, as soon as notebooks are known to be in the session."""
        paths = {nodeid.split("::")[0] for nodeid in ids if ".ipynb" in nodeid}
        if self.done or not paths:
            return
        self.done = True
        need = max(self._need(self.config.rootpath / path) for path in sorted(paths))
        run_preflight(self.config, need)

    def _need(self, path: Path) -> int:
        """The GPU memory notebook `path` asks for; 0 if it will be skipped or is unreadable
        (its worker reports that)."""
        from .notebook import load_notebook, notebook_settings

        try:
            settings = notebook_settings(load_notebook(path), path)
        except NbTestError:
            return 0
        nbconfig = self.config.stash[CONFIG_KEY].with_notebook(settings)
        if nbconfig.skip or _switched_off(self.config, set(nbconfig.markers)):
            return 0
        return int(nbconfig.gpu_min_free)


@pytest.hookimpl(tryfirst=True)  # before xdist's worker sends the collected ids
def pytest_collection_finish(session: pytest.Session) -> None:
    """Keep each notebook's cells together and in order; start the fork template while
    pytest gets ready, if notebooks will fork kernels."""
    if not nbtest_active(session.config):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and session.config.get_verbosity() > 0:
        for path, why in session.config.stash.get(LEFT_OUT_KEY, []):
            shown = os.path.relpath(path, session.config.invocation_params.dir)
            reporter.write_line(f"nbtest: nbdev: left out {shown}: {why}")
    items: list[Any] = session.items
    if session.config.stash[CONFIG_KEY].cells:
        from .cell_order import keep_cells_together, reunite_split_notebooks

        reunite_split_notebooks(session.config, items)
        keep_cells_together(items)
    # One entry per notebook: its items' options and the notebook (a cell item's is its file's).
    notebooks = {item.path: (item.nbconfig, getattr(item, "notebook", None)
                             or getattr(item.parent, "notebook", None))
                 for item in items if hasattr(item, "nbconfig")
                 and not item.get_closest_marker("skip")}
    forking = [(nbconfig, nb) for nbconfig, nb in notebooks.values()
               if nb is not None and nbconfig.fork != "no"]
    imports = _remember_imports(session.config, notebooks)
    if not forking:
        return  # nothing imported: a session without notebooks pays nothing here
    if len(forking) == 1 and forking[0][0].fork == "auto":
        return  # one kernel starts sooner spawned; a template would only take CPU from it
    names = {nbconfig.kernel or nb.metadata.get("kernelspec", {}).get("name") or "python3"
             for nbconfig, nb in forking}
    from .forkserver import warm_up
    from .kernels import kernel_spec

    preload = _preload(session.config, session.config.stash[CONFIG_KEY], imports)
    for name in sorted(names)[:3]:
        try:
            warm_up(kernel_spec(name).argv, preload, str(session.config.rootpath))
        except NbTestError:
            pass  # an unknown kernel is reported by its notebook


def _preload(config: pytest.Config, nbconfig: NbTestConfig,
             current: dict[str, list[str]] | None = None) -> list[str]:
    """The modules the fork template preloads (see nbtest.preload)."""
    if not nbconfig.preload:
        return []
    from .preload import CACHE_KEY, choose

    cache = getattr(config, "cache", None)  # none under -p no:cacheprovider
    return choose(nbconfig.preload, cache.get(CACHE_KEY, {}) if cache else {}, current)


def _remember_imports(config: pytest.Config, notebooks: dict[Any, Any]) -> dict[str, list[str]]:
    """With `preload = "auto"`: each notebook's imports, kept for the next session too."""
    cache = getattr(config, "cache", None)
    if config.stash[CONFIG_KEY].preload != "auto" or cache is None:
        return {}
    from .preload import CACHE_KEY, notebook_imports

    imports = {str(path): notebook_imports(c.source for c in nb.cells if c.cell_type == "code")
               for path, (_, nb) in notebooks.items() if nb is not None}
    record = cache.get(CACHE_KEY, {})
    cache.set(CACHE_KEY, {**record, "imports": imports})
    return imports


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Tell a notebook item which item follows, so it can pre-warm that kernel."""
    if "nbtest.items" not in sys.modules:
        return None  # no notebook item exists: nothing to import per test
    from .items import NotebookItem

    if isinstance(item, NotebookItem):
        item.next_item = nextitem


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """Stop a per-cell notebook's kernel after its last cell item; drop unused warm kernels."""
    if "nbtest.items" not in sys.modules:
        return
    from .items import CellItem, NotebookItem

    if isinstance(item, CellItem):
        item.finish_unless_followed(nextitem)
    elif isinstance(item, NotebookItem):
        item.drop_prewarmed()


def _is_notebook_item(item: pytest.Item) -> bool:
    if "nbtest.items" not in sys.modules:
        return False
    from .items import CellItem, NotebookItem

    return isinstance(item, (NotebookItem, CellItem))


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop the fork templates this session started: a process that outlives the session
    (an xdist socket server, pytester in-process) must not keep them, nor pick one next time."""
    forkserver = sys.modules.get("nbtest.forkserver")
    if forkserver is not None:
        _remember_unsafe(config, forkserver.ForkServer)
        forkserver.ForkServer.stop_all(keep=config.stash.get(TEMPLATES_KEY, set()))


def _remember_unsafe(config: pytest.Config, servers: Any) -> None:
    """Modules a template of this session found unsafe to preload: "auto" leaves them out."""
    found = [name for server in servers.owned_servers()
             for name in server.preload_status().get("unsafe", {})]
    cache = getattr(config, "cache", None)
    if found and cache is not None:
        from .preload import CACHE_KEY

        record = cache.get(CACHE_KEY, {})
        cache.set(CACHE_KEY, {**record, "unsafe": sorted({*record.get("unsafe", ()), *found})})


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Kill kernels of per-cell notebooks that never reached their last cell."""
    if "nbtest.items" not in sys.modules:
        return
    from .items import close_open_sessions

    close_open_sessions()
