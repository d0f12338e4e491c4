"""MPD's song filters: the expressions of MPD 0.21+ and the older ``TYPE VALUE`` pairs, as queries.

Sans-IO and pure: strings in, a :class:`~auralisd.protocol.query.Query` out (the database actor
compiles it to SQL). Errors are :class:`FilterError` (a ``ValueError``) with MPD's wording where it
has one; the MPD session answers them ``ACK [2@i]`` (``ACK_ERROR_ARG``).

Expressions (each one command argument; the tokenizer has already removed the outer quoting)::

    (TAG == 'VALUE')  (TAG != 'VALUE')  (TAG contains 'VALUE')  (TAG starts_with 'VALUE')
    (TAG =~ 'REGEX')  (TAG !~ 'REGEX')  (file == 'URI')  (base 'DIR')  (modified-since 'TIME')
    (!EXPR)  (EXPR AND EXPR ...)

``VALUE`` is quoted with ``'`` or ``"``; inside it a backslash makes the next character literal
(:func:`quote_value` writes one). ``TIME`` is Unix seconds or ISO 8601. ``TAG`` is a tag name in
any case, or ``any``. ``AudioFormat``, ``prio`` and ``added-since`` are refused with a message
saying so. A tag MPD knows but the library does not store (``Label``, ``Work``, ...) is on no
track: ``==`` matches nothing, ``!=`` everything.

The old syntax is pairs: ``find artist X album Y``, ``search any X``; ``search`` compares
case-insensitively and by substring, ``find`` exactly. Trailing ``sort TAG``, ``window START:END``,
``group TAG`` and ``position POS`` are taken off the end by :func:`parse_filter_args` for the
commands that accept them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from ..query import MAX_QUERY_DEPTH, And, Base, ModifiedSince, Not, Query, QueryError, TagMatch, check_query

# MPD's tag names (src/tag/Names.cxx, 0.23) -> ours (protocol/query.py), lower-cased
_STORED: Final[dict[str, str]] = {
    "artist": "artist", "albumartist": "albumartist", "album": "album", "title": "title", "track": "track",
    "disc": "disc", "genre": "genre", "date": "date", "composer": "composer", "performer": "performer",
    "comment": "comment", "musicbrainz_albumid": "musicbrainz_albumid",
}  # fmt: skip
# sort tags a track lacks fall back to the tag they sort (MPD's fallbacks)
_SORT_FALLBACK: Final[dict[str, str]] = {
    "artistsort": "artist", "albumsort": "album", "albumartistsort": "albumartist", "composersort": "composer",
    "titlesort": "title",
}  # fmt: skip
_NOT_STORED: Final = frozenset({
    "name", "originaldate", "conductor", "work",
    "movement", "movementnumber", "ensemble", "location", "grouping", "label", "musicbrainz_artistid",
    "musicbrainz_albumartistid", "musicbrainz_trackid", "musicbrainz_releasetrackid", "musicbrainz_workid",
    "musicbrainz_releasegroupid",
})  # fmt: skip
_REFUSED: Final[dict[str, str]] = {
    "audioformat": "AudioFormat filters are not supported by Auralis",
    "prio": "prio filters apply to the queue, not the database",
    "added-since": "added-since filters are not supported by Auralis",
}
TAG_DISPLAY: Final[dict[str, str]] = {
    "artist": "Artist", "albumartist": "AlbumArtist", "album": "Album", "title": "Title", "track": "Track",
    "disc": "Disc", "genre": "Genre", "date": "Date", "composer": "Composer", "performer": "Performer",
    "comment": "Comment", "musicbrainz_albumid": "MUSICBRAINZ_ALBUMID", "file": "file",
}  # fmt: skip
"""Our tags as MPD writes them in responses (``Artist: ...``)."""
OPERATORS: Final = ("==", "!=", "=~", "!~", "contains", "starts_with")
_WORD: Final = re.compile(r"[A-Za-z0-9_-]+")
_NOTHING: Final[Query] = Not(And(()))  # a query no track matches
_EVERYTHING: Final[Query] = And(())


class FilterError(QueryError):
    """A filter MPD would refuse (answered ``ACK [2@i]``)."""


def quote_value(value: str) -> str:
    """``value`` as a quoted filter value: ``'...'`` with backslash and quotes escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'").replace('"', '\\"') + "'"


