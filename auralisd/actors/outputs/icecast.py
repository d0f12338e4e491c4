"""Icecast output: the mastered stream as Ogg Opus to an Icecast mount, as a source client.

Icecast does the fan-out to listeners (and relays), so the daemon's work is one encoder whatever the
number of listeners. The source protocol is Icecast 2.4's HTTP ``PUT`` to the mount with
``Content-Type: audio/ogg`` and basic authentication (``source`` and the password read from
``password_file`` at each connection, never from the command line); Icecast answers ``200 OK`` and
then reads the stream.

* Encoding: :class:`auralis.oggopus.OggOpusStream` (:class:`auralis.opus.OpusEncoder`, 160 kbit/s by
  default, ``bitrate_kbps``) on a worker thread, one block batch at a time.
* Title: each track starts a new Ogg chain whose ``OpusTags`` carry its title, artist and album (the
  in-band metadata of an Ogg stream; players show it at the chain change). Icecast 2.4 passes the
  chain on but does not read Opus comments itself: its status page shows no title for an Opus mount
  (Icecast 2.5 does).
* Pause, stop, a stall: the output keeps the mount alive with encoded silence in real time (Icecast
  drops a source that sends nothing for its ``source-timeout``, 10 s by default), so listeners stay
  connected and hear the music again when it resumes.
* Icecast restarts: the connection ends, the output says so and reconnects with the back-off; each
  connection starts a fresh chain (headers first), which new and old listeners can decode.
"""

from __future__ import annotations

import base64
import logging
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import trio

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

if TYPE_CHECKING:
    from auralis.oggopus import OggOpusStream

log = logging.getLogger("auralisd.outputs")

FEED_BLOCKS: Final = 100  # player blocks queued for this output: 5 s (1.8 MB f32 at 44.1 kHz); full -> dropped
CONNECT_TIMEOUT_S: Final = 5.0
RESPONSE_TIMEOUT_S: Final = 5.0  # Icecast answers the PUT at once (its header-timeout is 15 s)
MAX_RESPONSE_BYTES: Final = 16 * 1024
MAX_BATCH_BLOCKS: Final = 4  # blocks encoded in one thread hop (200 ms at most)
IDLE_TICK_S: Final = 0.1  # while nothing plays, silence is encoded in steps of this much
SILENCE_AFTER_S: Final = 0.5  # no audio for this long (a stall) -> silence keeps the mount in real time
MAX_PASSWORD_BYTES: Final = 4096


