"""Compile a library query (``protocol/query.py``) into one SQL ``WHERE`` clause over ``tracks``.

Every match runs inside SQLite: exact matches use the tag indexes of migration 5,
case-insensitive ones compare the folded text (:func:`auralisd.actors.database.fold` as the
SQL function ``auralis_fold``) behind an ``instr(search_text, ...)`` pre-filter where the tag is part of
the folded search text, and regular expressions run through ``auralis_regexp`` (the ``regex``
module, ``re``'s syntax, compiled once per pattern) under a time budget: a client's catastrophically
backtracking pattern (``(a|a)+$``) would otherwise hold the database thread, and with it every queue
save and every other client, for as long as it likes. Each regular expression of a query gets
:data:`REGEX_BUDGET_S` over the whole library; past it the statement fails and the caller answers
:data:`REGEX_TOO_SLOW`. :func:`install` registers both functions on a connection.

A track without the tag never equals, contains, starts with or matches anything; ``!=`` and
``!~`` are the negations (a track without the tag matches them), as in MPD.
"""

from __future__ import annotations

import functools
import itertools
import re
import sqlite3
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import regex

from ..protocol.query import And, Base, ModifiedSince, Not, Query, QueryError, TagMatch, check_query

REGEX_BUDGET_S: Final = 0.5  # one regular expression of a query, over every row it is tried on
REGEX_TOO_SLOW: Final = f"the regular expression took more than {REGEX_BUDGET_S} s over the library; simplify it"
_regex_terms = itertools.count()  # each regular expression term of a compiled query: its own budget


class RegexTooSlow(Exception):
    """A regular expression ran out of :data:`REGEX_BUDGET_S` (SQLite reports it as an OperationalError)."""


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
_IN_SEARCH_TEXT: Final = frozenset({
    "artist", "albumartist", "album", "title", "track", "disc", "genre", "date", "composer", "performer", "comment",
    "musicbrainz_albumid", "file",
})  # fmt: skip
_REGEX_CACHE: Final = 64


# What a song block can show (tags as stored, not the fallbacks of COLUMNS), as SQL text expressions
BLOCK_FIELDS: Final[dict[str, str]] = {
    # a line break in a name as \x0A (protocol.paths.path_to_line), which `add` reads back
    "uri": f"replace(replace({FILE_EXPR}, char(13), '\\x0D'), char(10), '\\x0A')",
    "last_modified": "strftime('%Y-%m-%dT%H:%M:%SZ', mtime_ns / 1000000000, 'unixepoch')",
    "time": "CAST(CAST(duration_s + 0.5 AS INTEGER) AS TEXT)",  # whole seconds, halves away from zero
    # milliseconds with three decimals in integer arithmetic (printf('%.3f') costs 4x more per row)
    "duration": "(CAST(duration_s * 1000 + 0.5 AS INTEGER) / 1000) || '.'"
                " || substr('00' || (CAST(duration_s * 1000 + 0.5 AS INTEGER) % 1000), -3)",
    "artist": "artist", "albumartist": "album_artist", "album": "album", "title": "title",
    "track": "CAST(track_number AS TEXT)", "disc": "CAST(disc_number AS TEXT)", "genre": "genre", "date": "date",
    "composer": "composer", "performer": "performer", "comment": "comment", "musicbrainz_albumid": "mb_album_id",
}  # fmt: skip
_LABEL: Final = re.compile(r"[A-Za-z0-9_-]+")
# The song block stored per track (tracks.song_block): MPD's default, every tag the library holds
STORED_BLOCK_LINES: Final[tuple[tuple[str, str], ...]] = (
    ("file", "uri"), ("Last-Modified", "last_modified"), ("Artist", "artist"), ("Album", "album"),
    ("AlbumArtist", "albumartist"), ("Title", "title"), ("Track", "track"), ("Genre", "genre"), ("Date", "date"),
    ("Disc", "disc"), ("MUSICBRAINZ_ALBUMID", "musicbrainz_albumid"), ("Time", "time"), ("duration", "duration"),
)  # fmt: skip


