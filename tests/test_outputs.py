"""Which cells are compared, and how outputs compare: text, numbers, errors, images, diffs."""

from __future__ import annotations

import base64
import io
import json
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest

from nbtest import this_tests
from nbtest.outputs.compare import (
    compare_outputs,
    is_compared,
    marked,
    normalize,
    texts_match,
    unified_diff,
)
from nbtest.outputs.sanitize import SanitizerSet, parse_sanitize_file
from nbtest.outputs.update import disk_outputs, file_format, write_updated_outputs
from nbtest.results import PASSED, CellResult, NotebookResult

# A 1x1 red PNG, written by hand (what the brief's "tiny PNG as base64" means).
RED_PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLv"
           "AAAAAElFTkSuQmCC")


def code(source: str, outputs: list[Any] | None = None, tags: list[str] | None = None,
         count: int | None = 1) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_code_cell(source, outputs=[nbformat.from_dict(o)
                                                      for o in outputs or []])
    cell.execution_count = count
    if tags:
        cell.metadata["tags"] = tags
    return cell


def stream(text: str, name: str = "stdout") -> dict[str, Any]:
    return {"output_type": "stream", "name": name, "text": text}


def result(text: str, **more: str) -> dict[str, Any]:
    return {"output_type": "execute_result", "execution_count": 1, "metadata": {},
            "data": {"text/plain": text, **more}}


def display(data: dict[str, str]) -> dict[str, Any]:
    return {"output_type": "display_data", "metadata": {}, "data": data}


def error(name: str, value: str) -> dict[str, Any]:
    return {"output_type": "error", "ename": name, "evalue": value,
            "traceback": ["\x1b[31mTraceback ...", f"{name}: {value}"]}


# -- which cells ------------------------------------------------------------------------------
@pytest.mark.parametrize("cell, lax, strict", [
    (code("1", [result("1")]), False, True),
    (code("# NBVAL_CHECK_OUTPUT\n1", [result("1")]), True, True),
    (code("x = 1\n#NBVAL_CHECK_OUTPUT", [result("1")]), True, True),
    (code("1", [result("1")], tags=["nbtest-check-output"]), True, True),
    (code("1", [result("1")], tags=["nbval-check-output"]), True, True),
    (code("# NBVAL_IGNORE_OUTPUT\n1", [result("1")]), False, False),
    (code("1", [result("1")], tags=["nbval-ignore-output"]), False, False),
    (code("1", [result("1")], tags=["nbtest-ignore-output"]), False, False),
    # As in nbval: comments override tags.
    (code("# NBVAL_IGNORE_OUTPUT\n1", [result("1")], tags=["nbval-check-output"]), False, False),
    (code("# NBVAL_CHECK_OUTPUT\n1", [result("1")], tags=["nbval-ignore-output"]), True, True),
    # Never run: no outputs and no execution count.
    (code("# NBVAL_CHECK_OUTPUT\n1", [], count=None), False, False),
    (code("1", [], count=None), False, False),
    # Ran and printed nothing: compared, it must still print nothing (nbval does the same).
    (code("# NBVAL_CHECK_OUTPUT\nx = 1", [], count=3), True, True),
    (code("1", [result("1")], tags=["injected-parameters"]), False, False),
    (nbformat.v4.new_markdown_cell("# NBVAL_CHECK_OUTPUT"), False, False),
])
def test_which_cells_are_compared(cell: Any, lax: bool, strict: bool) -> None:
    this_tests(is_compared)
    assert (is_compared(cell), is_compared(cell, check_all=True)) == (lax, strict)


def test_marker_must_be_a_whole_comment() -> None:
    this_tests(marked)
    assert marked({"source": "print('# NBVAL_CHECK_OUTPUT')"}) is None
    assert marked({"source": "# NBVAL_CHECK_OUTPUT please"}) is None


# -- comparing --------------------------------------------------------------------------------
def test_equal_outputs_match() -> None:
    this_tests(compare_outputs)
    outs = [stream("hi\n"), result("42")]
    assert compare_outputs(outs, outs) is None


