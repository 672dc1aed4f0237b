"""Sanitizers: the built-ins, nbval's sanitize-file format, [tool.nbtest] pairs, match counts."""

from __future__ import annotations

from pathlib import Path

import pytest

from nbtest import this_tests
from nbtest.config import NbTestConfig
from nbtest.errors import UsageError
from nbtest.outputs.sanitize import (
    BUILTIN_SANITIZERS,
    SanitizerSet,
    apply_backspaces,
    pair_sanitizers,
    parse_sanitize_file,
    read_sanitize_file,
    user_sanitizers,
)


def clean(text: str) -> str:
    return SanitizerSet().apply(text)


@pytest.mark.parametrize("first, second", [
    ("<__main__.Foo object at 0x7f3a2b1c4d50>", "<__main__.Foo object at 0x7f00deadbeef>"),
    ("<function f at 0x10a2b3c4d>", "<function f at 0x7ffe12345678>"),
    ("id=140234567890123", "id=140234567899999"),
    ("<Process name='P-1' pid=1234 parent=99 started>",
     "<Process name='P-1' pid=5678 parent=100 started>"),
    ("run 3f2a4b5c-1d2e-4f3a-8b9c-0d1e2f3a4b5c", "run 00000000-1111-4222-8333-444444444444"),
])
def test_addresses_and_ids_are_masked(first: str, second: str) -> None:
    this_tests(SanitizerSet.apply)
    assert clean(first) == clean(second)
    assert first != clean(first)


@pytest.mark.parametrize("first, second", [
    ("saved at 2024-01-02T03:04:05.123456+00:00", "saved at 2025-11-30T23:59:01Z"),
    ("saved at 2024-01-02 03:04:05", "saved at 2025-11-30 23:59:59"),
    ("Mon Jan  2 15:04:05 2006", "Thu Nov 23 21:57:41 2026"),
    ("Tue, 15 Nov 1994 08:12:31 GMT", "Wed, 01 Jan 2025 00:00:00 GMT"),
    ("datetime.datetime(2024, 1, 2, 3, 4, 5, 123)", "datetime.datetime(2026, 11, 23, 9, 8, 7)"),
    ("today is 2024-01-02", "today is 2026-11-23"),
    ("on 01/02/2024", "on 11/23/2026"),
    ("Jan 2, 2024", "Nov 23, 2026"),
    ("at 12:30:01.25", "at 09:08:07.5"),
])
def test_timestamps_and_dates_are_masked(first: str, second: str) -> None:
    this_tests(SanitizerSet.apply)
    assert clean(first) == clean(second)


@pytest.mark.parametrize("first, second", [
    ("CPU times: user 1.2 ms, sys: 0 ns, total: 1.2 ms\nWall time: 2.5 ms",
     "CPU times: user 3 s, sys: 12 ms, total: 3.01 s\nWall time: 4.1 s"),
    ("1.23 ms ± 45.6 µs per loop (mean ± std. dev. of 7 runs, 1,000 loops each)",
     "987 µs ± 5.2 µs per loop (mean ± std. dev. of 7 runs, 10,000 loops each)"),
    ("Total time: 00:02", "Total time: 01:13"),
    ("epoch train_loss time\n0 0.5 00:02", "epoch train_loss time\n0 0.5 00:07"),
    ("finished in 3.2s", "finished in 11.9s"),
    ("took 120 ms", "took 95 ms"),
    ("took 48.4 μs", "took 3 µs"),  # IPython writes a Greek mu; others the micro sign
])
def test_durations_are_masked(first: str, second: str) -> None:
    this_tests(SanitizerSet.apply)
    assert clean(first) == clean(second)


def test_tqdm_bar_keeps_its_final_state_only() -> None:
    this_tests(SanitizerSet.apply, apply_backspaces)
    run1 = (" 30%|███       | 3/10 [00:00<00:01,  5.10it/s]\r"
            "100%|██████████| 10/10 [00:01<00:00,  9.80it/s]\n")
    run2 = ("  0%|          | 0/10 [00:00<?, ?it/s]\r 60%|██████    | 6/10 [00:00<00:00, 61.2it/s]"
            "\r100%|██████████| 10/10 [00:00<00:00, 101.37it/s]\n")
    assert clean(run1) == clean(run2) == "100%|██████████| 10/10 [<PROGRESS>]\n"
    # A bar that stopped elsewhere is a real difference.
    assert clean(run1) != clean(" 90%|█████████ | 9/10 [00:01<00:00,  9.80it/s]\n")
    assert clean("10it [00:00, 1234.56it/s]") == clean("10it [00:02, 4.1it/s]")
    assert clean("100.00% [10/10 00:02<00:00]") == clean("100.00% [10/10 00:09<00:00]")


def test_ansi_codes_and_backspaces() -> None:
    this_tests(SanitizerSet.apply, apply_backspaces)
    assert clean("\x1b[31mred\x1b[0m text") == "red text"
    assert apply_backspaces("abc\x08\x08de") == "ade"
    assert clean("x\x08y") == "y"


