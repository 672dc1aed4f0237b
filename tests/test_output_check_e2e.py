"""Output checks end to end: real kernels through run_notebook, real pytest sessions
(`--nbtest`, `--nbtest-cells`, xdist), `nbtest execute --update-outputs`, and the verdicts of
`pytest --nbval-lax` on the same notebooks where nbval is installed.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nbformat
import pytest
from helpers.pytest_sessions import junit_outcomes, output, run_pytest

from nbtest import this_tests
from nbtest.callbacks.outputs import OutputCheck
from nbtest.config import NbTestConfig
from nbtest.execute import run_notebook
from nbtest.failure_text import failure_text
from nbtest.outputs.update import write_updated_outputs

pytest_plugins = ["pytester"]

RED_PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLv"
           "AAAAAElFTkSuQmCC")
BLUE_PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGNgYPgPAAEDAQAIicLs"
            "AAAAAElFTkSuQmCC")


def out(text: str, name: str = "stdout") -> dict[str, Any]:
    return {"output_type": "stream", "name": name, "text": text}


def res(text: str, count: int = 1) -> dict[str, Any]:
    return {"output_type": "execute_result", "execution_count": count, "metadata": {},
            "data": {"text/plain": text}}


def ran(source: str, outputs: list[dict[str, Any]], count: int = 1,
        tags: list[str] | None = None) -> dict[str, Any]:
    """A code cell as Jupyter saved it after running: outputs and an execution count."""
    return {"source": source, "outputs": [nbformat.from_dict(o) for o in outputs],
            "execution_count": count, "tags": tags}


CHECKED_HELLO = ran("# NBVAL_CHECK_OUTPUT\nprint('hello')", [out("hello\n")], 1)
# Notebooks whose verdict is the same under nbval-lax and nbtest: name -> (cells, passes).
AGREE: dict[str, tuple[list[Any], bool]] = {
    "agree_pass.ipynb": ([
        ("markdown", "# checks"),
        CHECKED_HELLO,
        ran("print(1)", [out("999\n")], 2),  # unmarked: not compared (lax)
        ran("# NBVAL_IGNORE_OUTPUT\n# NBVAL_CHECK_OUTPUT\nprint(2)", [out("2\n")], 3),
        ran("print('changed')", [out("stored\n")], 4, tags=["nbval-ignore-output"]),
        ran("raise ValueError('bad')", [{"output_type": "error", "ename": "ValueError",
                                         "evalue": "bad", "traceback": ["..."]}], 5,
            tags=["raises-exception", "nbval-check-output"]),
        ran("# NBVAL_CHECK_OUTPUT\nimport base64\nfrom IPython.display import Image, display\n"
            f"display(Image(data=base64.b64decode({RED_PNG!r})))",
            [{"output_type": "display_data", "metadata": {},
              "data": {"image/png": BLUE_PNG, "text/plain": "<IPython.core.display.Image "
                                                            "object>"}}], 6),
        ran("# NBVAL_CHECK_OUTPUT\nx = 1", [], 7),
    ], True),
    "agree_changed.ipynb": ([CHECKED_HELLO,
                             ran("# NBVAL_CHECK_OUTPUT\nprint('goodbye')", [out("hello\n")], 2)],
                            False),
    "agree_error.ipynb": ([ran("1 / 0", [], 1)], False),
    "agree_stderr.ipynb": ([ran("# NBVAL_CHECK_OUTPUT\nimport sys\nprint('ok')\n"
                                "print('warning: new', file=sys.stderr)", [out("ok\n")], 1)],
                           False),
}
# nbval's known false failures, fixed by nbtest's default sanitizers: nbval fails, nbtest passes.
FALSE_FAILURES: dict[str, list[Any]] = {
    "memory_address.ipynb": [ran("# NBVAL_CHECK_OUTPUT\nclass Foo: pass\nFoo()",
                                 [res("<__main__.Foo at 0x7f00deadbeef>")], 1)],
    "timestamp.ipynb": [ran("# NBVAL_CHECK_OUTPUT\nimport datetime\n"
                            "print('saved', datetime.datetime.now())",
                            [out("saved 2001-01-01 00:00:00.000001\n")], 1)],
    "progress_bar.ipynb": [ran(
        "# NBVAL_CHECK_OUTPUT\nimport sys, time\nfor i in range(4):\n"
        "    rate = 1000 + time.perf_counter_ns() % 99991\n"
        "    bar = '#' * i + ' ' * (3 - i)\n"
        "    print(f'\\r{i}/3 |{bar}| [00:0{i}<00:00, {rate}.00it/s]', end='', file=sys.stderr)\n"
        "print(file=sys.stderr)",
        [out("0/3 |   | [00:00<?, ?it/s]\r3/3 |###| [00:07<00:00, 1.25it/s]\n", "stderr")], 1)],
    "duration.ipynb": [ran("# NBVAL_CHECK_OUTPUT\n%time x = sum(range(10))",
                           [out("CPU times: user 3 µs, sys: 1 µs, total: 4 µs\n"
                                "Wall time: 999 ms\n")], 1)],
}


@pytest.fixture
def write(tmp_path: Path, make_notebook: Callable[..., Path]) -> Callable[..., Path]:
    """`write(name, cells, folder=tmp_path)`: a notebook with stored outputs."""

    def make(name: str, cells: list[Any], folder: Path | None = None) -> Path:
        return make_notebook((folder or tmp_path) / name, cells)

    return make


def check(path: Path, **options: Any) -> Any:
    """Run `path` in a real kernel with the output check, options as on the command line."""
    config = NbTestConfig.of(**options)
    return run_notebook(path, config, callbacks=[OutputCheck.from_config(config)])


# -- real kernels through run_notebook ---------------------------------------------------------
def test_agreeing_notebooks_give_their_verdicts(write, no_kernel_left) -> None:
    this_tests(OutputCheck.check_cell, run_notebook)
    for name, (cells, passes) in AGREE.items():
        result = check(write(name, cells))
        assert result.passed is passes, (name, failure_text(result))
    no_kernel_left()


@pytest.mark.parametrize("name", sorted(FALSE_FAILURES))
def test_default_sanitizers_fix_nbvals_false_failures(write, name: str) -> None:
    this_tests(OutputCheck.check_cell, "nbtest.outputs.sanitize.SanitizerSet.apply")
    result = check(write(name, FALSE_FAILURES[name]))
    assert result.passed, failure_text(result)
    assert result.extras["outputs_differ"] == []
    assert list(result.extras["compared_outputs"]) == [1]


def test_changed_output_fails_with_the_cell_number_and_a_diff(write) -> None:
    this_tests(OutputCheck.check_cell, failure_text, "nbtest.outputs.compare.unified_diff")
    path = write("changed.ipynb", [("markdown", "# t"), CHECKED_HELLO,
                                   ran("# NBVAL_CHECK_OUTPUT\nprint('a')\nprint('goodbye')",
                                       [out("a\nhello\n")], 2)])
    result = check(path)
    assert not result.passed
    text = failure_text(result)
    lines = text.splitlines()
    assert lines[0] == "cell 3: output differs (stdout)"
    assert "--- expected stdout" in lines and "+++ actual stdout" in lines
    assert " a" in lines and "-hello" in lines and "+goodbye" in lines
    assert result.extras["outputs_differ"] == [3]


def test_check_outputs_compares_every_cell_that_ran(write) -> None:
    this_tests(OutputCheck.check_cell, "nbtest.outputs.compare.is_compared")
    path = write("all.ipynb", [ran("print(1)", [out("999\n")], 1),
                               ran("# NBVAL_IGNORE_OUTPUT\nprint(2)", [out("0\n")], 2),
                               {"source": "print(3)"}])  # never run: not compared
    assert check(path).passed
    result = check(path, check_outputs=True)
    assert result.failed_cell is not None and result.failed_cell.number == 1
    assert list(result.extras["compared_outputs"]) == [1]


def test_tolerant_float(write) -> None:
    this_tests(OutputCheck.check_cell, "nbtest.outputs.compare.texts_match")
    path = write("loss.ipynb", [ran("# NBVAL_CHECK_OUTPUT\nprint('loss', 0.31416)",
                                    [out("loss 0.31415\n")], 1)])
    assert check(path).failed_cell is not None
    assert check(path, rtol=1e-4).passed


def test_images_are_checked_for_presence(write) -> None:
    this_tests(OutputCheck.check_cell, "nbtest.outputs.compare.compare_outputs")
    path = write("noimage.ipynb", [ran("# NBVAL_CHECK_OUTPUT\nprint('no picture today')",
                                       [{"output_type": "display_data", "metadata": {},
                                         "data": {"image/png": RED_PNG, "text/plain": "<I>"}},
                                        out("no picture today\n")], 1)])
    result = check(path)
    assert failure_text(result).startswith("cell 1: output differs (image/png, text/plain)")


def test_images_by_pixels(write) -> None:
    this_tests(OutputCheck.check_cell, "nbtest.outputs.compare.image_difference")
    pytest.importorskip("PIL")
    shown = ("# NBVAL_CHECK_OUTPUT\nimport base64\nfrom IPython.display import Image, display\n"
             f"display(Image(data=base64.b64decode({RED_PNG!r})))")
    stored = {"output_type": "display_data", "metadata": {},
              "data": {"image/png": BLUE_PNG, "text/plain": "<IPython.core.display.Image "
                                                            "object>"}}
    path = write("pixels.ipynb", [ran(shown, [stored], 1)])
    assert check(path).passed
    result = check(path, compare_images=True)
    assert "image/png: pixels differ" in failure_text(result)


def test_real_tqdm_time_and_reprs_rerun_the_same(tmp_path: Path, write) -> None:
    """A notebook run once and saved, run again: its volatile outputs all compare equal."""
    this_tests(OutputCheck.check_cell, run_notebook, "nbtest.outputs.sanitize.SanitizerSet.apply")
    source = write("volatile.ipynb", [
        "from tqdm import tqdm\nimport time\nfor _ in tqdm(range(5), mininterval=0):\n"
        "    time.sleep(0.01)",
        "%time x = sum(range(1000))",
        "import datetime\nprint(datetime.datetime.now(), datetime.date.today())",
        "class Model: pass\nModel()",
        "print(object(), id(object()) and 'ok')",
        "import time\nprint(f'took {time.perf_counter() % 5:.2f} s')",
    ])
    first = run_notebook(source)
    assert first.passed
    saved = tmp_path / "saved.ipynb"
    nbformat.write(first.notebook, str(saved))
    result = check(saved, check_outputs=True)
    assert result.passed, failure_text(result)
    assert sorted(result.extras["compared_outputs"]) == [1, 2, 3, 4, 5, 6]


def test_update_outputs_rewrites_only_the_outputs(write) -> None:
    this_tests(OutputCheck.check_cell, write_updated_outputs)
    path = write("update.ipynb", [("markdown", "# keep me"), CHECKED_HELLO,
                                  ran("# NBVAL_CHECK_OUTPUT\nprint('new text')\n41 + 1",
                                      [out("old text\n"), res("41", 2)], 2),
                                  ran("print('unmarked')", [out("stale\n")], 3)])
    nb = nbformat.read(str(path), as_version=4)
    nb.metadata["zzz"] = {"b": 1, "a": "ü"}
    nbformat.write(nb, str(path))
    before = path.read_text(encoding="utf-8")
    result = check(path, update_outputs=True)
    assert result.passed  # the mismatch is recorded, not failed
    assert result.extras["outputs_differ"] == [3]
    assert write_updated_outputs(path, result) == 1
    after = path.read_text(encoding="utf-8")
    assert_only_outputs_changed(before, after)
    assert "stale" in after and "old text" not in after
    assert check(path).passed


def output_lines(text: str) -> set[int]:
    """Indices of the lines of an nbformat file inside a cell's outputs or execution count."""
    inside, lines = False, set()
    for index, line in enumerate(text.splitlines()):
        if re.match(r'^   "outputs": \[\]', line) or re.match(r'^   "execution_count"', line):
            lines.add(index)
        elif re.match(r'^   "outputs": \[$', line):
            inside = True
        if inside:
            lines.add(index)
            if re.match(r"^   \],?$", line):
                inside = False
    return lines


