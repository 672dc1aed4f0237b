"""The one xdist hand-off: what a worker sends its controller, and how the controller reads it.

A worker puts a payload under a key of `config.workeroutput` (xdist sends that dict when the
worker's session ends); the controller finds it on the node in `pytest_testnodedown`. Every
payload travels as one JSON string, so what arrives is what a single process would have kept
(lists for tuples). No pytest import: the engine's pytest plugin objects (output sanitizer and
profile summaries) use it too. Hooks that read it stay `optionalhook=True` where they name
xdist's `pytest_testnodedown`, so nbtest works without pytest-xdist.
"""

from __future__ import annotations

import json
from typing import Any


def is_worker(config: Any) -> bool:
    """Whether this pytest config is an xdist worker's (whose controller reports and writes)."""
    return hasattr(config, "workerinput")


def send(config: Any, key: str, payload: Any) -> bool:
    """On an xdist worker, hand `payload` (JSON-able) to the controller under `key`; whether
    it was sent (False: a controller or a single process, which keeps its own)."""
    output = getattr(config, "workeroutput", None)
    if output is None:
        return False
    output[key] = json.dumps(payload)
    return True


def received(node: Any, key: str) -> Any:
    """Controller side, at `pytest_testnodedown`: what the worker `node` sent under `key`;
    None when it sent nothing (it crashed, or had nothing to say)."""
    text = getattr(node, "workeroutput", {}).get(key)
    return None if text is None else json.loads(text)


def give(node: Any, key: str, payload: Any) -> None:
    """Controller side, at `pytest_configure_node`: hand `payload` (JSON-able) to the worker
    about to start on `node`."""
    node.workerinput[key] = json.dumps(payload)


def given(config: Any, key: str) -> Any:
    """Worker side: what the controller gave under `key`; None in a controller or a single
    process, or when it gave nothing."""
    text = getattr(config, "workerinput", {}).get(key)
    return None if text is None else json.loads(text)
