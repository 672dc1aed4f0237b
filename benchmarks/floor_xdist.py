"""The floor of a fresh kernel per notebook inside pytest, serial or under `-n 2`. Not a product.

Loaded only by bench_preload.py (`-p floor_xdist` with this folder on PYTHONPATH, the modules to
preload in NBTEST_FLOOR_PRELOAD): the controller starts nbtest's fork template the moment
pytest imports this plugin, before pytest has parsed its options, read its configuration or
collected anything, i.e. earlier than any real plugin could know that the session runs
notebooks; xdist's workers inherit its environment and adopt that template. Each notebook is one
item: a kernel forked from the template runs the code cells over a bare blocking client
(floor_kernels.py), then SIGKILL. No validation, output handling, report, callback or
pre-warming: what it takes is what no pytest plugin that gives every notebook a fresh kernel
can beat, with pytest and xdist as they are.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from floor_kernels import KERNEL_FLAGS, code_cells, fast_reconnect, run_notebook

from nbtest.kernel.forkserver_client import ForkServer

TEMPLATE_VAR = "NBTEST_FLOOR_TEMPLATE"  # the controller's template, for its workers to adopt


def _template() -> ForkServer:
    if TEMPLATE_VAR in os.environ:  # an xdist worker (or a pytester session inside one)
        description = json.loads(os.environ[TEMPLATE_VAR])
        return ForkServer(description["flags"], adopted=description)
    preload = [name for name in os.environ.get("NBTEST_FLOOR_PRELOAD", "").split(",") if name]
    server = ForkServer.get(KERNEL_FLAGS, preload, os.getcwd())
    os.environ[TEMPLATE_VAR] = json.dumps(ForkServer.describe_owned()[0])
    return server


TEMPLATE = _template()


def pytest_configure(config: pytest.Config) -> None:
    """As nbtest's clients: a kernel not yet listening is retried after 5 ms, not 100 ms."""
    fast_reconnect()


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """Each notebook is one item."""
    if file_path.suffix == ".ipynb":
        return FloorNotebook.from_parent(parent, path=file_path)
    return None


def pytest_unconfigure(config: pytest.Config) -> None:
    """The controller stops its template (and any kernel left); a worker only forgets it."""
    TEMPLATE.stop()


class FloorNotebook(pytest.File):
    """A notebook file: one item."""

    def collect(self) -> Any:
        """The one item."""
        yield FloorItem.from_parent(self, name=self.path.name)


class FloorItem(pytest.Item):
    """Run the code cells in a kernel forked for this notebook; fail on the first error."""

    def runtest(self) -> None:
        """floor_kernels.run_notebook: fork, bare client, cells, SIGKILL."""
        error = run_notebook(TEMPLATE, self.path, code_cells(self.path))
        assert error is None, error
