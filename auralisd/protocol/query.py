"""Library queries as data: what ``find``/``search``/``list``/``count`` ask, before any SQL.

A query is a tree of small frozen records. The MPD filter parser
(``protocol/mpd/filters.py``) and the msgpack command table both build one, and the database
actor compiles it to one SQL ``WHERE`` clause (``actors/tagquery.py``): no per-row Python
filtering where SQL can do it.

Part of the sans-IO protocol leaf: no I/O, nothing imported from the rest of ``auralisd``.

Tags (MPD's names, lower case): see :data:`TAGS`. ``file`` is a track's path relative to its
music folder (its MPD URI), ``any`` is every tag and the file. ``albumartist`` falls back to
``artist`` for a track without one, as MPD does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

TAGS: Final = (
    "artist", "albumartist", "album", "title", "track", "disc", "genre", "date", "composer", "performer", "comment",
    "musicbrainz_albumid",
)  # fmt: skip
"""Tags a track can be asked about and listed by (``file`` and ``any`` are accepted in matches too)."""
MATCH_TAGS: Final = (*TAGS, "file", "any")
OPERATORS: Final = ("==", "!=", "contains", "starts_with", "=~", "!~")
MAX_QUERY_DEPTH: Final = 32  # nested (AND ...)/(!...) levels; deeper is refused (the SQL would be too)
MAX_QUERY_TERMS: Final = 64  # matches in one query
MAX_VALUE_CHARS: Final = 1024  # a longer value cannot match a stored tag (tags.MAX_TAG_CHARS)


class QueryError(ValueError):
    """A query that cannot be run: unknown tag, bad operator, bad regular expression, too deep."""


@dataclass(frozen=True)
class TagMatch:
    """``tag op value``; ``fold_case``: compared case-insensitively (MPD's ``search``)."""

    tag: str
    op: str
    value: str
    fold_case: bool = False

    def __post_init__(self) -> None:
        if self.tag not in MATCH_TAGS:
            raise QueryError(f"unknown tag {self.tag[:64]!r}")
        if self.op not in OPERATORS:
            raise QueryError(f"unknown operator {self.op[:64]!r}")
        if len(self.value) > MAX_VALUE_CHARS:
            raise QueryError(f"value longer than {MAX_VALUE_CHARS} characters")
        if "\x00" in self.value:
            raise QueryError("a value cannot hold NUL")


@dataclass(frozen=True)
class Base:
    """Tracks in folder ``path`` (relative to the music folder, "" for all) or below it."""

    path: str


@dataclass(frozen=True)
class ModifiedSince:
    """Tracks whose file changed at or after ``timestamp_s`` (Unix time, seconds)."""

    timestamp_s: float


@dataclass(frozen=True)
class And:
    parts: tuple[Query, ...]


@dataclass(frozen=True)
class Not:
    part: Query


Query = TagMatch | Base | ModifiedSince | And | Not


def conjunction(parts: list[Query]) -> Query | None:
    """One query for all of ``parts`` (None when there are none)."""
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else And(tuple(parts))


def check_query(query: Query) -> None:
    """Raise :class:`QueryError` when ``query`` is deeper or larger than the limits."""
    terms = 0

    def walk(q: Query, depth: int) -> None:
        nonlocal terms
        if depth > MAX_QUERY_DEPTH:
            raise QueryError(f"query nested deeper than {MAX_QUERY_DEPTH} levels")
        if isinstance(q, And):
            for part in q.parts:
                walk(part, depth + 1)
        elif isinstance(q, Not):
            walk(q.part, depth + 1)
        else:
            terms += 1
            if terms > MAX_QUERY_TERMS:
                raise QueryError(f"query with more than {MAX_QUERY_TERMS} terms")

    walk(query, 0)
