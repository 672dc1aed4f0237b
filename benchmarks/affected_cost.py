#!/usr/bin/env python3
"""What `--nbtest-affected` costs (issue 17): the in-kernel tracker per cell, and collection.

    .venv/bin/python benchmarks/affected_cost.py [--cells 2000] [--notebooks 1000] [--runs 5]

1. Per cell: an IPython shell in this process runs the same cells before and after
   nbtest.inkernel.tracker is installed (its audit hook sees every audit event of the process,
   its post_run_cell handler writes what is new after each cell), so the difference is the
   tracker's cost per cell: trivial cells, and cells that open a project file. Also the same
   notebook run whole in a real kernel with and without the tracker (noisier: kernel start).
2. Collection: `pytest --collect-only -q` of N generated notebooks, without the flag and with
   `--nbtest-affected` and every notebook's cache entry present (the run after a full pass:
   every fingerprint is computed and compared, every notebook deselected). Whole-process wall
   time, medians, runs alternating.

3. Deciding (issue 27, item 9; `--decide`, alone): N notebooks (500) whose entries name, in
   all, F tracked files (5,000; each notebook 100 of them, plus a folder listing, environment
   variables and a product another notebook reads), every file unchanged so each comparison
   goes to the end: the in-process time of what the session does before any kernel starts
   (read each notebook, its static fingerprint, load and check its entry, hash the files,
   follow products), and the whole `pytest --collect-only --nbtest-affected`; the size of
   the entries folder.

Prints a Markdown section for benchmarks/RESULTS.md. Nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def per_cell_in_process(cells: int, root: Path) -> dict[str, float]:
    """Median µs per cell of IPython's run_cell, without then with the tracker."""
    from IPython.core.interactiveshell import InteractiveShell

    from nbtest.affected import tracker as kernel_tracker

    (root / "data.txt").write_text("x\n")
    shell = InteractiveShell.instance()
    here = os.getcwd()
    os.chdir(root)
    sources = {"trivial": "x = 1", "opens a project file": "_ = open('data.txt').read()"}

    def time_cells(source: str) -> float:
        samples = []
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(cells):
                shell.run_cell(source, store_history=False)
            samples.append((time.perf_counter() - t0) / cells * 1e6)
        return statistics.median(samples)

    before = {name: time_cells(src) for name, src in sources.items()}
    out = tempfile.NamedTemporaryFile(prefix="nbtest-affected-", suffix=".jsonl", delete=False)
    kernel_tracker.install({"file": out.name, "roots": [str(root)]})
    after = {name: time_cells(src) for name, src in sources.items()}
    os.unlink(out.name)
    os.chdir(here)
    result = {}
    for name in sources:
        result[f"{name}: without"] = before[name]
        result[f"{name}: with"] = after[name]
    return result


def per_cell_in_kernel(cells: int, root: Path, runs: int) -> dict[str, float]:
    """Real kernels: notebooks of 1 and of 1 + `cells` cells, each run without and with the
    tracker (AffectedCapture), alternating; medians. The per-cell figure is the difference of
    the slopes, the per-notebook one the difference at 1 cell (the tracker's start in the
    kernel, reading its file and hashing in the harness)."""
    import nbformat

    from nbtest import NbTestConfig, run_notebook
    from nbtest.callbacks.affected import AffectedCapture

    paths = {}
    for n in (1, 1 + cells):
        nb = nbformat.v4.new_notebook()
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                     "language": "python"}
        nb.cells = [nbformat.v4.new_code_cell(f"x = {i}") for i in range(n)]
        paths[n] = root / f"cells_{n}.ipynb"
        nbformat.write(nb, str(paths[n]))
    config = NbTestConfig.of(fork="no", gpu_min_free=0)
    run_notebook(paths[1], config, [AffectedCapture(root)])  # the harness's one-time lookups
    times: dict[tuple[int, bool], list[float]] = {}
    for _ in range(runs):
        for n, path in paths.items():
            for tracked in (False, True):
                callbacks = [AffectedCapture(root)] if tracked else []
                t0 = time.perf_counter()
                result = run_notebook(path, config, callbacks)
                times.setdefault((n, tracked), []).append(time.perf_counter() - t0)
                assert result.passed, result
    med = {key: statistics.median(values) for key, values in times.items()}
    big = 1 + cells
    return {"per cell µs": ((med[big, True] - med[1, True]) - (med[big, False] - med[1, False]))
            / cells * 1e6,
            "per notebook ms": (med[1, True] - med[1, False]) * 1e3,
            "without s": med[big, False], "with s": med[big, True]}


