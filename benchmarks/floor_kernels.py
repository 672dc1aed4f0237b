"""The floor of a fresh kernel per notebook, one or `--jobs` at a time. Not a product.

Run by bench_preload.py and bench_nbdev.py beside the tools: one process and no pytest. It
starts nbtest's fork template first (a process that imports ipykernel's machinery and the
`--preload` modules, then only forks) and runs the notebooks `--jobs` at a time, each in an
ipykernel forked from it: a bare blocking client executes every code cell (no validation, no
output handling, no report, no callback), then the kernel gets SIGKILL. The client's start
handshake is nbtest's (jupyter_client's wait_for_ready ends with 0.2 s of waiting for IOPub
silence). What remains is Python's start, the template's imports and, per notebook,
ipykernel's own start and the cells: a pytest plugin that gives every notebook a fresh kernel
pays all of it, and on top pytest's own start and exit, its collection and, with `-n`, the
xdist workers'.

    python benchmarks/floor_kernels.py FOLDER [--preload a,b | --preload auto] [--jobs N]

"auto" preloads what the notebooks import (nbtest.kernel.preload.notebook_imports). Exit
status 1 if a cell failed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

KERNEL_FLAGS = ["-Xfrozen_modules=off"]  # ipykernel's own kernelspec's interpreter flags


def code_cells(path: Path) -> list[str]:
    """The notebook's code cells' sources, as saved."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return ["".join(cell["source"]) for cell in cells if cell["cell_type"] == "code"]


def fast_reconnect() -> None:
    """As nbtest's clients (one zmq context, shared): a kernel not yet listening is retried
    after 5 ms, not zmq's default 100 ms."""
    import zmq

    from nbtest.kernel.launch import RECONNECT_IVL_MS

    zmq.Context.instance().setsockopt(zmq.RECONNECT_IVL, RECONNECT_IVL_MS)


def handshake(client: Any) -> None:
    """kernel_info until the kernel answers on shell and IOPub is seen connected: as nbtest,
    without jupyter_client's wait_for_ready's closing 0.2 s of IOPub silence."""
    from queue import Empty

    for _ in range(60):
        client.kernel_info()
        try:
            reply = client.shell_channel.get_msg(timeout=1)
        except Empty:
            continue
        if reply["msg_type"] == "kernel_info_reply":
            try:
                client.iopub_channel.get_msg(timeout=1)
                return
            except Empty:
                pass
    raise RuntimeError("the kernel did not answer")


def ipc_connection_file(folder: str) -> str:
    """A connection file in `folder` for private IPC sockets (no port to race for); its path.
    floor_plugin.py uses it too: standard library only, nothing here is imported at the top."""
    connection_file = os.path.join(folder, "kernel.json")
    info = {"transport": "ipc", "ip": os.path.join(folder, "kernel"), "shell_port": 1,
            "iopub_port": 2, "stdin_port": 3, "control_port": 4, "hb_port": 5,
            "key": uuid.uuid4().hex, "signature_scheme": "hmac-sha256",
            "kernel_name": "python3"}
    Path(connection_file).write_text(json.dumps(info))
    return connection_file


def run_notebook(server: Any, path: Path, sources: list[str]) -> str | None:
    """Fork a kernel, execute the cells over a blocking client, SIGKILL it; the first error."""
    import zmq
    from jupyter_client import BlockingKernelClient

    folder = tempfile.mkdtemp(prefix="nbtest-floor-")
    connection_file = ipc_connection_file(folder)
    env = {**os.environ, "PYDEVD_DISABLE_FILE_VALIDATION": "1"}
    kernel = server.spawn(["-f", connection_file, "--HistoryManager.hist_file=:memory:"], env,
                          str(path.parent), folder=folder)
    client = BlockingKernelClient(connection_file=connection_file,
                                  context=zmq.Context.instance())
    client.load_connection_file()
    client.start_channels()
    try:
        handshake(client)
        for source in sources:
            reply = client.execute_interactive(source, timeout=120, output_hook=lambda msg: None)
            if reply["content"]["status"] != "ok":
                return f"{path.name}: {reply['content'].get('ename')}"
        return None
    finally:
        os.killpg(kernel.pid, signal.SIGKILL)
        kernel.wait()
        client.stop_channels()
        shutil.rmtree(folder, ignore_errors=True)


def main() -> int:
    import argparse
    from concurrent.futures import ThreadPoolExecutor

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder")
    parser.add_argument("--preload", default="")
    parser.add_argument("--jobs", type=int, default=1)
    args = parser.parse_args()
    from nbtest.kernel.forkserver_client import ForkServer

    root = Path(args.folder).resolve()
    notebooks = sorted(p for p in root.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
    sources = {path: code_cells(path) for path in notebooks}
    preload = [name for name in args.preload.split(",") if name]
    if preload == ["auto"]:
        from nbtest.kernel.preload import notebook_imports

        preload = notebook_imports(s for cells in sources.values() for s in cells)
    server = ForkServer(KERNEL_FLAGS, preload=preload, root=str(root))  # first: it takes longest
    try:
        fast_reconnect()
        with ThreadPoolExecutor(max_workers=args.jobs) as pool:
            errors = [e for e in pool.map(lambda p: run_notebook(server, p, sources[p]),
                                          notebooks) if e]
    finally:
        server.stop()
    print(f"floor: ran {len(notebooks)} notebooks, {args.jobs} at a time, "
          f"{len(errors)} failed {errors}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
