"""The tools compared: the command lines of nbtest and its peers, and what each must print.

`comparison` builds bench.py's cases for sets A-I (nbtest, nbmake, nbval-lax, a raw nbclient
loop, serial and `-n 2`, `nbtest execute` against `jupyter execute`, the floor plugin);
`preload_tools` and `nbdev_tools` the command lines of bench_preload.py and bench_nbdev.py.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

from .runner import Case
from .sets import CELLS_A, N_A, N_B, N_D
from .venv import REPO

# Each tool runs with the other notebook plugins switched off, as if it were installed alone.
NO_PEERS = {
    "nbtest": ["-p", "no:nbmake", "-p", "no:nbval"],
    "nbmake": ["-p", "no:nbtest", "-p", "no:nbval"],
    "nbval": ["-p", "no:nbtest", "-p", "no:nbmake"],
    "plain": ["-p", "no:nbtest", "-p", "no:nbmake", "-p", "no:nbval"],
}
# The flag that makes pytest run notebooks with each tool (the warm-up runs each once).
NOTEBOOK_FLAG = {"nbtest": "--nbtest", "nbmake": "--nbmake", "nbval": "--nbval-lax"}

RAW_NBCLIENT = """\
import glob, nbformat, nbclient
n = 0
for path in sorted(glob.glob('*.ipynb')):
    nb = nbformat.read(path, as_version=4)
    nbclient.execute(nb, cwd='.')
    n += 1
print(f'raw nbclient: executed {n} notebooks')
"""


def pytest_cmd(py: str, tool: str, *flags: str) -> list[str]:
    """pytest with `tool`'s plugin alone (and no cache) under the interpreter `py`."""
    return [py, "-m", "pytest", "-p", "no:cacheprovider", *NO_PEERS[tool], *flags]


# ----------------------------------------------------------------------------- checks


def passed_count(output: str) -> int | None:
    m = re.findall(r"(\d+) passed", output)
    return int(m[-1]) if m else None


def collected_count(output: str) -> int | None:
    m = re.findall(r"(\d+) tests? collected", output)
    return int(m[-1]) if m else None


def expect_passed(n: int) -> Callable[[str], str | None]:
    def check(output: str) -> str | None:
        got = passed_count(output)
        if got != n or re.search(r"\d+ (failed|error)", output):
            return f"expected {n} passed, got {got}"
        return None
    return check


def expect_collected(n: int) -> Callable[[str], str | None]:
    def check(output: str) -> str | None:
        got = collected_count(output)
        return None if got == n else f"expected {n} collected, got {got}"
    return check


def expect_text(text: str) -> Callable[[str], str | None]:
    def check(output: str) -> str | None:
        return None if text in output else f"{text!r} not in output"
    return check


def expect_files(*paths: Path) -> Callable[[str], str | None]:
    def check(output: str) -> str | None:
        missing = [p.name for p in paths if not p.exists()]
        return f"no output written: {missing}" if missing else None
    return check


# ----------------------------------------------------------------------------- bench.py


def comparison(py: str, venv: Path,
               sets: dict[str, Path]) -> tuple[dict[str, list[Case]], Case]:
    """bench.py's cases by set (A, B, B1, C, E, D, I), and the --rss case (200 notebooks)."""
    s = sets

    def pytest(tool: str, *flags: str) -> list[str]:
        return pytest_cmd(py, tool, *flags)

    def notebook_cases(folder: Path, n: int, xdist: bool, with_nbval: bool,
                       prefix: str) -> list[Case]:
        cases = [Case(f"{prefix}.nbtest", "pytest --nbtest",
                      pytest("nbtest", "--nbtest", "-q", "."), folder, expect_passed(n)),
                 Case(f"{prefix}.nbmake", "pytest --nbmake",
                      pytest("nbmake", "--nbmake", "-q", "."), folder, expect_passed(n))]
        if xdist:
            cases += [Case(f"{prefix}.nbtest-n2", "pytest --nbtest -n 2",
                           pytest("nbtest", "--nbtest", "-n", "2", "-q", "."), folder,
                           expect_passed(n)),
                      Case(f"{prefix}.nbmake-n2", "pytest --nbmake -n 2",
                           pytest("nbmake", "--nbmake", "-n", "2", "-q", "."), folder,
                           expect_passed(n))]
        if with_nbval:
            cases.append(Case(f"{prefix}.nbval", "pytest --nbval-lax",
                              pytest("nbval", "--nbval-lax", "-q", "."), folder,
                              expect_passed(N_A * CELLS_A)))
        cases.append(Case(f"{prefix}.raw", "raw nbclient loop", [py, "-c", RAW_NBCLIENT], folder,
                          expect_text(f"executed {n} notebooks")))
        return cases

    groups: dict[str, list[Case]] = {}
    groups["A"] = notebook_cases(s["A"], N_A, xdist=True, with_nbval=True, prefix="A")
    groups["B"] = notebook_cases(s["B"], N_B, xdist=False, with_nbval=False, prefix="B")
    # B1 only serves the per-cell slope, which the acceptance compares for these two.
    groups["B1"] = [c for c in notebook_cases(s["B1"], N_B, xdist=False, with_nbval=False,
                                              prefix="B1")
                    if c.key in ("B1.nbtest", "B1.raw")]
    groups["C"] = [
        Case("C.nbtest", "pytest --nbtest", pytest("nbtest", "--nbtest", "-q", "."),
             s["C"], expect_passed(1)),
        Case("C.nbmake", "pytest --nbmake", pytest("nbmake", "--nbmake", "-q", "."),
             s["C"], expect_passed(1)),
        # Not a tool: what no harness that starts its kernel inside pytest can beat.
        Case("C.floor", "floor: bare plugin, kernel spawned at plugin import",
             pytest("plain", "-p", "floor_plugin", "-q", "."), s["C"],
             expect_passed(1), env={"PYTHONPATH": str(REPO / "benchmarks")})]
    e = s["E"]
    groups["E"] = [
        Case("E.nbtest", "nbtest execute",
             [str(venv / "bin" / "nbtest"), "execute", "trivial.ipynb",
              "--output", "out-nbtest.ipynb", "--no-progress"], e,
             expect_files(e / "out-nbtest.ipynb")),
        Case("E.jupyter", "jupyter execute",
             [str(venv / "bin" / "jupyter"), "execute", "trivial.ipynb",
              "--output=out-jupyter"], e, expect_files(e / "out-jupyter.ipynb"))]
    groups["D"] = [
        Case("D.nbtest", "pytest --nbtest --collect-only",
             pytest("nbtest", "--nbtest", "--collect-only", "-q", "."), s["D"],
             expect_collected(N_D)),
        Case("D.nbmake", "pytest --nbmake --collect-only",
             pytest("nbmake", "--nbmake", "--collect-only", "-q", "."), s["D"],
             expect_collected(N_D)),
        Case("D.plain", "pytest --collect-only (200 .py files)",
             pytest("plain", "--collect-only", "-q", "."), s["Dpy"],
             expect_collected(N_D))]
    groups["I"] = [
        Case("I.with", "pytest --co -q (nbtest plugin loaded)",
             pytest("nbtest", "--co", "-q", "."), s["I"], expect_collected(1)),
        Case("I.without", "pytest --co -q -p no:nbtest",
             pytest("plain", "--co", "-q", "."), s["I"], expect_collected(1))]
    rss_case = Case("R.nbtest200", "pytest --nbtest (200 notebooks, serial)",
                    pytest("nbtest", "--nbtest", "-q", "."), s["D"], expect_passed(N_D))
    return groups, rss_case


