"""The notebook handle (nbtest.open_notebook, the `notebook` / `module_notebook` fixtures):
refs and what crosses as a value, kernel exceptions with the notebook's cell and line, patching
in the kernel, per-call timeouts, cell outputs; real pytest sessions for xdist, the registry,
affected mode and the clean-up after -x, Ctrl-C and failing tests."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers.extras import NEEDS_XDIST
from helpers.pytest_sessions import output, run_pytest

from nbtest import open_notebook, this_tests
from nbtest.errors import CallTimeout, KernelCodeError, UsageError

pytest_plugins = ["pytester"]

CELLS = [
    ("markdown", "# a notebook of functions"),
    ("code", "import os\nX = 5\nNAMES = ('a', {'b': [1, 2.5, None]})", ["setup"]),
    "def add(a, b):\n    return a + b\n\n\n"
    "def bad(x):\n    y = x * 2\n    raise ValueError(f'bad {y}')",
    "print('hello world!')\nclass Point:\n    def __init__(self):\n        self.v = [1, 2]\n"
    "    def twice(self):\n        return self.v * 2\np = Point()\n6 * 7",
    "1 / 0",
]


@pytest.fixture
def functions(make_notebook: Callable[..., Path]) -> Path:
    return make_notebook("functions.ipynb", CELLS)


def test_refs_bring_plain_values_and_proxy_the_rest(functions: Path, no_kernel_left) -> None:
    """JSON-plain values come back as Python objects (tuples stay tuples); others are Refs
    whose attributes, calls, items, len, iteration and == run in the kernel."""
    this_tests("nbtest.handle.NotebookHandle.ref", "nbtest.refs.Ref.__call__",
               "nbtest.refs.encode_argument", "nbtest.refs.decode_value")
    with open_notebook(functions, run=["setup", 3, 4]) as nb:
        assert nb.ref("X") == 5 and type(nb.ref("X")) is int
        assert nb.ref("NAMES") == ("a", {"b": [1, 2.5, None]})
        assert nb.ref("add")(2, 3) == 5
        assert nb.ref("add")(("x",), (1, 2.0)) == ("x", 1, 2.0)
        point = nb.ref("p")
        assert "nbtest.Ref p: __main__.Point in the kernel of" in repr(point)
        assert point.v == [1, 2] and point.twice() == [1, 2, 1, 2]
        assert nb.ref("add")(point.v, [3]) == [1, 2, 3]
        objects = nb.ref("[p, p]")  # a list holding objects is not plain: a Ref
        assert len(objects) == 2 and objects[0].v == [1, 2]
        assert [item.v for item in objects] == [[1, 2], [1, 2]]
        assert (nb.ref("p") == nb.ref("p")) is True and 1 in nb.ref("{1: 2}")
        assert nb["os.path.join"]("a", "b") == "a/b"
    no_kernel_left()


def test_kernel_exceptions_name_cell_and_line(functions: Path, no_kernel_left) -> None:
    """A ref call, a cell and injected code that raise: KernelCodeError naming the
    notebook's cell and line where it was raised; the kernel goes on."""
    this_tests("nbtest.handle.NotebookHandle.run", "nbtest.handle_wire.KernelWire._code_error")
    with open_notebook(functions, run=[2, 3]) as nb:
        with pytest.raises(KernelCodeError) as raised:
            nb.ref("bad")(4)
        error = raised.value
        assert (error.cell, error.line, error.ename, error.evalue) == (3, 7, "ValueError", "bad 8")
        assert "functions.ipynb, cell 3, line 7: ValueError: bad 8" in str(error)
        with pytest.raises(KernelCodeError) as raised:
            nb.run(5)
        assert (raised.value.cell, raised.value.line) == (5, 1)
        assert "ZeroDivisionError" in str(raised.value)
        with pytest.raises(KernelCodeError) as raised:
            nb.inject("bad(1)")
        assert (raised.value.cell, raised.value.line, raised.value.evalue) == (3, 7, "bad 2")
        assert nb.ref("add")(1, 1) == 2  # still answering
    no_kernel_left()


def test_bad_cell_selection_says_what_exists(functions: Path, no_kernel_left) -> None:
    """A number that is no code cell, or an unknown tag: the file and what there is."""
    this_tests("nbtest.handle.NotebookHandle.indices")
    with open_notebook(functions) as nb:
        with pytest.raises(UsageError, match="no code cell 1; its code cells are 2, 3, 4, 5"):
            nb.run(1)
        with pytest.raises(UsageError, match="functions.ipynb: no code cell is tagged 'nope'"):
            nb.run("nope")
    no_kernel_left()


