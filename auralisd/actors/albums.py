"""The album actor: which album a track belongs to, and the album's plan inputs (memory, database, compute).

An album is the library's tracks that share an album key (:func:`auralis.album.album_key`:
MusicBrainz album id, else album tag + album artist, else the folder), in album order (disc
number, track number, path). Its plan inputs are those of the album read as one file
(:mod:`auralis.album`): one job per 30 s *album* segment spread over the workers, merged
exactly on a thread, stored in the database keyed by the album and by the identity of every
member (path, size, mtime, frame count, in order), so a changed, added, removed or reordered
track makes the stored inputs stale and they are computed again.

Single flight per (album, identity); a computation nobody waits for runs at idle priority and
moves up to playback priority when someone waits for it. The player names the albums of its
queue (:meth:`AlbumPlans.prefer`): they are computed in the background first, so album mode is
ready by the time the queue reaches them. Failures (unreadable track, tracks of different
rates or channel counts) are remembered per identity and answered with None: album mode then
falls back to track plans and says why.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import trio
import trio_parallel

from auralis.errors import AuralisError

from .. import jobs
from ..config import ALBUM_MODES
from .database import Database, Track
from .events import EventHub
from .pool import MasteringPool, PoolTimeout, failure_reason

log = logging.getLogger("auralisd.albums")

__all__ = ["ALBUM_MODES", "Album", "AlbumContext", "AlbumPlans", "Scope", "album_key_of", "album_order", "album_scope"]

DEFAULT_ALBUM_MODE: Final = "auto"
MEMORY_ALBUMS: Final = 2_000  # album plan inputs kept in memory (~1 kB each)
PREFERRED_ALBUMS: Final = 64  # albums of the queue waiting for background analysis (~64 small records)


@dataclass(frozen=True)
class Album:
    """An album: its key, a display name and its tracks in album order."""

    key: str
    name: str
    tracks: tuple[Track, ...]

    def index_of(self, track_id: int) -> int | None:
        for i, t in enumerate(self.tracks):
            if t.track_id == track_id:
                return i
        return None

    @property
    def identity(self) -> str:
        """Digest of what the album's analysis depends on: the analysis version and each member, in order."""
        from auralis.fingerprint import ALGORITHM_VERSION

        digest = hashlib.blake2b(digest_size=16)
        digest.update(str(ALGORITHM_VERSION).encode())
        for t in self.tracks:
            digest.update(f"\x1e{t.path}\x1f{t.size}\x1f{t.mtime_ns}\x1f{t.num_frames}".encode("utf-8", "surrogateescape"))
        return digest.hexdigest()

    @property
    def playable_as_one(self) -> bool:
        """Every track shares the first one's sample rate and channel count (an album layout exists)."""
        first = self.tracks[0]
        return all((t.sample_rate, t.channels) == (first.sample_rate, first.channels) for t in self.tracks)

    def layout(self) -> Any:
        """The :class:`auralis.album.AlbumLayout` (raises ``AlbumMismatchError`` for mixed formats)."""
        from auralis.album import AlbumLayout
        from auralis.audio import AudioInfo

        return AlbumLayout.of_infos(
            [AudioInfo(t.path, t.num_frames, t.sample_rate, t.channels, t.format, "") for t in self.tracks]
        )

    def to_wire(self) -> dict[str, Any]:
        return {"key": self.key, "name": self.name, "tracks": len(self.tracks)}


@dataclass(frozen=True)
class AlbumContext:
    """A track played with its album's plan: the album, the track's place in it, the layout to render from."""

    album: Album
    index: int
    layout: Any  # auralis.album.AlbumLayout

    @property
    def cache_key(self) -> str:
        """What a chunk rendered from the album depends on beyond the track and plan: the album and the place."""
        return f"{self.album.identity}:{self.index}"

    def to_wire(self) -> dict[str, Any]:
        return {**self.album.to_wire(), "index": self.index}


def album_key_of(track: Track) -> str:
    """The album key of a track (the rule of docs/mastering.md)."""
    from auralis.album import album_key

    return album_key(
        folder=os.path.dirname(track.path),
        album=track.album,
        album_artist=getattr(track, "album_artist", None),
        artist=track.artist,
        musicbrainz_album_id=getattr(track, "mb_album_id", None),
    )


def album_name_of(track: Track) -> str:
    """What to call a track's album: its album tag, else its folder's name."""
    return track.album or os.path.basename(os.path.dirname(track.path)) or "/"


def album_order(tracks: Iterable[Track]) -> list[Track]:
    """Disc number, then track number, then path (untagged numbers sort first)."""
    return sorted(tracks, key=lambda t: (getattr(t, "disc_number", None) or 0, t.track_number or 0, t.path))


