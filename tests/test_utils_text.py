"""Tests of nbtest.utils.text: print resets and stdout / stderr capture."""

from __future__ import annotations

import sys

import pytest

from nbtest import this_tests
from nbtest.utils.text import (
    CaptureStd,
    CaptureStderr,
    CaptureStdout,
    apply_print_resets,
    assert_screenout,
)


def fake_progress(n: int) -> None:
    """Write a tqdm-like bar: each update redraws the line with '\\r'."""
    for i in range(n + 1):
        print(f"\r{i}/{n} [{'#' * i}{'.' * (n - i)}]", end="")
    print()


@pytest.mark.parametrize(("buf", "shown"), [
    ("", ""),
    ("no resets\n", "no resets\n"),
    ("Secret message\rHello World\n", "Hello World\n"),
    ("a\rb\rc", "c"),
    ("one\rtwo\nthree\rfour\n", "two\nfour\n"),
    ("line\r", ""),                       # the seed's semantics: a trailing reset clears the line
    ("keep\r\nme\r\n", "keep\r\nme\r\n"),  # a Windows line end is not a reset
    ("x\ry\r\n", "y\r\n"),
])
def test_apply_print_resets(buf: str, shown: str) -> None:
    this_tests(apply_print_resets)
    assert apply_print_resets(buf) == shown


def test_capture_stdout_seed_example() -> None:
    this_tests(CaptureStdout)
    msg, final = "Secret message\r", "Hello World"
    with CaptureStdout() as cs:
        print(msg + final)
    assert cs.out == final + "\n", f"captured: {cs.out}, expecting {final}"
    assert str(cs) == cs.out


def test_capture_stdout_tqdm_like_progress() -> None:
    this_tests(CaptureStdout, assert_screenout, apply_print_resets)
    with CaptureStdout() as cs:
        print("epoch 1")
        fake_progress(5)
        print("done")
    assert cs.out == "epoch 1\n5/5 [#####]\ndone\n"
    assert "0/5" not in cs.out
    assert_screenout(cs.out, "5/5 [#####]")


def test_assert_screenout_applies_resets_and_explains() -> None:
    this_tests(assert_screenout)
    raw = "loading 10%\rloading 100%\n"
    assert_screenout(raw, "loading 100%")
    with pytest.raises(AssertionError, match="expected to find 'loading 10%'") as info:
        assert_screenout(raw, "loading 10%")
    assert "loading 100%" in str(info.value)  # the message shows what was on screen


def test_capture_std_both_streams_and_no_replay(capsys: pytest.CaptureFixture[str]) -> None:
    this_tests(CaptureStd)
    with CaptureStd() as cs:
        print("to out")
        print("to err\rERR", file=sys.stderr)
    assert cs.out == "to out\n"
    assert cs.err == "to err\rERR\n"  # stderr is kept as written
    assert str(cs) == "stdout: to out\n\nstderr: to err\rERR\n"
    replayed = capsys.readouterr()
    assert replayed.out == "" and replayed.err == ""


def test_capture_stderr_only_leaves_stdout_alone(capsys: pytest.CaptureFixture[str]) -> None:
    this_tests(CaptureStderr)
    with CaptureStderr() as cs:
        print("visible")
        sys.stderr.write("warning: careful\n")
    assert cs.err == "warning: careful\n"
    assert cs.out == "not capturing stdout"
    assert str(cs) == cs.err
    assert capsys.readouterr().out == "visible\n"


def test_capture_stdout_only_leaves_stderr_alone(capsys: pytest.CaptureFixture[str]) -> None:
    this_tests(CaptureStdout)
    with CaptureStdout() as cs:
        print("oops", file=sys.stderr)
    assert cs.out == ""
    assert cs.err == "not capturing stderr"
    assert capsys.readouterr().err == "oops\n"


def test_nested_captures() -> None:
    this_tests(CaptureStd, CaptureStdout)
    before_out, before_err = sys.stdout, sys.stderr
    with CaptureStd() as outer:
        print("outer 1")
        with CaptureStdout() as inner:
            print("inner")
            print("inner err", file=sys.stderr)
        print("outer 2")
        assert sys.stdout is not before_out  # the outer capture is back in place
    assert inner.out == "inner\n"
    assert outer.out == "outer 1\nouter 2\n"
    assert outer.err == "inner err\n"  # the inner one did not take stderr
    assert sys.stdout is before_out and sys.stderr is before_err


def test_exception_in_block_restores_streams_and_keeps_output() -> None:
    this_tests(CaptureStd)
    before_out, before_err = sys.stdout, sys.stderr
    with pytest.raises(ValueError, match="boom"):
        with CaptureStd() as cs:
            print("partial\rprogress")
            print("why", file=sys.stderr)
            raise ValueError("boom")
    assert sys.stdout is before_out and sys.stderr is before_err
    assert cs.out == "progress\n"
    assert cs.err == "why\n"


def test_out_is_a_placeholder_until_the_block_ends() -> None:
    this_tests(CaptureStdout)
    with CaptureStdout() as cs:
        print("hi")
        assert cs.out.startswith("error: CaptureStdout context is unfinished")
    assert cs.out == "hi\n"


def test_capture_nothing_is_an_error() -> None:
    this_tests(CaptureStd)
    with pytest.raises(ValueError, match="at least one"):
        CaptureStd(out=False, err=False)


def test_repr() -> None:
    this_tests(CaptureStderr)
    assert repr(CaptureStderr()) == "CaptureStderr(out=False, err=True)"