def test_outputs_of_cells_and_injected_code(functions: Path, no_kernel_left) -> None:
    """`text` and `data` of every cell run, and of injected code; inject(function) defines it
    in the kernel and returns what the call returned."""
    this_tests("nbtest.handle.NotebookHandle.output", "nbtest.handle.NotebookHandle.inject",
               "nbtest.refs.CellOutput.text", "nbtest.refs.CellOutput.data")
    with open_notebook(functions) as nb:
        ran = nb.run([2, 3, 4])
        assert [out.number for out in ran] == [2, 3, 4]
        assert nb.output(4).text == "hello world!\n42"
        assert nb.output(4).data == {"text/plain": "42"} == nb.output(4).result
        shown = nb.inject("print('x is', X)\nfrom IPython.display import HTML\nHTML('<b>5</b>')")
        assert shown.text.startswith("x is 5") and shown.data["text/html"] == "<b>5</b>"

        def triple(a, scale=1):
            return a * 3 * scale

        assert nb.inject(triple, args=[2], kwargs={"scale": 2}) == 12
        assert nb.ref("triple")(1) == 3
    no_kernel_left()


def test_patch_inside_the_kernel(functions: Path, no_kernel_left) -> None:
    """patch as unittest.mock.patch does, in the kernel, for the block; the mock's calls are
    readable from the test; a failed mock assertion is a KernelCodeError."""
    this_tests("nbtest.handle.NotebookHandle.patch", "nbtest.handle.NotebookHandle.patch_dict",
               "nbtest.refs.Ref.calls")
    with open_notebook(functions, run=2) as nb:
        with nb.patch("os.getcwd", return_value="/nowhere") as mocked:
            assert nb.ref("os.getcwd()") == "/nowhere"
            nb.ref("os.getcwd")()
            assert mocked.call_count == 2 and mocked.called is True
            assert mocked.calls == [[[], {}], [[], {}]]
            mocked.assert_called_with()
            with pytest.raises(KernelCodeError, match="AssertionError"):
                mocked.assert_called_with("elsewhere")
        assert nb.ref("os.getcwd()") != "/nowhere"
        with nb.patch_dict("os.environ", {"NBTEST_PATCHED": "1"}):
            assert nb.ref("os.environ['NBTEST_PATCHED']") == "1"
        assert nb.ref("'NBTEST_PATCHED' in os.environ") is False
    no_kernel_left()


def test_timeouts_per_call(make_notebook: Callable[..., Path], no_kernel_left) -> None:
    """A call past its limit is interrupted (the kernel goes on); one that ignores the
    interrupt has its kernel killed; a cell past its limit times out as notebook cells do."""
    this_tests("nbtest.handle_wire.KernelWire._send", "nbtest.handle.NotebookHandle.run")
    path = make_notebook("slow.ipynb", [
        "import signal, time\ndef nap(s):\n    time.sleep(s)\n    return s",
        "time.sleep(60)"])
    with open_notebook(path, run=1) as nb:
        with pytest.raises(CallTimeout, match="ran past its limit of 0.5 s: interrupted"):
            nb.inject("nap(60)", timeout=0.5)
        nb.timeout = 0.5
        with pytest.raises(CallTimeout):
            nb.ref("nap")(60)
        assert nb.ref("nap")(0) == 0
        with pytest.raises(CallTimeout, match="timed out"):
            nb.run(2)
        with pytest.raises(KernelCodeError, match="the kernel is gone"):
            nb.ref("nap")(0)
    with open_notebook(path, run=1) as nb:
        with pytest.raises(CallTimeout, match="did not answer the interrupt, so its kernel"):
            nb.inject("signal.signal(signal.SIGINT, signal.SIG_IGN)\nnap(60)", timeout=0.5)
    no_kernel_left()


