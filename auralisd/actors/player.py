"""The player actor: queue, transport state machine, render-ahead, and the real-time PCM clock.

Everything the player owns (queue, flags, preset, intensity, volume, the decks being
played, the subscribers) is touched only by :meth:`Player.run`'s loop and by handlers it
calls synchronously. Commands arrive on a bounded mailbox (:data:`MAILBOX_SIZE` small
records) through the facade methods (``await player.play()`` ...), which wait for the
reply on a one-shot channel. Background tasks the player starts (preparing a deck,
fetching a chunk) report back through the same mailbox.

A *deck* is one track with one plan: its chunks are fetched from :class:`Mastering`
(cache, then the pool) and kept from the playhead up to ``render_ahead`` chunks ahead.
The clock emits one block of :data:`BLOCK_S` every :data:`BLOCK_S` seconds of real time
while playing: frames ``[out_pos, out_pos + B)`` of the current deck, resampled to the
output rate (:class:`~auralisd.resample.BlockResampler`), crossfaded with a new deck when
preset or intensity changed (:data:`CROSSFADE_S`), scaled by the ramped volume, and sent
to every subscriber with ``send_nowait``. A subscriber whose buffer is full is dropped
(its channel closed, ``dropped`` set): the player never waits for anyone. When the data
is not ready the clock stalls (an underrun is counted) and restarts from "now" when it
is, so a stall is never followed by a burst.

Gapless: when the playhead's render window reaches a track's last chunk, the next track's
deck is prepared (fingerprint, plan, first chunks); at the end of the track the clock
moves on in the same tick.

Random (like MPD): the queue entries not yet played in this round wait in a shuffled
order (``_upcoming``); ``next``, the end of a track and the gapless preparation all take
its head, so every entry plays once before any repeats. With ``repeat`` the next round's
order is drawn when it is first needed and kept, so the prepared track is the one played.
"""

from __future__ import annotations

import logging
import math
import random
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import trio
import trio_parallel

from .. import jobs
from ..errors import INVALID_PARAMS, NOT_FOUND, RpcError
from ..resample import BlockResampler
from .database import Database, Track
from .events import EventHub
from .fingerprints import FingerprintResolver
from .mastering import Mastering, chunk_count, chunk_frames
from .pool import PRIORITY_NORMAL, PoolJobAbandoned, PoolTimeout

log = logging.getLogger("auralisd.player")

MAILBOX_SIZE: Final = 64  # requests and task reports (each a small record; chunk reports hold one chunk ref)
BLOCK_S: Final = 0.05  # s of audio per published block (issue 5 wants 20-100 ms frames)
CROSSFADE_S: Final = 0.05  # s: preset/intensity change crossfade
DEFAULT_SUBSCRIBER_BLOCKS: Final = 40  # 2 s of blocks: 40 x 2205 x 2 x 4 B = 706 kB at 44.1 kHz
MAX_SUBSCRIBER_BLOCKS: Final = 400
STALL_POLL_S: Final = 0.01  # while waiting for a chunk
SAVE_INTERVAL_S: Final = 0.5  # s: while playing, the saved position is at most this old (plus one commit)
PIECES_PER_CHUNK: Final = 5  # fast-start pieces: 1 s when chunks are 5 s
FAST_START_PIECES: Final = 2  # pieces requested at the playhead while its chunk is missing
CHUNK_RETRIES: Final = 3  # extra attempts for a chunk after the pool gave up on it
# pool priorities (lower starts first): the playhead's pieces, then the playhead's chunk, then look-ahead
PRIORITY_PIECE: Final = 0  # + the piece's distance from the playhead's piece
PRIORITY_PLAYHEAD_CHUNK: Final = PRIORITY_PIECE + FAST_START_PIECES
PREVIOUS_RESTARTS_AFTER_S: Final = 3.0  # `previous` later than this restarts the track (like MPD clients)


# ----------------------------------------------------------------- what subscribers receive
@dataclass(frozen=True)
class PcmBlock:
    """Mastered audio: float32 ``(frames, 2)`` at the output rate, ``offset_frames`` from the track start."""

    epoch: int
    offset_frames: int
    samples: np.ndarray
    track_id: int


@dataclass(frozen=True)
class StreamStart:
    """Sent before the first block of every epoch (seek, track change, preset change, resume)."""

    epoch: int
    offset_frames: int
    sample_rate: int
    channels: int
    track: dict[str, Any]
    preset: str
    intensity: float
    plan: dict[str, Any] | None
    decision: str | None


@dataclass(frozen=True)
class StreamStatus:
    """``preparing`` while the fingerprint and first chunk are prepared, then ``ready``."""

    status: str
    track_id: int | None


@dataclass(frozen=True)
class StreamEnd:
    """The stream stopped: ``paused``, ``stopped``, ``end_of_queue``, ``error`` or ``shutdown``."""

    reason: str


@dataclass(eq=False)
class PcmSubscription:
    """A listener of the shared player. Read :attr:`receive`; call :meth:`close` to leave.

    ``dropped`` is True when the player dropped this subscriber for falling behind.
    """

    receive: trio.MemoryReceiveChannel
    _send: trio.MemorySendChannel = field(repr=False)
    dropped: bool = False
    announced_epoch: int | None = None

    def close(self) -> None:
        self.receive.close()


# ----------------------------------------------------------------- mailbox records
@dataclass(frozen=True)
class _Call:
    name: str
    kwargs: dict[str, Any]
    reply: trio.MemorySendChannel


@dataclass(frozen=True)
class _PlanReady:
    deck_id: int
    plan: Any
    source: str


@dataclass(frozen=True)
class _ChunkReady:
    deck_id: int
    k: int
    samples: np.ndarray


@dataclass(frozen=True)
class _PieceReady:
    deck_id: int
    j: int
    samples: np.ndarray


@dataclass(frozen=True)
class _PieceFailed:
    deck_id: int
    j: int
    path: str
    reason: str


@dataclass(frozen=True)
class _ChunkFailed:
    deck_id: int
    k: int
    code: str
    message: str
    fatal: bool


