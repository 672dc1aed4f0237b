"""The floor of set C: the fastest conceivable pytest run of one notebook. Not a product.

Loaded only by bench.py (`-p floor_plugin` with this folder on PYTHONPATH), it spawns a kernel
the moment pytest imports it: before pytest has parsed its options, read its configuration
or collected anything, i.e. earlier than any real plugin could know that the session will run
a notebook. It then runs the notebook's code cells over a blocking client, with no validation,
no output handling and no report, and stops the kernel with SIGKILL. Its overhead above the
notebook's own work is what no harness that starts its kernel inside the pytest run can beat.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest
from floor_kernels import ipc_connection_file  # this folder is on PYTHONPATH, as for -p

KERNEL_ARGV = ["-Xfrozen_modules=off", "-m", "ipykernel_launcher"]  # ipykernel's own spec


def _spawn() -> tuple[subprocess.Popen[bytes], str]:
    """Start a kernel in the current folder over private IPC sockets; no port to race for."""
    connection_file = ipc_connection_file(tempfile.mkdtemp(prefix="nbtest-floor-"))
    process = subprocess.Popen(
        [sys.executable, *KERNEL_ARGV, "-f", connection_file,
         "--HistoryManager.hist_file=:memory:"],
        stdin=subprocess.DEVNULL, start_new_session=True,
        env={**os.environ, "PYDEVD_DISABLE_FILE_VALIDATION": "1"})
    return process, connection_file


KERNEL, CONNECTION_FILE = _spawn()


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    """Each notebook is one item (set C has exactly one, which the spawned kernel serves)."""
    if file_path.suffix == ".ipynb":
        return FloorNotebook.from_parent(parent, path=file_path)
    return None


def pytest_unconfigure(config: pytest.Config) -> None:
    """Never leave the kernel behind, even when no notebook was run, nor its folder."""
    if KERNEL.poll() is None:
        os.killpg(KERNEL.pid, signal.SIGKILL)
        KERNEL.wait()
    shutil.rmtree(os.path.dirname(CONNECTION_FILE), ignore_errors=True)


class FloorNotebook(pytest.File):
    """A notebook file: one item."""

    def collect(self) -> Any:
        """The one item."""
        yield FloorItem.from_parent(self, name=self.path.name)


class FloorItem(pytest.Item):
    """Run the code cells in the kernel spawned at import; fail on the first error."""

    def runtest(self) -> None:
        """Execute each code cell, then SIGKILL the kernel's process group."""
        from jupyter_client import BlockingKernelClient

        cells = json.loads(self.path.read_text())["cells"]
        client = BlockingKernelClient(connection_file=CONNECTION_FILE)
        client.load_connection_file()
        client.start_channels()
        try:
            client.wait_for_ready(timeout=60)
            for cell in cells:
                if cell["cell_type"] == "code":
                    source = "".join(cell["source"])
                    reply = client.execute_interactive(source, timeout=120,
                                                       output_hook=lambda msg: None)
                    assert reply["content"]["status"] == "ok", reply["content"]
        finally:
            os.killpg(KERNEL.pid, signal.SIGKILL)
            KERNEL.wait()
            client.stop_channels()
