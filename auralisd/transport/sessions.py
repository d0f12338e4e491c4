"""WebSocket adapters: ``/session`` (a private session), ``/stream`` (a listener of the shared player).

Each connection is its own task. Every connection keeps reading incoming frames for as long as it lives
(trio-websocket stops answering pings and close frames when nobody reads, NOTES.md).

``/session`` (:func:`serve_private_session`): bytes <-> the
:class:`~auralisd.actors.session.PrivateSession` actor. The client sends JSON commands (``play_enhanced``,
``pause``, ``resume``, ``seek``, ``stop``, ``set_preset``, ``set_intensity``), parsed here and handed to
the actor; what the actor says comes back through :class:`_WebSocketSink` as JSON events and binary audio
frames, every send under a timeout (:data:`SEND_TIMEOUT_S`). ``pace`` is ``realtime`` or ``burst``
(flow control is TCP backpressure: a reader that stops reading stops the renders too, and one that
stops for :data:`SEND_TIMEOUT_S` is closed).

``/stream`` (:class:`ListenerSession`): one listener of the shared player. Blocks arrive on a bounded
channel from the player; a listener whose channel fills up (it cannot keep up) is dropped with close
code :data:`CLOSE_TOO_SLOW` and never slows the player or anyone else.

One send policy for both routes (:func:`send_to_peer`): every message leaves within
:data:`SEND_TIMEOUT_S` or the peer is closed with :data:`CLOSE_TOO_SLOW`.

``?format=opus``: a ``/session`` encodes in its own sink (:class:`_OpusWebSocketSink`); a ``/stream``
listener joins its variant's shared Opus stream (:class:`~auralisd.actors.opus_stream.OpusStreamHub`: one
encoder for all). Encoding runs on threads (``SessionBackend.encode``), never on the event loop.

Epochs: a new ``stream_epoch`` starts at every seek, track change and preset/intensity change, and
``audio_stream_start`` precedes its first audio. A preset/intensity change starts its epoch exactly at
the next unsent frame (no gap, no repeat) and crossfades from the old plan to the new one over
:data:`~auralisd.playback.mixer.CROSSFADE_S` (the shared player's crossfade), so it never clicks. On
``/stream`` its ``follows_epoch`` names the epoch whose last frame the new epoch's first one follows
(such a crossfade, or a gapless track change at the end of a track), so a client keeps what it queued.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

import numpy as np
import trio
import trio_websocket

from ..actors.session import (
    COMMAND_BUFFER,
    SESSION_FRAME_S,
    OriginalSide,
    PrivateSession,
    SessionBackend,
    SinkClosed,
)
from ..app.presentation import StreamCounters, decision_event, fingerprint_summary, lwrp_regions
from ..config import STREAM_OUTPUT_NAME
from ..errgroups import first_leaf
from ..protocol.audio_frames import (
    FORMATS,
    MAX_EPOCH,
    OPUS_SAMPLE_RATE,
    VARIANTS,
    AudioFramer,
    FrameError,
    OpusFramer,
    event_message,
    parse_session_command,
    to_opus_frames,
)
from .http import WebSocketRequestInfo

log = logging.getLogger("auralisd.sessions")

MAX_PRIVATE_SESSIONS: Final = 64  # each holds up to 3 chunks + 2 pieces per source (~5 MB at 44.1 kHz); more: 1013
SEND_TIMEOUT_S: Final = 5.0  # a /session peer that takes no message for this long is closed (a frozen peer)
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


class SessionClosed(SinkClosed):
    """The session ends (the peer broke a rule or went away); carries the close code (0: none) and reason."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