@dataclass(frozen=True)
class Scope:
    """Which plan a track plays with: ``album`` (the album plan) or ``track``, and why."""

    album_plan: bool
    reason: str


def album_scope(
    mode: str,
    *,
    random: bool,
    album: Album | None,
    track_id: int,
    previous_id: int | None,
    next_id: int | None,
) -> Scope:
    """Decide track or album plan for one queue entry (pure; MPD's ``replay_gain_mode`` semantics).

    Args:
        mode: ``off`` (no album awareness: track plans, no album analysis), ``track`` (track plans),
            ``album`` (the album plan whenever the track has an album), ``auto`` (the album plan when
            the queue plays the album in order: the entry before or after it in play order is the
            album's previous or next track, and random is off).
        random: the queue's random flag.
        album: the track's album (None: unknown), with ``track_id`` among its tracks.
        previous_id, next_id: the track ids before and after this entry in play order (None at an end).
    """
    if mode == "off":
        return Scope(False, "album mode off")
    if mode == "track":
        return Scope(False, "track mode")
    if album is None or len(album.tracks) < 2:
        return Scope(False, "the track has no album of two or more tracks")
    if not album.playable_as_one:
        return Scope(False, "the album's tracks differ in sample rate or channels: played track by track")
    if mode == "album":
        return Scope(True, "album mode")
    i = album.index_of(track_id)
    if i is None:
        return Scope(False, "the track is not in its album (library changed)")
    if random:
        return Scope(False, "auto: random is on")
    before = album.tracks[i - 1].track_id if i > 0 else None
    after = album.tracks[i + 1].track_id if i + 1 < len(album.tracks) else None
    if (before is not None and previous_id == before) or (after is not None and next_id == after):
        return Scope(True, "auto: the queue plays the album in order")
    return Scope(False, "auto: the track plays without its album neighbours")


def inputs_to_json(inputs: Any) -> str:
    from ..protocol.codec import wire_safe

    return json.dumps(
        {"dimensions": dict(inputs.dimensions), "measurements": wire_safe(dict(inputs.measurements))},
        allow_nan=False,
    )


def inputs_from_json(text: str) -> Any:
    from auralis.fingerprint import PlanInputs

    data = json.loads(text)
    measurements = {k: (-math.inf if v is None else v) for k, v in data["measurements"].items()}
    return PlanInputs(dimensions={k: float(v) for k, v in data["dimensions"].items()}, measurements=measurements)