def test_methods_are_called_in_one_request(functions: Path, no_kernel_left) -> None:
    """A function of the object's class is looked up when called (one request); a property,
    an instance attribute that shadows the method, and a class that computes its attributes
    go through the kernel as any attribute does."""
    this_tests("nbtest.refs.MethodRef", "nbtest.refs.Ref.__getattr__")
    with open_notebook(functions, run=[2, 3, 4]) as nb:
        nb.inject("class Odd(Point):\n"
                  "    @property\n    def size(self):\n        return len(self.v)\n"
                  "    def __getattribute__(self, name):\n"
                  "        if name == 'twice':\n            return lambda: 'odd'\n"
                  "        return super().__getattribute__(name)\n"
                  "q = Point()\nq.twice = lambda: 'own'")
        twice = nb.ref("p").twice
        assert "p.twice: a method of __main__.Point in the kernel of" in repr(twice)
        assert twice() == [1, 2, 1, 2] and "bound method Point.twice" in str(twice)
        assert nb.ref("q").twice() == "own"
        assert nb.ref("Odd()").twice() == "odd" and nb.ref("Odd()").size == 2
        nb.inject("Point.twice = lambda self: 'patched'")  # looked up at the call
        assert twice() == "patched"
        with pytest.raises(KernelCodeError, match="ValueError: bad 4"):
            nb.inject("class Bad:\n    def go(self):\n        bad(2)\nb = Bad()")
            nb.ref("b").go()
    no_kernel_left()


def test_the_kernel_side_lets_go_of_objects_no_ref_holds(functions: Path,
                                                          no_kernel_left) -> None:
    """An object a Ref was made for is kept in the kernel only while that Ref lives: in a
    loop of refs on new objects, the kernel side holds the one the test still keeps."""
    this_tests("nbtest.refs.Ref", "nbtest.handle_wire.KernelWire._request")
    with open_notebook(functions, run=[2, 3, 4]) as nb:
        kept = nb.ref("p")
        for _ in range(50):
            assert nb.ref("Point()").twice() == [1, 2, 1, 2]
        assert nb.ref("len(__import__('_nbtest_handle').objects)") == 1
        assert kept.v == [1, 2]
    no_kernel_left()


def test_many_requests_then_a_cell_lose_no_output(functions: Path, no_kernel_left) -> None:
    """Requests do not wait for their IOPub messages (what a call printed, its status); after
    a thousand of them (three messages each, zmq queues 1000), a cell's output is whole."""
    this_tests("nbtest.handle_wire.KernelWire._send", "nbtest.kernel.launch.Kernel.reply")
    with open_notebook(functions, run=[2, 3], timeout=20) as nb:
        nb.inject("def noisy(i):\n    print('call', i)\n    return i")
        noisy = nb.ref("noisy")
        assert [noisy(i) for i in range(1000)] == list(range(1000))
        assert nb.run(4)[0].text == "hello world!\n42"
        assert nb.inject("print('after')").text == "after"
    no_kernel_left()


def test_a_request_right_after_an_error_is_answered(functions: Path, no_kernel_left) -> None:
    """A failing cell, injected code or interrupted call does not abort the requests that
    follow it (ipykernel aborts queued execute requests after an error unless told not to):
    each next request gets its answer, and each error names its cell and line."""
    this_tests("nbtest.handle_wire.KernelWire._send", "nbtest.handle.NotebookHandle._execute")
    with open_notebook(functions, run=[2, 3], timeout=20) as nb:
        for _ in range(25):
            with pytest.raises(KernelCodeError, match="cell 5, line 1: ZeroDivisionError"):
                nb.run(5)
            assert nb.ref("X") == 5
            with pytest.raises(KernelCodeError, match="ValueError: bad 2"):
                nb.inject("bad(1)")
            assert nb.ref("add")(1, 2) == 3
        for _ in range(3):
            with pytest.raises(CallTimeout, match="interrupted; the kernel goes on"):
                nb.inject("import time\ntime.sleep(60)", timeout=0.3)
            assert nb.ref("X") == 5
    no_kernel_left()


def test_an_aborted_request_says_so() -> None:
    """A reply with status "aborted" (ipykernel's, recorded) is an error that says the kernel
    declined the request, not a bare "None: None"."""
    this_tests("nbtest.handle_wire.KernelWire._not_aborted")
    from nbtest.handle_wire import KernelWire

    wire = KernelWire()
    wire.path = "functions.ipynb"
    aborted = {"msg_type": "execute_reply", "content": {"status": "aborted"}}
    with pytest.raises(KernelCodeError, match="functions.ipynb: X: the kernel aborted this"):
        wire._not_aborted(aborted, "X")
    ok = {"content": {"status": "ok", "user_expressions": {}}}
    assert wire._not_aborted(ok, "X") == ok


