"""The control socket from the first instant: listeners, and ``ping`` answered while the daemon starts.

Start-up (issue 15): importing the daemon (numpy, the actors, the transports) and starting its
actors takes most of a second of CPU; a client should not wait for it to learn that the daemon
is there. ``main`` opens the control listeners first, with this module's light imports only
(trio, msgpack, the codec), and runs :class:`EarlyControl` on them while everything else is
imported and started. Until the real :class:`~auralisd.transport.control.ControlServer` takes
over, each connection gets:

* ``ping`` (exactly ``[0, msgid, "ping", {}]``) answered at once with ``"pong"``, as the real
  server would (it needs no auth, on TCP either);
* anything else (another command, a partial or malformed frame) held, unread past its first
  byte, until the hand-over: then the connection and the bytes read but not answered go to the
  real server, which serves them exactly as if they had just arrived (:class:`PrefixedStream`).

Bounds: at most :data:`MAX_EARLY_CONNECTIONS` connections are taken before the hand-over (more
wait in the kernel's backlog, as the real server would count them), each holding at most one
frame (:data:`~auralisd.protocol.codec.MAX_FRAME_BYTES`) of unanswered bytes. If start-up
fails, the held connections and the listeners are closed.
"""

from __future__ import annotations

import errno
import logging
import os
import socket
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgpack
import trio

from ..protocol.codec import MAX_FRAME_BYTES, MAX_MSGID, REQUEST, encode_response
from .accept import accept_or_pause

log = logging.getLogger("auralisd.control")

MAX_EARLY_CONNECTIONS: Final = 64  # taken before the hand-over; more wait in the listen backlog
RECEIVE_BYTES: Final = 65_536
PONG_TIMEOUT_S: Final = 5.0  # a client that does not read its pong is closed


async def open_unix_listener(path: str) -> trio.SocketListener:
    """Listen on ``path``: its folder is created 0700, a stale socket is replaced, the socket is 0600.

    Raises:
        OSError: the folder is not ours or not private, or another daemon is listening there.
    """
    folder = os.path.dirname(path)
    os.makedirs(folder, mode=0o700, exist_ok=True)
    st = os.stat(folder)
    if st.st_uid != os.getuid():
        raise OSError(errno.EPERM, f"{folder} belongs to another user")
    if stat.S_IMODE(st.st_mode) & 0o077:
        os.chmod(folder, 0o700)
    if await trio.Path(path).exists():
        if await _socket_answers(path):
            raise OSError(errno.EADDRINUSE, f"another auralisd is listening on {path}")
        os.unlink(path)
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        await sock.bind(path)
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    sock.listen(64)
    return trio.SocketListener(sock)


async def _socket_answers(path: str) -> bool:
    try:
        stream = await trio.open_unix_socket(path)
    except OSError:
        return False
    await stream.aclose()
    return True


async def open_tcp_listener(host: str, port: int) -> trio.SocketListener:
    """Listen on ``host:port``; the OSError of a failed bind names the address."""
    try:
        listeners = await trio.open_tcp_listeners(port, host=host)
    except OSError as exc:
        shown = f"[{host}]" if ":" in host else host
        raise OSError(exc.errno, f"control tcp {shown}:{port}: {exc.strerror or exc}") from None
    return listeners[0]


class PrefixedStream(trio.abc.Stream):
    """``stream`` with ``prefix`` (bytes already read from it) delivered first by ``receive_some``."""

    def __init__(self, stream: trio.abc.Stream, prefix: bytes) -> None:
        self._stream = stream
        self._prefix = prefix

    @property
    def socket(self) -> Any:  # the control server names the peer from it
        return getattr(self._stream, "socket", None)

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if self._prefix:
            size = len(self._prefix) if max_bytes is None else max(1, max_bytes)
            data, self._prefix = self._prefix[:size], self._prefix[size:]
            await trio.lowlevel.checkpoint()
            return data
        return await self._stream.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        send_eof = getattr(self._stream, "send_eof", None)
        if send_eof is not None:
            await send_eof()

    async def aclose(self) -> None:
        await self._stream.aclose()


@dataclass
class HeldConnection:
    """A connection taken before the hand-over: serve it as ``stream`` (prefix included)."""

    stream: trio.abc.Stream
    require_auth: bool


def _is_ping(message: Any) -> int | None:
    """The msgid of an exact ``[0, msgid, "ping", {}]`` request (params may be nil or ``[]`` too)."""
    if (
        isinstance(message, list)
        and len(message) == 4
        and message[0] == REQUEST
        and isinstance(message[1], int)
        and not isinstance(message[1], bool)
        and 0 <= message[1] <= MAX_MSGID
        and message[2] == "ping"
        and message[3] in (None, [], {})
    ):
        return int(message[1])
    return None