def assert_only_outputs_changed(before: str, after: str) -> None:
    """Every line that differs lies inside an "outputs" list (or is an execution count)."""
    old_ok, new_ok = output_lines(before), output_lines(after)
    matcher = difflib.SequenceMatcher(a=before.splitlines(), b=after.splitlines(),
                                      autojunk=False)
    changed = 0
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag != "equal":
            changed += 1
            assert set(range(i1, i2)) <= old_ok and set(range(j1, j2)) <= new_ok, \
                "\n".join(difflib.unified_diff(before.splitlines(), after.splitlines()))
    assert changed


# -- real pytest sessions ----------------------------------------------------------------------
def test_pytest_verdicts_and_report(pytester: pytest.Pytester, write) -> None:
    this_tests(OutputCheck.check_cell, "nbtest.plugin.items.NotebookItem.runtest")
    for name, (cells, _) in AGREE.items():
        write(name, cells, pytester.path)
    for name, cells in FALSE_FAILURES.items():
        write(name, cells, pytester.path)
    result = run_pytest(pytester, "--nbtest", "-ra", "--junitxml=nbtest.xml")
    outcomes = junit_outcomes(pytester.path / "nbtest.xml")
    expected = {name: "passed" if passes else "failed" for name, (_, passes) in AGREE.items()}
    expected.update({name: "passed" for name in FALSE_FAILURES})
    assert outcomes == expected, output(result)
    result.stdout.fnmatch_lines(["FAILED agree_changed.ipynb - cell 2: output differs (stdout)",
                                 "FAILED agree_stderr.ipynb - cell 1: output differs (stderr)"],
                                consecutive=False)
    text = output(result)
    assert "-hello" in text and "+goodbye" in text and "+warning: new" in text


