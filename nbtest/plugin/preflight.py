"""The GPU preflight of a pytest session: once, before any notebook runs (under xdist, in the
controller as soon as a worker has collected notebooks)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ..errors import NbTestError
from ..handoff import is_worker
from .state import CONFIG_KEY, is_notebook_item
from .stop import stop_session
from .switches import switched_off

# pytest's own exit codes are 0-5; this one says the GPU preflight refused to start.
PREFLIGHT_EXIT = 6

def preflight_items(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Stop before any notebook runs when no visible GPU has the free memory they need."""
    if is_worker(config):
        return  # under xdist the controller checks once (XdistPreflight), not each worker
    running: list[Any] = [item for item in items
                          if is_notebook_item(item) and not item.get_closest_marker("skip")]
    run_preflight(config, max((int(item.plan.config.gpu_min_free) for item in running),
                              default=0))

def run_preflight(config: pytest.Config, need: int) -> None:
    """Probe once: exit with PREFLIGHT_EXIT if no GPU has `need` bytes free; say if none."""
    if not need:
        return  # no notebook will run, or none asks for GPU memory
    from ..gpu.probe import format_report, preflight

    report = preflight(need)
    if report.ok and not report.gpus:
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"nbtest: {report.reason}")
    elif not report.ok:
        stop_session(config, format_report(report), PREFLIGHT_EXIT)


class XdistPreflight:
    """Under xdist: the controller runs the preflight when the first worker has collected
    notebooks. It sees node ids only, so it reads those notebooks' metadata itself: one that
    its metadata or the seed's switches skip asks for nothing (a skip added by a conftest is
    known to the workers alone)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.done = False

    @pytest.hookimpl(optionalhook=True)  # xdist's hook: absent without pytest-xdist
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
        from ..notebook import metadata_settings, read_metadata

        try:  # the metadata is enough: the controller neither validates nor imports nbformat
            settings = metadata_settings(read_metadata(path), path)
        except NbTestError:
            return 0
        nbconfig = self.config.stash[CONFIG_KEY].with_notebook(settings)
        if nbconfig.skip or switched_off(self.config, set(nbconfig.markers)):
            return 0
        return int(nbconfig.gpu_min_free)
