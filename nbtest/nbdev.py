"""nbdev projects: the conventions `nbdev_test` follows, so nbtest runs what it runs.

A project is an nbdev project when its `settings.ini` has nbdev's keys (`lib_name` with
`nbs_path` or `tst_flags`), or its pyproject.toml has a `[tool.nbdev]` table. There, as in
nbdev 3.3 (`nbdev/test.py`, fastcore's `nbio.py`):

- notebooks nbdev does not test are not collected: a name starting with `_` or `.`, a folder
  (below the notebooks' folder, `nbs_path`) whose name does, a `.notest` file beside the
  notebook (only that folder's own notebooks: nbdev does not look in parent folders), front
  matter saying `skip_exec: true`, a kernel whose language is not Python;
- front matter `eval: false` is the default of every cell: only cells saying `#| eval: true`
  (or a bare `#| eval`) run;
- cells containing `nbdev_export(` (or nbdev 1's `notebook2script(`) anywhere are not run:
  they would rewrite the library's source while the suite runs;
- the `tst_flags` (`slow|cuda`; nbdev 3's default `notest` for `[tool.nbdev]`) are cell
  flags (`#|slow`): such a cell runs only when its flag is given (`--nbtest-flags slow`;
  `--runslow` gives `slow`), and a notebook whose every code cell carries a flag gets that
  flag as a marker and is skipped without it;
- the kernel has `IN_TEST=1` in its environment and the project's folder (where settings.ini
  or pyproject.toml is) first on `sys.path`, so `from mylib import ...` works uninstalled.

Front matter is read as nbdev reads it: the notebook's `metadata.nbdev`, then its first
markdown cell (a whole `---` YAML block, or `- key: value` lines under a `# Title`), then its
first raw cell (a whole `---` YAML block), later ones winning.

`#|eval: false` (any spacing) is honoured in every project: it is nbdev's and Quarto's "do not
run this cell" (notebook.py).
"""

from __future__ import annotations

import configparser
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import NotebookLoadError

# fastcore's does_cell_eval: `'nbdev_export(' in cell.source`, anywhere in the cell.
EXPORT_CALLS = ("nbdev_export(", "notebook2script(")
SKIP_NAME = re.compile(r"^[_.]")  # nbglob's skip_file_re and skip_folder_re
NOTEST = ".notest"  # nbdev_test's ignore_fname: its sibling notebooks are not tested
_H1 = re.compile(r"^#\s+(\S.*?)\s*$", re.M)
_SUMMARY = re.compile(r"^>\s+(\S.*?)\s*$", re.M)
_LIST_ITEM = re.compile(r"^-\s+(\S.*:.*\S)\s*$", re.M)
_TRUE = ("y", "yes", "t", "true", "on", "1")  # fastcore's str2bool


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
        if isinstance(table, Mapping):  # nbdev 3's defaults: nbs_path nbs, tst_flags notest
            return {**table, "tst_flags": _flags(table.get("tst_flags", "notest"))}
    return None


def project_folder(start: Path) -> Path | None:
    """The nearest folder from `start` up holding the nbdev project's settings (nbdev's
    `config_path`), if any."""
    start = start.resolve()
    for folder in [start, *start.parents]:
        if project_settings(folder) is not None:
            return folder
    return None


def _flags(value: Any) -> list[str]:
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value if str(v)]
    return [part for part in re.split(r"[|,\s]+", str(value)) if part]


def left_out(path: Path, root: Path, notebook: Any = None) -> str | None:
    """Why nbdev_test would not test the notebook at `path` (`root`: the project's folder),
    if it would not."""
    if SKIP_NAME.match(path.name):
        return f"its name starts with {path.name[0]}"
    settings = project_settings(root) or {}
    nbs = (root / str(settings.get("nbs_path") or "nbs")).resolve()
    base = nbs if _within(path, nbs) else root.resolve()
    if _within(path, base):
        for part in path.resolve().parent.relative_to(base).parts:
            if SKIP_NAME.match(part):
                return f"it is in {part}/, whose name starts with {part[0]}"
    if (path.parent / NOTEST).exists():
        return f"{path.parent.name or path.parent}/ holds a {NOTEST} file"
    if notebook is not None:
        return not_run(notebook, path)
    return None


def _within(path: Path, folder: Path) -> bool:
    return folder in path.resolve().parents


def not_run(notebook: Any, path: Path | str = "the notebook") -> str | None:
    """Why nbdev_test passes this notebook without running it (its front matter says
    `skip_exec: true`, or its kernel's language is not Python), if it does."""
    if skips_exec(notebook, path):
        return "its front matter says skip_exec: true"
    language = _metadata(notebook).get("kernelspec", {}).get("language", "python")
    if language != "python":  # fastcore's nb_lang, compared as nbdev_test does
        return f"its kernel's language is {language}, not python: nbdev_test does not run it"
    return None