def test_a_kernel_that_dies_in_a_call_says_so(functions: Path, no_kernel_left) -> None:
    """A call that ends the kernel: a KernelCodeError saying it died, at once, not at the
    time limit; the handle is closed."""
    this_tests("nbtest.handle_wire.KernelWire._send", "nbtest.kernel.launch.Kernel.reply")
    with open_notebook(functions, run=2, timeout=600) as nb:
        died = r"os._exit\(\.\.\.\): the kernel died \(exit code 3\) before it answered"
        with pytest.raises(KernelCodeError, match=died):
            nb.ref("os._exit")(3)
        with pytest.raises(KernelCodeError, match="the kernel is gone"):
            nb.ref("X")
    no_kernel_left()


FIXTURE_TESTS = """
import os
import pytest
from nbtest import this_tests

def test_function_scope(notebook):
    this_tests("na")
    nb = notebook("funcs.ipynb", run=["setup", 2])
    assert nb.ref("add")(1, 2) == 3
    assert nb.ref("os.environ.get('PYTEST_XDIST_WORKER', 'none')") == \\
        os.environ.get("PYTEST_XDIST_WORKER", "none")

def test_module_scope_one(module_notebook):
    this_tests("na")
    nb = module_notebook("funcs.ipynb", run="all")
    nb.inject("SHARED = 1")

def test_module_scope_two(module_notebook):
    this_tests("na")
    nb = module_notebook("funcs.ipynb", run="all")
    assert nb.ref("SHARED") == 1

def test_fails(notebook):
    this_tests("na")
    nb = notebook("funcs.ipynb", run="setup")
    nb.ref("bad")(1)
"""


def _fixture_project(pytester: pytest.Pytester, make_notebook: Callable[..., Path]) -> None:
    make_notebook(pytester.path / "funcs.ipynb", [
        ("code", "import os", ["setup"]),
        "def add(a, b):\n    return a + b\n\ndef bad(x):\n    raise ValueError(x)"])


def test_fixture_in_a_session_with_a_failing_test(pytester: pytest.Pytester,
                                                 make_notebook: Callable[..., Path],
                                                 no_kernel_left) -> None:
    """Function and module scope in a real session; a failing test reports the kernel's
    error; -x stops it; no kernel is left either way."""
    this_tests("nbtest.plugin.fixture.notebook", "nbtest.plugin.fixture.module_notebook")
    _fixture_project(pytester, make_notebook)
    pytester.makepyfile(test_nb=FIXTURE_TESTS)
    result = run_pytest(pytester)
    result.assert_outcomes(passed=3, failed=1)
    assert "NameError: name 'bad' is not defined" in output(result)
    no_kernel_left()
    first = ("def test_first_fails(notebook):\n"
             "    notebook('funcs.ipynb', run='all').ref('bad')(1)\n")
    pytester.makepyfile(test_a=FIXTURE_TESTS.replace("import os\n", "import os\n" + first, 1))
    result = run_pytest(pytester, "-x", "test_a.py", "-p", "no:randomly")
    result.assert_outcomes(failed=1)
    no_kernel_left()


def test_the_template_starts_when_collection_ends(pytester: pytest.Pytester,
                                                  make_notebook: Callable[..., Path],
                                                  no_kernel_left) -> None:
    """A session whose tests use a notebook fixture has the fork template starting before
    its first test runs; a session whose tests use none starts no template."""
    this_tests("nbtest.plugin.fixture.pytest_collection_finish")
    _fixture_project(pytester, make_notebook)
    check = ("from nbtest.kernel.forkserver_client import ForkServer\n"
             "def test_plain():\n    assert {}ForkServer.owned_servers()\n")
    pytester.makepyfile(test_a=check.format("") + FIXTURE_TESTS,
                        test_b=check.format("not "))
    run_pytest(pytester, "-p", "no:randomly", "test_a.py", "-k", "plain or scope"
               ).assert_outcomes(passed=4)
    run_pytest(pytester, "-p", "no:randomly", "test_b.py").assert_outcomes(passed=1)
    no_kernel_left()


@NEEDS_XDIST
def test_fixture_under_xdist(pytester: pytest.Pytester, make_notebook: Callable[..., Path],
                             no_kernel_left) -> None:
    """Under -n 2 each worker starts its own kernels (their environment names the worker)."""
    this_tests("nbtest.plugin.fixture.notebook", "nbtest.plugin.fixture._warm_up")
    _fixture_project(pytester, make_notebook)
    pytester.makepyfile(test_one=FIXTURE_TESTS, test_two=FIXTURE_TESTS)
    result = run_pytest(pytester, "-n", "2", "--dist", "loadfile")  # a module on one worker
    result.assert_outcomes(passed=6, failed=2)
    no_kernel_left()