def block_expr(lines: Sequence[tuple[str, str]]) -> str:
    """One SQL text expression: ``label: value\n`` for each ``(label, field)`` whose value is neither
    NULL nor empty (line breaks inside a value become spaces). Fields are keys of :data:`BLOCK_FIELDS`."""
    parts = []
    for label, field in lines:
        if not _LABEL.fullmatch(label):
            raise ValueError(f"bad label {label!r}")
        value = f"replace(replace(NULLIF({BLOCK_FIELDS[field]}, ''), char(13), ' '), char(10), ' ')"
        parts.append(f"COALESCE('{label}: ' || {value} || char(10), '')")  # NULL or empty: no line
    return " || ".join(parts) if parts else "''"


def install(conn: sqlite3.Connection, fold: Callable[[str], str]) -> None:
    """Register ``auralis_fold(text)`` and ``auralis_regexp(pattern, flags, term, text)`` on ``conn``."""
    budget = {"term": -1, "deadline": 0.0}  # the term being evaluated and when its time is up

    def fold_sql(value: Any) -> str | None:
        return None if value is None else fold(str(value))

    def regexp_sql(pattern: str, flags: int, term: int, value: Any) -> int | None:
        if value is None:
            return None
        now = time.monotonic()
        if term != budget["term"]:  # the first row this term is tried on: its budget starts
            budget["term"], budget["deadline"] = term, now + REGEX_BUDGET_S
        remaining = budget["deadline"] - now
        if remaining <= 0:
            raise RegexTooSlow(REGEX_TOO_SLOW)
        try:
            return 1 if _regex(pattern, flags).search(str(value), timeout=remaining) else 0
        except TimeoutError:
            raise RegexTooSlow(REGEX_TOO_SLOW) from None

    conn.create_function("auralis_fold", 1, fold_sql, deterministic=True)
    conn.create_function("auralis_regexp", 4, regexp_sql)  # not deterministic: it may give up


def is_regex_timeout(exc: sqlite3.OperationalError) -> bool:
    """Whether a statement failed because a user function raised (here: only :class:`RegexTooSlow`)."""
    return "user-defined function raised exception" in str(exc)


@functools.lru_cache(maxsize=_REGEX_CACHE)
def _regex(pattern: str, flags: int) -> Any:
    return regex.compile(pattern, flags | regex.VERSION0)  # VERSION0: re's syntax and behaviour


UriRoots = tuple[tuple[str, str], ...]
"""``((music_dir, name), ...)``: with several music folders, the name that leads the URIs of each
folder's tracks (MPD's view of them as folders of one music directory); empty with one folder,
whose URIs are the paths inside it. ``music_dir`` is the ``tracks.music_dir`` value (wire form)."""


def _literal(text: str) -> str:
    """``text`` as an SQL string literal (configured folder names, never a client's value)."""
    if "\x00" in text:
        raise ValueError("a folder name cannot hold NUL")
    return "'" + text.replace("'", "''") + "'"


def file_expr(uri_roots: UriRoots = ()) -> str:
    """SQL for a track's MPD URI: its path in its music folder, led by the folder's name when there
    are several (``Music2/Alpha/01.flac``)."""
    if not uri_roots:
        return FILE_EXPR
    cases = " ".join(f"WHEN {_literal(d)} THEN {_literal(name + '/')}" for d, name in uri_roots)
    return f"((CASE music_dir {cases} ELSE '' END) || {FILE_EXPR})"


def columns(uri_roots: UriRoots = ()) -> dict[str, str]:
    """:data:`COLUMNS` with ``file`` as :func:`file_expr` of ``uri_roots``."""
    return {**COLUMNS, "file": file_expr(uri_roots)} if uri_roots else COLUMNS


