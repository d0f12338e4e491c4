"""Per-connection WebSocket session tasks: ``/session`` (private render), ``/stream`` (shared player), ``/control``.

Each connection is its own task. Every session keeps reading incoming frames for as long as it lives
(trio-websocket stops answering pings and close frames when nobody reads, NOTES.md), and sends from
one place so a message is never cut by a cancellation.

``/session`` (:class:`PrivateSession`): the client sends JSON commands (``play_enhanced``, ``pause``,
``resume``, ``seek``, ``stop``, ``set_preset``, ``set_intensity``) and gets its own stream of one track,
mastered with its own settings through the daemon's shared pool and chunk cache, independent of the
shared player and of other clients. ``pace`` is ``realtime`` (frames leave at most
:data:`REALTIME_LEAD_S` ahead of their play time) or ``burst`` (as fast as the pool renders; flow
control is TCP backpressure: a reader that stops reading stops the renders too).

``/stream`` (:class:`ListenerSession`): one listener of the shared player. Blocks arrive on a bounded
channel from the player; a listener whose channel fills up (it cannot keep up) is dropped with close
code :data:`CLOSE_TOO_SLOW` and never slows the player or anyone else.

Epochs: a new ``stream_epoch`` starts at every seek, track change and preset/intensity change, and
``audio_stream_start`` precedes its first audio. A preset/intensity change starts its epoch exactly at
the next unsent frame (no gap, no repeat) and crossfades from the old plan to the new one over
:data:`~auralisd.playback.mixer.CROSSFADE_S` (the shared player's crossfade), so it never clicks.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import trio
import trio_websocket

from ..playback import Clock, Crossfade, Deck, Fetch
from ..playback.deck import output_frames
from ..playback.mixer import crossfade_frames, db_gain, scale
from ..protocol.audio_frames import (
    FORMATS,
    VARIANTS,
    AudioFramer,
    FrameError,
    SessionCommand,
    event_message,
    frames_per_message,
    parse_session_command,
)
from .http import WebSocketRequestInfo

log = logging.getLogger("auralisd.sessions")

SESSION_FRAME_S: Final = 0.1  # /session frames (issue 5 allows 20-100 ms; fewer messages per second)
REALTIME_LEAD_S: Final = 0.5  # realtime pace: audio leaves up to this far ahead of its play time
RENDER_AHEAD_CHUNKS: Final = 2  # chunks rendered ahead of the one being sent, per private session
MAX_PRIVATE_SESSIONS: Final = 64  # each holds up to 3 chunks + 2 pieces per source (~5 MB at 44.1 kHz); more: 1013
SEND_TIMEOUT_S: Final = 5.0  # a /session peer that takes no message for this long is closed (a frozen peer)
COMMAND_BUFFER: Final = 16  # pending /session commands (each ~100 B); a flood beyond closes the socket
CLOSE_TOO_SLOW: Final = 4008  # application close code: the listener fell behind its buffer limit
CLOSE_POLICY: Final = 1008  # RFC 6455 policy violation: garbage or a flood of commands
CLOSE_UNSUPPORTED: Final = 1003  # RFC 6455: a data type this endpoint does not accept
CLOSE_TRY_LATER: Final = 1013  # RFC 6455 registry: try again later (session limit reached)
SESSION_MAX_MESSAGE_BYTES: Final = 4096  # a /session command is tiny; bigger closes with 1009
STREAM_MAX_MESSAGE_BYTES: Final = 4096  # /stream takes no commands at all


CLOSE_TIMEOUT_S: Final = 1.0  # a close handshake with a peer that stopped reading cannot complete: give up


async def close_websocket(ws: trio_websocket.WebSocketConnection, code: int, reason: str) -> None:
    """Start the close handshake, but never wait more than :data:`CLOSE_TIMEOUT_S` (frozen peers)."""
    with trio.move_on_after(CLOSE_TIMEOUT_S):
        await ws.aclose(code=code, reason=reason)


class SessionClosed(Exception):
    """The session ends (the peer broke a rule or went away); carries the close code and reason."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def query_format(info: WebSocketRequestInfo) -> tuple[str, str]:
    """``(format, variant)`` from ``?format=f32|s16&variant=mastered|original``; raises FrameError."""
    fmt = info.param("format", "f32")
    variant = info.param("variant", "mastered")
    if fmt not in FORMATS:
        raise FrameError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}", "invalid_params")
    if variant not in VARIANTS:
        raise FrameError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}", "invalid_params")
    return fmt, variant


