"""A track as MPD's song block: ``file``, ``Last-Modified``, tags, ``Time``/``duration``, ``Pos``/``Id``."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Final

from ...actors.database import Track

# MPD tag name -> the Track attribute that holds it (only the tags the library reads)
TAG_ATTRIBUTES: Final[dict[str, Callable[[Track], object]]] = {
    "Artist": lambda t: t.artist,
    "Album": lambda t: t.album,
    "AlbumArtist": lambda t: t.album_artist,
    "Title": lambda t: t.title,
    "Track": lambda t: t.track_number,
    "Genre": lambda t: t.genre,
    "Date": lambda t: t.date,
    "Disc": lambda t: t.disc_number,
    "MUSICBRAINZ_ALBUMID": lambda t: t.mb_album_id,
}
TAG_TYPES: Final = tuple(TAG_ATTRIBUTES)
# Every tag name MPD 0.23 knows: clients may enable or disable any of them (``tagtypes enable
# Name``); only TAG_TYPES ever carry values here.
MPD_TAG_NAMES: Final = (
    "Artist", "ArtistSort", "Album", "AlbumSort", "AlbumArtist", "AlbumArtistSort", "Title", "Track", "Name",
    "Genre", "Date", "OriginalDate", "Composer", "Performer", "Conductor", "Work", "Grouping", "Comment", "Disc",
    "Label", "MUSICBRAINZ_ARTISTID", "MUSICBRAINZ_ALBUMID", "MUSICBRAINZ_ALBUMARTISTID", "MUSICBRAINZ_TRACKID",
    "MUSICBRAINZ_RELEASETRACKID", "MUSICBRAINZ_WORKID",
)  # fmt: skip


def canonical_tag(name: str) -> str | None:
    """MPD's tag names are case-insensitive: the canonical spelling, or None for an unknown tag."""
    lower = name.lower()
    for tag in MPD_TAG_NAMES:
        if tag.lower() == lower:
            return tag
    return None


def last_modified(mtime_ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(mtime_ns / 1e9))


def song_pairs(
    track: Track,
    uri: str,
    tagtypes: Iterable[str] = TAG_TYPES,
    *,
    pos: int | None = None,
    song_id: int | None = None,
    prio: int = 0,
) -> list[tuple[str, object]]:
    """The lines of one song, in MPD's order (tags the client turned off are left out)."""
    enabled = set(tagtypes)
    pairs: list[tuple[str, object]] = [("file", uri), ("Last-Modified", last_modified(track.mtime_ns))]
    for tag in TAG_TYPES:
        if tag in enabled:
            value = TAG_ATTRIBUTES[tag](track)
            if value is not None and value != "":
                pairs.append((tag, value))
    duration = float(track.duration_s)
    pairs.append(("Time", int(duration + 0.5)))  # MPD rounds half up
    pairs.append(("duration", duration))
    if pos is not None:
        pairs.append(("Pos", pos))
    if song_id is not None:
        pairs.append(("Id", song_id))
    if prio:
        pairs.append(("Prio", prio))
    return pairs
