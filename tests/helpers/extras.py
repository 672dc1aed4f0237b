"""Skips for tests that need what an extra installs, not nbtest's required dependencies
(`make test-install` runs a subset of the suite in an install without extras)."""

from __future__ import annotations

import importlib.util

import pytest


def needs(module: str, extra: str) -> pytest.MarkDecorator:
    """Skip unless `module` can be imported: it comes with an extra, not with the install that
    has only nbtest's required dependencies (`make test-install` runs the suite there too)."""
    return pytest.mark.skipif(importlib.util.find_spec(module) is None,
                              reason=f"needs {module} (pip install 'pytest-nbtest[{extra}]')")


NEEDS_XDIST = needs("xdist", "compat")
NEEDS_NUMPY = needs("numpy", "examples")
NEEDS_NBCONVERT = needs("nbconvert", "html")