def lwrp_regions(target_lufs: float) -> list[dict[str, Any]]:
    """The 2D LWRP regions on the LUFS x crest plane for a preset target (from auralis.plan's thresholds)."""
    from auralis.plan import LWRP_CREST_DB, LWRP_LOUD_LUFS, QUIET_MARGIN_LU

    quiet_below = min(target_lufs - QUIET_MARGIN_LU, LWRP_LOUD_LUFS)  # same rule in clients/web/app.js
    return [
        {"name": "quiet", "lufs": [-70.0, quiet_below], "crest_db": [0.0, 40.0]},
        {"name": "normal", "lufs": [quiet_below, LWRP_LOUD_LUFS], "crest_db": [0.0, 40.0]},
        {"name": "dynamic_loud", "lufs": [LWRP_LOUD_LUFS, 0.0], "crest_db": [LWRP_CREST_DB, 40.0]},
        {"name": "compressed_loud", "lufs": [LWRP_LOUD_LUFS, 0.0], "crest_db": [0.0, LWRP_CREST_DB]},
    ]


def original_gain_db(plan: Any) -> float:
    """Level match for the A/B original: the plan's output loudness minus the input's integrated loudness."""
    out, inp = float(plan.target_lufs), float(plan.input_lufs)
    return out - inp if math.isfinite(out) and math.isfinite(inp) else 0.0


def decision_event(track_wire: dict[str, Any], plan: Any, inputs: Any = None) -> dict[str, Any]:
    """Fields of ``lwrp_decision``: the line, the numbers, the regions, band balance and measurements."""
    fields: dict[str, Any] = {
        "track_id": track_wire.get("track_id"),
        "decision": plan.decision,
        "region": plan.region,
        "input_lufs": plan.input_lufs,
        "input_crest_db": plan.input_crest_db,
        "output_lufs": plan.target_lufs,
        "target_lufs": plan.preset_target_lufs,
        "gain_db": plan.gain_db,
        "expansion_factor": plan.expansion_factor,
        "bound_hit": plan.bound_hit,
        "preset": plan.preset,
        "intensity": plan.intensity,
        "regions": lwrp_regions(plan.preset_target_lufs),
        "plan": plan.to_dict(),
    }
    if inputs is not None:
        fields.update(fingerprint_summary(inputs))
    return fields


def fingerprint_summary(inputs: Any) -> dict[str, Any]:
    """``bands`` (the seven band fractions) and ``measurements`` (plus ``crest_db``) of plan inputs."""
    dims = getattr(inputs, "dimensions", None) or {}
    measurements = dict(getattr(inputs, "measurements", None) or {})
    if "crest_db" in dims:
        measurements["crest_db"] = dims["crest_db"]
    return {"bands": {k: v for k, v in dims.items() if k.endswith("_pct")}, "measurements": measurements}


def _wire_error(exc: BaseException) -> tuple[str, str]:
    """``(code, message)`` for an expected failure (pool job, RPC error, bad value) or ``internal``."""
    from ..jobs import JobFailed
    from ..app.replies import error_to_wire

    if isinstance(exc, JobFailed):
        return exc.code, exc.message.splitlines()[0] if exc.message else exc.code
    wire = error_to_wire(exc)
    if wire["code"] == "internal" and isinstance(exc, ValueError):
        return "invalid_params", str(exc)
    return wire["code"], wire["message"]


# ----------------------------------------------------------------------------------------------------------
# Rendering for private sessions, on top of the daemon's actors (database, fingerprint resolver, mastering)


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

    def __init__(self, db: Any, resolver: Any, mastering: Any, *, sample_rate: int) -> None:
        self.db = db
        self.resolver = resolver
        self.mastering = mastering
        self.sample_rate = sample_rate

    async def track(self, track_id: int) -> Any:
        from ..errors import NOT_FOUND, RpcError

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
        memory = getattr(self.resolver, "_memory", None)
        return bool(memory) and track.track_id in memory

    def plan(self, inputs: Any, preset: str, intensity: float) -> Any:
        from auralis.plan import plan_mastering

        return plan_mastering(inputs, preset, intensity)

    def prepare(self, track: Any, inputs: Any) -> PreparedTrack:
        from ..actors.mastering import chunk_frames

        n = chunk_frames(int(track.sample_rate))
        out_frames = output_frames(int(track.sample_rate), self.sample_rate, int(track.num_frames))
        return PreparedTrack(track, inputs, out_frames, self.sample_rate, n)

    def cached(self, prepared: PreparedTrack, plan: Any, kind: str, index: int, piece_frames: int) -> Any:
        return self.mastering.cached_chunk(prepared.track, plan, index, piece_frames if kind == "piece" else 0,
                                           self.sample_rate)

    async def render(self, prepared: PreparedTrack, plan: Any, fetch: Fetch, piece_frames: int) -> np.ndarray:
        """One output-rate chunk or fast-start piece; ``plan`` None is the unprocessed original."""
        if fetch.kind == "piece":
            return await self.mastering.render_piece(prepared.track, plan, fetch.index, piece_frames,
                                                     out_rate=self.sample_rate, priority=fetch.priority)
        return await self.mastering.render_chunk(prepared.track, plan, fetch.index, out_rate=self.sample_rate,
                                                 priority=fetch.priority)


