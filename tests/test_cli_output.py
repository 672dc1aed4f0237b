"""`nbtest execute` and the executed copy it writes: an output that cannot be written is a
usage error found before the run; one that fails after the run keeps the verdict.

Real console script in a subprocess, real kernels, real file-system failures (/proc, a
folder, a file as parent, a file size limit that makes the write fail as a full disk would).
"""

from __future__ import annotations

import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.notebooks import read_notebook
from helpers.processes import NBTEST_CMD, cli_env

from nbtest import this_tests

MARKER = "open('ran', 'w').write('yes')"


@pytest.mark.parametrize("where", ["proc", "folder", "file-as-parent", "file-above-parent"])
def test_unwritable_output_is_refused_before_the_run(make_notebook, run_cli, tmp_path: Path,
                                                     where: str) -> None:
    this_tests("nbtest.cli.cmd_execute", "nbtest.files.check_writable")
    path = make_notebook("good.ipynb", [MARKER])
    (tmp_path / "a folder").mkdir()
    (tmp_path / "plain.txt").write_text("a file")
    out = {"proc": Path("/proc/x.ipynb"), "folder": tmp_path / "a folder",
           "file-as-parent": tmp_path / "plain.txt" / "x.ipynb",
           "file-above-parent": tmp_path / "plain.txt" / "deeper" / "x.ipynb"}[where]
    before = sorted(p.name for p in tmp_path.iterdir())
    proc = run_cli("execute", path, "-o", out, "--no-progress")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("nbtest: error: cannot write the executed "
                                                   f"notebook {out}: "), proc.stderr
    assert not (tmp_path / "ran").exists(), "the notebook ran before the output was checked"
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # no probe file left
    assert (tmp_path / "plain.txt").read_text() == "a file"


def _file_size_limit() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    # Writes past 1 MB fail with EFBIG, as a full disk fails with ENOSPC (Python ignores
    # SIGXFSZ, so the write raises instead of killing the process).
    resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, 1_000_000))


@pytest.mark.parametrize(("last_cell", "verdict", "code"), [
    ("x = 1", "passed", 4), ("assert False, 'red'", "failed", 1)])
def test_write_failing_after_the_run_keeps_the_verdict(
        make_notebook, tmp_path: Path, no_kernel_left, last_cell: str, verdict: str,
        code: int) -> None:
    this_tests("nbtest.cli.cmd_execute", "nbtest.files.why")
    path = make_notebook("big.ipynb", ["print('x' * 3_000_000)", last_cell])
    out = tmp_path / "out" / "big.out.ipynb"
    proc = subprocess.run([*NBTEST_CMD, "execute", str(path), "-o", str(out), "--no-progress"],
                          cwd=tmp_path, env=cli_env(), capture_output=True, text=True,
                          timeout=120, preexec_fn=_file_size_limit)
    assert proc.returncode == code, proc.stderr
    assert "Traceback (most recent call last):\n  File" not in proc.stderr, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[0].startswith(f"nbtest: {verdict} {path} in "), proc.stderr
    assert f"nbtest: could not write {out}: File too large" in lines, proc.stderr
    assert not any(line.startswith("  wrote ") for line in lines)
    assert not out.exists() and not list(out.parent.iterdir())  # no half-written file
    no_kernel_left()


NO_NBCONVERT = """
import sys
sys.modules["nbconvert"] = None  # what an install without the html extra gives: ImportError
from nbtest.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_html_without_nbconvert_names_the_distribution_before_the_run(
        make_notebook, tmp_path: Path) -> None:
    this_tests("nbtest.cli.cmd_execute", "nbtest.outputs.html.html_exporter")
    path = make_notebook("good.ipynb", [MARKER])
    proc = subprocess.run([sys.executable, "-c", NO_NBCONVERT, "execute", str(path), "--html",
                           "--no-progress"], cwd=tmp_path, env=cli_env(), capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "pip install 'pytest-nbtest[html]'" in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "ran").exists()
    assert not path.with_name("good.executed.ipynb").exists()


def test_output_folder_created_after_the_check(make_notebook, run_cli, tmp_path: Path) -> None:
    this_tests("nbtest.cli.cmd_execute", "nbtest.files.check_writable")
    path = make_notebook("good.ipynb", ["print(1)"])
    out = tmp_path / "new" / "deep" / "x.ipynb"
    proc = run_cli("execute", path, "-o", out, "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert read_notebook(out).cells[0].outputs[0].text == "1\n"


@pytest.mark.parametrize("args", [["affected", "nb.ipynb"], ["affected", "nb.ipynb", "--json"],
                                  ["--help"], ["execute", "--help"]],
                         ids=["affected", "affected-json", "help", "execute-help"])
def test_output_to_a_closed_pipe_exits_quietly(make_notebook, tmp_path: Path,
                                               args: list[str]) -> None:
    this_tests("nbtest.cli.main", "nbtest.affected.cmd.run")
    make_notebook("nb.ipynb", ["x = 1"])
    # `nbtest affected | head -3` where head is gone before nbtest writes: the read end closed.
    proc = subprocess.Popen([*NBTEST_CMD, *args], cwd=tmp_path, env=cli_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read()
    proc.stderr.close()
    code = proc.wait(timeout=120)  # hang guard
    assert err == "", err
    # argparse's help swallows the error itself (exit 0); nbtest's own output exits 141.
    assert code == (0 if "--help" in args else 141)
