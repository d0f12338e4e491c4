"""``auralisctl listen --play``: the shared stream on this machine's speakers, for as long as it runs.

Three tasks joined by one bounded buffer (trio; imported only for ``--play``):

- the **receiver** keeps one WebSocket to ``/stream`` open, reconnecting with :class:`Backoff` (0.5 s
  doubling to 10 s, back to 0.5 s once audio flowed) after a drop, a refused connection or a daemon
  restart. It never waits for the sound card: audio goes into :class:`PcmBuffer`, which holds at most
  :data:`BUFFER_S` seconds and drops the oldest beyond (a stalled sound server costs stale audio,
  never the connection: the daemon would drop a listener that stopped reading);
- the **writer** feeds the player program (``pw-play``, ``paplay`` or ``aplay``: a :class:`Sink`)
  from the buffer. ``audio_stream_end`` (pause, stop, end of the queue) closes the sink once what was
  queued has played, so a paused stream makes no underrun noise; the next ``audio_stream_start`` opens
  it again, at the stream's rate. A sink that dies (the sound server went away) is reopened after
  :data:`SINK_RETRY_S`;
- SIGINT/SIGTERM cancel both: the player program is stopped and the command exits 0.

The connection and the sink are injected (:class:`SpeakerIO`), so the timing (backoff, pause, stalls)
is tested on trio's MockClock with fakes, and end to end against a PulseAudio null sink.
"""

from __future__ import annotations

import json
import logging
import shutil
import signal
import struct
import subprocess
import sys
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import trio

log = logging.getLogger("auralisctl.speaker")

PLAYERS: Final = ("pw-play", "paplay", "aplay")  # tried in this order: PipeWire, PulseAudio, ALSA
BACKOFF_FIRST_S: Final = 0.5
BACKOFF_MAX_S: Final = 10.0
BUFFER_S: Final = 1.0  # audio held between the WebSocket and the player program; older is dropped beyond
SINK_RETRY_S: Final = 1.0  # a player program that died is started again after this long
SINK_CLOSE_TIMEOUT_S: Final = 2.0  # a player asked to finish (pause) gets this long to drain, then is killed
PLAYER_LATENCY_MS: Final = 200  # the player program's own buffer: short, so a pause is heard at once
PCM_HEADER: Final = struct.Struct("<IIQ")  # docs/protocol.md, binary audio frames
SAMPLE_FORMATS: Final = {"f32": 4, "s16": 2}


class SpeakerError(Exception):
    """A problem the user must fix (no player program found): reported in one line, exit status 1."""


def player_command(player: str, sample_rate: int, channels: int, sample_format: str) -> list[str]:
    """The argv that plays raw interleaved little-endian PCM from stdin with ``player``."""
    if player == "pw-play":
        return ["pw-play", "--rate", str(sample_rate), "--channels", str(channels),
                "--format", "f32" if sample_format == "f32" else "s16", "--latency", f"{PLAYER_LATENCY_MS}ms", "-"]
    if player == "paplay":
        return ["paplay", "--raw", f"--rate={sample_rate}", f"--channels={channels}",
                "--format=" + ("float32le" if sample_format == "f32" else "s16le"), f"--latency-msec={PLAYER_LATENCY_MS}",
                "--client-name=auralis", "--stream-name=Auralis"]
    if player == "aplay":
        return ["aplay", "-q", "-t", "raw", "-f", "FLOAT_LE" if sample_format == "f32" else "S16_LE",
                "-c", str(channels), "-r", str(sample_rate), f"--buffer-time={PLAYER_LATENCY_MS * 1000}", "-"]
    raise SpeakerError(f"unknown player {player!r}; expected one of {', '.join(PLAYERS)}")


def find_player(named: str | None = None, which: Callable[[str], str | None] = shutil.which) -> str:
    """``named`` when it is installed, else the first of :data:`PLAYERS` found on ``$PATH``."""
    candidates = (named,) if named else PLAYERS
    for name in candidates:
        if name not in PLAYERS:
            raise SpeakerError(f"unknown player {name!r}; expected one of {', '.join(PLAYERS)}")
        if which(name):
            return name
    if named:
        raise SpeakerError(f"{named} is not installed (or not on $PATH)")
    raise SpeakerError("no audio player found: install pipewire-bin (pw-play), pulseaudio-utils (paplay) "
                       "or alsa-utils (aplay)")