def collection(notebooks: int, runs: int, root: Path) -> dict[str, list[float]]:
    """Wall times of collect-only without --nbtest-affected, with it and every notebook
    unchanged, and with it and every notebook changed (a file its entry names is gone: every
    comparison made to the end, nothing deselected, so the rest of the session is the same
    as without the flag)."""
    sys.path.insert(0, str(REPO / "tests"))
    from conftest import write_notebook

    (root / "pkg").mkdir()
    (root / "pkg" / "__init__.py").write_text("")
    (root / "pkg" / "mod.py").write_text("VALUE = 1\n")
    (root / "pyproject.toml").write_text("[tool.pytest.ini_options]\nnbtest = true\n")
    cells = [("markdown", "# a notebook"), "from pkg.mod import VALUE",
             "total = sum(range(10)) + VALUE", "assert total == 46"]
    for i in range(notebooks):
        write_notebook(root / "nbs" / f"nb_{i:04d}.ipynb", cells)
    env = {**os.environ, "PYTHONPATH": str(root), "PYTEST_ADDOPTS": "-p no:randomly"}
    base = [sys.executable, "-m", "pytest", "--collect-only", "-q"]
    # One real pass makes a real entry; the others are that entry under their own names.
    subprocess.run([sys.executable, "-m", "pytest", "-q", "--nbtest-affected",
                    "nbs/nb_0000.ipynb"], cwd=root, env=env, check=True, capture_output=True)
    from nbtest.affected.store import Store

    store = Store(root / ".pytest_cache" / "d" / "nbtest-affected")
    entry = json.loads(store.path_for("nbs/nb_0000.ipynb").read_text())
    changed = {**entry, "files": {**entry["files"], "pkg/gone.py": "0" * 32}}

    def entries(data: dict) -> None:
        for i in range(notebooks):
            store.save({**data, "notebook": f"nbs/nb_{i:04d}.ipynb"})

    times: dict[str, list[float]] = {"off": [], "unchanged": [], "changed": []}
    for _ in range(runs):
        for name in times:
            entries(changed if name == "changed" else entry)
            flags = [] if name == "off" else ["--nbtest-affected"]
            t0 = time.perf_counter()
            proc = subprocess.run([*base, *flags], cwd=root, env=env, capture_output=True,
                                  text=True)
            times[name].append(time.perf_counter() - t0)
            expected = f"({notebooks} deselected)" if name == "unchanged" else \
                f"{notebooks} tests collected"
            assert expected in proc.stdout, proc.stdout[-2000:]
    return times


def deciding(notebooks: int, files: int, per: int, runs: int, root: Path) -> dict[str, Any]:
    """Seconds to decide what runs (in process, and a whole collect-only session), and the
    store's size, for `notebooks` notebooks naming `per` each of `files` files."""
    import nbformat

    from nbtest import NbTestConfig
    from nbtest.affected.fingerprint import (
        env_value,
        file_digest,
        kernelspec_identity,
        nbtest_code,
        static_fingerprint,
    )
    from nbtest.affected.store import Checker, Store, follow_products, new_entry
    from nbtest.inkernel.tracker import listing_digest

    sys.path.insert(0, str(REPO / "tests"))
    from conftest import write_notebook

    (root / "pyproject.toml").write_text("[tool.pytest.ini_options]\nnbtest = true\n")
    data = root / "data"
    data.mkdir()
    names = [f"data/f_{j:05d}.txt" for j in range(files)]
    for j, name in enumerate(names):
        (root / name).write_text(f"row {j}\n" * 20)
    digests = {name: file_digest(str(root / name)) for name in names}
    store = Store(root / ".pytest_cache" / "d" / "nbtest-affected")
    config = NbTestConfig()
    for i in range(notebooks):
        path = write_notebook(root / "nbs" / f"nb_{i:04d}.ipynb",
                              [f"import os\nN = {i}", "total = sum(range(10))",
                               "assert total == 45"])
        static = static_fingerprint(nbformat.read(str(path), as_version=4), config, path, root)
        picked = [names[(i * per + k) % files] for k in range(per)]
        made = f"nbs/out_{i:04d}.json"  # read by the next notebook: a chain of products
        (root / made).write_text("{}")
        fed = {f"nbs/out_{i - 1:04d}.json": file_digest(str(root / "nbs/out_0000.json"))}
        store.save(new_entry(
            static["notebook"], "passed", None, settings=static["settings"],
            cells=static["cells"], depends={}, cache=True,
            files={**{name: digests[name] for name in picked}, **(fed if i else {})},
            listings={"data": listing_digest(str(data)) or "missing"},
            env={name: env_value(name) for name in ("HOME", "NB_LEVEL", "LANG")},
            exists={"data": "folder"}, products=[made], dists={},
            kernelspec=kernelspec_identity(static["settings"]["kernel"], str(root)),
            **({"nbtest_code": nbtest_code()} if nbtest_code() else {})))
    size = sum(p.stat().st_size for p in store.folder.iterdir())
    paths = sorted((root / "nbs").glob("*.ipynb"))
    in_process = []
    for _ in range(runs):
        t0 = time.perf_counter()
        checker = Checker(root, store, 7.0)
        decisions = []
        for path in paths:
            nb = nbformat.read(str(path), as_version=4)
            decisions.append(checker.decide(static_fingerprint(nb, config, path, root)))
        follow_products(decisions, root)
        in_process.append(time.perf_counter() - t0)
        unchanged = sum(not d.runs for d in decisions)
        assert unchanged == notebooks, [d.reasons for d in decisions if d.runs][:3]
    env = {**os.environ, "PYTEST_ADDOPTS": "-p no:randomly"}
    session = []
    for _ in range(runs):
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                               "--nbtest-affected"], cwd=root, env=env, capture_output=True,
                              text=True)
        session.append(time.perf_counter() - t0)
        assert f"({notebooks} deselected)" in proc.stdout, proc.stdout[-2000:]
    return {"in_process": in_process, "session": session, "size": size,
            "references": notebooks * per}


