"""The pytest_nbtest_* hooks (fed by the callback dispatcher) and errors raised inside nbtest's
own machinery, which must show their real Python traceback.
"""

from __future__ import annotations

import inspect
import json

import pytest
from helpers.pytest_sessions import notebook_maker, output, run_pytest

import nbtest.hookspecs
from nbtest import this_tests

pytest_plugins = ["pytester"]

HOOKS = ("pytest_nbtest_notebook_start", "pytest_nbtest_cell_executed",
         "pytest_nbtest_notebook_done")

LOGGING_CONFTEST = """
    import json
    import pathlib

    LOG = pathlib.Path(__file__).with_name("hooks.jsonl")


    def _log(**entry):
        with LOG.open("a") as fh:
            fh.write(json.dumps(entry) + "\\n")


    def pytest_nbtest_notebook_start(item, run):
        _log(hook="start", item=item.nodeid, path=str(run.path), to_run=run.cells_to_run,
             kernel=run.kernel_pid is not None)


    def pytest_nbtest_cell_executed(item, run, result):
        _log(hook="cell", item=item.nodeid, number=result.number, status=result.status)


    def pytest_nbtest_notebook_done(item, run, result):
        _log(hook="done", item=item.nodeid, status=result.status,
             ran=[c.number for c in result.cells if c.execution_count])
    """


@pytest.fixture
def nb(pytester: pytest.Pytester, make_notebook):  # type: ignore[no-untyped-def]
    """`nb(name, cells=..., **metadata)`: a notebook in the pytester folder."""
    return notebook_maker(pytester, make_notebook)


def _events(pytester: pytest.Pytester) -> list[dict]:
    path = pytester.path / "hooks.jsonl"
    events = [json.loads(line) for line in path.read_text().splitlines()]
    path.unlink()
    return events


def test_hookspecs_are_typed_and_documented() -> None:
    this_tests(*(getattr(nbtest.hookspecs, name) for name in HOOKS))
    for name in HOOKS:
        spec = getattr(nbtest.hookspecs, name)
        assert spec.__doc__ and spec.__doc__.strip(), name
        parameters = inspect.signature(spec).parameters
        assert "item" in parameters and "run" in parameters, name
        assert all(p.annotation is not inspect.Parameter.empty for p in parameters.values())


def test_hooks_called_for_each_notebook_and_cell(pytester: pytest.Pytester, nb,
                                                 no_kernel_left) -> None:
    this_tests(*(getattr(nbtest.hookspecs, name) for name in HOOKS),
               "nbtest.plugin.items.HookCallback")
    pytester.makeconftest(LOGGING_CONFTEST)
    nb("good.ipynb", [("markdown", "# good"), "x = 1", "assert x == 1"])
    nb("sums.ipynb", ["total = 41", ("markdown", "check"), "assert total == 42, 'sum is 42'",
                      "print('never')"])
    run_pytest(pytester, "--nbtest").assert_outcomes(passed=1, failed=1)
    assert _events(pytester) == [
        {"hook": "start", "item": "good.ipynb", "path": "good.ipynb", "to_run": 2,
         "kernel": True},
        {"hook": "cell", "item": "good.ipynb", "number": 2, "status": "passed"},
        {"hook": "cell", "item": "good.ipynb", "number": 3, "status": "passed"},
        {"hook": "done", "item": "good.ipynb", "status": "passed", "ran": [2, 3]},
        {"hook": "start", "item": "sums.ipynb", "path": "sums.ipynb", "to_run": 3,
         "kernel": True},
        {"hook": "cell", "item": "sums.ipynb", "number": 1, "status": "passed"},
        {"hook": "cell", "item": "sums.ipynb", "number": 3, "status": "failed"},
        {"hook": "done", "item": "sums.ipynb", "status": "failed", "ran": [1, 3]},
    ]

    run_pytest(pytester, "--nbtest", "--nbtest-cells").assert_outcomes(
        passed=3, failed=1, skipped=1)
    events = _events(pytester)
    assert [(e["hook"], e.get("number"), e.get("status")) for e in events] == [
        ("start", None, None), ("cell", 2, "passed"), ("cell", 3, "passed"),
        ("done", None, "passed"),
        ("start", None, None), ("cell", 1, "passed"), ("cell", 3, "failed"),
        ("done", None, "failed"),
    ]
    assert all(e["item"].startswith(("good.ipynb::cell[", "sums.ipynb::cell["))
               for e in events)
    no_kernel_left()


def test_cell_hook_gets_the_cells_own_item(pytester: pytest.Pytester, nb) -> None:
    this_tests(nbtest.hookspecs.pytest_nbtest_cell_executed, "nbtest.plugin.items.CellItem.runtest")
    pytester.makeconftest(LOGGING_CONFTEST)
    nb("steps.ipynb", ["x = 1", "y = 2"])
    run_pytest(pytester, "--nbtest", "--nbtest-cells").assert_outcomes(passed=2)
    cells = [e for e in _events(pytester) if e["hook"] == "cell"]
    assert [(e["item"], e["number"]) for e in cells] == [("steps.ipynb::cell[1]", 1),
                                                         ("steps.ipynb::cell[2]", 2)]


def test_error_inside_nbtest_shows_its_real_traceback(pytester: pytest.Pytester, nb,
                                                      no_kernel_left) -> None:
    """A session callback (as built-in features register them) that raises is a bug in
    that callback, not a notebook failure report: pytest shows the Python traceback."""
    this_tests("nbtest.callback.Dispatcher.cell_end", "nbtest.plugin.items.NotebookItem.runtest")
    pytester.makeconftest("""
        import nbtest
        from nbtest.plugin.state import CALLBACKS_KEY


        class Broken(nbtest.Callback):
            def on_cell_end(self, run, result):
                raise RuntimeError("boom from a callback")


        def pytest_configure(config):
            config.stash[CALLBACKS_KEY].append(Broken())
        """)
    nb("good.ipynb")
    result = run_pytest(pytester, "--nbtest", "-ra")
    result.assert_outcomes(failed=1)
    text = output(result)
    result.stdout.fnmatch_lines([
        "*raise RuntimeError(\"boom from a callback\")",
        "E       RuntimeError: boom from a callback",
        "conftest.py:*: RuntimeError",
    ], consecutive=False)
    assert "nbtest/callback.py" in text  # the dispatcher's frame is in the traceback
    result.stdout.fnmatch_lines(["FAILED good.ipynb - RuntimeError: boom from a callback"])
    no_kernel_left()
