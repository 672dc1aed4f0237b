"""Helpers for testing text output: print resets and stdout / stderr capture.

Progress bars (tqdm, fastprogress) redraw a line by writing ``\\r`` and the new text. A terminal
shows only the last version of such a line, but a captured buffer holds every version, so a
test that compares captured output passes or fails depending on whether pytest ran with ``-s``.
:func:`apply_print_resets` turns a buffer into what the terminal shows, and the ``Capture*``
context managers apply it for you (seed: fastai v1's ``tests/utils/text.py``)::

    with CaptureStdout() as cs:
        print("Secret message\\rHello World")
    assert cs.out == "Hello World\\n"

Capture works at the Python level (``sys.stdout`` / ``sys.stderr``): output that a subprocess
or C code writes straight to file descriptor 1 or 2 is not seen.
"""

from __future__ import annotations

import re
import sys
from io import StringIO
from types import TracebackType
from typing import TextIO, cast

__all__ = ["apply_print_resets", "assert_screenout", "CaptureStd", "CaptureStdout",
           "CaptureStderr"]

# Everything on a line up to its last carriage return, as the seed's r'^.*\r' with re.M, except
# that a '\r' that ends a line ('\r\n', a Windows line end) is a line end, not a reset.
_PRINT_RESET = re.compile(r"^.*\r(?!\n)", re.M)

_UNFINISHED = "error: {} context is unfinished yet, called too early"


def apply_print_resets(buf: str) -> str:
    """Keep, on each line, only what follows its last ``\\r``: what a terminal shows."""
    return _PRINT_RESET.sub("", buf)


def assert_screenout(out: str, what: str) -> None:
    """Assert that ``what`` is in ``out`` as a terminal would show it (print resets applied)."""
    screen = apply_print_resets(out)
    assert what in screen, f"expected to find {what!r} in the output as shown:\n{screen}"


class CaptureStd:
    """Capture stdout and/or stderr in a ``with`` block: ``.out`` (print resets applied), ``.err``.

    Nothing is replayed: what the block writes to a captured stream goes only to ``.out`` /
    ``.err``. The previous streams are restored on exit, also when the block raises, so captures
    nest (an inner capture takes what is written inside it; the outer one never sees it).
    ``.out`` and ``.err`` hold a placeholder message until the block has ended.
    """

    def __init__(self, out: bool = True, err: bool = True) -> None:
        if not (out or err):
            raise ValueError("CaptureStd: capture at least one of stdout (out=True) or stderr")
        name = type(self).__name__
        self._out_buf: StringIO | None = StringIO() if out else None
        self._err_buf: StringIO | None = StringIO() if err else None
        self.out: str = _UNFINISHED.format(name) if out else "not capturing stdout"
        self.err: str = _UNFINISHED.format(name) if err else "not capturing stderr"
        self._old_out: TextIO | None = None
        self._old_err: TextIO | None = None

    def __enter__(self) -> CaptureStd:
        if self._out_buf is not None:
            self._old_out, sys.stdout = sys.stdout, self._out_buf
        if self._err_buf is not None:
            self._old_err, sys.stderr = sys.stderr, self._err_buf
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        # Restore first, so that nothing below can leave the streams redirected. (The old
        # stream may be None, as under pythonw: restore it all the same.)
        if self._out_buf is not None:
            sys.stdout = cast(TextIO, self._old_out)
            self.out = apply_print_resets(self._out_buf.getvalue())
        if self._err_buf is not None:
            sys.stderr = cast(TextIO, self._old_err)
            self.err = self._err_buf.getvalue()

    def __str__(self) -> str:
        if self._err_buf is None:
            return self.out
        if self._out_buf is None:
            return self.err
        return f"stdout: {self.out}\nstderr: {self.err}"

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(out={self._out_buf is not None}, "
                f"err={self._err_buf is not None})")


class CaptureStdout(CaptureStd):
    """Capture stdout only, with print resets applied, as ``.out`` (``str(cs)`` gives it too)."""

    def __init__(self) -> None:
        super().__init__(out=True, err=False)


class CaptureStderr(CaptureStd):
    """Capture stderr only, as ``.err`` (``str(cs)`` gives it too)."""

    def __init__(self) -> None:
        super().__init__(out=False, err=True)
