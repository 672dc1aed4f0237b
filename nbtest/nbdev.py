"""nbdev projects: the conventions `nbdev_test` follows, so nbtest runs what it runs.

A project is an nbdev project when its `settings.ini` has nbdev's keys (`lib_name` with
`nbs_path` or `tst_flags`), or its pyproject.toml has a `[tool.nbdev]` table. There:

- notebooks nbdev does not test are not collected: a name starting with `_`, a folder (up to
  the project root) holding a `.notest` file, front matter saying `skip_exec: true`;
- cells that call `nbdev_export()` / `notebook2script()` are not run: they would rewrite the
  library's source while the suite runs (concurrently under xdist);
- the `tst_flags` of settings.ini (`slow|cuda`) are cell flags (`#|slow`): such a cell runs
  only when its flag is given (`--nbtest-flags slow`; `--runslow` gives `slow`), and a notebook
  whose every code cell carries a flag gets that flag as a marker and is skipped without it.

`#|eval: false` (any spacing) is honoured in every project: it is nbdev's and Quarto's "do not
run this cell" (notebook.py).
"""

from __future__ import annotations

import configparser
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

EXPORT_CALL = re.compile(r"^\s*(?:[\w.]+\.)?(nbdev_export|notebook2script)\s*\(", re.M)
_FRONT_MATTER_YAML = re.compile(r"^---\s*\n(.*?)\n---", re.S)
_FRONT_MATTER_LIST = re.compile(r"^\s*-\s*([\w-]+)\s*:\s*(.*?)\s*$", re.M)


def project_settings(root: Path) -> dict[str, Any] | None:
    """nbdev's settings of the project at `root` (`tst_flags` as a list), or None when it is
    not an nbdev project."""
    ini = root / "settings.ini"
    if ini.is_file():
        parser = configparser.ConfigParser(interpolation=None)
        try:
            parser.read(ini, encoding="utf-8")
        except configparser.Error:
            return None
        values = dict(parser.defaults())
        if "lib_name" in values and ("nbs_path" in values or "tst_flags" in values):
            return {**values, "tst_flags": _flags(values.get("tst_flags", ""))}
    pyproject = root / "pyproject.toml"
    if pyproject.is_file():
        from .config import read_toml

        table = read_toml(pyproject).get("tool", {}).get("nbdev")
        if isinstance(table, Mapping):
            return {**table, "tst_flags": _flags(table.get("tst_flags", ""))}
    return None


def _flags(value: Any) -> list[str]:
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value if str(v)]
    return [part for part in re.split(r"[|,\s]+", str(value)) if part]


def left_out(path: Path, root: Path, notebook: Any = None) -> str | None:
    """Why nbdev_test would not test the notebook at `path`, if it would not."""
    if path.name.startswith("_"):
        return "its name starts with _"
    for folder in [path.parent, *path.parent.parents]:
        if (folder / ".notest").exists():
            return f"{folder.name or folder}/ holds a .notest file"
        if folder == root or root not in folder.parents:
            break
    if notebook is not None and skips_exec(notebook):
        return "its front matter says skip_exec: true"
    return None


def skips_exec(notebook: Any) -> bool:
    """Whether the notebook's front matter says `skip_exec: true`."""
    return str(front_matter(notebook).get("skip_exec", "")).lower() in ("true", "yes", "1")


def front_matter(notebook: Any) -> dict[str, str]:
    """The notebook's front matter: a `---` YAML block in its first cell (raw or markdown), or
    nbdev's `- key: value` lines in its first markdown cell."""
    cells = notebook.get("cells", ()) if isinstance(notebook, Mapping) else notebook.cells
    for cell in cells[:1]:
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else str(source)
        block = _FRONT_MATTER_YAML.match(source.lstrip())
        text = block.group(1) if block else source if cell.get("cell_type") == "markdown" \
            else ""
        found = dict(_FRONT_MATTER_LIST.findall(text))
        for line in text.splitlines() if block else ():
            key, sep, value = line.partition(":")
            if sep and key.strip() and not key.startswith((" ", "-")):
                found[key.strip()] = value.strip().strip("'\"")
        return found
    return {}


def calls_export(source: str) -> bool:
    """Whether a cell calls nbdev_export() or notebook2script()."""
    return bool(EXPORT_CALL.search(source))


def notebook_flags(code_cells: Sequence[Mapping[str, Any]], tst_flags: Sequence[str]) -> set[str]:
    """The flags every code cell carries: the notebook's own (none if a cell carries none)."""
    from .notebook import directives

    shared: set[str] | None = None
    for cell in code_cells:
        flags = set(directives(cell)) & set(tst_flags)
        shared = flags if shared is None else shared & flags
    return shared or set()
