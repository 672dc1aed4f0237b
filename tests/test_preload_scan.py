"""The static scans of a notebook's cells that decide fork or spawn and what `auto` preloads:
they read cells as code (a variable read is no reason to spawn, one set before the import is),
and say nothing about what they cannot parse (no SyntaxWarning for an invalid escape)."""

from __future__ import annotations

import warnings

import pytest

from nbtest import this_tests
from nbtest.kernel.preload import env_set_before_import, notebook_imports

REASON = "the notebook sets environment variables before importing torch"


@pytest.mark.parametrize("cell", [
    "import os\ndef device():\n    return os.environ.get('DEVICE', 'cpu')",
    "import os\nif os.environ['HOME'] == '/root':\n    pass",
    "import os\nflag = 'X' in os.environ\nvalue = os.getenv('X')",
    "%env",
    "%env HOME",
])
def test_reading_the_environment_is_no_reason_to_spawn(cell: str) -> None:
    """Only a cell that changes the environment before the import makes a kernel spawn."""
    this_tests(env_set_before_import)
    assert env_set_before_import([cell, "import torch"], ["torch"]) is None
    assert env_set_before_import([f"{cell}\nimport torch"], ["torch"]) is None


@pytest.mark.parametrize("cell", [
    "import os\nos.environ['OMP_NUM_THREADS'] = '1'",
    "import os\nos.environ[\"PATH\"] += ':/opt/bin'",
    "import os\nos.environ.update(OMP_NUM_THREADS='1')",
    "import os\nos.environ.setdefault('OMP_NUM_THREADS', '1')",
    "import os\nos.putenv('OMP_NUM_THREADS', '1')",
    "import os\ndel os.environ['CUDA_VISIBLE_DEVICES']",
    "import os\nos.environ.pop('CUDA_VISIBLE_DEVICES', None)",
    "from os import environ\nenviron['OMP_NUM_THREADS'] = '1'",
    "%env OMP_NUM_THREADS=1",
    "%env OMP_NUM_THREADS 1",
    "%set_env OMP_NUM_THREADS 1",
])
def test_changing_the_environment_before_the_import_spawns(cell: str) -> None:
    this_tests(env_set_before_import)
    assert env_set_before_import([cell, "import torch"], ["torch"]).startswith(REASON)
    assert env_set_before_import([f"{cell}\nimport torch"], ["torch"]).startswith(REASON)
    assert env_set_before_import([f"import torch\n{cell}"], ["torch"]) is None  # after it


def test_the_import_scan_is_silent_about_invalid_escapes() -> None:
    """A cell with `'\\d'` in a string: the scan finds its imports and prints no warning."""
    this_tests(notebook_imports)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert notebook_imports(["import json\npattern = '\\d+'"]) == ["json"]
    assert [str(w.message) for w in caught] == []
