"""The shared player's listeners: what a subscriber receives, and the rule for one that falls behind.

A subscriber reads :class:`StreamStart`, :class:`PcmBlock`, :class:`StreamStatus` and
:class:`StreamEnd` from a bounded channel. The player never waits for anyone: it sends with
``send_nowait``, and a subscriber whose channel is full is *dropped* (channel closed,
``dropped`` set, :meth:`PcmSubscription.wait_dropped` returns). That is the send policy of the
player's side; the transports add the other half (every network send under one timeout, see
:mod:`auralisd.transport.sessions`), so a frozen peer costs a bounded buffer and then its slot.

Two kinds of subscriber, one clock. The player mixes each block up to its lead (``lead_s``, see
:class:`~auralisd.playback.Clock`) before the block's *play time*. An *early* subscriber (a client with its
own jitter buffer of at least the lead: the web player's ``/stream``) gets every message as soon as it is
made, so after a seek it holds its pre-buffer at once and plays the new position when it should, instead
of waiting for its pre-buffer to fill in real time. An *on-time* subscriber (an output that writes into a
server's or a device's clock: Snapcast, Icecast) gets each block at its play time, as if there were no
lead: its buffer never grows, whatever the seeks. Both hear one schedule: the same frame at the same play
time, plus each one's own fixed buffer. Messages for on-time subscribers wait in a delay line (at most
:data:`MAX_HELD` messages: the lead's blocks, ~10 of them, each with its ``StreamStart`` check, and a few
records; the blocks are the arrays the early subscribers got, not copies). A jump (seek, a track chosen by
a command) :meth:`cuts <Listeners.cut>` it: audio scheduled for the old position but not yet due is never
played to anyone (the early subscribers flush theirs), and the new position starts at once.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Final

import numpy as np
import trio

log = logging.getLogger("auralisd.player")

DEFAULT_SUBSCRIBER_BLOCKS: Final = 40  # 2 s of blocks: 40 x 2205 x 2 x 4 B = 706 kB at 44.1 kHz
MAX_SUBSCRIBER_BLOCKS: Final = 400
MIN_SUBSCRIBER_BLOCKS: Final = 2
MAX_HELD: Final = 256  # messages in the on-time delay line (the lead's ~20 and records; more only if time stood still)


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
    lead_s: float = 0.0  # how far ahead of its play time an early subscriber receives audio (the player's lead)


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
    early: bool = False  # gets blocks as soon as they are mixed (up to the lead before their play time)
    _dropped_event: trio.Event = field(default_factory=trio.Event, repr=False)

    async def wait_dropped(self) -> None:
        """Return once the player dropped this subscriber (a pump stuck on a frozen peer learns it here)."""
        await self._dropped_event.wait()

    def close(self) -> None:
        self.receive.close()


class Listeners:
    """The subscriber set of one player (owned by its actor; every method is non-blocking).

    Times (``now``, ``play_at``) are the caller's clock (``trio.current_time()`` in the player): this class
    never reads a clock, so it is tested with plain numbers.
    """

    def __init__(self) -> None:
        self._subs: list[PcmSubscription] = []
        self.dropped = 0  # subscribers dropped for falling behind, ever
        # on-time subscribers' messages not due yet: (release time, "publish" | "announce", payload)
        self._held: deque[tuple[float, str, Any]] = deque()

    def __len__(self) -> int:
        return len(self._subs)

    def add(self, max_blocks: int, *, early: bool = False) -> PcmSubscription:
        """A new subscriber with a channel of ``max_blocks`` messages (clamped to a sane range)."""
        size = max(MIN_SUBSCRIBER_BLOCKS, min(int(max_blocks), MAX_SUBSCRIBER_BLOCKS))
        send, receive = trio.open_memory_channel[Any](size)
        sub = PcmSubscription(receive=receive, _send=send, early=early)
        self._subs.append(sub)
        return sub

    @property
    def has_early(self) -> bool:
        """Whether an early subscriber listens."""
        return any(sub.early for sub in self._subs)

    @property
    def next_release(self) -> float:
        """When the first held message is due for the on-time subscribers (``inf``: none held)."""
        return self._held[0][0] if self._held else math.inf

    def publish(self, message: Any, *, now: float = 0.0, play_at: float | None = None) -> None:
        """``message`` to every subscriber: an early one now, an on-time one at ``play_at`` (None: as soon
        as everything held before it has gone)."""
        for sub in list(self._subs):
            if sub.early:
                self.send(sub, message)
        self._on_time("publish", message, now, play_at)

    def announce(self, epoch: int, start: Callable[[], Any], *, now: float = 0.0,
                 play_at: float | None = None) -> None:
        """``start()`` (a :class:`StreamStart`, built once) to every subscriber that has not seen ``epoch``;
        an on-time subscriber is told at ``play_at``, right before the block it precedes.

        Its ``follows_epoch`` reaches only the subscribers that were announced that epoch (and so received
        its blocks: a subscriber that missed one is dropped); one that joined since gets None.
        """
        self._announce([s for s in self._subs if s.early], epoch, start)
        self._on_time("announce", (epoch, start), now, play_at)

    def release(self, now: float) -> None:
        """Hand the on-time subscribers every held message due by ``now``."""
        while self._held and self._held[0][0] <= now:
            self._deliver(*self._held.popleft()[1:])

    def cut(self, now: float) -> None:
        """A jump: audio held for the on-time subscribers is dropped (nobody was to hear it: the schedule it
        belonged to is gone), records held with it go out now, in order."""
        held, self._held = self._held, deque()
        for _, kind, payload in held:
            if not isinstance(payload, PcmBlock):
                self._deliver(kind, payload)

    def _on_time(self, kind: str, payload: Any, now: float, play_at: float | None) -> None:
        if not any(not sub.early for sub in self._subs):
            self._held.clear()  # no on-time subscriber: nothing to hold (one that joins starts from the next)
            return
        at = now if play_at is None else play_at
        if self._held:
            at = max(at, self._held[-1][0])  # in order, never before what is held
        if at <= now:
            self._deliver(kind, payload)
            return
        self._held.append((at, kind, payload))
        if len(self._held) > MAX_HELD:  # time stood still for the on-time side: never an unbounded line
            self._deliver(*self._held.popleft()[1:])

    def _deliver(self, kind: str, payload: Any) -> None:
        on_time = [s for s in self._subs if not s.early]
        if kind == "announce":
            self._announce(on_time, *payload)
        else:
            for sub in on_time:
                self.send(sub, payload)

    def _announce(self, subs: list[PcmSubscription], epoch: int, start: Callable[[], Any]) -> None:
        message = joined = None
        for sub in subs:
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
        """Shutdown: every channel closed (readers see the end of the stream); nothing more is released."""
        self._held.clear()
        for sub in self._subs:
            sub._send.close()
