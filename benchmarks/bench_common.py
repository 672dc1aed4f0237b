"""What the side-by-side benchmark scripts share: running under .venv-bench, printing and
writing their Markdown section."""

from __future__ import annotations

import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV = REPO / ".venv-bench"


def in_bench_venv(script: str) -> None:
    """Re-run `script` under the bench venv's interpreter unless this is it already."""
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    py = VENV / "bin" / "python"
    if not py.exists():
        sys.exit(f"{Path(script).name}: run `python3 benchmarks/bench.py --setup-only` first")
    os.execv(str(py), [str(py), script, *sys.argv[1:]])


def emit(lines: list[str], out: str | None) -> int:
    """Print the section and write it to `out` when given; the script's exit code."""
    text = "\n".join(lines) + "\n"
    print(text)
    if out:
        Path(out).write_text(text)
    return 0