class _ChunkSource:
    """One (track, plan, variant) at the output rate: a playback :class:`~auralisd.playback.Deck` whose
    fetches run in the session's nursery.

    The deck decides what is wanted (the playhead's chunk, fast-start pieces while it is missing,
    ``RENDER_AHEAD_CHUNKS`` of look-ahead) and drops what the playhead left behind, so a session holds
    a bounded number of chunks whatever the seeks. The original (A/B) variant renders on the same cached
    path with no plan; its level match is applied here as a gain. :meth:`read` is cancel-safe.
    """

    def __init__(self, backend: SessionBackend, prepared: PreparedTrack, plan: Any, variant: str,
                 nursery: trio.Nursery) -> None:
        self._backend = backend
        self.prepared = prepared
        self.plan = plan
        self._original = variant == "original"
        self._nursery = nursery
        track = prepared.track
        preset, intensity = ("original", 0.0) if plan is None else (plan.preset, plan.intensity)
        self.deck = Deck.open(0, track, preset, intensity, in_rate=int(track.sample_rate),
                              out_rate=prepared.sample_rate, num_frames=int(track.num_frames),
                              chunk_frames=prepared.chunk_frames, original=self._original)
        self.deck.plan = plan
        self._gain = db_gain(original_gain_db(plan)) if self._original and plan is not None else 1.0
        self._arrived = trio.Event()
        self._error: BaseException | None = None
        self._closed = False

    @property
    def _render_plan(self) -> Any:
        return None if self._original else self.plan

    def close(self) -> None:
        """Cancel the renders this source waits for (the mastering actor may still finish them)."""
        self._closed = True
        self.deck.close()

    def _schedule(self, head: int) -> None:
        if self._closed:
            return
        piece = self.deck.pieces_grid.chunk_frames

        def cached(kind: str, index: int) -> Any:
            return self._backend.cached(self.prepared, self._render_plan, kind, index, piece)

        for fetch in self.deck.schedule(head, RENDER_AHEAD_CHUNKS, playhead=True, cached=cached):
            scope = trio.CancelScope()
            self.deck.started(fetch, scope)
            self._nursery.start_soon(self._fetch, fetch, scope)

    async def _fetch(self, fetch: Fetch, scope: trio.CancelScope) -> None:
        from ..actors.pool import PoolJobAbandoned

        with scope:
            try:
                samples = await self._backend.render(self.prepared, self._render_plan, fetch,
                                                     self.deck.pieces_grid.chunk_frames)
            except PoolJobAbandoned:
                return
            except Exception as exc:
                self._failed(fetch, exc)
            else:
                if fetch.kind == "piece":
                    self.deck.accept_piece(fetch.index, samples)
                else:
                    self.deck.accept_chunk(fetch.index, samples)
            self._wake()

    def _failed(self, fetch: Fetch, exc: Exception) -> None:
        from ..jobs import JobFailed

        if fetch.kind == "piece":  # only a head start: the chunk still covers it
            log.warning("fast-start piece %d of %s failed: %s", fetch.index, self.prepared.track.path, exc)
            return
        if self.deck.chunk_failed(fetch.index, fatal=isinstance(exc, JobFailed)):
            log.warning("chunk %d of %s failed (%s); retrying", fetch.index, self.prepared.track.path, exc)
            retry = self.deck.retry(fetch.index)
            scope = trio.CancelScope()
            self.deck.started(retry, scope)
            self._nursery.start_soon(self._fetch, retry, scope)
            return
        self._error = exc

    def _wake(self) -> None:
        self._arrived.set()
        self._arrived = trio.Event()

    def ready(self, out_start: int, out_stop: int) -> bool:
        """Whether :meth:`read` would return at once (every frame it needs is rendered)."""
        return self.deck.frames(out_start, out_stop) is not None

    async def read(self, out_start: int, out_stop: int) -> np.ndarray:
        """Output-rate frames ``[out_start, out_stop)`` as float32 ``(frames, 2)``: slices, no DSP."""
        self._schedule(out_start)
        while True:
            block = self.deck.frames(out_start, out_stop)
            if block is not None:
                return scale(block, self._gain)
            if self._error is not None and self.deck.broken_from is not None \
                    and self.deck.grid.start(self.deck.broken_from) < out_stop:
                raise self._error
            await self._arrived.wait()
            self._schedule(out_start)


@dataclass
class _Playback:
    """The state of a private session's current track."""

    prepared: PreparedTrack
    source: _ChunkSource
    preset: str
    intensity: float
    pace: str
    epoch: int
    position: int  # next frame offset to send
    playing: bool = True
    paused: bool = False  # by the client (a seek or preset change keeps it paused)
    fade_from: _ChunkSource | None = None  # old plan, crossfaded out at the start of this epoch
    fade_start: int = 0
    clock: Clock = field(default_factory=lambda: Clock(1))  # realtime pace (the playback core's clock policy)
    started_sent: bool = False


