"""Failure text (failure_text.py) on constructed results: headlines, the marked line, output tail,
ANSI codes; and the result objects themselves."""

from __future__ import annotations

import pickle

import pytest

from nbtest import this_tests
from nbtest.failure_text import (
    cell_failure_text,
    failing_line,
    failure_text,
    headline,
    source_excerpt,
    strip_ansi,
)
from nbtest.results import (
    CHECK_FAILED,
    DIED,
    FAILED,
    NOT_RUN,
    PASSED,
    SKIPPED,
    TIMEOUT,
    CellResult,
    NotebookResult,
)

RED, RESET = "\x1b[0;31m", "\x1b[0m"
SOURCE = "\n".join(f"x{i} = {i}" for i in range(1, 31)).replace(
    "x15 = 15", "assert x14 == 15, 'sum is 42'")
TRACEBACK = (
    f"{RED}---------------------------------------------------------------------------{RESET}",
    f"{RED}AssertionError{RESET}                            Traceback (most recent call last)",
    f"Cell {RED}In[4], line 15{RESET}\n     14 x14 = 14\n---> 15 assert x14 == 15, 'sum is 42'",
    f"{RED}AssertionError{RESET}: sum is 42",
)


def failed_cell(**changes: object) -> CellResult:
    fields: dict = dict(number=7, index=6, source=SOURCE, status=FAILED, duration=0.5,
                        execution_count=4, error_name="AssertionError", error_value="sum is 42",
                        traceback=TRACEBACK, output_tail="epoch 1\nepoch 2")
    fields.update(changes)
    return CellResult(**fields)


@pytest.mark.parametrize(("changes", "expected"), [
    ({}, "cell 7: AssertionError: sum is 42"),
    ({"error_value": f"{RED}first line{RESET}\nsecond line"}, "cell 7: ValueError: first line"),
    ({"error_value": ""}, "cell 7: ValueError"),
    ({"status": TIMEOUT, "detail": "timed out after 3.0 s (limit 3 s)"},
     "cell 7: timed out after 3.0 s (limit 3 s)"),
    ({"status": DIED, "detail": "kernel died (exit code 3)"}, "cell 7: kernel died (exit code 3)"),
    ({"status": DIED, "detail": "kernel died (killed by SIGKILL)"},
     "cell 7: kernel died (killed by SIGKILL)"),
    ({"error_name": "NoError", "detail": "the cell is tagged raises-exception but raised nothing"},
     "cell 7: expected an error: the cell is tagged raises-exception but raised nothing"),
    ({"error_name": CHECK_FAILED, "detail": "output differs\nexpected 1, got 2"},
     "cell 7: output differs"),
    ({"injected": True}, "cell 7 (injected parameters): AssertionError: sum is 42"),
], ids=["error", "multiline-ansi-value", "no-value", "timeout", "died-code", "died-signal",
        "no-error", "check-failed", "injected"])
def test_headline_forms(changes: dict, expected: str) -> None:
    this_tests(headline)
    if "error_value" in changes:
        changes = {"error_name": "ValueError", **changes}
    assert headline(failed_cell(**changes)) == expected


def test_failing_line_is_found_and_marked() -> None:
    this_tests(failing_line, source_excerpt)
    cell = failed_cell()
    assert failing_line(cell) == 15
    excerpt = source_excerpt(cell, 15).splitlines()
    assert len(excerpt) == 11  # ten lines of source and the "more lines" note
    assert excerpt[0] == "     11 | x11 = 11"
    assert excerpt[4] == "-->  15 | assert x14 == 15, 'sum is 42'"
    assert [line[:3] for line in excerpt].count("-->") == 1
    assert excerpt[-1] == "    ... 10 more lines"


def test_no_marker_without_a_known_frame() -> None:
    this_tests(failing_line, source_excerpt)
    assert failing_line(failed_cell(traceback=())) is None
    short = source_excerpt(failed_cell(source="a = 1\nb = 2"), None)
    assert short == "      1 | a = 1\n      2 | b = 2"
    assert "-->" not in source_excerpt(failed_cell(source="a = 1"), 9)  # out of range


