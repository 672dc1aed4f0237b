"""Papermill-compatible parameters: typing, files, where the injected cell goes, and the
kernel seeing the values."""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path

import nbformat
import pytest
from helpers.notebooks import cell_text, read_notebook

from nbtest import NbTestConfig, run_notebook, this_tests
from nbtest.errors import ParameterError
from nbtest.execute import plan_notebook
from nbtest.failure_text import failure_text
from nbtest.notebook import INJECTED_TAG
from nbtest.params import (
    inject_parameters,
    injected_index,
    parse_assignment,
    parse_value,
    read_parameters_file,
)

VALUES = ["1", "-3", "007", "2.5", "1e3", "-0.5", "True", "False", "None", "true", "none",
          "hello", "", "0x10", "1_000", "inf", " 4 ", "[1, 2]"]


@pytest.mark.parametrize("text", VALUES)
def test_parse_value_types_as_papermill_does(text: str) -> None:
    this_tests(parse_value)
    from papermill.cli import _resolve_type

    ours, theirs = parse_value(text), _resolve_type(text)
    assert type(ours) is type(theirs)
    assert ours == theirs or (isinstance(ours, float) and math.isnan(ours))


def test_parse_value_examples() -> None:
    this_tests(parse_value)
    assert parse_value("1") == 1 and type(parse_value("1")) is int
    assert parse_value("2.5") == 2.5
    assert parse_value("True") is True and parse_value("False") is False
    assert parse_value("None") is None
    assert parse_value("hello world") == "hello world"


def test_parse_assignment() -> None:
    this_tests(parse_assignment)
    assert parse_assignment("n=3") == ("n", 3)
    assert parse_assignment(" lr =0.1") == ("lr", 0.1)
    assert parse_assignment("s=a=b") == ("s", "a=b")
    for bad in ("noequals", "=3", "3x=1", "a-b=1"):
        with pytest.raises(ParameterError, match="NAME=VALUE"):
            parse_assignment(bad)


def test_read_parameters_file(tmp_path: Path) -> None:
    this_tests(read_parameters_file)
    yml = tmp_path / "p.yaml"
    yml.write_text("n: 3\nlr: 0.5\nflag: true\nnothing: null\nname: text\nitems: [1, 2]\n")
    assert read_parameters_file(yml) == {"n": 3, "lr": 0.5, "flag": True, "nothing": None,
                                         "name": "text", "items": [1, 2]}
    js = tmp_path / "p.json"
    js.write_text(json.dumps({"a": [1, {"b": None}], "s": "x"}))
    assert read_parameters_file(js) == {"a": [1, {"b": None}], "s": "x"}
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert read_parameters_file(empty) == {}


@pytest.mark.parametrize(("content", "says"), [
    ("- 1\n- 2\n", "must be a mapping"),
    ("a: [1, 2\n", "cannot read parameters"),
    (None, "cannot read parameters"),
])
def test_read_parameters_file_errors_name_the_file(tmp_path: Path, content: str | None,
                                                   says: str) -> None:
    this_tests(read_parameters_file)
    path = tmp_path / "params.yaml"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ParameterError) as info:
        read_parameters_file(path)
    assert str(path) in info.value.message and says in info.value.message
    assert info.value.exit_code == 2


def _nb(*cells: nbformat.NotebookNode) -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.cells = list(cells)
    return nb