def test_pytest_update_outputs_then_passes(pytester: pytest.Pytester, write) -> None:
    this_tests(write_updated_outputs, "nbtest.plugin.items.NotebookItem.runtest")
    path = write("nb.ipynb", AGREE["agree_changed.ipynb"][0], pytester.path)
    before = path.read_text(encoding="utf-8")
    run_pytest(pytester, "--nbtest").assert_outcomes(failed=1)
    run_pytest(pytester, "--nbtest", "--nbtest-update-outputs").assert_outcomes(passed=1)
    assert_only_outputs_changed(before, path.read_text(encoding="utf-8"))
    run_pytest(pytester, "--nbtest").assert_outcomes(passed=1)


def test_pytest_cells_mode_and_rtol(pytester: pytest.Pytester, write) -> None:
    this_tests(OutputCheck.check_cell, "nbtest.plugin.items.CellItem.runtest")
    write("loss.ipynb", [CHECKED_HELLO, ran("# NBVAL_CHECK_OUTPUT\nprint('loss', 0.31416)",
                                            [out("loss 0.31415\n")], 2)], pytester.path)
    result = run_pytest(pytester, "--nbtest", "--nbtest-cells", "-ra")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["FAILED loss.ipynb::cell[2] - cell 2: output differs (stdout)"])
    run_pytest(pytester, "--nbtest", "--nbtest-cells", "--nbtest-rtol=1e-4").assert_outcomes(
        passed=2)


