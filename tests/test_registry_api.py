"""this_tests() itself (registry/api.py): how each kind of callable is named, the errors it
raises at once, what counts as the API, and the in-kernel recorder. No kernel, no session.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import nbtest.registry.api
from nbtest import this_tests
from nbtest.errors import ThisTestsError
from nbtest.inkernel.recorder import KernelRecorder, set_recorder, source_digest
from nbtest.registry.api import in_api, qualified_name, resolve_all

pytest_plugins = ["pytester"]


@contextlib.contextmanager
def recording(api: tuple[str, ...] = ("acmelib",)) -> Iterator[nbtest.registry.api.TestRecorder]:
    """A fresh recorder for the acmelib API in place of the outer session's one (this test's
    own this_tests calls go to the outer one, outside the block)."""
    recorder = nbtest.registry.api.TestRecorder(api)
    outer = set_recorder(recorder)
    try:
        yield recorder
    finally:
        set_recorder(outer)


# -- this_tests in this process ------------------------------------------------------------


def test_this_tests_resolves_every_kind_of_callable(acme_imported: None) -> None:
    this_tests(nbtest.registry.api.this_tests, qualified_name, resolve_all,
               nbtest.registry.api.TestRecorder.record)
    import acmelib
    from acmelib.core import Learner, add, scaled

    class Local:
        @classmethod
        def make(cls) -> None: ...

    names = [
        (add, "acmelib.core.add"),
        (acmelib.add, "acmelib.core.add"),  # a re-export: where it is defined
        (Learner, "acmelib.core.Learner"),
        (Learner.fit, "acmelib.core.Learner.fit"),  # unbound
        (Learner().fit, "acmelib.core.Learner.fit"),  # bound: the live object
        (Learner.size, "acmelib.core.Learner.size"),  # a property: its getter
        (Learner.size.fget, "acmelib.core.Learner.size"),
        (scaled, "acmelib.core.scaled"),  # @functools.wraps: the wrapped function
        ("acmelib.core.Learner.size", "acmelib.core.Learner.size"),
        ("acmelib.add", "acmelib.core.add"),
        ("acmelib.core.Learner.fit", "acmelib.core.Learner.fit"),
        (os.path.join, "posixpath.join"),
    ]
    for func, name in names:
        assert qualified_name(func) == name, func
    assert "acmelib.extra" not in sys.modules  # a module not imported yet is imported
    assert qualified_name("acmelib.extra.helper") == "acmelib.extra.helper"
    assert "acmelib.extra" in sys.modules
    for bad in ("acmelib.core add", "acmelib.core.nope", "acmelib.nope.add", "acmelib",
                "acmelib.core", "nosuchpackage.f", "", 42, None, 3.5, Learner().size,
                functools.partial(add, 1), lambda: None, Local.make):
        with pytest.raises(ThisTestsError) as info:
            qualified_name(bad)
        assert str(info.value) == f"'{bad}' is not a function"

    with recording() as recorder:
        nbtest.registry.api.this_tests(add, Learner().fit, "na", "acmelib.core.add", acmelib.add)
        nbtest.registry.api.this_tests("na")
        nbtest.registry.api.this_tests(Learner.size, scaled, add)
    assert recorder.names == ["acmelib.core.add", "acmelib.core.Learner.fit",
                              "acmelib.core.Learner.size", "acmelib.core.scaled"]
    assert recorder.called


def test_this_tests_errors_at_once(acme_imported: None) -> None:
    """Each bad argument raises at the call, with the exact message, and nothing of that
    call is recorded; "na" alone counts as a call. No recorder: validation only."""
    this_tests(nbtest.registry.api.this_tests, resolve_all, in_api)
    from acmelib.core import add, mul

    cases = [
        ("acmelib.core add", "'acmelib.core add' is not a function"),
        ("acmelib.core.nope", "'acmelib.core.nope' is not a function"),
        (42, "'42' is not a function"),
        ("os.path.join", "'os.path.join' is not in the acmelib API"),
        (os.path.join, "'posixpath.join' is not in the acmelib API"),
        ("acmelibx.add", "'acmelibx.add' is not in the acmelib API"),
        (len, "'builtins.len' is not in the acmelib API"),
    ]
    with recording() as recorder:
        for bad, message in cases:
            with pytest.raises(ThisTestsError) as info:
                nbtest.registry.api.this_tests(add, bad, mul)
            assert str(info.value) == message
        assert recorder.names == [] and not recorder.called
        nbtest.registry.api.this_tests("na")
        assert recorder.names == [] and recorder.called

        set_recorder(None)  # no recorder: validation only, any package
        nbtest.registry.api.this_tests(os.path.join, "na", add)
        with pytest.raises(ThisTestsError, match="^'a b' is not a function$"):
            nbtest.registry.api.this_tests("a b")

    with pytest.raises(ThisTestsError) as info:
        resolve_all(["os.path.join"], ("acmelib", "acmelibx"))
    assert str(info.value) == "'os.path.join' is not in the acmelib, acmelibx API"
    assert resolve_all(["acmelibx.add", "na", add], ("acmelib", "acmelibx")) == [
        "acmelibx.add", "acmelib.core.add"]


def test_in_api() -> None:
    this_tests(in_api)
    assert in_api("acmelib.core.add", ["acmelib"])
    assert in_api("acmelib", ["acmelib"])
    assert not in_api("acmelibx.add", ["acmelib"])
    assert not in_api("acme.add", ["acmelib"])
    assert in_api("acmelibx.add", ["acmelib", "acmelibx"])
    assert in_api("anything.at.all", [])


# -- the in-kernel recorder ----------------------------------------------------------------


def test_kernel_recorder_cells_and_file(tmp_path: Path) -> None:
    """Calls land in the file at once, each with the cell IPython was about to run (matched by
    digest, in order, so equal sources get their own numbers); other code leaves it be."""
    this_tests(KernelRecorder, KernelRecorder.pre_run_cell, KernelRecorder.record,
               source_digest)
    path = tmp_path / "calls.jsonl"

    class Info:
        def __init__(self, raw_cell: str) -> None:
            self.raw_cell = raw_cell

    cells = [[2, source_digest("x = 1")], [3, source_digest("this_tests(f)")],
             [5, source_digest("this_tests(f)")]]
    recorder = KernelRecorder(str(path), ["acmelib"], cells)
    assert recorder.api == ("acmelib",)
    recorder.record(["early"])
    for source, names in [("x = 1", ["a"]), ("this_tests(f)", ["b"]),
                          ("this_tests(f)", ["d", "e"])]:
        recorder.pre_run_cell(Info(source))
        recorder.record(names)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(line["names"], line["cell"]) for line in lines] == [
        (["early"], None), (["a"], 2), (["b"], 3), (["d", "e"], 5)]
    assert source_digest("x = 1") != source_digest("x = 2")
    assert len(source_digest("\udcff")) == 16
