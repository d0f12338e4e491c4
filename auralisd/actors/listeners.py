"""The shared player's listeners: what a subscriber receives, and the rule for one that falls behind.

A subscriber reads :class:`StreamStart`, :class:`PcmBlock`, :class:`StreamStatus` and
:class:`StreamEnd` from a bounded channel. The player never waits for anyone: it sends with
``send_nowait``, and a subscriber whose channel is full is *dropped* (channel closed,
``dropped`` set, :meth:`PcmSubscription.wait_dropped` returns). That is the send policy of the
player's side; the transports add the other half (every network send under one timeout, see
:mod:`auralisd.transport.sessions`), so a frozen peer costs a bounded buffer and then its slot.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from typing import Any, Final

import numpy as np
import trio

log = logging.getLogger("auralisd.player")

DEFAULT_SUBSCRIBER_BLOCKS: Final = 40  # 2 s of blocks: 40 x 2205 x 2 x 4 B = 706 kB at 44.1 kHz
MAX_SUBSCRIBER_BLOCKS: Final = 400
MIN_SUBSCRIBER_BLOCKS: Final = 2


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
    # The epoch whose last block this epoch's first block follows with nothing skipped or repeated (an
    # automatic gapless track change, a preset/intensity crossfade), as this subscriber heard it; None when
    # the audio jumps (seek, a track chosen by a command, resume, start) or the subscriber missed that epoch.
    follows_epoch: int | None = None


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
    _dropped_event: trio.Event = field(default_factory=trio.Event, repr=False)

    async def wait_dropped(self) -> None:
        """Return once the player dropped this subscriber (a pump stuck on a frozen peer learns it here)."""
        await self._dropped_event.wait()

    def close(self) -> None:
        self.receive.close()


class Listeners:
    """The subscriber set of one player (owned by its actor; every method is non-blocking)."""

    def __init__(self) -> None:
        self._subs: list[PcmSubscription] = []
        self.dropped = 0  # subscribers dropped for falling behind, ever

    def __len__(self) -> int:
        return len(self._subs)

    def add(self, max_blocks: int) -> PcmSubscription:
        """A new subscriber with a channel of ``max_blocks`` messages (clamped to a sane range)."""
        size = max(MIN_SUBSCRIBER_BLOCKS, min(int(max_blocks), MAX_SUBSCRIBER_BLOCKS))
        send, receive = trio.open_memory_channel[Any](size)
        sub = PcmSubscription(receive=receive, _send=send)
        self._subs.append(sub)
        return sub

    def publish(self, message: Any) -> None:
        """``message`` to every subscriber."""
        for sub in list(self._subs):
            self.send(sub, message)

    def announce(self, epoch: int, start: Any) -> None:
        """``start()`` (a :class:`StreamStart`, built once) to every subscriber that has not seen ``epoch``.

        Its ``follows_epoch`` reaches only the subscribers that were announced that epoch (and so received
        its blocks: a subscriber that missed one is dropped); one that joined since gets None.
        """
        message = joined = None
        for sub in list(self._subs):
            if sub.announced_epoch != epoch:
                if message is None:
                    message = start()
                if message.follows_epoch is not None and sub.announced_epoch != message.follows_epoch:
                    joined = joined or replace(message, follows_epoch=None)
                    self.send(sub, joined)
                else:
                    self.send(sub, message)
                sub.announced_epoch = epoch

    def send(self, sub: PcmSubscription, message: Any) -> None:
        """The drop rule: never wait; a full channel drops the subscriber, a closed one leaves."""
        try:
            sub._send.send_nowait(message)
        except trio.WouldBlock:
            log.warning("a PCM subscriber fell behind; dropping it")
            sub.dropped = True
            sub._dropped_event.set()
            sub._send.close()
            self._subs.remove(sub)
            self.dropped += 1
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._subs.remove(sub)

    def close(self) -> None:
        """Shutdown: every channel closed (readers see the end of the stream)."""
        for sub in self._subs:
            sub._send.close()
