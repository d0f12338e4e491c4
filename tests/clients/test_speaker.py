"""``auralisctl listen --play`` timing, on trio's MockClock with a fake connection and a fake sound card.

Reconnection backs off 0.5, 1, 2, 4, 8, 10, 10 s and starts again at 0.5 s once audio flowed; a pause
closes the sink after the queued audio and a stream start reopens it; a stalled sink never stops the
receiver (the oldest audio is dropped, bounded); a sink that dies is started again.
"""

from __future__ import annotations

import json
import struct
from contextlib import asynccontextmanager

import pytest
import trio
import trio.testing

from clients.speaker import (
    BUFFER_S,
    SINK_RETRY_S,
    Backoff,
    Close,
    ConnectionLost,
    Open,
    PcmBuffer,
    Sink,
    SinkGone,
    Speaker,
    SpeakerError,
    SpeakerIO,
    find_player,
    player_command,
)

RATE = 44_100
BLOCK = 2205  # 50 ms
BLOCK_BYTES = BLOCK * 2 * 4


def start_event(epoch: int = 1, rate: int = RATE) -> str:
    return json.dumps({"type": "audio_stream_start", "stream_epoch": epoch, "sample_rate": rate, "channels": 2,
                       "offset_frames": 0})


def end_event(reason: str) -> str:
    return json.dumps({"type": "audio_stream_end", "reason": reason})


def frame(epoch: int, seq: int) -> bytes:
    return struct.pack("<IIQ", epoch, seq, seq * BLOCK) + bytes([seq % 251]) * BLOCK_BYTES


class Changes:
    """Wakes waiters whenever a fake records something: tests wait on it, never by polling."""

    def __init__(self) -> None:
        self._event = trio.Event()

    def changed(self) -> None:
        self._event.set()
        self._event = trio.Event()

    async def wait_until(self, predicate) -> None:
        while not predicate():
            await self._event.wait()


CHANGES: Changes | None = None


def changed() -> None:
    if CHANGES is not None:
        CHANGES.changed()


async def wait_until(predicate) -> None:
    assert CHANGES is not None
    await CHANGES.wait_until(predicate)


@pytest.fixture(autouse=True)
def changes():
    global CHANGES
    CHANGES = Changes()
    yield CHANGES
    CHANGES = None


class FakeServer:
    """Connections the test scripts: each is a memory channel; ``refuse`` makes connecting fail."""

    def __init__(self) -> None:
        self.refuse = True
        self.current: trio.MemorySendChannel | None = None
        self.connected = trio.Event()

    def io_connect(self):
        server = self

        @asynccontextmanager
        async def connect():
            changed()
            if server.refuse:
                raise ConnectionLost("connection refused")
            send, receive = trio.open_memory_channel(1000)
            server.current = send
            server.connected.set()

            class Conn:
                async def receive(self):
                    try:
                        return await receive.receive()
                    except trio.EndOfChannel:
                        raise ConnectionLost("closed") from None

            yield Conn()

        return connect

    async def send(self, *messages) -> None:
        assert self.current is not None
        for m in messages:
            await self.current.send(m)

    def drop(self) -> None:
        assert self.current is not None
        self.current.close()
        self.current = None
        self.connected = trio.Event()


class FakeSink:
    def __init__(self, card: FakeCard, mark: Open) -> None:
        self.card = card
        self.mark = mark
        self.closed = False

    async def write(self, pcm: bytes) -> None:
        if self.card.dead:
            changed()
            raise SinkGone("the sound server went away")
        await self.card.unstalled.wait()
        await trio.sleep(len(pcm) / (self.mark.sample_rate * 8))  # plays in real time
        self.card.written.append((trio.current_time(), len(pcm)))
        self.card.wrote.set()
        changed()

    async def finish(self) -> None:
        self.closed = True
        self.card.closes.append(trio.current_time())
        changed()


class FakeCard:
    def __init__(self) -> None:
        self.opens: list[tuple[float, Open]] = []
        self.closes: list[float] = []
        self.written: list[tuple[float, int]] = []
        self.wrote = trio.Event()
        self.unstalled = trio.Event()
        self.unstalled.set()
        self.dead = False

    async def open_sink(self, mark: Open) -> Sink:
        self.opens.append((trio.current_time(), mark))
        changed()
        return FakeSink(self, mark)


async def test_reconnect_backs_off_and_resets_after_audio(autojump_clock: trio.testing.MockClock) -> None:
    server, card = FakeServer(), FakeCard()
    speaker = Speaker(SpeakerIO(server.io_connect(), card.open_sink))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(speaker.run)
        await wait_until(lambda: len(speaker.stats.connect_times) >= 8)
        gaps = [b - a for a, b in zip(speaker.stats.connect_times, speaker.stats.connect_times[1:], strict=False)]
        assert gaps[:7] == pytest.approx([0.5, 1, 2, 4, 8, 10, 10])
        server.refuse = False
        await server.connected.wait()
        await server.send(start_event(), *[frame(1, i) for i in range(10)])
        await card.wrote.wait()
        dropped_at = trio.current_time()
        n = len(speaker.stats.connect_times)
        server.drop()  # the daemon restarts: its connection goes away
        server.refuse = True
        await wait_until(lambda: len(speaker.stats.connect_times) >= n + 2)
        assert speaker.stats.connect_times[n] - dropped_at == pytest.approx(0.5, abs=0.02)  # reset after audio
        assert speaker.stats.connect_times[n + 1] - speaker.stats.connect_times[n] == pytest.approx(1.0)
        assert card.closes, "the sink is closed while there is no stream"
        nursery.cancel_scope.cancel()