# ----------------------------------------------------------------------------- the others


FLOOR_KERNELS = str(REPO / "benchmarks" / "floor_kernels.py")


def floor_cmd(py: str, folder: str, preload: str, jobs: int) -> list[str]:
    """floor_kernels.py: a fresh kernel per notebook, `jobs` at a time, and no pytest."""
    return [py, FLOOR_KERNELS, folder, "--preload", preload, "--jobs", str(jobs)]


def floor_in_pytest_cmd(py: str, modules: list[str], workers: list[str]) -> list[str]:
    """floor_xdist.py: a fresh kernel per notebook in pytest, its template started at plugin
    import (`env` passes the preload: the plugin acts before pytest reads any option)."""
    return ["env", f"PYTHONPATH={REPO / 'benchmarks'}", f"NBTEST_FLOOR_PRELOAD={','.join(modules)}",
            *pytest_cmd(py, "plain", "-q", "-p", "floor_xdist", *workers)]


def preload_tools(py: str, modules: list[str], workers: list[str]) -> dict[str, list[str]]:
    """bench_preload.py's tools, serial (`workers` empty) or with `workers` (`-n 2`), and the
    floors: one kernel at a time beside the serial runs, two beside `-n 2`, without pytest
    and inside it."""
    pt = [py, "-m", "pytest", "-q"]
    declared = f"--nbtest-preload={','.join(modules)}"
    # nbval's cells must stay on one worker.
    nbval_dist = ["--dist", "loadfile"] if workers else []
    nbtest = [*pt, *NO_PEERS["nbtest"], "--nbtest"]
    return {
        "nbmake": [*pt, *NO_PEERS["nbmake"], "--nbmake", *workers],
        "nbval-lax": [*pt, *NO_PEERS["nbval"], "--nbval-lax", *nbval_dist, *workers],
        "nbtest (no preload)": [*nbtest, *workers],
        "nbtest (preload declared)": [*nbtest, declared, *workers],
        "nbtest (preload auto)": [*nbtest, "--nbtest-preload=auto", *workers],
        "floor: a kernel per notebook, no pytest": floor_cmd(py, ".", ",".join(modules),
                                                             2 if workers else 1),
        "floor: a kernel per notebook, in pytest": floor_in_pytest_cmd(py, modules, workers),
    }


def nbdev_tools(py: str) -> dict[str, list[str]]:
    """bench_nbdev.py's tools, run in the nbdev project (nbdev-test is in py's bin folder)."""
    bindir = Path(py).parent
    pt = [py, "-m", "pytest", "-q", "nbs"]
    nbtest = [*pt, *NO_PEERS["nbtest"], "--nbtest"]
    nbmake = [*pt, *NO_PEERS["nbmake"], "--nbmake"]
    return {
        "nbdev_test serial": [str(bindir / "nbdev-test"), "--n-workers", "0"],
        "nbdev_test parallel": [str(bindir / "nbdev-test")],
        "nbtest serial, no preload": nbtest,
        "nbtest serial, preload auto": [*nbtest, "--nbtest-preload=auto"],
        "nbtest -n 2, no preload": [*nbtest, "-n", "2"],
        "nbtest -n 2, preload auto": [*nbtest, "--nbtest-preload=auto", "-n", "2"],
        "nbmake serial": nbmake,
        "nbmake -n 2": [*nbmake, "-n", "2"],
        "floor: a kernel per notebook, no pytest, 1 at a time": floor_cmd(py, "nbs", "auto", 1),
        "floor: a kernel per notebook, no pytest, 2 at a time": floor_cmd(py, "nbs", "auto", 2),
    }
