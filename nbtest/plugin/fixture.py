"""The pytest fixtures `notebook` and `module_notebook`: a live kernel on a notebook, forked from
the session's fork template, for a `.py` test (see nbtest/handle.py).

    def test_add(notebook):
        nb = notebook("docs_src/tabular.ipynb", run=["setup", 3])
        assert nb.ref("add")(1, 2) == 3

`notebook` gives each test its own kernels, killed after the test (passed, failed, -x or
Ctrl-C); `module_notebook` one kernel per notebook and arguments for the whole module. Each
test is credited with the cells it ran: the registry entry of its this_tests names lists them
(`notebooks`), and its report carries them as the user property "nbtest notebook cells" (with
the kernel's peak RSS), so that `--nbtest-affected`, which never deselects a `.py` test, reruns
it whenever anything, its notebook included, changed. Importing this module costs pytest only.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

CELLS_ATTR = "nbtest_notebook_cells"  # on an item: {notebook: [cell numbers it ran]}
_current: list[Any] = [None, None]  # the test item running now, and the next one
# Per notebook and arguments: a kernel launched (not yet answering) while the test before
# ran, for the next test that opens the same notebook with the `notebook` fixture.
SPARES: dict[str, Any] = {}


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: Any) -> Generator[None, Any, Any]:
    """Know which test runs, to credit it with the notebook cells it runs."""
    _current[:] = [item, nextitem]
    try:
        return (yield)
    finally:
        _current[:] = [None, None]


def pytest_runtest_teardown(item: pytest.Item, nextitem: Any) -> None:
    """Kill the spare kernels unless the next test uses the fixture: after a test, no kernel
    is left that no test will use."""
    if SPARES and not _uses_fixture(nextitem):
        close_spares()


def _uses_fixture(item: Any) -> bool:
    return "notebook" in getattr(item, "fixturenames", ())


def close_spares() -> None:
    """Kill the spare kernels."""
    for handle in list(SPARES.values()):
        handle.close()
    SPARES.clear()


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Close what a fixture left open (an interrupted session), and wait for their end."""
    import sys

    handle = sys.modules.get("nbtest.handle")
    SPARES.clear()
    if handle is not None and handle.OPEN:
        from ..kernel.reaper import settle

        close_all(handle.OPEN)
        settle()


def close_all(handles: Any) -> None:
    """Close every handle still open (the end of a session, Ctrl-C included)."""
    from ..errors import NbTestError

    for handle in list(handles):
        try:
            handle.close()
        except NbTestError:
            pass


def _note(item: Any, path: str, handle: Any, number: int) -> None:
    """Credit the running test with a cell it ran, and with the this_tests calls the cell
    made (the registry's recorder of the running test takes them)."""
    if item is None:
        return
    cells = item.__dict__.setdefault(CELLS_ATTR, {}).setdefault(path, [])
    if number not in cells:
        cells.append(number)
    from ..inkernel.recorder import current_recorder

    file = handle.session.run_info.startup.get("registry", {}).get("file")
    recorder = current_recorder()
    if not file or recorder is None:
        return
    try:
        with open(file, encoding="utf-8") as fh:
            fh.seek(handle.registry_seen)
            text = fh.read()
    except OSError:
        return
    complete = text[:text.rfind("\n") + 1]  # a line being written is taken next time
    handle.registry_seen += len(complete.encode("utf-8"))
    for line in complete.splitlines():
        recorder.record(json.loads(line)["names"])


def _open(request: pytest.FixtureRequest, path: str | Path, run: Any, timeout: float | None,
          options: dict[str, Any], spare: bool = False) -> Any:
    """Start a handle on `path` (relative to the rootdir) as the session configures nbtest
    (with `spare`, from the kernel launched for it meanwhile, and launch the next one)."""
    from ..config import parse_layer
    from ..errors import NbTestError
    from ..handle import NotebookHandle
    from .state import CONFIG_KEY

    config = request.config
    nbconfig = config.stash[CONFIG_KEY]
    if options:
        nbconfig = nbconfig.with_explicit(**parse_layer(options, None, "notebook fixture"))
    full = Path(config.rootpath, path)
    key = repr((str(full), timeout, sorted(options.items())))
    handle = SPARES.pop(key, None)
    if handle is None or handle.closed:
        handle = NotebookHandle(full, nbconfig, timeout, _callbacks(config, nbconfig))
    _warm_up(config, handle.plan.kernel_name, handle.plan.config)
    shown = _shown(config, full)
    handle.noted = lambda handle, number: _note(_current[0], shown, handle, number)
    if spare and _uses_fixture(_current[1]):
        try:  # it boots while this test's kernel answers and the test runs
            SPARES[key] = NotebookHandle(full, nbconfig, timeout,
                                         _callbacks(config, nbconfig)).launch()
        except NbTestError:
            pass  # the next test's own start reports it
    handle.start()
    try:
        if run is not None:
            handle.run(run)
    except BaseException:
        handle.close()
        raise
    return handle