SANITIZE_FILE = """\
[greeting]
regex: hello|goodbye
replace: GREETING

[never]
regex: THIS NEVER APPEARS
replace: X
"""


@pytest.mark.parametrize("xdist", [False, True], ids=["single", "xdist"])
def test_pytest_sanitize_file_and_unmatched_report(pytester: pytest.Pytester, write,
                                                   xdist: bool) -> None:
    this_tests("nbtest.outputs.sanitize.read_sanitize_file", OutputCheck.unmatched_report,
               "nbtest.plugin.sanitizer_summary.SanitizerSummary.pytest_terminal_summary")
    if xdist:
        pytest.importorskip("xdist")
    write("a.ipynb", AGREE["agree_changed.ipynb"][0], pytester.path)
    write("b.ipynb", [CHECKED_HELLO], pytester.path)
    (pytester.path / "rules.cfg").write_text(SANITIZE_FILE)
    args = ["--nbtest", "--nbtest-sanitize-with", "rules.cfg"] + (["-n", "2"] if xdist else [])
    result = run_pytest(pytester, *args)
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*nbtest: sanitizers that matched nothing*",
                                 "*[[]never[]] regex: THIS NEVER APPEARS (from rules.cfg)*"])
    assert "[greeting]" not in output(result)


def test_pytest_bad_sanitize_file_is_a_usage_error(pytester: pytest.Pytester, write) -> None:
    this_tests(OutputCheck.from_config, "nbtest.outputs.sanitize.parse_sanitize_file")
    write("a.ipynb", [CHECKED_HELLO], pytester.path)
    (pytester.path / "rules.cfg").write_text("[x]\nregex: (\nreplace: y\n")
    result = run_pytest(pytester, "--nbtest", "--nbtest-sanitize-with", "rules.cfg")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "rules.cfg, line 2: bad regex '('" in output(result)


