"""The fast tier's guard (tests/helpers/spawn_guard.py): every way Python starts a process is
refused and noted, so a test outside the `spawns` tier cannot start one unseen."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import subprocess
import sys
from collections.abc import Callable

import pytest
from helpers.spawn_guard import ProcessForbidden, forbid_processes

from nbtest import this_tests


def _asyncio_subprocess() -> None:
    asyncio.run(asyncio.create_subprocess_exec(sys.executable, "-c", "pass"))


def _forked_process() -> None:
    multiprocessing.get_context("fork").Process(target=print).start()


def _spawned_process() -> None:
    multiprocessing.get_context("spawn").Process(target=print).start()


STARTS: dict[str, Callable[[], object]] = {
    "subprocess.run": lambda: subprocess.run([sys.executable, "-c", "pass"]),
    "subprocess.Popen": lambda: subprocess.Popen(["true"]),
    "asyncio": _asyncio_subprocess,
    "os.system": lambda: os.system("true"),
    "os.fork": lambda: os.fork(),
    "multiprocessing fork": _forked_process,
    "multiprocessing spawn": _spawned_process,
}


@pytest.mark.parametrize("how", list(STARTS))
def test_every_way_to_start_a_process_is_refused_and_noted(how: str) -> None:
    this_tests("na")  # the suite's own guard, not nbtest's code
    with forbid_processes() as attempts:
        with pytest.raises(ProcessForbidden, match="must be marked `spawns`"):
            STARTS[how]()
    assert attempts, f"{how} started a process unnoted"
