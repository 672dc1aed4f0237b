"""Fixtures and hooks of nbtest's own tests; what they build comes from tests/helpers/.

- `make_notebook(name, cells, metadata=None, kernel="python3")` writes a notebook under the
  test's tmp_path (helpers/notebooks.py); `pytester_notebook(...)` writes into the pytester
  folder;
- `run_cli(*args)` / `start_cli(*args)` run the real `nbtest` console script in a subprocess;
- `no_kernel_left()` fails when a kernel, or any process of a kernel's tree, started by the
  current test is still alive (helpers/processes.py), and kills what it finds;
- `acme_project`, `acme_notebooks(*names)`, `acme_imported`: the registry tests' acmelib project
  (helpers/registry_project.py) in the pytester folder;
- the `spawns` tier: tests that start a kernel or another process are marked `spawns` (by
  module, test, fixture or decorator) and `make test-fast` leaves them out; any other test fails
  if it starts a process (helpers/spawn_guard.py), so the fast tier stays fast.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from helpers.notebooks import CellSpec, write_notebook
from helpers.processes import (
    NBTEST_CMD,
    NO_RANDOMLY,
    SESSION_VAR,
    check_no_kernel_left,
    cli_env,
    default_sigint,
)
from helpers.registry_project import NOTEBOOKS, make_project
from helpers.spawn_guard import ADVICE, SPAWNS, forbid_processes

# The `spawns` tier, which `make test-fast` leaves out: tests that start a kernel or another
# process (a pytest session in a subprocess, `nbtest`, the stand-in nvidia-smi...). A whole
# module is marked when most of its tests do; a test using one of SPAWNING_FIXTURES is marked
# wherever it is; another is listed in SPAWNING_TESTS (or decorated @pytest.mark.spawns). Any
# other test fails if it starts a process (_no_process_unless_marked), so the tier stays fast.
SPAWNING_MODULES = frozenset({
    "test_affected.py", "test_affected_faults.py", "test_affected_inputs.py",
    "test_affected_products.py", "test_affected_split.py", "test_cli_execute.py",
    "test_coverage_kernels.py", "test_examples.py", "test_execute.py", "test_fault_leftovers.py",
    "test_fixture.py", "test_fixture_testbook.py",
    "test_fork_faults.py", "test_fork_fidelity.py", "test_fork_prewarm.py",
    "test_fork_template.py", "test_gpu_peak.py", "test_gpu_real.py", "test_gpu_wiring.py",
    "test_hooks.py", "test_kernel_reaper.py", "test_kernels.py", "test_memory_callback.py",
    "test_nbdev.py", "test_nbdev_parity.py", "test_output_check_e2e.py", "test_peer_execution.py",
    "test_peer_nbval.py", "test_peer_notebook_files.py", "test_plugin_collect.py",
    "test_plugin_combos.py", "test_plugin_compat.py", "test_plugin_inert.py",
    "test_plugin_items.py", "test_plugin_options.py", "test_plugin_xdist.py",
    "test_preflight_cmd.py", "test_preload.py", "test_profile.py", "test_readme.py",
    "test_registry_cmd.py", "test_registry_faults.py", "test_registry_session.py",
    "test_run_tests_sh.py", "test_template_stderr.py", "test_utils_mem.py",
})
# Tests (module::function) that do, in modules where most do not.
SPAWNING_TESTS = frozenset({
    "test_callbacks.py::test_check_cell_fails_a_passing_cell_and_progress_is_silent_off_a_terminal",
    "test_callbacks.py::test_events_of_a_real_run",
    "test_callbacks.py::test_progress_bar_on_a_terminal",
    "test_callbacks.py::test_timeout_event_progress_and_timing_in_one_run",
    "test_cli_output.py::test_html_without_nbconvert_names_the_distribution_before_the_run",
    "test_cli_output.py::test_output_to_a_closed_pipe_exits_quietly",
    "test_cli_output.py::test_write_failing_after_the_run_keeps_the_verdict",
    "test_gpu.py::test_cuda_visible_devices_empty_means_no_gpu",
    "test_gpu.py::test_cuda_visible_devices_index_and_uuid",
    "test_gpu.py::test_failing_smi_falls_to_none_with_a_reason",
    "test_gpu.py::test_free_card_passes",
    "test_gpu.py::test_garbage_output_falls_to_none_with_a_reason",
    "test_gpu.py::test_nvml_failure_falls_to_smi",
    "test_gpu.py::test_stuck_smi_times_out",
    "test_gpu.py::test_two_cards_pin_the_kernel_to_the_freer",
    "test_gpu.py::test_xdist_workers_spread_over_equally_free_cards",
    "test_layout.py::test_each_benchmark_script_imports",
    "test_layout.py::test_each_module_imports_alone",
    "test_layout.py::test_the_benchmarks_import_with_the_standard_library_alone",
    "test_messages.py::test_preflight_refusal_is_printed_cleanly_in_every_verbosity",
    "test_messages.py::test_timeout_of_a_cell_ignoring_sigint_still_reports",
    "test_messages.py::test_timeout_shows_the_line_the_cell_was_stuck_on",
    "test_params.py::test_failing_cell_after_injection_keeps_its_number",
    "test_plugin_hooks.py::test_a_session_without_third_party_plugins_runs_registry_"
    "affected_and_output_checks",
    "test_registry_file.py::test_update_registry_file_from_many_processes",
    "test_report_names.py::test_headings_and_junit_names_name_the_notebook_once",
})
# The `notebook` / `module_notebook` fixtures (nbtest.plugin's, for notebooks under test) start
# kernels too.
SPAWNING_FIXTURES = frozenset({"run_cli", "start_cli", "kernel_holder", "notebook",
                               "module_notebook"})


def pytest_configure(config: pytest.Config) -> None:
    """Tag this pytest process's children; declare the `spawns` marker (nbtest's own markers
    come from nbtest.plugin)."""
    config.addinivalue_line("markers", f"{SPAWNS}: starts a kernel or another process "
                            "(`make test-fast` leaves it out; elsewhere no test may start one)")
    # Fresh per process, so each xdist worker only ever judges its own kernels.
    os.environ[SESSION_VAR] = uuid.uuid4().hex
    # pytest-randomly (installed for the compatibility tests) would shuffle every pytest
    # session these tests start: they opt in to it by deleting the variable.
    os.environ["PYTEST_ADDOPTS"] = NO_RANDOMLY


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests of the `spawns` tier (see SPAWNING_MODULES)."""
    here = Path(__file__).parent
    for item in items:
        if item.path.parent != here:
            continue  # docs_src's notebooks, under testpaths too
        function = getattr(item, "originalname", item.name)
        if (item.path.name in SPAWNING_MODULES
                or f"{item.path.name}::{function}" in SPAWNING_TESTS
                or SPAWNING_FIXTURES.intersection(getattr(item, "fixturenames", ()))):
            item.add_marker(SPAWNS)


