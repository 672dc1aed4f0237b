"""Markdown for RESULTS.md: number formats, table rows, and writing a report or a section.

bench.py rewrites RESULTS.md above KEEP_MARKER and keeps what follows it (the sections other
scripts measured, pasted there); the other scripts print their section and write it to --out.
"""

from __future__ import annotations

from pathlib import Path

KEEP_MARKER = "<!-- measured by other scripts: bench.py keeps what follows -->"


def fmt(v: float | None, digits: int = 2) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def fmt_mib(v: float | None) -> str:
    return "n/a" if not v else f"{v / 2**20:.1f} MiB"


def fmt_ms_diff(a: float | None, b: float | None) -> str:
    return "n/a" if a is None or b is None else f"{(a - b) * 1000:+.0f} ms"


def row(*cells: object) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def write_results(out: Path, text: str) -> str:
    """Write bench.py's report to `out`, keeping what follows KEEP_MARKER there; the text."""
    out.parent.mkdir(parents=True, exist_ok=True)
    # Figures other scripts measured (gpu_look_cost.py) stay below KEEP_MARKER.
    old = out.read_text() if out.exists() else ""
    if KEEP_MARKER in old:
        text = text.rstrip("\n") + "\n\n" + old[old.index(KEEP_MARKER):]
    out.write_text(text)
    return text


def emit(lines: list[str], out: str | None) -> int:
    """Print a section and write it to `out` when given; the script's exit code."""
    text = "\n".join(lines) + "\n"
    print(text)
    if out:
        Path(out).write_text(text)
    return 0
