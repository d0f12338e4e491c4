"""``/stream?format=opus``: ONE Opus encoder per stream variant, shared by every Opus listener of it.

An :class:`OpusStreamHub` is an actor (``await nursery.start(hub.run)``) that owns one
:class:`_SharedOpusStream` per variant (``mastered``, ``original``) while that variant has Opus
listeners. A shared stream subscribes to the player once, encodes on a thread
(:meth:`~auralisd.actors.session.SessionBackend.encode`: DSP never runs on the event loop) and hands the
same bytes to every listener's bounded channel, so the daemon's CPU does not grow with the number of
Opus listeners. The player's records (``StreamStart``, ``StreamStatus``, ``StreamEnd``) pass through in
order, after the encoded audio before them (an epoch's tail goes out before the next epoch starts); a
``StreamStart`` goes out right before its epoch's first message, so that the messages of the epoch before,
which a continuing Opus stream may still send (the packet that held the boundary), precede it.

Backpressure: each listener's channel holds :data:`LISTENER_ITEMS` items (about 4 s of 50 ms messages,
~100 kB); a listener whose channel is full is dropped (``dropped`` set, channel closed), never waited for.
A listener that joins mid-stream gets the stream's last ``StreamStart`` first, then the next message;
its decoder starts there (the first message it sees is its reset, whatever the flag says).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any, Final

import numpy as np
import trio

from ..protocol.audio_frames import MAX_EPOCH, OpusFramer
from .session import OriginalSide, SessionBackend

log = logging.getLogger("auralisd.opus")

LISTENER_ITEMS: Final = 100  # per Opus listener: ~4 s of audio (one message per 50 ms block, ~1 kB each) + records
PLAYER_BLOCKS: Final = 80  # the shared stream's own subscription to the player: 4 s, like a PCM listener
JOIN_BLOCKS: Final = 10  # player blocks already waiting encoded in one thread hop (0.5 s: the player's lead)


@dataclass(frozen=True)
class OpusStart:
    """A ``StreamStart`` of the player as the Opus stream passes it on, with the A/B side's level match."""

    start: Any  # auralisd.actors.player.StreamStart
    gain_db: float


@dataclass(eq=False)
class OpusFeed:
    """One Opus listener: read :attr:`receive` (``bytes`` messages, :class:`OpusStart`, ``StreamStatus``,
    ``StreamEnd``); leave with :meth:`close`. ``dropped``: it fell behind and was let go."""

    receive: trio.MemoryReceiveChannel[Any]
    _send: trio.MemorySendChannel[Any] = field(repr=False)
    dropped: bool = False
    closed: bool = False

    def close(self) -> None:
        self.closed = True
        self.receive.close()


class _SharedOpusStream:
    def __init__(self, variant: str, player: Any, events: Any, backend: SessionBackend, *, early: bool = True) -> None:
        self.variant = variant
        self.early = early
        self._player = player
        self._events = events
        self._backend = backend
        self.feeds: list[OpusFeed] = []
        self.last_start: OpusStart | None = None  # the epoch whose audio flows now (a new listener gets it first)
        self.pending_start: OpusStart | None = None  # the next epoch's, until its first message
        self.scope = trio.CancelScope()
        self.closing = False  # no listener left: it is stopping, a new listener starts a new one
        self.framer = OpusFramer(player.sample_rate, backend.opus_encoder)

    def add(self, feed: OpusFeed) -> None:
        if self.last_start is not None:  # what it follows was never sent to this listener: it follows nothing
            start = replace(self.last_start, start=replace(self.last_start.start, follows_epoch=None))
            feed._send.send_nowait(start)  # an empty channel: never full
        self.feeds.append(feed)

    def broadcast_audio(self, messages: list[bytes]) -> None:
        """Encoded messages, each epoch's ``OpusStart`` (pending) right before its first message: every message
        of an epoch goes out before the next epoch's ``audio_stream_start`` (a client that takes the event's
        epoch as the current one never sees an older epoch's audio after it). An epoch that sent no audio
        before the next one started is never announced."""
        for data in messages:
            start = self.pending_start
            if start is not None and int.from_bytes(data[:4], "little") == start.start.epoch & MAX_EPOCH:
                self.pending_start = None
                self.last_start = start
                self.broadcast(start)
            self.broadcast(data)

    def broadcast(self, item: Any) -> None:
        for feed in list(self.feeds):
            if feed.closed:
                self.feeds.remove(feed)
                continue
            try:
                feed._send.send_nowait(item)
            except trio.WouldBlock:
                feed.dropped = True
                feed._send.close()
                self.feeds.remove(feed)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self.feeds.remove(feed)

    async def run(self) -> None:
        from .player import PcmBlock, StreamEnd, StreamStart

        with self.scope:
            sub = await self._player.subscribe(PLAYER_BLOCKS, early=self.early)
            events = None
            try:
                async with trio.open_nursery() as nursery:
                    original: OriginalSide | None = None
                    if self.variant == "original":
                        original = OriginalSide(self._backend)
                        original.nursery = nursery
                        status = await self._player.status()
                        original.volume_gain = _volume_gain(status.get("volume", 100))
                        events = self._events.subscribe(frozenset({"volume"}))
                        nursery.start_soon(self._follow_volume, events, original)
                    nursery.start_soon(self._watch_dropped, sub)
                    joined = _JoinedBlocks(sub.receive)
                    while (message := await joined.receive()) is not None:
                        if not any(not feed.closed for feed in self.feeds):
                            self.closing = True
                            break
                        if isinstance(message, PcmBlock):
                            samples = message.samples
                            if original is not None:
                                samples = await original.read(message.offset_frames,
                                                              message.offset_frames + samples.shape[0])
                            self.broadcast_audio(await self._backend.encode(self.framer.feed, message.epoch,
                                                                            message.offset_frames, samples))
                            continue
                        if isinstance(message, StreamStart):
                            if original is not None:
                                await original.start(message.track, message.plan)
                            self.broadcast_audio(await self._backend.encode(
                                self.framer.start_epoch, message.epoch, message.offset_frames, message.follows_epoch))
                            # sent just before its epoch's first message: a continuing Opus stream may still
                            # send messages of the epoch before (the packet that held the boundary)
                            self.pending_start = OpusStart(message, original.gain_db if original is not None else 0.0)
                            continue
                        if isinstance(message, StreamEnd):
                            self.broadcast_audio(await self._backend.encode(self.framer.end))
                            self.pending_start = self.last_start = None
                        self.broadcast(message)
                    nursery.cancel_scope.cancel()
            finally:
                self.closing = True
                sub.close()
                if events is not None:
                    self._events.unsubscribe(events)
                for feed in self.feeds:  # the stream is over for whoever is still here: let them reconnect
                    feed._send.close()
                self.feeds.clear()

    async def _watch_dropped(self, sub: Any) -> None:
        await sub.wait_dropped()
        log.warning("the shared Opus stream (%s) fell behind the player; its listeners reconnect", self.variant)
        for feed in self.feeds:
            feed.dropped = True
        self.scope.cancel()

    async def _follow_volume(self, events: Any, original: OriginalSide) -> None:
        async for event in events.receive:
            if event.name == "volume":
                original.volume_gain = _volume_gain(event.data.get("volume", 100))


