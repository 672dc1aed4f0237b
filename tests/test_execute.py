"""run_notebook(): real kernels, cell results tracked as they run, nothing of nbtest left behind."""

from __future__ import annotations

import ast
import asyncio
import json
import os
import time
from pathlib import Path

import pytest
from helpers.extras import NEEDS_NUMPY
from helpers.notebooks import cell_text

from nbtest import NbTestConfig, run_notebook, this_tests
from nbtest.errors import NoSuchKernelError
from nbtest.failure_text import failure_text
from nbtest.kernel.notebook_kernel import describe_exit
from nbtest.kernel.startup import startup_code
from nbtest.results import DIED, FAILED, NOT_RUN, PASSED, SKIPPED, TIMEOUT

HANG_GUARD = 60  # seconds: only proves "never hangs", never a speed claim


def test_passing_notebook_numbers_counts_and_leaves_no_trace(make_notebook, tmp_path: Path,
                                                             no_kernel_left) -> None:
    this_tests(run_notebook, startup_code)
    folder = tmp_path / "work dir"
    path = make_notebook(folder / "ok.ipynb", [
        ("markdown", "# Title"),                                            # cell 1
        "import os, sys\nprint(os.environ['NBTEST'], os.getcwd())",         # cell 2, In [1]
        ("raw", "raw text"),                                                # cell 3
        "print(In[1:], dict(Out))\n"                                        # cell 4, In [2]
        "print(sorted(k for k in globals() if 'nbtest' in k.lower()))\n"
        "x = 41",
        "   ",                                                              # cell 5: empty
        "x + 1",                                                            # cell 6, In [3]
        "print(os.environ['MPLBACKEND'], os.environ['NBTEST_NOTEBOOK'])\n"  # cell 7, In [4]
        "print('torch' in sys.modules, 'numpy' in sys.modules)",
    ], metadata={"custom": {"keep": True}})
    before = path.read_bytes()
    result = run_notebook(path)
    assert result.passed, failure_text(result)
    assert result.status == "passed" and result.kernel_name == "python3"
    assert [c.number for c in result.cells] == [2, 4, 5, 6, 7]
    assert [c.status for c in result.cells] == [PASSED, PASSED, SKIPPED, PASSED, PASSED]
    assert [c.execution_count for c in result.cells] == [1, 2, None, 3, 4]
    assert [c.index for c in result.cells] == [1, 3, 4, 5, 6]
    assert all(c.duration >= 0 for c in result.cells) and result.duration > 0
    assert not any(c.injected for c in result.cells)
    # The kernel ran in the notebook's folder, with NBTEST=1 and a non-GUI backend.
    assert result.cells[0].output_tail == f"1 {folder}"
    backend, notebook_env = result.cells[4].output_tail.splitlines()[0].split(" ", 1)
    assert backend.startswith("module://") or backend.lower() == "agg"
    assert notebook_env == str(path.resolve())
    # The startup code left no trace: no history, no globals, nothing heavy imported.
    history, names = result.cells[1].output_tail.splitlines()
    assert history == str([result.cells[0].source, result.cells[1].source]) + " {}"
    assert names == "[]"
    assert result.cells[4].output_tail.splitlines()[1] == "False False"
    assert result.cells[3].output_tail == "42"
    # The executed notebook: the input's cells and metadata, nothing nbtest injected.
    nb = result.notebook
    assert len(nb.cells) == 7
    assert [c.cell_type for c in nb.cells] == ["markdown", "code", "raw", "code", "code",
                                               "code", "code"]
    assert [c.get("execution_count") for c in nb.cells if c.cell_type == "code"] == \
        [1, 2, None, 3, 4]
    from helpers.notebooks import read_notebook

    original = read_notebook(path)
    assert dict(nb.metadata) == dict(original.metadata)
    for ran, orig in zip(nb.cells, original.cells):
        assert (ran.source, ran.get("id"), dict(ran.metadata)) == \
            (orig.source, orig.get("id"), dict(orig.metadata))
    assert cell_text(nb.cells[5]) == "42\n"
    assert path.read_bytes() == before  # run_notebook never writes the input
    no_kernel_left()