class IcecastOutput:
    """One Icecast mount (see the module docstring)."""

    def __init__(self, spec: OutputSpec, in_rate: int) -> None:
        self.spec = spec
        self.in_rate = int(in_rate)
        self.bitrate_kbps = spec.bitrate_kbps
        self._limiter = trio.CapacityLimiter(1)  # one encode at a time, in order

    @property
    def where(self) -> str:
        return f"Icecast at {self.spec.host}:{self.spec.port}"

    async def serve(self, link: OutputLink) -> None:
        password = await trio.to_thread.run_sync(self._read_password)
        try:
            with trio.fail_after(CONNECT_TIMEOUT_S):
                stream = await trio.open_tcp_stream(self.spec.host, self.spec.port)
        except trio.TooSlowError:
            raise OutputFailure(f"{self.where} did not answer in {CONNECT_TIMEOUT_S:g} s") from None
        except OSError as exc:
            raise OutputFailure(f"cannot connect to {self.where} ({describe_os_error(root_os_error(exc))}): is it running?"
                                ) from None
        async with stream:
            await self._handshake(stream, password)
            link.connected(f"streaming Ogg Opus at {self.bitrate_kbps} kbit/s to {self.spec.path}")
            closed: list[str] = []
            async with pcm_feed(link.player, FEED_BLOCKS) as sub, trio.open_nursery() as nursery:
                nursery.start_soon(watch_close, stream, closed, nursery.cancel_scope,
                                   f"{self.where} closed the connection (restarted, or the source was kicked)")
                await self._pump(sub, stream)
                nursery.cancel_scope.cancel()
            if closed:
                raise OutputFailure(closed[0])
            if sub.dropped:
                raise OutputFailure("the encoder did not keep up with the stream; the output fell behind")

    # ----------------------------------------------------------------- the source handshake
    def _read_password(self) -> str:
        path = self.spec.option("password_file")
        try:
            with open(path, "rb") as handle:
                raw = handle.read(MAX_PASSWORD_BYTES + 1)
        except OSError as exc:
            raise OutputFailure(f"cannot read the source password file {path}: {describe_os_error(exc)}",
                                needs_user=True) from None
        lines = raw.decode("utf-8", errors="replace").splitlines()
        password = lines[0].strip() if lines else ""
        if not password or len(raw) > MAX_PASSWORD_BYTES:
            raise OutputFailure(f"the source password file {path} holds no password on its first line",
                                needs_user=True)
        return password

    def _request(self, password: str) -> bytes:
        user = self.spec.option("user", "source")
        token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        headers = [
            f"PUT {self.spec.path} HTTP/1.1",
            f"Host: {self.spec.host}:{self.spec.port}",
            f"Authorization: Basic {token}",
            "Content-Type: audio/ogg",
            "User-Agent: auralisd",
            f"Ice-Name: {_header_text(self.spec.option('stream_name', 'Auralis'))}",
            "Ice-Public: 0",
            f"Ice-Audio-Info: bitrate={self.bitrate_kbps};channels=2;samplerate=48000",
        ]
        for option, header in (("description", "Ice-Description"), ("genre", "Ice-Genre")):
            if self.spec.option(option):
                headers.append(f"{header}: {_header_text(self.spec.option(option))}")
        return ("\r\n".join(headers) + "\r\n\r\n").encode("utf-8")

    async def _handshake(self, stream: trio.SocketStream, password: str) -> None:
        try:
            with trio.fail_after(RESPONSE_TIMEOUT_S):
                await stream.send_all(self._request(password))
                head = await _read_head(stream)
        except trio.TooSlowError:
            raise OutputFailure(f"{self.where} did not answer the source request in {RESPONSE_TIMEOUT_S:g} s"
                                ) from None
        except (trio.BrokenResourceError, OSError) as exc:
            raise OutputFailure(f"{self.where} closed the connection during the source request ({exc})") from None
        status_line, _, rest = head.partition(b"\r\n")
        parts = status_line.decode("latin-1").split(" ", 2)
        code = int(parts[1]) if len(parts) >= 2 and parts[1].isdigit() else 0
        if code == 200:
            return
        body = rest.partition(b"\r\n\r\n")[2].decode("utf-8", "replace").strip().splitlines()
        said = f": {body[0][:120]}" if body else ""
        mount = self.spec.path
        if code == 401:
            raise OutputFailure(f"{self.where} refused the source password for {mount} (401): check "
                                f"{self.spec.option('password_file')}", needs_user=True)
        if code == 403:
            raise OutputFailure(f"{self.where} refused the mount {mount} (403{said}): another source may be "
                                "using it")
        if code == 0:
            raise OutputFailure(f"{self.where} did not answer in HTTP: is it an Icecast server?", needs_user=True)
        raise OutputFailure(f"{self.where} answered {code} to the source request for {mount}{said}",
                            needs_user=code in (400, 404, 405, 501))

    # ----------------------------------------------------------------- streaming
    async def _pump(self, sub: Any, stream: trio.SocketStream) -> None:
        from auralis.oggopus import OggOpusStream  # PyAV (FFmpeg's libraries) only once a stream runs

        from ..player import PcmBlock, StreamEnd, StreamStart

        ogg = OggOpusStream(self.in_rate, bitrate_bps=self.bitrate_kbps * 1000, comments={})
        track_id: Any = None
        playing = False
        last_audio = trio.current_time()  # when real audio (or silence) was last encoded up to
        while True:
            message: Any = None
            with trio.move_on_after(IDLE_TICK_S):
                try:
                    message = await sub.receive.receive()
                except trio.EndOfChannel:
                    return
            now = trio.current_time()
            work: list[tuple[str, Any]] = []
            if message is None:
                if playing and now - last_audio < SILENCE_AFTER_S:
                    continue  # a short gap between blocks: wait for the music
                frames = int(round((now - last_audio) * self.in_rate))
                last_audio = now
                if frames > 0:
                    work.append(("audio", np.zeros((frames, 2), dtype=np.float32)))
            else:
                for item in [message, *_drain(sub, MAX_BATCH_BLOCKS - 1)]:
                    if isinstance(item, PcmBlock):
                        playing = True
                        work.append(("audio", item.samples))
                    elif isinstance(item, StreamStart) and item.track.get("track_id") != track_id:
                        track_id = item.track.get("track_id")
                        work.append(("chain", _comments(item.track)))
                    elif isinstance(item, StreamEnd):
                        playing = False
                last_audio = now
            if not work:
                continue
            data = await trio.to_thread.run_sync(_encode, ogg, work, limiter=self._limiter)
            if not data:
                continue
            await send_or_fail(stream, data, too_slow=self.where, broken=lambda _exc: OutputFailure(
                f"{self.where} closed the connection (restarted, or the source was kicked)"))


def _drain(sub: Any, limit: int) -> list[Any]:
    out: list[Any] = []
    while len(out) < limit:
        try:
            out.append(sub.receive.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel):
            break
    return out


def _encode(ogg: OggOpusStream, work: list[tuple[str, Any]]) -> bytes:
    out = bytearray()
    for kind, value in work:
        out += ogg.new_chain(value) if kind == "chain" else ogg.encode(value)
    return bytes(out)


def _comments(track: dict[str, Any]) -> dict[str, str]:
    """The Vorbis comments of a chain: the track's title, artist and album as tagged (title: the file name)."""
    return {key: str(track[key]) for key in ("title", "artist", "album") if track.get(key)}


def _header_text(text: str) -> str:
    """A header value without line breaks or control characters (they would end the header)."""
    return "".join(c for c in text if c >= " " and c != "\x7f")[:200]


async def _read_head(stream: trio.SocketStream) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(4096)
        if not chunk:
            if data:
                return data
            raise trio.BrokenResourceError("the server closed the connection without an answer")
        data += chunk
        if len(data) > MAX_RESPONSE_BYTES:
            break
    return data