@dataclass
class Backoff:
    """Reconnection delays: ``first_s``, doubling up to ``max_s``; :meth:`reset` once a connection worked."""

    first_s: float = BACKOFF_FIRST_S
    max_s: float = BACKOFF_MAX_S
    _next_s: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        self._next_s = self.first_s

    def next_delay(self) -> float:
        delay = self._next_s
        self._next_s = min(self.max_s, self._next_s * 2)
        return delay

    def reset(self) -> None:
        self._next_s = self.first_s


@dataclass(frozen=True)
class Open:
    """Open the sink (a stream starts): rate, channels and sample format of what follows."""

    sample_rate: int
    channels: int
    sample_format: str


@dataclass(frozen=True)
class Close:
    """Close the sink once what was queued before has been written (pause, stop, a lost connection)."""

    reason: str


class PcmBuffer:
    """The bounded FIFO between the receiver and the writer: PCM bytes and :class:`Open`/:class:`Close` marks.

    At most ``max_bytes`` of PCM; pushing more drops the oldest PCM (counted in ``dropped_bytes``), never
    a mark. Memory bound: ``max_bytes`` plus one message.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.dropped_bytes = 0
        self._items: deque[bytes | Open | Close] = deque()
        self._pcm_bytes = 0
        self._changed = trio.Event()

    def set_limit(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes

    def push(self, item: bytes | Open | Close) -> None:
        self._items.append(item)
        if isinstance(item, bytes):
            self._pcm_bytes += len(item)
            while self._pcm_bytes > self.max_bytes:
                for i, old in enumerate(self._items):
                    if isinstance(old, bytes):
                        del self._items[i]
                        self._pcm_bytes -= len(old)
                        self.dropped_bytes += len(old)
                        break
        self._changed.set()

    async def pop(self) -> bytes | Open | Close:
        while not self._items:
            self._changed = trio.Event()
            await self._changed.wait()
        item = self._items.popleft()
        if isinstance(item, bytes):
            self._pcm_bytes -= len(item)
        return item

    @property
    def pcm_bytes(self) -> int:
        return self._pcm_bytes


class Sink(Protocol):
    """A running player program (or a test's fake)."""

    async def write(self, pcm: bytes) -> None:
        """Raises :class:`SinkGone` when the program died."""

    async def finish(self) -> None:
        """Let it play what it holds and exit (at most :data:`SINK_CLOSE_TIMEOUT_S`), then kill it."""


class SinkGone(Exception):
    """The player program exited (the sound server went away, or it was killed)."""


class Connection(Protocol):
    async def receive(self) -> str | bytes:
        """The next message; raises :class:`ConnectionLost` when the connection is gone."""


class ConnectionLost(Exception):
    """The WebSocket is closed or broken, or could not be opened (``reason`` says which)."""


@dataclass
class SpeakerIO:
    """What the speaker does to the outside world (real: WebSocket + player program; tests: fakes)."""

    connect: Callable[[], AbstractAsyncContextManager[Connection]]
    open_sink: Callable[[Open], Awaitable[Sink]]


@dataclass
class SpeakerStats:
    connections: int = 0
    connect_failures: int = 0
    sinks_opened: int = 0
    sinks_closed: int = 0
    sink_failures: int = 0
    bytes_written: int = 0
    connect_times: list[float] = field(default_factory=list)  # trio.current_time() of each attempt


class Speaker:
    """Plays the stream from ``io.connect()`` on sinks from ``io.open_sink()`` until cancelled.

    ``decode(message) -> (epoch, pcm bytes)`` turns a binary message into PCM (PCM frames, or Opus
    decoded); ``fmt`` is what the sink is told (``f32`` or ``s16``).
    """

    def __init__(self, io: SpeakerIO, *, fmt: str = "f32", decode: Callable[[bytes], tuple[int, bytes]] | None = None,
                 backoff: Backoff | None = None, log_line: Callable[[str], None] | None = None) -> None:
        self._io = io
        self._fmt = fmt
        self._decode = decode or _decode_pcm
        self.backoff = backoff or Backoff()
        self.buffer = PcmBuffer(int(BUFFER_S * 44_100) * 2 * SAMPLE_FORMATS.get(fmt, 4))
        self.stats = SpeakerStats()
        self.sink_open = False
        self._say = log_line or (lambda text: None)
        self.audio_flowing = trio.Event()  # set at the first audio written (tests wait on it)
        self._got_audio = False  # the current connection delivered audio (then the backoff starts again)

    async def run(self) -> None:
        """Receive and play until cancelled. Cancellation: stops the player program."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._receive_forever)
            nursery.start_soon(self._write_forever)

    # ------------------------------------------------------------------ receiver
    async def _receive_forever(self) -> None:
        while True:
            self.stats.connect_times.append(trio.current_time())
            self._got_audio = False
            try:
                async with self._io.connect() as connection:
                    self.stats.connections += 1
                    await self._receive(connection)
            except ConnectionLost as exc:
                if not self._got_audio:
                    self.stats.connect_failures += 1
                self._say(f"stream lost ({exc}); reconnecting")
            self.buffer.push(Close("connection lost"))
            if self._got_audio:
                self.backoff.reset()  # it worked: a drop or a daemon restart is retried at once
            await trio.sleep(self.backoff.next_delay())

    async def _receive(self, connection: Connection) -> None:
        """Read until the connection is lost (:class:`ConnectionLost`); sets ``_got_audio`` at the first audio."""
        epoch: int | None = None
        while True:
            message = await connection.receive()
            if isinstance(message, str):
                event = json.loads(message)
                kind = event.get("type") if isinstance(event, dict) else None
                if kind == "audio_stream_start":
                    epoch = int(event["stream_epoch"])
                    mark = Open(int(event["sample_rate"]), int(event["channels"]), self._fmt)
                    self.buffer.set_limit(int(BUFFER_S * mark.sample_rate) * mark.channels * SAMPLE_FORMATS[self._fmt])
                    self.buffer.push(mark)
                elif kind == "audio_stream_end":
                    epoch = None
                    self.buffer.push(Close(str(event.get("reason", "end"))))
                continue
            frame_epoch, pcm = self._decode(bytes(message))
            if epoch is None or frame_epoch != epoch or not pcm:
                continue
            self._got_audio = True
            self.buffer.push(pcm)

    # ------------------------------------------------------------------ writer
    async def _write_forever(self) -> None:
        sink: Sink | None = None
        wanted: Open | None = None
        try:
            while True:
                item = await self.buffer.pop()
                if isinstance(item, Open):
                    if sink is not None and item != wanted:
                        await self._close(sink)
                        sink = None
                    wanted = item
                    continue
                if isinstance(item, Close):
                    wanted = None
                    if sink is not None:
                        await self._close(sink)
                        sink = None
                    continue
                if wanted is None:
                    continue  # audio without a stream start: nothing to play it at
                while True:
                    if sink is None:
                        sink = await self._open(wanted)
                        if sink is None:
                            break  # could not start the player: this audio is lost, the next is tried again
                    try:
                        await sink.write(item)
                    except SinkGone as exc:
                        self.stats.sink_failures += 1
                        self._say(f"the audio player stopped ({exc}); starting it again")
                        sink = None
                        self.sink_open = False
                        await trio.sleep(SINK_RETRY_S)
                        continue
                    self.stats.bytes_written += len(item)
                    self.audio_flowing.set()
                    break
        finally:
            if sink is not None:
                with trio.CancelScope(shield=True):
                    await self._close(sink)

    async def _open(self, mark: Open) -> Sink | None:
        try:
            sink = await self._io.open_sink(mark)
        except (OSError, SinkGone) as exc:
            self.stats.sink_failures += 1
            self._say(f"cannot start the audio player: {exc}")
            await trio.sleep(SINK_RETRY_S)
            return None
        self.stats.sinks_opened += 1
        self.sink_open = True
        return sink

    async def _close(self, sink: Sink) -> None:
        self.sink_open = False
        self.stats.sinks_closed += 1
        await sink.finish()


def _decode_pcm(message: bytes) -> tuple[int, bytes]:
    if len(message) < PCM_HEADER.size:
        return -1, b""
    epoch, _sequence, _offset = PCM_HEADER.unpack_from(message)
    return epoch, message[PCM_HEADER.size :]


# ---------------------------------------------------------------------- the real world


class ProcessSink:
    """A player program fed on its stdin."""

    def __init__(self, process: trio.Process) -> None:
        self._process = process

    @classmethod
    async def start(cls, argv: Sequence[str]) -> ProcessSink:
        process = await trio.lowlevel.open_process(list(argv), stdin=subprocess.PIPE)
        return cls(process)

    async def write(self, pcm: bytes) -> None:
        stdin = self._process.stdin
        if stdin is None or self._process.poll() is not None:
            raise SinkGone(f"exit status {self._process.returncode}")
        try:
            await stdin.send_all(pcm)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            raise SinkGone(f"exit status {self._process.poll()}") from None

    async def finish(self) -> None:
        with trio.CancelScope(shield=True):
            if self._process.stdin is not None:
                try:
                    await self._process.stdin.aclose()
                except (trio.BrokenResourceError, OSError):
                    pass
            with trio.move_on_after(SINK_CLOSE_TIMEOUT_S):
                await self._process.wait()
                return
            self._process.kill()
            await self._process.wait()


class WebSocketConnection:
    def __init__(self, ws: Any) -> None:
        self._ws = ws

    async def receive(self) -> str | bytes:
        import trio_websocket

        try:
            return await self._ws.get_message()
        except trio_websocket.ConnectionClosed as exc:
            reason = exc.reason
            text = "closed" if reason is None else f"closed: {reason.code} {reason.reason or ''}".strip()
            raise ConnectionLost(text) from None


def websocket_connector(url: str, headers: list[tuple[str, str]], timeout_s: float = 10.0
                        ) -> Callable[[], AbstractAsyncContextManager[Connection]]:
    import trio_websocket

    @asynccontextmanager
    async def connect() -> AsyncIterator[Connection]:
        lost: str | None = None
        try:
            async with trio_websocket.open_websocket_url(
                    url, extra_headers=[(k.encode(), v.encode()) for k, v in headers],
                    max_message_size=16 * 1024 * 1024, connect_timeout=timeout_s, disconnect_timeout=1.0) as ws:
                yield WebSocketConnection(ws)
        except (OSError, trio_websocket.HandshakeError, trio_websocket.ConnectionClosed) as exc:
            cause = exc.__cause__ or exc.__context__
            lost = f"cannot connect to {url}: {str(exc) or (str(cause) if cause else '') or type(exc).__name__}"
        except BaseExceptionGroup as group:  # trio-websocket's nursery may wrap them
            rest = group.split((OSError, trio_websocket.HandshakeError, trio_websocket.ConnectionClosed,
                                ConnectionLost))[1]
            if rest is not None:
                raise
            lost = f"the connection to {url} failed"
        if lost is not None:
            raise ConnectionLost(lost)

    return connect


async def play_stream(url: str, headers: list[tuple[str, str]], *, player: str, fmt: str,
                      decode: Callable[[bytes], tuple[int, bytes]] | None, quiet: bool = False) -> None:
    """Run the speaker until SIGINT or SIGTERM; returns normally then (the caller exits 0)."""

    def say(text: str) -> None:
        if not quiet:
            print(f"auralisctl: {text}", file=sys.stderr)

    async def open_sink(mark: Open) -> Sink:
        return await ProcessSink.start(player_command(player, mark.sample_rate, mark.channels, mark.sample_format))

    speaker = Speaker(SpeakerIO(websocket_connector(url, headers), open_sink), fmt=fmt, decode=decode, log_line=say)
    say(f"playing {url} through {player} (Ctrl-C to stop)")
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            async def stop_on_signal() -> None:
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    return

            nursery.start_soon(stop_on_signal)
            nursery.start_soon(speaker.run)