@dataclass(frozen=True)
class AlbumStatistics:
    computed: int
    memory_hits: int
    db_hits: int
    failures: int
    in_flight: int
    preferred: int

    def to_wire(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(eq=False)
class _Flight:
    done: trio.Event = field(default_factory=trio.Event)
    waiters: int = 0
    result: Any = None


class AlbumPlans:
    """Start with ``await nursery.start(albums.run)``."""

    def __init__(self, db: Database, pool: MasteringPool, hub: EventHub) -> None:
        self._db = db
        self._pool = pool
        self._hub = hub
        self._memory: OrderedDict[str, tuple[str, Any]] = OrderedDict()  # key -> (identity, PlanInputs)
        self._failed: dict[str, tuple[str, str]] = {}  # key -> (identity, reason)
        self._flights: dict[tuple[str, str], _Flight] = {}
        self._preferred: OrderedDict[str, Album] = OrderedDict()
        self._wakeup = trio.Event()
        self._nursery: trio.Nursery | None = None
        self._counts = dict(computed=0, memory_hits=0, db_hits=0, failures=0)

    def statistics(self) -> AlbumStatistics:
        return AlbumStatistics(**self._counts, in_flight=len(self._flights), preferred=len(self._preferred))

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._background_loop)
            task_status.started()
            await trio.sleep_forever()

    # ----------------------------------------------------------------- facade
    async def album_of(self, track: Track) -> Album | None:
        """The track's album from the library (None if the track is gone)."""
        key = album_key_of(track)
        members = [t for t in await self._db.album_candidates(track) if album_key_of(t) == key]
        if not any(t.track_id == track.track_id for t in members):
            members.append(track)
        return Album(key=key, name=album_name_of(track), tracks=tuple(album_order(members)))

    def known(self, album: Album) -> Any:
        """The album's plan inputs if they are in memory for its current identity, else None. Never blocks."""
        entry = self._memory.get(album.key)
        if entry is not None and entry[0] == album.identity:
            self._memory.move_to_end(album.key)
            return entry[1]
        return None

    def failure(self, album: Album) -> str | None:
        """Why the album's analysis failed for its current identity (None: it did not)."""
        failed = self._failed.get(album.key)
        return failed[1] if failed is not None and failed[0] == album.identity else None

    async def stored(self, album: Album) -> Any:
        """The album's plan inputs from memory or the database (valid for its current identity), else None.

        Never starts an analysis: what a track about to play asks first.
        """
        value = self.known(album)
        if value is not None:
            self._counts["memory_hits"] += 1
            return value
        stored = await self._db.get_album_plan(album.key)
        if stored is None or stored[0] != album.identity:
            return None
        value = inputs_from_json(stored[1])
        self._counts["db_hits"] += 1
        self._remember(album.key, album.identity, value)
        return value

    async def plan_inputs(self, album: Album, *, background: bool = False) -> Any:
        """The album's plan inputs: memory, database, else computed (None when it cannot be analysed).

        Cancellation: safe; the computation goes on (stored for the next time).
        """
        identity = album.identity
        value = self.known(album)
        if value is not None:
            self._counts["memory_hits"] += 1
            return value
        if self.failure(album) is not None:
            return None
        key = (album.key, identity)
        flight = self._flights.get(key)
        if flight is None:
            if self._nursery is None:
                raise RuntimeError("album actor is not running")
            flight = _Flight()
            self._flights[key] = flight
            self._nursery.start_soon(self._fly, album, identity, flight)
        if not background:
            flight.waiters += 1
        try:
            await flight.done.wait()
        finally:
            if not background:
                flight.waiters -= 1
        return flight.result

    def prefer(self, albums: Sequence[Album]) -> None:
        """Analyse these albums (those of the queue) in the background, before any other."""
        for album in albums:
            if len(album.tracks) < 2 or not album.playable_as_one:
                continue
            self._preferred[album.key] = album
            self._preferred.move_to_end(album.key)
        while len(self._preferred) > PREFERRED_ALBUMS:
            self._preferred.popitem(last=False)
        self._wakeup.set()

    # ----------------------------------------------------------------- work
    async def _background_loop(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup = trio.Event()
            while self._preferred:
                _, album = self._preferred.popitem(last=False)
                if self.known(album) is None and self.failure(album) is None:
                    await self.plan_inputs(album, background=True)

    async def _fly(self, album: Album, identity: str, flight: _Flight) -> None:
        try:
            flight.result = await self._resolve(album, identity, lambda: flight.waiters == 0)
        except (jobs.JobFailed, PoolTimeout, trio_parallel.BrokenWorkerError, OSError, AuralisError) as exc:
            self._fail(album, identity, failure_reason(exc))
        except Exception as exc:
            log.exception("analysis of album %s failed unexpectedly", album.name)
            self._fail(album, identity, f"internal error: {type(exc).__name__}")
        finally:
            del self._flights[(album.key, identity)]
            flight.done.set()

    async def _resolve(self, album: Album, identity: str, background: Any) -> Any:
        stored = await self._db.get_album_plan(album.key)
        if stored is not None and stored[0] == identity:
            value = inputs_from_json(stored[1])
            self._counts["db_hits"] += 1
            self._remember(album.key, identity, value)
            return value
        layout = album.layout()  # AlbumMismatchError (an AuralisError) for mixed formats
        self._hub.publish("album_progress", {"album": album.to_wire(), "status": "analyzing"})
        count = await trio.to_thread.run_sync(jobs.album_segment_count, layout)
        results = await self._pool.run_each(
            jobs.analyze_album_segment, [(layout, index) for index in range(count)], background=background
        )
        value = await trio.to_thread.run_sync(jobs.merge_album_results, layout, results)
        self._counts["computed"] += 1
        await self._db.put_album_plan(album.key, identity, inputs_to_json(value))
        self._remember(album.key, identity, value)
        log.info("album %r analysed: %d tracks, %.1f LUFS", album.name, len(album.tracks),
                 float(value.measurements["integrated_lufs"]))
        self._hub.publish("album_progress", {"album": album.to_wire(), "status": "complete"})
        return value

    def _remember(self, key: str, identity: str, value: Any) -> None:
        self._memory[key] = (identity, value)
        self._memory.move_to_end(key)
        while len(self._memory) > MEMORY_ALBUMS:
            self._memory.popitem(last=False)

    def _fail(self, album: Album, identity: str, reason: str) -> None:
        self._counts["failures"] += 1
        self._failed[album.key] = (identity, reason)
        log.warning("album %r cannot be analysed as one: %s", album.name, reason)
        self._hub.publish("album_progress", {"album": album.to_wire(), "status": "failed", "reason": reason})