def tag_of(name: str) -> str | None:
    """Our tag for an MPD tag name in any case (``file`` and ``any`` included); None for one we do not store.

    Raises:
        FilterError: not a tag name MPD knows.
    """
    lowered = name.lower()
    if lowered in _STORED:
        return _STORED[lowered]
    if lowered in _SORT_FALLBACK:
        return _SORT_FALLBACK[lowered]
    if lowered in ("file", "any"):
        return lowered
    if lowered in _NOT_STORED:
        return None
    raise FilterError(f"Unknown tag type: {name[:64]}")


def parse_expression(text: str, *, fold_case: bool = False) -> Query:
    """One filter expression, e.g. ``((artist == 'X') AND (!(genre == 'Pop')))``.

    ``fold_case``: comparisons ignore case (MPD's ``search``).

    Raises:
        FilterError: the expression is malformed or names something we refuse.
    """
    parser = _Parser(text, fold_case)
    query = parser.expression(0)
    parser.skip_space()
    if parser.pos != len(text):
        raise FilterError("Unparsed garbage after expression")
    try:
        check_query(query)
    except FilterError:
        raise
    except QueryError as exc:
        raise FilterError(str(exc)) from None
    return query


class _Parser:
    def __init__(self, text: str, fold_case: bool) -> None:
        self.text = text
        self.pos = 0
        self.fold_case = fold_case

    def skip_space(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def expect(self, char: str, message: str) -> None:
        self.skip_space()
        if self.peek() != char:
            raise FilterError(message)
        self.pos += 1

    def word(self) -> str:
        self.skip_space()
        match = _WORD.match(self.text, self.pos)
        if match is None:
            raise FilterError("Word expected")
        self.pos = match.end()
        return match.group()

    def operator(self) -> str:
        self.skip_space()
        for op in OPERATORS:
            if self.text.startswith(op, self.pos):
                end = self.pos + len(op)
                if op[0].isalpha() and end < len(self.text) and not self.text[end].isspace():
                    continue  # "containsX" is not the operator
                self.pos = end
                return op
        raise FilterError("Unknown filter operator")

    def quoted(self) -> str:
        self.skip_space()
        quote = self.peek()
        if quote not in ("'", '"'):
            raise FilterError("Quoted string expected")
        self.pos += 1
        out = []
        while True:
            if self.pos >= len(self.text):
                raise FilterError("Closing quote not found")
            char = self.text[self.pos]
            if char == "\\":
                self.pos += 1
                if self.pos >= len(self.text):
                    raise FilterError("Closing quote not found")
                out.append(self.text[self.pos])
            elif char == quote:
                self.pos += 1
                return "".join(out)
            else:
                out.append(char)
            self.pos += 1

    def expression(self, depth: int) -> Query:
        if depth > MAX_QUERY_DEPTH:
            raise FilterError(f"Filter nested deeper than {MAX_QUERY_DEPTH} levels")
        self.expect("(", "'(' expected")
        self.skip_space()
        if self.peek() == "(":
            parts = [self.expression(depth + 1)]
            while True:
                self.skip_space()
                if self.peek() == ")":
                    self.pos += 1
                    break
                if self.word() != "AND":
                    raise FilterError("'AND' expected")
                parts.append(self.expression(depth + 1))
            return parts[0] if len(parts) == 1 else And(tuple(parts))
        if self.peek() == "!":
            self.pos += 1
            inner = self.expression(depth + 1)
            self.expect(")", "')' expected")
            return Not(inner)
        name = self.word()
        lowered = name.lower()
        if lowered in _REFUSED:
            raise FilterError(_REFUSED[lowered])
        if lowered == "base":
            value = self.quoted()
            self.expect(")", "')' expected")
            return Base(value)
        if lowered == "modified-since":
            value = self.quoted()
            self.expect(")", "')' expected")
            return ModifiedSince(parse_time_s(value))
        tag = tag_of(name)
        op = self.operator()
        value = self.quoted()
        self.expect(")", "')' expected")
        return _match(tag, op, value, self.fold_case)


def _match(tag: str | None, op: str, value: str, fold_case: bool) -> Query:
    if tag is None:  # a tag no track carries
        return _EVERYTHING if op in ("!=", "!~") else _NOTHING
    try:
        return TagMatch(tag, op, value, fold_case)
    except QueryError as exc:
        raise FilterError(str(exc)) from None


def parse_time_s(text: str) -> float:
    """Unix seconds, or an ISO 8601 time (UTC when it names no zone), as MPD's ``modified-since`` takes them."""
    stripped = text.strip()
    if stripped.isdigit():
        return float(int(stripped))
    try:
        when = datetime.fromisoformat(stripped)
    except ValueError:
        raise FilterError(f"Failed to parse time stamp: {text[:64]}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def parse_pairs(args: list[str], *, fold_case: bool) -> Query:
    """The old syntax: ``TYPE VALUE [TYPE VALUE ...]``; ``search`` (``fold_case``) matches substrings."""
    if not args or len(args) % 2:
        raise FilterError("Incorrect number of filter arguments")
    parts: list[Query] = []
    for name, value in zip(args[0::2], args[1::2], strict=True):
        lowered = name.lower()
        if lowered == "base":
            parts.append(Base(value))
        elif lowered == "modified-since":
            parts.append(ModifiedSince(parse_time_s(value)))
        elif lowered in _REFUSED:
            raise FilterError(_REFUSED[lowered])
        else:
            try:
                tag = tag_of(name)
            except FilterError:
                raise FilterError("Unknown filter type") from None  # MPD's words for the old syntax
            parts.append(_match(tag, "contains" if fold_case else "==", value, fold_case))
    return parts[0] if len(parts) == 1 else And(tuple(parts))


@dataclass(frozen=True)
class FilterArgs:
    """A command's filter and the options after it."""

    query: Query | None
    sort: str | None = None  # a tag (``-tag``: descending) or ``Last-Modified``
    window: tuple[int, int] | None = None  # [start, end) of the results
    groups: tuple[str, ...] = ()  # ``list ... group TAG`` (our tag names), outermost first: the last one given
    position: str | None = None  # ``findadd ... position POS`` as given (absolute or +N/-N)


def parse_window(text: str) -> tuple[int, int]:
    """``START:END`` (END may be empty: to the end, written as -1) or one position ``N`` (= ``N:N+1``)."""
    start_text, sep, end_text = text.partition(":")
    if not start_text.isdigit() or (end_text and not end_text.isdigit()):
        raise FilterError(f"Bad range: {text[:64]}")
    start = int(start_text)
    if not sep:
        return start, start + 1
    end = int(end_text) if end_text else -1
    if end != -1 and end < start:
        raise FilterError(f"Bad range: {text[:64]}")
    return start, end


def parse_filter_args(
    args: list[str], *, fold_case: bool, options: tuple[str, ...] = (), empty_ok: bool = False
) -> FilterArgs:
    """A filter (expressions, or old-style pairs) followed by any of ``options`` (``sort``,
    ``window``, ``group``, ``position``), each a keyword and one value, taken off the end.

    Raises:
        FilterError: a malformed filter or option.
    """
    rest = list(args)
    sort = window = position = None
    groups: list[str] = []
    while len(rest) >= 2 and rest[-2].lower() in options:
        keyword, value = rest[-2].lower(), rest[-1]
        del rest[-2:]
        if keyword == "sort":
            sort = value
            name = value[1:] if value.startswith("-") else value
            if name.lower() != "last-modified" and tag_of(name) is None:
                raise FilterError(f"Unknown sort tag: {value[:64]}")
        elif keyword == "window":
            window = parse_window(value)
        elif keyword == "group":
            tag = tag_of(value)
            if tag is None or tag in ("any", "file"):
                raise FilterError(f"Unknown group tag: {value[:64]}")
            groups.append(tag)  # taken off the end: the last "group" given is the outermost (as in MPD)
        else:
            position = value
    if not rest:
        if not empty_ok:
            raise FilterError("Incorrect number of filter arguments")
        query = None
    elif rest[0].startswith("("):
        parts = [parse_expression(a, fold_case=fold_case) for a in rest]
        query = parts[0] if len(parts) == 1 else And(tuple(parts))
    else:
        query = parse_pairs(rest, fold_case=fold_case)
    return FilterArgs(query, sort, window, tuple(groups), position)
