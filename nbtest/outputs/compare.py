"""Output checks: which cells are compared, and how stored and new outputs are compared.

A cell is compared when it is marked (tag `nbtest-check-output` or `nbval-check-output`, or a
comment line `# NBVAL_CHECK_OUTPUT`), or with `check_outputs` when it is not excluded (tag
`nbtest-ignore-output` / `nbval-ignore-output`, comment `# NBVAL_IGNORE_OUTPUT`). As in nbval,
tags are read first and comments override them, the later marker winning; a cell never run
before (no stored outputs and no execution count) is never compared.

Outputs are compared as nbval does it, key by key: each stream (`stdout`, `stderr`, joined),
each mime type of results and displays, and `error` (name and value, not the traceback); the
order of different keys does not matter, the order within one key does. Text is sanitized
first (sanitize.py); numbers inside text may differ by a relative tolerance. Raster images
are compared for presence and type, or by decoded pixels with `compare_images` (Pillow).
"""

from __future__ import annotations

import base64
import difflib
import io
import json
import math
import re
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import UsageError
from ..notebook import cell_tags, marker_comments
from .sanitize import SanitizerSet

CHECK_TAGS = frozenset({"nbtest-check-output", "nbval-check-output"})
IGNORE_TAGS = frozenset({"nbtest-ignore-output", "nbval-ignore-output",
                         "pytest-validate-ignore-output"})
CHECK_COMMENTS = frozenset({"NBVAL_CHECK_OUTPUT", "NBTEST_CHECK_OUTPUT"})
IGNORE_COMMENTS = frozenset({"NBVAL_IGNORE_OUTPUT", "NBTEST_IGNORE_OUTPUT",
                             "PYTEST_VALIDATE_IGNORE_OUTPUT"})
RASTER_MIMES = frozenset({"image/png", "image/jpeg", "image/gif", "image/bmp", "image/webp"})
SKIPPED_MIMES = frozenset({"application/vnd.jupyter.widget-view+json",
                           "application/vnd.jupyter.widget-state+json"})
DIFF_LINES = 30  # differing lines shown per output
IMAGE_RMS_TOLERANCE = 2.0  # root-mean-square pixel difference allowed, on a 0-255 scale
NUMBER = re.compile(r"(?<![\w.])[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?(?!\w)")


def marked(cell: Mapping[str, Any]) -> bool | None:
    """True (check), False (ignore) or None (unmarked), from tags then comment lines."""
    verdict = None
    for tag in cell.get("metadata", {}).get("tags", ()) or ():
        verdict = True if tag in CHECK_TAGS else False if tag in IGNORE_TAGS else verdict
    for comment in marker_comments(cell):
        verdict = (True if comment in CHECK_COMMENTS else False
                   if comment in IGNORE_COMMENTS else verdict)
    return verdict


def ran_before(cell: Mapping[str, Any]) -> bool:
    """Whether the stored cell holds the result of a run (outputs or an execution count)."""
    return bool(cell.get("outputs")) or cell.get("execution_count") is not None


def is_compared(cell: Mapping[str, Any], check_all: bool = False) -> bool:
    """Whether this cell's new outputs are compared with its stored ones."""
    if cell.get("cell_type") != "code" or not ran_before(cell):
        return False
    if "injected-parameters" in cell_tags(cell):
        return False
    verdict = marked(cell)
    return check_all if verdict is None else verdict


@dataclass(frozen=True)
class Image:
    """An image output: its mime type and data (base64, or text for SVG)."""

    mime: str
    data: str


Value = Any  # a str (text) or an Image


def _text(value: Any) -> str:
    if isinstance(value, list):
        return "".join(map(str, value))
    if isinstance(value, (dict, int, float, bool)) or value is None:
        return json.dumps(value, indent=1, sort_keys=True, ensure_ascii=False)
    return str(value)


def normalize(outputs: Iterable[Mapping[str, Any]], sanitizers: SanitizerSet,
              counts: Counter[str] | None = None,
              compare_images: bool = False) -> dict[str, list[Value]]:
    """Outputs as `{key: [value, ...]}`: streams joined per name, data by mime, errors."""
    keyed: dict[str, list[Value]] = {}
    streams: dict[str, str] = {}
    for output in outputs:
        kind = output.get("output_type")
        if kind == "stream":
            name = str(output.get("name", "stdout"))
            if name not in streams:
                keyed.setdefault(name, [])
            streams[name] = streams.get(name, "") + _text(output.get("text", ""))
        elif kind == "error":
            keyed.setdefault("error", []).append(
                sanitizers.apply(f"{output.get('ename')}: {output.get('evalue')}", counts))
        elif kind in ("execute_result", "display_data"):
            for mime, value in (output.get("data") or {}).items():
                if mime in SKIPPED_MIMES:
                    continue
                if mime in RASTER_MIMES or (mime == "image/svg+xml" and not compare_images):
                    keyed.setdefault(mime, []).append(Image(mime, _text(value)))
                elif _is_text_mime(mime):
                    keyed.setdefault(mime, []).append(sanitizers.apply(_text(value), counts))
                else:  # other binary payloads (PDF, ...): presence and type only
                    keyed.setdefault(mime, []).append(Image(mime, _text(value)))
    for name, text in streams.items():
        keyed[name] = [sanitizers.apply(text, counts)]
    return keyed