def test_failing_cell_is_reported_by_its_number(make_notebook, no_kernel_left) -> None:
    this_tests(run_notebook, "nbtest.execute.NotebookSession.run_cell", failure_text)
    path = make_notebook("fail.ipynb", [
        ("markdown", "intro"),
        "a = 1",
        ("markdown", "more"),
        "for i in range(30):\n    print('line', i)\nassert a == 2, 'a is 1'\nprint('after')",
        "b = 2",
        ("markdown", "end"),
    ])
    result = run_notebook(path)
    assert result.status == "failed" and not result.passed
    failed = result.failed_cell
    assert failed is not None
    assert (failed.number, failed.status, failed.execution_count) == (4, FAILED, 2)
    assert (failed.error_name, failed.error_value) == ("AssertionError", "a is 1")
    assert failed.traceback and failed.duration >= 0
    # The tail of the output: the last 20 lines, tracked as the cell ran.
    tail = failed.output_tail.splitlines()
    assert len(tail) == 20 and tail[-1] == "line 29"
    assert [(c.number, c.status) for c in result.cells] == \
        [(2, PASSED), (4, FAILED), (5, NOT_RUN)]
    assert result.cells[2].execution_count is None
    text = failure_text(result)
    assert text.splitlines()[0] == "cell 4: AssertionError: a is 1"
    assert "-->   3 | assert a == 2, 'a is 1'" in text
    assert "\x1b[" not in text
    # The error is visible in the executed notebook's cell; the cell after it never ran.
    cells = result.notebook.cells
    assert any(o.get("output_type") == "error" for o in cells[3].outputs)
    assert cells[4].get("execution_count") is None and not cells[4].outputs
    no_kernel_left()


def test_tags_skip_and_expected_errors(make_notebook, no_kernel_left) -> None:
    this_tests(run_notebook, "nbtest.execute.NotebookSession.run_cell")
    path = make_notebook("tags.ipynb", [
        ("code", "raise RuntimeError('never run')", ["skip-execution"]),
        ("code", "raise RuntimeError('never run either')", ["nbval-skip"]),
        ("code", "1 / 0", ["raises-exception"]),
        ("code", "raise KeyError('k')", ["nbval-raises-exception", "other"]),
        "ok = True",
    ])
    result = run_notebook(path)
    assert result.passed, failure_text(result)
    assert [c.status for c in result.cells] == [SKIPPED, SKIPPED, PASSED, PASSED, PASSED]
    assert [c.execution_count for c in result.cells] == [None, None, 1, 2, 3]
    assert [c.error_name for c in result.cells[2:4]] == ["ZeroDivisionError", "KeyError"]
    assert not result.notebook.cells[0].outputs
    no_kernel_left()


def test_raises_exception_cell_that_raises_nothing_fails(make_notebook) -> None:
    this_tests(run_notebook, "nbtest.execute.NotebookSession.run_cell", failure_text)
    path = make_notebook("noraise.ipynb", [
        "x = 1",
        ("code", "y = x + 1", ["raises-exception"]),
        "z = 3",
    ])
    result = run_notebook(path)
    assert result.status == "failed"
    failed = result.failed_cell
    assert failed is not None and (failed.number, failed.status) == (2, FAILED)
    assert failed.error_name == "NoError"
    assert failure_text(result).splitlines()[0] == \
        "cell 2: expected an error: the cell is tagged raises-exception but raised nothing"
    assert result.cells[2].status == NOT_RUN


def test_metadata_skip_starts_no_kernel(make_notebook, no_kernel_left) -> None:
    this_tests(run_notebook, "nbtest.execute.NotebookSession.skipped")
    path = make_notebook("skip.ipynb", ["raise SystemExit(1)"],
                         metadata={"nbtest": {"skip": "needs the network"}})
    result = run_notebook(path)
    assert (result.status, result.reason) == ("skipped", "needs the network")
    assert result.cells == ()
    assert run_notebook(make_notebook("skip2.ipynb", ["1/0"], metadata={
        "nbtest": {"skip": True}})).reason == "skipped by notebook metadata"
    no_kernel_left()


def test_nbmake_execution_metadata_allow_errors_and_timeout(make_notebook, no_kernel_left
                                                            ) -> None:
    """nbmake's metadata.execution keys: errors are allowed, but a timeout still fails."""
    this_tests(run_notebook, "nbtest.execute.NotebookSession.run_cell",
               "nbtest.notebook.notebook_settings")
    path = make_notebook("nbmake.ipynb", [
        "1 / 0",
        "still = 'running'",
        "import time\ntime.sleep(60)",
        "never = 1",
    ], metadata={"execution": {"timeout": 1, "allow_errors": True}})
    t0 = time.monotonic()
    result = run_notebook(path)
    elapsed = time.monotonic() - t0
    print(f"nbmake timeout=1 notebook returned after {elapsed:.2f} s")
    assert elapsed < HANG_GUARD
    assert [c.status for c in result.cells] == [PASSED, PASSED, TIMEOUT, NOT_RUN]
    assert result.cells[0].error_name == "ZeroDivisionError"
    assert result.status == "failed"
    assert failure_text(result).splitlines()[0].startswith("cell 3: timed out after ")
    assert result.cells[2].detail.endswith("(limit 1 s)")
    no_kernel_left()


