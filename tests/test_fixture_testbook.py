"""testbook's documented examples (its README, usage and examples pages), through nbtest's
`notebook` / `module_notebook` fixtures with testbook's own assertions. testbook counts cells
from 0 over every cell; nbtest from 1 (as its reports do): testbook's cell i is nbtest's i + 1.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from helpers.extras import needs

from nbtest import this_tests


@pytest.fixture
def func_nb(make_notebook: Callable[..., Path]) -> Path:
    return make_notebook("func.ipynb", ["def func(a, b):\n   return a + b"])


def test_readme_example(notebook, func_nb: Path) -> None:
    """README: `@testbook(nb, execute=True)`, `tb.get("func")`, `func(1, 2) == 3`."""
    this_tests("nbtest.plugin.fixture.notebook", "nbtest.handle.NotebookHandle.ref")
    tb = notebook(func_nb, run="all")
    func = tb.ref("func")
    assert func(1, 2) == 3


OPENED: list = []  # the module-scoped handle, as the first test got it


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from helpers.notebooks import write_notebook

    return write_notebook(tmp_path_factory.mktemp("shared") / "func.ipynb",
                          ["def func(a, b):\n   return a + b"])


def test_share_kernel_context(module_notebook, shared: Path) -> None:
    """Usage, "Share kernel context across multiple tests": a module-scoped fixture."""
    this_tests("nbtest.plugin.fixture.module_notebook")
    tb = module_notebook(shared, run="all")
    func = tb.ref("func")
    assert func(1, 2) == 3
    OPENED.append(tb)


def test_share_kernel_context_again(module_notebook, shared: Path) -> None:
    """The second test of the module gets the first one's kernel (when both ran here: -n 2
    may send them to two workers)."""
    this_tests("nbtest.plugin.fixture.module_notebook")
    tb = module_notebook(shared, run="all")
    assert tb.ref("func")(2, 2) == 4
    assert tb is OPENED[0] if OPENED else True


def test_mocking_requests(notebook, make_notebook: Callable[..., Path]) -> None:
    """Examples, "Mocking requests library": `tb.patch('requests.get')`."""
    this_tests("nbtest.handle.NotebookHandle.patch")
    pytest.importorskip("requests")
    path = make_notebook("requests_nb.ipynb", [
        "import requests\n\ndef get_details():\n"
        "    return requests.get('https://my-api.com').json()"])
    tb = notebook(path, run="all")
    with tb.patch("requests.get") as mock_get:
        get_details = tb.ref("get_details")
        get_details()
        mock_get.assert_called_with("https://my-api.com")


@needs("pandas", "bench")
def test_dataframe_manipulation(notebook, make_notebook: Callable[..., Path]) -> None:
    """Examples, "Asserting dataframe manipulations": cells by tag, code injected between."""
    this_tests("nbtest.handle.NotebookHandle.run", "nbtest.handle.NotebookHandle.inject")
    path = make_notebook("df.ipynb", [("code", "import pandas", ["imports"]),
                                      ("code", "df.dropna(axis='index', inplace=True)",
                                       ["manipulation"])])
    tb = notebook(path)
    tb.run("imports")
    tb.inject("""
        df = pandas.DataFrame([[1, None, 3], [4, 5, 6]], columns=['a', 'b', 'c'], dtype='float')
        """)
    tb.run("manipulation")
    tb.inject("assert len(df) == 1")


def test_stdout_of_cells(notebook, make_notebook: Callable[..., Path]) -> None:
    """Examples, "Asserting STDOUT of a cell": `tb.cell_output_text(i)`."""
    this_tests("nbtest.handle.NotebookHandle.output", "nbtest.refs.CellOutput.text")
    path = make_notebook("stdout.ipynb", [
        "import time", "print('hello world!')",
        "print('The current time is', time.strftime('%H:%M'))"])
    tb = notebook(path, run="all")
    assert tb.output(2).text == "hello world!"  # testbook: tb.cell_output_text(1)
    assert "The current time is" in tb.output(3).text  # testbook: tb.cell_output_text(2)


def test_references_to_objects(notebook, make_notebook: Callable[..., Path]) -> None:
    """Usage, "Obtain references to objects": attributes and methods of an object that is
    not JSON, values of plain ones (tb.ref / tb.value)."""
    this_tests("nbtest.refs.Ref.__getattr__", "nbtest.refs.Ref.__call__")
    path = make_notebook("objects.ipynb", [
        "class Foo:\n    def __init__(self):\n        self.bar = [1, 2, 3]\n"
        "    def say_hello(self):\n        return 'Hello there!'\nfoo = Foo()"])
    tb = notebook(path, run="all")
    foo = tb.ref("foo")
    assert foo.say_hello() == "Hello there!"
    assert foo.bar == [1, 2, 3] and len(foo.bar) == 3
    assert tb.ref("foo.bar[0] + 1") == 2  # testbook: tb.value("foo.bar[0] + 1")


def test_inject_a_function(notebook, func_nb: Path) -> None:
    """Usage, "Injecting code": a code string, then a function with args (testbook's
    `tb.inject(f, args=..., run=True)`)."""
    this_tests("nbtest.handle.NotebookHandle.inject")
    tb = notebook(func_nb, run="all")
    tb.inject("a = func(2, 3)")
    assert tb.ref("a") == 5

    def double(x):
        return func(x, x)  # noqa: F821  (defined in the kernel)

    assert tb.inject(double, args=[4]) == 8