def test_streams_are_joined_and_compared_per_name() -> None:
    this_tests(compare_outputs, normalize)
    split = [stream("a\n"), stream("warn\n", "stderr"), stream("b\n")]
    joined = [stream("a\nb\n"), stream("warn\n", "stderr")]
    assert compare_outputs(split, joined) is None
    problem = compare_outputs(joined, [stream("a\nb\n"), stream("other\n", "stderr")])
    assert problem is not None
    assert problem.splitlines()[0] == "output differs (stderr)"
    assert "-warn" in problem and "+other" in problem


def test_order_of_different_keys_does_not_matter_but_order_within_one_does() -> None:
    this_tests(compare_outputs)
    assert compare_outputs([stream("x\n"), result("1")], [result("1"), stream("x\n")]) is None
    two = [display({"text/plain": "a"}), display({"text/plain": "b"})]
    problem = compare_outputs(two, list(reversed(two)))
    assert problem is not None and "text/plain [1]" in problem


def test_missing_and_unexpected_outputs() -> None:
    this_tests(compare_outputs)
    problem = compare_outputs([stream("x\n")], [stream("x\n"), stream("oops\n", "stderr")])
    assert problem is not None
    assert problem.startswith("output differs (stderr)")
    assert "+oops" in problem
    problem = compare_outputs([result("1")], [])
    assert problem is not None and "-1" in problem


def test_errors_compare_by_name_and_value_not_traceback() -> None:
    this_tests(compare_outputs)
    first = [error("ValueError", "bad")]
    second = [dict(error("ValueError", "bad"), traceback=["something else entirely"])]
    assert compare_outputs(first, second) is None
    problem = compare_outputs(first, [error("KeyError", "'bad'")])
    assert problem is not None and "-ValueError: bad" in problem


def test_html_and_latex_compare_as_text() -> None:
    this_tests(compare_outputs)
    html = [display({"text/html": "<b>1</b>", "text/plain": "1"})]
    assert compare_outputs(html, html) is None
    problem = compare_outputs(html, [display({"text/html": "<b>2</b>", "text/plain": "1"})])
    assert problem is not None and problem.startswith("output differs (text/html)")
    latex = [display({"text/latex": "$x^2$"})]
    assert compare_outputs(latex, [display({"text/latex": "$x^3$"})]) is not None


def test_dataframe_like_repr() -> None:
    this_tests(compare_outputs, SanitizerSet.apply)
    table = ("   name  loss  when\n"
             "0  a     0.25  2024-01-02 10:00:00\n"
             "1  b     0.50  2024-01-02 10:00:01\n")
    rerun = table.replace("2024-01-02 10:00:0", "2026-11-23 21:57:4")
    assert compare_outputs([result(table)], [result(rerun)]) is None
    changed = table.replace("0.50", "0.55")
    problem = compare_outputs([result(table)], [result(changed)])
    assert problem is not None
    assert "-1  b     0.50  <TIMESTAMP>" in problem
    assert "+1  b     0.55  <TIMESTAMP>" in problem


def test_memory_address_and_tqdm_bar() -> None:
    this_tests(compare_outputs, SanitizerSet.apply)
    old = [result("<Model object at 0x7f3a2b1c4d50>"),
           stream(" 50%|█████     | 5/10 [00:00<00:00, 9.1it/s]\r"
                  "100%|██████████| 10/10 [00:01<00:00, 9.80it/s]\n", "stderr")]
    new = [result("<Model object at 0x7ffe00001234>"),
           stream("100%|██████████| 10/10 [00:00<00:00, 311.2it/s]\n", "stderr")]
    assert compare_outputs(old, new) is None


def test_tolerant_float() -> None:
    this_tests(compare_outputs, texts_match)
    old, new = [stream("loss 0.31415\n")], [stream("loss 0.31416\n")]
    assert compare_outputs(old, new) is not None
    assert compare_outputs(old, new, rtol=1e-4) is None
    assert compare_outputs(old, new, rtol=1e-6) is not None
    # Text around numbers still compares exactly.
    assert compare_outputs([stream("loss 0.31415\n")], [stream("LOSS 0.31415\n")],
                           rtol=1) is not None


@pytest.mark.parametrize("a, b, rtol, same", [
    ("x 1.0", "x 1.00", 0.0, False),
    ("x 1.0", "x 1.00", 1e-9, True),
    ("1e-05 and 3", "1.00001e-05 and 3", 1e-4, True),
    ("[1, 2, 3]", "[1, 2]", 0.5, False),
    ("v1.2.3", "v1.2.4", 0.5, False),
    ("-0.5", "0.5", 0.5, False),
])
def test_texts_match(a: str, b: str, rtol: float, same: bool) -> None:
    this_tests(texts_match)
    assert texts_match(a, b, rtol) is same