def test_allow_errors_from_config(make_notebook) -> None:
    this_tests(run_notebook, NbTestConfig.of)
    path = make_notebook("errors.ipynb", ["raise ValueError('first')", "print('second')"])
    result = run_notebook(path, NbTestConfig.of(allow_errors=True))
    assert result.passed
    assert result.cells[0].error_name == "ValueError"
    assert result.cells[1].output_tail == "second"


def test_notebook_timeout_bounds_each_cell_by_the_remaining_budget(make_notebook,
                                                                   no_kernel_left) -> None:
    this_tests(run_notebook, "nbtest.execute.NotebookSession.run_cell")
    path = make_notebook("budget.ipynb", [
        "import time\ntime.sleep(0.3)",
        "time.sleep(120)",
        "after = 1",
    ])
    t0 = time.monotonic()
    result = run_notebook(path, NbTestConfig.of(notebook_timeout=6, timeout=100))
    elapsed = time.monotonic() - t0
    print(f"notebook_timeout=6 notebook returned after {elapsed:.2f} s")
    assert elapsed < HANG_GUARD
    assert [c.status for c in result.cells] == [PASSED, TIMEOUT, NOT_RUN]
    detail = result.cells[1].detail
    assert detail.startswith("timed out after ") and detail.endswith(", notebook limit 6 s)")
    no_kernel_left()


def test_kernel_death_ends_the_notebook(make_notebook, no_kernel_left) -> None:
    this_tests(run_notebook, "nbtest.execute.NotebookSession.run_cell", describe_exit)
    path = make_notebook("dies.ipynb", ["x = 1", "import os\nos._exit(3)", "y = 2"])
    t0 = time.monotonic()
    result = run_notebook(path)
    elapsed = time.monotonic() - t0
    print(f"kernel death (os._exit): run_notebook returned after {elapsed:.2f} s, "
          f"the dying cell's duration {result.cells[1].duration:.2f} s")
    assert elapsed < HANG_GUARD
    assert [c.status for c in result.cells] == [PASSED, DIED, NOT_RUN]
    assert result.cells[1].detail == "kernel died (exit code 3)"
    assert failure_text(result).splitlines()[0] == "cell 2: kernel died (exit code 3)"
    no_kernel_left()


def test_describe_exit() -> None:
    this_tests(describe_exit)
    assert describe_exit(None) == "kernel died"
    assert describe_exit(3) == "kernel died (exit code 3)"
    assert describe_exit(-9) == ("kernel died (killed by SIGKILL, which looks like the "
                                 "memory limit or the OOM killer)")
    assert describe_exit(-9, 812.4) == ("kernel died (killed by SIGKILL, which looks like the "
                                        "memory limit or the OOM killer; peak RSS seen 812 MiB)")
    assert describe_exit(-11) == "kernel died (killed by SIGSEGV)"
    assert describe_exit(-200) == "kernel died (killed by signal 200)"


SEED_CELLS = [
    "import random, sys\nimport numpy\nfirst = (random.random(), float(numpy.random.rand()))\n"
    "print(first, 'torch' in sys.modules)",
    "random.seed(1234)\nnumpy.random.seed(1234)\n"
    "assert first == (random.random(), float(numpy.random.rand())), first",
]


@NEEDS_NUMPY
def test_seed_makes_random_and_numpy_reproducible(make_notebook) -> None:
    this_tests(run_notebook, startup_code)
    path = make_notebook("seed.ipynb", SEED_CELLS)
    config = NbTestConfig.of(seed=1234)
    first, second = run_notebook(path, config), run_notebook(path, config)
    assert first.passed and second.passed, failure_text(first) + failure_text(second)
    assert first.cells[0].output_tail == second.cells[0].output_tail
    assert first.cells[0].output_tail.endswith(" False")  # the seed does not import torch


def test_run_notebook_inside_a_running_event_loop(make_notebook, no_kernel_left) -> None:
    this_tests(run_notebook)
    path = make_notebook("loop.ipynb", ["print(6 * 7)"])

    async def main() -> object:
        assert asyncio.get_running_loop()
        return run_notebook(path)

    result = asyncio.run(main())
    assert result.passed and result.cells[0].output_tail == "42"
    no_kernel_left()