def _code(source: str, *tags: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_code_cell(source, metadata={"tags": list(tags)} if tags else {})


def test_injected_cell_goes_after_the_parameters_cell() -> None:
    this_tests(inject_parameters, injected_index)
    nb = _nb(nbformat.v4.new_markdown_cell("# t"), _code("a = 0", "parameters"), _code("a"))
    out = inject_parameters(nb, {"a": 1, "s": "it's \"quoted\"", "n": None}, "python3", "python")
    assert injected_index(out) == 2
    injected = out.cells[2]
    assert injected.metadata["tags"] == [INJECTED_TAG]
    assigned = {node.targets[0].id: ast.literal_eval(node.value)
                for node in ast.parse(injected.source).body}
    assert assigned == {"a": 1, "s": "it's \"quoted\"", "n": None}
    assert "tags" not in out.cells[0].metadata and "tags" not in out.cells[3].metadata
    assert out.metadata["papermill"]["parameters"]["a"] == 1


def test_injected_cell_goes_first_without_a_parameters_cell() -> None:
    this_tests(inject_parameters, injected_index)
    out = inject_parameters(_nb(_code("x = 1"), _code("y = 2")), {"a": 1}, "python3", "python")
    assert injected_index(out) == 0
    assert [c.source for c in out.cells[1:]] == ["x = 1", "y = 2"]


def test_plan_numbers_cells_as_in_the_input_file(tmp_path: Path, make_notebook) -> None:
    this_tests(plan_notebook, inject_parameters)
    path = make_notebook("p.ipynb", [
        ("markdown", "# t"), ("code", "a = 0", ["parameters"]), "print(a)", "b = 1"])
    plan = plan_notebook(path, NbTestConfig.of(parameters={"a": 5}))
    assert plan.injected == 2
    assert plan.numbers == (1, 2, 2, 3, 4)
    assert len(read_notebook(path).cells) == 4  # the input is not touched
    assert plan_notebook(path).injected is None


def test_a_previous_injected_cell_is_replaced(make_notebook) -> None:
    this_tests(plan_notebook, inject_parameters)
    path = make_notebook("again.ipynb", [
        ("code", "a = 0", ["parameters"]),
        ("code", "# Parameters\na = 1\n", [INJECTED_TAG]),
        "print(a)",
    ])
    plan = plan_notebook(path, NbTestConfig.of(parameters={"a": 2}))
    assert len(plan.notebook.cells) == 3
    assert plan.numbers == (1, 2, 3)
    assert "a = 2" in plan.notebook.cells[1].source


def test_metadata_parameters_merge_under_explicit_ones(make_notebook) -> None:
    this_tests(plan_notebook, NbTestConfig.of)
    path = make_notebook("m.ipynb", [("code", "a = 0", ["parameters"])],
                         metadata={"nbtest": {"parameters": {"a": 1, "b": 2}}})
    plan = plan_notebook(path, NbTestConfig.of(parameters={"a": 10}))
    assert dict(plan.config.parameters) == {"a": 10, "b": 2}


def test_failing_cell_after_injection_keeps_its_number(make_notebook, no_kernel_left) -> None:
    this_tests(run_notebook, inject_parameters, failure_text)
    path = make_notebook("num.ipynb", [
        ("markdown", "# params"),
        ("code", "a = 0", ["parameters"]),
        "assert a == 1",
        "assert a == 2, f'a is {a}'",
    ])
    result = run_notebook(path, NbTestConfig.of(parameters={"a": 1}))
    assert [(c.number, c.status, c.injected) for c in result.cells] == [
        (2, "passed", False), (2, "passed", True), (3, "passed", False), (4, "failed", False)]
    assert failure_text(result).splitlines()[0] == "cell 4: AssertionError: a is 1"
    assert result.cells[1].label == "cell 2 (injected parameters)"
    assert [c.get("execution_count") for c in result.notebook.cells[1:]] == [1, 2, 3, 4]
    no_kernel_left()


TYPES_CELL = """
assert (a, b, c, d, e) == (1, 2.5, True, None, 'hello world'), (a, b, c, d, e)
assert [type(v).__name__ for v in (a, b, c, d, e)] == ['int', 'float', 'bool', 'NoneType', 'str']
assert items == [1, 2] and conf == {'k': 'v'}, (items, conf)
print('ok')
"""


def test_cli_p_and_yaml_file_reach_the_parameters_cell(make_notebook, run_cli, tmp_path: Path
                                                       ) -> None:
    this_tests("nbtest.cli.cmd_execute", read_parameters_file, parse_value, inject_parameters)
    path = make_notebook("typed.ipynb", [
        ("markdown", "# typed"),
        ("code", "a = b = c = d = e = items = conf = 0", ["parameters"]),
        TYPES_CELL,
    ])
    (tmp_path / "params.yaml").write_text("items: [1, 2]\nconf: {k: v}\ne: from yaml\n")
    proc = run_cli("execute", path, "--no-progress", "-f", "params.yaml",
                   "-p", "a", "1", "-p", "b", "2.5", "-p", "c", "True", "-p", "d", "None",
                   "-p", "e", "hello world")
    assert proc.returncode == 0, proc.stderr
    nb = read_notebook(tmp_path / "typed.executed.ipynb")
    assert len(nb.cells) == 4  # the input's three and the injected parameters cell
    assert nb.cells[1].metadata["tags"] == ["parameters"]
    assert nb.cells[2].metadata["tags"] == [INJECTED_TAG]
    assert "e = \"hello world\"" in nb.cells[2].source or "e = 'hello world'" in nb.cells[2].source
    assert cell_text(nb.cells[3]) == "ok\n"
    assert nb.metadata["papermill"]["parameters"]["e"] == "hello world"
    assert set(nb.metadata) == {"kernelspec", "papermill"}


def test_cli_json_file_and_metadata_parameters(make_notebook, run_cli, tmp_path: Path) -> None:
    this_tests("nbtest.cli.cmd_execute", read_parameters_file, inject_parameters)
    path = make_notebook("js.ipynb", [
        ("code", "x = y = z = None", ["parameters"]),
        "assert (x, y, z) == ([1, {'b': None}], 'from json', 7), (x, y, z)",
    ], metadata={"nbtest": {"parameters": {"z": 7, "y": "from metadata"}}})
    (tmp_path / "p.json").write_text(json.dumps({"x": [1, {"b": None}], "y": "from json"}))
    proc = run_cli("execute", path, "--no-progress", "-f", tmp_path / "p.json")
    assert proc.returncode == 0, proc.stderr