@pytest.mark.parametrize("frame", [
    "Input In [4], in <cell line: 2>()\n      1 a\n----> 2 b",
    "<ipython-input-4-0123abcd> in <module>\n      1 a\n----> 2 b",
], ids=["ipython-8.0", "ipython-7"])
def test_failing_line_of_older_ipython_frames(frame: str) -> None:
    this_tests(failing_line)
    assert failing_line(failed_cell(traceback=(frame,), source="a\nb\nc")) == 2


def test_failure_text_without_and_with_colour() -> None:
    this_tests(failure_text, strip_ansi)
    result = NotebookResult("docs/nb.ipynb", "failed", 1.0,
                            (CellResult(number=1, index=0, source="x = 1", status=PASSED),
                             failed_cell()))
    plain = failure_text(result)
    lines = plain.splitlines()
    assert lines[0] == "cell 7: AssertionError: sum is 42"
    assert lines[2] == "docs/nb.ipynb cell 7 (In [4]):"
    assert "-->  15 | assert x14 == 15, 'sum is 42'" in plain
    assert "output (last lines):\nepoch 1\nepoch 2" in plain
    assert "traceback:" in plain and "---> 15 assert" in plain
    assert "\x1b[" not in plain
    coloured = failure_text(result, color=True)
    assert RED in coloured and coloured.splitlines()[0] == lines[0]
    assert strip_ansi(coloured) == plain


def test_output_tail_is_stripped_of_ansi_even_in_colour() -> None:
    this_tests(cell_failure_text)
    text = cell_failure_text(failed_cell(output_tail=f"{RED}warn{RESET}", traceback=()),
                             color=True)
    assert "output (last lines):\nwarn" in text
    assert "traceback:" not in text


def test_check_failed_report_keeps_the_details() -> None:
    this_tests(cell_failure_text, headline)
    text = cell_failure_text(failed_cell(error_name=CHECK_FAILED, traceback=(), output_tail="",
                                         detail="output differs\nexpected 1, got 2"))
    assert text.splitlines()[0] == "cell 7: output differs"
    assert "expected 1, got 2" in text


def test_failure_text_of_a_notebook_without_a_failed_cell() -> None:
    this_tests(failure_text)
    result = NotebookResult("nb.ipynb", "error", 0.0, reason="kernel 'k' did not start")
    text = failure_text(result)
    assert text.splitlines()[0] == "kernel 'k' did not start" and "nb.ipynb" in text
    assert failure_text(NotebookResult("nb.ipynb", "error", 0.0)).splitlines()[0] == "error"


def test_strip_ansi() -> None:
    this_tests(strip_ansi)
    assert strip_ansi(f"{RED}red{RESET} \x1b[1;32mgreen\x1b[0m \x1b[?25l") == "red green "


def test_results_properties_and_pickling() -> None:
    this_tests(NotebookResult.passed, NotebookResult.failed_cell, NotebookResult.slowest,
               CellResult.failed, CellResult.label)
    cells = (
        CellResult(number=2, index=1, source="a", status=PASSED, duration=0.1),
        CellResult(number=3, index=2, source="b", status=SKIPPED),
        CellResult(number=4, index=3, source="c", status=PASSED, duration=2.0),
        failed_cell(number=5, duration=1.0),
        CellResult(number=6, index=5, source="d", status=NOT_RUN),
    )
    result = NotebookResult("nb.ipynb", "failed", 3.5, cells, extras={"slowest": [(4, 2.0)]})
    assert not result.passed
    assert result.failed_cell is cells[3]
    assert [c.number for c in result.slowest()] == [4, 5, 2]
    assert [c.number for c in result.slowest(1)] == [4]
    assert [c.failed for c in cells] == [False, False, False, True, False]
    for status in (TIMEOUT, DIED):
        assert failed_cell(status=status).failed
    assert cells[0].label == "cell 2"
    back = pickle.loads(pickle.dumps(result))
    assert back == result
    with pytest.raises(AttributeError):
        cells[0].status = FAILED  # type: ignore[misc]
