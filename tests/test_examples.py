"""The worked examples run (not compared): `nbtest execute examples/tabular.ipynb -p epochs 1`.

Their outputs are for people to look at, so the executed copy and its HTML go to the CI log
folder (NBTEST_LOG_DIR, default .ci-logs/).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from helpers.processes import NBTEST_CMD, REPO

from nbtest import this_tests
from nbtest.cli import cmd_execute

LOG_DIR = Path(os.environ.get("NBTEST_LOG_DIR", REPO / ".ci-logs"))


def test_tabular_example_trains_and_beats_the_baseline(no_kernel_left) -> None:
    this_tests(cmd_execute)
    out = LOG_DIR / "tabular.executed.ipynb"
    proc = subprocess.run([*NBTEST_CMD, "execute", "examples/tabular.ipynb", "-p", "epochs", "1",
                           "-o", str(out), "--html", "--no-progress"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert out.with_suffix(".html").is_file()
    executed = json.loads(out.read_text())
    text = "".join("".join(o.get("text", "")) for c in executed["cells"]
                   for o in c.get("outputs", ()) if c["cell_type"] == "code")
    assert "Total time" in text
    assert "epoch" in text.lower()
    tags = [t for c in executed["cells"] for t in c["metadata"].get("tags", ())]
    assert "injected-parameters" in tags  # -p epochs 1 reached the parameters cell
    no_kernel_left()