def _shown(config: pytest.Config, path: Path) -> str:
    try:
        return path.resolve().relative_to(config.rootpath.resolve()).as_posix()
    except ValueError:
        return str(path)


def _callbacks(config: pytest.Config, nbconfig: Any) -> list[Any]:
    """The memory figures and budgets, and the this_tests capture when a registry is kept
    (not the output check: cells run out of their notebook's order may print otherwise)."""
    from ..callbacks.memory import MemoryCallback

    found: list[Any] = [MemoryCallback()]
    if config.pluginmanager.get_plugin("nbtest-registry") is not None:
        from ..callbacks.registry import RegistryCapture

        found.append(RegistryCapture(nbconfig.api))
    return found


_WARM = pytest.StashKey[set[str]]()
FIXTURES = frozenset({"notebook", "module_notebook"})


def pytest_collection_finish(session: pytest.Session) -> None:
    """Start the fork template for the default kernel once a collected test uses a notebook
    fixture, so that its imports overlap the first test's set-up rather than delay it."""
    from .state import CONFIG_KEY

    nbconfig = session.config.stash.get(CONFIG_KEY, None)
    if nbconfig is None or session.config.option.collectonly or not any(
            FIXTURES & set(getattr(item, "fixturenames", ())) for item in session.items):
        return
    from ..notebook import DEFAULT_KERNEL  # only now: a session without notebooks imports none

    _warm_up(session.config, nbconfig.kernel or DEFAULT_KERNEL, nbconfig)


def _warm_up(config: pytest.Config, name: str, nbconfig: Any) -> None:
    """Start the fork template (with the session's preload) once per kernel and session."""
    if nbconfig.fork == "no":
        return
    warm = config.stash.setdefault(_WARM, set())
    if name in warm:
        return
    warm.add(name)
    from ..errors import NbTestError
    from ..kernel.forkserver_client import warm_up
    from ..kernel.specs import kernel_argv
    from .fork_template import preload_for

    try:
        warm_up(kernel_argv(name), preload_for(config, nbconfig), str(config.rootpath))
    except NbTestError:
        pass  # an unknown kernel: the start says so


def _finish(handles: list[Any], item: Any) -> None:
    """Close the handles; their memory figures go on the test's report."""
    errors = []
    for handle in handles:
        try:
            result = handle.close()
        except Exception as exc:  # close the others first
            errors.append(exc)
            continue
        peak = (result.extras if result is not None else {}).get("peak_rss_mib")
        if item is not None and peak is not None:
            item.user_properties.append((f"nbtest peak RSS MiB {handle.path.name}", str(peak)))
    if item is not None and getattr(item, CELLS_ATTR, None):
        cells = getattr(item, CELLS_ATTR)
        item.user_properties.append(("nbtest notebook cells", "; ".join(
            f"{path}: {', '.join(map(str, numbers))}" for path, numbers in cells.items())))
    if errors:
        raise errors[0]
    for handle in handles:  # a memory budget the kernel exceeded fails the test
        violation = (handle.result.extras if handle.result else {}).get("memory_violation")
        if violation:
            from ..errors import NotebookFailed

            raise NotebookFailed(f"{handle.path}: memory budget exceeded: {violation}",
                                 path=str(handle.path))


@pytest.fixture
def notebook(request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """`notebook(path, run=None, timeout=None, **options)`: a live kernel on `path` (relative
    to the rootdir) for this test, its `run` cells run (numbers, tags, or "all")."""
    handles: list[Any] = []

    def open_notebook(path: str | Path, run: Any = None, timeout: float | None = None,
                      **options: Any) -> Any:
        handle = _open(request, path, run, timeout, options, spare=True)
        handles.append(handle)
        return handle

    try:
        yield open_notebook
    finally:
        _finish(handles, request.node)


@pytest.fixture(scope="module")
def module_notebook(request: pytest.FixtureRequest) -> Iterator[Callable[..., Any]]:
    """As `notebook`, one kernel per notebook (and arguments) for the whole module: the first
    test to ask starts it and runs its `run` cells; later tests get the same handle."""
    handles: dict[str, Any] = {}

    def open_notebook(path: str | Path, run: Any = None, timeout: float | None = None,
                      **options: Any) -> Any:
        key = repr((str(path), run, timeout, sorted(options.items())))
        if key not in handles or handles[key].closed:
            handles[key] = _open(request, path, run, timeout, options)
        return handles[key]

    try:
        yield open_notebook
    finally:
        _finish(list(handles.values()), None)
