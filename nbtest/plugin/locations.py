"""Where each cell's source starts in the `.ipynb` file, as a line number of the JSON text.

Reports, IDEs and annotation plugins (pytest-github-actions-annotate-failures) point at a
line of the file a test lives in; for a notebook, the useful line is the failing cell's first
source line, not line 1 (the JSON's opening brace).
"""

from __future__ import annotations

import bisect
import re
from pathlib import Path

# JSON tokens: strings (with escapes), punctuation, and bare literals (numbers, true, null).
_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[{}\[\]:,]|[^\s{}\[\]:,"]+')


class _Frame:
    """An open JSON container: `{` or `[`, the key being read (objects), any element seen."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.key: str | None = None
        self.seen = False


def source_lines(text: str) -> list[int]:
    """0-based line of each cell's first source line (its `source` value), in cell order."""
    newlines = [m.start() for m in re.finditer("\n", text)]
    found: list[int] = []
    frames: list[_Frame] = []
    for match in _TOKENS.finditer(text):
        token = match.group()
        top = frames[-1] if frames else None
        if token == ":":
            continue
        if token == ",":
            if top is not None and top.kind == "{":
                top.key = None
            continue
        if token in ("}", "]"):
            frames.pop()
            continue
        if top is not None and top.kind == "{" and top.key is None:
            top.key = token[1:-1]  # a key (always a string in JSON)
            continue
        in_cells = len(frames) >= 3 and frames[0].key == "cells" and frames[1].kind == "["
        line = bisect.bisect_left(newlines, match.start())
        if in_cells and len(frames) == 3 and frames[2].key == "source":
            found.append(line)  # a string, or a list's `[` until its first line is seen
        elif (in_cells and len(frames) == 4 and frames[2].key == "source"
              and top is not None and not top.seen):
            found[-1] = line
        if top is not None and top.kind == "[":
            top.seen = True
        if token in ("{", "["):
            frames.append(_Frame(token))
    return found


def cell_source_line(path: str | Path, number: int) -> int:
    """0-based line of cell `number` (1-based, every cell counted) in the file; 0 if unknown."""
    try:
        lines = source_lines(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return 0
    return lines[number - 1] if 0 < number <= len(lines) else 0
