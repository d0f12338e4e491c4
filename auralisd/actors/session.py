"""A private ``/session`` as an actor over the playback core: one track at a time, mastered with its own
settings through the daemon's shared pool and chunk cache, independent of the shared player.

The same kind of actor as the shared player, over the same core (:mod:`auralisd.playback`): each deck is
a core :class:`~auralisd.playback.Deck` (the same windows, priorities, fast-start pieces, retries and
bounded memory), a preset or intensity change crossfades with the one
:class:`~auralisd.playback.Crossfade`, the real-time pace is the core's :class:`~auralisd.playback.Clock`
(``lead_s`` = :data:`REALTIME_LEAD_S`), and the A/B original comes through the same cached chunk path
(``plan=None``), so closing a session or changing preset never kills a worker. Chunks arrive at the
output rate: the session slices, fades and scales, nothing more.

What the session says goes to a :class:`SessionSink` (the transport turns it into bytes); the commands it
obeys come through :meth:`PrivateSession.submit_nowait` (parsed by the transport). ``pace`` is
``realtime`` (audio leaves at most :data:`REALTIME_LEAD_S` ahead of its play time) or ``burst`` (as fast
as the pool renders; flow control is the sink's backpressure).

Epochs: a new ``stream_epoch`` starts at every seek and preset/intensity change, and ``audio_stream_start``
precedes its first audio. A preset/intensity change starts its epoch exactly at the next unsent frame
(no gap, no repeat) and crossfades from the old plan to the new one over
:data:`~auralisd.playback.mixer.CROSSFADE_S`, so it never clicks.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple, Protocol

import numpy as np
import trio

from ..errors import INVALID_PARAMS, UNKNOWN_PRESET, RpcError
from ..playback import Clock, Crossfade, Deck
from ..playback.deck import output_frames
from ..playback.mixer import crossfade_frames, db_gain, scale
from ..protocol.audio_frames import SessionCommand, frames_per_message
from .renders import DeckRenders, Outcome, RenderReport

log = logging.getLogger("auralisd.sessions")

SESSION_FRAME_S: Final = 0.1  # /session frames (issue 5 allows 20-100 ms; fewer messages per second)
REALTIME_LEAD_S: Final = 0.5  # realtime pace: audio leaves up to this far ahead of its play time
RENDER_AHEAD_CHUNKS: Final = 2  # chunks rendered ahead of the one being sent, per private session
COMMAND_BUFFER: Final = 16  # pending commands (each ~100 B); a flood beyond is the transport's to refuse
OPUS_THREADS: Final = 2  # Opus encodes running at once, daemon-wide (one per core); never on the event loop
OPUS_BITRATE_BPS: Final = 160_000  # ?format=opus: ~165 kbit/s on the wire against 2822 kbit/s for f32 at 44.1 kHz


class SinkClosed(Exception):
    """Raised by a :class:`SessionSink` when its peer is gone or broke a rule: the session ends."""


class SessionSink(Protocol):
    """Where a private session's output goes (the transport's adapter). Each method may raise
    :class:`SinkClosed`; any other exception is a bug."""

    async def event(self, kind: str, **fields: Any) -> None:
        """A JSON event (``mastering_status``, ``audio_stream_start`` ...)."""

    async def decision(self, track_wire: dict[str, Any], plan: Any, inputs: Any) -> None:
        """The ``lwrp_decision`` for a new plan (presentation is the app's)."""

    async def audio(self, epoch: int, offset_frames: int, samples: np.ndarray) -> None:
        """Output-rate float32 ``(frames, 2)`` audio of ``epoch`` at ``offset_frames``."""

    async def error(self, exc: BaseException) -> None:
        """An expected failure of a command or a render, for the client (``audio_stream_error``)."""


def original_gain_db(plan: Any) -> float:
    """Level match for the A/B original, never above the true-peak ceiling (``MasteringPlan.original_gain_db``)."""
    return float(plan.original_gain_db)


@dataclass(frozen=True)
class PreparedTrack:
    """Everything a private session needs to stream one track: its output-rate geometry."""

    track: Any  # auralisd.actors.database.Track
    inputs: Any  # PlanInputs / Fingerprint, or None (neutral plan)
    num_frames: int  # at the output rate
    sample_rate: int  # output rate
    chunk_frames: int  # render chunk length, at the track's own rate

    @property
    def wire(self) -> dict[str, Any]:
        return self.track.to_wire()


class SessionBackend:
    """What private sessions use of the daemon: tracks, fingerprints, plans, chunk renders.

    Renders go through the daemon's :class:`~auralisd.actors.mastering.Mastering` facade, so sessions
    share the worker pool and the chunk cache with the shared player; chunks arrive at the output rate.
    """

    def __init__(self, db: Any, resolver: Any, mastering: Any, *, sample_rate: int,
                 opus_bitrate_bps: int = OPUS_BITRATE_BPS) -> None:
        self.db = db
        self.resolver = resolver
        self.mastering = mastering
        self.sample_rate = sample_rate
        self.opus_bitrate_bps = opus_bitrate_bps
        self.opus_limiter = trio.CapacityLimiter(OPUS_THREADS)  # shared by /stream and every /session

    def ticket(self) -> int | None:
        """A place in the pool's line, taken when a command arrives (its renders keep it)."""
        seq = self.mastering.ticket().seq
        return seq if isinstance(seq, int) else None

    def opus_encoder(self) -> Any:
        """A new live Opus encoder at the output rate (``auralis.opus.OpusEncoder``; resamples to 48 kHz)."""
        from auralis.opus import OpusEncoder

        return OpusEncoder(self.sample_rate, 2, bitrate_bps=self.opus_bitrate_bps)

    async def encode(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run an Opus framer call on a thread (it is DSP: never on the event loop), at most
        :data:`OPUS_THREADS` at once. Cancellation: waits for the call (a few ms) to finish."""
        return await trio.to_thread.run_sync(fn, *args, limiter=self.opus_limiter)

    async def track(self, track_id: int) -> Any:
        from ..errors import NOT_FOUND

        track = await self.db.get_track(track_id)
        if track is None:
            raise RpcError(NOT_FOUND, f"no track with id {track_id}")
        return track

    async def plan_inputs(self, track: Any) -> tuple[Any, str]:
        """``(inputs or None, source)``; None means analysis failed (neutral plan)."""
        resolved = await self.resolver.plan_inputs(track)
        if resolved is None:
            return None, "failed"
        return resolved.value, resolved.source

    def is_known(self, track: Any) -> bool:
        """Whether the fingerprint is already in the resolver's memory (no analysis expected)."""
        return bool(self.resolver.remembers(track))

    def plan(self, inputs: Any, preset: str, intensity: float) -> Any:
        from auralis.plan import plan_mastering

        return plan_mastering(inputs, preset, intensity)

    def prepare(self, track: Any, inputs: Any) -> PreparedTrack:
        from .mastering import chunk_frames

        n = chunk_frames(int(track.sample_rate))
        out_frames = output_frames(int(track.sample_rate), self.sample_rate, int(track.num_frames))
        return PreparedTrack(track, inputs, out_frames, self.sample_rate, n)


class DeckSource:
    """One (track, plan, variant) at the output rate: a playback :class:`~auralisd.playback.Deck` whose
    fetches run in the session's nursery through the one render-ahead machinery
    (:class:`~auralisd.actors.renders.DeckRenders`, the shared player's too).

    The deck decides what is wanted (the playhead's chunk, fast-start pieces while it is missing,
    ``RENDER_AHEAD_CHUNKS`` of look-ahead) and drops what the playhead left behind, so a session holds
    a bounded number of chunks whatever the seeks. The original (A/B) variant renders on the same cached
    path with no plan; its level match is applied here as a gain. :meth:`read` is cancel-safe.
    """

    def __init__(self, backend: SessionBackend, prepared: PreparedTrack, plan: Any, variant: str,
                 nursery: trio.Nursery, *, asked: int | None = None) -> None:
        self.prepared = prepared
        self.plan = plan
        original = variant == "original"
        track = prepared.track
        preset, intensity = ("original", 0.0) if plan is None else (plan.preset, plan.intensity)
        self.deck = Deck.open(0, track, preset, intensity, in_rate=int(track.sample_rate),
                              out_rate=prepared.sample_rate, num_frames=int(track.num_frames),
                              chunk_frames=prepared.chunk_frames, original=original)
        self.deck.plan = plan
        self._renders = DeckRenders(backend.mastering, prepared.sample_rate, self._settle, nursery)
        self._gain = db_gain(original_gain_db(plan)) if original and plan is not None else 1.0
        self._arrived = trio.Event()
        self._error: BaseException | None = None
        self.asked = asked  # the pool ticket of the command that started this read (its head start keeps it)

    def close(self) -> None:
        """Cancel the renders this source waits for (the mastering actor may still finish them)."""
        self.deck.close()

    async def _settle(self, report: RenderReport) -> None:
        """A fetch finished (in the session's nursery: the session owns this deck)."""
        if self._renders.settle(report) is Outcome.BROKEN:
            self._error = report.error
        self._arrived.set()
        self._arrived = trio.Event()

    def ready(self, out_start: int, out_stop: int) -> bool:
        """Whether :meth:`read` would return at once (every frame it needs is rendered)."""
        return self.deck.frames(out_start, out_stop) is not None

    async def read(self, out_start: int, out_stop: int) -> np.ndarray:
        """Output-rate frames ``[out_start, out_stop)`` as float32 ``(frames, 2)``: slices, no DSP."""
        while True:
            if self._renders.schedule(self.deck, out_start, RENDER_AHEAD_CHUNKS, playhead=True, asked=self.asked):
                self.asked = None  # the head start is asked for; later fetches take their own tickets
            block = self.deck.frames(out_start, out_stop)
            if block is not None:
                return scale(block, self._gain)
            if self._error is not None and self.deck.broken_from is not None \
                    and self.deck.grid.start(self.deck.broken_from) < out_stop:
                raise self._error
            await self._arrived.wait()


class _Asked(NamedTuple):
    """A command and its place in the pool's line (:meth:`SessionBackend.ticket`, taken on arrival)."""

    command: SessionCommand
    asked: int | None


@dataclass
class _Playback:
    """The state of a private session's current track."""

    prepared: PreparedTrack
    source: DeckSource
    preset: str
    intensity: float
    pace: str
    epoch: int
    position: int  # next frame offset to send
    playing: bool = True
    paused: bool = False  # by the client (a seek or preset change keeps it paused)
    fade_from: DeckSource | None = None  # old plan, crossfaded out at the start of this epoch
    fade_start: int = 0
    clock: Clock = field(default_factory=lambda: Clock(1))  # realtime pace (the playback core's clock policy)
    started_sent: bool = False


class PrivateSession:
    """One private session: a state machine over the playback core, one track at a time.

    Start with ``await session.run()`` (it returns when the sink closes or the session is cancelled);
    feed it commands with :meth:`submit_nowait`.
    """

    def __init__(self, backend: SessionBackend, sink: SessionSink, *, variant: str = "mastered",
                 fmt: str = "f32", arrival: int | None = None) -> None:
        self._backend = backend
        self._arrival = arrival  # the place in line taken when the connection was accepted: the first command's
        self._sink = sink
        self._variant = variant
        self._fmt = fmt  # only reported in audio_stream_start (the transport encodes)
        self._commands_send, self._commands = trio.open_memory_channel[_Asked](COMMAND_BUFFER)
        self._pending: list[_Asked] = []  # received by a race, applied next
        self._epoch = 0
        self._playback: _Playback | None = None
        self._nursery: trio.Nursery | None = None
        self.frames_sent = 0

    def submit_nowait(self, command: SessionCommand) -> None:
        """Queue a command. Raises ``trio.WouldBlock`` when :data:`COMMAND_BUFFER` are pending (a flood).

        The command takes its place in the pool's line now (:meth:`SessionBackend.ticket`): the renders
        it starts (a play's, a seek's, a preset change's head start) are served before those of equal
        priority asked for after it, whatever order the sessions' tasks then run in. The session's
        first command takes the place its connection got when it was accepted (``arrival``, a ticket
        of the same line) instead: sessions accepted in one batch read their first commands in any
        order, and are served in the order they connected.
        """
        asked = self._arrival if self._arrival is not None else self._backend.ticket()
        self._arrival = None
        self._commands_send.send_nowait(_Asked(command, asked))

    @property
    def held_bytes(self) -> int:
        """Audio held by this session's decks (bounded whatever the seeks)."""
        pb = self._playback
        if pb is None:
            return 0
        return pb.source.deck.held_bytes() + (0 if pb.fade_from is None else pb.fade_from.deck.held_bytes())

    async def run(self) -> None:
        """Serve until the sink closes (:class:`SinkClosed` propagates) or the caller cancels."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await self._command_loop()
        finally:
            self._close_playback()

    async def _race(self, fn: Callable[[], Awaitable[Any]]) -> tuple[bool, Any]:
        """Run ``fn`` unless a command arrives first: ``(True, result)``, or ``(False, None)`` when a command
        arrived (it waits in ``self._pending``; a result finished in the same instant is dropped, never the
        command)."""
        outcome: list[Any] = []
        failure: list[Exception] = []
        async with trio.open_nursery() as nursery:
            async def work() -> None:
                try:
                    outcome.append(await fn())
                except Exception as exc:  # re-raised below, outside the nursery (no ExceptionGroup)
                    failure.append(exc)
                nursery.cancel_scope.cancel()

            async def command() -> None:
                self._pending.append(await self._commands.receive())
                nursery.cancel_scope.cancel()

            nursery.start_soon(work)
            nursery.start_soon(command)
        if self._pending:
            return False, None
        if failure:
            raise failure[0]
        return True, outcome[0]

    # ------------------------------------------------------------------------------ state machine
    async def _command_loop(self) -> None:
        while True:
            if self._pending:
                await self._apply(*self._pending.pop(0))
                continue
            pb = self._playback
            if pb is None or not pb.playing:
                await self._apply(*await self._commands.receive())
                continue
            try:
                await self._apply(*self._commands.receive_nowait())
                continue
            except trio.WouldBlock:
                pass
            try:
                await self._step(pb)
            except SinkClosed:
                raise
            except Exception as exc:  # a render failed: the client is told, the session goes on
                await self._sink.error(exc)
                pb.playing = False

    async def _step(self, pb: _Playback) -> None:
        """Send the next frame of the current playback (waiting for its render and its pace)."""
        prepared = pb.prepared
        if pb.position >= prepared.num_frames:
            await self._sink.event("audio_stream_end", reason="end", stream_epoch=pb.epoch)
            pb.playing = False
            return
        start = pb.position
        stop = min(start + frames_per_message(prepared.sample_rate, SESSION_FRAME_S), prepared.num_frames)
        block = await self._read(pb.source, start, stop)
        if block is None:
            return
        fade_from = pb.fade_from
        fade = Crossfade(crossfade_frames(prepared.sample_rate), start - pb.fade_start)
        if fade_from is not None and fade.done:  # the new plan plays alone: let the old one go
            fade_from.close()
            pb.fade_from = fade_from = None
        if fade_from is not None:
            old = await self._read(fade_from, start, stop)
            if old is None:
                return
            block = fade.mix(old, block)
        if self._playback is not pb or pb.position != start:
            return
        if not pb.started_sent:
            await self._send_start(pb)
        if pb.pace == "realtime" and not pb.clock.due(trio.current_time()):
            with trio.move_on_at(pb.clock.deadline):  # wait for the pace, but a command interrupts the wait
                self._pending.append(await self._commands.receive())
                return
        await self._sink.audio(pb.epoch, start, block)
        pb.position = stop
        pb.clock.sent(trio.current_time(), stop - start)  # a slow render restarts the clock: no burst after it
        self.frames_sent += stop - start

    async def _read(self, source: DeckSource, start: int, stop: int) -> np.ndarray | None:
        """Frames ``[start, stop)`` of ``source``; None when a command arrived while a render was awaited."""
        if source.ready(start, stop):
            return await source.read(start, stop)  # rendered already: no wait, no race needed
        ready, value = await self._race(lambda: source.read(start, stop))
        return value if ready else None

    async def _send_start(self, pb: _Playback) -> None:
        prepared = pb.prepared
        await self._sink.event("mastering_status", status="ready", track_id=prepared.track.track_id)
        await self._sink.event(
            "audio_stream_start", sample_rate=prepared.sample_rate, channels=2, format=self._fmt,
            variant=self._variant, track=prepared.wire, preset=pb.preset, intensity=pb.intensity,
            plan=pb.source.plan.to_dict(), decision=pb.source.plan.decision, stream_epoch=pb.epoch,
            offset_frames=pb.position, num_frames=prepared.num_frames, pace=pb.pace,
            gain_db=original_gain_db(pb.source.plan) if self._variant == "original" else 0.0,
        )
        pb.started_sent = True
        pb.clock = Clock(prepared.sample_rate, lead_s=REALTIME_LEAD_S, max_late_s=REALTIME_LEAD_S)
        pb.clock.start(trio.current_time())

    def _new_epoch(self) -> int:
        self._epoch = (self._epoch + 1) & 0xFFFFFFFF
        return self._epoch

    async def _apply(self, cmd: SessionCommand, asked: int | None = None) -> None:
        try:
            await self._apply_inner(cmd, asked)
        except SinkClosed:
            raise
        except Exception as exc:  # a bad command: the client is told, the session goes on
            await self._sink.error(exc)

    async def _apply_inner(self, cmd: SessionCommand, asked: int | None) -> None:
        pb = self._playback
        if cmd.type == "play_enhanced":
            await self._play(cmd, asked)
            return
        if pb is None:
            raise RpcError(INVALID_PARAMS, f"{cmd.type}: nothing is playing (send play_enhanced first)")
        if cmd.type == "pause":
            pb.paused = True
            if pb.playing:
                pb.playing = False
                await self._sink.event("audio_stream_end", reason="paused", stream_epoch=pb.epoch)
        elif cmd.type == "resume":
            pb.paused = False
            if not pb.playing and pb.position < pb.prepared.num_frames:
                pb.playing = True
                pb.clock.start(trio.current_time())
        elif cmd.type == "stop":
            self._close_playback()
            await self._sink.event("audio_stream_end", reason="stopped", stream_epoch=pb.epoch)
        elif cmd.type == "seek":
            assert cmd.position_s is not None
            position = min(int(round(cmd.position_s * pb.prepared.sample_rate)), pb.prepared.num_frames)
            pb.source.asked = asked
            await self._restart(pb, pb.source, position, fade=False)
        elif cmd.type in ("set_preset", "set_intensity"):
            preset = cmd.preset if cmd.type == "set_preset" and cmd.preset is not None else pb.preset
            intensity = cmd.intensity if cmd.type == "set_intensity" and cmd.intensity is not None else pb.intensity
            plan = self._backend.plan(pb.prepared.inputs, preset, intensity)  # validates both
            source = DeckSource(self._backend, pb.prepared, plan, self._variant, self._require_nursery(), asked=asked)
            pb.preset, pb.intensity = plan.preset, plan.intensity
            await self._sink.decision(pb.prepared.wire, plan, pb.prepared.inputs)
            await self._restart(pb, source, pb.position, fade=pb.started_sent)

    def _require_nursery(self) -> trio.Nursery:
        assert self._nursery is not None
        return self._nursery

    async def _restart(self, pb: _Playback, source: DeckSource, position: int, *, fade: bool) -> None:
        """A new epoch at ``position`` (seek, or preset change with a crossfade from the old plan)."""
        old = pb.source
        if pb.fade_from is not None and pb.fade_from is not old:
            pb.fade_from.close()
        pb.fade_from = old if fade and old is not source else None
        if pb.fade_from is None and old is not source:
            old.close()
        pb.source = source
        pb.fade_start = position
        pb.position = position
        pb.epoch = self._new_epoch()
        pb.started_sent = False
        pb.playing = not pb.paused  # a seek after the end plays again; a seek to the end reports "end"

    def _close_playback(self) -> None:
        pb = self._playback
        if pb is not None:
            pb.source.close()
            if pb.fade_from is not None:
                pb.fade_from.close()
        self._playback = None

    async def _play(self, cmd: SessionCommand, asked: int | None = None) -> None:
        from auralis.presets import PRESET_NAMES

        assert cmd.track_id is not None
        preset = cmd.preset or "adaptive"
        intensity = 1.0 if cmd.intensity is None else cmd.intensity
        if preset not in PRESET_NAMES:
            raise RpcError(UNKNOWN_PRESET, f"unknown preset {preset!r}; valid presets: {', '.join(PRESET_NAMES)}")
        if not 0.0 <= intensity <= 1.0:
            raise RpcError(INVALID_PARAMS, f"intensity must be within [0, 1], got {intensity}")
        self._close_playback()
        track = await self._backend.track(cmd.track_id)
        await self._sink.event("mastering_status", status="preparing", track_id=track.track_id)
        known = self._backend.is_known(track)
        if not known:
            await self._sink.event("fingerprint_progress", track_id=track.track_id, status="analyzing")
        inputs, source_name = await self._backend.plan_inputs(track)
        if inputs is None:
            await self._sink.event("fingerprint_progress", track_id=track.track_id, status="failed",
                                   reason="analysis failed; playing with the neutral plan")
        elif not known:
            await self._sink.event("fingerprint_progress", track_id=track.track_id, status="complete",
                                   source=source_name)
        plan = self._backend.plan(inputs, preset, intensity)
        prepared = self._backend.prepare(track, inputs)
        await self._sink.decision(prepared.wire, plan, inputs)
        source = DeckSource(self._backend, prepared, plan, self._variant, self._require_nursery(), asked=asked)
        position = 0
        if cmd.position_s is not None:
            position = min(int(round(cmd.position_s * prepared.sample_rate)), prepared.num_frames)
        self._playback = _Playback(prepared, source, plan.preset, plan.intensity, cmd.pace, self._new_epoch(),
                                   position)


class OriginalSide:
    """The A/B side of ``/stream``: unprocessed frames at the player's epochs and offsets, level-matched.

    The same original path as ``/session?variant=original``: output-rate chunks of the unprocessed file
    rendered on the shared pool through the chunk cache (so every A/B listener shares one render),
    sliced here and gained by the plan's ``original_gain_db`` (level match under the -1 dBTP ceiling) and by
    the shared volume (``volume_gain``). Set ``nursery`` (where its fetches run) before :meth:`start`.
    """

    def __init__(self, backend: SessionBackend) -> None:
        self._backend = backend
        self.gain_db = 0.0
        self.volume_gain = 1.0
        self.nursery: trio.Nursery | None = None
        self._track_id: Any = None
        self._source: DeckSource | None = None
        self._failed = False

    async def start(self, track: dict[str, Any], plan: dict[str, Any] | None) -> None:
        gain = (plan or {}).get("original_gain_db")  # MasteringPlan.original_gain_db: level match under the ceiling
        self.gain_db = float(gain) if isinstance(gain, (int, float)) and math.isfinite(gain) else 0.0
        track_id = track.get("track_id")
        if self._source is not None and track_id == self._track_id:
            return
        self.close()
        self._track_id = track_id
        if self.nursery is None:
            raise RuntimeError("OriginalSide.start before its nursery was set")
        if not isinstance(track_id, int):
            return
        try:
            record = await self._backend.track(track_id)
        except Exception as exc:  # the track vanished: silence on this side, the stream goes on
            log.warning("/stream original side: %s", exc)
            return
        prepared = self._backend.prepare(record, None)
        self._source = DeckSource(self._backend, prepared, None, "original", self.nursery)

    def close(self) -> None:
        if self._source is not None:
            self._source.close()
        self._source = None
        self._track_id = None

    async def read(self, n0: int, n1: int) -> np.ndarray:
        if self._source is None:
            return np.zeros((n1 - n0, 2), dtype=np.float32)
        try:
            block = await self._source.read(n0, n1)
        except Exception as exc:  # a file that cannot be read: silence on this side, said once
            if not self._failed:
                log.warning("/stream original side of track %s: %s", self._track_id, exc)
            self._failed = True
            return np.zeros((n1 - n0, 2), dtype=np.float32)
        return scale(block, db_gain(self.gain_db) * self.volume_gain)
