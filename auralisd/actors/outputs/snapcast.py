"""Snapcast output: the mastered stream into a snapserver ``tcp`` (server mode) or ``pipe`` source.

snapserver plays one stream in sync in every room; this output only feeds it, in the sample format
the source declares (``sampleformat=RATE:BITS:2``, 48000:16:2 by default): resampled seamlessly
and TPDF-dithered (:class:`auralis.pcm.PcmEncoder`, run on a worker thread, never on the event
loop). While the player is paused or stopped nothing is sent and snapserver marks the stream idle;
its clients play silence until data flows again.

* ``tcp://HOST:PORT``: snapserver's ``tcp`` source in server mode listens there; we connect.
* ``pipe:///PATH``: snapserver's ``pipe`` source reads the FIFO (``mode=create``: snapserver makes
  it). Opened without blocking: when nobody reads it the output says so and retries. A regular file
  or a device also works (its write errors, e.g. a full disk, are reported).
"""

from __future__ import annotations

import errno
import logging
import math
import os
import stat
from typing import Any, Final

import numpy as np
import trio

from auralis.pcm import PcmEncoder

from ...config import OutputSpec
from .registry import (
    OutputFailure,
    OutputLink,
    describe_os_error,
    pcm_feed,
    root_os_error,
    send_or_fail,
    watch_close,
)

log = logging.getLogger("auralisd.outputs")

FEED_BLOCKS: Final = 100  # player blocks queued for this output: 5 s (1.8 MB f32 at 44.1 kHz); full -> dropped
CONNECT_TIMEOUT_S: Final = 5.0
MAX_BATCH_BLOCKS: Final = 4  # blocks converted in one thread hop (200 ms at most)
# Each stretch of sound starts LEAD_S late: snapserver reads its source on its own clock (every 20 ms) and
# resyncs (an audible skip in every room) when a read finds nothing, so the daemon's jitter must never
# reach it. 300 ms of lead absorbs a loaded machine's scheduling delays; Snapcast's own buffer is 1 s.
LEAD_S: Final = 0.3
# A pause ends the data with this much silence: snapclient drops a last period it cannot fill (up to ~70 ms
# measured), so without it the last notes before a pause would not be heard.
PAUSE_TAIL_S: Final = 0.2
FILL_S: Final = 0.1  # silence sent at a time while the player stalls
FILL_GUARD_S: Final = 0.1  # ... once snapserver has less than this much left


