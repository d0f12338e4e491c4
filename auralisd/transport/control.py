"""Control transport: msgpack-RPC sessions on the Unix socket (and optional TCP).

:class:`RpcSession` is the per-client protocol session, independent of the byte carrier:
the stream server here feeds it socket bytes, and the WebSocket ``/control`` endpoint
(``transport/http.py``) can feed it one binary frame at a time. Requests of one session run
in order (like MPD); notifications for subscribed events are sent by a pump task.

Listeners: :func:`open_unix_listener` creates ``<runtime-dir>/control.sock`` (folder 0700,
socket 0600); :func:`open_tcp_listener` binds the optional TCP port. :func:`serve_control`
takes already-listening listeners, so socket activation (``systemd.py``) can hand over its
own. Every connection is its own task; anything that goes wrong in one is logged and closes
that connection only. Listeners that require auth (TCP) and the others (Unix) count their
connections separately (:data:`MAX_TCP_CONNECTIONS`, :data:`MAX_UNIX_CONNECTIONS`), and a TCP
client that has not authenticated within :data:`AUTH_TIMEOUT_S` is disconnected, so idle
remote clients cannot lock the owner out. Before ``auth`` only commands with
``needs_auth=False`` (``ping``, ``auth``) are answered.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

import trio

from ..actors.events import Subscription
from ..app.commands import COMMANDS, Services, dispatch
from ..app.replies import error_to_wire, is_expected_failure
from ..errors import BAD_REQUEST, UNAUTHORIZED, RpcError
from ..logs import RefusalLog
from ..protocol.codec import (
    BadRequestShape,
    Decoder,
    Notification,
    ProtocolViolation,
    Request,
    Response,
    encode_notification,
    encode_response,
)
from .accept import accept_or_pause
from .early import HeldConnection, open_tcp_listener, open_unix_listener

log = logging.getLogger("auralisd.control")

RECEIVE_BYTES: Final = 65_536  # per read; the decoder holds at most one 1 MiB frame plus this
SEND_TIMEOUT_S: Final = 10.0  # a client that does not read for this long is disconnected
# Separate limits per kind of listener, so idle clients on TCP can never lock the owner out of the
# Unix socket. Each connection holds one socket, one task and a decoder (at most one 1 MiB frame).
MAX_TCP_CONNECTIONS: Final = 64  # listeners that require auth (TCP)
MAX_UNIX_CONNECTIONS: Final = 512  # the owner's Unix socket (and socket-activated ones): generous, yet
# with the TCP ones well under the common soft limit of 1024 open files
AUTH_TIMEOUT_S: Final = 5.0  # a TCP client that has not authenticated by then is disconnected
REFUSAL_LOG_INTERVAL_S: Final = 10.0  # at most one "too many connections" warning per interval
_DISCONNECTS: Final = (trio.BrokenResourceError, trio.ClosedResourceError, ConnectionError)


def only_disconnects(exc: BaseException) -> bool:
    """True when ``exc`` is the peer going away, also inside (nested) exception groups."""
    if isinstance(exc, BaseExceptionGroup):
        return all(only_disconnects(inner) for inner in exc.exceptions)
    return isinstance(exc, _DISCONNECTS)


class RpcSession:
    """One client's protocol state: authentication, request dispatch, event subscription.

    Args:
        services: the actor facades.
        send_bytes: sends one encoded message to this client (may block under backpressure).
        token: the expected auth token, or None when the transport needs none.
        require_auth: the first request must be ``auth`` (TCP, remote WebSocket).
    """

    def __init__(
        self,
        services: Services,
        send_bytes: Callable[[bytes], Awaitable[None]],
        *,
        token: str | None = None,
        require_auth: bool = False,
        peer: str = "?",
    ) -> None:
        self._services = services
        self._send_bytes = send_bytes
        self._token = token
        self.require_auth = require_auth
        self.authenticated = not require_auth
        self.peer = peer
        self._decoder = Decoder()
        self._send_lock = trio.Lock()
        self._subscription: Subscription | None = None
        self._subscribed = trio.Event()
        self.closing = trio.Event()  # set when the session must end (auth failure, dropped events)

    def check_token(self, token: str) -> bool:
        ok = self._token is not None and hmac.compare_digest(token.encode(), self._token.encode())
        self.authenticated = self.authenticated or ok
        return ok

    def subscribe(self, events: frozenset[str]) -> None:
        if self._subscription is not None:
            self._services.hub.unsubscribe(self._subscription)
        self._subscription = self._services.hub.subscribe(events)
        self._subscribed.set()

    def close(self) -> None:
        if self._subscription is not None:
            self._services.hub.unsubscribe(self._subscription)
            self._subscription = None
        self.closing.set()

    async def send(self, data: bytes) -> None:
        """Send one message; a client that went away or stopped reading closes the session.

        Error handling:
            A broken or closed stream (the client disconnected before its reply) is the normal
            end of a session, not an error: the session closes, a debug line says so, and
            nothing is raised. Transport-specific errors (a WebSocket's ``ConnectionClosed``)
            still propagate to the transport, which knows them.
        """
        if self.closing.is_set():
            return
        async with self._send_lock:
            try:
                with trio.move_on_after(SEND_TIMEOUT_S) as scope:
                    await self._send_bytes(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                log.debug("control client %s went away before its reply", self.peer)
                self.close()
                return
            if scope.cancelled_caught:
                log.warning("control client %s stopped reading; closing it", self.peer)
                self.close()

    async def feed(self, data: bytes | bytearray) -> None:
        """Process bytes from the client; answers every complete request in order.

        Raises:
            ProtocolViolation: garbage or an oversized frame: close the connection.
        """
        self._decoder.feed(data)
        for message in self._decoder.messages():
            if self.closing.is_set():
                return
            await self._handle(message)

    async def _handle(self, message: Any) -> None:
        if isinstance(message, BadRequestShape):
            error = {"code": BAD_REQUEST, "message": str(message)}
            if message.msgid is not None:
                await self.send(encode_response(message.msgid, error, None))
            else:
                await self.send(encode_notification("error", error))
            return
        if isinstance(message, (Response, Notification)):
            await self.send(encode_notification("error", {"code": BAD_REQUEST, "message": "clients send requests only"}))
            return
        assert isinstance(message, Request)
        command = COMMANDS.get(message.method)
        if not self.authenticated and (command is None or command.needs_auth):
            await self.send(
                encode_response(message.msgid, {"code": UNAUTHORIZED, "message": "send 'auth' with the token first"}, None)
            )
            self.close()
            return
        try:
            result = await dispatch(self._services, self, message.method, message.params)
        except RpcError as exc:
            await self.send(encode_response(message.msgid, error_to_wire(exc), None))
            if exc.code == UNAUTHORIZED:
                self.close()
            return
        except Exception as exc:
            if not is_expected_failure(exc):  # a bug: the details go to the log, the reply says only "internal"
                log.exception("control request %s from %s failed", message.method, self.peer)
            await self.send(encode_response(message.msgid, error_to_wire(exc), None))
            return
        await self.send(encode_response(message.msgid, None, result))

    async def pump_events(self) -> None:
        """Forward subscribed events until the session closes (run it beside the reader)."""
        while not self.closing.is_set():
            await self._subscribed.wait()
            self._subscribed = trio.Event()
            sub = self._subscription
            if sub is None:
                continue
            async for event in sub.receive:
                await self.send(encode_notification(event.name, event.data))
                if self.closing.is_set():
                    return
            if sub.dropped:
                log.warning("control client %s fell behind on events; closing it", self.peer)
                self.close()
                return


class ControlServer:
    """Serves :class:`RpcSession` on stream listeners."""

    def __init__(self, services: Services, *, token: str | None = None) -> None:
        self._services = services
        self._token = token
        self._connections = {True: 0, False: 0}  # require_auth -> open connections, counted at accept
        self._refusals = {
            kind: RefusalLog(log, f"too many {'tcp' if kind else 'unix'} control connections "
                                  f"(limit {MAX_TCP_CONNECTIONS if kind else MAX_UNIX_CONNECTIONS})",
                             REFUSAL_LOG_INTERVAL_S)
            for kind in (True, False)
        }  # fmt: skip

    async def serve(
        self,
        listeners: Sequence[tuple[trio.abc.Listener[trio.abc.Stream], bool]],
        *,
        held: Sequence[HeldConnection] = (),
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve every ``(listener, require_auth)`` until cancelled, and first the ``held``
        connections taken while the daemon started (``transport/early.py``), counted like new ones."""
        async with trio.open_nursery() as nursery:
            for connection in held:
                self._connections[connection.require_auth] += 1
                nursery.start_soon(self._connection, connection.stream, connection.require_auth)
            for listener, require_auth in listeners:
                nursery.start_soon(self._accept_loop, listener, require_auth)
            task_status.started()

    async def _accept_loop(self, listener: trio.abc.Listener[trio.abc.Stream], require_auth: bool) -> None:
        async with listener, trio.open_nursery() as nursery:
            while True:
                stream = await accept_or_pause(listener, "control")
                limit = MAX_TCP_CONNECTIONS if require_auth else MAX_UNIX_CONNECTIONS
                if self._connections[require_auth] >= limit:
                    self._refusals[require_auth].refused()
                    await trio.aclose_forcefully(stream)
                    continue
                # Counted here, in the same step as the check, not when the connection task first
                # runs: a burst accepted before any task starts can then never exceed the limit.
                self._connections[require_auth] += 1
                nursery.start_soon(self._connection, stream, require_auth)

    async def _connection(self, stream: trio.abc.Stream, require_auth: bool) -> None:
        """Serve one accepted connection (already counted by the accept loop, uncounted here)."""
        peer = _peer_name(stream)
        session = RpcSession(self._services, stream.send_all, token=self._token, require_auth=require_auth, peer=peer)
        try:
            async with stream, trio.open_nursery() as nursery:
                nursery.start_soon(session.pump_events)
                nursery.start_soon(_close_when, session, nursery.cancel_scope)
                if require_auth:
                    nursery.start_soon(_auth_deadline, session)
                while not session.closing.is_set():
                    data = await stream.receive_some(RECEIVE_BYTES)
                    if not data:
                        break
                    try:
                        await session.feed(data)
                    except ProtocolViolation as exc:
                        log.info("closing control client %s: %s", peer, exc)
                        with trio.move_on_after(1.0):
                            await session.send(encode_notification("error", {"code": BAD_REQUEST, "message": str(exc)}))
                        break
                nursery.cancel_scope.cancel()
        except Exception as exc:  # ExceptionGroup too: the nursery wraps whatever its tasks raised
            if only_disconnects(exc):  # the client went away mid-request: normal, and cheap
                log.debug("control client %s disconnected", peer)
            else:
                log.exception("control connection %s failed", peer)
        finally:
            session.close()
            self._connections[require_auth] -= 1


async def _auth_deadline(session: RpcSession) -> None:
    """Close ``session`` unless it authenticates within :data:`AUTH_TIMEOUT_S`."""
    await trio.sleep(AUTH_TIMEOUT_S)
    if not session.authenticated:
        log.info("control client %s did not authenticate within %.0f s; closing it", session.peer, AUTH_TIMEOUT_S)
        session.close()


async def _close_when(session: RpcSession, scope: trio.CancelScope) -> None:
    await session.closing.wait()
    await trio.lowlevel.checkpoint()  # let the last reply go out first
    scope.cancel()


def _peer_name(stream: trio.abc.Stream) -> str:
    sock = getattr(stream, "socket", None)
    if sock is None:
        return "?"
    try:
        name = sock.getpeername()
    except OSError:
        return "?"
    if isinstance(name, tuple):
        return f"{name[0]}:{name[1]}"
    return "unix"


__all__ = ["COMMANDS", "ControlServer", "RpcSession", "open_tcp_listener", "open_unix_listener", "serve", "websocket_control_handler"]


async def serve(
    services: Services,
    listeners: Sequence[tuple[trio.abc.Listener[trio.abc.Stream], bool]],
    *,
    token: str | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Convenience: ``ControlServer(services, token=token).serve(listeners)``."""
    await ControlServer(services, token=token).serve(listeners, task_status=task_status)


def websocket_control_handler(services: Services, *, token: str | None = None, require_auth: bool = False):
    """A ``/control`` route handler for ``transport/http.py``: one :class:`RpcSession` per WebSocket.

    Each binary message carries one msgpack-RPC message (text messages are refused with a
    ``bad_request`` notification); replies and notifications go out as binary messages.
    The HTTP layer has already checked Origin/Host/token for the handshake; ``require_auth``
    additionally asks for ``auth`` first (non-loopback binds).
    """
    import trio_websocket

    async def handler(ws: trio_websocket.WebSocketConnection, info: Any) -> None:
        session = RpcSession(
            services, ws.send_message, token=token, require_auth=require_auth, peer=getattr(info, "remote", "ws")
        )
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(session.pump_events)
                nursery.start_soon(_close_when, session, nursery.cancel_scope)
                while not session.closing.is_set():
                    message = await ws.get_message()
                    if isinstance(message, str):
                        await session.send(
                            encode_notification("error", {"code": BAD_REQUEST, "message": "send binary msgpack frames"})
                        )
                        continue
                    try:
                        await session.feed(message)
                    except ProtocolViolation as exc:
                        await ws.aclose(code=1008, reason=str(exc)[:100])
                        break
                nursery.cancel_scope.cancel()
        except trio_websocket.ConnectionClosed:
            pass
        finally:
            session.close()

    return handler