async def send_to_peer(ws: trio_websocket.WebSocketConnection, message: str | bytes) -> None:
    """The one send policy of ``/session`` and ``/stream``: every message to a peer leaves within
    :data:`SEND_TIMEOUT_S`, else the peer is frozen and :class:`SessionClosed` (:data:`CLOSE_TOO_SLOW`) ends
    its connection; a peer gone raises :class:`SessionClosed` with no close code. (The shared player's half
    of the policy is the drop rule of :mod:`auralisd.actors.listeners`: it never waits for anyone.)"""
    try:
        with trio.move_on_after(SEND_TIMEOUT_S):
            await ws.send_message(message)
            return
    except trio_websocket.ConnectionClosed:
        raise SessionClosed(0, "the peer went away") from None
    log.info("a WebSocket peer took no message for %.0f s; closing it", SEND_TIMEOUT_S)
    raise SessionClosed(CLOSE_TOO_SLOW, f"the peer took no message for {SEND_TIMEOUT_S:.0f} s")


def _guarded_by(
    nursery: trio.Nursery, closing: list[SessionClosed]
) -> Callable[[Callable[[], Awaitable[None]]], Awaitable[None]]:
    """The wrapper of each task of one peer's nursery: the first to end (a peer gone, frozen or
    breaking a rule, or its work done) ends them all, and a :class:`SessionClosed` is kept in
    ``closing`` for the close code. ``except*``: a task that runs its own nursery (the private
    session does) raises it wrapped in an ExceptionGroup, which a plain ``except`` let through as
    a 50-line ERROR per vanished peer."""

    async def guarded(fn: Callable[[], Awaitable[None]]) -> None:
        try:
            await fn()
        except* SessionClosed as group:
            first = first_leaf(group, SessionClosed)
            if isinstance(first, SessionClosed):
                closing.append(first)
        except* trio_websocket.ConnectionClosed:
            pass
        nursery.cancel_scope.cancel()

    return guarded


async def refuse(ws: trio_websocket.WebSocketConnection, message: str, code: int, reason: str) -> None:
    """Tell the peer why (under the send policy), then close the connection with ``code``."""
    try:
        await send_to_peer(ws, message)
    except SessionClosed:
        pass
    await close_websocket(ws, code, reason=reason[:120])


def query_early(info: WebSocketRequestInfo) -> bool:
    """``/stream?lead=0``: every frame at its play time (a recorder, a speaker with its own device buffer), not
    up to the player's lead ahead (the default: a client that keeps a jitter buffer of the lead, the web page).
    Raises FrameError."""
    lead = info.param("lead", "")
    if lead not in ("", "0"):
        raise FrameError(f"lead must be 0 (each frame at its play time) or absent, got {lead!r}", "invalid_params")
    return lead == ""


def query_format(info: WebSocketRequestInfo) -> tuple[str, str]:
    """``(format, variant)`` from ``?format=f32|s16&variant=mastered|original``; raises FrameError."""
    fmt = info.param("format", "f32")
    variant = info.param("variant", "mastered")
    if fmt not in FORMATS:
        raise FrameError(f"format must be one of {', '.join(FORMATS)}, got {fmt!r}", "invalid_params")
    if variant not in VARIANTS:
        raise FrameError(f"variant must be one of {', '.join(VARIANTS)}, got {variant!r}", "invalid_params")
    return fmt, variant


def _wire_error(exc: BaseException) -> tuple[str, str]:
    """``(code, message)`` for an expected failure (pool job, RPC error, bad value) or ``internal``."""
    from ..app.replies import error_to_wire
    from ..jobs import JobFailed

    if isinstance(exc, JobFailed):
        return exc.code, exc.message.splitlines()[0] if exc.message else exc.code
    wire = error_to_wire(exc)
    if wire["code"] == "internal" and isinstance(exc, ValueError):
        return "invalid_params", str(exc)
    return wire["code"], wire["message"]


# ----------------------------------------------------------------------------------------------------------
# Rendering for private sessions, on top of the daemon's actors (database, fingerprint resolver, mastering)