class SnapcastOutput:
    """One Snapcast source (see the module docstring)."""

    def __init__(self, spec: OutputSpec, in_rate: int) -> None:
        self.spec = spec
        self.in_rate = int(in_rate)
        self.rate, self.bits, self.channels = spec.sampleformat
        self._limiter = trio.CapacityLimiter(1)  # one conversion at a time, in order

    async def serve(self, link: OutputLink) -> None:
        stream = await (self._open_tcp() if self.spec.scheme == "tcp" else self._open_pipe())
        async with stream:
            link.connected(f"sending {self.rate}:{self.bits}:{self.channels}")
            encoder = PcmEncoder(self.in_rate, self.rate, self.bits, self.channels)
            async with pcm_feed(link.player, FEED_BLOCKS) as sub, trio.open_nursery() as nursery:
                closed: list[str] = []
                if isinstance(stream, trio.SocketStream):
                    nursery.start_soon(watch_close, stream, closed, nursery.cancel_scope,
                                       "snapserver closed the connection")
                await self._pump(sub, encoder, stream)
                nursery.cancel_scope.cancel()
            if closed:
                raise OutputFailure(closed[0])
            if sub.dropped:
                raise OutputFailure("snapserver did not take the stream fast enough; the output fell behind")

    async def _pump(self, sub: Any, encoder: PcmEncoder, stream: trio.abc.SendStream) -> None:
        """Convert and send every block, keeping snapserver fed (it reads its source on its own clock and
        skips, audibly in every room, when a read finds nothing):

        * each stretch of sound starts :data:`LEAD_S` late (held back, then sent at once), so the
          daemon's scheduling jitter never reaches snapserver;
        * while the player stalls (a chunk late), silence keeps that lead from running dry;
        * a pause or stop ends the data with :data:`PAUSE_TAIL_S` of silence, then nothing is sent and
          snapserver goes idle.
        """
        from ..player import PcmBlock, StreamEnd

        lead_bytes = int(LEAD_S * self.rate) * encoder.frame_bytes
        bytes_per_s = self.rate * encoder.frame_bytes
        tail = np.zeros((int(PAUSE_TAIL_S * self.in_rate), 2), dtype=np.float32)
        fill = np.zeros((int(FILL_S * self.in_rate), 2), dtype=np.float32)
        pending = bytearray()
        fed_until: float | None = None  # when snapserver runs out of what was sent (None: not streaming)
        while True:
            blocks: list[np.ndarray] = []
            end = False
            deadline = math.inf if fed_until is None else fed_until - FILL_GUARD_S
            with trio.move_on_at(deadline):
                try:
                    message = await sub.receive.receive()
                except trio.EndOfChannel:
                    return
                batch = [message] if isinstance(message, StreamEnd) else [message, *_drain(sub, MAX_BATCH_BLOCKS - 1)]
                for item in batch:
                    if isinstance(item, PcmBlock):
                        blocks.append(item.samples)
                    end = isinstance(item, StreamEnd)
            if not blocks and not end:
                if fed_until is not None and trio.current_time() >= deadline:  # a stall: keep the lead
                    blocks.append(fill)
                else:
                    continue  # StreamStart / status: nothing to send
            if end:
                blocks.append(tail)
            pending += await trio.to_thread.run_sync(_encode, encoder, blocks, limiter=self._limiter)
            if fed_until is None and len(pending) < lead_bytes and not end:
                continue  # still building the lead
            now = trio.current_time()
            fed_until = max(fed_until or now, now) + len(pending) / bytes_per_s
            await self._send(stream, bytes(pending))
            pending.clear()
            if end:
                fed_until = None

    async def _send(self, stream: trio.abc.SendStream, data: bytes) -> None:
        if not data:
            return
        await send_or_fail(stream, data, too_slow="snapserver", broken=lambda exc: OutputFailure(
            self._write_error(exc), needs_user=_needs_user(exc)))

    async def _open_tcp(self) -> trio.SocketStream:
        host, port = self.spec.host, self.spec.port
        try:
            with trio.fail_after(CONNECT_TIMEOUT_S):
                return await trio.open_tcp_stream(host, port)
        except trio.TooSlowError:
            raise OutputFailure(f"snapserver at {host}:{port} did not answer in {CONNECT_TIMEOUT_S:g} s") from None
        except OSError as exc:
            raise OutputFailure(
                f"cannot connect to snapserver at {host}:{port} ({describe_os_error(root_os_error(exc))}): is it "
                f"running with a tcp source in server mode there?"
            ) from None

    async def _open_pipe(self) -> trio.lowlevel.FdStream:
        path = self.spec.path
        try:
            fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno == errno.ENXIO:
                raise OutputFailure(f"nobody reads the pipe {path} (is snapserver running?)") from None
            if exc.errno == errno.ENOENT:
                raise OutputFailure(f"the pipe {path} does not exist (snapserver creates it with mode=create)") from None
            raise OutputFailure(f"cannot open {path}: {describe_os_error(exc)}", needs_user=True) from None
        try:
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                raise OutputFailure(f"{path} is a directory, not a pipe", needs_user=True)
        except BaseException:
            os.close(fd)
            raise
        return trio.lowlevel.FdStream(fd)

    def _write_error(self, exc: BaseException) -> str:
        where = f"snapserver at {self.spec.host}:{self.spec.port}" if self.spec.scheme == "tcp" else self.spec.path
        cause = exc.__cause__ if not isinstance(exc, OSError) and isinstance(exc.__cause__, OSError) else exc
        if isinstance(cause, OSError):
            if cause.errno == errno.ENOSPC:
                return f"cannot write to {where}: no space left on the device"
            if cause.errno == errno.EPIPE:
                return f"{where}: the reader closed the pipe"
            return f"cannot write to {where}: {describe_os_error(cause)}"
        return f"{where} closed the connection"


def _drain(sub: Any, limit: int) -> list[Any]:
    """Up to ``limit`` more messages that are already waiting (a batch for one thread hop), up to a StreamEnd."""
    from ..player import StreamEnd

    out: list[Any] = []
    while len(out) < limit:
        try:
            out.append(sub.receive.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel):
            break
        if isinstance(out[-1], StreamEnd):
            break
    return out


def _encode(encoder: PcmEncoder, blocks: list[Any]) -> bytes:
    return b"".join(encoder.encode(b) for b in blocks)


def _needs_user(exc: BaseException) -> bool:
    cause = exc if isinstance(exc, OSError) else exc.__cause__
    return isinstance(cause, OSError) and cause.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES)
