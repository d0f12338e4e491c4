"""MPD filter expressions and old-style pairs (protocol/mpd/filters.py): parsing, escaping, refusals."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from auralisd.protocol.mpd.filters import (
    FilterArgs,
    FilterError,
    parse_expression,
    parse_filter_args,
    parse_pairs,
    quote_value,
)
from auralisd.protocol.query import MAX_QUERY_DEPTH, And, Base, ModifiedSince, Not, TagMatch

_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=80)


@given(_TEXT)
def test_any_value_survives_quoting_and_parsing(value: str) -> None:
    assert parse_expression(f"(Artist == {quote_value(value)})") == TagMatch("artist", "==", value)
    assert parse_expression(f"(!(title contains {quote_value(value)}))", fold_case=True) == Not(
        TagMatch("title", "contains", value, fold_case=True)
    )


@given(_TEXT, _TEXT)
def test_double_quotes_and_backslashes_in_values(a: str, b: str) -> None:
    expr = f'((album == "{a.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}") AND (base {quote_value(b)}))'
    assert parse_expression(expr) == And((TagMatch("album", "==", a), Base(b)))


def test_every_operator_and_special_filter() -> None:
    for op in ("==", "!=", "=~", "!~", "contains", "starts_with"):
        assert parse_expression(f"(genre {op} 'Pop')") == TagMatch("genre", op, "Pop")
    assert parse_expression("(file == 'a/b.flac')") == TagMatch("file", "==", "a/b.flac")
    assert parse_expression("(modified-since '1700000000')") == ModifiedSince(1_700_000_000.0)
    assert parse_expression("(modified-since '2023-11-14T22:13:20Z')") == ModifiedSince(1_700_000_000.0)
    assert parse_expression("  ( ( AlbumArtist=='X' )AND(any  contains  'y') )  ") == And(
        (TagMatch("albumartist", "==", "X"), TagMatch("any", "contains", "y"))
    )
    # a tag MPD knows that the library does not store: on no track
    assert parse_expression("(label == 'X')") == Not(And(()))
    assert parse_expression("(label != 'X')") == And(())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("artist == 'x'", "'(' expected"),
        ("(artist == 'x'", "')' expected"),
        ("(artist = 'x')", "Unknown filter operator"),
        ("(artist == x)", "Quoted string expected"),
        ("(artist == 'x)", "Closing quote not found"),
        ("(nosuchtag == 'x')", "Unknown tag type"),
        ("((artist == 'x') OR (album == 'y'))", "'AND' expected"),
        ("(artist == 'x') junk", "Unparsed garbage"),
        ("(AudioFormat == '44100:16:2')", "AudioFormat"),
        ("(prio >= 3)", "prio"),
        ("(modified-since 'yesterday')", "time stamp"),
        ("(title == '" + "x" * 2000 + "')", "longer than"),
    ],
)
def test_bad_expressions_are_refused_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(FilterError, match=re.escape(message)):
        parse_expression(text)


def test_nesting_is_bounded() -> None:
    deep = "(!" * (MAX_QUERY_DEPTH + 5) + "(artist == 'x')" + ")" * (MAX_QUERY_DEPTH + 5)
    with pytest.raises(FilterError, match="deeper"):
        parse_expression(deep)


def test_old_syntax_pairs() -> None:
    assert parse_pairs(["Artist", "A", "album", "B"], fold_case=False) == And(
        (TagMatch("artist", "==", "A"), TagMatch("album", "==", "B"))
    )
    assert parse_pairs(["any", "x"], fold_case=True) == TagMatch("any", "contains", "x", fold_case=True)
    assert parse_pairs(["base", "dir", "modified-since", "10"], fold_case=False) == And(
        (Base("dir"), ModifiedSince(10.0))
    )
    with pytest.raises(FilterError, match="number of filter arguments"):
        parse_pairs(["artist"], fold_case=False)


def test_trailing_options_are_taken_off_the_end() -> None:
    parsed = parse_filter_args(
        ["(artist == 'A')", "sort", "-Title", "window", "2:5"], fold_case=False, options=("sort", "window")
    )
    assert parsed == FilterArgs(TagMatch("artist", "==", "A"), sort="-Title", window=(2, 5))
    listed = parse_filter_args(["group", "albumartist", "group", "date"], fold_case=False, options=("group",),
                               empty_ok=True)  # fmt: skip
    assert listed == FilterArgs(None, groups=("date", "albumartist"))  # the last one given is the outermost
    # "sort" as a value of an old-style pair is a value, when nothing follows it as an option would
    assert parse_filter_args(["title", "sort"], fold_case=False, options=("sort",)).query == TagMatch(
        "title", "==", "sort"
    )
    with pytest.raises(FilterError, match="Bad range"):
        parse_filter_args(["any", "x", "window", "5:2"], fold_case=True, options=("window",))