class _WebSocketSink:
    """A private session's output as WebSocket messages: JSON events and binary audio frames.

    Every send follows the send policy (:func:`send_to_peer`): a frozen peer is closed with
    :data:`CLOSE_TOO_SLOW` instead of holding a session slot forever.
    """

    def __init__(self, ws: trio_websocket.WebSocketConnection, framer: AudioFramer) -> None:
        self._ws = ws
        self._framer = framer

    async def _send(self, message: str | bytes) -> None:
        await send_to_peer(self._ws, message)

    async def event(self, kind: str, **fields: Any) -> None:
        await self._send(event_message(kind, **fields))

    async def decision(self, track_wire: dict[str, Any], plan: Any, inputs: Any) -> None:
        await self._send(event_message("lwrp_decision", **decision_event(track_wire, plan, inputs)))

    async def audio(self, epoch: int, offset_frames: int, samples: np.ndarray) -> None:
        for data in self._framer.frames(epoch, offset_frames, samples):
            await self._send(data)

    async def error(self, exc: BaseException) -> None:
        code, message = _wire_error(exc)
        if code == "internal":
            log.error("/session failed", exc_info=exc)
        await self.event("audio_stream_error", code=code, message=message)


def opus_start_fields(fields: dict[str, Any], sample_rate: int, bitrate_bps: int) -> dict[str, Any]:
    """``audio_stream_start`` of an Opus stream: positions and lengths counted at 48 kHz, like its frames."""
    out = dict(fields, format="opus", sample_rate=OPUS_SAMPLE_RATE, source_sample_rate=sample_rate,
               bitrate_bps=bitrate_bps, offset_frames=to_opus_frames(int(fields.get("offset_frames", 0)), sample_rate))
    if isinstance(fields.get("num_frames"), int):
        out["num_frames"] = to_opus_frames(fields["num_frames"], sample_rate)
    return out


class _OpusWebSocketSink(_WebSocketSink):
    """``/session?format=opus``: the session's own Opus encoder, run on a thread.

    One stream's messages stay in order: every message of an epoch goes out before the next epoch's
    ``audio_stream_start``. A new epoch that does not continue the last one (a seek) ends the Opus stream
    first: its tail goes out, then the event. One that continues it (a preset or intensity change) keeps
    the encoder, whose look-ahead still holds the old epoch's last samples: the next packets belong to the
    old epoch, so the event waits (:attr:`_pending_start`) until the first message of its own epoch, or until
    the stream ends (``audio_stream_end``, an error, a next epoch) with no message of it, when it goes out
    after the old epoch's tail."""

    def __init__(self, ws: trio_websocket.WebSocketConnection, backend: SessionBackend) -> None:
        super().__init__(ws, AudioFramer(backend.sample_rate))
        self._backend = backend
        self._opus = OpusFramer(backend.sample_rate, backend.opus_encoder)
        self._pending_start: tuple[int, dict[str, Any]] | None = None  # (epoch, fields) held back

    async def _send_all(self, messages: list[bytes]) -> None:
        for data in messages:
            pending = self._pending_start
            if pending is not None and int.from_bytes(data[:4], "little") == pending[0] & MAX_EPOCH:
                await self._release_start()
            await self._send(data)

    async def _release_start(self) -> None:
        pending, self._pending_start = self._pending_start, None
        if pending is not None:
            await super().event("audio_stream_start", **pending[1])

    async def event(self, kind: str, **fields: Any) -> None:
        if kind == "audio_stream_start":
            epoch = int(fields["stream_epoch"])
            await self._send_all(await self._backend.encode(self._opus.start_epoch, epoch,
                                                            int(fields["offset_frames"])))
            await self._release_start()  # an epoch that had no message of its own: announced after its tail
            self._pending_start = (epoch, opus_start_fields(fields, self._backend.sample_rate,
                                                            self._backend.opus_bitrate_bps))
            return
        if kind == "audio_stream_end":
            await self._send_all(await self._backend.encode(self._opus.end))
        await self._release_start()
        await super().event(kind, **fields)

    async def audio(self, epoch: int, offset_frames: int, samples: np.ndarray) -> None:
        await self._send_all(await self._backend.encode(self._opus.feed, epoch, offset_frames, samples))