def main() -> None:
    """Measure and print the Markdown section."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=2000)
    parser.add_argument("--notebooks", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--decide", action="store_true",
                        help="only the deciding benchmark (issue 27, item 9)")
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--per-notebook", type=int, default=100)
    args = parser.parse_args()
    if args.decide:
        with tempfile.TemporaryDirectory(prefix="nbtest-affected-bench-") as tmp:
            found = deciding(args.notebooks, args.files, args.per_notebook, args.runs,
                             Path(tmp))
        print(f"| deciding, {args.notebooks} notebooks, {args.files} tracked files "
              f"({found['references']} references) | median s | runs (s) |\n| --- | --- | --- |")
        for name, label in (("in_process", "in process: read, fingerprint, compare, products"),
                            ("session", "`pytest --collect-only --nbtest-affected`, whole")):
            print(f"| {label} | {statistics.median(found[name]):.2f} | "
                  f"{', '.join(f'{t:.2f}' for t in found[name])} |")
        print(f"\nentries folder: {found['size'] / 2**20:.2f} MiB "
              f"({found['size'] // args.notebooks} bytes per notebook)")
        return
    with tempfile.TemporaryDirectory(prefix="nbtest-affected-bench-") as tmp:
        root = Path(tmp)
        (root / "collect").mkdir()
        collect = collection(args.notebooks, args.runs, root / "collect")
        (root / "kernel").mkdir()
        kernel = per_cell_in_kernel(300, root / "kernel", args.runs)
        (root / "cells").mkdir()
        cells = per_cell_in_process(args.cells, root / "cells")
        shutil.rmtree(root / "collect", ignore_errors=True)
    print(f"| shell, {args.cells} cells x 5 | µs per cell (median of 5) |\n| --- | --- |")
    for name, value in cells.items():
        print(f"| {name} | {value:.1f} |")
    print(f"\nreal kernels, notebooks of 1 and 301 cells `x = i`, medians of {args.runs}: "
          f"301 cells {kernel['without s']:.3f} s without, {kernel['with s']:.3f} s with; "
          f"per cell {kernel['per cell µs']:.0f} µs, per notebook "
          f"{kernel['per notebook ms']:.1f} ms")
    off = statistics.median(collect["off"])
    print(f"\n| collect-only, {args.notebooks} notebooks | median s | runs (s) | / without |"
          "\n| --- | --- | --- | --- |")
    for name, label in (("off", "without --nbtest-affected"),
                        ("unchanged", "with it, every notebook unchanged (all deselected)"),
                        ("changed", "with it, every notebook changed (all compared, all run)")):
        runs = collect[name]
        print(f"| {label} | {statistics.median(runs):.2f} | "
              f"{', '.join(f'{t:.2f}' for t in runs)} | {statistics.median(runs) / off:.2f} |")


if __name__ == "__main__":
    main()