def skips_exec(notebook: Any, path: Path | str = "the notebook") -> bool:
    """Whether the notebook's front matter says `skip_exec: true`."""
    return _is_true(front_matter(notebook, path).get("skip_exec", False))


def _is_true(value: Any) -> bool:
    return value.lower() in _TRUE if isinstance(value, str) else bool(value)


def default_eval(notebook: Any, path: Path | str = "the notebook") -> bool:
    """Whether a cell without its own `eval` directive runs: the front matter's `eval`
    (fastcore's fm_default_eval), True when it says nothing."""
    value = front_matter(notebook, path).get("eval")
    return value not in (False, "false", "False")


def cell_evals(cell: Mapping[str, Any], default: bool) -> bool:
    """Whether nbdev_test runs this code cell (fastcore's does_cell_eval): not when it calls
    nbdev_export(); else as its `#| eval` directive says, else `default`."""
    from .notebook import cell_source, directives

    if calls_export(cell_source(cell)):
        return False
    value = directives(cell).get("eval")
    if value in ("", "true", "True"):
        return True
    if value in ("false", "False"):
        return False
    return default


def front_matter(notebook: Any, path: Path | str = "the notebook") -> dict[str, Any]:
    """The notebook's front matter as nbdev reads it (fastcore's nb_frontmatter):
    `metadata.nbdev`, then the first markdown cell, then the first raw cell."""
    from .notebook import cell_source

    cells = notebook.get("cells", ()) if isinstance(notebook, Mapping) else notebook.cells
    found = dict(_metadata(notebook).get("nbdev") or {})
    markdown = next((c for c in cells if c.get("cell_type") == "markdown"), None)
    raw = next((c for c in cells if c.get("cell_type") == "raw"), None)
    if markdown is not None:
        text = cell_source(markdown)
        found.update(_yaml_block(text, path) or _markdown_list(text))
    if raw is not None:
        found.update(_yaml_block(cell_source(raw), path))
    return found


def _metadata(notebook: Any) -> Mapping[str, Any]:
    metadata = notebook.get("metadata") if isinstance(notebook, Mapping) else notebook.metadata
    return metadata if isinstance(metadata, Mapping) else {}


def _yaml_block(text: str, path: Path | str) -> dict[str, Any]:
    """A cell that is wholly a `---` YAML block, as a mapping ({} for any other cell)."""
    import yaml

    text = text.strip()
    if not text.startswith("---\n"):
        return {}
    ends = [i for i in (text.find(f"\n{c}\n", 3) for c in ("---", "...")) if i >= 0]
    if ends:
        end = min(ends)
    elif text.endswith(("\n---", "\n...")):
        end = len(text) - 4
    else:
        return {}
    if text[end + 5:].strip():
        return {}
    try:
        found = yaml.safe_load(text[4:end])
    except yaml.YAMLError as exc:
        raise NotebookLoadError(
            f"{path}: its front matter is not valid YAML "
            f"({str(exc).splitlines()[0]}). Fix the `---` block of its first raw or markdown "
            "cell.", path=str(path)) from None
    return found if isinstance(found, dict) else {}


def _markdown_list(text: str) -> dict[str, Any]:
    """nbdev's front matter in markdown: `# Title`, `> summary`, `- key: value` lines."""
    import yaml

    title = _H1.search(text)
    if title is None:
        return {}
    found: dict[str, Any] = {"title": title.group(1)}
    summary = _SUMMARY.search(text)
    if summary:
        found["description"] = summary.group(1)
    items = _LIST_ITEM.findall(text)
    if items:
        try:
            parsed = yaml.safe_load("\n".join(items))
        except yaml.YAMLError:  # nbdev warns and goes on without them
            parsed = None
        if isinstance(parsed, dict):
            found.update(parsed)
    return found


def calls_export(source: str) -> bool:
    """Whether a cell calls nbdev_export() (or notebook2script()): nbdev's rule, the call's
    name and parenthesis anywhere in the cell."""
    return any(call in source for call in EXPORT_CALLS)


def kernel_setup(path: Path) -> tuple[dict[str, str], list[str]]:
    """What nbdev_test gives the notebook at `path`: (environment, folders first on
    sys.path): IN_TEST=1, and the project's folder."""
    folder = project_folder(path.parent)
    return {"IN_TEST": "1"}, [str(folder)] if folder is not None else []


def notebook_flags(code_cells: Sequence[Mapping[str, Any]], tst_flags: Sequence[str]) -> set[str]:
    """The flags every code cell carries: the notebook's own (none if a cell carries none)."""
    from .notebook import directives

    shared: set[str] | None = None
    for cell in code_cells:
        flags = set(directives(cell)) & set(tst_flags)
        shared = flags if shared is None else shared & flags
    return shared or set()
