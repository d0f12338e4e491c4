"""Compile a library query (``protocol/query.py``) into one SQL ``WHERE`` clause over ``tracks``.

Every match runs inside SQLite: exact matches use the tag indexes of migration 5,
case-insensitive ones compare the folded text (:func:`auralisd.actors.database.fold` as the
SQL function ``auralis_fold``) behind a ``search_text LIKE`` pre-filter where the tag is part of
the folded search text, and regular expressions run through ``auralis_regexp`` (Python ``re``,
compiled once per pattern). :func:`install` registers both functions on a connection.

A track without the tag never equals, contains, starts with or matches anything; ``!=`` and
``!~`` are the negations (a track without the tag matches them), as in MPD.
"""

from __future__ import annotations

import functools
import re
import sqlite3
from collections.abc import Callable
from typing import Any, Final

from ..protocol.query import And, Base, ModifiedSince, Not, Query, QueryError, TagMatch, check_query

FILE_EXPR: Final = "substr(path, length(music_dir) + 2)"  # the path relative to its music folder (MPD's URI)
# tag -> SQL expression of its text (None where the track has no such tag)
COLUMNS: Final[dict[str, str]] = {
    "artist": "artist",
    "albumartist": "COALESCE(album_artist, artist)",  # MPD falls back to the artist
    "album": "album",
    "title": "title",
    "track": "CAST(track_number AS TEXT)",
    "disc": "CAST(disc_number AS TEXT)",
    "genre": "genre",
    "date": "date",
    "composer": "composer",
    "performer": "performer",
    "comment": "comment",
    "musicbrainz_albumid": "mb_album_id",
    "file": FILE_EXPR,
}
# tags whose folded text is part of tracks.search_text (database._search_text), so a folded
# substring of the tag is a folded substring of search_text: a cheap LIKE pre-filter
_IN_SEARCH_TEXT: Final = frozenset({"artist", "albumartist", "album", "title", "genre", "file"})
_REGEX_CACHE: Final = 64


def install(conn: sqlite3.Connection, fold: Callable[[str], str]) -> None:
    """Register ``auralis_fold(text)`` and ``auralis_regexp(pattern, flags, text)`` on ``conn``."""

    def fold_sql(value: Any) -> str | None:
        return None if value is None else fold(str(value))

    def regexp_sql(pattern: str, flags: int, value: Any) -> int | None:
        if value is None:
            return None
        return 1 if _regex(pattern, flags).search(str(value)) else 0

    conn.create_function("auralis_fold", 1, fold_sql, deterministic=True)
    conn.create_function("auralis_regexp", 3, regexp_sql, deterministic=True)


@functools.lru_cache(maxsize=_REGEX_CACHE)
def _regex(pattern: str, flags: int) -> re.Pattern[str]:
    return re.compile(pattern, flags)


def compile_where(query: Query | None, fold: Callable[[str], str]) -> tuple[str, list[Any]]:
    """``(sql, args)``: a boolean SQL expression over ``tracks`` ("1" for no query).

    Raises:
        QueryError: a regular expression that does not compile, or a query over the limits.
    """
    if query is None:
        return "1", []
    check_query(query)
    args: list[Any] = []
    sql = _compile(query, fold, args)
    return sql, args


def _compile(q: Query, fold: Callable[[str], str], args: list[Any]) -> str:
    if isinstance(q, And):
        if not q.parts:
            return "1"
        return "(" + " AND ".join(_compile(p, fold, args) for p in q.parts) + ")"
    if isinstance(q, Not):
        return f"(NOT COALESCE({_compile(q.part, fold, args)}, 0))"
    if isinstance(q, Base):
        rel = q.path.strip("/")
        if not rel:
            return "1"
        args += [rel, _like_prefix(rel + "/")]
        return "(rel_dir = ? OR rel_dir LIKE ? ESCAPE '\\')"
    if isinstance(q, ModifiedSince):
        args.append(int(q.timestamp_s * 1e9))
        return "(mtime_ns >= ?)"
    assert isinstance(q, TagMatch)
    negated = q.op in ("!=", "!~")
    if q.tag == "any":
        parts = [_positive(col, tag, q, fold, args) for tag, col in COLUMNS.items()]
        positive = "(" + " OR ".join(parts) + ")"
    else:
        positive = _positive(COLUMNS[q.tag], q.tag, q, fold, args)
    # NULL (no such tag) counts as false: a WHERE drops it, and a negation turns it into true
    return f"(NOT COALESCE({positive}, 0))" if negated else positive


def _positive(column: str, tag: str, q: TagMatch, fold: Callable[[str], str], args: list[Any]) -> str:
    """The un-negated test of ``q`` on one column: NULL or 0 when the track lacks the tag."""
    if q.op in ("=~", "!~"):
        flags = re.IGNORECASE if q.fold_case else 0
        try:
            _regex(q.value, flags)
        except re.error as exc:
            raise QueryError(f"bad regular expression {q.value[:64]!r}: {exc}") from None
        args += [q.value, flags]
        return f"auralis_regexp(?, ?, {column})"
    value = fold(q.value) if q.fold_case else q.value
    text = f"auralis_fold({column})" if q.fold_case else column
    prefilter = ""
    if q.fold_case and tag in _IN_SEARCH_TEXT and value:
        prefilter = "search_text LIKE ? ESCAPE '\\' AND "
        args.append(_like_contains(value))
    if q.op in ("==", "!="):
        args.append(value)
        return f"({prefilter}{text} = ?)"
    if q.op == "contains":
        args.append(value)
        return f"({prefilter}instr({text}, ?) > 0)"
    # starts_with
    args += [len(value), value]
    return f"({prefilter}substr({text}, 1, ?) = ?)"


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _like_contains(word: str) -> str:
    return "%" + word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