class _Early:
    """One early connection: its stream and the bytes read but not answered."""

    def __init__(self, stream: trio.abc.Stream, require_auth: bool) -> None:
        self.stream = stream
        self.require_auth = require_auth
        self.pending = bytearray()  # read, not answered: everything from the first non-ping byte
        self.base = 0  # stream offset of pending[0]
        self.pings = 0
        self.held = False  # a non-ping message (or something unparsable) arrived: stop reading
        self.closed = False
        self.scope = trio.CancelScope()

    async def serve(self) -> None:
        unpacker = msgpack.Unpacker(raw=False, max_buffer_size=MAX_FRAME_BYTES, strict_map_key=False)
        with self.scope:
            while not self.held:
                try:
                    data = await self.stream.receive_some(RECEIVE_BYTES)
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                    data = b""
                if not data:
                    self.closed = True
                    return
                self.pending += data
                try:
                    unpacker.feed(data)
                except msgpack.BufferFull:
                    self.held = True
                    break
                while not self.held:
                    try:
                        message = unpacker.unpack()
                    except msgpack.OutOfData:
                        break
                    except Exception:  # garbage: the real server names the violation
                        self.held = True
                        break
                    msgid = _is_ping(message)
                    if msgid is None:
                        self.held = True
                        break
                    # answered: drop its bytes (pending starts at the stream offset `base`)
                    end = unpacker.tell()
                    del self.pending[: end - self.base]
                    self.base = end
                    self.pings += 1
                    with trio.CancelScope(shield=True), trio.move_on_after(PONG_TIMEOUT_S) as timeout:
                        try:
                            await self.stream.send_all(encode_response(msgid, None, "pong"))
                        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                            self.closed = True
                            return
                    if timeout.cancelled_caught:
                        self.closed = True
                        return


class EarlyControl:
    """Takes the control listeners' connections until :meth:`hand_over`; answers ``ping`` meanwhile.

    Use: ``await nursery.start(early.serve)``, then ``held = await early.hand_over()`` and give
    ``held`` with the same listeners to the real server. Cancelled before the hand-over (a
    start-up failure), it closes the held connections and the listeners.
    """

    def __init__(self, listeners: Sequence[tuple[trio.abc.Listener[Any], bool]]) -> None:
        self.listeners = list(listeners)
        self._connections: list[_Early] = []
        self._handing_over = trio.Event()
        self._handed_over = trio.Event()
        self._held: list[HeldConnection] = []

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        handed_over = False
        try:
            async with trio.open_nursery() as nursery:
                for listener, require_auth in self.listeners:
                    nursery.start_soon(self._accept_loop, nursery, listener, require_auth)
                task_status.started()
                await self._handing_over.wait()
                for connection in self._connections:
                    connection.scope.cancel()  # a read in progress loses nothing; a pong in flight is shielded
                nursery.cancel_scope.cancel()
            for connection in self._connections:
                if connection.closed:
                    with trio.CancelScope(shield=True):
                        await trio.aclose_forcefully(connection.stream)
                else:
                    stream: trio.abc.Stream = connection.stream
                    if connection.pending:
                        stream = PrefixedStream(stream, bytes(connection.pending))
                    self._held.append(HeldConnection(stream, connection.require_auth))
            handed_over = True
            self._handed_over.set()
        finally:
            if not handed_over:
                with trio.CancelScope(shield=True):
                    for connection in self._connections:
                        await trio.aclose_forcefully(connection.stream)
                    for listener, _ in self.listeners:
                        await trio.aclose_forcefully(listener)

    async def hand_over(self) -> list[HeldConnection]:
        """Stop taking connections; returns the open ones (unanswered bytes included), oldest first."""
        self._handing_over.set()
        await self._handed_over.wait()
        return self._held

    async def _accept_loop(self, nursery: trio.Nursery, listener: trio.abc.Listener[Any], require_auth: bool) -> None:
        while len(self._connections) < MAX_EARLY_CONNECTIONS:
            stream = await accept_or_pause(listener, "control")
            connection = _Early(stream, require_auth)
            self._connections.append(connection)
            nursery.start_soon(connection.serve)
        await trio.sleep_forever()  # the rest wait in the backlog for the real server

    @property
    def pings_answered(self) -> int:
        return sum(c.pings for c in self._connections)
