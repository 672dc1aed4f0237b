"""The sets: the notebooks (and .py files) each comparison runs, generated into a folder.

Sets A-I are bench.py's (sizes below, described in benchmarks/README.md); H and H' (H2) are
bench_preload.py's (heavy imports); the nbdev-like project is bench_nbdev.py's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

KERNEL = "python3"
KERNELSPEC = {"name": KERNEL, "display_name": "Python 3", "language": "python"}

# bench.py: A = N_A notebooks of CELLS_A trivial cells, B = N_B of CELLS_B small cells (B1: the
# same cut to one cell), C sleeps SLEEP_S, D = N_D notebooks (and N_D .py files) to collect.
SLEEP_S = 2.0
N_A, CELLS_A = 20, 3
N_B, CELLS_B = 5, 30
N_D = 200


def code_cell(source: str, cell_id: str | None = None) -> dict[str, Any]:
    cell: dict[str, Any] = {"cell_type": "code", "execution_count": None}
    if cell_id is not None:
        cell["id"] = cell_id
    cell.update({"metadata": {}, "outputs": [], "source": source})
    return cell


def write_notebook(path: Path, cells: list[dict[str, Any]], **metadata: Any) -> None:
    """An nbformat 4.5 notebook of these cells, for the bench venv's `python3` kernel."""
    nb = {"cells": cells, "metadata": {"kernelspec": dict(KERNELSPEC), **metadata},
          "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(nb, indent=1) + "\n")


# ----------------------------------------------------------------------------- A-I (bench.py)

TRIVIAL = ["x = 1", "y = x + 1", "print(y)"]


def small_cells(n: int, seed: int) -> list[str]:
    return [f"v{i} = {seed} * {i} + 1\nv{i} * 2" if i % 2 else f"print('cell', {i}, {seed})"
            for i in range(n)]


def write_code_notebook(path: Path, sources: list[str]) -> None:
    write_notebook(path, [code_cell(src, f"c{i:03d}") for i, src in enumerate(sources)],
                   language_info={"name": "python"})


def generate(root: Path) -> dict[str, Path]:
    """Sets W (the warm-up), A, B, B1, C, D, Dpy, E and I, each a folder below `root`."""
    (root / "pytest.ini").write_text("[pytest]\n")  # rootdir and config stop here
    sets = {name: root / name for name in ("W", "A", "B", "B1", "C", "D", "Dpy", "E", "I")}
    for folder in sets.values():
        folder.mkdir()
    write_code_notebook(sets["W"] / "warmup.ipynb", TRIVIAL)
    for i in range(N_A):
        write_code_notebook(sets["A"] / f"trivial_{i:03d}.ipynb", TRIVIAL)
    for i in range(N_B):
        write_code_notebook(sets["B"] / f"cells_{i:02d}.ipynb", small_cells(CELLS_B, i))
        write_code_notebook(sets["B1"] / f"cells_{i:02d}.ipynb", small_cells(1, i))
    write_code_notebook(sets["C"] / "sleep.ipynb", ["import time", f"time.sleep({SLEEP_S})"])
    for i in range(N_D):
        write_code_notebook(sets["D"] / f"trivial_{i:03d}.ipynb", TRIVIAL)
        (sets["Dpy"] / f"test_trivial_{i:03d}.py").write_text(
            "def test_trivial():\n    x = 1\n    assert x + 1 == 2\n")
    write_code_notebook(sets["E"] / "trivial.ipynb", TRIVIAL)
    (sets["I"] / "test_one.py").write_text("def test_one():\n    assert True\n")
    return sets


# ----------------------------------------------------------------------------- H, H' (preload)

# Each set: 10 notebooks importing these, a 100x100 matmul and an assert.
PRELOAD_SETS = {"H": ["numpy", "torch"], "H2": ["numpy", "torch", "pandas", "matplotlib"]}
PRELOAD_CELLS = ["import numpy as np, torch{extra}",
                 "a = torch.randn(100, 100)\nb = a @ a.T\nassert b.shape == (100, 100)",
                 "assert np.isfinite(b.numpy()).all()"]


def make_preload_set(root: Path, name: str) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "pytest.ini").write_text("[pytest]\n")
    extra = "".join(f"\nimport {m}" for m in PRELOAD_SETS[name] if m not in ("numpy", "torch"))
    for i in range(10):
        write_notebook(folder / f"nb{i:02d}.ipynb",
                       [code_cell(src.format(extra=extra)) for src in PRELOAD_CELLS])
    return folder


# ----------------------------------------------------------------------------- nbdev project

# nbdev 3 reads its settings from pyproject.toml (nbdev 2 from settings.ini, which nbdev 3
# refuses); nbtest reads either.
def nbdev_pyproject(name: str, description: str) -> str:
    """The pyproject.toml of a generated nbdev project whose package is `name`."""
    return f"""[build-system]
requires = ["setuptools>=77"]
build-backend = "setuptools.build_meta"

[project]
name = "{name}"
dynamic = ["version"]
description = "{description}"
requires-python = ">=3.9"

[tool.setuptools.dynamic]
version = {{attr = "{name}.__version__"}}

[tool.nbdev]
tst_flags = "slow"
"""


NBDEV_PYPROJECT = nbdev_pyproject("nbdevbench", "bench")
NBDEV_PACKAGE = ('__version__ = "0.0.1"\nimport numpy as np\n\n'
                 "def scale(values, k=2):\n    return np.asarray(values) * k\n")
NBDEV_IMPORTS = ("#|hide\nimport numpy as np, pandas as pd\nimport matplotlib\n"
                 "matplotlib.use('Agg')\nimport matplotlib.pyplot as plt\n"
                 "from nbdevbench import scale")
NBDEV_TINY = ["x = scale([1, 2, 3])", "assert list(x) == [2, 4, 6]", "x.sum()"]
NBDEV_HEAVY = ["df = pd.DataFrame({'a': np.arange(20000), 'b': np.random.rand(20000)})",
               "g = df.groupby(df.a % 10).b.mean()\nassert len(g) == 10",
               "fig, ax = plt.subplots()\nax.plot(g.index, g.values)\nplt.close(fig)"]


def make_nbdev_project(root: Path) -> Path:
    """An nbdev project: package `nbdevbench`, 20 notebooks in nbs/ (every 4th heavier)."""
    project = root / "proj"
    (project / "nbdevbench").mkdir(parents=True)
    (project / "nbs").mkdir()
    (project / "pyproject.toml").write_text(NBDEV_PYPROJECT)
    (project / "pytest.ini").write_text("[pytest]\n")
    (project / "nbdevbench" / "__init__.py").write_text(NBDEV_PACKAGE)
    for i in range(20):
        cells = [{"cell_type": "markdown", "metadata": {}, "source": f"# Notebook {i}"},
                 code_cell(NBDEV_IMPORTS)]
        cells += [code_cell(s) for s in (NBDEV_TINY * 3 + (NBDEV_HEAVY if i % 4 == 0 else []))]
        write_notebook(project / "nbs" / f"{i:02d}_page.ipynb", cells)
    return project
