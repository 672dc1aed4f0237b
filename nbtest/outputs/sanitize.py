"""Sanitizers: regex -> replacement rules applied to output text before it is compared.

The built-ins are always on: memory addresses and object ids in reprs, timestamps and dates,
durations (`%time`, `%timeit`, `Total time: 00:02`), progress bars (carriage-return rewrites,
tqdm's `[00:01<00:00, 9.1it/s]`) and ANSI codes. User sanitizers come from a file in nbval's
`--nbval-sanitize-with` format and from `[tool.nbtest] sanitizers`; they run before the
built-ins (so a rule written for nbval sees the text nbval saw) and every match is counted,
so a session can name the user sanitizers that never matched anything (nbval#204).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import UsageError
from ..failure_text import strip_ansi
from ..utils.text import apply_print_resets

if TYPE_CHECKING:
    from ..config import NbTestConfig


@dataclass(frozen=True)
class Sanitizer:
    """One rule: replace what `pattern` matches by `replace` (`\\1` back-references work)."""

    name: str
    pattern: re.Pattern[str]
    replace: str
    source: str = "built-in"  # where the rule was declared, for reports

    def describe(self) -> str:
        """`[name] regex: ... (from FILE)`, for reports."""
        return f"[{self.name}] regex: {self.pattern.pattern} (from {self.source})"


def _rule(name: str, pattern: str, replace: str, flags: int = 0) -> Sanitizer:
    return Sanitizer(name, re.compile(pattern, flags), replace)


_DAY = r"(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)[a-z]*\.?,?"
_MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*\.?"
_CLOCK = r"\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?"
_UNIT = r"(?:ns|[µμ]s|us|ms|s|secs?|seconds?|mins?|minutes?|h|hours?)"

# Order matters: whole timestamps before their dates and times, progress before clocks.
BUILTIN_SANITIZERS: tuple[Sanitizer, ...] = (
    _rule("memory-address", r"\b0x[0-9a-fA-F]{6,16}\b", "0x<ADDRESS>"),
    _rule("object-id", r"\b(id\s*[=:]\s*)\d{6,}\b", r"\1<ID>", re.IGNORECASE),
    _rule("process-id", r"\b((?:pid|ppid|parent)\s*[=:]\s*)\d+\b", r"\1<PID>"),
    _rule("uuid", r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}"
                  r"-[0-9a-fA-F]{12}\b", "<UUID>"),
    _rule("tqdm", r"\[(?:\d+:)?\d{2}:\d{2}(?:<(?:(?:\d+:)?\d{2}:\d{2}|\?))?(?:,[^\]\n]*)?\]",
          "[<PROGRESS>]"),
    _rule("fastprogress", r"\[(\d+/\d+) (?:\d+:)?\d{2}:\d{2}(?:<(?:\d+:)?\d{2}:\d{2})?[^\]\n]*\]",
          r"[\1 <PROGRESS>]"),
    _rule("timeit", r"\S+ \S+ ± \S+ \S+ per loop \(mean ± std\. dev\. of [^)\n]*\)",
          "<DURATION> per loop"),
    _rule("cpu-times", r"(CPU times: ).*", r"\1<DURATION>"),
    _rule("wall-time", r"(Wall time: ).*", r"\1<DURATION>"),
    _rule("iso-timestamp", r"\b\d{4}-\d{2}-\d{2}[T ]" + _CLOCK +
          r"(?:Z|[+-]\d{2}:?\d{2}|\b)", "<TIMESTAMP>"),
    _rule("datetime-repr", r"(datetime\.(?:datetime|date)\()\d{4}(?:, \d+)*", r"\1<TIMESTAMP>"),
    _rule("ctime", r"\b" + _DAY + r"\s+" + _MONTH + r"\s+\d{1,2},?\s+" + _CLOCK + r"(?:\s+\d{4})?"
          r"(?:\s+(?:[A-Z]{3,4}|[+-]\d{4}))?", "<TIMESTAMP>"),
    _rule("rfc-timestamp", r"\b(?:" + _DAY + r"\s+)?\d{1,2}\s+" + _MONTH + r"\s+\d{4}\s+" + _CLOCK
          + r"(?:\s+(?:[A-Z]{3,4}|[+-]\d{4}))?", "<TIMESTAMP>"),
    _rule("date", r"\b(?:\d{4}-\d{2}-\d{2}|\d{4}/\d{2}/\d{2}|\d{1,2}/\d{1,2}/\d{4}"
                  r"|" + _MONTH + r" \d{1,2}, \d{4}|\d{1,2} " + _MONTH + r" \d{4})\b", "<DATE>"),
    _rule("clock-duration", r"(?i)\b((?:total |elapsed |wall |cpu |run |execution |training )?"
          r"time\s*[:=]\s*)(?:\d+:)?\d{1,2}:\d{2}(?:[.,]\d+)?\b", r"\1<DURATION>"),
    _rule("clock", r"\b(?:\d{1,2}:\d{2}:\d{2}(?:[.,]\d+)?(?:\s?[AaPp][Mm])?|\d{2}:\d{2})\b",
          "<TIME>"),
    _rule("duration", r"(?i)\b((?:(?:total|wall|cpu|elapsed|run|execution|training) )?time"
                      r"|took|elapsed|duration|in)(\s*[:=]?\s*)\d+(?:\.\d+)?\s?" + _UNIT + r"\b",
          r"\1\2<DURATION>"),
    _rule("keras-step", r"\b\d+m?s \d+m?s/step\b", "<DURATION>"),
)
_BACKSPACE = re.compile(r"[^\n]\x08")


def apply_backspaces(text: str) -> str:
    """Let each backspace erase the character before it, as a terminal does."""
    previous = None
    while previous != text and "\x08" in text:
        previous, text = text, _BACKSPACE.sub("", text)
    return text


class SanitizerSet:
    """The rules applied to every compared text; counts how often each user rule matched."""

    def __init__(self, user: Sequence[Sanitizer] = (), builtin: bool = True) -> None:
        self.user = tuple(user)
        self.builtin = BUILTIN_SANITIZERS if builtin else ()
        self.matches: Counter[str] = Counter({s.name: 0 for s in self.user})

    def apply(self, text: str, counts: Counter[str] | None = None) -> str:
        """The sanitized text; user-rule matches are added to `counts` and `self.matches`."""
        text = strip_ansi(apply_print_resets(apply_backspaces(text)))
        for rule in self.user:
            text, found = rule.pattern.subn(rule.replace, text)
            if found:
                self.matches[rule.name] += found
                if counts is not None:
                    counts[rule.name] += found
        for rule in self.builtin:
            text = rule.pattern.sub(rule.replace, text)
        return text

    def unmatched(self, matches: Mapping[str, int] | None = None) -> list[Sanitizer]:
        """The user rules that matched nothing (in `matches`, default: all seen here)."""
        seen = self.matches if matches is None else matches
        return [rule for rule in self.user if not seen.get(rule.name)]


def _compile(pattern: str, where: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise UsageError(f"{where}: bad regex {pattern!r}: {exc}. Fix the pattern "
                         "(nbtest uses Python's re syntax).") from None


def parse_sanitize_file(text: str, source: str) -> list[Sanitizer]:
    """Rules from nbval's format: `[name]` sections of `regex: ...` then `replace: ...` lines;
    as in nbval, a regex given again keeps its first place and takes the later replacement."""
    rules: list[Sanitizer] = []
    section, pending, start = None, None, 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.rstrip("\r")
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", ";")):
            continue
        if stripped.startswith("[") and stripped.endswith("]"):
            section = stripped[1:-1].strip()
            continue
        key, sep, value = line.partition(":")
        if not sep:
            key, sep, value = line.partition("=")
        key = key.strip().lower()
        value = value[1:] if value.startswith(" ") else value  # nbval: text after "regex: "
        where = f"{source}, line {number}"
        if key == "regex" and sep:
            if pending is not None:
                raise UsageError(f"{source}, line {start}: 'regex:' without its 'replace:' "
                                 "line; each rule is a regex line followed by a replace line.")
            pending, start = value, number
        elif key == "replace" and sep and pending is not None:
            name = section if section and section not in {r.name for r in rules} \
                else f"{section or 'rule'}@{start}"
            rule = Sanitizer(name, _compile(pending, f"{source}, line {start}"), value, source)
            # nbval keeps its rules in a dict keyed by regex: a repeated regex takes the later
            # replacement, in the place where that regex first appeared.
            again = next((i for i, r in enumerate(rules) if r.pattern.pattern == pending), None)
            if again is None:
                rules.append(rule)
            else:
                rules[again] = rule
            pending = None
        else:
            raise UsageError(f"{where}: expected '[name]', 'regex: PATTERN' or "
                             f"'replace: TEXT', got {line!r} (nbval's sanitize-file format).")
    if pending is not None:
        raise UsageError(f"{source}, line {start}: 'regex:' without its 'replace:' line.")
    return rules


def read_sanitize_file(path: str | Path, root: Path | None = None) -> list[Sanitizer]:
    """Rules from a sanitize file; a relative path is tried in the cwd, then under `root`."""
    given = Path(path)
    candidates = [given] + ([root / given] if root is not None and not given.is_absolute() else [])
    found = next((p for p in candidates if p.is_file()), None)
    if found is None:
        raise UsageError(f"sanitize file {path}: no such file. Give the path of a file of "
                         "'[name]' / 'regex: ...' / 'replace: ...' lines (nbval's format).")
    try:
        text = found.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"sanitize file {found}: cannot be read ({exc}).") from None
    return parse_sanitize_file(text, str(path))


def pair_sanitizers(pairs: Iterable[tuple[str, str]],
                    source: str = "[tool.nbtest] sanitizers") -> list[Sanitizer]:
    """Rules from regex -> replacement pairs, named after their patterns."""
    return [Sanitizer(pattern, _compile(pattern, source), replace, source)
            for pattern, replace in pairs]


def user_sanitizers(config: NbTestConfig, root: Path | None = None) -> list[Sanitizer]:
    """The user rules a config asks for: its sanitize file, then `sanitizers` pairs."""
    rules: list[Sanitizer] = []
    if config.sanitize_with:
        rules += read_sanitize_file(config.sanitize_with, root)
    rules += pair_sanitizers(config.sanitizers)
    return rules
