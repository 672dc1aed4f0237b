"""Papermill-compatible notebook parameters, injected with papermill's own code."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from nbformat import NotebookNode

from .errors import ParameterError
from .notebook import INJECTED_TAG, cell_tags


def parse_value(text: str) -> Any:
    """Type a command-line value as papermill's `-p` does: bool, None, int, float, else str."""
    special = {"True": True, "False": False, "None": None}
    if text in special:
        return special[text]
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_assignment(text: str) -> tuple[str, Any]:
    """`NAME=VALUE` (pytest's --nbtest-param) as a typed pair."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip().isidentifier():
        raise ParameterError(f"bad parameter {text!r}: write NAME=VALUE, NAME a Python identifier")
    return name.strip(), parse_value(value)


def read_parameters_file(path: str | Path) -> dict[str, Any]:
    """Parameters from a YAML or JSON file holding a mapping."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ParameterError(f"{path}: cannot read parameters: {exc}", path=str(path)) from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ParameterError(f"{path}: parameters must be a mapping of names to values",
                             path=str(path))
    return dict(data)


def inject_parameters(nb: NotebookNode, parameters: Mapping[str, Any], kernel_name: str,
                      language: str) -> NotebookNode:
    """A copy of `nb` with an `injected-parameters` cell, placed as papermill places it."""
    from papermill.parameterize import parameterize_notebook  # costly import: only when needed

    nb.metadata.setdefault("papermill", {})
    # papermill reads `cell.metadata.tags` on every cell; add the missing ones only for its
    # benefit and take them away again, so the executed notebook gains nothing else.
    tagless = [cell for cell in nb.cells if "tags" not in cell.metadata]
    for cell in tagless:
        cell.metadata["tags"] = []
    # papermill warns through logging when there is no `parameters` cell; that is legal here.
    logger = logging.getLogger("papermill")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        injected: NotebookNode = parameterize_notebook(nb, dict(parameters),
                                                       kernel_name=kernel_name,
                                                       language=language)
        return injected
    except Exception as exc:  # papermill raises plain exceptions for untranslatable values
        raise ParameterError(f"cannot inject parameters {dict(parameters)!r}: {exc}") from None
    finally:
        logger.setLevel(level)
        for cell in tagless:
            if cell.metadata.get("tags") == []:
                del cell.metadata["tags"]


def injected_index(nb: NotebookNode) -> int | None:
    """Position of the injected-parameters cell, if any."""
    for index, cell in enumerate(nb.cells):
        if INJECTED_TAG in cell_tags(cell):
            return index
    return None
