"""The event hub: fan-out of small notifications (player, queue, scan progress, ...) to subscribers.

Publishing never blocks: each subscriber has its own bounded memory channel
(:data:`EVENT_BUFFER` events of at most a few KiB each, so about 1 MiB worst case per
subscriber). A subscriber whose buffer is full is dropped (its channel is closed and its
``dropped`` flag set); the control session then closes that connection. Progress events
that are superseded by the next one (``scan_progress``) are simply skipped for a full
subscriber instead, since only the latest matters.

A *listener* (:meth:`EventHub.listen`) is a plain function called with each event inside
``publish``, in the publisher's task: no buffer and no task hop, for consumers that only mark
something (the MPD frontend wakes its idle clients this way). It must be quick and must not
block; an exception it raises is logged and the other consumers are still served.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import trio

from ..protocol.paths import text_to_wire

EVENT_BUFFER: Final = 256  # events per subscriber
EVENT_NAMES: Final = (
    "player",
    "queue",
    "options",
    "volume",
    "scan_progress",
    "fingerprint_progress",
    "album_progress",
    "mastering",
    "stored_playlist",
    "output",
    "error",
    "shutdown",
)
_SKIPPABLE: Final = frozenset({"scan_progress"})

log = logging.getLogger("auralisd.events")


@dataclass(frozen=True)
class Event:
    name: str
    data: Any


@dataclass(eq=False)
class Subscription:
    """A subscriber's handle: read events from ``receive``; ``dropped`` says it fell behind."""

    receive: trio.MemoryReceiveChannel[Event]
    events: frozenset[str]
    _send: trio.MemorySendChannel[Event] = field(repr=False)
    dropped: bool = False


class EventHub:
    """Publish events to every subscriber that asked for them, without ever blocking."""

    def __init__(self) -> None:
        self._subs: set[Subscription] = set()
        self._listeners: list[Callable[[Event], None]] = []

    def listen(self, listener: Callable[[Event], None]) -> Callable[[], None]:
        """Call ``listener(event)`` for every event from now on, synchronously inside
        :meth:`publish`; returns the function that stops it."""
        self._listeners.append(listener)

        def stop() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return stop

    def subscribe(self, events: frozenset[str] | None = None, max_events: int = EVENT_BUFFER) -> Subscription:
        send, receive = trio.open_memory_channel[Event](max_events)
        sub = Subscription(receive=receive, events=frozenset(events or EVENT_NAMES), _send=send)
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.discard(sub)
            sub._send.close()

    def publish(self, name: str, data: Any) -> None:
        event = Event(name, _finite(data))
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("an event listener failed on %s", name)
        for sub in list(self._subs):
            if name not in sub.events:
                continue
            try:
                sub._send.send_nowait(event)
            except trio.WouldBlock:
                if name in _SKIPPABLE:
                    continue
                log.warning("an event subscriber fell %d events behind; dropping it", EVENT_BUFFER)
                sub.dropped = True
                self.unsubscribe(sub)
            except trio.BrokenResourceError:
                self._subs.discard(sub)

    def close(self) -> None:
        for sub in list(self._subs):
            self.unsubscribe(sub)

    @property
    def subscriber_count(self) -> int:
        return len(self._subs)


def _finite(value: Any) -> Any:
    """Wire-safe event data: non-finite floats become None, and text holding lone surrogates (a
    file name that is not UTF-8, in a message) gets them written ``\\xHH`` (msgpack cannot carry them)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return text_to_wire(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value
