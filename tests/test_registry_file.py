"""The registry file (registry/file.py): its format, merging a run into it, updates from many
processes under the lock, and the command each entry gives. No kernel, no session.
"""

from __future__ import annotations

import json
import multiprocessing
import shlex
from pathlib import Path

import pytest
from helpers.registry_project import QUOTED, entry

from nbtest import this_tests
from nbtest.errors import RegistryError
from nbtest.registry.file import Registry, format_entries, run_command, update_registry_file


def test_registry_file_format_and_merge(tmp_path: Path) -> None:
    this_tests(Registry, Registry.add, Registry.to_json, Registry.merged, Registry.load,
               Registry.save)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_x.py").write_text(
        "def test_a():\n    pass\n\n\ndef test_b():\n    pass\n\n\nasync def test_z():\n    pass\n")
    registry = Registry()
    registry.add("pkg.b", entry("tests/test_x.py", "test_b", line=12))
    registry.add("pkg.a", entry("tests/test_x.py", "test_z", line=3))
    registry.add("pkg.a", entry("docs/n.ipynb", "n.ipynb", cell=5))
    registry.add("pkg.a", entry("tests/test_x.py", "test_a", line=30))
    registry.add("pkg.a", entry("tests/test_x.py", "test_a", line=30))  # once
    registry.add("pkg.empty", entry("x", "y", line=1))
    registry.entries["pkg.empty"].clear()  # a name left without entries is not written
    text = registry.to_json()
    assert json.loads(text) == {
        "pkg.a": [entry("docs/n.ipynb", "n.ipynb", cell=5),
                  entry("tests/test_x.py", "test_a", line=30),
                  entry("tests/test_x.py", "test_z", line=3)],
        "pkg.b": [entry("tests/test_x.py", "test_b", line=12)]}
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"
    path = tmp_path / "sub" / "reg.json"
    assert Registry.load(path).entries == {}  # missing: empty
    registry.save(path)
    assert path.read_text() == text
    assert Registry.load(path).to_json() == text

    merged = Registry.load(path).merged(
        Registry({"pkg.c": [entry("tests/test_x.py", "test_a", line=30)]}),
        ran={("tests/test_x.py", "test_a")}, root=tmp_path)
    # test_a ran: its entries are replaced; docs/n.ipynb does not exist: pruned.
    assert merged.entries == {"pkg.a": [entry("tests/test_x.py", "test_z", line=3)],
                              "pkg.b": [entry("tests/test_x.py", "test_b", line=12)],
                              "pkg.c": [entry("tests/test_x.py", "test_a", line=30)]}

    # test_b moved to another file (its `def` is gone from test_x.py): its ghost is dropped;
    # a test of a class keeps its entry while the method is there.
    (tmp_path / "tests" / "test_x.py").write_text(
        "def test_a():\n    pass\n\n\nclass TestK:\n    def test_z(self):\n        pass\n")
    old = Registry({"pkg.b": [entry("tests/test_x.py", "test_b", line=12)],
                    "pkg.k": [entry("tests/test_x.py", "TestK::test_z", line=6)]})
    assert old.merged(Registry(), ran=set(), root=tmp_path).entries == {
        "pkg.k": [entry("tests/test_x.py", "TestK::test_z", line=6)]}


def _update_in_process(args: tuple[str, str, int]) -> None:
    path, root, index = args
    new = Registry({f"pkg.f{index}": [entry("tests/test_x.py", f"test_{index}", line=index)]})
    update_registry_file(path, new, [("tests/test_x.py", f"test_{index}")], Path(root))


def test_update_registry_file_from_many_processes(tmp_path: Path) -> None:
    """Eight processes merging at once under the lock: every entry is in the file."""
    this_tests(update_registry_file)
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_x.py").write_text("")
    path = tmp_path / "reg.json"
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        pool.map(_update_in_process, [(str(path), str(tmp_path), i) for i in range(1, 9)])
    assert sorted(Registry.load(path).entries) == [f"pkg.f{i}" for i in range(1, 9)]
    assert not list(tmp_path.glob(".reg.json.*"))  # no temporary file left

    path.write_text("{bad")
    with pytest.raises(RegistryError) as info:
        _update_in_process((str(path), str(tmp_path), 9))
    assert str(path) in str(info.value)
    assert path.read_text() == "{bad"


def test_run_command_and_format() -> None:
    this_tests(run_command, format_entries)
    assert run_command(entry("tests/test_x.py", "test_a", line=3)) == \
        "pytest -sv tests/test_x.py::test_a"
    assert run_command(entry("docs/n.ipynb", "n.ipynb", cell=2)) == "pytest docs/n.ipynb"
    assert format_entries("pkg.f", []).startswith("No tests found for `pkg.f`.")
    assert format_entries("pkg.f", [entry("tests/t.py", "test_a", line=3)]) == (
        "Tests found for `pkg.f`:\n\n* `pytest -sv tests/t.py::test_a` (line 3)")


def test_command_of_a_quoted_path_runs_it() -> None:
    this_tests(run_command)
    quoted = {"file": f"docs/{QUOTED}", "test": QUOTED, "cell": 2}
    assert shlex.split(run_command(quoted)) == ["pytest", f"docs/{QUOTED}"]