class PrivateSession:
    """One ``/session`` connection: a private, independently mastered stream of one track at a time."""

    def __init__(self, ws: trio_websocket.WebSocketConnection, info: WebSocketRequestInfo,
                 backend: SessionBackend) -> None:
        self._ws = ws
        self._info = info
        self._backend = backend
        self._commands_send, self._commands = trio.open_memory_channel[SessionCommand](COMMAND_BUFFER)
        self._pending: list[SessionCommand] = []  # received by a race, applied next
        self._epoch = 0
        self._playback: _Playback | None = None
        self._framer: AudioFramer | None = None
        self._fmt = "f32"
        self._variant = "mastered"
        self._nursery: trio.Nursery | None = None
        self.frames_sent = 0

    async def run(self) -> None:
        """Serve until the peer leaves or breaks a rule. Cancellation: closes the connection."""
        try:
            self._fmt, self._variant = query_format(self._info)
        except FrameError as exc:
            await self._send_text(event_message("audio_stream_error", code=exc.code, message=str(exc)))
            await close_websocket(self._ws, CLOSE_POLICY, reason=str(exc)[:120])
            return
        self._framer = AudioFramer(self._backend.sample_rate, self._fmt, frame_duration_s=SESSION_FRAME_S)
        _limit_send_buffer(self._ws)
        closing: list[SessionClosed] = []
        async with trio.open_nursery() as nursery:
            self._nursery = nursery

            async def guarded(fn: Callable[[], Awaitable[None]]) -> None:
                try:
                    await fn()
                except SessionClosed as exc:
                    closing.append(exc)
                except trio_websocket.ConnectionClosed:
                    pass
                nursery.cancel_scope.cancel()

            nursery.start_soon(guarded, self._receive_loop)
            nursery.start_soon(guarded, self._command_loop)
        self._close_playback()
        if closing:
            await close_websocket(self._ws, closing[0].code, reason=closing[0].reason[:120])

    # ------------------------------------------------------------------------------ input
    async def _receive_loop(self) -> None:
        while True:
            message = await self._ws.get_message()
            if isinstance(message, (bytes, bytearray)):
                raise SessionClosed(CLOSE_UNSUPPORTED, "/session takes JSON text commands only")
            try:
                command = parse_session_command(message)
            except FrameError as exc:
                if exc.code == "bad_request":
                    raise SessionClosed(CLOSE_POLICY, str(exc)) from None
                await self._send_text(event_message("audio_stream_error", code=exc.code, message=str(exc)))
                continue
            try:
                self._commands_send.send_nowait(command)
            except trio.WouldBlock:
                raise SessionClosed(CLOSE_POLICY, f"more than {COMMAND_BUFFER} commands pending") from None

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
                await self._apply(self._pending.pop(0))
                continue
            pb = self._playback
            if pb is None or not pb.playing:
                await self._apply(await self._commands.receive())
                continue
            try:
                await self._apply(self._commands.receive_nowait())
                continue
            except trio.WouldBlock:
                pass
            try:
                await self._step(pb)
            except (SessionClosed, trio_websocket.ConnectionClosed):
                raise
            except Exception as exc:
                code, message = _wire_error(exc)
                if code == "internal":
                    log.exception("/session render failed")
                await self._error(code, message)
                pb.playing = False

    async def _step(self, pb: _Playback) -> None:
        """Send the next frame of the current playback (waiting for its render and its pace)."""
        prepared = pb.prepared
        if pb.position >= prepared.num_frames:
            await self._send_text(event_message("audio_stream_end", reason="end", stream_epoch=pb.epoch))
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
        assert self._framer is not None
        for data in self._framer.frames(pb.epoch, start, block):
            await self._send(data)
        pb.position = stop
        pb.clock.sent(trio.current_time(), stop - start)  # a slow render restarts the clock: no burst after it
        self.frames_sent += stop - start

    async def _read(self, source: _ChunkSource, start: int, stop: int) -> np.ndarray | None:
        """Frames ``[start, stop)`` of ``source``; None when a command arrived while a render was awaited."""
        if source.ready(start, stop):
            return await source.read(start, stop)  # rendered already: no wait, no race needed
        ready, value = await self._race(lambda: source.read(start, stop))
        return value if ready else None

    async def _send_start(self, pb: _Playback) -> None:
        prepared = pb.prepared
        await self._send_text(event_message("mastering_status", status="ready", track_id=prepared.track.track_id))
        await self._send_text(event_message(
            "audio_stream_start", sample_rate=prepared.sample_rate, channels=2, format=self._fmt,
            variant=self._variant, track=prepared.wire, preset=pb.preset, intensity=pb.intensity,
            plan=pb.source.plan.to_dict(), decision=pb.source.plan.decision, stream_epoch=pb.epoch,
            offset_frames=pb.position, num_frames=prepared.num_frames, pace=pb.pace,
            gain_db=original_gain_db(pb.source.plan) if self._variant == "original" else 0.0,
        ))
        pb.started_sent = True
        pb.clock = Clock(prepared.sample_rate, lead_s=REALTIME_LEAD_S, max_late_s=REALTIME_LEAD_S)
        pb.clock.start(trio.current_time())

    async def _send_text(self, text: str) -> None:
        await self._send(text)

    async def _send(self, message: str | bytes) -> None:
        """Send one message; a peer that does not take it within :data:`SEND_TIMEOUT_S` is closed."""
        with trio.move_on_after(SEND_TIMEOUT_S):
            await self._ws.send_message(message)
            return
        log.info("a /session peer took no message for %.0f s; closing it", SEND_TIMEOUT_S)
        raise SessionClosed(CLOSE_TOO_SLOW, f"the peer took no message for {SEND_TIMEOUT_S:.0f} s")

    async def _error(self, code: str, message: str) -> None:
        await self._send_text(event_message("audio_stream_error", code=code, message=message))

    def _new_epoch(self) -> int:
        self._epoch = (self._epoch + 1) & 0xFFFFFFFF
        return self._epoch

    async def _apply(self, cmd: SessionCommand) -> None:
        try:
            await self._apply_inner(cmd)
        except (SessionClosed, trio_websocket.ConnectionClosed):
            raise
        except Exception as exc:
            code, message = _wire_error(exc)
            if code == "internal":
                log.exception("/session %s failed", cmd.type)
            await self._error(code, message)

    async def _apply_inner(self, cmd: SessionCommand) -> None:
        pb = self._playback
        if cmd.type == "play_enhanced":
            await self._play(cmd)
            return
        if pb is None:
            await self._error("invalid_params", f"{cmd.type}: nothing is playing (send play_enhanced first)")
            return
        if cmd.type == "pause":
            pb.paused = True
            if pb.playing:
                pb.playing = False
                await self._send_text(event_message("audio_stream_end", reason="paused", stream_epoch=pb.epoch))
        elif cmd.type == "resume":
            pb.paused = False
            if not pb.playing and pb.position < pb.prepared.num_frames:
                pb.playing = True
                pb.clock.start(trio.current_time())
        elif cmd.type == "stop":
            self._close_playback()
            await self._send_text(event_message("audio_stream_end", reason="stopped", stream_epoch=pb.epoch))
        elif cmd.type == "seek":
            assert cmd.position_s is not None
            position = min(int(round(cmd.position_s * pb.prepared.sample_rate)), pb.prepared.num_frames)
            await self._restart(pb, pb.source, position, fade=False)
        elif cmd.type in ("set_preset", "set_intensity"):
            preset = cmd.preset if cmd.type == "set_preset" else pb.preset
            intensity = cmd.intensity if cmd.type == "set_intensity" else pb.intensity
            plan = self._backend.plan(pb.prepared.inputs, preset, intensity)  # validates both
            source = _ChunkSource(self._backend, pb.prepared, plan, self._variant, self._require_nursery())
            pb.preset, pb.intensity = plan.preset, plan.intensity
            await self._send_text(event_message("lwrp_decision", **decision_event(pb.prepared.wire, plan, pb.prepared.inputs)))
            await self._restart(pb, source, pb.position, fade=pb.started_sent)

    def _require_nursery(self) -> trio.Nursery:
        assert self._nursery is not None
        return self._nursery

    async def _restart(self, pb: _Playback, source: _ChunkSource, position: int, *, fade: bool) -> None:
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

    async def _play(self, cmd: SessionCommand) -> None:
        from auralis.presets import PRESET_NAMES

        assert cmd.track_id is not None
        preset = cmd.preset or "adaptive"
        intensity = 1.0 if cmd.intensity is None else cmd.intensity
        if preset not in PRESET_NAMES:
            await self._error("unknown_preset", f"unknown preset {preset!r}; valid presets: {', '.join(PRESET_NAMES)}")
            return
        if not 0.0 <= intensity <= 1.0:
            await self._error("invalid_params", f"intensity must be within [0, 1], got {intensity}")
            return
        self._close_playback()
        track = await self._backend.track(cmd.track_id)
        await self._send_text(event_message("mastering_status", status="preparing", track_id=track.track_id))
        known = self._backend.is_known(track)
        if not known:
            await self._send_text(event_message("fingerprint_progress", track_id=track.track_id, status="analyzing"))
        inputs, source_name = await self._backend.plan_inputs(track)
        if inputs is None:
            await self._send_text(event_message("fingerprint_progress", track_id=track.track_id, status="failed",
                                                reason="analysis failed; playing with the neutral plan"))
        elif not known:
            await self._send_text(event_message("fingerprint_progress", track_id=track.track_id, status="complete",
                                                source=source_name))
        plan = self._backend.plan(inputs, preset, intensity)
        prepared = self._backend.prepare(track, inputs)
        await self._send_text(event_message("lwrp_decision", **decision_event(prepared.wire, plan, inputs)))
        source = _ChunkSource(self._backend, prepared, plan, self._variant, self._require_nursery())
        position = 0
        if cmd.position_s is not None:
            position = min(int(round(cmd.position_s * prepared.sample_rate)), prepared.num_frames)
        self._playback = _Playback(prepared, source, plan.preset, plan.intensity, cmd.pace, self._new_epoch(),
                                   position)