@dataclass(eq=False)
class _Deck:
    deck_id: int
    track: Track
    preset: str
    intensity: float
    resampler: BlockResampler
    out_frames: int
    chunk_frames: int
    n_chunks: int
    plan: Any = None
    plan_source: str = ""
    chunks: dict[int, np.ndarray] = field(default_factory=dict)
    fetching: dict[int, trio.CancelScope] = field(default_factory=dict)
    failures: dict[int, int] = field(default_factory=dict)
    piece_frames: int = 0
    pieces: dict[int, np.ndarray] = field(default_factory=dict)
    piece_fetching: dict[int, trio.CancelScope] = field(default_factory=dict)
    prepare_scope: trio.CancelScope | None = None
    broken_from: int | None = None  # first chunk that cannot be rendered: the track ends there

    @property
    def decision(self) -> str | None:
        return None if self.plan is None else (self.plan.decision or None)

    def close(self) -> None:
        for scope in [*self.fetching.values(), *self.piece_fetching.values()]:
            scope.cancel()
        self.fetching.clear()
        self.piece_fetching.clear()
        self.chunks.clear()
        self.pieces.clear()
        if self.prepare_scope is not None:
            self.prepare_scope.cancel()


@dataclass(frozen=True)
class PlayerStatistics:
    blocks_sent: int
    underruns: int
    subscribers: int
    dropped_subscribers: int
    crossfades: int
    chunk_retries: int
    piece_failures: int  # fast-start pieces that failed to render (the chunk still covers playback)
    gapless_ready: int  # automatic track changes whose next track had its plan and first chunk ready
    gapless_late: int  # ... and those that had to wait for it
    epoch: int

    def to_wire(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def volume_gain(percent: int) -> float:
    """Linear gain for a volume percentage: ``(p / 100) ** 2`` (about -12 dB at 50 %), never above 1."""
    return min(1.0, (max(0, percent) / 100.0) ** 2)


class Player:
    """The shared player. Start with ``await nursery.start(player.run)``."""

    def __init__(
        self,
        *,
        db: Database,
        hub: EventHub,
        resolver: FingerprintResolver,
        mastering: Mastering,
        sample_rate: int,
        render_ahead: int,
        rng: random.Random | None = None,
        restore_paused: bool = False,
    ) -> None:
        """``rng`` draws the random-mode order (inject a seeded one for a reproducible order).

        ``restore_paused``: after a restart, a track that was playing comes back paused
        (MPD's ``restore_paused``); by default it plays on.
        """
        self._db = db
        self._hub = hub
        self._resolver = resolver
        self._mastering = mastering
        self.sample_rate = int(sample_rate)
        self._render_ahead = int(render_ahead)
        self._send, self._receive = trio.open_memory_channel[Any](MAILBOX_SIZE)
        self._nursery: trio.Nursery | None = None
        self._rng = rng if rng is not None else random.Random()
        self._restore_paused = bool(restore_paused)
        self._resume = False  # set by _restore: the saved state was "play" and it plays on
        # --- owned state
        self._queue: list[Track] = []
        self._pos: int | None = None
        self._state = "stop"
        self._preset = "adaptive"
        self._intensity = 1.0
        self._volume = 100
        self._gain = 1.0
        self._flags = {"repeat": False, "random": False, "single": False, "consume": False}
        self._history: list[int] = []  # queue positions played before the current one (at most 100)
        self._upcoming: list[int] = []  # random: positions not yet played in this round, in play order
        self._next_round: list[int] | None = None  # random + repeat: the next round's order, once drawn
        self._deck: _Deck | None = None
        self._fade: _Deck | None = None  # the new plan's deck, crossfaded in when ready
        self._fade_pos: int | None = None
        self._next: _Deck | None = None
        self._out_pos = 0
        self._epoch = 0
        self._deck_ids = 0
        self._next_deadline = math.inf
        self._stalled = False
        self._epoch_blocks = 0  # blocks sent in epoch `_blocks_epoch` (a stall after the first is an underrun)
        self._blocks_epoch = -1
        self._subs: list[PcmSubscription] = []
        self._dirty = False
        self._queue_dirty = False
        # replies held until the change they acknowledge is committed (at most MAILBOX_SIZE x callers)
        self._unacked: list[tuple[trio.MemorySendChannel, tuple[bool, Any]]] = []
        self._save_wake_send, self._save_wake_receive = trio.open_memory_channel[None](1)
        self._counts = dict(
            blocks_sent=0, underruns=0, dropped_subscribers=0, crossfades=0, chunk_retries=0, piece_failures=0,
            gapless_ready=0, gapless_late=0,
        )

    # ================================================================= facade
    async def _call(self, method: str, /, **kwargs: Any) -> Any:
        reply_send, reply_receive = trio.open_memory_channel[Any](1)
        await self._send.send(_Call(method, kwargs, reply_send))
        async with reply_receive:
            ok, value = await reply_receive.receive()
        if ok:
            return value
        raise value

    async def status(self) -> dict[str, Any]:
        return await self._call("status")

    async def play(self, pos: int | None = None) -> dict[str, Any]:
        return await self._call("play", pos=pos)

    async def pause(self) -> dict[str, Any]:
        return await self._call("pause")

    async def toggle(self) -> dict[str, Any]:
        return await self._call("toggle")

    async def stop(self) -> dict[str, Any]:
        return await self._call("stop")

    async def next(self) -> dict[str, Any]:
        return await self._call("next")

    async def previous(self) -> dict[str, Any]:
        return await self._call("previous")

    async def seek(self, position_s: float) -> dict[str, Any]:
        return await self._call("seek", position_s=position_s)

    async def add(self, tracks: Sequence[Track], pos: int | None = None) -> list[dict[str, int]]:
        return await self._call("add", tracks=list(tracks), pos=pos)

    async def delete(self, positions: Sequence[int]) -> dict[str, Any]:
        return await self._call("delete", positions=list(positions))

    async def move(self, from_pos: int, to_pos: int) -> dict[str, Any]:
        return await self._call("move", from_pos=from_pos, to_pos=to_pos)

    async def clear(self) -> dict[str, Any]:
        return await self._call("clear")

    async def queue_list(self) -> dict[str, Any]:
        return await self._call("queue_list")

    async def set_preset(self, name: str) -> dict[str, Any]:
        return await self._call("set_preset", name=name)

    async def set_intensity(self, value: float) -> dict[str, Any]:
        return await self._call("set_intensity", value=value)

    async def set_volume(self, percent: int) -> dict[str, Any]:
        return await self._call("set_volume", percent=percent)

    async def set_options(self, **flags: bool) -> dict[str, Any]:
        return await self._call("set_options", flags=flags)

    async def forget_tracks(self, track_ids: Sequence[int]) -> None:
        """Drop vanished tracks from the queue (after a rescan)."""
        await self._call("forget_tracks", track_ids=set(track_ids))

    async def subscribe(self, max_blocks: int = DEFAULT_SUBSCRIBER_BLOCKS) -> PcmSubscription:
        """Listen to the shared stream: :class:`StreamStart`, :class:`PcmBlock`, :class:`StreamStatus`,
        :class:`StreamEnd` messages on a channel of ``max_blocks`` messages.

        The player never waits for a subscriber: one that lets its channel fill up is
        dropped (channel closed, ``dropped`` True). Leave with ``subscription.close()``.
        """
        return await self._call("subscribe", max_blocks=max_blocks)

    def statistics(self) -> PlayerStatistics:
        return PlayerStatistics(
            **self._counts, subscribers=len(self._subs), epoch=self._epoch
        )

    # ================================================================= actor
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Restore the saved state (playing on, or paused, where it was), then serve until cancelled.

        Saves on exit; a change is committed before its reply is sent (see :meth:`_saver`).
        """
        await self._restore()
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._saver)
                if self._deck is not None:
                    self._start_prepare(self._deck)
                    if self._resume:
                        self._set_state("play")
                        self._request_chunks()
                task_status.started()
                await self._loop()
        finally:
            self._publish(StreamEnd("shutdown"))
            for sub in self._subs:
                sub._send.close()
            with trio.CancelScope(shield=True):
                with trio.move_on_after(1.0):
                    try:
                        await self._save()
                    except Exception as exc:  # e.g. the database failed first: report, do not mask the cause
                        log.error("could not save the player state: %s", exc)
                for reply, _ in self._unacked:  # not committed: the caller gets no acknowledgement
                    reply.close()
                self._unacked.clear()

    async def _loop(self) -> None:
        while True:
            now = trio.current_time()
            if self._state == "play" and now >= self._next_deadline:
                self._tick(now)
                continue
            deadline = self._next_deadline if self._state == "play" else math.inf
            with trio.move_on_at(deadline):
                message = await self._receive.receive()
                self._dispatch(message)

    def _dispatch(self, message: Any) -> None:
        if isinstance(message, _Call):
            try:
                result = getattr(self, "_cmd_" + message.name)(**message.kwargs)
                answer = (True, result)
            except RpcError as exc:
                answer = (False, exc)
            if self._dirty or self._queue_dirty:  # acknowledge a change only once it is committed
                self._unacked.append((message.reply, answer))
                try:
                    self._save_wake_send.send_nowait(None)
                except trio.WouldBlock:  # a wake-up is already pending
                    pass
            else:
                _reply(message.reply, answer)
        elif isinstance(message, _PlanReady):
            self._on_plan_ready(message)
        elif isinstance(message, _ChunkReady):
            self._on_chunk_ready(message)
        elif isinstance(message, _PieceReady):
            self._on_piece_ready(message)
        elif isinstance(message, _ChunkFailed):
            self._on_chunk_failed(message)
        elif isinstance(message, _PieceFailed):
            self._on_piece_failed(message)

    # ================================================================= decks
    def _new_deck(self, track: Track, preset: str | None = None, intensity: float | None = None) -> _Deck:
        self._deck_ids += 1
        resampler = BlockResampler(track.sample_rate, self.sample_rate)
        frames_per_chunk = chunk_frames(track.sample_rate)
        return _Deck(
            deck_id=self._deck_ids,
            track=track,
            preset=preset or self._preset,
            intensity=self._intensity if intensity is None else intensity,
            resampler=resampler,
            out_frames=resampler.output_frames(track.num_frames),
            chunk_frames=frames_per_chunk,
            n_chunks=chunk_count(track.num_frames, track.sample_rate),
            piece_frames=max(1, frames_per_chunk // PIECES_PER_CHUNK),
        )

    def _decks(self) -> list[_Deck]:
        return [d for d in (self._deck, self._fade, self._next) if d is not None]

    def _find_deck(self, deck_id: int) -> _Deck | None:
        for deck in self._decks():
            if deck.deck_id == deck_id:
                return deck
        return None

    def _start_prepare(self, deck: _Deck) -> None:
        assert self._nursery is not None
        scope = trio.CancelScope()
        deck.prepare_scope = scope
        log.debug("preparing deck %d: %s", deck.deck_id, deck.track.path)
        if deck is self._deck:
            self._publish(StreamStatus("preparing", deck.track.track_id))
        self._nursery.start_soon(self._prepare, deck.deck_id, deck.track, deck.preset, deck.intensity, scope)

    async def _prepare(self, deck_id: int, track: Track, preset: str, intensity: float, scope: trio.CancelScope) -> None:
        from auralis.plan import plan_mastering

        with scope:
            resolved = await self._resolver.plan_inputs(track)
            value = None if resolved is None else resolved.value
            source = "neutral" if resolved is None else resolved.source
            try:
                plan = await trio.to_thread.run_sync(plan_mastering, value, preset, intensity)
            except Exception:
                log.exception("planning %s failed; using the neutral plan", track.path)
                plan = await trio.to_thread.run_sync(plan_mastering, None, preset, intensity)
                source = "neutral"
            await self._send.send(_PlanReady(deck_id, plan, source))

    def _on_plan_ready(self, message: _PlanReady) -> None:
        deck = self._find_deck(message.deck_id)
        if deck is None:
            return
        deck.plan = message.plan
        deck.plan_source = message.source
        log.debug("deck %d: plan ready (%s)", deck.deck_id, message.source)
        deck.prepare_scope = None
        if deck is self._deck or deck is self._fade:
            log.info("%s: %s", deck.track.path, deck.decision or "planned")
            self._hub.publish(
                "mastering",
                {"track_id": deck.track.track_id, "decision": deck.decision, "plan": deck.plan.to_dict()},
            )
        if deck is self._fade:
            self._fade_pos = None
        self._request_chunks()

    def _window(self, deck: _Deck, out_pos: int) -> tuple[int, int]:
        """Chunk indices ``[k_lo, k_hi]`` wanted for a deck whose playhead is ``out_pos``."""
        lo, _ = deck.resampler.input_span(out_pos, out_pos + 1)
        k_lo = min(max(lo, 0) // deck.chunk_frames, max(deck.n_chunks - 1, 0))
        return k_lo, min(k_lo + self._render_ahead, deck.n_chunks - 1)

    def _request_chunks(self) -> None:
        """Keep every deck's render window fetched; prepare the next track near the end."""
        for deck, head, extra in ((self._deck, self._out_pos, 0), (self._fade, self._out_pos, 0), (self._next, 0, -2)):
            if deck is None or deck.plan is None:
                continue
            k_lo, k_hi = self._window(deck, head)
            k_hi = max(k_lo, k_hi + extra) if extra else k_hi
            for k in list(deck.chunks):
                if k < k_lo or k > k_hi:
                    del deck.chunks[k]
            for k, scope in list(deck.fetching.items()):
                if k < k_lo or k > k_hi:
                    scope.cancel()
                    del deck.fetching[k]
            if deck.broken_from is not None:
                k_hi = min(k_hi, deck.broken_from - 1)
            if k_lo not in deck.chunks and k_lo not in deck.fetching:
                cached = self._mastering.cached_chunk(deck.track, deck.plan, k_lo)
                if cached is not None:
                    deck.chunks[k_lo] = cached
            if k_lo not in deck.chunks:
                k_hi = min(k_hi, k_lo)  # the playhead's chunk first: nothing competes with it for a core
            if extra == 0:  # fast-start pieces are queued before the chunk: the first block needs them
                self._request_pieces(deck, head, need=k_lo not in deck.chunks)
            for k in range(k_lo, k_hi + 1):
                if k not in deck.chunks and k not in deck.fetching:
                    urgent = k == k_lo and extra == 0  # the playhead of the playing or fading-in deck
                    self._fetch(deck, k, priority=PRIORITY_PLAYHEAD_CHUNK if urgent else PRIORITY_NORMAL)
        deck = self._deck
        if deck is not None and deck.plan is not None and self._state != "stop":
            _, k_hi = self._window(deck, self._out_pos)
            if k_hi >= deck.n_chunks - 1:
                self._prepare_next()

    def _request_pieces(self, deck: _Deck, head: int, *, need: bool) -> None:
        """Fast start: while the playhead's chunk is missing, render the next short pieces too."""
        lo, _ = deck.resampler.input_span(head, head + 1)
        j0 = max(lo, 0) // deck.piece_frames
        wanted = set()
        if need:
            last = (deck.track.num_frames - 1) // deck.piece_frames
            wanted = set(range(j0, min(j0 + FAST_START_PIECES, last + 1)))
        for j in list(deck.pieces):
            if j < j0 or not need:
                del deck.pieces[j]
        for j, scope in list(deck.piece_fetching.items()):
            if j not in wanted:
                scope.cancel()
                del deck.piece_fetching[j]
        assert self._nursery is not None
        for j in sorted(wanted):
            if j in deck.pieces or j in deck.piece_fetching:
                continue
            cached = self._mastering.cached_chunk(deck.track, deck.plan, j, deck.piece_frames)
            if cached is not None:
                deck.pieces[j] = cached
                continue
            scope = trio.CancelScope()
            log.debug("deck %d: fast-start piece %d requested", deck.deck_id, j)
            deck.piece_fetching[j] = scope
            self._nursery.start_soon(
                self._piece_task, deck.deck_id, deck.track, deck.plan, j, deck.piece_frames, PRIORITY_PIECE + j - j0, scope
            )

    async def _piece_task(
        self, deck_id: int, track: Track, plan: Any, j: int, piece_frames: int, priority: int, scope: trio.CancelScope
    ) -> None:
        with scope:
            try:
                samples = await self._mastering.render_piece(track, plan, j, piece_frames, priority=priority)
            except PoolJobAbandoned:
                return
            except Exception as exc:  # a piece is only a head start: report it, never crash playback
                reason = (str(exc).splitlines() or [""])[0] or type(exc).__name__
                await self._send.send(_PieceFailed(deck_id, j, track.path, reason))
                return
            await self._send.send(_PieceReady(deck_id, j, samples))

    def _on_piece_failed(self, message: _PieceFailed) -> None:
        """A fast-start piece failed: count and log it; the playhead's chunk still covers playback.

        The piece stays marked as fetched, so it is not requested (nor logged) again for this deck.
        """
        self._counts["piece_failures"] += 1
        log.warning(
            "fast-start piece %d of %s failed (%s); playback waits for its chunk",
            message.j, message.path, message.reason,
        )  # fmt: skip

    def _on_piece_ready(self, message: _PieceReady) -> None:
        deck = self._find_deck(message.deck_id)
        if deck is None or message.j not in deck.piece_fetching:
            return
        del deck.piece_fetching[message.j]
        deck.pieces[message.j] = message.samples
        if deck is self._deck and self._stalled and self._state == "play":
            self._next_deadline = trio.current_time()

    def _fetch(self, deck: _Deck, k: int, *, priority: int = PRIORITY_NORMAL) -> None:
        assert self._nursery is not None
        cached = self._mastering.cached_chunk(deck.track, deck.plan, k)
        if cached is not None:
            deck.chunks[k] = cached
            return
        scope = trio.CancelScope()
        deck.fetching[k] = scope
        self._nursery.start_soon(self._fetch_task, deck.deck_id, deck.track, deck.plan, k, priority, scope)

    async def _fetch_task(
        self, deck_id: int, track: Track, plan: Any, k: int, priority: int, scope: trio.CancelScope
    ) -> None:
        with scope:
            try:
                samples = await self._mastering.render_chunk(track, plan, k, priority=priority)
            except PoolJobAbandoned:
                return
            except jobs.JobFailed as exc:
                await self._send.send(_ChunkFailed(deck_id, k, exc.code, exc.message.splitlines()[0], True))
                return
            except (PoolTimeout, trio_parallel.BrokenWorkerError) as exc:
                await self._send.send(_ChunkFailed(deck_id, k, "internal", str(exc) or type(exc).__name__, False))
                return
            except Exception as exc:  # a bug somewhere below: report it, retry, never crash playback
                log.exception("rendering chunk %d of %s failed unexpectedly", k, track.path)
                await self._send.send(_ChunkFailed(deck_id, k, "internal", type(exc).__name__, False))
                return
            await self._send.send(_ChunkReady(deck_id, k, samples))

    def _on_chunk_ready(self, message: _ChunkReady) -> None:
        deck = self._find_deck(message.deck_id)
        if deck is None:
            return
        deck.fetching.pop(message.k, None)
        deck.chunks[message.k] = message.samples
        log.debug("deck %d: chunk %d ready", deck.deck_id, message.k)
        self._request_chunks()  # the playhead's chunk is here: the look-ahead may start
        if deck is self._deck and self._stalled and self._state == "play":
            self._next_deadline = trio.current_time()

    def _on_chunk_failed(self, message: _ChunkFailed) -> None:
        deck = self._find_deck(message.deck_id)
        if deck is None:
            return
        deck.fetching.pop(message.k, None)
        attempts = deck.failures.get(message.k, 0) + 1
        deck.failures[message.k] = attempts
        if not message.fatal and attempts <= CHUNK_RETRIES:
            self._counts["chunk_retries"] += 1
            log.warning("chunk %d of %s failed (%s); retrying", message.k, deck.track.path, message.message)
            self._fetch(deck, message.k)
            return
        log.error("cannot render chunk %d of %s: %s", message.k, deck.track.path, message.message)
        self._hub.publish("error", {"code": "bad_audio", "message": f"{deck.track.path}: {message.message}"})
        if deck is self._deck:
            # play what can be played; the track ends where the damage starts
            deck.broken_from = message.k if deck.broken_from is None else min(deck.broken_from, message.k)
            if self._state == "play":
                self._next_deadline = trio.current_time()
        elif deck is self._fade:
            self._fade.close()
            self._fade = None
        elif deck is self._next:
            self._next = None

    def _prepare_next(self) -> None:
        index = self._next_index(auto=True)
        if index is None:
            return
        track = self._queue[index]
        if self._next is not None and self._next.track.track_id == track.track_id:
            return
        if self._next is not None:
            self._next.close()
        self._next = self._new_deck(track)
        self._start_prepare(self._next)

    # ================================================================= the clock
    def _tick(self, now: float) -> None:
        deck = self._deck
        if deck is None:
            self._set_state("stop")
            return
        block = max(1, int(round(BLOCK_S * self.sample_rate)))
        n0 = self._out_pos
        n1 = min(n0 + block, deck.out_frames)
        if n1 <= n0:
            self._advance(auto=True)
            return
        if deck.broken_from is not None:
            _, hi = deck.resampler.input_span(n0, n1)
            if min(hi, deck.track.num_frames) > deck.broken_from * deck.chunk_frames:
                self._advance(auto=True, skip=True)
                return
        samples = self._frames(deck, n0, n1) if deck.plan is not None else None
        if samples is None:
            if not self._stalled and self._blocks_epoch == self._epoch:
                self._counts["underruns"] += 1
            self._stalled = True
            self._next_deadline = now + STALL_POLL_S
            return
        if self._stalled:
            self._stalled = False
            self._next_deadline = now
            self._publish(StreamStatus("ready", deck.track.track_id))
        samples = self._crossfade(samples, n0, n1)
        deck = self._deck  # the crossfade may have swapped decks
        target = volume_gain(self._volume)
        if target != 1.0 or self._gain != 1.0:
            ramp = np.linspace(self._gain, target, n1 - n0, endpoint=False, dtype=np.float32)[:, None]
            samples = samples * ramp if target != self._gain else samples * np.float32(target)
            self._gain = target
        samples = np.ascontiguousarray(samples, dtype=np.float32)
        self._announce(deck, n0)
        self._publish(PcmBlock(self._epoch, n0, samples, deck.track.track_id))
        self._counts["blocks_sent"] += 1
        self._epoch_blocks = self._epoch_blocks + 1 if self._blocks_epoch == self._epoch else 1
        self._blocks_epoch = self._epoch
        self._out_pos = n1
        self._next_deadline += (n1 - n0) / self.sample_rate
        if self._next_deadline < now - 0.25:  # fell far behind (a long GC pause): do not burst
            self._next_deadline = now
        self._request_chunks()

    def _frames(self, deck: _Deck, n0: int, n1: int) -> np.ndarray | None:
        lo, hi = deck.resampler.input_span(n0, n1)
        total = deck.track.num_frames
        span = np.zeros((hi - lo, 2), dtype=np.float32)
        a, b = max(lo, 0), min(hi, total)
        if a < b:
            cf = deck.chunk_frames
            for k in range(a // cf, (b - 1) // cf + 1):
                c0 = k * cf
                chunk = deck.chunks.get(k)
                if chunk is None:
                    s, e = max(a, c0), min(b, c0 + cf)
                    if not self._fill_from_pieces(deck, span, lo, s, e):
                        return None
                    continue
                s, e = max(a, c0), min(b, c0 + chunk.shape[0])
                span[s - lo : e - lo] = chunk[s - c0 : e - c0]
        return deck.resampler.process(span, n0, n1)

    @staticmethod
    def _fill_from_pieces(deck: _Deck, span: np.ndarray, lo: int, a: int, b: int) -> bool:
        pf = deck.piece_frames
        for j in range(a // pf, (b - 1) // pf + 1):
            piece = deck.pieces.get(j)
            if piece is None:
                return False
            p0 = j * pf
            s, e = max(a, p0), min(b, p0 + piece.shape[0])
            span[s - lo : e - lo] = piece[s - p0 : e - p0]
        return True

    def _crossfade(self, samples: np.ndarray, n0: int, n1: int) -> np.ndarray:
        fade = self._fade
        if fade is None or fade.plan is None:
            return samples
        new = self._frames(fade, n0, n1)
        if new is None:
            return samples
        fade_frames = max(1, int(round(CROSSFADE_S * self.sample_rate)))
        if self._fade_pos is None:
            self._fade_pos = 0
            self._counts["crossfades"] += 1
            self._epoch += 1
        pos = self._fade_pos + np.arange(n1 - n0)
        weight = np.clip(pos / fade_frames, 0.0, 1.0).astype(np.float32)[:, None]
        out = samples * (1.0 - weight) + new * weight
        self._fade_pos += n1 - n0
        if self._fade_pos >= fade_frames:
            old = self._deck
            self._deck = fade
            self._fade = None
            self._fade_pos = None
            if old is not None:
                old.close()
            self._hub.publish(
                "mastering", {"track_id": fade.track.track_id, "decision": fade.decision, "plan": fade.plan.to_dict()}
            )
        return out

    def _announce(self, deck: _Deck, offset: int) -> None:
        start = None
        for sub in list(self._subs):
            if sub.announced_epoch != self._epoch:
                if start is None:
                    start = StreamStart(
                        epoch=self._epoch,
                        offset_frames=offset,
                        sample_rate=self.sample_rate,
                        channels=2,
                        track=deck.track.to_wire(),
                        preset=deck.preset,
                        intensity=deck.intensity,
                        plan=None if deck.plan is None else deck.plan.to_dict(),
                        decision=deck.decision,
                    )
                sub.announced_epoch = self._epoch
                self._send_to(sub, start)

    def _publish(self, message: Any) -> None:
        for sub in list(self._subs):
            self._send_to(sub, message)

    def _send_to(self, sub: PcmSubscription, message: Any) -> None:
        try:
            sub._send.send_nowait(message)
        except trio.WouldBlock:
            log.warning("a PCM subscriber fell behind; dropping it")
            sub.dropped = True
            sub._send.close()
            self._subs.remove(sub)
            self._counts["dropped_subscribers"] += 1
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._subs.remove(sub)

    # ================================================================= transitions
    def _set_state(self, state: str, *, reason: str | None = None) -> None:
        if state == self._state:
            return
        previous = self._state
        self._state = state
        if state == "play":
            self._next_deadline = trio.current_time()
            self._epoch += 1
        else:
            self._next_deadline = math.inf
            if previous == "play":
                self._publish(StreamEnd(reason or ("paused" if state == "pause" else "stopped")))
        self._dirty = True
        self._publish_player()

    def _publish_player(self) -> None:
        self._hub.publish("player", self._player_event())

    def _player_event(self) -> dict[str, Any]:
        track = None if self._deck is None else self._deck.track
        return {
            "state": self._state,
            "queue_pos": self._pos,
            "track_id": None if track is None else track.track_id,
            "elapsed_s": self._out_pos / self.sample_rate,
            "epoch": self._epoch,
        }

    def _load(self, index: int | None, *, out_pos: int = 0, auto: bool = False) -> None:
        """Make queue entry ``index`` the current track (reusing a prepared deck when it fits)."""
        for deck in (self._deck, self._fade):
            if deck is not None and deck is not self._next:
                deck.close()
        self._fade = None
        self._fade_pos = None
        self._deck = None
        self._pos = index
        self._out_pos = out_pos
        self._epoch += 1
        self._stalled = False
        self._dirty = True
        if self._flags["random"]:
            if index is None:  # stopped: the next `play` starts a new round
                self._upcoming = self._shuffled(range(len(self._queue)))
                self._next_round = None
            else:
                self._begin_round(index)
                if index in self._upcoming:
                    self._upcoming.remove(index)
        if index is None:
            return
        track = self._queue[index]
        nxt = self._next
        self._next = None
        if nxt is not None and nxt.track.track_id == track.track_id and (nxt.preset, nxt.intensity) == (
            self._preset,
            self._intensity,
        ):
            self._deck = nxt
            if auto:
                ready = nxt.plan is not None and 0 in nxt.chunks
                self._counts["gapless_ready" if ready else "gapless_late"] += 1
            if nxt.plan is None:
                self._publish(StreamStatus("preparing", track.track_id))
        else:
            if nxt is not None:
                nxt.close()
            if auto:
                self._counts["gapless_late"] += 1
            self._deck = self._new_deck(track)
            self._start_prepare(self._deck)
        if self._state == "play":
            self._next_deadline = trio.current_time()
        self._request_chunks()

    def _next_index(self, *, auto: bool) -> int | None:
        """The queue position that plays next; the same answer until the queue or the flags change."""
        if self._pos is None:
            if not self._queue:
                return None
            return self._upcoming[0] if self._flags["random"] and self._upcoming else 0
        n = len(self._queue)
        if auto and self._flags["single"]:
            return self._pos if self._flags["repeat"] else None
        if self._flags["random"]:
            return self._random_next()
        if self._pos + 1 < n:
            return self._pos + 1
        return 0 if self._flags["repeat"] and n else None

    # ----------------------------------------------------------------- random order
    def _shuffled(self, positions: Sequence[int] | range) -> list[int]:
        order = list(positions)
        self._rng.shuffle(order)
        return order

    def _random_next(self) -> int | None:
        """Head of this round's order; with ``repeat`` after the last one, the next round's head."""
        if self._upcoming:
            return self._upcoming[0]
        n = len(self._queue)
        if not self._flags["repeat"] or n == 0:
            return None
        if self._next_round is None:  # drawn once, so the prepared next track is the one that plays
            order = self._shuffled(range(n))
            if n > 1 and order[0] == self._pos:  # a new round does not start with the track just played
                j = self._rng.randrange(1, n)
                order[0], order[j] = order[j], order[0]
            self._next_round = order
        return self._next_round[0]

    def _begin_round(self, index: int) -> None:
        """``index`` starts the drawn next round (this round is over): make that round current."""
        if self._flags["random"] and not self._upcoming and self._next_round and self._next_round[0] == index:
            self._upcoming, self._next_round = self._next_round, None

    def _reset_order(self) -> None:
        """A fresh round from the current entry (random switched on, or state restored)."""
        self._next_round = None
        if self._flags["random"]:
            self._upcoming = self._shuffled([i for i in range(len(self._queue)) if i != self._pos])
        else:
            self._upcoming = []

    def _remap_order(self, new_pos: Callable[[int], int | None]) -> None:
        """Queue positions moved (``new_pos`` maps old to new, None when removed): keep the order valid."""

        def remap(positions: list[int]) -> list[int]:
            return [q for q in map(new_pos, positions) if q is not None]

        self._upcoming = remap(self._upcoming)
        self._history = remap(self._history)
        self._next_round = None  # drawn again from the new queue when needed

    def _advance(self, *, auto: bool, skip: bool = False) -> None:
        """Move to the next track (end of track, ``next``, or a track that cannot play)."""
        index = self._next_index(auto=auto and not skip)
        if skip and index == self._pos:
            index = None
        if index is not None:
            self._begin_round(index)
        current = self._pos
        if self._flags["consume"] and current is not None and current < len(self._queue):
            del self._queue[current]
            consumed, current = current, None  # gone: not in the history either
            self._remap_order(lambda p: None if p == consumed else p - (p > consumed))
            self._queue_dirty = True
            if index is not None and index > consumed:
                index -= 1
            elif index == consumed:
                index = consumed if consumed < len(self._queue) else None
            self._publish_queue()
        if current is not None and index is not None:
            self._history.append(current)
            del self._history[:-100]
        if index is None:
            self._load(None)
            self._set_state("stop", reason="end_of_queue")
            self._publish_player()
            return
        self._load(index, auto=auto and not skip)
        self._publish_player()

    def _publish_queue(self) -> None:
        self._hub.publish("queue", {"length": len(self._queue), "current": self._pos})

    # ================================================================= commands (run inside the actor)
    def _cmd_status(self) -> dict[str, Any]:
        deck = self._deck
        track = None if deck is None else deck.track
        return {
            "state": self._state,
            "queue_pos": self._pos,
            "queue_length": len(self._queue),
            "track": None if track is None else _track_brief(track),
            "elapsed_s": self._out_pos / self.sample_rate,
            "duration_s": None if track is None else track.duration_s,
            "preset": self._preset,
            "intensity": self._intensity,
            "volume": self._volume,
            **self._flags,
            "plan": None if deck is None or deck.plan is None else deck.plan.to_dict(),
            "plan_source": None if deck is None else (deck.plan_source or None),
            "decision": None if deck is None else deck.decision,
            "mastering_status": None if deck is None else ("ready" if deck.plan is not None and not self._stalled else "preparing"),
            "next_ready": None if self._next is None else (self._next.plan is not None and 0 in self._next.chunks),
            "epoch": self._epoch,
            "sample_rate": self.sample_rate,
            "channels": 2,
            "player": self.statistics().to_wire(),
        }

    def _cmd_play(self, pos: int | None) -> dict[str, Any]:
        if pos is not None:
            self._check_pos(pos)
            if pos != self._pos or self._deck is None:
                if self._pos is not None:
                    self._history.append(self._pos)
                self._load(pos)
            else:
                self._seek_to(0)
        elif self._deck is None:
            if not self._queue:
                raise RpcError(NOT_FOUND, "the queue is empty")
            self._load(self._pos if self._pos is not None else self._next_index(auto=False))
        self._set_state("play")
        self._request_chunks()
        return self._cmd_status()

    def _cmd_pause(self) -> dict[str, Any]:
        if self._state == "play":
            self._set_state("pause")
        return self._cmd_status()

    def _cmd_toggle(self) -> dict[str, Any]:
        return self._cmd_pause() if self._state == "play" else self._cmd_play(None)

    def _cmd_stop(self) -> dict[str, Any]:
        if self._state != "stop":
            self._set_state("stop")
        self._out_pos = 0
        self._request_chunks()
        return self._cmd_status()

    def _cmd_next(self) -> dict[str, Any]:
        if self._deck is None and self._pos is None:
            raise RpcError(NOT_FOUND, "nothing is playing")
        self._advance(auto=False)
        return self._cmd_status()

    def _cmd_previous(self) -> dict[str, Any]:
        if self._pos is None:
            raise RpcError(NOT_FOUND, "nothing is playing")
        if self._out_pos / self.sample_rate > PREVIOUS_RESTARTS_AFTER_S:
            self._seek_to(0)
            return self._cmd_status()
        if self._flags["random"]:  # back along the order played; the current entry is next again
            if self._history:
                index = self._history.pop()
                self._upcoming.insert(0, self._pos)
            else:
                index = self._pos
        elif self._pos > 0:
            index = self._pos - 1
        elif self._flags["repeat"]:
            index = len(self._queue) - 1
        else:
            index = 0
        self._load(index)
        self._publish_player()
        return self._cmd_status()

    def _cmd_seek(self, position_s: float) -> dict[str, Any]:
        if self._deck is None:
            raise RpcError(NOT_FOUND, "nothing to seek in")
        if not math.isfinite(position_s) or position_s < 0:
            raise RpcError(INVALID_PARAMS, "position_s must be a finite number >= 0")
        self._seek_to(position_s)
        if self._state == "stop":
            self._set_state("pause")
        return self._cmd_status()

    def _seek_to(self, position_s: float) -> None:
        deck = self._deck
        assert deck is not None
        self._out_pos = min(int(round(position_s * self.sample_rate)), max(deck.out_frames - 1, 0))
        self._epoch += 1
        self._stalled = False
        if self._fade is not None:
            self._fade_pos = None
        if self._state == "play":
            self._next_deadline = trio.current_time()
        self._dirty = True
        self._request_chunks()
        self._publish_player()

    def _check_pos(self, pos: int) -> None:
        if not 0 <= pos < len(self._queue):
            raise RpcError(NOT_FOUND, f"no queue position {pos} (queue length {len(self._queue)})")

    def _cmd_add(self, tracks: list[Track], pos: int | None) -> list[dict[str, int]]:
        if pos is None:
            pos = len(self._queue)
        if not 0 <= pos <= len(self._queue):
            raise RpcError(NOT_FOUND, f"no queue position {pos} (queue length {len(self._queue)})")
        self._queue[pos:pos] = tracks
        if self._pos is not None and self._pos >= pos:
            self._pos += len(tracks)
        count = len(tracks)
        self._remap_order(lambda p: p + count if p >= pos else p)
        if self._flags["random"]:  # new entries join the not-yet-played part at random places
            for p in range(pos, pos + count):
                self._upcoming.insert(self._rng.randint(0, len(self._upcoming)), p)
        self._queue_dirty = self._dirty = True
        self._invalidate_next()
        self._publish_queue()
        return [{"pos": pos + i, "track_id": t.track_id} for i, t in enumerate(tracks)]

    def _invalidate_next(self) -> None:
        if self._next is not None:
            index = self._next_index(auto=True)
            if index is None or self._queue[index].track_id != self._next.track.track_id:
                self._next.close()
                self._next = None
        self._request_chunks()

    def _cmd_delete(self, positions: list[int]) -> dict[str, Any]:
        for p in positions:
            self._check_pos(p)
        removing_current = self._pos is not None and self._pos in positions
        removed = sorted(set(positions))
        for p in reversed(removed):
            del self._queue[p]
            if self._pos is not None and p < self._pos:
                self._pos -= 1
        gone = set(removed)
        self._remap_order(lambda p: None if p in gone else p - bisect_left(removed, p))
        self._queue_dirty = self._dirty = True
        if removing_current:
            assert self._pos is not None
            if self._flags["random"]:
                index = self._random_next()
            else:
                index = self._pos if self._pos < len(self._queue) else None
            was = self._state
            self._load(index)
            if index is None:
                self._set_state("stop")
            elif was == "play":
                self._next_deadline = trio.current_time()
            self._publish_player()
        self._invalidate_next()
        self._publish_queue()
        return {"queue_length": len(self._queue)}

    def _cmd_move(self, from_pos: int, to_pos: int) -> dict[str, Any]:
        self._check_pos(from_pos)
        self._check_pos(to_pos)
        track = self._queue.pop(from_pos)
        self._queue.insert(to_pos, track)
        order = list(range(len(self._queue)))
        order.insert(to_pos, order.pop(from_pos))
        new_of_old = {old: new for new, old in enumerate(order)}
        self._remap_order(new_of_old.__getitem__)
        if self._pos is not None:
            if self._pos == from_pos:
                self._pos = to_pos
            elif from_pos < self._pos <= to_pos:
                self._pos -= 1
            elif to_pos <= self._pos < from_pos:
                self._pos += 1
        self._queue_dirty = self._dirty = True
        self._invalidate_next()
        self._publish_queue()
        return {"queue_length": len(self._queue)}

    def _cmd_clear(self) -> dict[str, Any]:
        self._queue.clear()
        self._history.clear()
        self._upcoming.clear()
        self._next_round = None
        if self._next is not None:
            self._next.close()
            self._next = None
        self._load(None)
        self._set_state("stop")
        self._queue_dirty = self._dirty = True
        self._publish_queue()
        self._publish_player()
        return {"queue_length": 0}

    def _cmd_forget_tracks(self, track_ids: set[int]) -> None:
        positions = [i for i, t in enumerate(self._queue) if t.track_id in track_ids]
        if positions:
            self._cmd_delete(positions)

    def _cmd_queue_list(self) -> dict[str, Any]:
        return {
            "items": [{"pos": i, **_track_brief(t)} for i, t in enumerate(self._queue)],
            "current": self._pos,
        }

    def _cmd_set_preset(self, name: str) -> dict[str, Any]:
        self._preset = name
        self._replan()
        return self._cmd_status()

    def _cmd_set_intensity(self, value: float) -> dict[str, Any]:
        self._intensity = float(value)
        self._replan()
        return self._cmd_status()

    def _replan(self) -> None:
        """Crossfade to the new preset/intensity at the playhead as soon as its chunk is rendered."""
        self._dirty = True
        self._hub.publish("options", self._options_event())
        if self._next is not None:
            self._next.close()
            self._next = None
        deck = self._deck
        if deck is None:
            return
        if deck.plan is None:  # still preparing: start again with the new settings
            deck.close()
            self._deck = self._new_deck(deck.track)
            self._start_prepare(self._deck)
            return
        if self._fade is not None:
            self._fade.close()
        if (deck.preset, deck.intensity) == (self._preset, self._intensity):
            self._fade = None
            self._fade_pos = None
            return
        self._fade = self._new_deck(deck.track)
        self._fade_pos = None
        self._start_prepare(self._fade)

    def _cmd_set_volume(self, percent: int) -> dict[str, Any]:
        self._volume = int(percent)
        self._dirty = True
        self._hub.publish("volume", {"volume": self._volume})
        return self._cmd_status()

    def _cmd_set_options(self, flags: dict[str, bool]) -> dict[str, Any]:
        for key in flags:
            if key not in self._flags:
                raise RpcError(INVALID_PARAMS, f"unknown option {key!r}")
        was_random = self._flags["random"]
        for key, value in flags.items():
            self._flags[key] = bool(value)
        if self._flags["random"] != was_random:
            self._reset_order()
        self._dirty = True
        self._invalidate_next()
        self._hub.publish("options", self._options_event())
        return self._cmd_status()

    def _options_event(self) -> dict[str, Any]:
        return {**self._flags, "preset": self._preset, "intensity": self._intensity}

    def _cmd_subscribe(self, max_blocks: int) -> PcmSubscription:
        size = max(2, min(int(max_blocks), MAX_SUBSCRIBER_BLOCKS))
        send, receive = trio.open_memory_channel[Any](size)
        sub = PcmSubscription(receive=receive, _send=send)
        self._subs.append(sub)
        if self._deck is not None:
            status = "ready" if self._deck.plan is not None and not self._stalled else "preparing"
            self._send_to(sub, StreamStatus(status, self._deck.track.track_id))
        return sub

    # ================================================================= persistence
    def _snapshot(self) -> dict[str, Any]:
        return {
            "state": self._state,
            "queue_pos": self._pos,
            "elapsed_s": self._out_pos / self.sample_rate,
            "preset": self._preset,
            "intensity": self._intensity,
            "volume": self._volume,
            **self._flags,
        }

    async def _save(self) -> None:
        """Commit the state as it is now, then send the replies held for the changes it contains."""
        acks, self._unacked = self._unacked, []  # every held change happened before this snapshot
        queue = [t.track_id for t in self._queue] if self._queue_dirty else None
        snapshot = self._snapshot()
        self._dirty = self._queue_dirty = False
        try:
            await self._db.save_player(queue, snapshot)
        except BaseException:
            for reply, _ in acks:  # not committed: the callers get no acknowledgement
                reply.close()
            raise
        for reply, answer in acks:
            _reply(reply, answer)

    async def _saver(self) -> None:
        """Group commit: held replies wake it at once (one transaction for all waiting), and while
        playing it saves the position every :data:`SAVE_INTERVAL_S`.

        A change's reply is sent only after its transaction committed (WAL, ``synchronous=NORMAL``:
        a committed transaction survives the death of the process), so an acknowledged change
        survives ``kill -9``; the saved play position lags by at most about ``SAVE_INTERVAL_S``.
        """
        while True:
            with trio.move_on_after(SAVE_INTERVAL_S):
                await self._save_wake_receive.receive()
            if self._unacked or self._dirty or self._queue_dirty or self._state == "play":
                await self._save()

    async def _restore(self) -> None:
        from auralis.plan import plan_mastering  # noqa: F401  (fail at start, not at the first play)

        saved = await self._db.load_player_state()
        ids = await self._db.load_queue()
        for track_id in ids:
            track = await self._db.get_track(track_id)
            if track is not None:
                self._queue.append(track)
        self._preset = str(saved.get("preset", self._preset))
        self._intensity = float(saved.get("intensity", self._intensity))
        self._volume = int(saved.get("volume", self._volume))
        self._gain = volume_gain(self._volume)
        for key in self._flags:
            self._flags[key] = bool(saved.get(key, False))
        pos = saved.get("queue_pos")
        if isinstance(pos, int) and 0 <= pos < len(self._queue):
            self._pos = pos
            track = self._queue[pos]
            self._deck = self._new_deck(track)
            elapsed = float(saved.get("elapsed_s", 0.0) or 0.0)
            self._out_pos = min(int(round(elapsed * self.sample_rate)), max(self._deck.out_frames - 1, 0))
            self._state = "pause" if saved.get("state") in ("play", "pause") else "stop"
            self._resume = saved.get("state") == "play" and not self._restore_paused
            if self._state == "stop":
                self._out_pos = 0
        self._reset_order()
        log.info(
            "restored: %d queued, %s at %.1f s", len(self._queue), "playing on" if self._resume else self._state,
            self._out_pos / self.sample_rate,
        )


def _reply(reply: trio.MemorySendChannel, answer: tuple[bool, Any]) -> None:
    try:
        reply.send_nowait(answer)
    except (trio.BrokenResourceError, trio.WouldBlock):
        pass
    reply.close()


def _track_brief(track: Track) -> dict[str, Any]:
    wire = track.to_wire()
    return {k: wire[k] for k in ("track_id", "path", "title", "artist", "album", "duration_s")}