@pytest.mark.parametrize("text", [
    "hex 0xff", "version 1.2.3", "aspect 16:9", "loss 0.31415", "x = 42", "a cat sat on a mat",
])
def test_ordinary_text_is_untouched(text: str) -> None:
    this_tests(SanitizerSet.apply)
    assert clean(text) == text


def test_builtins_have_unique_names() -> None:
    this_tests("nbtest.outputs.sanitize.Sanitizer", SanitizerSet)
    names = [rule.name for rule in BUILTIN_SANITIZERS]
    assert len(names) == len(set(names))


NBVAL_FILE = """\
[regex1]
regex: \\d{1,2}/\\d{1,2}/\\d{2,4}
replace: DATE-STAMP

[regex2]
regex: \\d{2}:\\d{2}:\\d{2}
replace: TIME-STAMP

[never]
regex: THIS NEVER APPEARS
replace: X
"""


def test_nbval_sanitize_file_format(tmp_path: Path) -> None:
    this_tests(parse_sanitize_file, read_sanitize_file)
    rules = parse_sanitize_file(NBVAL_FILE, "sanitize.cfg")
    assert [(r.name, r.pattern.pattern, r.replace) for r in rules] == [
        ("regex1", r"\d{1,2}/\d{1,2}/\d{2,4}", "DATE-STAMP"),
        ("regex2", r"\d{2}:\d{2}:\d{2}", "TIME-STAMP"),
        ("never", "THIS NEVER APPEARS", "X"),
    ]
    path = tmp_path / "sanitize.cfg"
    path.write_text(NBVAL_FILE)
    assert read_sanitize_file(path) == [r.__class__(r.name, r.pattern, r.replace, str(path))
                                        for r in rules]


def test_user_rules_run_before_builtins_and_are_counted() -> None:
    this_tests(SanitizerSet.apply, SanitizerSet.unmatched,
               "nbtest.outputs.sanitize.Sanitizer.describe")
    rules = parse_sanitize_file(NBVAL_FILE, "sanitize.cfg")
    sanitizers = SanitizerSet(rules)
    # regex2 sees the raw clock time: the built-in clock rule runs after it.
    assert sanitizers.apply("at 12:30:01 on 1/2/24") == "at TIME-STAMP on DATE-STAMP"
    assert sanitizers.apply("12:00:00 and 13:00:00") == "TIME-STAMP and TIME-STAMP"
    assert dict(sanitizers.matches) == {"regex1": 1, "regex2": 3, "never": 0}
    assert [r.name for r in sanitizers.unmatched()] == ["never"]
    assert "[never] regex: THIS NEVER APPEARS (from sanitize.cfg)" in \
        sanitizers.unmatched()[0].describe()


def test_sanitize_file_without_sections_and_with_back_references() -> None:
    this_tests(parse_sanitize_file, SanitizerSet.apply)
    rules = parse_sanitize_file("regex: (user )\\w+\nreplace: \\1NAME\n", "f")
    assert SanitizerSet(rules, builtin=False).apply("user alice") == "user NAME"
    assert rules[0].name == "rule@1"


@pytest.mark.parametrize("text, message", [
    ("[a]\nregex: (unclosed\nreplace: x\n", "f, line 2: bad regex '(unclosed'"),
    ("[a]\nregex: x\n", "f, line 2: 'regex:' without its 'replace:' line"),
    ("[a]\nregex: x\nregex: y\nreplace: z\n", "f, line 2: 'regex:' without its 'replace:'"),
    ("[a]\nwhatever\n", "f, line 2: expected '[name]', 'regex: PATTERN' or 'replace: TEXT'"),
])
def test_bad_sanitize_files_name_the_line(text: str, message: str) -> None:
    this_tests(parse_sanitize_file)
    with pytest.raises(UsageError, match=None) as info:
        parse_sanitize_file(text, "f")
    assert message in info.value.message


def test_missing_sanitize_file_is_a_usage_error(tmp_path: Path) -> None:
    this_tests(read_sanitize_file)
    with pytest.raises(UsageError, match="no such file"):
        read_sanitize_file(tmp_path / "nope.cfg")


def test_relative_sanitize_file_is_found_under_root(tmp_path: Path) -> None:
    this_tests(read_sanitize_file)
    (tmp_path / "rules.cfg").write_text("[a]\nregex: a\nreplace: b\n")
    assert [r.name for r in read_sanitize_file("rules.cfg", root=tmp_path)] == ["a"]


def test_config_pairs_and_file(tmp_path: Path) -> None:
    this_tests(user_sanitizers, pair_sanitizers, read_sanitize_file)
    path = tmp_path / "rules.cfg"
    path.write_text("[seed]\nregex: seed=\\d+\nreplace: seed=N\n")
    config = NbTestConfig.of(sanitize_with=str(path),
                             sanitizers={r"run-\d+": "run-N"})
    rules = user_sanitizers(config)
    assert [r.name for r in rules] == ["seed", r"run-\d+"]
    assert SanitizerSet(rules).apply("seed=3 run-7") == "seed=N run-N"
    assert rules[1].source == "[tool.nbtest] sanitizers"
    with pytest.raises(UsageError, match="bad regex"):
        pair_sanitizers([("(", "x")])
