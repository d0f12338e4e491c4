"""Chunk rendering facade: cache, then one pool job per chunk however many ask for it.

``await mastering.render_chunk(track, plan, k, out_rate=r)`` returns output chunk ``k`` of
``track`` mastered with ``plan`` as float32 ``(frames, 2)`` at the output rate ``r`` (the
shared player and private WebSocket sessions both use it). The worker resamples, so the
event loop only slices. Chunk geometry is the renderer's (:func:`auralis.render.chunk_frames`)
seen at the output rate (:class:`auralis.resample.ChunkGrid`): chunk ``k`` covers output
frames ``[ceil(k * N * r / rate), ceil((k + 1) * N * r / rate))``. ``plan=None`` is the
unprocessed original (the A/B side), on the same cached path: it never kills a worker.

Single flight: concurrent requests for the same key share one render, which runs in this
actor's nursery, so a requester that gives up (seek, stop, a closed A/B session) does not
cancel it for the others and never kills a worker. A queued render that nobody wants any
more is dropped before it starts; a running one finishes (a chunk takes a fraction of a
second) and lands in the cache. A render's pool priority is the most urgent of its
requesters': one that joins a render still waiting for a worker with a lower priority (the
deck asking again for a look-ahead chunk that became the playhead's) moves it up the pool's
queue through the flight's :class:`~.pool.JobPriority`. Among renders of equal priority the one
asked for first starts first: a requester passes the pool's ticket (:meth:`~.pool.MasteringPool.ticket`,
taken when it asked), and a flight keeps the earliest ticket of its requesters.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import trio

from .. import jobs
from ..actors.database import Track
from .cache import ChunkCache
from .pool import PRIORITY_NORMAL, JobPriority, MasteringPool, PoolJobAbandoned

log = logging.getLogger("auralisd.mastering")


@dataclass(frozen=True)
class ChunkKey:
    """Everything that changes a rendered chunk's samples."""

    path: str
    size: int
    mtime_ns: int
    engine_version: str
    plan_key: str
    k: int
    chunk_frames: int = 0  # 0: the renderer's standard geometry; else a fast-start piece length
    out_rate: int = 0  # output sample rate (Hz) the chunk was resampled to; 0: the file's own rate
    album: str = ""  # album mode: the album's identity and the track's place in it ("": the track alone)


@dataclass(eq=False)
class _Flight:
    priority: JobPriority  # the most urgent of its requesters'; lowered while it waits for a worker
    kind: str = "chunk"  # piece | chunk: the label of its pool job (the pool's timeline)
    done: trio.Event = field(default_factory=trio.Event)
    waiters: int = 0
    result: np.ndarray | None = None
    error: BaseException | None = None


ORIGINAL_PLAN_KEY = "original"  # the plan_key of unprocessed (A/B) chunks


def chunk_frames(sample_rate: int) -> int:
    from auralis.render import chunk_frames as geometry

    return int(geometry(sample_rate))


def chunk_count(num_frames: int, sample_rate: int) -> int:
    from auralis.render import chunk_count as count

    return int(count(num_frames, sample_rate))


def engine_version() -> str:
    from auralis.render import ENGINE_VERSION

    return str(ENGINE_VERSION)