def list_order(uri_roots: UriRoots = ()) -> str:
    """``ORDER BY`` terms of a listing in MPD's walk order: folder by folder (the music folders by
    name when there are several), then by path."""
    if not uri_roots:
        return "music_dir, rel_dir, path"
    cases = " ".join(f"WHEN {_literal(d)} THEN {_literal(name)}" for d, name in uri_roots)
    return f"(CASE music_dir {cases} ELSE music_dir END), music_dir, rel_dir, path"


def compile_where(
    query: Query | None, fold: Callable[[str], str], *, fts: bool = False, uri_roots: UriRoots = ()
) -> tuple[str, list[Any]]:
    """``(sql, args)``: a boolean SQL expression over ``tracks`` ("1" for no query). ``fts``: the
    trigram index ``track_search`` exists (:func:`install_search_index`) and pre-filters substrings.
    ``uri_roots``: ``file`` and ``base`` see the URIs of several music folders (:data:`UriRoots`).

    Raises:
        QueryError: a regular expression that does not compile, or a query over the limits.
    """
    if query is None:
        return "1", []
    check_query(query)
    args: list[Any] = []
    sql = _compile(query, _Context(fold, args, fts, uri_roots, columns(uri_roots)))
    return sql, args


@dataclass(frozen=True)
class _Context:
    fold: Callable[[str], str]
    args: list[Any]  # the statement's parameters, appended in the order their ``?`` appear
    fts: bool
    uri_roots: UriRoots
    columns: dict[str, str]


def _compile(q: Query, ctx: _Context) -> str:
    args = ctx.args
    if isinstance(q, And):
        if not q.parts:
            return "1"
        return "(" + " AND ".join(_compile(p, ctx) for p in q.parts) + ")"
    if isinstance(q, Not):
        return f"(NOT COALESCE({_compile(q.part, ctx)}, 0))"
    if isinstance(q, Base):
        uri = q.path.strip("/")
        if not uri:
            return "1"
        if not ctx.uri_roots:
            return _base(uri, args)
        parts = []  # the music folders the URI's first name names (the same name twice: both)
        for music_dir, name in ctx.uri_roots:
            if uri == name or uri.startswith(name + "/"):
                args.append(music_dir)
                rel = uri[len(name) + 1 :]
                parts.append(f"(music_dir = ? AND {_base(rel, args)})" if rel else "(music_dir = ?)")
        return "(" + " OR ".join(parts) + ")" if parts else "0"
    if isinstance(q, ModifiedSince):
        args.append(int(q.timestamp_s * 1e9))
        return "(mtime_ns >= ?)"
    assert isinstance(q, TagMatch)
    fold, fts = ctx.fold, ctx.fts
    negated = q.op in ("!=", "!~")
    if q.tag == "any" and q.op == "contains" and q.fold_case and "\x1f" not in q.value:
        # one folded text of every tag per row (one SQL function call, not one per tag): a value
        # holding no U+001F separator is inside it exactly when it is inside one of the tags
        joined = " || char(31) || ".join(f"COALESCE({col}, '')" for col in ctx.columns.values())
        value = fold(q.value)
        prefilter = _prefilter(value, args, fts)  # search_text holds every tag folded
        args.append(value)
        positive = f"({prefilter}instr({_folded(joined)}, ?) > 0)"
    elif q.tag == "any":
        parts = [_positive(col, tag, q, fold, args, fts) for tag, col in ctx.columns.items()]
        positive = "(" + " OR ".join(parts) + ")"
    else:
        positive = _positive(ctx.columns[q.tag], q.tag, q, fold, args, fts)
    # NULL (no such tag) counts as false: a WHERE drops it, and a negation turns it into true
    return f"(NOT COALESCE({positive}, 0))" if negated else positive


def _base(rel: str, args: list[Any]) -> str:
    """Tracks in the folder ``rel`` (a path inside a music folder) or below it."""
    args += [rel, rel + "/", rel + "0"]  # "0" follows "/": the range of every folder below (index tracks_by_rel_dir)
    return "(rel_dir = ? OR (rel_dir >= ? AND rel_dir < ?))"