# ----------------------------------------------------------------------------------------------------------
# Route handlers


@dataclass
class SessionCounters:
    """Live counts of the WebSocket sessions (for logs and statistics)."""

    private_sessions: int = 0
    listeners: int = 0
    listeners_dropped: int = 0


def private_session_handler(backend: SessionBackend, counters: SessionCounters | None = None):
    """The ``/session`` route handler."""
    counters = counters or SessionCounters()

    async def handler(ws: trio_websocket.WebSocketConnection, info: WebSocketRequestInfo) -> None:
        if counters.private_sessions >= MAX_PRIVATE_SESSIONS:
            await ws.send_message(event_message("audio_stream_error", code="internal",
                                                message=f"too many private sessions ({MAX_PRIVATE_SESSIONS}); try later"))
            await close_websocket(ws, CLOSE_TRY_LATER, "too many private sessions")
            return
        counters.private_sessions += 1
        try:
            await PrivateSession(ws, info, backend).run()
        finally:
            counters.private_sessions -= 1

    handler.max_message_bytes = SESSION_MAX_MESSAGE_BYTES  # type: ignore[attr-defined]
    return handler


# ----------------------------------------------------------------------------------------------------------
# /stream: a listener of the shared player

LISTENER_BUFFER_BLOCKS: Final = 80  # player messages queued per listener: 4 s of 50 ms blocks (~1.4 MB f32 at 44.1 kHz)
STREAM_FRAME_S: Final = 0.1  # /stream frames: two 50 ms player blocks per message halves the per-listener cost
LISTENER_SNDBUF_BYTES: Final = 256 * 1024  # kernel send buffer per listener (~0.7 s of f32 stereo at 44.1 kHz)
LISTENER_EVENTS: Final = frozenset({"fingerprint_progress", "volume", "mastering"})
DECISION_BUFFER: Final = 4  # StreamStart records waiting for their lwrp_decision (a few hundred bytes each)


