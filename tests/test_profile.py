"""--nbtest-profile: where each notebook's time went (kernel start, imports by module, cells,
output traffic), through real kernels, a real pytest session (serial and under xdist) and the
CLI. The slow import is a local module that sleeps in its body: its cost is at least that."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers.extras import NEEDS_XDIST
from helpers.pytest_sessions import output, run_pytest

from nbtest import this_tests
from nbtest.callbacks.profile import ProfileCallback, preload_advice, summary_lines
from nbtest.execute import run_notebook

pytest_plugins = ["pytester"]

SLEEP = 0.3  # seconds the slow module sleeps while it is imported
SLOW_MODULE = f"import time\ntime.sleep({SLEEP})\nVALUE = 1\n"
# A package that imports the slow module: its own time is small, its import's total is not.
OUTER = "import slowmod\nOUTER = slowmod.VALUE + 1\n"


def write_modules(folder: Path) -> None:
    """The slow module, and a module that imports it, beside the notebooks."""
    (folder / "slowmod.py").write_text(SLOW_MODULE)
    (folder / "outer.py").write_text(OUTER)


def seconds_after(text: str, name: str) -> float:
    """The seconds printed right after `name` (`slowmod 0.61 s`)."""
    found = re.search(rf"\b{re.escape(name)} (\d+\.\d+) s", text)
    assert found, f"no `{name} N.NN s` in:\n{text}"
    return float(found.group(1))


def test_the_kernel_times_imports_by_module_and_counts_outputs(
        make_notebook: Callable[..., Path], tmp_path: Path, no_kernel_left) -> None:
    """An import's own time goes to its package, its total to what the notebook imported;
    output messages are counted; the kernel's start and the cells are there."""
    this_tests(ProfileCallback.on_notebook_end, "nbtest.inkernel.profiling.install",
               "nbtest.inkernel.imports.ImportTimer.find_spec",
               "nbtest.inkernel.profiling.ImportTotals.loaded")
    write_modules(tmp_path)
    nb = make_notebook("a.ipynb", ["import outer", "for i in range(3):\n    print(i)",
                                   "from IPython.display import HTML, display\n"
                                   "for i in range(5):\n    display(HTML('<b>x</b>'))"])
    result = run_notebook(nb, callbacks=[ProfileCallback()])
    assert result.passed, result
    profile = result.extras["profile"]
    assert profile["modules"]["slowmod"] >= SLEEP  # its own time: the sleep
    assert profile["modules"]["outer"] < profile["modules"]["slowmod"]
    assert profile["entries"]["outer"] >= SLEEP  # what the notebook imported, in all
    assert "slowmod" not in profile["entries"]  # outer imported it, not the notebook
    assert profile["imports_s"] >= SLEEP
    assert profile["messages"] >= 6 and profile["bytes"] > 0  # 5 displays, the prints
    assert profile["kernel_start"] in ("spawn", "fork") and profile["kernel_s"] > 0
    assert profile["cells"] == 3 and profile["slowest"][0] == 1
    assert profile["cells_s"] >= profile["imports_s"]
    no_kernel_left()


@pytest.mark.parametrize("workers", [pytest.param([], id="serial"),
                                     pytest.param(["-n", "2"], id="xdist",
                                                  marks=NEEDS_XDIST)])
def test_the_session_profile_names_the_slow_import_and_advises_preloading_it(
        pytester: pytest.Pytester, pytester_notebook: Callable[..., Path], workers: list[str],
        no_kernel_left) -> None:
    """Two notebooks import a slow module: the "nbtest profile" section has a row for each,
    names the module with its cost over both, and advises preloading it."""
    this_tests("nbtest.callbacks.profile.ProfileSummary.pytest_terminal_summary",
               "nbtest.callbacks.profile.ProfileSummary.pytest_testnodedown",
               "nbtest.callbacks.profile.summary_lines", "nbtest.plugin.session.session_callbacks")
    write_modules(pytester.path)
    for name in ("one", "two"):
        pytester_notebook(f"{name}.ipynb", ["import slowmod", "print(slowmod.VALUE)"])
    result = run_pytest(pytester, "--nbtest", "--nbtest-profile", *workers)
    text = output(result)
    assert result.ret == 0, text
    section = text.partition("nbtest profile")[2]
    assert section, text
    assert "one.ipynb" in section and "two.ipynb" in section
    imports = next(line for line in section.splitlines() if line.startswith("imports by"))
    assert seconds_after(imports, "slowmod") >= 2 * SLEEP
    assert re.search(r"slowmod \d+\.\d+ s \(2 nb\)", imports), imports
    advice = next(line for line in section.splitlines() if line.startswith("consider"))
    assert "slowmod (" in advice and 'preload = ["slowmod"]' in section
    no_kernel_left()