def _positive(column: str, tag: str, q: TagMatch, fold: Callable[[str], str], args: list[Any], fts: bool) -> str:
    """The un-negated test of ``q`` on one column: NULL or 0 when the track lacks the tag. The
    pre-filter on ``search_text`` holds for a URI led by its folder's name too: ``search_text``
    holds the absolute path, which ends with that URI."""
    if q.op in ("=~", "!~"):
        flags = int(regex.IGNORECASE) if q.fold_case else 0
        try:
            _regex(q.value, flags)
        except (regex.error, OverflowError, RecursionError) as exc:
            raise QueryError(f"bad regular expression {q.value[:64]!r}: {exc}") from None
        args += [q.value, flags, next(_regex_terms)]
        return f"auralis_regexp(?, ?, ?, {column})"
    value = fold(q.value) if q.fold_case else q.value
    text = _folded(column) if q.fold_case else column
    prefilter = ""
    if q.fold_case and tag in _IN_SEARCH_TEXT and value:
        prefilter = _prefilter(value, args, fts)
    if q.op in ("==", "!="):
        args.append(value)
        return f"({prefilter}{text} = ?)"
    if q.op == "contains":
        args.append(value)
        return f"({prefilter}instr({text}, ?) > 0)"
    # starts_with
    args += [len(value), value]
    return f"({prefilter}substr({text}, 1, ?) = ?)"


def _prefilter(value: str, args: list[Any], fts: bool) -> str:
    """A necessary condition for "the folded ``value`` is inside a folded tag": inside ``search_text``.
    The trigram index answers it for 3 characters or more; else ``instr`` scans the column (in C)."""
    if fts and len(value) >= 3:
        args.append('"' + value.replace('"', '""') + '"')  # one FTS5 string: every character literal
        return "track_id IN (SELECT rowid FROM track_search WHERE track_search MATCH ?) AND "
    args.append(value)
    return "instr(search_text, ?) > 0 AND "


# The trigram index of tracks.search_text (SQLite's FTS5, 3.34+), kept by triggers. Optional: an
# SQLite built without FTS5 runs the same queries with instr() scans.
SEARCH_INDEX_SQL: Final = (
    "CREATE VIRTUAL TABLE track_search USING fts5(search_text, content='tracks', content_rowid='track_id',"
    " tokenize='trigram')",
    "CREATE TRIGGER track_search_insert AFTER INSERT ON tracks BEGIN"
    " INSERT INTO track_search (rowid, search_text) VALUES (new.track_id, new.search_text); END",
    "CREATE TRIGGER track_search_delete AFTER DELETE ON tracks BEGIN"
    " INSERT INTO track_search (track_search, rowid, search_text) VALUES ('delete', old.track_id, old.search_text);"
    " END",
    "CREATE TRIGGER track_search_update AFTER UPDATE OF search_text ON tracks BEGIN"
    " INSERT INTO track_search (track_search, rowid, search_text) VALUES ('delete', old.track_id, old.search_text);"
    " INSERT INTO track_search (rowid, search_text) VALUES (new.track_id, new.search_text); END",
    "INSERT INTO track_search (track_search) VALUES ('rebuild')",
)


def install_search_index(conn: sqlite3.Connection) -> bool:
    """Create the trigram index (once, in one transaction); False when this SQLite has no FTS5 trigram."""
    if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'track_search'").fetchone():
        return True
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in SEARCH_INDEX_SQL:
            conn.execute(statement)
    except sqlite3.OperationalError:  # no fts5 module, or no trigram tokenizer (SQLite < 3.34)
        conn.execute("ROLLBACK")
        return False
    conn.execute("COMMIT")
    return True


def _folded(expr: str) -> str:
    """SQL for ``fold(expr)``: SQLite's ``lower`` for printable ASCII text (the same result, no Python
    call), ``auralis_fold`` for anything else."""
    return f"(CASE WHEN {expr} GLOB '*[^ -~]*' THEN auralis_fold({expr}) ELSE lower({expr}) END)"