async def serve_private_session(ws: trio_websocket.WebSocketConnection, info: WebSocketRequestInfo,
                                backend: SessionBackend) -> None:
    """One ``/session`` connection: bytes <-> the :class:`~auralisd.actors.session.PrivateSession` actor.

    Reads JSON commands for as long as the connection lives (pings and close frames keep flowing), hands
    them to the session, and closes the connection when the session's sink closes or the peer breaks a
    rule (binary data 1003, garbage or a flood of commands 1008). Cancellation: closes the connection.
    """
    try:
        fmt, variant = query_format(info)
    except FrameError as exc:
        await refuse(ws, event_message("audio_stream_error", code=exc.code, message=str(exc)), CLOSE_POLICY, str(exc))
        return
    _limit_send_buffer(ws)
    sink: _WebSocketSink
    if fmt == "opus":
        sink = _OpusWebSocketSink(ws, backend)
    else:
        sink = _WebSocketSink(ws, AudioFramer(backend.sample_rate, fmt, frame_duration_s=SESSION_FRAME_S))
    session = PrivateSession(backend, sink, variant=variant, fmt=fmt, arrival=info.arrival)
    closing: list[SessionClosed] = []

    async def receive_loop() -> None:
        while True:
            message = await ws.get_message()
            if isinstance(message, (bytes, bytearray)):
                raise SessionClosed(CLOSE_UNSUPPORTED, "/session takes JSON text commands only")
            try:
                command = parse_session_command(message)
            except FrameError as exc:
                if exc.code == "bad_request":
                    raise SessionClosed(CLOSE_POLICY, str(exc)) from None
                await sink.event("audio_stream_error", code=exc.code, message=str(exc))
                continue
            try:
                session.submit_nowait(command)
            except trio.WouldBlock:
                raise SessionClosed(CLOSE_POLICY, f"more than {COMMAND_BUFFER} commands pending") from None

    async with trio.open_nursery() as nursery:
        guarded = _guarded_by(nursery, closing)

        nursery.start_soon(guarded, receive_loop)
        nursery.start_soon(guarded, session.run)
    if closing and closing[0].code:
        await close_websocket(ws, closing[0].code, reason=closing[0].reason[:120])


# ----------------------------------------------------------------------------------------------------------
# Route handlers


