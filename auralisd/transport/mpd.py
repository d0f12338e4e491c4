"""The MPD frontend's TCP server: bytes <-> request lines for :class:`~auralisd.app.mpd.MpdSession`.

One task per client reads: each receive is split into lines (at most :data:`MAX_LINE_BYTES`
each), which the session runs, answering them with one send (commands answered from memory,
such as ``status``, await nothing in between). The event hub's listener (registered here, for
as long as the listener serves) answers an idle client inside ``publish`` with a non-blocking
write on its socket (:func:`_nonblocking_write`); a second task per client sends what that
write left. A third, :func:`_watch`, keeps the time limits.

Limits, as MPD has them: :data:`MAX_CONNECTIONS` clients counted at accept (more are closed at
once), a client that sends nothing for :data:`CONNECTION_TIMEOUT_S` while not idle is closed
(idle clients may wait forever), a client that does not read a reply within the session's send
timeout is closed, and a command list or a line over its limit closes the connection. Memory per client: one line buffer (4 KiB), the answers gathered for one receive
(sent once they pass 64 KiB, so at most that plus one response under the 8 MiB output limit),
64 unread messages; a slow client blocks only its own task.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Final

import trio

from ..app.mpd import MpdServer, MpdSession, SessionClosed
from ..app.mpd.messages import post_decisions
from ..app.mpd.session import SEND_TIMEOUT_S
from ..logs import RefusalLog
from ..protocol.mpd import LineSplitter, LineTooLong
from .accept import accept_or_pause
from .control import only_disconnects

log = logging.getLogger("auralisd.mpd")

MAX_CONNECTIONS: Final = 100  # MPD's max_connections default
CONNECTION_TIMEOUT_S: Final = 60.0  # MPD's connection_timeout default; idle clients are exempt
RECEIVE_BYTES: Final = 16_384
WATCH_INTERVAL_S: Final = SEND_TIMEOUT_S / 2  # a stuck send is found 30-45 s after it started
REFUSAL_LOG_INTERVAL_S: Final = 10.0


class MpdListener:
    """Serves MPD sessions on TCP listeners; ``require_password``: the token is needed (not loopback)."""

    def __init__(self, server: MpdServer, *, require_password: bool, max_connections: int = MAX_CONNECTIONS) -> None:
        self.server = server
        self.require_password = require_password
        self.max_connections = max_connections
        self.connections = 0
        self._refusals = RefusalLog(log, f"too many MPD connections (limit {max_connections})", REFUSAL_LOG_INTERVAL_S)

    async def serve(
        self,
        listeners: list[trio.SocketListener],
        *,
        task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve until cancelled; ``task_status.started(port)`` with the first listener's port."""
        stop_listening = self.server.services.hub.listen(self.server.on_event)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(post_decisions, self.server)
                for listener in listeners:
                    nursery.start_soon(self._accept_loop, listener)
                task_status.started(listeners[0].socket.getsockname()[1] if listeners else 0)
        finally:
            stop_listening()

    async def _accept_loop(self, listener: trio.SocketListener) -> None:
        async with listener, trio.open_nursery() as nursery:
            while True:
                stream = await accept_or_pause(listener, "mpd")
                if self.connections >= self.max_connections:
                    self._refusals.refused()
                    await trio.aclose_forcefully(stream)
                    continue
                self.connections += 1  # counted with the check, before the task runs (bursts)
                nursery.start_soon(self._connection, stream)

    async def _connection(self, stream: trio.SocketStream) -> None:
        peer = _peer(stream)
        session = MpdSession(self.server, stream.send_all, require_password=self.require_password, peer=peer,
                             send_nowait=_nonblocking_write(stream))
        try:
            async with stream, trio.open_nursery() as nursery:
                nursery.start_soon(session.answer_idle)
                nursery.start_soon(_watch, session, nursery.cancel_scope)
                await session.send(session.greeting())
                await self._read_loop(stream, session)
                nursery.cancel_scope.cancel()
        except Exception as exc:
            if only_disconnects(exc):
                log.debug("MPD client %s disconnected", peer)
            else:
                log.exception("MPD connection %s failed", peer)
        finally:
            session.close()
            self.connections -= 1

    async def _read_loop(self, stream: trio.SocketStream, session: MpdSession) -> None:
        splitter = LineSplitter()
        while not session.closing.is_set():
            data = await stream.receive_some(RECEIVE_BYTES)  # no timeout scope per receive: _watch
            session.last_input = trio.current_time()
            if not data:
                return
            try:
                lines = splitter.feed(data)
            except LineTooLong as exc:
                log.info("closing MPD client %s: %s", session.peer, exc)
                return
            try:
                await session.handle_lines(lines)
            except SessionClosed as exc:
                log.debug("closing MPD client %s: %s", session.peer, exc)
                return


async def _watch(session: MpdSession, scope: trio.CancelScope) -> None:
    """Cancel the connection's ``scope`` when the session closes, when the client sent nothing for
    :data:`CONNECTION_TIMEOUT_S` while not idle (time spent idle does not count), or when one send
    to it has not finished for :data:`SEND_TIMEOUT_S` (it stopped reading).

    One task per connection that wakes every :data:`WATCH_INTERVAL_S` at most, so the read loop
    and each send need no cancel scope of their own (a request answered from memory then costs
    one receive and one send).
    """
    while not session.closing.is_set():
        now = trio.current_time()
        sending_since = session.sending_since
        if sending_since is not None and now - sending_since >= SEND_TIMEOUT_S:
            log.warning("MPD client %s stopped reading; closing it", session.peer)
            break
        if session.idle:
            session.last_input = now  # idle clients may wait as long as they like
        elif now - session.last_input >= CONNECTION_TIMEOUT_S:
            log.info("MPD client %s silent for %.0f s; closing it", session.peer, CONNECTION_TIMEOUT_S)
            break
        with trio.move_on_at(min(session.last_input + CONNECTION_TIMEOUT_S, now + WATCH_INTERVAL_S)):
            await session.closing.wait()
    session.close()
    await trio.lowlevel.checkpoint()
    scope.cancel()


def _nonblocking_write(stream: trio.SocketStream) -> Callable[[bytes], int]:
    """Write what the socket takes now (it is non-blocking) and say how much: the session answers
    an idle client with it inside the event's publish. Nothing once the socket is closed (its
    number may already belong to another connection)."""
    sock = stream.socket

    def write(data: bytes) -> int:
        fd = sock.fileno()
        if fd < 0:
            return 0
        try:
            return os.write(fd, data)
        except BlockingIOError:
            return 0

    return write


def _peer(stream: trio.SocketStream) -> str:
    try:
        host, port = stream.socket.getpeername()[:2]
    except OSError:
        return "?"
    return f"{host}:{port}"


async def open_mpd_listeners(host: str, port: int) -> list[trio.SocketListener]:
    """Listen on ``host:port`` (port 0: a free one, for tests); the OSError names the address."""
    try:
        return await trio.open_tcp_listeners(port, host=host)
    except OSError as exc:
        shown = f"[{host}]" if ":" in host else host
        raise OSError(exc.errno, f"mpd {shown}:{port}: {exc.strerror or exc}") from None
