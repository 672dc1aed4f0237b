"""Loading and validating notebooks; cell numbers, tags and `metadata.nbtest` settings."""

from __future__ import annotations

import json
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import METADATA, parse_layer
from .errors import NotebookLoadError

if TYPE_CHECKING:  # nbformat imports jsonschema (~50 ms): a session without notebooks never pays
    from nbformat import NotebookNode

SKIP_TAGS = frozenset({"skip-execution", "nbval-skip"})
RAISES_TAGS = frozenset({"raises-exception", "nbval-raises-exception"})
# nbval's comment markers: a comment line `# NBVAL_SKIP` in the source acts as the tag.
SKIP_COMMENTS = frozenset({"NBVAL_SKIP"})
RAISES_COMMENTS = frozenset({"NBVAL_RAISES_EXCEPTION"})
INJECTED_TAG = "injected-parameters"
# Folders whose notebooks are never run: Jupyter's checkpoints, Sphinx's build output.
NEVER_COLLECTED = frozenset({".ipynb_checkpoints", "_build"})


class NotebookWarning(UserWarning):
    """A notebook nbtest runs although it is not quite right (the file is left as it is)."""


def _fail(path: Path, what: str, fix: str) -> NotebookLoadError:
    return NotebookLoadError(f"{path}: {what}. {fix}", path=str(path), reason=what)


def load_notebook(path: str | Path) -> NotebookNode:
    """Read and validate a notebook, or raise NotebookLoadError naming the file and the fix."""
    path = Path(path)
    if not path.exists():
        raise _fail(path, "no such file", "Check the path and the current directory.")
    if path.is_dir():
        raise _fail(path, "is a directory, not a notebook",
                    "Give a .ipynb file, or run a folder with `pytest --nbtest DIR`.")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _fail(path, f"cannot be read ({exc})",
                    "Check its permissions and encoding.") from None
    if not text.strip():
        raise _fail(path, "is empty, not a notebook",
                    "Save it again from Jupyter or restore it from version control.")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise _fail(path, f"is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}",
                    "Fix the file there (a merge conflict or an unfinished save?) "
                    "or restore it from version control.") from None
    return notebook_from_dict(data, path)


def notebook_from_dict(data: Any, path: Path) -> NotebookNode:
    """Validate parsed JSON as an nbformat 4 notebook; older versions are converted first."""
    if not isinstance(data, dict) or "nbformat" not in data:
        raise _fail(path, "is JSON but not a Jupyter notebook (no 'nbformat' key)",
                    "Give a .ipynb file saved by Jupyter.")
    major = data["nbformat"]
    if not isinstance(major, int) or isinstance(major, bool):
        raise _fail(path, f"has 'nbformat': {major!r}, which is not a version number",
                    "Save it again from Jupyter.")
    if major != 4:
        data = _upgraded(data, major, path)
    if not isinstance(data.get("cells"), list):
        raise _fail(path, "is JSON but not a Jupyter notebook (no 'cells' list)",
                    "Give a .ipynb file saved by Jupyter.")
    import nbformat
    from nbformat.v4.rwbase import rejoin_lines, strip_transient

    nb = nbformat.from_dict(data)
    _dedupe_tags(nb, path)
    try:
        with warnings.catch_warnings():  # e.g. MissingIDFieldWarning: not the user's problem
            warnings.simplefilter("ignore")
            nbformat.validate(nb)
    except nbformat.ValidationError as exc:
        where = "/".join(str(p) for p in getattr(exc, "absolute_path", ())) or "top level"
        raise _fail(path, f"is not a valid notebook: {exc.message} (at {where})",
                    "Open and save it in Jupyter, or fix that field.") from None
    # What nbformat's own reader does after json.loads: multi-line lists become strings.
    joined: NotebookNode = strip_transient(rejoin_lines(nb))
    return joined


def _dedupe_tags(nb: NotebookNode, path: Path) -> None:
    """Cells whose tags repeat (`["a", "a"]`) break nbformat's schema only by that; nbmake,
    nbval and papermill run them, so nbtest drops the repeats in memory and warns."""
    repeated = []
    for number, cell in enumerate(nb.get("cells", ()), start=1):
        tags = cell.get("metadata", {}).get("tags") if isinstance(cell, dict) else None
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            continue
        unique = list(dict.fromkeys(tags))
        if len(unique) < len(tags):
            cell["metadata"]["tags"] = unique
            twice = sorted(tag for tag in unique if tags.count(tag) > 1)
            repeated.append(f"cell {number} ({', '.join(twice)})")
    if repeated:
        warnings.warn(f"{path}: repeated cell tags in {'; '.join(repeated)}: each is counted "
                      "once; remove the repeats from the file to silence this",
                      NotebookWarning, stacklevel=4)