def private_session_handler(backend: SessionBackend, counters: StreamCounters | None = None):
    """The ``/session`` route handler."""
    counters = counters or StreamCounters()

    async def handler(ws: trio_websocket.WebSocketConnection, info: WebSocketRequestInfo) -> None:
        if counters.private_sessions >= MAX_PRIVATE_SESSIONS:
            await refuse(ws, event_message("audio_stream_error", code="internal",
                                           message=f"too many private sessions ({MAX_PRIVATE_SESSIONS}); try later"),
                         CLOSE_TRY_LATER, "too many private sessions")
            return
        counters.private_sessions += 1
        try:
            await serve_private_session(ws, info, backend)
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
                 chart_cache: _ChartCache | None = None, backend: SessionBackend | None = None,
                 opus_hub: Any = None) -> None:
        self._ws = ws
        self._opus_hub = opus_hub
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
            early = query_early(self._info)
        except FrameError as exc:
            await refuse(self._ws, event_message("audio_stream_error", code=exc.code, message=str(exc)), CLOSE_POLICY,
                         str(exc))
            return
        _limit_send_buffer(self._ws)
        if fmt == "opus":
            await self._run_opus(variant, early)
            return
        framer = AudioFramer(self._player.sample_rate, fmt, frame_duration_s=STREAM_FRAME_S)
        if variant == "original" and self._backend is None:
            await refuse(self._ws, event_message("audio_stream_error", code="invalid_params",
                                                 message="variant=original is not served here"),
                         CLOSE_POLICY, "variant=original is not served here")
            return
        original = OriginalSide(self._backend) if variant == "original" and self._backend is not None else None
        if original is not None:
            status = await self._player.status()
            original.volume_gain = _volume_gain(status.get("volume", 100))
        sub = await self._player.subscribe(self._max_blocks, early=early)
        events = self._hub.subscribe(LISTENER_EVENTS)
        closing: list[SessionClosed] = []
        try:
            async with trio.open_nursery() as nursery:
                if original is not None:
                    original.nursery = nursery

                guarded = _guarded_by(nursery, closing)

                nursery.start_soon(guarded, self._drain_incoming)
                nursery.start_soon(guarded, lambda: self._forward_events(events, original))
                nursery.start_soon(guarded, lambda: self._pump(sub, framer, fmt, variant, original))
                nursery.start_soon(guarded, sub.wait_dropped)
                nursery.start_soon(guarded, self._decisions)
        finally:
            sub.close()
            self._hub.unsubscribe(events)
            if original is not None:
                original.close()
        if sub.dropped:
            self.dropped = True
            await close_websocket(self._ws, CLOSE_TOO_SLOW, reason="listener fell behind the stream")
        elif closing and closing[0].code:
            self.dropped = closing[0].code == CLOSE_TOO_SLOW
            await close_websocket(self._ws, closing[0].code, reason=closing[0].reason[:120])

    async def _run_opus(self, variant: str, early: bool = True) -> None:
        """``?format=opus``: the variant's shared Opus stream (one encoder for all its listeners)."""
        if self._opus_hub is None or self._backend is None:
            await refuse(self._ws, event_message("audio_stream_error", code="invalid_params",
                                                 message="format=opus is not served here"),
                         CLOSE_POLICY, "format=opus is not served here")
            return
        feed = self._opus_hub.join(variant, early=early)
        events = self._hub.subscribe(LISTENER_EVENTS)
        closing: list[SessionClosed] = []
        try:
            async with trio.open_nursery() as nursery:
                guarded = _guarded_by(nursery, closing)

                nursery.start_soon(guarded, self._drain_incoming)
                nursery.start_soon(guarded, lambda: self._forward_events(events, None))
                nursery.start_soon(guarded, lambda: self._pump_opus(feed, variant))
                nursery.start_soon(guarded, self._decisions)
        finally:
            feed.close()
            self._hub.unsubscribe(events)
        if feed.dropped:
            self.dropped = True
            await close_websocket(self._ws, CLOSE_TOO_SLOW, reason="listener fell behind the stream")
        elif closing and closing[0].code:
            self.dropped = closing[0].code == CLOSE_TOO_SLOW
            await close_websocket(self._ws, closing[0].code, reason=closing[0].reason[:120])

    async def _pump_opus(self, feed: Any, variant: str) -> None:
        from ..actors.opus_stream import OpusStart
        from ..actors.player import StreamEnd, StreamStatus

        rate = self._player.sample_rate
        async for item in feed.receive:
            if isinstance(item, bytes):
                await send_to_peer(self._ws, item)
            elif isinstance(item, OpusStart):
                start = item.start
                fields = opus_start_fields(dict(
                    sample_rate=start.sample_rate, channels=start.channels, variant=variant, track=start.track,
                    preset=start.preset, intensity=start.intensity, plan=start.plan, decision=start.decision,
                    stream_epoch=start.epoch, offset_frames=start.offset_frames, follows_epoch=start.follows_epoch,
                    gain_db=item.gain_db, lead_s=start.lead_s),
                    rate, self._backend.opus_bitrate_bps if self._backend is not None else 0)
                await send_to_peer(self._ws, event_message("audio_stream_start", **fields))
                try:
                    self._decision_send.send_nowait(start)
                except trio.WouldBlock:
                    pass
            elif isinstance(item, StreamStatus):
                await send_to_peer(self._ws, event_message("mastering_status", status=item.status,
                                                           track_id=item.track_id))
            elif isinstance(item, StreamEnd):
                await send_to_peer(self._ws, event_message("audio_stream_end", reason=item.reason))

    async def _drain_incoming(self) -> None:
        """Keep reading so pings and close frames flow; /stream takes no commands."""
        while True:
            await self._ws.get_message()

    async def _forward_events(self, events: Any, original: OriginalSide | None) -> None:
        async for event in events.receive:
            if event.name == "fingerprint_progress":
                await send_to_peer(self._ws, event_message("fingerprint_progress", **event.data))
            elif event.name == "volume" and original is not None:
                original.volume_gain = _volume_gain(event.data.get("volume", 100))
            elif event.name == "mastering":
                await send_to_peer(self._ws, event_message("player_event", event="mastering", data=event.data))

    async def _pump(self, sub: Any, framer: AudioFramer, fmt: str, variant: str,
                    original: OriginalSide | None) -> None:
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
                await send_to_peer(self._ws, data)

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
                await send_to_peer(self._ws, event_message(
                    "audio_stream_start", sample_rate=message.sample_rate, channels=message.channels, format=fmt,
                    variant=variant, track=message.track, preset=message.preset, intensity=message.intensity,
                    plan=message.plan, decision=message.decision, stream_epoch=message.epoch,
                    offset_frames=message.offset_frames, follows_epoch=message.follows_epoch,
                    gain_db=original.gain_db if original is not None else 0.0, lead_s=message.lead_s))
                try:
                    self._decision_send.send_nowait(message)
                except trio.WouldBlock:
                    pass  # decisions are superseded by the next one anyway
            elif isinstance(message, StreamStatus):
                await send_to_peer(self._ws, event_message("mastering_status", status=message.status,
                                                          track_id=message.track_id))
            elif isinstance(message, StreamEnd):
                await send_to_peer(self._ws, event_message("audio_stream_end", reason=message.reason))

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
        await send_to_peer(self._ws, event_message("lwrp_decision", **fields))

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
                            counters: StreamCounters | None = None, backend: SessionBackend | None = None,
                            outputs: Any = None, opus_hub: Any = None):
    """The ``/stream`` route handler. With ``outputs``, the ``stream`` output gates it: while it is
    disabled new listeners are closed with 1013 and the ones listening are closed when it is disabled."""
    counters = counters or StreamCounters()
    chart_cache = _ChartCache()

    async def handler(ws: trio_websocket.WebSocketConnection, info: WebSocketRequestInfo) -> None:
        if outputs is not None and not outputs.is_enabled(STREAM_OUTPUT_NAME):
            await close_websocket(ws, CLOSE_TRY_LATER, reason="the stream output is disabled")
            return
        counters.listeners += 1
        session = ListenerSession(ws, info, player=player, hub=hub, db=db, resolver=resolver, chart_cache=chart_cache,
                                  backend=backend, opus_hub=opus_hub)
        try:
            if outputs is None:
                await session.run()
            else:
                async with trio.open_nursery() as nursery:
                    async def gate() -> None:
                        await outputs.wait_disabled(STREAM_OUTPUT_NAME)
                        nursery.cancel_scope.cancel()

                    nursery.start_soon(gate)
                    await session.run()
                    nursery.cancel_scope.cancel()
                if not outputs.is_enabled(STREAM_OUTPUT_NAME):
                    with trio.move_on_after(CLOSE_TIMEOUT_S):
                        await close_websocket(ws, CLOSE_TRY_LATER, reason="the stream output is disabled")
        finally:
            counters.listeners -= 1
            counters.listeners_dropped += int(session.dropped)

    handler.max_message_bytes = STREAM_MAX_MESSAGE_BYTES  # type: ignore[attr-defined]
    return handler
