"""Every command in README.md's shell blocks is run here, or mirrored one to one, so the README
cannot rot: a command with no rule below fails the test until one is written."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys

import pytest
from helpers.processes import NBTEST_CMD, REPO

from nbtest import this_tests
from nbtest.cli import build_parser

README = (REPO / "README.md").read_text(encoding="utf-8")


def shell_commands() -> list[str]:
    """The command lines of the ```bash blocks, comments and continuations resolved."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #")[0].strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


def run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=300, **kwargs)


def check_make_test(command: str) -> None:
    dry = run(["make", "-n", "test"])
    assert dry.returncode == 0 and "-m pytest" in dry.stdout, dry.stdout + dry.stderr


def check_run_tests(command: str) -> None:
    proc = run(["./run_tests.sh", "callback*", "--", "--collect-only", "-q",
                "-p", "no:cacheprovider"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "docs_src/callback.ipynb" in proc.stdout


def check_nbtest(command: str) -> None:
    """`nbtest VERB ...`: the verb exists and its --help runs (execute itself: test_examples)."""
    verb = shlex.split(command.replace("|", " "))[1]
    proc = run([*NBTEST_CMD, verb, "--help"])
    assert proc.returncode == 0, proc.stderr
    if verb == "execute":
        assert (REPO / shlex.split(command)[2]).is_file() or "NOTEBOOK" in command


def check_pip_install(command: str) -> None:
    """`pip install` of a clone or of the built wheel (pytest-nbtest is not on the package
    index yet, and `nbtest` there is another project): the distribution name, the wheel's
    file name as `python -m build` writes it, a pytest plugin's classifier, and the extras
    the README names exist."""
    text = (REPO / "pyproject.toml").read_text()
    assert 'name = "pytest-nbtest"' in text and '"Framework :: Pytest"' in text
    assert "pip install nbtest" not in README and "pip install pytest-nbtest" not in README
    target = shlex.split(command)[2]
    version = re.search(r'^version = "(.+)"', text, re.M).group(1)
    assert target in ("./nbtest", f"build/dist/pytest_nbtest-{version}-py3-none-any.whl"), target
    for extra in re.findall(r"\[(\w+)\]", command.split("#", 1)[-1]):
        assert re.search(rf"^{extra} = \[", text, re.M), extra


def check_make_test_install(command: str) -> None:
    """`make test-install`: the target exists and runs the install checks."""
    dry = run(["make", "-n", "test-install"])
    assert dry.returncode == 0 and "check_install.sh" in dry.stdout, dry.stdout + dry.stderr


RULES = {"make test-install": check_make_test_install, "make test": check_make_test,
         "./run_tests.sh": check_run_tests, "nbtest ": check_nbtest,
         ".venv/bin/nbtest ": check_nbtest, "pip install": check_pip_install}


@pytest.mark.parametrize("command", shell_commands())
def test_readme_command(command: str) -> None:
    this_tests(build_parser)
    rule = next((rule for prefix, rule in RULES.items() if command.startswith(prefix)), None)
    assert rule is not None, f"README command without a test: {command!r}"
    rule(command)


def test_first_screen_shows_the_three_commands() -> None:
    this_tests("na")
    first = "\n".join(README.splitlines()[:30])
    for command in ("make test", "./run_tests.sh",
                    ".venv/bin/nbtest execute examples/tabular.ipynb"):
        assert command in first  # as written: a fresh clone has .venv after `make test`
    assert sys.version_info >= (3, 9)