class _OriginalSide:
    """The A/B side of ``/stream``: unprocessed frames at the player's epochs and offsets, level-matched.

    The same original path as ``/session?variant=original``: output-rate chunks of the unprocessed file
    rendered on the shared pool through the chunk cache (so every A/B listener shares one render),
    sliced here and gained by ``plan output loudness - input loudness`` and by the shared volume.
    """

    def __init__(self, backend: SessionBackend) -> None:
        self._backend = backend
        self.gain_db = 0.0
        self.volume_gain = 1.0
        self.nursery: trio.Nursery | None = None
        self._track_id: Any = None
        self._source: _ChunkSource | None = None
        self._failed = False

    async def start(self, track: dict[str, Any], plan: dict[str, Any] | None) -> None:
        out, inp = (plan or {}).get("target_lufs"), (plan or {}).get("input_lufs")
        self.gain_db = float(out) - float(inp) if isinstance(out, (int, float)) and isinstance(inp, (int, float)) else 0.0
        track_id = track.get("track_id")
        if self._source is not None and track_id == self._track_id:
            return
        self.close()
        self._track_id = track_id
        assert self.nursery is not None
        if not isinstance(track_id, int):
            return
        try:
            record = await self._backend.track(track_id)
        except Exception as exc:  # the track vanished: silence on this side, the stream goes on
            log.warning("/stream original side: %s", exc)
            return
        prepared = self._backend.prepare(record, None)
        self._source = _ChunkSource(self._backend, prepared, None, "original", self.nursery)

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


class _ChartCache:
    """Plan inputs of the last few tracks, shared by every listener (one lookup per track, not per listener)."""

    def __init__(self, entries: int = 8) -> None:
        self._entries = entries
        self._items: dict[int, Any] = {}

    def get(self, track_id: int) -> Any:
        return self._items.get(track_id)

    def put(self, track_id: int, value: Any) -> None:
        self._items.pop(track_id, None)
        self._items[track_id] = value
        while len(self._items) > self._entries:
            self._items.pop(next(iter(self._items)))


