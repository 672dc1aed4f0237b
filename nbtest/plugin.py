"""The pytest plugin (entry point `pytest11: nbtest`): hooks only; kept cheap to import."""

from __future__ import annotations