class _JoinedBlocks:
    """The player's messages in order, with the blocks already waiting that continue one another joined into
    one (at most :data:`JOIN_BLOCKS`): after a seek the player mixes its lead at once, and it is encoded in one
    thread hop instead of one per block, so a page holds its pre-buffer sooner. An epoch's first block goes
    alone (its message leaves after one short encode: the page hears the new position that much sooner).
    Never waits to join."""

    def __init__(self, receive: trio.MemoryReceiveChannel[Any]) -> None:
        self._receive = receive
        self._carry: Any = None
        self._last: Any = None  # the last message returned

    async def receive(self) -> Any:
        """The next message or joined block; None at the end of the channel."""
        from .player import PcmBlock

        message, self._carry = self._carry, None
        if message is None:
            try:
                message = await self._receive.receive()
            except (trio.EndOfChannel, trio.ClosedResourceError):
                return None
        previous, self._last = self._last, message
        if not isinstance(message, PcmBlock) or not isinstance(previous, PcmBlock) or previous.epoch != message.epoch:
            return message  # a record, or the first block of an epoch
        blocks = [message]
        while len(blocks) < JOIN_BLOCKS:
            try:
                nxt = self._receive.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break
            last = blocks[-1]
            if (isinstance(nxt, PcmBlock) and nxt.epoch == last.epoch
                    and nxt.offset_frames == last.offset_frames + last.samples.shape[0]):
                blocks.append(nxt)
                continue
            self._carry = nxt
            break
        if len(blocks) == 1:
            return message
        return PcmBlock(message.epoch, message.offset_frames, np.concatenate([b.samples for b in blocks]),
                        message.track_id)


def _volume_gain(percent: Any) -> float:
    from .player import volume_gain

    try:
        return volume_gain(int(percent))
    except (TypeError, ValueError):
        return 1.0


class OpusStreamHub:
    """The Opus side of ``/stream``: one shared encoder per variant while it has listeners."""

    def __init__(self, player: Any, events: Any, backend: SessionBackend) -> None:
        self._player = player
        self._events = events
        self._backend = backend
        self._streams: dict[tuple[str, bool], _SharedOpusStream] = {}  # by (variant, early)
        self._nursery: trio.Nursery | None = None

    @property
    def encoders(self) -> int:
        """Shared Opus encoders running now (at most one per variant, whatever the listener count)."""
        return len(self._streams)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            await trio.sleep_forever()

    def join(self, variant: str, *, early: bool = True) -> OpusFeed:
        """A new listener of ``variant``'s shared Opus stream (started on the first listener). ``early``: it
        gets the player's audio as soon as it is mixed (a page), else at its play time (``/stream?lead=0``)."""
        if self._nursery is None:
            raise RuntimeError("OpusStreamHub.join before run() started")
        send, receive = trio.open_memory_channel[Any](LISTENER_ITEMS)
        feed = OpusFeed(receive, send)
        key = (variant, early)
        stream = self._streams.get(key)
        if stream is None or stream.closing:
            stream = _SharedOpusStream(variant, self._player, self._events, self._backend, early=early)
            self._streams[key] = stream
            self._nursery.start_soon(self._run_stream, stream)
        stream.add(feed)
        return feed

    async def _run_stream(self, stream: _SharedOpusStream) -> None:
        try:
            await stream.run()
        except Exception:  # a bug or an encoder failure: this stream's listeners reconnect, the daemon goes on
            log.exception("the shared Opus stream (%s) failed; its listeners are closed and may reconnect",
                          stream.variant)
        finally:
            if self._streams.get((stream.variant, stream.early)) is stream:
                del self._streams[(stream.variant, stream.early)]