async def test_pause_closes_the_sink_after_the_queued_audio_and_play_reopens_it(
        autojump_clock: trio.testing.MockClock) -> None:
    server, card = FakeServer(), FakeCard()
    server.refuse = False
    speaker = Speaker(SpeakerIO(server.io_connect(), card.open_sink))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(speaker.run)
        await server.connected.wait()
        await server.send(start_event(1), *[frame(1, i) for i in range(20)], end_event("paused"))
        await wait_until(lambda: len(card.closes) == 1)
        assert sum(n for _, n in card.written) == 20 * BLOCK_BYTES  # everything queued played before closing
        assert card.closes[0] >= card.written[-1][0]
        assert not speaker.sink_open
        writes = len(card.written)
        await trio.sleep(30)  # a long pause: nothing is written, nothing reopened, no reconnect
        assert len(card.opens) == 1 and len(card.written) == writes
        assert speaker.stats.connections == 1
        await server.send(start_event(2), *[frame(2, i) for i in range(4)])
        await wait_until(lambda: len(card.opens) == 2)
        await wait_until(lambda: sum(n for _, n in card.written) == 24 * BLOCK_BYTES)
        assert speaker.sink_open
        # A stream at another rate (Opus: 48 kHz) reopens the sink at that rate.
        await server.send(start_event(3, 48_000), frame(3, 0))
        await wait_until(lambda: len(card.opens) == 3)
        assert card.opens[-1][1].sample_rate == 48_000 and len(card.closes) == 2
        nursery.cancel_scope.cancel()


async def test_a_stalled_sink_never_stops_the_receiver(autojump_clock: trio.testing.MockClock) -> None:
    server, card = FakeServer(), FakeCard()
    server.refuse = False
    speaker = Speaker(SpeakerIO(server.io_connect(), card.open_sink))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(speaker.run)
        await server.connected.wait()
        await server.send(start_event(1), frame(1, 0))
        await card.wrote.wait()
        card.unstalled = trio.Event()  # the sound server is stopped (SIGSTOP)
        for i in range(1, 201):  # 10 s of stream keep arriving at real-time pace
            await server.send(frame(1, i))
            await trio.sleep(0.05)
        limit = BUFFER_S * RATE * 8
        assert speaker.buffer.pcm_bytes <= limit  # bounded: 1 s held
        assert speaker.buffer.dropped_bytes >= 200 * BLOCK_BYTES - limit - 2 * BLOCK_BYTES
        assert speaker.stats.connections == 1  # still the same connection: it kept reading
        card.unstalled.set()  # SIGCONT
        await server.send(frame(1, 201))
        await wait_until(lambda: speaker.buffer.pcm_bytes == 0)
        assert card.written[-1][1] == BLOCK_BYTES
        nursery.cancel_scope.cancel()


async def test_a_sink_that_dies_is_started_again(autojump_clock: trio.testing.MockClock) -> None:
    server, card = FakeServer(), FakeCard()
    server.refuse = False
    speaker = Speaker(SpeakerIO(server.io_connect(), card.open_sink))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(speaker.run)
        await server.connected.wait()
        await server.send(start_event(1), frame(1, 0))
        await card.wrote.wait()
        card.dead = True
        died_at = trio.current_time()
        await server.send(frame(1, 1))
        await wait_until(lambda: speaker.stats.sink_failures == 1)
        card.dead = False
        await server.send(frame(1, 2))
        await wait_until(lambda: len(card.opens) == 2)
        assert card.opens[1][0] - died_at >= SINK_RETRY_S
        nursery.cancel_scope.cancel()


def test_backoff_doubles_to_its_cap_and_resets() -> None:
    b = Backoff(0.5, 10.0)
    assert [b.next_delay() for _ in range(7)] == [0.5, 1, 2, 4, 8, 10, 10]
    b.reset()
    assert b.next_delay() == 0.5


def test_buffer_drops_the_oldest_audio_never_a_mark() -> None:
    buf = PcmBuffer(10)
    buf.push(Open(RATE, 2, "f32"))
    for i in range(5):
        buf.push(bytes([i]) * 4)
    buf.push(Close("paused"))
    assert buf.pcm_bytes == 8 and buf.dropped_bytes == 12
    items = list(buf._items)
    assert isinstance(items[0], Open) and isinstance(items[-1], Close)
    assert items[1:3] == [b"\x03" * 4, b"\x04" * 4]


def test_player_choice_and_commands() -> None:
    assert find_player(None, which=lambda n: "/usr/bin/" + n if n in ("paplay", "aplay") else None) == "paplay"
    assert find_player("aplay", which=lambda n: "/usr/bin/aplay") == "aplay"
    with pytest.raises(SpeakerError, match="pw-play is not installed"):
        find_player("pw-play", which=lambda n: None)
    with pytest.raises(SpeakerError, match="no audio player found"):
        find_player(None, which=lambda n: None)
    assert player_command("paplay", 48_000, 2, "f32")[:5] == ["paplay", "--raw", "--rate=48000", "--channels=2",
                                                              "--format=float32le"]
    assert player_command("aplay", RATE, 2, "s16") == ["aplay", "-q", "-t", "raw", "-f", "S16_LE", "-c", "2", "-r",
                                                       "44100", "--buffer-time=200000", "-"]
    assert player_command("pw-play", RATE, 2, "f32") == ["pw-play", "--rate", "44100", "--channels", "2", "--format",
                                                         "f32", "--latency", "200ms", "-"]
