"""The registry's commands: `nbtest execute --registry`, `nbtest registry missing / check /
show`, and show_tests(), on the acmelib project of tests/helpers/registry_project.py. Kernel
starts: `nbtest execute` with and without `--registry` (3).
"""

from __future__ import annotations

import json
from pathlib import Path

from helpers.registry_project import (
    NOTEBOOKS,
    REGISTRY,
    entry,
    nbtest_cmd,
    registry_text,
    write_registry,
)

from nbtest import this_tests
from nbtest.callbacks.registry import RegistryCapture
from nbtest.inkernel.recorder import KernelRecorder
from nbtest.registry.api import show_tests
from nbtest.registry.cmd import public_functions
from nbtest.registry.file import find_registry_path, format_entries

pytest_plugins = ["pytester"]


# -- nbtest execute --registry -------------------------------------------------------------


def test_execute_records_only_with_registry(acme_project: Path, make_notebook,
                                            acme_notebooks, no_kernel_left) -> None:
    """Without --registry the file is untouched; with it, the notebook's old entries are
    replaced by this run's (cells counted with markdown), others kept; the in-kernel errors
    are exact; nothing of the capture shows in the executed notebook."""
    this_tests("nbtest.cli.cmd_execute", "nbtest.cli._record_registry", RegistryCapture,
               RegistryCapture.on_notebook_end, KernelRecorder)
    acme_notebooks("uses.ipynb")
    make_notebook(acme_project / "docs" / "plain.ipynb", NOTEBOOKS["uses.ipynb"][:5])
    before = write_registry(acme_project, {
        "acmelib.core.mul": [entry("docs/uses.ipynb", "uses.ipynb", cell=2),
                             entry("tests/test_more.py", "test_mul", line=8)]})

    plain = nbtest_cmd(acme_project, "execute", "docs/plain.ipynb")
    assert plain.returncode == 0, plain.stderr
    assert registry_text(acme_project) == before

    recorded = nbtest_cmd(acme_project, "execute", "--registry", "docs/uses.ipynb")
    assert recorded.returncode == 0, recorded.stderr
    uses = {"file": "docs/uses.ipynb", "test": "uses.ipynb"}
    assert json.loads(registry_text(acme_project)) == {
        "acmelib.core.Learner.fit": [{**uses, "cell": 3}],
        "acmelib.core.Learner.size": [{**uses, "cell": 5}],
        "acmelib.core.add": [{**uses, "cell": 3}],
        "acmelib.core.mul": [entry("tests/test_more.py", "test_mul", line=8)],
        "acmelib.extra.helper": [{**uses, "cell": 5}],
    }
    executed = (acme_project / "docs" / "uses.executed.ipynb").read_text()
    assert "nbtest-this-tests" not in executed and "_nbtest_startup" not in executed
    cells = json.loads(executed)["cells"]
    assert [c.get("outputs") for c in cells if c["cell_type"] == "code"][:3] == [[], [], []]
    assert "".join(cells[5]["outputs"][0]["text"]) == "errors ok\n"
    no_kernel_left()


def test_execute_validates_against_the_api_without_registry(
        acme_project: Path, make_notebook, no_kernel_left) -> None:
    this_tests("nbtest.cli.cmd_execute", "nbtest.kernel.startup.startup_code")
    make_notebook(acme_project / "docs" / "outside.ipynb",
                  ['from nbtest import this_tests\nthis_tests("os.path.join")'])
    result = nbtest_cmd(acme_project, "execute", "docs/outside.ipynb")
    no_kernel_left()
    assert "'os.path.join' is not in the acmelib API" in result.stderr
    assert result.returncode == 1


# -- nbtest registry missing / check / show, show_tests ------------------------------------


def test_registry_missing_and_check(acme_project: Path) -> None:
    """`missing` lists public API functions no test names (not private ones, not names left
    out of __all__, not re-exports, not other packages); `check` exits 0, then 1 naming a
    function removed from acmelib."""
    this_tests("nbtest.registry.cmd.run", public_functions)
    write_registry(acme_project, {
        "acmelib.core.add": [entry("tests/test_core.py", "test_add", line=9)],
        "acmelib.core.Learner.fit": [entry("tests/test_core.py", "test_fit", line=14)],
        "acmelib.core.mul": [entry("tests/test_more.py", "test_mul", line=8)],
    })
    missing = nbtest_cmd(acme_project, "registry", "missing")
    assert missing.returncode == 0, missing.stderr
    *names, total = missing.stdout.splitlines()
    assert set(names) - {"acmelib.core.Learner.size"} == {
        "acmelib.core.Learner", "acmelib.core.Learner.predict", "acmelib.core.logged",
        "acmelib.core.scaled", "acmelib.extra.helper"}
    assert names == sorted(names)
    assert total == f"{len(names)} public functions, classes or methods without a test"

    check = nbtest_cmd(acme_project, "registry", "check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "up to date" in check.stdout

    core = acme_project / "acmelib" / "core.py"
    core.write_text(core.read_text().replace("def mul(a, b):\n    return a * b\n", ""))
    stale = nbtest_cmd(acme_project, "registry", "check")
    assert stale.returncode == 1, stale.stdout + stale.stderr
    assert "stale: acmelib.core.mul no longer exists (tests: tests/test_more.py)" \
        in stale.stdout
    assert "acmelib.core.add" not in stale.stdout


def test_registry_show_resolves_like_show_tests(acme_project: Path) -> None:
    this_tests("nbtest.registry.cmd.run", show_tests)
    write_registry(acme_project, {
        "acmelib.core.add": [entry("tests/test_core.py", "test_add", line=9)]})
    shown = nbtest_cmd(acme_project, "registry", "show", "acmelib.add")
    assert "pytest -sv tests/test_core.py::test_add" in shown.stdout


def test_show_tests_markdown(acme_project: Path, acme_imported: None) -> None:
    """show_tests(func, registry=path): Markdown listing each test with its command; the
    registry is found from pyproject.toml when not given; a re-export resolves."""
    this_tests(show_tests, format_entries, find_registry_path)
    write_registry(acme_project, {"acmelib.core.add": [
        entry("tests/test_core.py", "test_add", line=9),
        entry("docs/uses.ipynb", "uses.ipynb", cell=3)]})
    import acmelib
    from acmelib.core import add, mul

    expected = ("Tests found for `acmelib.core.add`:\n\n"
                "* `pytest docs/uses.ipynb` (cell 3)\n"
                "* `pytest -sv tests/test_core.py::test_add` (line 9)")
    shown = show_tests(add, registry=str(acme_project / REGISTRY))
    assert type(shown).__name__ == "Markdown"
    assert shown.data == expected
    assert show_tests("acmelib.add").data == expected  # found from the cwd's pyproject.toml
    assert show_tests(acmelib.add, registry=str(acme_project / REGISTRY)).data == expected
    assert show_tests(mul, registry=str(acme_project / REGISTRY)).data == (
        "No tests found for `acmelib.core.mul`. To contribute a test, call "
        "`this_tests(acmelib.core.mul)`.")
    assert find_registry_path(acme_project / "docs") == acme_project / REGISTRY