def test_unknown_kernelspec_lists_installed_kernels(make_notebook, no_kernel_left) -> None:
    this_tests(run_notebook, "nbtest.kernel.specs.kernel_spec")
    path = make_notebook("k.ipynb", ["x = 1"], kernel="no-such-kernel")
    with pytest.raises(NoSuchKernelError) as info:
        run_notebook(path)
    message = info.value.message
    assert str(path) in message and "'no-such-kernel'" in message and "python3" in message
    assert info.value.exit_code == 2
    with pytest.raises(NoSuchKernelError, match="'meta-kernel'"):
        run_notebook(make_notebook("k2.ipynb", ["x"], metadata={
            "nbtest": {"kernel": "meta-kernel"}}))
    no_kernel_left()


HOSTILE = "x'; import os; os._exit(7) #\"\"\"'''\n)"


def test_startup_code_takes_settings_as_data() -> None:
    this_tests(startup_code)
    code = startup_code({"seed": 3, "note": HOSTILE})
    tree = ast.parse(code)
    kinds = [type(node).__name__ for node in tree.body]
    assert kinds == ["Expr", "Expr", "Delete"]
    # The function is defined by exec() of a constant: its source, none of the settings.
    define = tree.body[0].value
    assert isinstance(define, ast.Call) and ast.unparse(define.func) == "exec"
    assert isinstance(define.args[0], ast.Constant) and HOSTILE not in define.args[0].value
    (function,) = ast.parse(define.args[0].value).body
    assert isinstance(function, ast.FunctionDef) and function.name == "_nbtest_startup"
    call = tree.body[1].value
    assert isinstance(call, ast.Call) and isinstance(call.args[0], ast.Constant)
    assert json.loads(call.args[0].value) == {"seed": 3, "note": HOSTILE}


def test_path_with_quotes_cannot_inject_code(tmp_path: Path, make_notebook) -> None:
    this_tests(run_notebook, startup_code)
    folder = tmp_path / "dir 'q' \"d\" $(touch pwned) ;"
    path = make_notebook(folder / "x'); import os; os._exit(7) #.ipynb", [
        "import os\nprint(os.getcwd())\nprint(os.environ['NBTEST_NOTEBOOK'])",
    ])
    result = run_notebook(path)
    assert result.passed, failure_text(result)
    assert result.cells[0].output_tail.splitlines() == [str(folder), str(path.resolve())]
    assert not (folder / "pwned").exists() and not Path("pwned").exists()
    assert os.path.exists(path)


def test_a_session_is_a_context_that_ends_its_kernel(make_notebook, no_kernel_left) -> None:
    """`async with NotebookSession(plan)`: the kernel launches on entry and, however the block
    is left (here by an error mid-run), ends there, folder and all; ending it again does
    nothing. One plan serves a second run: the first left no output in it."""
    from jupyter_core.utils import run_sync

    from nbtest.execute import KernelState, NotebookSession, plan_notebook
    from nbtest.kernel.reaper import settle

    this_tests(NotebookSession.__aenter__, NotebookSession.__aexit__, NotebookSession.close,
               "nbtest.kernel.notebook_kernel.NotebookKernel.release")
    plan = plan_notebook(make_notebook("a.ipynb", ["print('hi')", "x = 2"]))
    session = NotebookSession(plan)
    seen = []

    async def run_then_fail() -> None:
        async with session as entered:
            seen.append(entered.state)
            await session.start()
            seen.append(session.state)
            await session.run_cell(0)
            raise RuntimeError("the caller failed")

    with pytest.raises(RuntimeError, match="the caller failed"):
        run_sync(run_then_fail)()
    assert seen == [KernelState.LAUNCHED, KernelState.READY]
    assert session.state is KernelState.RELEASED
    settle()  # the kernel's stop ends in the background (kernel/reaper.py)
    assert not os.path.exists(session.run_info.kernel_folder)
    session.close()  # a second end: nothing to do
    assert session.state is KernelState.RELEASED
    assert session.plan.notebook.cells[0].outputs  # the run's own copy has the output
    assert not plan.notebook.cells[0].outputs  # the plan's notebook is as it was
    again = run_sync(NotebookSession(plan).run_all)()
    assert again.passed and again.cells[0].execution_count == 1
    settle()
    no_kernel_left()
