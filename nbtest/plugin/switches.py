"""The seed's marker switches (`--runslow`, `--runcpp`, `--skipint`) and nbtest's markers."""

from __future__ import annotations

import pytest

from .state import CONFIG_KEY, SWITCHES_KEY

# The seed's marker switches: marker, option (`--DEST`), whether the option runs the marker's
# tests (else it skips them), help.
FASTAI_SWITCHES = (
    ("slow", "runslow", True, "run slow tests"),
    ("cpp", "runcpp", True, "run cuda cpp extension tests"),
    ("integration", "skipint", False, "skip integration tests"),
)

MARKERS = {
    "slow": "slow test; skipped unless --runslow is given",
    "integration": "integration test; skipped with --skipint",
    "cuda": "needs a CUDA device; skipped when none is visible",
    "cpp": "needs the CUDA C++ extension build; skipped unless --runcpp is given",
}

def switched_off(config: pytest.Config, markers: set[str]) -> str | None:
    """Why a test with these markers is skipped by the seed's switches, if it is (a switch
    the project's conftest declared is the project's to apply)."""
    owned = config.stash.get(SWITCHES_KEY, frozenset())
    nbconfig = config.stash.get(CONFIG_KEY, None)
    given = set(nbconfig.flags) if nbconfig is not None else set()  # --nbtest-flags slow
    for marker, dest, runs, _ in FASTAI_SWITCHES:
        if marker in given:
            continue
        if dest in owned and marker in markers and bool(config.getoption(dest)) != runs:
            # Say it is nbtest's switch: a `.py` test skipped by it surprises a project whose
            # own conftest never had one.
            return (f"marked {marker}: pass --{dest} to run it (nbtest skips {marker} tests "
                    "without it)" if runs else f"marked {marker}: --{dest} given")
    return None
