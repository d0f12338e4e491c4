"""Opus on the WebSocket, sans-IO: the version-1 Opus message layout and :class:`OpusFramer`'s bookkeeping.

The framer runs a real libopus encoder (``auralis.opus``); what it sends is decoded here as a third-party
client would (docs/protocol.md): reset the decoder on RESET, decode every packet, drop ``skip``, keep
``keep``. The result must be the input, resampled to 48 kHz, at the offsets the headers claim.
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
import trio

from auralis.opus import OpusDecoder, OpusEncoder
from auralis.synth import make_music
from auralisd.protocol.audio_frames import (
    OPUS_HEADER_BYTES,
    FrameError,
    OpusFrame,
    OpusFramer,
    decode_opus_frame,
    encode_opus_frame,
    to_opus_frames,
)
from tests.helpers import resample_reference

RATE = 44_100


class SubscriptionStandIn:
    """What the Opus hub uses of a player subscription: a channel of messages, never dropped."""

    def __init__(self, capacity: int) -> None:
        self.send, self.receive = trio.open_memory_channel(capacity)

    async def wait_dropped(self) -> None:
        await trio.sleep_forever()

    def close(self) -> None:
        self.receive.close()


def decode_messages(messages: list[bytes]) -> list[tuple[OpusFrame, np.ndarray]]:
    """What a client does: one decoder per Opus stream, skip then keep per message."""
    out = []
    decoder: OpusDecoder | None = None
    for data in messages:
        frame = decode_opus_frame(data)
        if frame.reset or decoder is None:
            decoder = OpusDecoder(pre_skip=0)
        audio = np.concatenate([decoder.decode(p) for p in frame.packets])
        out.append((frame, audio[frame.skip : frame.skip + frame.keep]))
    return out


def test_opus_message_round_trip_and_malformed_input() -> None:
    data = encode_opus_frame(7, 3, 123_456, [b"\x01\x02", b"\x03"], reset=True, skip=312, keep=1000)
    frame = decode_opus_frame(data)
    assert (frame.stream_epoch, frame.sequence, frame.offset_frames, frame.reset, frame.skip, frame.keep) == (
        7, 3, 123_456, True, 312, 1000)
    assert frame.packets == (b"\x01\x02", b"\x03")
    assert data[16] == 1  # layout version
    for bad in (data[:10], data[:-1], data + b"\x00", data[:16] + b"\x02" + data[17:],
                encode_opus_frame(1, 0, 0, [b"\x01"], reset=False, skip=0, keep=0)[:OPUS_HEADER_BYTES - 1] + b"\x01",
                data[:18] + struct.pack("<HI", 900, 1100) + data[24:]):
        with pytest.raises(FrameError):
            decode_opus_frame(bad)
    with pytest.raises(ValueError):
        encode_opus_frame(1, 0, 0, [], reset=False, skip=0, keep=0)


def test_offsets_at_48_khz() -> None:
    assert to_opus_frames(44_100, 44_100) == 48_000
    assert to_opus_frames(12_345, 48_000) == 12_345
    assert to_opus_frames(1, 44_100) == 1  # 1.088 rounds to 1


def _feed(framer: OpusFramer, epoch: int, start: int, x: np.ndarray, block: int = 2205) -> list[bytes]:
    out = framer.start_epoch(epoch, start)
    for i in range(0, x.shape[0], block):
        out += framer.feed(epoch, start + i, x[i : i + block])
    return out


def test_framer_keeps_one_stream_across_a_continuing_epoch_and_resets_at_a_seek() -> None:
    x = make_music(6.0, RATE, seed=3)
    framer = OpusFramer(RATE, lambda: OpusEncoder(RATE))
    messages = _feed(framer, 1, 0, x[: 2 * RATE])  # epoch 1: 0-2 s
    messages += _feed(framer, 2, 2 * RATE, x[2 * RATE : 3 * RATE])  # epoch 2 continues (a preset change)
    messages += _feed(framer, 3, 4 * RATE, x[4 * RATE : 6 * RATE])  # epoch 3: a seek to 4 s
    messages += framer.end()
    assert framer.end() == []
    decoded = decode_messages(messages)
    frames = [f for f, _ in decoded]
    assert [f.reset for f in frames].count(True) == 2 and frames[0].reset  # two Opus streams: 0-3 s, 4-6 s
    assert framer.streams_opened == 2

    for epoch in (1, 2, 3):
        mine = [f for f in frames if f.stream_epoch == epoch]
        assert [f.sequence for f in mine] == list(range(len(mine)))
        for a, b in zip(mine, mine[1:], strict=False):
            assert b.offset_frames == a.offset_frames + a.keep
    assert frames[0].offset_frames == 0
    first3 = next(f for f in frames if f.stream_epoch == 3)
    assert first3.reset and first3.offset_frames == to_opus_frames(4 * RATE, RATE)
    first2 = next(f for f in frames if f.stream_epoch == 2)
    assert not first2.reset
    assert 0 <= first2.offset_frames - to_opus_frames(2 * RATE, RATE) < 960  # within one packet of the epoch start

    # The two streams decode to the input (resampled to 48 kHz), sample-aligned at the claimed offsets.
    reference = resample_reference(x, 44_100, 48_000)
    for lo_s, hi_s in ((0, 3), (4, 6)):
        parts = [(f, a) for f, a in decoded if lo_s * 48_000 <= f.offset_frames < hi_s * 48_000]
        audio = np.concatenate([a for _, a in parts])
        start = parts[0][0].offset_frames
        assert audio.shape[0] == (hi_s - lo_s) * 48_000  # nothing lost, nothing repeated, end padding trimmed
        ref = reference[start + 2000 : start + audio.shape[0] - 2000]
        err = audio[2000:-2000] - ref
        assert 10 * np.log10(np.mean(ref**2) / np.mean(err**2)) > 20


def test_an_end_then_the_same_offset_opens_a_new_stream() -> None:
    """Pause (end) and resume where it stopped: the tail went out with the end, the resume resets."""
    x = make_music(2.0, RATE, seed=5)
    framer = OpusFramer(RATE, lambda: OpusEncoder(RATE))
    messages = _feed(framer, 1, 0, x[:RATE]) + framer.end() + _feed(framer, 2, RATE, x[RATE:]) + framer.end()
    decoded = decode_messages(messages)
    assert sum(f.keep for f, _ in decoded) == 96_000
    assert [f.reset for f, _ in decoded].count(True) == 2


async def test_a_failing_shared_encoder_closes_its_listeners_and_spares_the_hub(caplog) -> None:
    """An encoder that raises ends that shared stream (its listeners' feeds close), never the hub."""
    from auralisd.actors.opus_stream import OpusStreamHub
    from auralisd.actors.player import PcmBlock, StreamStart

    class Player:
        sample_rate = RATE

        def __init__(self) -> None:
            self.subs: list[SubscriptionStandIn] = []
            self.subscribed = trio.Event()

        async def subscribe(self, max_blocks: int, *, early: bool = False) -> SubscriptionStandIn:
            self.subs.append(SubscriptionStandIn(10))
            self.subscribed.set()
            return self.subs[-1]

    class Broken:
        pre_skip = 312

        def encode(self, samples):
            raise RuntimeError("encoder exploded")

        def flush(self):
            return []

    class Backend:
        opus_bitrate_bps = 160_000

        def opus_encoder(self):
            return Broken()

        async def encode(self, fn, *args):
            return fn(*args)

    player = Player()
    hub = OpusStreamHub(player, None, Backend())  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        feed = hub.join("mastered")
        await player.subscribed.wait()
        start = StreamStart(1, 0, RATE, 2, {"track_id": 1}, "adaptive", 1.0, None, None)
        await player.subs[0].send.send(start)
        await player.subs[0].send.send(PcmBlock(1, 0, np.zeros((2205, 2), np.float32), 1))
        items = [item async for item in feed.receive]  # ends when the failed stream closes its feeds
        assert items == []  # the start goes out with its epoch's first message, which never came
        assert hub.encoders == 0
        assert "encoder exploded" in caplog.text
        again = hub.join("mastered")  # the hub still serves: a new listener starts a new stream
        assert hub.encoders == 1
        again.close()
        nursery.cancel_scope.cancel()


def test_framer_keeps_one_stream_through_a_gapless_track_change() -> None:
    """Two tracks that split one piece, the second following the first (``follows_epoch``): one Opus stream,
    its decoded audio the whole piece with nothing lost or repeated; the second track's offsets restart at 0.
    The control: the same change without ``follows_epoch`` (or following another epoch) resets."""
    x = make_music(4.0, RATE, seed=11)
    split = int(1.7 * RATE) + 5
    framer = OpusFramer(RATE, lambda: OpusEncoder(RATE))
    messages = _feed(framer, 1, 0, x[:split])
    messages += framer.start_epoch(2, 0, follows_epoch=1)
    for i in range(0, x.shape[0] - split, 2205):
        messages += framer.feed(2, i, x[split + i : split + i + 2205])
    messages += framer.end()
    decoded = decode_messages(messages)
    frames = [f for f, _ in decoded]
    assert [f.reset for f in frames] == [True] + [False] * (len(frames) - 1)  # one stream: the decoder goes on
    for epoch in (1, 2):
        mine = [f for f in frames if f.stream_epoch == epoch]
        assert [f.sequence for f in mine] == list(range(len(mine)))
        for a, b in zip(mine, mine[1:], strict=False):
            assert b.offset_frames == a.offset_frames + a.keep
    last1 = [f for f in frames if f.stream_epoch == 1][-1]
    first2 = next(f for f in frames if f.stream_epoch == 2)
    split48 = to_opus_frames(split, RATE)
    # the packet that held the boundary goes out with track 1 (its samples run on past track 1's end)
    assert split48 <= last1.offset_frames + last1.keep < split48 + 960
    assert first2.offset_frames == last1.offset_frames + last1.keep - split48  # track 2's own offsets
    audio = np.concatenate([a for _, a in decoded])
    assert audio.shape[0] == to_opus_frames(x.shape[0], RATE)  # nothing lost, nothing repeated
    reference = resample_reference(x, RATE, 48_000)[: audio.shape[0]]
    seam = slice(split48 - 4800, split48 + 4800)  # 100 ms each side of the track change
    err = audio[seam] - reference[seam]
    assert 10 * np.log10(np.mean(reference[seam] ** 2) / np.mean(err**2)) > 20

    for follows in (None, 7):  # the control: not following the epoch on the stream starts a new stream
        framer = OpusFramer(RATE, lambda: OpusEncoder(RATE))
        messages = _feed(framer, 1, 0, x[:split]) + framer.start_epoch(2, 0, follows_epoch=follows)
        messages += framer.feed(2, 0, x[split : split + 2205]) + framer.end()
        assert [decode_opus_frame(m).reset for m in messages].count(True) == 2


async def test_the_shared_stream_sends_an_epochs_messages_before_the_next_epochs_start() -> None:
    """Through a gapless track change the shared Opus stream goes on (no RESET), and the packet that held the
    boundary still belongs to the first track's epoch: it goes out before the second track's
    ``audio_stream_start``, so a client that switches epochs at the event (``auralisctl listen``) keeps it.
    A listener that joins mid-epoch is told its first start follows nothing."""
    from auralisd.actors.opus_stream import OpusStart, OpusStreamHub
    from auralisd.actors.player import PcmBlock, StreamStart

    class Player:
        sample_rate = RATE

        def __init__(self) -> None:
            self.sub = SubscriptionStandIn(100)
            self.subscribed = trio.Event()

        async def subscribe(self, max_blocks: int, *, early: bool = False) -> SubscriptionStandIn:
            self.subscribed.set()
            return self.sub

    class Backend:
        opus_bitrate_bps = 160_000

        def opus_encoder(self):
            return OpusEncoder(RATE)

        async def encode(self, fn, *args):
            return fn(*args)

    x = make_music(1.0, RATE, seed=2)
    split = 22_050 + 1000  # not on a packet boundary
    player = Player()
    hub = OpusStreamHub(player, None, Backend())  # type: ignore[arg-type]
    track = {"track_id": 1}
    async with trio.open_nursery() as nursery:
        await nursery.start(hub.run)
        feed = hub.join("mastered")
        await player.subscribed.wait()
        send = player.sub.send
        await send.send(StreamStart(1, 0, RATE, 2, track, "adaptive", 1.0, None, None))
        for i in range(0, split, 2205):
            await send.send(PcmBlock(1, i, x[i : min(i + 2205, split)], 1))
        await send.send(StreamStart(2, 0, RATE, 2, track, "adaptive", 1.0, None, None, follows_epoch=1))
        for i in range(0, x.shape[0] - split, 2205):
            await send.send(PcmBlock(2, i, x[split + i : split + i + 2205], 2))
        items = []
        with trio.fail_after(30):
            while len([i for i in items if isinstance(i, bytes)]) < 15:
                items.append(await feed.receive.receive())
        late = hub.join("mastered")
        first = late.receive.receive_nowait()
        assert isinstance(first, OpusStart) and first.start.epoch == 2 and first.start.follows_epoch is None
        late.close()
        feed.close()
        nursery.cancel_scope.cancel()
    starts = [i for i, item in enumerate(items) if isinstance(item, OpusStart)]
    assert [items[i].start.epoch for i in starts] == [1, 2] and items[starts[1]].start.follows_epoch == 1
    frames = [(i, decode_opus_frame(item)) for i, item in enumerate(items) if isinstance(item, bytes)]
    assert [f.reset for _, f in frames].count(True) == 1  # one Opus stream through the change
    assert all(i < starts[1] for i, f in frames if f.stream_epoch == 1)
    assert all(i > starts[1] for i, f in frames if f.stream_epoch == 2)
    last1 = [f for _, f in frames if f.stream_epoch == 1][-1]
    assert last1.offset_frames + last1.keep > to_opus_frames(split, RATE)  # it carried the boundary


async def test_the_shared_stream_joins_waiting_blocks_after_an_epochs_first_and_never_across_epochs() -> None:
    """A seek's burst arrives at once: the epoch's first block goes alone (its message leaves after one short
    encode), the blocks waiting after it are joined (one thread hop), records and a new epoch break a join."""
    from auralisd.actors.opus_stream import _JoinedBlocks
    from auralisd.actors.player import PcmBlock, StreamEnd, StreamStart

    def block(epoch: int, k: int) -> PcmBlock:
        return PcmBlock(epoch, 2205 * k, np.full((2205, 2), k, np.float32), 1)

    send, receive = trio.open_memory_channel(100)
    sent = [StreamStart(1, 0, RATE, 2, {"track_id": 1}, "adaptive", 1.0, None, None),
            *[block(1, k) for k in range(4)], StreamStart(2, 0, RATE, 2, {"track_id": 1}, "adaptive", 1.0, None, None),
            block(2, 0), block(2, 1), StreamEnd("paused")]
    for message in sent:
        send.send_nowait(message)
    send.close()
    joined = _JoinedBlocks(receive)
    got = []
    while (message := await joined.receive()) is not None:
        got.append(message)
    shape = [(type(m).__name__, m.epoch if hasattr(m, "epoch") else None,
              (m.offset_frames, m.samples.shape[0]) if isinstance(m, PcmBlock) else None) for m in got]
    assert shape == [("StreamStart", 1, None), ("PcmBlock", 1, (0, 2205)), ("PcmBlock", 1, (2205, 3 * 2205)),
                     ("StreamStart", 2, None), ("PcmBlock", 2, (0, 2205)), ("PcmBlock", 2, (2205, 2205)),
                     ("StreamEnd", None, None)]
    assert np.array_equal(got[2].samples[:, 0], np.repeat([1, 2, 3], 2205).astype(np.float32))  # in order