def test_images_by_presence_and_type_by_default() -> None:
    this_tests(compare_outputs)
    png = [display({"image/png": RED_PNG, "text/plain": "<Figure size 1x1>"})]
    other = [display({"image/png": "AAAA", "text/plain": "<Figure size 1x1>"})]
    assert compare_outputs(png, other) is None
    problem = compare_outputs(png, [display({"text/plain": "<Figure size 1x1>"})])
    assert problem is not None and problem.startswith("output differs (image/png)")
    assert "-<image/png image>" in problem
    jpeg = [display({"image/jpeg": RED_PNG, "text/plain": "<Figure size 1x1>"})]
    assert compare_outputs(png, jpeg) is not None


def _png(color: tuple[int, int, int], size: tuple[int, int] = (4, 4)) -> str:
    image_mod = pytest.importorskip("PIL.Image")
    buf = io.BytesIO()
    image_mod.new("RGB", size, color).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def test_images_by_pixels_with_compare_images() -> None:
    this_tests(compare_outputs, "nbtest.outputs.compare.image_difference")
    red, near, blue = _png((255, 0, 0)), _png((254, 1, 0)), _png((0, 0, 255))
    assert compare_outputs([display({"image/png": red})], [display({"image/png": near})],
                           compare_images=True) is None
    problem = compare_outputs([display({"image/png": red})], [display({"image/png": blue})],
                              compare_images=True)
    assert problem is not None and "pixels differ" in problem
    problem = compare_outputs([display({"image/png": red})],
                              [display({"image/png": _png((255, 0, 0), (4, 5))})],
                              compare_images=True)
    assert problem is not None and "size 4x4 expected, got 4x5" in problem
    assert compare_outputs([display({"image/png": RED_PNG})], [display({"image/png": RED_PNG})],
                           compare_images=True) is None


def test_widget_views_are_ignored() -> None:
    this_tests(compare_outputs)
    widget = {"application/vnd.jupyter.widget-view+json": {"model_id": "abc"},
              "text/plain": "HBox()"}
    other = dict(widget, **{"application/vnd.jupyter.widget-view+json": {"model_id": "xyz"}})
    assert compare_outputs([display(widget)], [display(other)]) is None


def test_user_sanitizer_file_applies_and_counts() -> None:
    this_tests(compare_outputs, parse_sanitize_file, SanitizerSet.unmatched)
    rules = parse_sanitize_file("[seed]\nregex: seed \\d+\nreplace: seed N\n"
                                "[unused]\nregex: nothing-like-this\nreplace: x\n", "s.cfg")
    sanitizers = SanitizerSet(rules)
    assert compare_outputs([stream("seed 1\n")], [stream("seed 2\n")], sanitizers) is None
    assert [r.name for r in sanitizers.unmatched()] == ["unused"]


def test_diff_is_cut_after_thirty_differing_lines() -> None:
    this_tests(unified_diff)
    old = "".join(f"line {i}\n" for i in range(100))
    new = "".join(f"LINE {i}\n" for i in range(100))
    diff = unified_diff(old, new, "stdout")
    changes = [ln for ln in diff.splitlines() if ln[:1] in "+-" and ln[:3] not in ("---", "+++")]
    assert len(changes) == 30
    assert diff.splitlines()[-1] == "... 170 more differing lines"
    assert unified_diff("a\n", "a", "stdout").splitlines()[-1] == "+'a'"


def test_normalize_keys() -> None:
    this_tests(normalize)
    keys = normalize([stream("a"), stream("b", "stderr"), result("1", **{"text/html": "<p>"}),
                      error("E", "v")], SanitizerSet())
    assert keys == {"stdout": ["a"], "stderr": ["b"], "text/plain": ["1"],
                    "text/html": ["<p>"], "error": ["E: v"]}