class ListenerSession:
    """One ``/stream`` connection: the shared player's audio and status, never slowing anyone down."""

    def __init__(self, ws: trio_websocket.WebSocketConnection, info: WebSocketRequestInfo, *, player: Any,
                 hub: Any, db: Any = None, resolver: Any = None, max_blocks: int = LISTENER_BUFFER_BLOCKS,
                 chart_cache: _ChartCache | None = None, backend: SessionBackend | None = None) -> None:
        self._ws = ws
        self._chart_cache = chart_cache or _ChartCache()
        self._info = info
        self._player = player
        self._hub = hub
        self._db = db
        self._resolver = resolver
        self._max_blocks = max_blocks
        self._backend = backend
        self._last_decision_key: tuple[Any, ...] | None = None
        # StreamStart records for the decision task (lookups there never hold up the audio pump)
        self._decision_send, self._decision_receive = trio.open_memory_channel[Any](DECISION_BUFFER)
        self.dropped = False

    async def run(self) -> None:
        """Serve until the peer leaves or falls behind (closed with :data:`CLOSE_TOO_SLOW`)."""
        try:
            fmt, variant = query_format(self._info)
        except FrameError as exc:
            await self._ws.send_message(event_message("audio_stream_error", code=exc.code, message=str(exc)))
            await close_websocket(self._ws, CLOSE_POLICY, reason=str(exc)[:120])
            return
        _limit_send_buffer(self._ws)
        framer = AudioFramer(self._player.sample_rate, fmt, frame_duration_s=STREAM_FRAME_S)
        if variant == "original" and self._backend is None:
            await self._ws.send_message(event_message("audio_stream_error", code="invalid_params",
                                                      message="variant=original is not served here"))
            await close_websocket(self._ws, CLOSE_POLICY, reason="variant=original is not served here")
            return
        original = _OriginalSide(self._backend) if variant == "original" and self._backend is not None else None
        if original is not None:
            status = await self._player.status()
            original.volume_gain = _volume_gain(status.get("volume", 100))
        sub = await self._player.subscribe(self._max_blocks)
        events = self._hub.subscribe(LISTENER_EVENTS)
        try:
            async with trio.open_nursery() as nursery:
                if original is not None:
                    original.nursery = nursery

                async def guarded(fn: Callable[[], Awaitable[None]]) -> None:
                    try:
                        await fn()
                    except trio_websocket.ConnectionClosed:
                        pass
                    nursery.cancel_scope.cancel()

                nursery.start_soon(guarded, self._drain_incoming)
                nursery.start_soon(guarded, lambda: self._forward_events(events, original))
                nursery.start_soon(guarded, lambda: self._pump(sub, framer, fmt, variant, original))
                nursery.start_soon(guarded, lambda: _wait_dropped(sub))
                nursery.start_soon(guarded, self._decisions)
        finally:
            sub.close()
            self._hub.unsubscribe(events)
            if original is not None:
                original.close()
        if sub.dropped:
            self.dropped = True
            await close_websocket(self._ws, CLOSE_TOO_SLOW, reason="listener fell behind the stream")

    async def _drain_incoming(self) -> None:
        """Keep reading so pings and close frames flow; /stream takes no commands."""
        while True:
            await self._ws.get_message()

    async def _forward_events(self, events: Any, original: _OriginalSide | None) -> None:
        async for event in events.receive:
            if event.name == "fingerprint_progress":
                await self._ws.send_message(event_message("fingerprint_progress", **event.data))
            elif event.name == "volume" and original is not None:
                original.volume_gain = _volume_gain(event.data.get("volume", 100))
            elif event.name == "mastering":
                await self._ws.send_message(event_message("player_event", event="mastering", data=event.data))

    async def _pump(self, sub: Any, framer: AudioFramer, fmt: str, variant: str,
                    original: _OriginalSide | None) -> None:
        from ..actors.player import PcmBlock, StreamEnd, StreamStart, StreamStatus

        pending: list[Any] = []  # contiguous blocks of one epoch, sent as one frame of up to 100 ms

        async def flush() -> None:
            if not pending:
                return
            first, n0 = pending[0], pending[0].offset_frames
            samples = pending[0].samples if len(pending) == 1 else np.concatenate([b.samples for b in pending])
            pending.clear()
            if original is not None:
                samples = await original.read(n0, n0 + samples.shape[0])
            for data in framer.frames(first.epoch, n0, samples):
                await self._ws.send_message(data)

        async for message in sub.receive:
            if isinstance(message, PcmBlock):
                last = pending[-1] if pending else None
                if last is not None and (last.epoch != message.epoch
                                         or last.offset_frames + last.samples.shape[0] != message.offset_frames):
                    await flush()
                pending.append(message)
                if sum(b.samples.shape[0] for b in pending) + message.samples.shape[0] > framer.max_frames:
                    await flush()  # the next block would not fit: send now
                continue
            await flush()
            if isinstance(message, StreamStart):
                if original is not None:
                    await original.start(message.track, message.plan)
                await self._ws.send_message(event_message(
                    "audio_stream_start", sample_rate=message.sample_rate, channels=message.channels, format=fmt,
                    variant=variant, track=message.track, preset=message.preset, intensity=message.intensity,
                    plan=message.plan, decision=message.decision, stream_epoch=message.epoch,
                    offset_frames=message.offset_frames,
                    gain_db=original.gain_db if original is not None else 0.0))
                try:
                    self._decision_send.send_nowait(message)
                except trio.WouldBlock:
                    pass  # decisions are superseded by the next one anyway
            elif isinstance(message, StreamStatus):
                await self._ws.send_message(event_message("mastering_status", status=message.status,
                                                          track_id=message.track_id))
            elif isinstance(message, StreamEnd):
                await self._ws.send_message(event_message("audio_stream_end", reason=message.reason))

    async def _decisions(self) -> None:
        async for start in self._decision_receive:
            await self._send_decision(start)

    async def _send_decision(self, start: Any) -> None:
        plan = start.plan
        if not plan:
            return
        key = (start.track.get("track_id"), plan.get("preset"), plan.get("intensity"), plan.get("decision"))
        if key == self._last_decision_key:
            return
        self._last_decision_key = key
        fields: dict[str, Any] = {
            "track_id": start.track.get("track_id"), "decision": start.decision or plan.get("decision"),
            "region": plan.get("region"), "input_lufs": plan.get("input_lufs"),
            "input_crest_db": plan.get("input_crest_db"), "output_lufs": plan.get("target_lufs"),
            "target_lufs": plan.get("preset_target_lufs"), "gain_db": plan.get("gain_db"),
            "expansion_factor": plan.get("expansion_factor"), "bound_hit": plan.get("bound_hit"),
            "preset": plan.get("preset"), "intensity": plan.get("intensity"), "plan": plan,
        }
        target = plan.get("preset_target_lufs")
        if isinstance(target, (int, float)):
            fields["regions"] = lwrp_regions(float(target))
        inputs = await self._plan_inputs(start.track.get("track_id"))
        if inputs is not None:
            fields.update(fingerprint_summary(inputs))
        await self._ws.send_message(event_message("lwrp_decision", **fields))

    async def _plan_inputs(self, track_id: Any) -> Any:
        """The fingerprint's plan inputs for the chart (already resolved by the player: a memory hit)."""
        if self._db is None or self._resolver is None or not isinstance(track_id, int):
            return None
        cached = self._chart_cache.get(track_id)
        if cached is not None:
            return cached
        try:
            track = await self._db.get_track(track_id)
            if track is None:
                return None
            with trio.move_on_after(1.0):
                resolved = await self._resolver.plan_inputs(track)
                if resolved is not None:
                    self._chart_cache.put(track_id, resolved.value)
                return None if resolved is None else resolved.value
        except Exception:  # the chart is optional; the stream is not
            log.exception("fingerprint for the /stream chart failed")
        return None


