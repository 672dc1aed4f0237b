"""--nbtest-affected: real pytest sessions (pytester, real kernels) on a four-notebook project.

`pkg/a.py` imports `pkg/b.py`; `data/d.csv`; nb1 imports pkg.a, nb2 reads the CSV (with
`open`, and pandas or csv), nb3 is self-contained, nb4 fails. Each step of the acceptance
scenario runs serially and under `-n 2`, and again in a `git clone` with the cache folder
copied over; then the honesty rules, the storage, per-cell items and `nbtest affected`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from helpers.extras import NEEDS_XDIST
from helpers.notebooks import read_notebook, write_notebook
from helpers.pytest_sessions import SESSION_TIMEOUT, junit_outcomes, output, run_pytest

import nbtest.affected.cmd
import nbtest.affected.fingerprint
import nbtest.affected.store
import nbtest.callbacks.affected
import nbtest.inkernel.tracker
import nbtest.inkernel.tracker_hooks
import nbtest.kernel.specs
import nbtest.plugin.affected
from nbtest import NbTestConfig, this_tests
from nbtest.affected.fingerprint import static_fingerprint
from nbtest.affected.store import Store

pytest_plugins = ["pytester"]
ALL = {"nb1.ipynb", "nb2.ipynb", "nb3.ipynb", "nb4.ipynb"}
ENTRIES = Path(".pytest_cache", "d", "nbtest-affected")

NB2 = """\
with open("data/d.csv") as fh:
    header = fh.readline().strip()
try:
    import pandas