def test_pyproject_sanitizers(pytester: pytest.Pytester, write) -> None:
    this_tests("nbtest.outputs.sanitize.user_sanitizers", "nbtest.outputs.sanitize.pair_sanitizers")
    write("a.ipynb", AGREE["agree_changed.ipynb"][0], pytester.path)
    pytester.makepyprojecttoml('[tool.nbtest]\nsanitizers = [["hello|goodbye", "HI"], '
                               '["unused-pattern", "x"]]\n')
    result = run_pytest(pytester, "--nbtest")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*[[]unused-pattern[]] regex: unused-pattern*"])


# -- the CLI -----------------------------------------------------------------------------------
def test_cli_update_outputs(write, run_cli, tmp_path: Path) -> None:
    this_tests("nbtest.cli.cmd_execute", write_updated_outputs)
    path = write("nb.ipynb", AGREE["agree_changed.ipynb"][0])
    before = path.read_text(encoding="utf-8")
    failed = run_cli("execute", path, "--no-progress", "-o", tmp_path / "o.ipynb")
    assert failed.returncode == 1
    assert "cell 2: output differs (stdout)" in failed.stderr
    done = run_cli("execute", path, "--no-progress", "--update-outputs",
                   "-o", tmp_path / "o.ipynb")
    assert done.returncode == 0, done.stderr
    assert "updated the stored outputs of 1 cell" in done.stderr
    assert_only_outputs_changed(before, path.read_text(encoding="utf-8"))
    again = run_cli("execute", path, "--no-progress", "-o", tmp_path / "o.ipynb")
    assert again.returncode == 0, again.stderr


# -- nbval itself, where it is installed -------------------------------------------------------
def test_same_verdicts_as_nbval_lax(pytester: pytest.Pytester, write) -> None:
    """nbval-lax and nbtest agree, except on nbval's known false failures."""
    this_tests(OutputCheck.check_cell, "nbtest.plugin.items.NotebookItem.runtest")
    pytest.importorskip("nbval")
    for name, (cells, _) in AGREE.items():
        write(name, cells, pytester.path)
    for name, cells in FALSE_FAILURES.items():
        write(name, cells, pytester.path)
    try:
        run_pytest(pytester, "--nbval-lax", "-p", "no:nbtest", "--junitxml=nbval.xml")
    except pytest.Pytester.TimeoutExpired:
        # Once, under `make coverage` with -n 2, nbval's own session (nbtest switched off)
        # hung until the guard; alone it passes in seconds. The cause was not found (its
        # kernels use TCP ports, see jupyter_client#487): the retry forgives the peer only.
        run_pytest(pytester, "--nbval-lax", "-p", "no:nbtest", "--junitxml=nbval.xml")
    run_pytest(pytester, "--nbtest", "-p", "no:nbval", "--junitxml=nbtest.xml")
    nbval: dict[str, str] = {}
    for test, outcome in junit_outcomes(pytester.path / "nbval.xml").items():
        notebook = test.split("::")[0]
        if nbval.get(notebook) != "failed":
            nbval[notebook] = "failed" if outcome in ("failed", "error") else "passed"
    nbtest = junit_outcomes(pytester.path / "nbtest.xml")
    for name in AGREE:
        assert nbval[name] == nbtest[name], (name, nbval, nbtest)
    for name in FALSE_FAILURES:
        assert (nbval[name], nbtest[name]) == ("failed", "passed"), name