DROP_POLL_S: Final = 0.5  # how often a listener checks whether the player dropped it (cheap at 200 listeners)


async def _wait_dropped(sub: Any) -> None:
    """Return once the player dropped ``sub``: the pump may be stuck sending to a frozen peer."""
    while not sub.dropped:
        await trio.sleep(DROP_POLL_S)


def _volume_gain(percent: Any) -> float:
    from ..actors.player import volume_gain

    try:
        return volume_gain(int(percent))
    except (TypeError, ValueError):
        return 1.0


def _limit_send_buffer(ws: trio_websocket.WebSocketConnection) -> None:
    """A small kernel send buffer so a frozen listener is noticed (and dropped) within seconds."""
    import socket

    stream = getattr(ws, "_stream", None)
    inner = getattr(stream, "_inner", stream)
    sock = getattr(inner, "socket", None)
    if sock is not None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, LISTENER_SNDBUF_BYTES)
        except OSError:
            pass


def stream_listener_handler(player: Any, hub: Any, db: Any = None, resolver: Any = None,
                            counters: SessionCounters | None = None, backend: SessionBackend | None = None):
    """The ``/stream`` route handler."""
    counters = counters or SessionCounters()
    chart_cache = _ChartCache()

    async def handler(ws: trio_websocket.WebSocketConnection, info: WebSocketRequestInfo) -> None:
        counters.listeners += 1
        session = ListenerSession(ws, info, player=player, hub=hub, db=db, resolver=resolver, chart_cache=chart_cache,
                                  backend=backend)
        try:
            await session.run()
        finally:
            counters.listeners -= 1
            counters.listeners_dropped += int(session.dropped)

    handler.max_message_bytes = STREAM_MAX_MESSAGE_BYTES  # type: ignore[attr-defined]
    return handler