except ImportError:
    import csv
    with open("data/d.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
else:
    rows = pandas.read_csv("data/d.csv").to_dict("records")
assert header == "x,y" and len(rows) == 2, rows"""


def build_project(root: Path) -> Path:
    """The four-notebook project (module docstring) under `root`."""
    (root / "pkg").mkdir(parents=True)
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "a.py").write_text("from pkg.b import base\n\n\n"
                                       "def answer():\n    return base() * 2\n")
    (root / "pkg" / "b.py").write_text("def base():\n    return 21\n")
    (root / "data").mkdir()
    (root / "data" / "d.csv").write_text("x,y\n1,2\n3,4\n")
    (root / "pyproject.toml").write_text("[tool.pytest.ini_options]\nnbtest = true\n")
    write_notebook(root / "nb1.ipynb", [("markdown", "# uses pkg.a"),
                                        "from pkg.a import answer\nassert answer() == 42"])
    write_notebook(root / "nb2.ipynb", [NB2])
    write_notebook(root / "nb3.ipynb", [("markdown", "# self-contained"),
                                        "y = sum(range(4))\nassert y == 6"])
    write_notebook(root / "nb4.ipynb", ["assert 1 == 2, 'nb4 fails'"])
    return root


@pytest.fixture
def project(pytester: pytest.Pytester) -> Path:
    """The acceptance project in the pytester folder."""
    return build_project(pytester.path)


def ran(pytester: pytest.Pytester, *args: str, cwd: Path | None = None,
        ) -> tuple[dict[str, str], str]:
    """({notebook: outcome} of the notebooks that ran, output) of a pytest session in `cwd`
    (default: the pytester folder) with --nbtest-affected unless `args` say otherwise."""
    flags = [] if "--no-flag" in args else ["--nbtest-affected"]
    args = tuple(a for a in args if a != "--no-flag")
    where = cwd or pytester.path
    xml = where / "junit.xml"
    command = [*flags, "-v", f"--junitxml={xml}", *args]
    if cwd is None:
        result = run_pytest(pytester, *command)
        text, code = output(result), result.ret
    else:
        proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:randomly", *command],
                              cwd=cwd, capture_output=True, text=True, timeout=SESSION_TIMEOUT)
        text, code = proc.stdout + proc.stderr, proc.returncode
    assert code in (0, 1), text
    return junit_outcomes(xml), text


def edit_cell(path: Path, index: int, source: str | None = None, outputs: list | None = None,
              ) -> None:
    """Change cell `index` of the notebook at `path` (its source, or its stored outputs)."""
    nb = read_notebook(path)
    if source is not None:
        nb.cells[index].source = source
    if outputs is not None:
        nb.cells[index].outputs = outputs
        nb.cells[index].execution_count = 3
    nbformat.write(nb, str(path))


def first_runs(pytester: pytest.Pytester, *args: str) -> None:
    """Run 1 (all four run, nb4 fails) and run 2 (only nb4 runs), in the pytester folder."""
    first, text = ran(pytester, *args)
    assert first == {"nb1.ipynb": "passed", "nb2.ipynb": "passed", "nb3.ipynb": "passed",
                     "nb4.ipynb": "failed"}, text
    assert "nbtest: 0 of 4 notebooks unchanged since their last pass, not run" in text
    second, text = ran(pytester, *args)
    assert second == {"nb4.ipynb": "failed"}, text
    assert "nbtest: 3 of 4 notebooks unchanged since their last pass" in text
    assert "  nb3.ipynb: unchanged since its pass (" in text  # -v lists them


def edit_steps(pytester: pytest.Pytester, root: Path, *args: str) -> None:
    """Each edit of the acceptance list, in `root`, and what then runs."""
    cwd = None if root == pytester.path else root
    (root / "pkg" / "b.py").write_text("def base():\n    return 21  # edited\n")
    assert set(ran(pytester, *args, cwd=cwd)[0]) == {"nb1.ipynb", "nb4.ipynb"}
    (root / "data" / "d.csv").write_text("x,y\n1,2\n3,5\n")
    assert set(ran(pytester, *args, cwd=cwd)[0]) == {"nb2.ipynb", "nb4.ipynb"}
    edit_cell(root / "nb3.ipynb", 0, source="# self-contained, and said so")
    edit_cell(root / "nb3.ipynb", 1, outputs=[nbformat.v4.new_output("stream", text="6\n")])
    assert set(ran(pytester, *args, cwd=cwd)[0]) == {"nb4.ipynb"}
    edit_cell(root / "nb3.ipynb", 1, source="y = sum(range(4))\nassert y == 6, y")
    assert set(ran(pytester, *args, cwd=cwd)[0]) == {"nb3.ipynb", "nb4.ipynb"}


@pytest.mark.parametrize("workers", [pytest.param([], id="serial"),
                                     pytest.param(["-n", "2"], id="xdist",
                                                  marks=NEEDS_XDIST)])
def test_acceptance(pytester: pytest.Pytester, project: Path, workers: list[str],
                    no_kernel_left) -> None:
    """Edit by edit, only what an edit can affect runs, and what failed before."""
    this_tests(nbtest.plugin.affected.AffectedSession.deselect,
               nbtest.plugin.affected.AffectedSession.pytest_sessionfinish,
               nbtest.affected.store.Checker.reasons, nbtest.inkernel.tracker_hooks.install)
    first_runs(pytester, *workers)
    edit_steps(pytester, project, *workers)
    no_kernel_left()


def git(*args: str, cwd: Path) -> None:
    """Run git quietly in `cwd` (no user configuration needed)."""
    subprocess.run(["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
                   cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
@NEEDS_XDIST
def test_fresh_clone_with_the_cache_copied(pytester: pytest.Pytester, project: Path,
                                           tmp_path_factory: pytest.TempPathFactory,
                                           no_kernel_left) -> None:
    """Content and relative paths only: a clone elsewhere, given the cache folder, agrees
    (serially and under -n 2); the one line names the commit of the passes."""
    this_tests(nbtest.affected.fingerprint.relative, nbtest.affected.fingerprint.git_commit,
               nbtest.plugin.affected.AffectedSession.pytest_terminal_summary)
    (project / ".gitignore").write_text(".pytest_cache/\njunit.xml\n")
    git("init", "-q", cwd=project)
    git("add", ".", cwd=project)
    git("commit", "-q", "-m", "project", cwd=project)
    first_runs(pytester)
    clone = tmp_path_factory.mktemp("elsewhere") / "clone"
    git("clone", "-q", str(project), str(clone), cwd=project)
    shutil.copytree(project / ".pytest_cache", clone / ".pytest_cache")
    head = subprocess.run(["git", "rev-parse", "--short=7", "HEAD"], cwd=clone,
                          capture_output=True, text=True, check=True).stdout.strip()
    outcomes, text = ran(pytester, cwd=clone)
    assert outcomes == {"nb4.ipynb": "failed"}, text
    assert f"3 of 4 notebooks unchanged since their last pass ({head}, " in text
    assert ran(pytester, "-n", "2", cwd=clone)[0] == {"nb4.ipynb": "failed"}
    edit_steps(pytester, clone)
    no_kernel_left()


def test_without_the_flag_and_after_cache_clear(pytester: pytest.Pytester, project: Path,
                                                 no_kernel_left) -> None:
    """Without the flag everything runs as before (no line); --cache-clear forgets."""
    this_tests("nbtest.plugin.pytest_collection_modifyitems", nbtest.affected.store.Checker.decide)
    ran(pytester)
    assert set(ran(pytester)[0]) == {"nb4.ipynb"}
    outcomes, text = ran(pytester, "--no-flag")
    assert set(outcomes) == ALL and "unchanged since" not in text
    outcomes, text = ran(pytester, "--cache-clear")
    assert set(outcomes) == ALL, text
    assert "nbtest: 0 of 4 notebooks unchanged" in text
    assert set(ran(pytester)[0]) == {"nb4.ipynb"}
    no_kernel_left()


def test_pyproject_and_nbtest_run_switch_it_on(pytester: pytest.Pytester, project: Path,
                                               run_cli, no_kernel_left) -> None:
    """`[tool.nbtest] affected = true` and `nbtest run --affected` are the same switch."""
    this_tests("nbtest.cli.cmd_run", "nbtest.config.NbTestConfig")
    proc = run_cli("run", "--root", ".", "--affected", "--", "-p", "no:randomly", "-q",
                   cwd=project)
    assert proc.returncode == 1 and "1 failed, 3 passed" in proc.stdout, proc.stdout
    (project / "pyproject.toml").write_text(
        "[tool.pytest.ini_options]\nnbtest = true\n\n[tool.nbtest]\naffected = true\n")
    outcomes, text = ran(pytester, "--no-flag")
    assert outcomes == {"nb4.ipynb": "failed"}, text
    no_kernel_left()


def test_nbtest_affected_explains(pytester: pytest.Pytester, project: Path, run_cli,
                                  no_kernel_left) -> None:
    """`nbtest affected [PATHS] [--json]` names what would run and what changed; no kernel
    starts (the cache is not touched)."""
    this_tests(nbtest.affected.cmd.run, nbtest.affected.cmd.decide,
               nbtest.affected.store.Decision.describe)
    proc = run_cli("affected", cwd=project)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "4 of 4 notebooks would run:"
    assert "  nb1.ipynb: never run with --nbtest-affected (no cache entry)" in proc.stdout
    ran(pytester)
    (project / "pkg" / "b.py").write_text("def base():\n    return 7 * 3\n")
    edit_cell(project / "nb3.ipynb", 1, source="y = 6")
    proc = run_cli("affected", cwd=project)
    lines = proc.stdout.splitlines()
    assert lines[:4] == ["3 of 4 notebooks would run:",
                         "  nb1.ipynb: file changed: pkg/b.py",
                         "  nb3.ipynb: code cell 2 changed",
                         "  nb4.ipynb: its last run (" + lines[3].split("(")[1]]
    assert lines[3].endswith(") failed: cell 1: AssertionError: nb4 fails")
    assert lines[4:] == ["1 unchanged since their last pass, not run:",
                         lines[5]] and lines[5].startswith("  nb2.ipynb: unchanged since")
    data = json.loads(run_cli("affected", "--json", "nb1.ipynb", "nb2.ipynb",
                              cwd=project).stdout)
    assert [d["notebook"] for d in data["run"]] == ["nb1.ipynb"]
    assert data["run"][0]["reasons"] == ["file changed: pkg/b.py"]
    assert [d["notebook"] for d in data["unchanged"]] == ["nb2.ipynb"]
    assert data["unchanged"][0]["passed"].endswith("Z")
    no_kernel_left()


def entry_of(root: Path, notebook: str) -> tuple[Path, dict]:
    """(file, data) of a notebook's cache entry."""
    path = Store(root / ENTRIES).path_for(notebook)
    return path, json.loads(path.read_text())


def test_changed_nbtest_interpreter_or_kernelspec_runs_everything(
        pytester: pytest.Pytester, project: Path, monkeypatch: pytest.MonkeyPatch,
        no_kernel_left) -> None:
    """Another nbtest version, Python or kernelspec: nothing is reused."""
    this_tests(nbtest.affected.fingerprint.kernelspec_identity,
               nbtest.affected.fingerprint.interpreter, nbtest.affected.fingerprint.nbtest_version)
    kernels = pytester.path.parent / "jupyter" / "kernels" / "python3"
    kernels.mkdir(parents=True)
    spec = {"argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "Python 3", "language": "python"}
    (kernels / "kernel.json").write_text(json.dumps(spec))
    monkeypatch.setenv("JUPYTER_PATH", str(kernels.parent.parent))
    ran(pytester)
    for key, value in (("nbtest", "0.0.1"), ("interpreter", "cpython-2.7.18")):
        for name in ALL:
            path, entry = entry_of(project, name)
            path.write_text(json.dumps({**entry, key: value}))
        assert f"nb2.ipynb: {key} changed ({value} -> " in run_affected(project)
        assert set(ran(pytester)[0]) == ALL
        assert set(ran(pytester)[0]) == {"nb4.ipynb"}
    (kernels / "kernel.json").write_text(json.dumps({**spec, "env": {"SOMETHING": "1"}}))
    assert "nb3.ipynb: the kernelspec 'python3' changed" in run_affected(project)
    assert set(ran(pytester)[0]) == ALL
    assert set(ran(pytester)[0]) == {"nb4.ipynb"}
    no_kernel_left()


def run_affected(root: Path) -> str:
    """The output of `nbtest affected` in `root`, its environment ours."""
    proc = subprocess.run([sys.executable, "-m", "nbtest.cli", "affected"], cwd=root,
                          capture_output=True, text=True, timeout=SESSION_TIMEOUT)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_cache_false_skips_and_depends(pytester: pytest.Pytester, no_kernel_left) -> None:
    """`cache: false` always runs; a `depends` glob's files are fingerprinted; a skipped
    notebook is shown skipped each time, and one that skips itself is run again."""
    this_tests(nbtest.affected.fingerprint.depends_files, nbtest.callbacks.affected.AffectedCapture)
    pytester.makefile(".toml", pyproject="[tool.pytest.ini_options]\nnbtest = true\n")
    (pytester.path / "blobs").mkdir()
    (pytester.path / "blobs" / "w.bin").write_bytes(b"\x00\x01")
    write_notebook(pytester.path / "always.ipynb", ["import time\nnow = time.time()"],
                   {"nbtest": {"cache": False}})
    write_notebook(pytester.path / "depends.ipynb", ["x = 1"],
                   {"nbtest": {"depends": ["blobs/*.bin"]}})
    write_notebook(pytester.path / "skipped.ipynb", ["x = 1"], {"nbtest": {"skip": "not now"}})
    write_notebook(pytester.path / "skips.ipynb", ["import pytest\npytest.skip('no data')"])
    first, _ = ran(pytester)
    assert first == {"always.ipynb": "passed", "depends.ipynb": "passed",
                     "skipped.ipynb": "skipped", "skips.ipynb": "skipped"}
    outcomes, text = ran(pytester)
    assert outcomes == {"always.ipynb": "passed", "skipped.ipynb": "skipped",
                        "skips.ipynb": "skipped"}, text
    assert "1 of 3 notebooks unchanged" in text  # the one skipped by metadata is not counted
    (pytester.path / "blobs" / "new.bin").write_bytes(b"new")
    assert "depends.ipynb" in ran(pytester)[0]
    (pytester.path / "blobs" / "new.bin").write_bytes(b"newer")
    assert "depends 'blobs/*.bin' changed: blobs/new.bin" in run_affected(pytester.path)
    no_kernel_left()


def test_corrupt_or_foreign_entries_mean_run_it(pytester: pytest.Pytester, project: Path,
                                                no_kernel_left) -> None:
    """An unreadable entry, or one of another format, is no error: the notebook runs and
    its entry is written anew, atomically (no temporary file left)."""
    this_tests(nbtest.affected.store.Store.load, "nbtest.files.write_atomic")
    ran(pytester)
    path1, _ = entry_of(project, "nb1.ipynb")
    path1.write_text('{"format": 1, "notebook": "nb1.ipy')
    path3, entry3 = entry_of(project, "nb3.ipynb")
    path3.write_text(json.dumps({**entry3, "format": 99}))
    report = run_affected(project)
    assert f"nb1.ipynb: its cache entry {path1.name} is unreadable" in report
    assert f"nb3.ipynb: its cache entry {path3.name} is of another format" in report
    outcomes, text = ran(pytester)
    assert set(outcomes) == {"nb1.ipynb", "nb3.ipynb", "nb4.ipynb"}, text
    assert entry_of(project, "nb1.ipynb")[1]["status"] == "passed"
    assert sorted(p.name for p in path1.parent.iterdir() if p.name.startswith(".")) == []
    assert len(list(path1.parent.iterdir())) == 4  # one small JSON file per notebook
    no_kernel_left()


def test_incomplete_fingerprint_is_not_reused(pytester: pytest.Pytester, project: Path,
                                              no_kernel_left) -> None:
    """A pass whose fingerprint is incomplete (the audit hook failed) and a dead kernel are
    never reused."""
    this_tests(nbtest.inkernel.tracker.Tracker.audit,
               nbtest.callbacks.affected.AffectedCapture.fingerprint)
    write_notebook(project / "hook.ipynb", [
        "ip = get_ipython()\n"
        "tracker = next(cb.__self__ for cb in ip.events.callbacks['post_run_cell']\n"
        "               if type(getattr(cb, '__self__', None)).__name__ == 'Tracker')\n"
        "tracker.roots = None  # from now on the audit hook fails",
        "open('data/d.csv').close()"])
    write_notebook(project / "dies.ipynb", ["import os\nos._exit(3)"])
    outcomes, _ = ran(pytester, "hook.ipynb", "dies.ipynb")
    assert outcomes == {"hook.ipynb": "passed", "dies.ipynb": "failed"}
    assert entry_of(project, "hook.ipynb")[1]["status"] == "incomplete"
    assert entry_of(project, "dies.ipynb")[1]["status"] == "failed"
    report = run_affected(project)
    assert "hook.ipynb: its last run (" in report, report
    assert "passed but its fingerprint is incomplete: " in report and "TypeError" in report
    assert set(ran(pytester, "hook.ipynb", "dies.ipynb")[0]) == {"hook.ipynb", "dies.ipynb"}
    no_kernel_left()


def test_per_cell_items(pytester: pytest.Pytester, project: Path, no_kernel_left) -> None:
    """With --nbtest-cells the cells of an unchanged notebook are deselected together; a
    run of some cells only leaves the notebook to run next time."""
    this_tests(nbtest.plugin.affected.AffectedSession.pytest_nbtest_notebook_done,
               nbtest.plugin.affected.AffectedSession.pytest_runtest_makereport)
    write_notebook(project / "cells.ipynb", ["x = 1", "x += 1", "assert x == 2"])
    first, _ = ran(pytester, "--nbtest-cells", "cells.ipynb", "nb3.ipynb")
    assert set(first) == {"cells.ipynb::cell[1]", "cells.ipynb::cell[2]",
                          "cells.ipynb::cell[3]", "nb3.ipynb::cell[2]"}
    outcomes, text = ran(pytester, "--nbtest-cells", "cells.ipynb", "nb3.ipynb")
    assert outcomes == {}, text
    assert "2 of 2 notebooks unchanged" in text
    assert ran(pytester, "cells.ipynb", "nb3.ipynb")[0] == {}  # one record serves both modes
    edit_cell(project / "cells.ipynb", 2, source="assert x == 2, x")
    some, _ = ran(pytester, "--nbtest-cells", "cells.ipynb::cell[1]")
    assert some == {"cells.ipynb::cell[1]": "passed"}
    assert "cells.ipynb: code cell 3 changed" in run_affected(project)
    no_kernel_left()


def test_written_files_are_products_not_inputs(pytester: pytest.Pytester, project: Path,
                                               no_kernel_left) -> None:
    """A file the notebook writes (and reads back) is not an input; files read are, the
    package's own modules are, the virtualenv's are not (their distributions are)."""
    this_tests(nbtest.inkernel.tracker.Tracker.report, nbtest.affected.fingerprint.distributions_of)
    write_notebook(project / "writes.ipynb", [
        "with open('data/out.txt', 'w') as fh:\n    fh.write('made here')",
        "from pkg.a import answer\nassert open('data/out.txt').read() == 'made here'",
        "import pytest"])
    ran(pytester, "writes.ipynb")
    entry = entry_of(project, "writes.ipynb")[1]
    assert entry["files"].pop("conftest.py") == "missing"  # one added there runs it
    assert sorted(entry["files"]) == ["pkg/__init__.py", "pkg/a.py", "pkg/b.py"]
    assert entry["dists"]["pytest"] == pytest.__version__
    assert "markers" in entry["settings"] and entry["cells"][0][0] == 1
    no_kernel_left()


def test_static_fingerprint_leaves_out_outputs_and_markdown(tmp_path: Path) -> None:
    """No kernel: markdown and stored outputs do not count, code, tags and options do, and
    the stored outputs of compared cells do."""
    this_tests(static_fingerprint)
    path = write_notebook(tmp_path / "n.ipynb", [("markdown", "# m"), "x = 1",
                                                 ("code", "print(1)", ["nbtest-check-output"])])
    config = NbTestConfig()

    def fingerprint(**options: object) -> dict:
        return static_fingerprint(read_notebook(path), NbTestConfig.of(**options) if options
                                  else config, path, tmp_path)

    base = fingerprint()
    assert base["notebook"] == "n.ipynb" and [n for n, _ in base["cells"]] == [2, 3]
    edit_cell(path, 0, source="# changed")
    edit_cell(path, 1, outputs=[nbformat.v4.new_output("stream", text="noise\n")])
    assert fingerprint() == base
    assert fingerprint(timeout=5)["settings"]["timeout"] == 5.0
    edit_cell(path, 2, outputs=[nbformat.v4.new_output("stream", text="1\n")])
    assert fingerprint()["cells"][1] != base["cells"][1]  # a compared cell's outputs count
    nb = read_notebook(path)
    nb.cells[1].metadata["tags"] = ["raises-exception"]
    nbformat.write(nb, str(path))
    assert fingerprint()["cells"][0] != base["cells"][0]


def test_tracker_tells_reads_from_writes(tmp_path: Path) -> None:
    """The audit hook's classification, fed the events CPython sends (no kernel)."""
    this_tests(nbtest.inkernel.tracker.Tracker.audit, nbtest.inkernel.tracker.Tracker._kept)
    root = tmp_path / "root"
    (root / "data").mkdir(parents=True)
    tracker = nbtest.inkernel.tracker.Tracker(str(tmp_path / "out.jsonl"), [str(root)])
    events = [(str(root / "data" / "r.csv"), "r", os.O_RDONLY),
              (str(root / "data" / "w.csv"), "w", os.O_WRONLY),
              (str(root / "data" / "rw.csv"), None, os.O_RDWR),
              (str(root / "data" / "fd.csv"), None, os.O_RDONLY),
              (str(tmp_path / "outside.csv"), "r", os.O_RDONLY), (7, "r", 0)]
    for args in events:
        tracker.audit("open", args)
    tracker.audit("exec", ("code",))
    # absent when read (its absence is the input), and outside the root before any cell
    assert tracker.absent == {str(root / "data" / "r.csv"), str(root / "data" / "fd.csv")}
    assert not tracker.read
    tracker.in_cell = True  # in a cell, a file outside the root is an input too
    (tmp_path / "outside.csv").write_text("x")
    tracker.audit("open", (str(tmp_path / "outside.csv"), "r", os.O_RDONLY))
    assert set(tracker.read) == {str(tmp_path / "outside.csv")}
    assert tracker.written == {str(root / "data" / "w.csv"), str(root / "data" / "rw.csv")}
    cached = str(root / "pkg" / "__pycache__" / "b.cpython-311.pyc")
    assert tracker._kept(cached) == str(root / "pkg" / "b.py")  # bytecode stands for source
    assert tracker._kept(str(root / ".git" / "HEAD")) is None
    tracker.audit("open", (object(), "r", 0))  # a hook must never raise into the notebook
    assert tracker.error.startswith("audit hook failed: TypeError")


def test_kernelspec_identity_survives_a_move(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernelspec that starts nbtest's own Python (by path or as `python`) and names the
    project root is the same in a clone elsewhere; another interpreter or variable is not."""
    this_tests(nbtest.affected.fingerprint.kernelspec_identity)
    folder = tmp_path / "kernels" / "k"
    folder.mkdir(parents=True)
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    monkeypatch.setattr(nbtest.kernel.specs, "_specs", {})

    def identity(argv0: str, root: Path = tmp_path, **env: str) -> str:
        spec = {"argv": [argv0, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "k", "language": "python", "env": env}
        (folder / "kernel.json").write_text(json.dumps(spec))
        nbtest.kernel.specs._specs.clear()
        nbtest.affected.fingerprint.kernelspec_identity.cache_clear()
        return nbtest.affected.fingerprint.kernelspec_identity("k", str(root))

    try:
        assert identity(sys.executable) == identity("python")
        assert identity("/elsewhere/venv/bin/python") != identity("python")
        assert identity("python", DATA=str(tmp_path / "d")) == identity(
            "python", tmp_path / "clone", DATA=str(tmp_path / "clone" / "d"))
        assert identity("python", DATA="1") != identity("python", DATA="2")
    finally:
        nbtest.affected.fingerprint.kernelspec_identity.cache_clear()