def _upgraded(data: dict[str, Any], major: int, path: Path) -> Any:
    """An older notebook converted to nbformat 4 in memory (the file is never written), as
    nbmake, nbval and papermill run them; a clear error when nbformat cannot convert it."""
    import nbformat.reader

    if major > 4:
        raise _fail(path, f"uses nbformat {major}, newer than the nbformat 4 this nbformat "
                    f"library ({nbformat.__version__}) reads",
                    "Upgrade nbformat (pip install -U nbformat), or save the notebook as "
                    "nbformat 4 from the Jupyter that wrote it.")
    try:
        with warnings.catch_warnings():  # conversion warnings: nbtest reports what fails
            warnings.simplefilter("ignore")
            # nbformat's reader first: it joins each old version's multi-line fields.
            return nbformat.convert(nbformat.reader.reads(json.dumps(data)), 4)
    except Exception as exc:  # nbformat raises ValidationError, ValueError, NBFormatError...
        raise _fail(path, f"uses nbformat {major}, which nbformat cannot convert to nbformat 4 "
                    f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})",
                    "Open and save it in Jupyter (that converts it to nbformat 4), or restore "
                    "it from version control.") from None


def cell_tags(cell: Mapping[str, Any]) -> frozenset[str]:
    """The tags of a cell."""
    return frozenset(cell.get("metadata", {}).get("tags", ()))


def cell_source(cell: Mapping[str, Any]) -> str:
    """A cell's source as one string (nbformat stores it as a string or a list of lines)."""
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else str(source)


def marker_comments(cell: Mapping[str, Any]) -> list[str]:
    """The comment lines of a cell's source, in order, as nbval reads its markers: each
    whole line starting with `#`, without the `#`s and blanks (`# NBVAL_SKIP` -> NBVAL_SKIP)."""
    lines = (line.strip() for line in cell_source(cell).splitlines())
    return [line.lstrip("#").strip() for line in lines if line.startswith("#")]


_DIRECTIVE = re.compile(r"^#\s*\|\s*([\w-]+)\s*(?::\s*(.*?))?\s*$")


def directives(cell: Mapping[str, Any]) -> dict[str, str]:
    """nbdev / Quarto cell directives: the `#| name: value` lines (any spacing) at the top
    of a cell, as `{name: value}` (`""` for a bare `#|slow`)."""
    found: dict[str, str] = {}
    for line in cell_source(cell).splitlines():
        if not line.strip():
            continue
        match = _DIRECTIVE.match(line.strip())
        if match is None:
            break  # directives come first in a cell
        found[match.group(1)] = (match.group(2) or "").strip()
    return found


def is_skipped(cell: Mapping[str, Any]) -> bool:
    """A cell tagged skip-execution (or nbval-skip), marked `# NBVAL_SKIP`, or carrying the
    directive `#| eval: false` is not run."""
    return bool(cell_tags(cell) & SKIP_TAGS) or not SKIP_COMMENTS.isdisjoint(
        marker_comments(cell)) or directives(cell).get("eval", "").lower() == "false"


def expects_error(cell: Mapping[str, Any]) -> bool:
    """A cell tagged raises-exception (or nbval-raises-exception), or marked
    `# NBVAL_RAISES_EXCEPTION`, must raise."""
    return bool(cell_tags(cell) & RAISES_TAGS) or not RAISES_COMMENTS.isdisjoint(
        marker_comments(cell))


def is_runnable(cell: Mapping[str, Any]) -> bool:
    """A code cell with some source that is not skipped by a tag."""
    return cell.get("cell_type") == "code" and bool(cell.get("source", "").strip()) \
        and not is_skipped(cell)


def notebook_settings(nb: NotebookNode, path: Path) -> dict[str, Any]:
    """The parsed `metadata.nbtest` layer, with nbmake's `metadata.execution` keys and
    pytest-notebook's `metadata.nbreg.skip` honoured."""
    return metadata_settings(nb.metadata, path)


def read_metadata(path: Path) -> Mapping[str, Any]:
    """A notebook's top-level metadata, read without the notebook's validation (nor the import
    of nbformat): enough for the xdist controller, whose workers load and check the notebook."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise _fail(path, f"cannot be read as a notebook ({exc})",
                    "Its worker reports what is wrong with it.") from None
    metadata = data.get("metadata") if isinstance(data, dict) else None
    return metadata if isinstance(metadata, dict) else {}


def metadata_settings(metadata: Mapping[str, Any], path: Path) -> dict[str, Any]:
    """notebook_settings from the notebook's metadata alone."""
    raw: dict[str, Any] = {}
    execution = metadata.get("execution", {})
    if isinstance(execution, Mapping):
        raw.update({k: execution[k] for k in ("timeout", "allow_errors") if k in execution})
    nbreg = metadata.get("nbreg", {})  # pytest-notebook's
    if isinstance(nbreg, Mapping) and nbreg.get("skip"):
        raw["skip"] = nbreg.get("skip_reason") or "metadata.nbreg.skip"
    own = metadata.get("nbtest", {})
    if not isinstance(own, Mapping):
        raise NotebookLoadError(f"{path}: metadata.nbtest must be a mapping, not {own!r}. "
                                "Fix it in Edit > Notebook Metadata.", path=str(path))
    raw.update(own)
    return parse_layer(raw, METADATA, f"{path}: metadata.nbtest")


DEFAULT_KERNEL = "python3"  # the kernel of a notebook that names none, unless --kernel says


def kernel_name(nb: NotebookNode) -> str | None:
    """The kernelspec name the notebook asks for, if any."""
    return nb.metadata.get("kernelspec", {}).get("name") or None


def first_line(source: str) -> str:
    """The first non-blank line of a cell's source."""
    for line in source.splitlines():
        if line.strip():
            return line.strip()
    return ""