class Mastering:
    """Start with ``await nursery.start(mastering.run)``."""

    def __init__(self, pool: MasteringPool, cache: ChunkCache) -> None:
        self.pool = pool
        self.cache = cache
        self._flights: dict[ChunkKey, _Flight] = {}
        self._nursery: trio.Nursery | None = None
        self._engine_version = ""

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        self._engine_version = engine_version()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    def key(
        self, track: Track, plan: Any, k: int, piece_frames: int = 0, out_rate: int | None = None, album: Any = None
    ) -> ChunkKey:
        rate = 0 if out_rate is None or int(out_rate) == int(track.sample_rate) else int(out_rate)
        plan_key = ORIGINAL_PLAN_KEY if plan is None else plan.cache_key()
        context = "" if album is None or plan is None else album.cache_key
        return ChunkKey(
            track.path, track.size, track.mtime_ns, self._engine_version, plan_key, int(k), int(piece_frames), rate,
            context,
        )  # fmt: skip

    def ticket(self, priority: int = PRIORITY_NORMAL, seq: int | None = None) -> JobPriority:
        """The pool's ticket for a render asked for now (:meth:`MasteringPool.ticket <.pool.MasteringPool.ticket>`),
        or at the earlier place ``seq`` (an earlier ticket's, e.g. the command's that wants the render)."""
        return self.pool.ticket(priority) if seq is None else JobPriority(priority, seq)

    def cached_chunk(
        self, track: Track, plan: Any, k: int, piece_frames: int = 0, out_rate: int | None = None, album: Any = None
    ) -> np.ndarray | None:
        """The chunk when it is cached (counted as a hit), else None (not counted). Never blocks."""
        key = self.key(track, plan, k, piece_frames, out_rate, album)
        return self.cache.get(key) if self.cache.peek(key) else None

    async def render_piece(
        self, track: Track, plan: Any, j: int, piece_frames: int, *, out_rate: int | None = None,
        priority: int | JobPriority = PRIORITY_NORMAL, album: Any = None,
    ) -> np.ndarray:
        """Fast-start piece ``j``: frames ``[j * piece_frames, (j + 1) * piece_frames)``, rendered alone.

        A short piece renders several times faster than a whole chunk (the pre-roll is the
        same, the body shorter), so playback can start before chunk 0 is ready. The
        renderer works on an absolute frame grid: a piece equals the same frames of the
        standard chunk (sample for sample as measured; -90 dBFS is the documented bound).
        """
        key = self.key(track, plan, j, piece_frames, out_rate, album)
        return await self._render_key(key, track.path, plan, priority, album)

    async def render_chunk(
        self, track: Track, plan: Any, k: int, *, out_rate: int | None = None,
        priority: int | JobPriority = PRIORITY_NORMAL, album: Any = None,
    ) -> np.ndarray:
        """Output chunk ``k`` as read-only float32 ``(frames, 2)`` at ``out_rate`` (default: the track's).

        ``plan`` None renders the unprocessed original (downmixed, resampled, no gain).
        ``album`` (an :class:`~auralisd.actors.albums.AlbumContext`) renders the track from its album
        as one file (album mode: pre-roll and look-ahead across the track's boundaries).

        ``priority`` orders it among playback jobs waiting for a worker (lower first; a pool ticket
        also says when it was asked for, first asked first served within one priority); a render
        already waiting for a worker takes the most urgent of its requesters' priorities.

        Raises:
            jobs.JobFailed: the file cannot be rendered (code ``bad_audio``/``not_found``).
            PoolTimeout, trio_parallel.BrokenWorkerError: the pool gave up on the chunk.

        Cancellation: safe; the render goes on for other requesters and the cache.
        """
        return await self._render_key(self.key(track, plan, k, 0, out_rate, album), track.path, plan, priority, album)

    async def _render_key(
        self, key: ChunkKey, path: str, plan: Any, priority: int | JobPriority, album: Any = None
    ) -> np.ndarray:
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        value, seq = (priority.value, priority.seq) if isinstance(priority, JobPriority) else (priority, None)
        flight = self._flights.get(key)
        if flight is None:
            if self._nursery is None:
                raise RuntimeError("mastering actor is not running")
            flight = _Flight(JobPriority(value, seq), kind="piece" if key.chunk_frames else "chunk")
            self._flights[key] = flight
            self._nursery.start_soon(self._render, key, flight, path, plan, album if key.album else None)
        else:
            flight.priority.lower(value, seq)  # the most urgent requester sets its place in the pool's queue
        flight.waiters += 1
        try:
            await flight.done.wait()
        finally:
            flight.waiters -= 1
        if flight.error is not None:
            raise flight.error
        if flight.result is None:  # the render was cancelled (shutdown): nobody gets a result
            raise PoolJobAbandoned()
        return flight.result

    async def _render(self, key: ChunkKey, flight: _Flight, path: str, plan: Any, album: Any = None) -> None:
        try:
            if album is not None:
                result = await self.pool.run(
                    jobs.render_album_chunk_stereo, album.layout, album.index, plan, key.k, key.chunk_frames or None,
                    key.out_rate or None, still_wanted=lambda: flight.waiters > 0, priority=flight.priority,
                    label=f"album {flight.kind}",
                )  # fmt: skip
            else:
                result = await self.pool.run(
                    jobs.render_chunk_stereo, path, plan, key.k, key.chunk_frames or None, key.out_rate or None,
                    still_wanted=lambda: flight.waiters > 0, priority=flight.priority,
                    label=("original " if plan is None else "") + flight.kind,
                )  # fmt: skip
            self.cache.put(key, result)
            flight.result = result
        except PoolJobAbandoned:
            flight.error = PoolJobAbandoned()
        except Exception as exc:  # handed to every waiter
            flight.error = exc
        finally:
            del self._flights[key]
            flight.done.set()
