"""The player actor: the shared player, a trio actor over the playback core (:mod:`auralisd.playback`).

Everything the player owns (the :class:`~auralisd.playback.PlayQueue`, preset, intensity,
volume, the decks being played, the subscribers) is touched only by :meth:`Player.run`'s loop
and by handlers it calls synchronously. Commands arrive on a bounded mailbox
(:data:`MAILBOX_SIZE` small records) through the facade methods (``await player.play()``
...), which wait for the reply on a one-shot channel. Background tasks the player starts
(preparing a deck, fetching a chunk) report back through the same mailbox.

The logic is the core's: the queue and MPD's play order (:mod:`~auralisd.playback.queue`),
which chunks a deck wants and how urgently (:mod:`~auralisd.playback.deck`), the clock's
deadlines, stalls and underruns (:mod:`~auralisd.playback.clock`) and the one crossfade and
volume ramp (:mod:`~auralisd.playback.mixer`). This actor runs the fetches the decks ask for
(:class:`Mastering`: cache, then the pool; chunks arrive already at the output rate) and
publishes one block of :data:`BLOCK_S` every :data:`BLOCK_S` seconds of real time while
playing: frames ``[out_pos, out_pos + B)`` sliced from the current deck, crossfaded with a
new deck when preset or intensity changed (:data:`CROSSFADE_S`), scaled by the ramped volume,
and sent to every subscriber with ``send_nowait``. A subscriber whose buffer is full is
dropped (its channel closed, ``dropped`` set): the player never waits for anyone. While an
*early* subscriber listens (the web player's ``/stream``) each block is mixed :data:`STREAM_LEAD_S`
before its play time and sent to it at once, so a new position (seek, track chosen) reaches it
as one burst of the lead and plays without re-buffering in real time; *on-time* subscribers (the
outputs, ``/stream?lead=0``) get each block at its play time from the listeners' delay line
(:mod:`~auralisd.actors.listeners`), and a jump drops what was mixed ahead for the old position.
When the data is not ready the clock stalls; a stall the lead absorbs costs nothing, one past a
block's play time counts an underrun and restarts from "now", so a stall is never followed by a
burst beyond the lead. The event loop does no DSP beyond slicing, fading and scaling.

After every command, task report and clock tick the loop republishes :attr:`Player.view` (an
immutable :class:`~auralisd.actors.player_view.PlayerView`) if anything in it changed, before
any reply leaves; readers such as the MPD frontend's ``status`` take it without a mailbox hop.

Gapless: when the playhead's render window reaches a track's last chunk, the next track's
deck is prepared (fingerprint, plan, first chunk); at the end of the track the clock moves
on in the same tick.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import trio

from ..errors import INVALID_PARAMS, NOT_FOUND, RpcError
from ..playback import Clock, Crossfade, Deck, PlayQueue, QueueError, VolumeRamp
from ..playback.clock import MAX_LATE_S
from ..playback.mixer import (
    BLOCK_S,
    CROSSFADE_S,
    block_frames,
    crossfade_frames,
    track_crossfade_mix,
    track_crossfade_span,
)
from ..playback.mixer import volume_gain as volume_gain
from .albums import ALBUM_MODES, DEFAULT_ALBUM_MODE, AlbumContext, AlbumPlans, album_key_of
from .database import Database, Track
from .events import EventHub
from .fingerprints import FingerprintResolver
from .listeners import (
    DEFAULT_SUBSCRIBER_BLOCKS,
    MAX_SUBSCRIBER_BLOCKS,
    Listeners,
    PcmBlock,
    PcmSubscription,
    StreamEnd,
    StreamStart,
    StreamStatus,
)
from .mastering import Mastering, chunk_frames
from .planning import AlbumArgs, DeckPlanner
from .player_store import SAVE_INTERVAL_S, PlayerStore, load_saved, send_reply
from .player_view import (
    PlayerView,
    mastering_event,
    mastering_status,
    options_event,
    player_event,
    queue_items,
    status,
)
from .renders import DeckRenders, Outcome, RenderReport

log = logging.getLogger("auralisd.player")

__all__ = [
    "BLOCK_S", "CROSSFADE_S", "DEFAULT_SUBSCRIBER_BLOCKS", "MAX_SUBSCRIBER_BLOCKS", "SAVE_INTERVAL_S", "PcmBlock",
    "PcmSubscription", "Player", "PlayerStatistics", "PlayerView", "StreamEnd", "StreamStart", "StreamStatus", "volume_gain",
]

ALBUM_WAIT_PLAYHEAD_S: Final = 0.3  # s: a track about to play waits this long for its album's analysis
ALBUM_WAIT_NEXT_S: Final = 3.0  # s: the next track, prepared ahead of a boundary, waits longer
ALBUM_PREFETCH_ENTRIES: Final = 50  # queue entries from the playhead whose albums are analysed first
MAILBOX_SIZE: Final = 64  # requests and task reports (each a small record; chunk reports hold one chunk ref)
PREVIOUS_RESTARTS_AFTER_S: Final = 3.0  # `previous` later than this restarts the track (like MPD clients)
# Blocks are mixed this long before they play: the web player's pre-buffer (clients/web/worklet.js
# PREBUFFER_S), so after a seek its /stream holds the pre-buffer as soon as the first block is mixed
# (Icecast's and Snapcast's burst-on-connect, for a new position) and plays it at its play time.
STREAM_LEAD_S: Final = 0.5


# ----------------------------------------------------------------- mailbox records
class StatusAfterChange:
    """What a command returns when its reply is the status after its change (``play``, ``setvol``
    ...): the status is built when the reply is sent (after the commit, by the saver), not in the
    run loop, so the tasks the change woke run without waiting for it."""


STATUS_AFTER_CHANGE: Final = StatusAfterChange()


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
    album: AlbumContext | None = None
    scope_reason: str = ""


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
        albums: AlbumPlans | None = None,
        album_mode: str | None = None,
        run_sync: Callable[..., Awaitable[Any]] | None = None,
        lead_s: float = STREAM_LEAD_S,
    ) -> None:
        """``rng`` draws the random-mode order (inject a seeded one for a reproducible order).

        ``run_sync(fn, *args)`` runs CPU work (planning) off the event loop: on a thread by default
        (``trio.to_thread.run_sync``). Timing tests on trio's MockClock pass one that runs it inline,
        so virtual time never jumps ahead while a real thread works.

        ``restore_paused``: after a restart, a track that was playing comes back paused
        (MPD's ``restore_paused``); by default it plays on.

        ``albums`` enables album mode (without it every track plays with its own plan);
        ``album_mode`` set explicitly (flag or config file) wins over the saved mode at start.

        ``lead_s``: blocks are mixed up to this long before their play time; early subscribers (the web
        player's ``/stream``, whose pre-buffer is as long) get them at once, on-time ones at their play
        time (:mod:`~auralisd.actors.listeners`). A seek then sounds as soon as its first block is mixed.
        """
        self._db = db
        self._hub = hub
        self._run_sync: Callable[..., Awaitable[Any]] = trio.to_thread.run_sync if run_sync is None else run_sync
        self._planner = DeckPlanner(resolver, albums, self._run_sync)
        self._mastering = mastering
        self.sample_rate = int(sample_rate)
        self._render_ahead = int(render_ahead)
        self._send, self._receive = trio.open_memory_channel[Any](MAILBOX_SIZE)
        self._nursery: trio.Nursery | None = None
        self._restore_paused = bool(restore_paused)
        self._albums = albums
        self._album_mode_explicit = album_mode is not None
        self._album_mode = album_mode if album_mode in ALBUM_MODES else DEFAULT_ALBUM_MODE
        self._resume = False  # set by _restore: the saved state was "play" and it plays on
        # --- owned state
        self._q: PlayQueue[Track] = PlayQueue(rng, journal=True)  # journalled: the store writes what changed
        self._state = "stop"
        self._preset = "adaptive"
        self._intensity = 1.0
        self._volume = 100
        self._crossfade_s = 0  # MPD's crossfade setting (whole seconds): track changes fade over it
        self._track_xfade: int | None = None  # frames of the next track already mixed in (a track crossfade runs)
        self._ramp = VolumeRamp()
        self.lead_s = float(lead_s)
        self._clock = Clock(self.sample_rate)  # its lead follows the listeners (_follow_listeners)
        self._deck: Deck | None = None
        self._fade: Deck | None = None  # the new plan's deck, crossfaded in when ready
        self._xfade: Crossfade | None = None  # the crossfade in progress (None: not started yet)
        self._next: Deck | None = None
        self._out_pos = 0
        self._epoch = 0
        self._sent_epoch: int | None = None  # epoch of the last block published (None after a StreamEnd)
        self._continuous_epoch: int | None = None  # an epoch that starts where the last one ended
        self._deck_ids = 0
        self._listeners = Listeners()
        self._next_ready_waiters: list[trio.Event] = []  # set once the next track is ready (wait_next_ready)
        self._store = PlayerStore(
            db, queue=self._q, snapshot=self._snapshot, playing=lambda: self._state == "play",
        )
        self._renders = DeckRenders(mastering, self.sample_rate, self._send.send)  # reports come to the mailbox
        self._counts = dict(blocks_sent=0, crossfades=0, gapless_ready=0, gapless_late=0)
        self._view_key: tuple[Any, ...] | None = None  # what the published view was built from
        self._view_version = 0
        self._view: PlayerView
        self._refresh_view()

    # the queue's state under the names persistence uses
    @property
    def _queue(self) -> list[Track]:
        return self._q.entries

    @property
    def _pos(self) -> int | None:
        return self._q.pos

    @_pos.setter
    def _pos(self, value: int | None) -> None:
        self._q.pos = value

    @property
    def _flags(self) -> dict[str, bool]:
        return self._q.flags

    @property
    def _gain(self) -> float:
        return self._ramp.gain

    @_gain.setter
    def _gain(self, value: float) -> None:
        self._ramp.gain = value

    @property
    def _stalled(self) -> bool:
        return self._clock.stalled

    def _reset_order(self) -> None:
        self._q.reset_order()

    # ================================================================= facade
    async def _call(self, method: str, /, **kwargs: Any) -> Any:
        reply_send, reply_receive = trio.open_memory_channel[Any](1)
        call = _Call(method, kwargs, reply_send)
        try:
            self._send.send_nowait(call)  # the usual case: room in the mailbox, the player runs next
        except trio.WouldBlock:
            await self._send.send(call)
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

    # --- MPD's queue model: song ids, version, priorities, shuffle/swap/crop, crossfade seconds
    async def shuffle(self, start: int = 0, end: int | None = None) -> dict[str, Any]:
        """Shuffle queue positions ``[start, end)`` (default: all); a playing entry stays first of its range."""
        return await self._call("shuffle", start=start, end=end)

    async def swap(self, a: int, b: int) -> dict[str, Any]:
        return await self._call("swap", a=a, b=b)

    async def crop(self) -> dict[str, Any]:
        """Delete every queue entry but the current one (all of them when nothing is current)."""
        return await self._call("crop")

    async def set_prio(self, prio: int, positions: Sequence[int]) -> dict[str, Any]:
        return await self._call("set_prio", prio=prio, positions=list(positions))

    async def set_crossfade(self, seconds: int) -> dict[str, Any]:
        return await self._call("set_crossfade", seconds=seconds)

    async def queue_entries(
        self, start: int = 0, end: int | None = None, *, since_version: int | None = None
    ) -> list[tuple[int, int, int, Track]]:
        """``(pos, song_id, prio, track)`` of positions ``[start, end)``, or of those changed after
        queue version ``since_version`` (MPD's ``plchanges``)."""
        return await self._call("queue_entries", start=start, end=end, since_version=since_version)

    @property
    def view(self) -> PlayerView:
        """What the player is doing now, read without a mailbox hop (:class:`PlayerView`).

        The player publishes a new view whenever one of its fields changes, before it answers
        the command that changed it: a caller that got a command's reply reads that command's
        effect here. Other callers may read a change before it is committed (the reply waits
        for the commit; docs/architecture.md, "Persistence").
        """
        return self._view

    async def position_of_id(self, song_id: int) -> int:
        """The queue position of MPD song id ``song_id`` (``RpcError(not_found)`` when it is gone)."""
        return await self._call("position_of_id", song_id=song_id)

    async def set_preset(self, name: str) -> dict[str, Any]:
        return await self._call("set_preset", name=name)

    async def set_intensity(self, value: float) -> dict[str, Any]:
        return await self._call("set_intensity", value=value)

    async def set_volume(self, percent: int) -> dict[str, Any]:
        return await self._call("set_volume", percent=percent)

    async def set_options(self, **flags: bool) -> dict[str, Any]:
        return await self._call("set_options", flags=flags)

    async def refresh_albums(self) -> None:
        """Analyse the queue's albums again where a track changed (after a library scan), in the background."""
        await self._call("refresh_albums")

    async def set_album_mode(self, mode: str) -> dict[str, Any]:
        """``off``, ``track``, ``album`` or ``auto`` (see :func:`auralisd.actors.albums.album_scope`)."""
        return await self._call("set_album_mode", mode=mode)

    async def forget_tracks(self, track_ids: Sequence[int]) -> None:
        """Drop vanished tracks from the queue (after a rescan)."""
        await self._call("forget_tracks", track_ids=set(track_ids))

    async def subscribe(self, max_blocks: int = DEFAULT_SUBSCRIBER_BLOCKS, *, early: bool = False) -> PcmSubscription:
        """Listen to the shared stream: :class:`StreamStart`, :class:`PcmBlock`, :class:`StreamStatus`,
        :class:`StreamEnd` messages on a channel of ``max_blocks`` messages.

        ``early``: receive each block as soon as it is mixed, up to :attr:`lead_s` before its play time
        (a client that buffers at least that much: the web player); otherwise at its play time (an
        output feeding a device's or a server's clock).

        The player never waits for a subscriber: one that lets its channel fill up is
        dropped (channel closed, ``dropped`` True). Leave with ``subscription.close()``.
        """
        return await self._call("subscribe", max_blocks=max_blocks, early=early)

    async def wait_next_ready(self) -> None:
        """Return once the next track's deck is ready for a gapless change (its plan and its first
        chunk), what ``status()["next_ready"]`` reports; at once if it is. Waits as long as that
        takes (there may be no next track yet): bound it with a timeout."""
        ready = trio.Event()
        await self._call("watch_next_ready", ready=ready)
        await ready.wait()

    def statistics(self) -> PlayerStatistics:
        return PlayerStatistics(
            **self._counts, chunk_retries=self._renders.chunk_retries,
            piece_failures=self._renders.piece_failures, underruns=self._clock.underruns, subscribers=len(self._listeners),
            dropped_subscribers=self._listeners.dropped, epoch=self._epoch,
        )

    # ================================================================= actor
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Restore the saved state (playing on, or paused, where it was), then serve until cancelled.

        Saves on exit; a change is committed before its reply is sent (:class:`PlayerStore`).
        """
        await self._restore()
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = self._renders.nursery = nursery
                nursery.start_soon(self._store.run)
                self._prefetch_albums()
                if self._deck is not None:
                    self._start_prepare(self._deck)
                    if self._resume:
                        self._set_state("play")
                        self._request_chunks()
                self._refresh_view()
                task_status.started()
                await self._loop()
        finally:
            self._publish(StreamEnd("shutdown"))
            self._listeners.close()
            await self._store.close()

    async def _loop(self) -> None:
        while True:
            self._refresh_view()  # after every command, report and tick: before any reply leaves
            now = trio.current_time()
            self._follow_listeners(now)
            if self._state == "play" and self._clock.due(now):
                self._tick(now)
                self._wake_next_ready()
                continue
            deadline = min(self._clock.deadline, self._listeners.next_release)
            if deadline == math.inf:  # stopped or paused: no cancel scope to set up per message
                self._dispatch(await self._receive.receive())
                self._wake_next_ready()
                continue
            with trio.move_on_at(deadline):
                message = await self._receive.receive()
                self._dispatch(message)
                self._wake_next_ready()

    def _dispatch(self, message: Any) -> None:
        if isinstance(message, _Call):
            try:
                result = getattr(self, "_cmd_" + message.name)(**message.kwargs)
                answer = (True, result)
            except RpcError as exc:
                answer = (False, exc)
            except Exception as exc:  # a bug in one command: its caller gets the exception (the control
                answer = (False, exc)  # edge logs it once and answers `internal`); playback carries on
            later = answer[1] is STATUS_AFTER_CHANGE
            if self._store.pending:  # acknowledge a change only once it is committed
                self._store.hold(message.reply, self._status_answer if later else answer)
            else:
                send_reply(message.reply, self._status_answer() if later else answer)
        elif isinstance(message, _PlanReady):
            self._on_plan_ready(message)
        elif isinstance(message, RenderReport):
            self._on_render(message)

    # ================================================================= decks
    def _new_deck(self, track: Track, preset: str | None = None, intensity: float | None = None) -> Deck:
        self._deck_ids += 1
        deck = Deck.open(
            self._deck_ids, track, preset or self._preset, self._intensity if intensity is None else intensity,
            in_rate=track.sample_rate, out_rate=self.sample_rate, num_frames=track.num_frames,
            chunk_frames=chunk_frames(track.sample_rate),
        )
        deck.album_mode = self._album_mode
        return deck

    def _decks(self) -> list[Deck]:
        return [d for d in (self._deck, self._fade, self._next) if d is not None]

    def _find_deck(self, deck_id: int) -> Deck | None:
        for deck in self._decks():
            if deck.deck_id == deck_id:
                return deck
        return None

    def _start_prepare(self, deck: Deck) -> None:
        assert self._nursery is not None
        scope = trio.CancelScope()
        deck.prepare = scope
        log.debug("preparing deck %d: %s", deck.deck_id, deck.track.path)
        if deck is self._deck:
            self._publish(StreamStatus("preparing", deck.track.track_id))
        previous_id, next_id = self._neighbours(deck)
        album_args = AlbumArgs(deck.album_mode, self._flags.get("random", False), previous_id, next_id,
                               ALBUM_WAIT_NEXT_S if deck is self._next else ALBUM_WAIT_PLAYHEAD_S)
        self._nursery.start_soon(self._prepare, deck.deck_id, deck.track, deck.preset, deck.intensity, scope, album_args)

    def _neighbours(self, deck: Deck) -> tuple[int | None, int | None]:
        """Track ids before and after the deck's queue entry (queue order: album order needs random off)."""
        index = self._q.next_index(auto=True) if deck is self._next else self._pos
        if index is None or not 0 <= index < len(self._queue):
            return None, None
        before = self._queue[index - 1].track_id if index > 0 else None
        after = self._queue[index + 1].track_id if index + 1 < len(self._queue) else None
        return before, after

    async def _prepare(self, deck_id: int, track: Track, preset: str, intensity: float, scope: trio.CancelScope,
                       album_args: AlbumArgs) -> None:
        with scope:
            planned = await self._planner.plan(track, preset, intensity, album_args)
            await self._send.send(_PlanReady(deck_id, planned.plan, planned.source, planned.album, planned.scope_reason))

    def _on_plan_ready(self, message: _PlanReady) -> None:
        deck = self._find_deck(message.deck_id)
        if deck is None:
            return
        deck.plan = message.plan
        deck.plan_source = message.source
        deck.album = message.album
        deck.scope_reason = message.scope_reason
        log.debug("deck %d: plan ready (%s)", deck.deck_id, message.source)
        deck.prepare = None
        if deck is self._deck or deck is self._fade:
            log.info("%s: %s (%s)", deck.track.path, deck.decision or "planned", deck.scope_reason)
            self._hub.publish("mastering", mastering_event(deck))
        if deck is self._fade:
            self._xfade = None
        self._request_chunks()

    def _request_chunks(self) -> None:
        """Keep every deck's render window fetched; prepare the next track near the end."""
        for deck, playhead in ((self._deck, True), (self._fade, True), (self._next, False)):
            if deck is None:
                continue
            self._renders.schedule(deck, self._out_pos if playhead else 0, self._render_ahead, playhead=playhead)
        deck = self._deck
        if deck is not None and deck.plan is not None and self._state != "stop":
            _, k_hi = deck.window(self._out_pos, self._render_ahead)
            if k_hi >= deck.grid.count - 1:
                self._prepare_next()

    def _on_render(self, report: RenderReport) -> None:
        """A fetch finished: the deck takes it (or retries, or ends where the damage starts)."""
        outcome = self._renders.settle(report)
        deck = report.deck
        if self._find_deck(deck.deck_id) is not deck:
            return
        if outcome is Outcome.CHUNK:
            self._request_chunks()  # the playhead's chunk is here: the look-ahead may start
        if outcome in (Outcome.CHUNK, Outcome.PIECE):
            if deck is self._deck and self._state == "play":
                self._clock.kick(trio.current_time())
        elif outcome is Outcome.BROKEN:
            message = report.message  # a decoder's message names the file already
            if not message.startswith(deck.track.path):
                message = f"{deck.track.path}: {message}"
            self._hub.publish("error", {"code": "bad_audio", "message": message, "source": "player"})
            if deck is self._deck:  # play what can be played; the track ends where the damage starts
                if self._state == "play":
                    self._clock.kick(trio.current_time())
            elif deck is self._fade:
                deck.close()
                self._fade = None
                self._xfade = None
            elif deck is self._next:
                deck.close()
                self._next = None

    def _prepare_next(self) -> None:
        index = self._q.next_index(auto=True)
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
        n0 = self._out_pos
        n1 = min(n0 + block_frames(self.sample_rate), deck.end_frame)
        if n1 <= n0:  # the end of the track, or where a chunk that cannot be rendered starts
            self._advance(auto=True, skip=deck.end_frame < deck.out_frames)
            return
        samples = deck.frames(n0, n1) if deck.plan is not None else None
        if samples is None:
            self._clock.stall(now)
            return
        if self._clock.recover(now):
            self._publish(StreamStatus("ready", deck.track.track_id))
        samples = self._crossfade(samples, n0, n1)
        samples = self._track_crossfade(samples, n0, n1)
        deck = self._deck  # the crossfade may have swapped decks
        assert deck is not None
        samples = self._ramp.apply(samples, volume_gain(self._volume))
        samples = np.array(samples, dtype=np.float32)  # its own copy: subscribers never share a chunk
        play_at = self._clock.play_time
        self._announce(deck, n0, now, play_at)
        self._listeners.publish(PcmBlock(self._epoch, n0, samples, deck.track.track_id), now=now, play_at=play_at)
        self._sent_epoch = self._epoch
        self._counts["blocks_sent"] += 1
        self._clock.sent(now, n1 - n0)
        self._out_pos = n1
        self._request_chunks()

    def _track_crossfade(self, samples: np.ndarray, n0: int, n1: int) -> np.ndarray:
        """MPD's crossfade: the end of the track fades into the prepared next one. It starts only
        when the next track's deck holds the whole fade at its start (else the change stays gapless)."""
        deck, nxt = self._deck, self._next
        if self._crossfade_s <= 0 or deck is None or nxt is None or nxt.plan is None or self._fade is not None:
            self._track_xfade = None
            return samples
        span = track_crossfade_span(deck.end_frame, nxt.out_frames, self._crossfade_s, self.sample_rate)
        if span is None:
            return samples
        start, length = span
        if n1 <= start:
            return samples
        a = max(n0, start)
        if self._track_xfade is None:
            if a != start or nxt.frames(0, length) is None:
                return samples
            self._track_xfade = length
        new = nxt.frames(a - start, n1 - start)
        if new is None:
            return samples
        out = np.array(samples, dtype=np.float32)
        out[a - n0 :] = track_crossfade_mix(out[a - n0 :], new, a - start, length)
        return out

    def _crossfade(self, samples: np.ndarray, n0: int, n1: int) -> np.ndarray:
        fade = self._fade
        if fade is None or fade.plan is None:
            return samples
        new = fade.frames(n0, n1)
        if new is None:
            return samples
        if self._xfade is None:
            self._xfade = Crossfade(crossfade_frames(self.sample_rate))
            self._counts["crossfades"] += 1
            self._epoch += 1
            self._continuous_epoch = self._epoch  # the new plan's audio goes on from the old one's
        out = self._xfade.mix(samples, new)
        if self._xfade.done:
            old = self._deck
            self._deck = fade
            self._fade = None
            self._xfade = None
            if old is not None:
                old.close()
        return out

    def _announce(self, deck: Deck, offset: int, now: float, play_at: float) -> None:
        follows = self._sent_epoch if self._continuous_epoch == self._epoch != self._sent_epoch else None
        epoch, plan, decision = self._epoch, deck.plan, deck.decision  # as they are now: it may be built later
        self._listeners.announce(epoch, lambda: StreamStart(
            epoch=epoch, offset_frames=offset, sample_rate=self.sample_rate, channels=2,
            track=deck.track.to_wire(), preset=deck.preset, intensity=deck.intensity,
            plan=None if plan is None else plan.to_dict(), decision=decision,
            follows_epoch=follows, lead_s=self.lead_s,
        ), now=now, play_at=play_at)

    def _publish(self, message: Any) -> None:
        """A record (status, end) to every listener, after the blocks before it (on-time ones: when those play)."""
        self._listeners.publish(message, now=trio.current_time())

    def _follow_listeners(self, now: float) -> None:
        """Hand the on-time listeners what is due by ``now``; mix ahead by the lead while an early one listens.

        Without early listeners the lead is 0 (an output alone hears a preset or volume change as soon as
        before); the first early one to come makes the clock mix the lead at once, for it alone (the on-time
        ones still get each block at its play time), and when the last one leaves the clock just waits."""
        self._listeners.release(now)
        lead = self.lead_s if self._listeners.has_early else 0.0
        if lead != self._clock.lead_s:
            self._clock.lead_s = lead
            self._clock.max_late_s = lead + MAX_LATE_S  # late means: MAX_LATE_S past a block's play time

    def _jump(self) -> None:
        """The audio jumps (seek, a track chosen by a command): a new schedule from now; what was mixed ahead
        of it for the on-time listeners is never played."""
        now = trio.current_time()
        self._listeners.cut(now)
        self._clock.retime(now)
        if self._state == "play":
            self._clock.start(now)

    def _heard_frames(self) -> int:
        """The playhead as heard (``_out_pos`` runs up to the lead ahead of it while playing)."""
        if self._state != "play" or not self._clock.running or self._clock.stalled:
            return self._out_pos
        anchor_time, since = self._clock.origin
        heard = self._out_pos - since + int((trio.current_time() - anchor_time) * self.sample_rate)
        return max(0, min(self._out_pos, heard))

    # ================================================================= transitions
    def _new_epoch(self) -> None:
        self._epoch += 1
        self._clock.new_epoch()

    def _set_state(self, state: str, *, reason: str | None = None) -> None:
        if state == self._state:
            return
        previous = self._state
        self._state = state
        if state == "play":
            self._clock.resume(trio.current_time())  # after what was sent before a pause, if it still plays
            self._new_epoch()
        else:
            self._clock.stop()
            if previous == "play":
                self._publish(StreamEnd(reason or ("paused" if state == "pause" else "stopped")))
                self._sent_epoch = None
        self._store.changed()
        self._publish_player()

    def _publish_player(self) -> None:
        self._hub.publish("player", player_event(
            state=self._state, queue_pos=self._pos, deck=self._deck, elapsed_s=self._out_pos / self.sample_rate,
            epoch=self._epoch,
        ))

    def _load(self, index: int | None, *, out_pos: int = 0, auto: bool = False, continues: bool = False) -> None:
        """Make queue entry ``index`` the current track (reusing a prepared deck when it fits)."""
        for deck in (self._deck, self._fade):
            if deck is not None and deck is not self._next:
                deck.close()
        self._fade = None
        self._xfade = None
        self._deck = None
        self._q.set_current(index)
        self._out_pos = out_pos
        self._new_epoch()
        self._store.changed()
        if not continues:
            self._jump()
        elif self._state == "play":  # the end of a track: the next one plays right after what was sent
            self._clock.resume(trio.current_time())
        if index is None:
            return
        track = self._queue[index]
        nxt = self._next
        self._next = None
        if nxt is not None and nxt.track.track_id == track.track_id and (nxt.preset, nxt.intensity, nxt.album_mode) == (
            self._preset,
            self._intensity,
            self._album_mode,
        ):
            self._deck = nxt
            if auto:
                ready = nxt.plan is not None and nxt.has_chunk0()
                self._counts["gapless_ready" if ready else "gapless_late"] += 1
            if nxt.plan is None:
                self._publish(StreamStatus("preparing", track.track_id))
            else:  # planned ahead: its decision event is published now that it plays
                self._hub.publish("mastering", mastering_event(nxt))
        else:
            if nxt is not None:
                nxt.close()
            if auto:
                self._counts["gapless_late"] += 1
            self._deck = self._new_deck(track)
            self._start_prepare(self._deck)
        self._request_chunks()

    def _advance(self, *, auto: bool, skip: bool = False) -> None:
        """Move to the next track (end of track, ``next``, or a track that cannot play)."""
        step = self._q.advance(auto=auto, skip=skip)
        if step.consumed:
            self._store.changed()
            self._publish_queue()
        if step.index is None:
            self._load(None, continues=auto)  # the end of the queue: what was sent still plays
            self._set_state("stop", reason="end_of_queue")
            self._publish_player()
            return
        mixed, self._track_xfade = self._track_xfade, None
        nxt = self._next
        if mixed is None or nxt is None or self._queue[step.index].track_id != nxt.track.track_id:
            mixed = 0
        # a crossfade already played its start; at the end of a track the next one goes on from it
        self._load(step.index, auto=auto and not skip, out_pos=mixed, continues=auto)
        if auto:  # the end of the track (or where its damage starts): the next one follows with no gap
            self._continuous_epoch = self._epoch
        self._publish_player()

    def _publish_queue(self) -> None:
        self._hub.publish("queue", {"length": len(self._queue), "current": self._pos})

    def _next_is_ready(self) -> bool:
        return self._next is not None and self._next.plan is not None and self._next.has_chunk0()

    def _wake_next_ready(self) -> None:
        if self._next_ready_waiters and self._next_is_ready():
            for ready in self._next_ready_waiters:
                ready.set()
            self._next_ready_waiters.clear()

    # ================================================================= commands (run inside the actor)
    def _cmd_watch_next_ready(self, ready: trio.Event) -> None:
        self._next_ready_waiters.append(ready)  # _loop sets it (at once if the next track is ready now)

    def _status_answer(self) -> tuple[bool, Any]:
        return True, self._cmd_status()

    def _cmd_status(self) -> dict[str, Any]:
        result = status(
            state=self._state, queue_pos=self._pos, queue_length=len(self._queue), deck=self._deck,
            elapsed_s=self._heard_frames() / self.sample_rate, preset=self._preset, intensity=self._intensity,
            volume=self._volume, flags=self._flags, album_mode=self._album_mode, stalled=self._stalled,
            next_ready=None if self._next is None else self._next_is_ready(), epoch=self._epoch,
            sample_rate=self.sample_rate, statistics=self.statistics().to_wire(),
        )
        # MPD's view of the queue (app/mpd): song ids, the next entry, the queue version, crossfade
        next_pos = self._q.next_index(auto=True) if self._pos is not None else None
        result.update(
            song_id=None if self._pos is None else self._q.ids[self._pos], next_pos=next_pos,
            next_song_id=None if next_pos is None else self._q.ids[next_pos], queue_version=self._q.version,
            crossfade_s=self._crossfade_s,
        )
        return result

    def _cmd_play(self, pos: int | None) -> StatusAfterChange:
        if pos is not None:
            self._check_pos(pos)
            if pos != self._pos or self._deck is None:
                self._q.remember_current()
                self._load(pos)
            else:
                self._seek_to(0)
        elif self._deck is None:
            if not self._queue:
                raise RpcError(NOT_FOUND, "the queue is empty")
            self._load(self._pos if self._pos is not None else self._q.next_index(auto=False))
        self._set_state("play")
        self._request_chunks()
        return STATUS_AFTER_CHANGE

    def _cmd_pause(self) -> StatusAfterChange:
        if self._state == "play":
            self._set_state("pause")
        return STATUS_AFTER_CHANGE

    def _cmd_toggle(self) -> StatusAfterChange:
        return self._cmd_pause() if self._state == "play" else self._cmd_play(None)

    def _cmd_stop(self) -> StatusAfterChange:
        if self._state != "stop":
            self._set_state("stop")
        self._out_pos = 0
        self._request_chunks()
        return STATUS_AFTER_CHANGE

    def _cmd_next(self) -> StatusAfterChange:
        if self._deck is None and self._pos is None:
            raise RpcError(NOT_FOUND, "nothing is playing")
        self._advance(auto=False)
        return STATUS_AFTER_CHANGE

    def _cmd_previous(self) -> StatusAfterChange:
        if self._pos is None:
            raise RpcError(NOT_FOUND, "nothing is playing")
        if self._out_pos / self.sample_rate > PREVIOUS_RESTARTS_AFTER_S:
            self._seek_to(0)
            return STATUS_AFTER_CHANGE
        self._load(self._q.previous_index())
        self._publish_player()
        return STATUS_AFTER_CHANGE

    def _cmd_seek(self, position_s: float) -> StatusAfterChange:
        if self._deck is None:
            raise RpcError(NOT_FOUND, "nothing to seek in")
        if not math.isfinite(position_s) or position_s < 0:
            raise RpcError(INVALID_PARAMS, "position_s must be a finite number >= 0")
        self._seek_to(position_s)
        if self._state == "stop":
            self._set_state("pause")
        return STATUS_AFTER_CHANGE

    def _seek_to(self, position_s: float) -> None:
        deck = self._deck
        assert deck is not None
        self._out_pos = min(int(round(position_s * self.sample_rate)), max(deck.out_frames - 1, 0))
        self._new_epoch()
        self._xfade = None
        self._jump()
        self._store.changed()
        self._request_chunks()
        self._publish_player()

    def _check_pos(self, pos: int) -> None:
        try:
            self._q.check(pos)
        except QueueError as exc:
            raise RpcError(NOT_FOUND, str(exc)) from None

    def _cmd_add(self, tracks: list[Track], pos: int | None) -> list[dict[str, int]]:
        try:
            pos = self._q.add(tracks, pos)
        except QueueError as exc:
            raise RpcError(NOT_FOUND, str(exc)) from None
        self._store.changed()
        self._invalidate_next()
        self._publish_queue()
        self._prefetch_albums()
        return [{"pos": pos + i, "track_id": t.track_id} for i, t in enumerate(tracks)]

    def _invalidate_next(self) -> None:
        if self._next is not None:
            index = self._q.next_index(auto=True)
            if index is None or self._queue[index].track_id != self._next.track.track_id:
                self._next.close()
                self._next = None
        self._request_chunks()

    def _cmd_delete(self, positions: list[int]) -> dict[str, Any]:
        for p in positions:
            self._check_pos(p)
        removing_current = self._q.delete(positions)
        self._store.changed()
        if removing_current:
            was = self._state
            self._load(self._pos)
            if self._pos is None:
                self._set_state("stop")
            elif was == "play":
                self._clock.start(trio.current_time())
            self._publish_player()
        self._invalidate_next()
        self._publish_queue()
        return {"queue_length": len(self._queue)}

    def _cmd_move(self, from_pos: int, to_pos: int) -> dict[str, Any]:
        self._check_pos(from_pos)
        self._check_pos(to_pos)
        self._q.move(from_pos, to_pos)
        self._store.changed()
        self._invalidate_next()
        self._publish_queue()
        return {"queue_length": len(self._queue)}

    def _cmd_clear(self) -> dict[str, Any]:
        self._q.clear()
        if self._next is not None:
            self._next.close()
            self._next = None
        self._load(None)
        self._set_state("stop")
        self._store.changed()
        self._publish_queue()
        self._publish_player()
        return {"queue_length": 0}

    def _cmd_forget_tracks(self, track_ids: set[int]) -> None:
        positions = [i for i, t in enumerate(self._queue) if t.track_id in track_ids]
        if positions:
            self._cmd_delete(positions)

    def _queue_edited(self) -> dict[str, Any]:
        self._store.changed()
        self._invalidate_next()
        self._publish_queue()
        return {"queue_length": len(self._queue), "queue_version": self._q.version}

    def _cmd_shuffle(self, start: int, end: int | None) -> dict[str, Any]:
        try:
            self._q.shuffle(start, end)
        except QueueError as exc:
            raise RpcError(NOT_FOUND, str(exc)) from None
        return self._queue_edited()

    def _cmd_swap(self, a: int, b: int) -> dict[str, Any]:
        self._check_pos(a)
        self._check_pos(b)
        self._q.swap(a, b)
        return self._queue_edited()

    def _cmd_crop(self) -> dict[str, Any]:
        positions = self._q.crop_positions() if self._deck is not None else list(range(len(self._queue)))
        if positions:
            return self._cmd_delete(positions)
        return {"queue_length": len(self._queue)}

    def _cmd_set_prio(self, prio: int, positions: list[int]) -> dict[str, Any]:
        try:
            self._q.set_prio(prio, positions)
        except QueueError as exc:
            raise RpcError(INVALID_PARAMS if positions and all(0 <= p < len(self._queue) for p in positions)
                           else NOT_FOUND, str(exc)) from None
        return self._queue_edited()

    def _cmd_set_crossfade(self, seconds: int) -> StatusAfterChange:
        self._crossfade_s = max(0, int(seconds))
        self._store.changed()
        self._hub.publish("options", self._options_event())
        return STATUS_AFTER_CHANGE

    def _cmd_queue_entries(
        self, start: int, end: int | None, since_version: int | None
    ) -> list[tuple[int, int, int, Track]]:
        q = self._q
        positions = (
            range(start, min(len(q), len(q) if end is None else end)) if since_version is None
            else q.changes_since(since_version)
        )  # fmt: skip
        return [(p, q.ids[p], q.prios[p], q.entries[p]) for p in positions]

    # ================================================================= the published view
    def _refresh_view(self) -> None:
        """Publish a new :class:`PlayerView` if anything it shows changed (cheap when nothing did:
        the run loop calls it after every command, task report and clock tick)."""
        q = self._q
        pos = q.pos
        deck = self._deck
        clock = self._clock
        rate = self.sample_rate
        moving = self._state == "play" and deck is not None and clock.running and not clock.stalled
        if moving:
            anchor_time, frames_since = clock.origin
            position_s = (self._out_pos - frames_since) / rate
        else:
            anchor_time, position_s = 0.0, self._out_pos / rate
        next_pos = q.next_index(auto=True) if pos is not None else None
        flags = q.flags
        key = (
            self._state, self._volume, flags["repeat"], flags["random"], flags["single"], flags["consume"],
            self._crossfade_s, self._album_mode, q.version, len(q.entries), pos, next_pos,
            None if pos is None else q.prios[pos], None if deck is None else deck.deck_id,
            None if deck is None else deck.end_frame, position_s, anchor_time, moving,
        )  # fmt: skip
        if key == self._view_key:
            return
        self._view_key = key
        self._view_version += 1
        self._view = PlayerView(
            version=self._view_version, state=self._state, volume=self._volume,
            repeat=flags["repeat"], random=flags["random"], single=flags["single"], consume=flags["consume"],
            crossfade_s=self._crossfade_s, album_mode=self._album_mode, queue_version=q.version,
            queue_length=len(q.entries), queue_pos=pos, song_id=None if pos is None else q.ids[pos],
            prio=0 if pos is None else q.prios[pos], entry=None if pos is None else q.entries[pos],
            track=None if deck is None else deck.track, end_s=0.0 if deck is None else deck.end_frame / rate,
            next_pos=next_pos, next_song_id=None if next_pos is None else q.ids[next_pos], sample_rate=rate,
            position_s=position_s, anchor_time=anchor_time, moving=moving,
        )  # fmt: skip

    def _cmd_position_of_id(self, song_id: int) -> int:
        try:
            return self._q.index_of_id(song_id)
        except QueueError as exc:
            raise RpcError(NOT_FOUND, str(exc)) from None

    def _cmd_queue_list(self) -> dict[str, Any]:
        return queue_items(self._queue, self._pos)

    def _cmd_set_preset(self, name: str) -> StatusAfterChange:
        self._preset = name
        self._replan()
        return STATUS_AFTER_CHANGE

    def _cmd_set_intensity(self, value: float) -> StatusAfterChange:
        self._intensity = float(value)
        self._replan()
        return STATUS_AFTER_CHANGE

    def _replan(self) -> None:
        """Crossfade to the new preset/intensity at the playhead as soon as its chunk is rendered."""
        self._store.changed()
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
        self._xfade = None
        if (deck.preset, deck.intensity, deck.album_mode) == (self._preset, self._intensity, self._album_mode):
            self._fade = None
            return
        self._fade = self._new_deck(deck.track)
        self._start_prepare(self._fade)

    def _cmd_set_volume(self, percent: int) -> StatusAfterChange:
        self._volume = int(percent)
        self._store.changed()
        self._hub.publish("volume", {"volume": self._volume})
        return STATUS_AFTER_CHANGE

    def _cmd_set_options(self, flags: dict[str, bool]) -> StatusAfterChange:
        try:
            self._q.set_flags(flags)
        except QueueError as exc:
            raise RpcError(INVALID_PARAMS, str(exc)) from None
        self._store.changed()
        self._invalidate_next()
        self._hub.publish("options", self._options_event())
        return STATUS_AFTER_CHANGE

    def _cmd_set_album_mode(self, mode: str) -> StatusAfterChange:
        if mode not in ALBUM_MODES:
            raise RpcError(INVALID_PARAMS, f"album mode must be one of {', '.join(ALBUM_MODES)}")
        self._album_mode = mode
        self._replan()  # the playing track crossfades to its new plan; the next one is planned again
        self._prefetch_albums()
        return STATUS_AFTER_CHANGE

    def _cmd_refresh_albums(self) -> None:
        self._prefetch_albums()

    def _prefetch_albums(self) -> None:
        """Analyse the albums of the queue (from the playhead on) in the background, before any other."""
        if self._albums is None or self._album_mode == "off" or self._nursery is None or not self._queue:
            return
        start = self._pos or 0
        tracks = self._queue[start : start + ALBUM_PREFETCH_ENTRIES]
        self._nursery.start_soon(self._prefetch_task, self._albums, list(tracks))

    @staticmethod
    async def _prefetch_task(albums: AlbumPlans, tracks: list[Track]) -> None:
        seen: set[str] = set()
        found = []
        for track in tracks:
            key = album_key_of(track)
            if key in seen:
                continue
            seen.add(key)
            album = await albums.album_of(track)
            if album is not None:
                found.append(album)
        albums.prefer(found)

    def _options_event(self) -> dict[str, Any]:
        return {**options_event(self._flags, preset=self._preset, intensity=self._intensity, album_mode=self._album_mode),
                "crossfade_s": self._crossfade_s}

    def _cmd_subscribe(self, max_blocks: int, early: bool) -> PcmSubscription:
        sub = self._listeners.add(max_blocks, early=early)
        if self._deck is not None:
            state = mastering_status(self._deck, stalled=self._stalled)
            self._listeners.send(sub, StreamStatus(state or "preparing", self._deck.track.track_id))
        return sub

    # ================================================================= persistence (PlayerStore)
    def _snapshot(self) -> dict[str, Any]:
        return {
            "state": self._state,
            "queue_pos": self._pos,
            "elapsed_s": self._heard_frames() / self.sample_rate,
            "preset": self._preset,
            "intensity": self._intensity,
            "volume": self._volume,
            "album_mode": self._album_mode,
            "crossfade_s": self._crossfade_s,
            "current_song_id": None if self._pos is None else self._q.ids[self._pos],
            "next_song_id": self._q.next_id,  # ids are not handed out twice, across restarts too
            **self._flags,
        }

    async def _restore(self) -> None:
        from auralis.plan import plan_mastering  # noqa: F401  (fail at start, not at the first play)

        restored = await load_saved(self._db)
        saved = restored.state
        self._q.restore(restored.queue, restored.next_song_id())  # song ids and priorities as they were
        crossfade = saved.get("crossfade_s", 0)
        self._crossfade_s = crossfade if isinstance(crossfade, int) and crossfade >= 0 else 0
        self._preset = str(saved.get("preset", self._preset))
        self._intensity = float(saved.get("intensity", self._intensity))
        self._volume = int(saved.get("volume", self._volume))
        if not self._album_mode_explicit and saved.get("album_mode") in ALBUM_MODES:
            self._album_mode = str(saved["album_mode"])
        self._gain = volume_gain(self._volume)
        for key in self._flags:
            self._flags[key] = bool(saved.get(key, False))
        pos = restored.queue_pos()
        if pos is not None:
            self._pos = pos
            self._deck = self._new_deck(self._queue[pos])
            self._out_pos = min(int(round(restored.elapsed_s() * self.sample_rate)), max(self._deck.out_frames - 1, 0))
            self._state = "pause" if saved.get("state") in ("play", "pause") else "stop"
            self._resume = saved.get("state") == "play" and not self._restore_paused
            if self._state == "stop":
                self._out_pos = 0
        self._reset_order()
        log.info(
            "restored: %d queued, %s at %.1f s", len(self._queue), "playing on" if self._resume else self._state,
            self._out_pos / self.sample_rate,
        )

