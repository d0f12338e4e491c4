"""Accepting connections on a listener that must outlive a burst or a shortage of descriptors."""

from __future__ import annotations

import errno
import logging
from typing import Final, TypeVar

import trio

log = logging.getLogger("auralisd")

# Out of descriptors, buffers or memory: a passing shortage, not a broken listener.
RESOURCE_ERRNOS: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
ACCEPT_PAUSE_S: Final = 0.1  # how long to wait before accepting again after such a shortage

StreamT = TypeVar("StreamT", bound=trio.abc.AsyncResource)


async def accept_or_pause(listener: trio.abc.Listener[StreamT], what: str) -> StreamT:
    """The next accepted connection; on a resource shortage, log it and try again after a pause.

    Any other ``OSError`` propagates (the listener itself is broken).
    """
    while True:
        try:
            return await listener.accept()
        except OSError as exc:
            if exc.errno not in RESOURCE_ERRNOS:
                raise
            log.error("%s accept failed (%s); pausing", what, exc.strerror)
            await trio.sleep(ACCEPT_PAUSE_S)