def test_ctrl_c_leaves_no_kernel(pytester: pytest.Pytester, make_notebook: Callable[..., Path],
                                 no_kernel_left) -> None:
    """SIGINT in the middle of a test that holds kernels (function and module scope)."""
    this_tests("nbtest.plugin.fixture.pytest_sessionfinish", "nbtest.plugin.fixture.close_all")
    _fixture_project(pytester, make_notebook)
    pytester.makepyfile(test_c=textwrap.dedent("""
        import os, signal

        def test_interrupted(notebook, module_notebook):
            notebook("funcs.ipynb", run="all")
            module_notebook("funcs.ipynb", run="all")
            os.kill(os.getpid(), signal.SIGINT)

        def test_after():
            pass
    """))
    result = run_pytest(pytester)
    assert result.ret == pytest.ExitCode.INTERRUPTED, output(result)
    no_kernel_left()


def test_registry_credits_the_py_test(pytester: pytest.Pytester,
                                      make_notebook: Callable[..., Path],
                                      no_kernel_left) -> None:
    """The registry records the .py test, with the notebook cells it ran, for the names it
    and those cells gave this_tests; its report carries the cells and the memory peak."""
    this_tests("nbtest.plugin.registry.RegistrySession.pytest_runtest_call",
               "nbtest.plugin.fixture._note")
    pytester.makepyprojecttoml('[tool.nbtest]\napi = ["posixpath"]\nregistry = "reg.json"\n')
    make_notebook(pytester.path / "nb.ipynb", [
        "from nbtest import this_tests\nimport os", "this_tests('os.path.join')",
        "def f():\n    return 1"])
    pytester.makepyfile(test_reg=textwrap.dedent("""
        from nbtest import this_tests

        def test_uses(notebook):
            nb = notebook("nb.ipynb", run=[1, 2, 3])
            this_tests("os.path.basename")
            assert nb.ref("f")() == 1
    """))
    result = run_pytest(pytester, "--junitxml=out.xml")
    result.assert_outcomes(passed=1)
    registry = json.loads((pytester.path / "reg.json").read_text())
    entry = {"file": "test_reg.py", "test": "test_uses", "line": 3,
             "notebooks": {"nb.ipynb": [1, 2, 3]}}
    assert registry["posixpath.basename"] == [entry] == registry["posixpath.join"]
    junit = (pytester.path / "out.xml").read_text()
    assert 'name="nbtest notebook cells" value="nb.ipynb: 1, 2, 3"' in junit
    assert 'name="nbtest peak RSS MiB nb.ipynb"' in junit
    no_kernel_left()


def test_affected_mode_always_runs_py_tests_using_notebooks(
        pytester: pytest.Pytester, make_notebook: Callable[..., Path], no_kernel_left) -> None:
    """--nbtest-affected skips an unchanged notebook, never the .py test using it: that test
    depends on the notebook's cells, so it runs after a change and without one."""
    this_tests("nbtest.plugin.fixture.notebook")
    _fixture_project(pytester, make_notebook)
    pytester.makepyfile(test_uses=FIXTURE_TESTS.split("def test_module")[0])
    first = run_pytest(pytester, "--nbtest", "--nbtest-affected")
    first.assert_outcomes(passed=2)  # the notebook, and the .py test
    again = run_pytest(pytester, "--nbtest", "--nbtest-affected")
    again.assert_outcomes(passed=1, deselected=1)
    assert "1 of 1 notebooks unchanged" in output(again)
    no_kernel_left()


def test_gpu_preflight_before_the_kernel(make_notebook: Callable[..., Path],
                                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         no_kernel_left) -> None:
    """A notebook asking for more free GPU memory than any card has: PreflightError naming
    the notebook, before any kernel starts; asking for less, the kernel starts."""
    from helpers.fake_nvidia_smi import gpu, install

    from nbtest.errors import PreflightError

    this_tests("nbtest.handle.NotebookHandle.launch")
    install(tmp_path / "smi", monkeypatch, {"gpus": [gpu(0, free=2000, total=40960)],
                                            "apps": []})
    path = make_notebook("gpu.ipynb", ["import os"],
                         metadata={"nbtest": {"gpu_min_free": "8GiB"}})
    with pytest.raises(PreflightError, match="gpu.ipynb: .*refused to run"):
        open_notebook(path).__enter__()
    no_kernel_left()
    with open_notebook(path, gpu_min_free="1GiB", run="all") as nb:
        assert nb.ref("1 + 1") == 2
    no_kernel_left()