# -- writing updated outputs ------------------------------------------------------------------
def _notebook(path: Path) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.metadata["custom"] = {"zeta": 1, "alpha": "é"}
    nb.cells = [nbformat.v4.new_markdown_cell("# Title ünïcode"),
                code("# NBVAL_CHECK_OUTPUT\nprint('a')", [stream("old\nlines\n")], count=5),
                code("1 + 1", [result("2")], count=6)]
    nbformat.write(nb, str(path))
    return path


def test_nbformat_files_round_trip_byte_identical(tmp_path: Path) -> None:
    this_tests(file_format)
    path = _notebook(tmp_path / "n.ipynb")
    text = path.read_text(encoding="utf-8")
    assert file_format(text, json.loads(text)) == (1, False, True)


def _fake_result(path: Path, outputs: dict[int, Any], differ: list[int]) -> NotebookResult:
    cells = (CellResult(2, 1, "# NBVAL_CHECK_OUTPUT\nprint('a')", PASSED, execution_count=1),
             CellResult(3, 2, "1 + 1", PASSED, execution_count=2))
    return NotebookResult(str(path), "passed", 0.1, cells,
                          extras={"compared_outputs": outputs, "outputs_differ": differ})


def test_write_updated_outputs_changes_only_the_outputs(tmp_path: Path) -> None:
    this_tests(write_updated_outputs, disk_outputs)
    import difflib

    path = _notebook(tmp_path / "n.ipynb")
    before = path.read_text(encoding="utf-8")
    path.chmod(0o644)
    count = write_updated_outputs(path, _fake_result(path, {2: [stream("a\nb\n")]}, [2]))
    assert count == 1
    after = path.read_text(encoding="utf-8")
    changed = [ln[0] + ln[2:].strip() for ln in difflib.ndiff(before.splitlines(),
                                                              after.splitlines())
               if ln[:2] in ("- ", "+ ")]
    assert sorted(changed) == sorted(['-"old\\n",', '-"lines\\n"', '+"a\\n",', '+"b\\n"',
                                      '-"execution_count": 5,', '+"execution_count": 1,'])
    assert path.stat().st_mode & 0o777 == 0o644
    nb = nbformat.read(str(path), as_version=4)
    nbformat.validate(nb)
    assert nb.cells[1].outputs[0].text == "a\nb\n"
    assert nb.cells[2].outputs[0].data["text/plain"] == "2"  # untouched
    assert write_updated_outputs(path, _fake_result(path, {2: []}, [])) == 0
    assert path.read_text(encoding="utf-8") == after


def test_write_updated_outputs_refuses_a_changed_file(tmp_path: Path) -> None:
    this_tests(write_updated_outputs)
    from nbtest.errors import NbTestError

    path = _notebook(tmp_path / "n.ipynb")
    nb = nbformat.read(str(path), as_version=4)
    nb.cells[1].source = "print('edited meanwhile')"
    nbformat.write(nb, str(path))
    before = path.read_text(encoding="utf-8")
    with pytest.raises(NbTestError, match="cell 2 changed since the run"):
        write_updated_outputs(path, _fake_result(path, {2: [stream("a\n")]}, [2]))
    assert path.read_text(encoding="utf-8") == before


def test_disk_outputs_split_lines_like_nbformat() -> None:
    this_tests(disk_outputs)
    outs = disk_outputs([result("a\nb", **{"text/html": "<p>\n</p>"}), stream("x\ny\n")])
    assert outs[0]["data"]["text/plain"] == ["a\n", "b"]
    assert outs[0]["data"]["text/html"] == ["<p>\n", "</p>"]
    assert outs[1]["text"] == ["x\n", "y\n"]
    assert list(outs[0]) == sorted(outs[0])


def test_compare_images_without_pillow_is_a_clear_usage_error(
        monkeypatch: pytest.MonkeyPatch) -> None:
    this_tests("nbtest.callbacks.outputs.OutputCheck.from_config",
               "nbtest.outputs.compare.require_pillow")
    from nbtest.callbacks.outputs import OutputCheck
    from nbtest.config import NbTestConfig
    from nbtest.errors import UsageError

    monkeypatch.setitem(sys.modules, "PIL", None)  # import PIL now fails
    with pytest.raises(UsageError, match="compare_images needs Pillow: pip install Pillow"):
        OutputCheck.from_config(NbTestConfig.of(compare_images=True))
    assert OutputCheck.from_config(NbTestConfig.of()) is not None