def _is_text_mime(mime: str) -> bool:
    return (mime.startswith("text/") or mime in ("application/json", "application/javascript",
                                                 "image/svg+xml") or mime.endswith("+json"))


def texts_match(expected: str, actual: str, rtol: float = 0.0) -> bool:
    """Equal text, except that numbers may differ by the relative tolerance `rtol`."""
    if expected == actual:
        return True
    if rtol <= 0:
        return False
    a, b = NUMBER.split(expected), NUMBER.split(actual)
    na, nb = NUMBER.findall(expected), NUMBER.findall(actual)
    if a != b or len(na) != len(nb):
        return False
    return all(x == y or math.isclose(float(x), float(y), rel_tol=rtol, abs_tol=0.0)
               for x, y in zip(na, nb))


def _pillow() -> Any:
    try:
        from PIL import Image as PILImage
    except ImportError:
        raise UsageError("compare_images needs Pillow: pip install Pillow "
                         "(or leave --nbtest-compare-images off to compare images by "
                         "presence and type only)") from None
    return PILImage


def require_pillow() -> None:
    """Raise a clear UsageError now when compare_images cannot work."""
    _pillow()


def image_difference(expected: Image, actual: Image, compare_images: bool) -> str | None:
    """Why two images differ, or None; without `compare_images` only their types count."""
    if expected.mime != actual.mime:
        return f"{expected.mime} expected, got {actual.mime}"
    if not compare_images or expected.mime not in RASTER_MIMES or expected.data == actual.data:
        return None
    image_mod = _pillow()
    from PIL import ImageChops, ImageStat

    try:
        first, second = (image_mod.open(io.BytesIO(base64.b64decode(img.data))).convert("RGBA")
                         for img in (expected, actual))
    except Exception as exc:  # Pillow raises many types for bad data
        return f"{expected.mime}: cannot decode an image ({exc})"
    if first.size != second.size:
        return (f"{expected.mime}: size {first.size[0]}x{first.size[1]} expected, "
                f"got {second.size[0]}x{second.size[1]}")
    bands = ImageStat.Stat(ImageChops.difference(first, second)).rms
    rms = math.sqrt(sum(b * b for b in bands) / len(bands))
    if rms > IMAGE_RMS_TOLERANCE:
        return (f"{expected.mime}: pixels differ (RMS difference {rms:.2f} > "
                f"{IMAGE_RMS_TOLERANCE:g} on a 0-255 scale)")
    return None


def unified_diff(expected: str, actual: str, label: str, limit: int = DIFF_LINES) -> str:
    """A unified diff of expected vs actual, cut after `limit` differing lines."""
    lines = list(difflib.unified_diff(expected.splitlines(), actual.splitlines(),
                                      f"expected {label}", f"actual {label}", lineterm=""))
    if not lines and expected != actual:  # only line ends differ
        lines = [f"--- expected {label}", f"+++ actual {label}",
                 f"-{expected!r}", f"+{actual!r}"]
    shown, changed = [], 0
    for index, line in enumerate(lines):
        is_change = line[:1] in "+-" and not line.startswith(("---", "+++"))
        if is_change and changed == limit:
            more = sum(1 for rest in lines[index:]
                       if rest[:1] in "+-" and not rest.startswith(("---", "+++")))
            shown.append(f"... {more} more differing lines")
            break
        changed += is_change
        shown.append(line)
    return "\n".join(shown)


def _describe(value: Value | None) -> str:
    if value is None:
        return ""
    if isinstance(value, Image):
        return f"<{value.mime} image>"
    return str(value)


def _value_difference(key: str, expected: Value | None, actual: Value | None, rtol: float,
                      compare_images: bool) -> str | None:
    if isinstance(expected, Image) and isinstance(actual, Image):
        problem = image_difference(expected, actual, compare_images)
        return f"{key}: {problem}" if problem else None
    if isinstance(expected, str) and isinstance(actual, str):
        if texts_match(expected, actual, rtol):
            return None
        return unified_diff(expected, actual, key)
    return unified_diff(_describe(expected), _describe(actual), key)


def compare_outputs(expected: Sequence[Mapping[str, Any]], actual: Sequence[Mapping[str, Any]],
                    sanitizers: SanitizerSet | None = None, rtol: float = 0.0,
                    compare_images: bool = False,
                    counts: Counter[str] | None = None,
                    ignore: Collection[str] = ()) -> str | None:
    """None when they match, else `output differs (keys)` and a diff per differing output;
    the keys in `ignore` (`stderr`, `text/html`, ...) are not compared."""
    sanitizers = sanitizers if sanitizers is not None else SanitizerSet()
    old = normalize(expected, sanitizers, counts, compare_images)
    new = normalize(actual, sanitizers, counts, compare_images)
    for key in ignore:
        old.pop(key, None)
        new.pop(key, None)
    differing: list[str] = []
    bodies: list[str] = []
    for key in list(old) + [k for k in new if k not in old]:
        left, right = old.get(key, []), new.get(key, [])
        for position in range(max(len(left), len(right))):
            label = key if max(len(left), len(right)) == 1 else f"{key} [{position + 1}]"
            problem = _value_difference(
                label, left[position] if position < len(left) else None,
                right[position] if position < len(right) else None, rtol, compare_images)
            if problem:
                if key not in differing:
                    differing.append(key)
                bodies.append(problem)
    if not differing:
        return None
    return f"output differs ({', '.join(differing)})\n" + "\n".join(bodies)