@pytest.fixture(autouse=True)
def _no_process_unless_marked(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test not marked `spawns` fails if it (or a fixture of it) starts a process, even one
    whose error the code under test caught: so the fast tier stays fast."""
    if request.node.get_closest_marker(SPAWNS) is not None:
        yield
        return
    with forbid_processes() as attempts:
        yield
    if attempts:
        pytest.fail(f"{request.node.nodeid} started {', '.join(attempts)}, "
                    f"but is not marked `{SPAWNS}`: {ADVICE}", pytrace=False)


@pytest.fixture
def make_notebook(tmp_path: Path) -> Callable[..., Path]:
    """`make_notebook(name, cells, metadata=None, kernel="python3") -> Path` under tmp_path.

    cells: "code" strings, ("markdown", text) / ("code", text, ["tag", ...]) tuples, or dicts
    with `source`, `cell_type`, `tags` and `metadata`.
    """

    def make(name: str | Path, cells: Sequence[CellSpec], metadata: dict | None = None,
             kernel: str | None = "python3") -> Path:
        path = Path(name)
        return write_notebook(path if path.is_absolute() else tmp_path / path, cells,
                              metadata, kernel)

    return make


@pytest.fixture
def pytester_notebook(pytester: pytest.Pytester, make_notebook: Callable[..., Path]
                      ) -> Callable[..., Path]:
    """make_notebook writing into the pytester folder."""
    return lambda name, cells, **kw: make_notebook(pytester.path / name, cells, **kw)


@pytest.fixture
def kernel_holder() -> Iterator[subprocess.Popen]:
    """A live process whose command line names ipykernel_launcher, as a kernel's does: the
    GPU memory holder the stand-in nvidia-smi reports, for the "(Jupyter kernel)" advice."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)",
                             "ipykernel_launcher", "-f", "kernel-holder.json"])
    yield proc
    proc.kill()
    proc.wait()


