"""``GET /cover/<track_id>``: a track's cover art on the HTTP port.

The embedded picture, else ``cover.*``/``folder.*`` beside the file (``auralisd/tags.py``),
at most :data:`~auralisd.tags.MAX_COVER_BYTES`, with the content type its bytes say (JPEG,
PNG, GIF or WebP; never guessed from a name). 204 (no content) for a track without a picture,
so a page can ask without an error; 404 for an unknown track. The HTTP server applies the same
Host, Origin and token rules as to WebSockets.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final

from ..actors.database import Database
from ..app.covers import CoverReader

MAX_TRACK_ID_DIGITS: Final = 19  # SQLite INTEGER: at most 2^63 - 1

CoverHandler = Callable[[str], Awaitable[tuple[bytes, str] | None]]


def cover_handler(db: Database, covers: CoverReader | None = None) -> CoverHandler:
    """The ``/cover/`` route: the rest of the path is a track id (pictures read by ``covers``, app/covers.py)."""
    reader = CoverReader() if covers is None else covers

    async def handle(rest: str) -> tuple[bytes, str] | None:
        if not rest.isascii() or not rest.isdigit() or len(rest) > MAX_TRACK_ID_DIGITS:
            return None
        track = await db.get_track(int(rest))
        if track is None:
            return None
        cover = await reader.cover(track)
        return (b"", "") if cover is None else cover  # empty: 204, the track has no picture

    return handle
