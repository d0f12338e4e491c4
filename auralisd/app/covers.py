"""Cover art of tracks, for every frontend: the HTTP ``/cover/`` route and MPD's ``albumart``/``readpicture``.

Pictures are read on threads (at most :data:`COVER_THREADS` at once, each at most
:data:`~auralisd.tags.MAX_COVER_BYTES` in memory). The last few pictures are kept, keyed by the
file's identity (path, size, mtime), because MPD clients fetch a picture in chunks of a few
KiB, one request each: without the cache a 1 MiB cover would be read from disk 128 times. An entry
is trusted for :data:`COVER_FRESH_S` only: a ``cover.jpg`` beside the file can be replaced without the
track changing, and the next fetch after that must show the new picture (one chunked fetch takes well
under a second, so it is never split between two pictures by the expiry).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Final, Literal

import trio

from ..actors.database import Track
from ..tags import MAX_COVER_BYTES, read_cover, read_embedded_cover, read_folder_cover

COVER_THREADS: Final = 2  # pictures read at once
CACHED_COVERS: Final = 4  # recent pictures kept (at most 4 x 8 MiB)
COVER_FRESH_S: Final = 5.0  # s: a kept picture is read again after this (a replaced folder picture shows)
CoverSource = Literal["any", "embedded", "folder"]
_READERS: Final = {"any": read_cover, "embedded": read_embedded_cover, "folder": read_folder_cover}


class CoverReader:
    """``await covers.cover(track, source)`` -> ``(bytes, content type)`` or None."""

    def __init__(self, *, max_bytes: int = MAX_COVER_BYTES) -> None:
        self._limiter = trio.CapacityLimiter(COVER_THREADS)
        self._max_bytes = max_bytes
        # key -> (trio time read, picture or None)
        self._recent: OrderedDict[tuple[str, int, int, str], tuple[float, tuple[bytes, str] | None]] = OrderedDict()

    async def cover(self, track: Track, source: CoverSource = "any") -> tuple[bytes, str] | None:
        """``any``: the embedded picture, else one beside the file; ``embedded`` or ``folder``: only that one."""
        key = (track.path, track.size, track.mtime_ns, source)
        kept = self._recent.get(key)
        if kept is not None and trio.current_time() - kept[0] < COVER_FRESH_S:
            self._recent.move_to_end(key)
            return kept[1]
        found = await trio.to_thread.run_sync(_READERS[source], track.path, self._max_bytes, limiter=self._limiter)
        self._recent[key] = (trio.current_time(), found)
        self._recent.move_to_end(key)
        while len(self._recent) > CACHED_COVERS:
            self._recent.popitem(last=False)
        return found
