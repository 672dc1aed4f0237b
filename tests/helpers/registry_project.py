"""The small project of the registry tests: package `acmelib`, `.py` tests and notebooks.

`make_project(root, make_notebook)` writes it under `root`:

    pyproject.toml        nbtest = true, pythonpath = ["."], api = ["acmelib"],
                          registry = "acmelib/test_registry.json"
    acmelib/__init__.py   re-exports `add`
    acmelib/core.py       add, mul, a @functools.wraps-decorated `scaled`, class Learner
                          (method fit, predict, property size)
    acmelib/extra.py      helper (in __all__), not imported by the package
    acmelibx/__init__.py  a sibling package outside the API
    tests/test_core.py    one .py test per kind of this_tests argument, one that forgets it
    tests/test_more.py    more tests (the concurrent sessions run the two files apart)
    docs/*.ipynb          NOTEBOOKS below

Line numbers matter: the expected registry names the `def` lines of the tests below.

Also the helpers of the registry tests (tests/test_registry_*.py): the expected registry of a
full run, the registry file of the project, `nbtest` and pytest in a subprocess.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from nbtest.registry.file import Registry

PYPROJECT = """\
[tool.pytest.ini_options]
nbtest = true
pythonpath = ["."]

[tool.nbtest]
api = ["acmelib"]
registry = "acmelib/test_registry.json"
"""

INIT = '''\
"""acmelib: a tiny API."""
from .core import add

__all__ = ["add"]
'''

CORE = '''\
"""The core of acmelib."""
import functools


def add(a, b):
    return a + b


def mul(a, b):
    return a * b


def _private():
    return None


def logged(func):
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return func(*args, **kwargs)
    return wrapper


@logged
def scaled(x):
    return 2 * x


class Learner:
    def __init__(self):
        self.epochs = 0

    def fit(self, n=1):
        self.epochs += n
        return self

    def predict(self, x):
        return x

    @property
    def size(self):
        return 3
'''

EXTRA = '''\
"""Not imported by acmelib/__init__.py: a dotted string must import it."""
__all__ = ["helper"]


def helper():
    return 1


def not_exported():
    return 2
'''

SIBLING = '''\
def add(a, b):
    return a + b
'''

# def lines:  test_add 9, test_fit 14, test_unbound_and_property 20, test_wrapped 24,
# test_strings 29, test_several_and_duplicates 36, test_na_only 40, test_forgot 44
TEST_CORE = '''\
import sys

import acmelib
from acmelib.core import Learner, add, scaled

from nbtest import this_tests


def test_add():
    this_tests(add)
    assert add(1, 2) == 3


def test_fit():
    learn = Learner()
    this_tests(learn.fit)
    assert learn.fit(2).epochs == 2


def test_unbound_and_property():
    this_tests(Learner.fit, Learner.size)


def test_wrapped():
    this_tests(scaled)
    assert scaled(2) == 4


def test_strings():
    assert "acmelib.extra" not in sys.modules
    this_tests("acmelib.extra.helper", "acmelib.core.Learner.predict")
    assert "acmelib.extra" in sys.modules
    this_tests("acmelib.add")


def test_several_and_duplicates():
    this_tests(add, "acmelib.core.add", acmelib.add, "na", Learner, add)


def test_na_only():
    this_tests("na")


def test_forgot():
    assert add(2, 2) == 4
'''

# def lines: test_mul 8, test_errors_at_once 13
TEST_MORE = '''\
import os

import pytest
from acmelib.core import add, mul
from nbtest import this_tests


def test_mul():
    this_tests(mul)
    assert mul(2, 3) == 6


def test_errors_at_once():
    this_tests(add)
    for bad, message in [
        ("acmelib.core add", "'acmelib.core add' is not a function"),
        ("acmelib.core.nope", "'acmelib.core.nope' is not a function"),
        (42, "'42' is not a function"),
        ("os.path.join", "'os.path.join' is not in the acmelib API"),
        (os.path.join, "'posixpath.join' is not in the acmelib API"),
        ("acmelibx.add", "'acmelibx.add' is not in the acmelib API"),
    ]:
        with pytest.raises(ValueError) as info:
            this_tests(mul, bad)
        assert str(info.value) == message
'''

IMPORTS = "from nbtest import this_tests\nfrom acmelib.core import Learner, add\nlearn = Learner()"

KERNEL_ERRORS = '''\
from nbtest.errors import ThisTestsError
for bad, message in [
    ("acmelib.core add", "'acmelib.core add' is not a function"),
    (42, "'42' is not a function"),
    ("acmelib.core.nope", "'acmelib.core.nope' is not a function"),
    ("os.path.join", "'os.path.join' is not in the acmelib API"),
]:
    try:
        this_tests(add, bad)
    except ThisTestsError as exc:
        assert str(exc) == message, str(exc)
    else:
        raise AssertionError(f"no error for {bad!r}")
print("errors ok")'''

QUOTED = "it's \"q\".ipynb"
INJECTING = "x'); import os; os._exit(3); ('.ipynb"

NOTEBOOKS: dict[str, list] = {
    # cells: 1 markdown, 2 imports, 3 this_tests, 4 markdown, 5 this_tests, 6 the errors
    "uses.ipynb": [("markdown", "# Uses"), IMPORTS, "this_tests(add, learn.fit)",
                   ("markdown", "More"),
                   'this_tests("acmelib.core.Learner.size", "na", "acmelib.extra.helper")',
                   KERNEL_ERRORS],
    # the kernel dies in cell 2, after the this_tests call of cell 1
    "dies.ipynb": ["from nbtest import this_tests\nfrom acmelib.core import mul\n"
                   "this_tests(mul)", "import os\nos._exit(1)", "x = 1"],
    QUOTED: [("markdown", "# it's \"q\""),
             'from nbtest import this_tests\nthis_tests("acmelib.core.scaled")'],
    INJECTING: ['from nbtest import this_tests\nthis_tests("acmelib.core.Learner")',
                r'''text = "'); import os; os._exit(4); ('\"\"\"\\"
import os
assert os.environ["NBTEST"] == "1"'''],
    "forgot.ipynb": ["from acmelib.core import add\nassert add(1, 1) == 2"],
}


def make_project(root: Path, make_notebook: Callable[..., Path],
                 notebooks: dict[str, list] | None = None) -> Path:
    """Write the project under `root` (notebooks: a subset of NOTEBOOKS); return `root`."""
    files = {"pyproject.toml": PYPROJECT, "acmelib/__init__.py": INIT,
             "acmelib/core.py": CORE, "acmelib/extra.py": EXTRA,
             "acmelibx/__init__.py": SIBLING, "tests/test_core.py": TEST_CORE,
             "tests/test_more.py": TEST_MORE}
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for name, cells in (NOTEBOOKS if notebooks is None else notebooks).items():
        make_notebook(root / "docs" / name, cells)
    return root


# -- the registry tests' helpers ------------------------------------------------------------

REGISTRY = "acmelib/test_registry.json"


# Hang guard for a subprocess (seconds); never a speed assertion.
HANG = 180


# What `pytest tests docs` writes for the project: keys sorted, entries sorted, indent 2.
EXPECTED = r"""{
  "acmelib.core.Learner": [
    {
      "cell": 1,
      "file": "docs/x'); import os; os._exit(3); ('.ipynb",
      "test": "x'); import os; os._exit(3); ('.ipynb"
    },
    {
      "file": "tests/test_core.py",
      "line": 36,
      "test": "test_several_and_duplicates"
    }
  ],
  "acmelib.core.Learner.fit": [
    {
      "cell": 3,
      "file": "docs/uses.ipynb",
      "test": "uses.ipynb"
    },
    {
      "file": "tests/test_core.py",
      "line": 14,
      "test": "test_fit"
    },
    {
      "file": "tests/test_core.py",
      "line": 20,
      "test": "test_unbound_and_property"
    }
  ],
  "acmelib.core.Learner.predict": [
    {
      "file": "tests/test_core.py",
      "line": 29,
      "test": "test_strings"
    }
  ],
  "acmelib.core.Learner.size": [
    {
      "cell": 5,
      "file": "docs/uses.ipynb",
      "test": "uses.ipynb"
    },
    {
      "file": "tests/test_core.py",
      "line": 20,
      "test": "test_unbound_and_property"
    }
  ],
  "acmelib.core.add": [
    {
      "cell": 3,
      "file": "docs/uses.ipynb",
      "test": "uses.ipynb"
    },
    {
      "file": "tests/test_core.py",
      "line": 9,
      "test": "test_add"
    },
    {
      "file": "tests/test_core.py",
      "line": 36,
      "test": "test_several_and_duplicates"
    },
    {
      "file": "tests/test_core.py",
      "line": 29,
      "test": "test_strings"
    },
    {
      "file": "tests/test_more.py",
      "line": 13,
      "test": "test_errors_at_once"
    }
  ],
  "acmelib.core.mul": [
    {
      "cell": 1,
      "file": "docs/dies.ipynb",
      "test": "dies.ipynb"
    },
    {
      "file": "tests/test_more.py",
      "line": 8,
      "test": "test_mul"
    }
  ],
  "acmelib.core.scaled": [
    {
      "cell": 2,
      "file": "docs/it's \"q\".ipynb",
      "test": "it's \"q\".ipynb"
    },
    {
      "file": "tests/test_core.py",
      "line": 24,
      "test": "test_wrapped"
    }
  ],
  "acmelib.extra.helper": [
    {
      "cell": 5,
      "file": "docs/uses.ipynb",
      "test": "uses.ipynb"
    },
    {
      "file": "tests/test_core.py",
      "line": 29,
      "test": "test_strings"
    }
  ]
}
"""


def child_env() -> dict[str, str]:
    """Our environment for a pytest or nbtest subprocess, without the outer session's
    pytest or nbtest variables."""
    return {k: v for k, v in os.environ.items()
            if not k.startswith("PYTEST_") and k != "NBTEST"}


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def start_pytest(root: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
                            cwd=root, env=child_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, preexec_fn=_default_sigint)


def nbtest_cmd(root: Path, *args: str) -> subprocess.CompletedProcess:
    """`python -m nbtest.cli ARGS` in the project folder."""
    return subprocess.run([sys.executable, "-m", "nbtest.cli", *args], cwd=root,
                          env=child_env(), capture_output=True, text=True, timeout=HANG,
                          preexec_fn=_default_sigint)


def registry_text(root: Path) -> str:
    return (root / REGISTRY).read_text()


def write_registry(root: Path, data: dict) -> str:
    """Write `data` as the project's registry, in the file's own format; return the text."""
    registry = Registry({name: list(items) for name, items in data.items()})
    text = registry.to_json()
    (root / REGISTRY).write_text(text)
    return text


def entry(file: str, test: str, line: int | None = None, cell: int | None = None) -> dict:
    found = {"file": file, "test": test}
    found.update({"line": line} if line is not None else {"cell": cell})
    return found