def test_nbtest_execute_profile(run_cli: Callable[..., object], make_notebook: Callable[..., Path],
                                tmp_path: Path, no_kernel_left) -> None:
    """`nbtest execute --profile` prints the notebook's breakdown; without it, none."""
    this_tests("nbtest.cli.cmd_execute", "nbtest.callbacks.profile.profile_lines")
    write_modules(tmp_path)
    nb = make_notebook("a.ipynb", ["import slowmod", "print('hello')"])
    proc: object = run_cli("execute", nb, "--profile", "-o", tmp_path / "out.ipynb")
    assert proc.returncode == 0, proc.stderr  # type: ignore[attr-defined]
    err = proc.stderr  # type: ignore[attr-defined]
    assert re.search(r"kernel start: \d+\.\d+ s \(spawn\)", err), err
    assert re.search(r"cells: \d+\.\d+ s over 2, slowest cell 1 ", err), err
    assert seconds_after(err.partition("imports:")[2], "slowmod") >= SLEEP
    assert re.search(r"outputs: [1-9]\d* messages", err), err
    plain = run_cli("execute", nb, "-o", tmp_path / "out.ipynb")
    assert "kernel start:" not in plain.stderr  # type: ignore[attr-defined]
    no_kernel_left()


def test_the_advice_needs_two_notebooks_and_a_real_cost() -> None:
    """A module one notebook imports, a cheap one, or the harness's own is not advised."""
    this_tests(preload_advice, summary_lines)

    def profile(entries: dict[str, float]) -> dict[str, object]:
        return {"wall_s": 1.0, "kernel_s": 0.2, "kernel_start": "fork", "cells_s": 0.5,
                "cells": 1, "slowest": [1, 0.5], "imports_s": sum(entries.values()),
                "modules": {}, "counts": {}, "entries": entries, "messages": 0, "bytes": 0}

    rows = {"a.ipynb": profile({"lib.basics": 1.0, "alone": 3.0, "tiny": 0.01,
                                "IPython.display": 0.5}),
            "b.ipynb": profile({"lib.basics": 1.5, "tiny": 0.01, "IPython.display": 0.5})}
    assert [name for name, _, _ in preload_advice(rows.values())] == ["lib.basics"]
    lines = summary_lines(rows)
    assert lines[-2] == "consider preloading: lib.basics (2.50 s over 2 notebooks)"
    assert lines[-1].startswith('  [tool.nbtest] preload = ["lib.basics"]')
    assert sum(line.startswith(("a.ipynb", "b.ipynb")) for line in lines) == 2


def test_profile_and_preload_auto_share_the_kernels_one_import_timer(
        pytester: pytest.Pytester, pytester_notebook: Callable[..., Path],
        no_kernel_left) -> None:
    """With `--nbtest-preload auto` and `--nbtest-profile` both on, one timer in the kernel
    feeds both: the profile names the slow module and auto's records (pytest's cache) have
    it, with its own time."""
    this_tests("nbtest.inkernel.imports.timer", "nbtest.inkernel.imports.Learner.loaded",
               "nbtest.inkernel.profiling.ImportTotals.loaded")
    write_modules(pytester.path)
    for name in ("one", "two"):  # an import the first session's static scan cannot see
        pytester_notebook(f"{name}.ipynb", ["import importlib\n"
                                            "slow = importlib.import_module('slow' + 'mod')",
                                            "print(slow.VALUE)"])
    result = run_pytest(pytester, "--nbtest", "--nbtest-profile", "--nbtest-preload", "auto")
    text = output(result)
    assert result.ret == 0, text
    imports = next(line for line in text.partition("nbtest profile")[2].splitlines()
                   if line.startswith("imports by"))
    assert seconds_after(imports, "slowmod") >= 2 * SLEEP
    records = list((pytester.path / ".pytest_cache" / "d" / "nbtest-imports").iterdir())
    learned = [json.loads(path.read_text()) for path in records]
    assert len(learned) == 2 and all("slowmod" in json.dumps(one) for one in learned), learned
    no_kernel_left()
