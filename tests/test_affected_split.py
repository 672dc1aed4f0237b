"""--nbtest-affected in a CI run split into groups with pytest-split: each group's entries end
in one cache with `nbtest affected --merge`, per notebook the newest, so no group's stale copy
of an entry hides what another group found.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.notebooks import write_notebook
from helpers.pytest_sessions import SESSION_TIMEOUT
from test_affected import edit_cell, entry_of, ran, run_affected

import nbtest.affected.cmd
import nbtest.affected.store
from nbtest import this_tests

pytest_plugins = ["pytester"]


def merge(root: Path, *folders: Path) -> subprocess.CompletedProcess:
    """`nbtest affected --merge FOLDERS` in `root`."""
    return subprocess.run([sys.executable, "-m", "nbtest.cli", "affected", "--merge",
                           *map(str, folders)], cwd=root, capture_output=True, text=True,
                          timeout=SESSION_TIMEOUT)


def test_split_groups_merge_into_one_cache(pytester: pytest.Pytester, tmp_path: Path,
                                           no_kernel_left) -> None:
    """A push changes n1 (still passes) and n4's input (now fails); two pytest-split groups,
    each in its own checkout with the restored cache, run their halves; merging both groups'
    caches keeps n1's new pass and n4's failure (not group 1's restored copy of n4's pass):
    only n4 runs next."""
    pytest.importorskip("pytest_split")
    this_tests(nbtest.affected.store.merge, nbtest.affected.store.newest,
               nbtest.affected.store.entries_in, nbtest.affected.cmd.merge_into,
               nbtest.affected.cmd.entries_folder)
    root = pytester.path
    (root / "pyproject.toml").write_text("[tool.pytest.ini_options]\nnbtest = true\n")
    (root / "flag.txt").write_text("ok")
    for name in ("n1", "n2", "n3"):
        write_notebook(root / f"{name}.ipynb", [f"name = {name!r}"])
    write_notebook(root / "n4.ipynb", ["assert open('flag.txt').read() == 'ok'"])
    assert set(ran(pytester)[0]) == {"n1.ipynb", "n2.ipynb", "n3.ipynb", "n4.ipynb"}

    edit_cell(root / "n1.ipynb", 0, source="name = 'n1, edited'")
    (root / "flag.txt").write_text("bad")
    groups = []
    for group in (1, 2):  # each CI machine: a checkout, the cache restored, its group
        checkout = tmp_path / f"group{group}"
        shutil.copytree(root, checkout)
        groups.append(ran(pytester, "--splits", "2", "--group", str(group), cwd=checkout)[0])
    assert {k: v for g in groups for k, v in g.items()} == {"n1.ipynb": "passed",
                                                            "n4.ipynb": "failed"}, groups
    assert all(len(g) == 1 for g in groups), groups  # one changed notebook in each half

    (root / ".pytest_cache" / "d" / "nbtest-affected" / "junk.json").write_text("{")
    proc = merge(root, tmp_path / "group1" / ".pytest_cache", tmp_path / "group2")
    assert proc.returncode == 0, proc.stderr
    assert "merged 2 caches into " in proc.stdout and ": 2 newer entries taken" in proc.stdout, \
        proc.stdout
    assert "1 of 4 notebooks would run:\n  n4.ipynb: its last run (" in proc.stdout, proc.stdout
    assert entry_of(root, "n4.ipynb")[1]["status"] == "failed"
    assert "n1.ipynb: unchanged since its pass" in run_affected(root)
    assert ran(pytester)[0] == {"n4.ipynb": "failed"}

    proc = merge(root, tmp_path / "nowhere")
    assert proc.returncode == 2 and "--merge " in proc.stderr and "no --nbtest-affected " \
        "entries there" in proc.stderr, proc.stderr
    no_kernel_left()
