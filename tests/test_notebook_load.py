"""Loading notebooks: what is accepted, and one clear paragraph (exit 2) for what is not."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from nbtest import this_tests
from nbtest.errors import ConfigError, NotebookLoadError
from nbtest.notebook import (
    cell_tags,
    expects_error,
    first_line,
    is_runnable,
    is_skipped,
    kernel_name,
    load_notebook,
    metadata_settings,
    notebook_settings,
    read_metadata,
)

V4 = {"nbformat": 4, "nbformat_minor": 4, "metadata": {}}


def _write(tmp_path: Path, name: str, content: str | bytes | None) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content, encoding="utf-8")
    return path


# name, file content (None: no file), what the message must say
UNREADABLE = {
    "not-json": ('{"cells": [\n  {"a": 1,}\n]}', "line 2, column 11"),
    "json-list": ("[1, 2, 3]", "not a Jupyter notebook"),
    "json-no-nbformat": ('{"cells": []}', "not a Jupyter notebook"),
    # nbformat 3 is converted in memory now (tests/test_peer_notebook_files.py); a newer one is not.
    "nbformat-5": (json.dumps({"nbformat": 5, "nbformat_minor": 0, "metadata": {},
                               "cells": []}), "nbformat 5"),
    "empty": ("", "is empty"),
    "blank": ("  \n\n", "is empty"),
    "missing": (None, "no such file"),
    "not-utf8": (b"\xff\xfe\x00 garbage", "cannot be read"),
    "invalid-cell": (json.dumps({**V4, "cells": [{"cell_type": "code", "source": "x",
                                                   "metadata": {}}]}), "not a valid notebook"),
}


@pytest.mark.parametrize("case", sorted(UNREADABLE))
def test_load_notebook_rejects_unreadable_input(tmp_path: Path, case: str) -> None:
    this_tests(load_notebook)
    content, says = UNREADABLE[case]
    path = _write(tmp_path, f"{case}.ipynb", content)
    with pytest.raises(NotebookLoadError) as info:
        load_notebook(path)
    assert str(path) in info.value.message
    assert says in info.value.message
    assert info.value.exit_code == 2
    assert info.value.path == str(path)


def test_load_notebook_rejects_a_directory(tmp_path: Path) -> None:
    this_tests(load_notebook)
    folder = tmp_path / "folder.ipynb"
    folder.mkdir()
    with pytest.raises(NotebookLoadError, match="is a directory"):
        load_notebook(folder)


@pytest.mark.parametrize("data", [
    pytest.param({**V4}, id="no-cells"),
    pytest.param({"nbformat": 4, "nbformat_minor": 5, "cells": []}, id="no-metadata"),
    pytest.param({**V4, "cells": ["print(1)"]}, id="cell-not-object"),
    pytest.param({**V4, "cells": [{"cell_type": "code", "source": "x"}]},
                 id="cell-without-metadata"),
])
def test_malformed_notebook_structure_is_a_load_error(tmp_path: Path, data: dict) -> None:
    this_tests(load_notebook, "nbtest.notebook.notebook_from_dict")
    path = _write(tmp_path, "malformed.ipynb", json.dumps(data))
    with pytest.raises(NotebookLoadError) as info:
        load_notebook(path)
    assert str(path) in info.value.message


def test_load_notebook_accepts_v4_with_multiline_sources(tmp_path: Path) -> None:
    this_tests(load_notebook, kernel_name)
    data = {"nbformat": 4, "nbformat_minor": 2,
            "metadata": {"kernelspec": {"name": "k9", "display_name": "K9"}},
            "cells": [{"cell_type": "code", "source": ["a = 1\n", "b = 2"], "metadata": {},
                       "outputs": [], "execution_count": None},
                      {"cell_type": "markdown", "source": ["# Title"], "metadata": {}}]}
    nb = load_notebook(_write(tmp_path, "old.ipynb", json.dumps(data)))
    assert nb.cells[0].source == "a = 1\nb = 2"
    assert nb.cells[1].source == "# Title"
    assert kernel_name(nb) == "k9"


def test_tags_and_runnable_cells() -> None:
    this_tests(cell_tags, is_skipped, expects_error, is_runnable, first_line)
    code = nbformat.v4.new_code_cell
    assert cell_tags(code("x", metadata={"tags": ["a", "b"]})) == {"a", "b"}
    for tag in ("skip-execution", "nbval-skip"):
        cell = code("x", metadata={"tags": [tag]})
        assert is_skipped(cell) and not is_runnable(cell)
    for tag in ("raises-exception", "nbval-raises-exception"):
        assert expects_error(code("x", metadata={"tags": [tag]}))
    assert not expects_error(code("x"))
    assert is_runnable(code("x = 1"))
    assert not is_runnable(code("   \n"))
    assert not is_runnable(nbformat.v4.new_markdown_cell("x = 1"))
    assert first_line("\n\n  import os\nx = 1") == "import os"
    assert first_line("") == ""


def test_notebook_settings_read_nbtest_and_nbmake_metadata(tmp_path: Path) -> None:
    this_tests(notebook_settings)
    nb = nbformat.v4.new_notebook(metadata={
        "execution": {"timeout": 5, "allow_errors": True, "other": 1},
        "nbtest": {"timeout": 7, "skip": "not today", "kernel": "k2"}})
    settings = notebook_settings(nb, tmp_path / "x.ipynb")
    assert settings == {"timeout": 7.0, "allow_errors": True, "skip": "not today",
                        "kernel": "k2"}
    nb.metadata.pop("nbtest")
    assert notebook_settings(nb, tmp_path / "x.ipynb")["timeout"] == 5.0


def test_metadata_alone_is_read_without_the_notebooks_validation(tmp_path: Path) -> None:
    this_tests(read_metadata, metadata_settings)
    # The xdist controller's preflight: a notebook its worker will reject still has metadata.
    path = _write(tmp_path, "x.ipynb", json.dumps(
        {**V4, "cells": "not a list", "metadata": {"nbtest": {"timeout": 7}}}))
    assert metadata_settings(read_metadata(path), path) == {"timeout": 7.0}
    assert read_metadata(_write(tmp_path, "list.ipynb", "[1, 2]")) == {}
    with pytest.raises(NotebookLoadError, match="broken.ipynb: cannot be read as a notebook"):
        read_metadata(_write(tmp_path, "broken.ipynb", "{not json"))
    with pytest.raises(NotebookLoadError, match="metadata.nbtest must be a mapping"):
        metadata_settings({"nbtest": [1]}, path)


def test_notebook_settings_reject_bad_metadata(tmp_path: Path) -> None:
    this_tests(notebook_settings)
    path = tmp_path / "x.ipynb"
    with pytest.raises(NotebookLoadError, match="metadata.nbtest must be a mapping"):
        notebook_settings(nbformat.v4.new_notebook(metadata={"nbtest": [1]}), path)
    with pytest.raises(ConfigError) as info:
        notebook_settings(nbformat.v4.new_notebook(metadata={"nbtest": {"timeout": "soon"}}),
                          path)
    assert str(path) in info.value.message and "metadata.nbtest" in info.value.message
    assert "'timeout'" in info.value.message
    with pytest.raises(ConfigError, match="unknown nbtest option 'colour'"):
        notebook_settings(nbformat.v4.new_notebook(metadata={"nbtest": {"colour": 1}}), path)


# The CLI face of the same failures: exit 2, one paragraph naming the file, no traceback.
CLI_CASES = ["not-json", "json-list", "nbformat-5", "empty", "missing", "directory"]


@pytest.mark.parametrize("case", CLI_CASES)
def test_cli_unreadable_input_exits_2_with_one_paragraph(tmp_path: Path, run_cli, case: str
                                                         ) -> None:
    this_tests("nbtest.cli.cmd_execute", load_notebook)
    if case == "directory":
        path = tmp_path / "a folder"
        path.mkdir()
    else:
        path = _write(tmp_path, f"{case} file.ipynb", UNREADABLE[case][0])
    proc = run_cli("execute", path, "--no-progress")
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip()
    assert "Traceback" not in proc.stderr
    assert err.startswith("nbtest: ")
    assert str(path) in err
    assert "\n\n" not in err  # one paragraph
    assert not list(tmp_path.glob("*.executed.ipynb"))


def test_cli_malformed_notebook_exits_2_without_traceback(tmp_path: Path, run_cli) -> None:
    this_tests("nbtest.cli.cmd_execute", load_notebook)
    path = _write(tmp_path, "nometa.ipynb",
                  json.dumps({**V4, "cells": [{"cell_type": "code", "source": "x"}]}))
    proc = run_cli("execute", path, "--no-progress")
    assert "Traceback" not in proc.stderr
    assert proc.returncode == 2
    assert str(path) in proc.stderr


def test_nbformat_version_message_is_not_self_contradictory(tmp_path: Path) -> None:
    this_tests(load_notebook)
    path = _write(tmp_path, "strver.ipynb", json.dumps({**V4, "nbformat": "4", "cells": []}))
    with pytest.raises(NotebookLoadError) as info:
        load_notebook(path)
    assert "uses nbformat 4," not in info.value.message


DUPLICATE_TAGS = {**V4, "nbformat_minor": 5, "cells": [
    {"cell_type": "code", "id": "c1", "metadata": {"tags": ["a", "a", "b"]}, "source": "x = 1",
     "outputs": [], "execution_count": None},
    {"cell_type": "markdown", "id": "m1", "metadata": {}, "source": "text"},
    {"cell_type": "code", "id": "c2", "metadata": {"tags": ["raises-exception"] * 2},
     "source": "1 / 0", "outputs": [], "execution_count": None},
]}


def test_repeated_cell_tags_load_with_a_warning_naming_the_cells(tmp_path: Path) -> None:
    this_tests(load_notebook, "nbtest.notebook.notebook_from_dict")
    path = _write(tmp_path, "dup.ipynb", json.dumps(DUPLICATE_TAGS))
    before = path.read_bytes()
    with pytest.warns(Warning) as caught:
        nb = load_notebook(path)
    messages = [str(w.message) for w in caught]
    assert messages == [f"{path}: repeated cell tags in cell 1 (a); cell 3 (raises-exception): "
                        "each is counted once; remove the repeats from the file to silence this"]
    assert caught[0].category.__name__ == "NotebookWarning"
    assert nb.cells[0].metadata.tags == ["a", "b"]
    assert nb.cells[2].metadata.tags == ["raises-exception"] and expects_error(nb.cells[2])
    assert path.read_bytes() == before  # the input is never rewritten


def test_cli_runs_a_notebook_with_repeated_tags_and_warns_in_one_line(tmp_path: Path,
                                                                       run_cli) -> None:
    this_tests("nbtest.cli.cmd_execute", load_notebook)
    path = _write(tmp_path, "dup.ipynb", json.dumps(DUPLICATE_TAGS))
    before = path.read_bytes()
    proc = run_cli("execute", path, "--no-progress")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stderr.splitlines()
    assert lines[0] == (f"nbtest: warning: {path}: repeated cell tags in cell 1 (a); cell 3 "
                        "(raises-exception): each is counted once; remove the repeats from the "
                        "file to silence this"), proc.stderr
    assert lines[1].startswith(f"nbtest: passed {path} in ")
    assert path.read_bytes() == before
    executed = nbformat.read(tmp_path / "dup.executed.ipynb", as_version=4)
    nbformat.validate(executed)  # the executed copy is a valid notebook