@pytest.fixture
def pytester(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """pytest's pytester, its sessions without pytest-randomly (installed for the plugin
    compatibility tests, it would shuffle every inner session): a test that wants it
    deletes PYTEST_ADDOPTS. pytester itself clears that variable, so it is set here."""
    monkeypatch.setenv("PYTEST_ADDOPTS", NO_RANDOMLY)
    return pytester


@pytest.fixture
def no_kernel_left() -> Callable[..., None]:
    """`no_kernel_left()` asserts that no process of any kernel's tree we started is alive."""
    return check_no_kernel_left


@pytest.fixture(scope="session", autouse=True)
def _no_kernel_left_in_session() -> Iterator[None]:
    """After the whole session, no kernel started by any test of this process may be alive."""
    yield
    check_no_kernel_left()


@pytest.fixture
def run_cli(tmp_path: Path) -> Callable[..., subprocess.CompletedProcess]:
    """`run_cli(*args, cwd=tmp_path, timeout=120, env=None)`: run `nbtest`, capture text output.

    `timeout` is a hang guard only: the test fails if nbtest takes longer.
    """

    def run(*args: str | Path, cwd: str | Path | None = None, timeout: float = 120,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([*NBTEST_CMD, *map(str, args)], cwd=cwd or tmp_path,
                              env=cli_env(env), capture_output=True, text=True,
                              timeout=timeout, preexec_fn=default_sigint)

    return run


@pytest.fixture
def start_cli(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen]]:
    """`start_cli(*args, cwd=tmp_path)`: start `nbtest` in the background (killed at teardown)."""
    started: list[subprocess.Popen] = []

    def start(*args: str | Path, cwd: str | Path | None = None,
              env: dict[str, str] | None = None) -> subprocess.Popen:
        proc = subprocess.Popen([*NBTEST_CMD, *map(str, args)], cwd=cwd or tmp_path,
                                env=cli_env(env), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, preexec_fn=default_sigint)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


# -- the registry tests' project (tests/test_registry_*.py) ----------------------------------


@pytest.fixture
def acme_project(pytester: pytest.Pytester, make_notebook: Callable[..., Path],
                 monkeypatch: pytest.MonkeyPatch) -> Path:
    """The acmelib project in the pytester folder, without notebooks (add them with
    `acme_notebooks(...)`); kernels (started in docs/) import acmelib through PYTHONPATH."""
    monkeypatch.setenv("PYTHONPATH", str(pytester.path))
    monkeypatch.delenv("NBTEST", raising=False)
    return make_project(pytester.path, make_notebook, notebooks={})


@pytest.fixture
def acme_notebooks(pytester: pytest.Pytester, make_notebook: Callable[..., Path]
                   ) -> Callable[..., None]:
    """`acme_notebooks(*names)`: write these notebooks of NOTEBOOKS under docs/."""

    def write(*names: str) -> None:
        make_project(pytester.path, make_notebook, {name: NOTEBOOKS[name] for name in names})

    return write


@pytest.fixture
def acme_imported(pytester: pytest.Pytester, acme_project: Path) -> None:
    """acmelib importable in this process (pytester restores sys.path and sys.modules)."""
    pytester.syspathinsert()
