"""One HTTP port: the web player's files over h11 and WebSocket upgrades handed to trio-websocket.

trio-websocket answers a plain ``GET /`` with 400 and never runs the handler (NOTES.md), so this
module reads each connection's request head itself. An upgrade request is checked (Host, Origin,
token, route) and then given to :func:`trio_websocket.wrap_server_stream` with the bytes already
read replayed in front of the socket; anything else is answered by h11 from the player's folder.

Security rules (issue 5):

* ``Host`` must name a loopback address (``127.0.0.1``, ``localhost``, ``::1``), the bound address,
  the address the connection arrived on, or the host of an ``--allowed-origin``; else 403. This
  defeats DNS rebinding (the attacker's page would send its own name).
* A WebSocket handshake without ``Origin`` comes from a non-browser client and is accepted. A present
  Origin must be ``http://127.0.0.1:P``, ``http://localhost:P``, ``http://[::1]:P`` for the bound port
  P, or one given with ``--allowed-origin``; anything else gets 403.
* On a non-loopback bind every WebSocket handshake needs ``Authorization: Bearer T`` or ``?token=T``.
* Static files come only from the player's folder: no dot-segments, no hidden files, symlinks that
  resolve outside the folder are refused; anything else is 404.
"""

from __future__ import annotations

import hmac
import logging
import posixpath
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final
from urllib.parse import parse_qs, unquote, urlsplit

import h11
import trio
import trio_websocket
from wsproto import ConnectionType, WSConnection
from wsproto.connection import ConnectionState
from wsproto.events import CloseConnection

from ..config import DEFAULT_HTTP_MAX_CONNECTIONS, is_loopback_host
from ..logs import RefusalLog
from .accept import accept_or_pause

log = logging.getLogger(__name__)

WEB_DIR: Final = Path(__file__).resolve().parents[2] / "clients" / "web"
DEFAULT_HTTP_HOST: Final = "127.0.0.1"
DEFAULT_HTTP_PORT: Final = 8765
MAX_HEAD_BYTES: Final = 16 * 1024  # request line + headers + the blank line; one byte more gets 431
REFUSE_TIMEOUT_S: Final = 1.0  # time given to tell a refused connection why (503) before it is closed
REFUSE_DRAIN_BYTES: Final = 65_536  # at most this much of a refused client's request is read (and dropped)
MAX_REFUSING: Final = 64  # refusals being answered at once (each for at most REFUSE_TIMEOUT_S); beyond: closed at once
TRY_AGAIN_LATER: Final = 1013  # WebSocket close code (RFC 6455 registry): the endpoint is full
MAX_CLOSE_REASON_BYTES: Final = 123  # RFC 6455 5.5: control payload 125 bytes, 2 of them the code
_REFUSAL_BODY: Final = b"too many connections; try again later\n"
_REFUSAL_503: Final = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
                       b"Content-Length: %d\r\nConnection: close\r\nRetry-After: 1\r\n\r\n%s"
                       % (len(_REFUSAL_BODY), _REFUSAL_BODY))
HEAD_TIMEOUT_S: Final = 10.0  # a client that sends no complete head in this time is dropped
RECEIVE_BYTES: Final = 4096
DEFAULT_MAX_MESSAGE_BYTES: Final = 1 << 20  # 1 MiB, the control protocol's frame limit (issue 4)
LOOPBACK_NAMES: Final = frozenset({"127.0.0.1", "localhost", "::1"})
CONTENT_TYPES: Final = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".json": "application/json",
    ".webmanifest": "application/manifest+json",
}
SECURITY_HEADERS: Final = (
    (b"X-Content-Type-Options", b"nosniff"),
    (b"X-Frame-Options", b"DENY"),
    (b"Referrer-Policy", b"no-referrer"),
    (b"Cache-Control", b"no-cache"),
)


@dataclass(frozen=True)
class WebSocketRequestInfo:
    """What a WebSocket route handler learns about its handshake."""

    path: str
    query: Mapping[str, str]  # first value of each parameter
    remote: str
    headers: Mapping[str, str]  # lower-case names
    arrival: int | None = None  # the connection's number, taken in the step that accepted it (HttpServer)

    def param(self, name: str, default: str) -> str:
        return self.query.get(name, default)


WebSocketHandler = Callable[[trio_websocket.WebSocketConnection, WebSocketRequestInfo], Awaitable[None]]
# Numbers connections as they are accepted (main passes the mastering pool's ticket counter): the
# order a batch of connections was accepted in, kept whatever order their tasks then run in
Arrival = Callable[[], "int | None"]
# A dynamic GET endpoint under a path prefix: the rest of the path -> (body, content type), None for
# 404 (no such thing), or an empty body for 204 (it exists but has nothing to send, e.g. no picture).
GetHandler = Callable[[str], Awaitable["tuple[bytes, str] | None"]]


@dataclass(frozen=True)
class WebSocketRoute:
    """A WebSocket endpoint: its handler and the largest message it accepts (bigger closes with 1009).

    Without ``max_message_bytes``, the handler's own ``max_message_bytes`` attribute applies if it has
    one (the session handlers declare theirs), else :data:`DEFAULT_MAX_MESSAGE_BYTES`.
    """

    handler: WebSocketHandler
    max_message_bytes: int | None = None
    message_queue_size: int = 4
    max_connections: int | None = None  # open WebSockets on this path; one more is closed with 1013

    @property
    def message_limit(self) -> int:
        if self.max_message_bytes is not None:
            return self.max_message_bytes
        return int(getattr(self.handler, "max_message_bytes", DEFAULT_MAX_MESSAGE_BYTES))


def _host_name(value: str) -> str:
    """``"[::1]:8765"`` -> ``"::1"``, ``"localhost:8765"`` -> ``"localhost"`` (lower-case)."""
    value = value.strip().lower()
    if value.startswith("["):
        end = value.find("]")
        return value[1:end] if end > 0 else value
    if value.count(":") == 1:
        return value.split(":", 1)[0]
    return value


def _normalise_origin(origin: str) -> str:
    parts = urlsplit(origin.strip().lower())
    if not parts.scheme or not parts.netloc:
        return origin.strip().lower()
    default_port = {"http": 80, "https": 443}.get(parts.scheme)
    try:
        port = parts.port
    except ValueError:
        return origin.strip().lower()
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{port}" if port and port != default_port else "")


@dataclass
class HttpPolicy:
    """The Host / Origin / token rules for one bound port."""

    bind_host: str
    port: int
    allowed_origins: Sequence[str] = ()
    token: str | None = None
    allowed_origin_set: frozenset[str] = field(init=False)
    allowed_host_names: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        own = {f"http://{name}:{self.port}" for name in ("127.0.0.1", "localhost", "[::1]")}
        extra = {_normalise_origin(o) for o in self.allowed_origins}
        self.allowed_origin_set = frozenset(own | extra)
        names = set(LOOPBACK_NAMES)
        names |= {(urlsplit(o).hostname or "") for o in extra}
        if self.bind_host not in ("", "0.0.0.0", "::"):
            names.add(self.bind_host.strip("[]").lower())
        names.discard("")
        self.allowed_host_names = frozenset(names)
        if not is_loopback_host(self.bind_host) and not self.token:
            # config.load_settings refuses this before anything starts; this guards direct callers.
            raise ValueError(f"a token is required to serve HTTP on non-loopback address {self.bind_host!r}")

    def host_ok(self, host_header: str | None, local_address: str | None) -> bool:
        """Whether a request's Host header names this server (DNS-rebinding defence)."""
        if not host_header:
            return False
        name = _host_name(host_header)
        if name in self.allowed_host_names:
            return True
        # The literal address the client connected to is safe: a rebinding page sends its own name.
        return local_address is not None and name == local_address.lower()

    def origin_ok(self, origin: str | None) -> bool:
        """No Origin (non-browser client) or one of ours / the allowed list."""
        return origin is None or _normalise_origin(origin) in self.allowed_origin_set

    def token_ok(self, authorization: str | None, query_token: str | None) -> bool:
        """Loopback binds need no token; others need ``Bearer T`` or ``?token=T``."""
        if is_loopback_host(self.bind_host):
            return True
        expected = (self.token or "").encode()
        candidates = []
        if authorization and authorization.lower().startswith("bearer "):
            candidates.append(authorization[7:].strip())
        if query_token is not None:
            candidates.append(query_token)
        return any(hmac.compare_digest(c.encode(), expected) for c in candidates) and bool(expected)


class _ServerWebSocket(trio_websocket.WebSocketConnection):
    """A server WebSocket that sends the close frame a protocol violation calls for.

    wsproto reports a frame it cannot accept (unmasked, reserved opcode or RSV bit, oversize or
    fragmented control frame, invalid UTF-8, invalid close code) as a ``CloseConnection`` event
    while the connection is still OPEN (a real close frame from the peer moves it to
    REMOTE_CLOSING first). trio-websocket 0.12 then only drops the TCP connection. RFC 6455
    7.1.7 ("Fail the WebSocket Connection") and docs/protocol.md want the close frame first:
    1002 for a protocol error, 1007 for a text message that is not UTF-8 (wsproto's codes).
    """

    async def _handle_close_connection_event(self, event: CloseConnection) -> None:
        if self._wsproto.state == ConnectionState.OPEN:  # a parse failure, not the peer's close
            reason = (event.reason or "").encode()[:MAX_CLOSE_REASON_BYTES].decode(errors="ignore")
            try:
                await self._send(CloseConnection(code=event.code, reason=reason))
            except trio_websocket.ConnectionClosed:
                pass  # the peer is already gone
        await super()._handle_close_connection_event(event)


class _ReplayStream(trio.abc.HalfCloseableStream):
    """A stream that first yields bytes already read from ``inner``, then reads ``inner``."""

    def __init__(self, inner: trio.abc.HalfCloseableStream, prefix: bytes) -> None:
        self._inner = inner
        self._prefix = prefix

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if self._prefix:
            n = len(self._prefix) if max_bytes is None else max_bytes
            data, self._prefix = self._prefix[:n], self._prefix[n:]
            await trio.lowlevel.checkpoint()
            return data
        return await self._inner.receive_some(max_bytes)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self._inner.wait_send_all_might_not_block()

    async def send_eof(self) -> None:
        await self._inner.send_eof()

    async def aclose(self) -> None:
        await self._inner.aclose()


def _headers(request: h11.Request) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in request.headers:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        out[key] = f"{out[key]}, {text}" if key in out else text
    return out


async def _send_simple(stream: trio.abc.Stream, conn: h11.Connection, status: int, body: bytes, *,
                       content_type: str = "text/plain; charset=utf-8", head_only: bool = False) -> None:
    """One complete h11 response, then close the connection."""
    reason = {200: b"OK", 400: b"Bad Request", 403: b"Forbidden", 404: b"Not Found", 405: b"Method Not Allowed",
              426: b"Upgrade Required", 431: b"Request Header Fields Too Large"}.get(status, b"")
    headers = [(b"Content-Type", content_type.encode()), (b"Content-Length", str(len(body)).encode()),
               (b"Connection", b"close"), *SECURITY_HEADERS]
    if status == 405:
        headers.append((b"Allow", b"GET, HEAD"))
    data = conn.send(h11.Response(status_code=status, headers=headers, reason=reason))
    if not head_only and body:
        data += conn.send(h11.Data(data=body))
    data += conn.send(h11.EndOfMessage())
    await stream.send_all(data)


async def _finish_gently(stream: trio.abc.HalfCloseableStream) -> None:
    """After a final answer: end our side, then read and drop what the client still sends (at most
    :data:`REFUSE_DRAIN_BYTES`), so closing does not reset the connection before it read the answer.
    Callers bound the time."""
    await stream.send_eof()
    drained = 0
    while drained < REFUSE_DRAIN_BYTES:
        data = await stream.receive_some(RECEIVE_BYTES)
        if not data:
            return
        drained += len(data)


def resolve_static(web_dir: Path, target: str) -> Path | None:
    """The file under ``web_dir`` that ``target`` (a request path) names, or None (404).

    Refuses dot-segments (also percent-encoded), backslashes, NUL, hidden names and anything whose real
    path is outside ``web_dir``.
    """
    raw_path = urlsplit(target).path or "/"
    path = unquote(raw_path, errors="strict") if "%" in raw_path else raw_path
    if "\\" in path or "\x00" in path or not path.startswith("/"):
        return None
    parts = [p for p in path.split("/") if p]
    if any(p in (".", "..") or p.startswith(".") for p in parts):
        return None
    if posixpath.normpath("/" + "/".join(parts)) != "/" + "/".join(parts):
        return None
    if not parts:
        parts = ["index.html"]
    root = web_dir.resolve()
    candidate = root.joinpath(*parts)
    try:
        real = candidate.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not real.is_relative_to(root) or not real.is_file():
        return None
    if real.suffix.lower() not in CONTENT_TYPES:
        return None
    return real


class HttpServer:
    """Serves the player's files and dispatches WebSocket routes on one listening port.

    ``arrival`` numbers each connection in the step that accepted it (:attr:`WebSocketRequestInfo.arrival`):
    the connection tasks of one accepted batch may run in any order (trio may run a batch of ready
    tasks in reverse), so an order taken later, when a task reads its first request, is not the order
    the clients came in.
    """

    def __init__(self, routes: Mapping[str, WebSocketRoute], policy: HttpPolicy, web_dir: Path = WEB_DIR, *,
                 max_connections: int = DEFAULT_HTTP_MAX_CONNECTIONS,
                 get_routes: Mapping[str, GetHandler] | None = None, arrival: Arrival | None = None) -> None:
        self._arrival = arrival
        self._routes = dict(routes)
        self._policy = policy
        self._web_dir = web_dir
        self._get_routes = dict(get_routes or {})  # path prefix (e.g. "/cover/") -> handler
        self._max_connections = max_connections
        self._open = 0  # connections being served, counted at accept
        self._refusing = 0  # refused connections still being told so (at most MAX_REFUSING)
        self._route_open = dict.fromkeys(self._routes, 0)  # open WebSockets per path, counted before the handshake
        self._refusals = RefusalLog(log, f"too many HTTP connections (limit {max_connections})")
        self._route_refusals = {
            path: RefusalLog(log, f"too many WebSockets on {path} (limit {route.max_connections})")
            for path, route in self._routes.items()
        }

    async def serve(self, listeners: Sequence[trio.SocketListener], *,
                    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Accept on every listener until cancelled; each connection is its own task."""
        async with trio.open_nursery() as nursery:
            for listener in listeners:
                nursery.start_soon(self._accept_loop, listener, nursery)
            task_status.started()

    async def _accept_loop(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        async with listener:
            while True:
                stream = await accept_or_pause(listener, "HTTP")
                if self._open >= self._max_connections:
                    self._refusals.refused()
                    if self._refusing < MAX_REFUSING:
                        self._refusing += 1
                        nursery.start_soon(self._refuse, stream)
                    else:  # even the refusals are saturated: close at once
                        await trio.aclose_forcefully(stream)
                    continue
                # Counted here, in the step that checked the limit: a burst accepted before any
                # connection task runs can never exceed it. Numbered here too, in accept order.
                self._open += 1
                arrival = None if self._arrival is None else self._arrival()
                nursery.start_soon(self._counted_connection, stream, arrival)

    async def _counted_connection(self, stream: trio.SocketStream, arrival: int | None) -> None:
        try:
            await self.handle_connection(stream, arrival)
        finally:
            self._open -= 1

    async def _refuse(self, stream: trio.SocketStream) -> None:
        """Answer 503 and close; the client's request is read and dropped (up to a bound), so the
        close does not reset the connection before the client has read the answer."""
        try:
            with trio.move_on_after(REFUSE_TIMEOUT_S):
                await stream.send_all(_REFUSAL_503)
                await _finish_gently(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            pass
        finally:
            self._refusing -= 1
            await trio.aclose_forcefully(stream)

    async def handle_connection(self, stream: trio.SocketStream, arrival: int | None = None) -> None:
        """Serve one TCP connection (``arrival``: its number at accept); every failure stays inside it."""
        try:
            await self._handle(stream, arrival)
        except Exception as exc:  # a bug in one connection must not stop the port (NOTES.md)
            if _only_disconnects(exc):  # the peer went away (also inside a nursery's group): normal
                log.debug("HTTP client %s disconnected", _remote(stream))
            else:
                log.exception("HTTP connection failed")
        finally:
            with trio.move_on_after(1.0) as cleanup:
                cleanup.shield = True
                await stream.aclose()

    async def _read_head(self, stream: trio.abc.Stream, conn: h11.Connection) -> tuple[h11.Request | None, bytes, int]:
        """Read until the end of the request head. Returns (request, bytes read, error status or 0)."""
        buffer = bytearray()
        with trio.move_on_after(HEAD_TIMEOUT_S):
            while True:
                end = buffer.find(b"\r\n\r\n")
                if end >= 0 and end + 4 > MAX_HEAD_BYTES:
                    return None, bytes(buffer), 431  # the head, blank line included, is over the limit
                if end >= 0:
                    break
                if len(buffer) >= MAX_HEAD_BYTES:
                    return None, bytes(buffer), 431  # no end within the limit: any end would be past it
                data = await stream.receive_some(RECEIVE_BYTES)
                if not data:
                    return None, bytes(buffer), 0
                buffer += data
            try:
                conn.receive_data(bytes(buffer))
                event = conn.next_event()
            except h11.RemoteProtocolError:
                return None, bytes(buffer), 400
            if isinstance(event, h11.Request):
                return event, bytes(buffer), 0
            return None, bytes(buffer), 400
        return None, bytes(buffer), 0

    async def _handle(self, stream: trio.SocketStream, arrival: int | None) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        request, raw, error = await self._read_head(stream, conn)
        if request is None:
            if error:
                body = b"request head too large\n" if error == 431 else b"bad request\n"
                await _send_simple(stream, conn, error, body)
                with trio.move_on_after(REFUSE_TIMEOUT_S):
                    await _finish_gently(stream)  # else the unread rest of the request resets the answer away
            return
        headers = _headers(request)
        target = request.target.decode("latin-1")
        local_address = _local_address(stream)
        if not self._policy.host_ok(headers.get("host"), local_address):
            await _send_simple(stream, conn, 403, b"forbidden: unknown Host\n")
            return
        if "websocket" in headers.get("upgrade", "").lower():
            await self._handle_websocket(stream, conn, request, headers, target, raw, arrival)
            return
        if request.method not in (b"GET", b"HEAD"):
            await _send_simple(stream, conn, 405, b"method not allowed\n")
            return
        path = urlsplit(target).path
        if path in self._routes:
            await _send_simple(stream, conn, 426, b"this endpoint speaks WebSocket\n")
            return
        prefix = next((p for p in self._get_routes if path.startswith(p)), None)
        if prefix is not None:
            await self._handle_get_route(stream, conn, request, headers, target, prefix)
            return
        try:
            file_path = resolve_static(self._web_dir, target)
        except UnicodeDecodeError:
            file_path = None
        if file_path is None:
            await _send_simple(stream, conn, 404, b"not found\n", head_only=request.method == b"HEAD")
            return
        body = await trio.Path(file_path).read_bytes()
        await _send_simple(stream, conn, 200, body, content_type=CONTENT_TYPES[file_path.suffix.lower()],
                           head_only=request.method == b"HEAD")

    async def _handle_get_route(self, stream: trio.SocketStream, conn: h11.Connection, request: h11.Request,
                                headers: Mapping[str, str], target: str, prefix: str) -> None:
        """A dynamic GET (e.g. ``/cover/7``): the WebSocket rules for Origin and token, then the handler."""
        parts = urlsplit(target)
        query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        head_only = request.method == b"HEAD"
        if not self._policy.origin_ok(headers.get("origin")):
            await _send_simple(stream, conn, 403, b"forbidden: foreign Origin\n", head_only=head_only)
            return
        if not self._policy.token_ok(headers.get("authorization"), query.get("token")):
            await _send_simple(stream, conn, 403, b"forbidden: token required\n", head_only=head_only)
            return
        found = await self._get_routes[prefix](parts.path[len(prefix):])
        if found is None:
            await _send_simple(stream, conn, 404, b"not found\n", head_only=head_only)
            return
        body, content_type = found
        if not body:  # 204 carries no body and no Content-Length (RFC 9110, 8.6)
            data = conn.send(h11.Response(status_code=204, headers=[(b"Connection", b"close"), *SECURITY_HEADERS],
                                          reason=b"No Content"))  # fmt: skip
            await stream.send_all(data + conn.send(h11.EndOfMessage()))
            return
        await _send_simple(stream, conn, 200, body, content_type=content_type, head_only=head_only)

    async def _handle_websocket(self, stream: trio.SocketStream, conn: h11.Connection, request: h11.Request,
                                headers: Mapping[str, str], target: str, raw: bytes, arrival: int | None) -> None:
        parts = urlsplit(target)
        query = {k: v[0] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        if not self._policy.origin_ok(headers.get("origin")):
            log.warning("refused WebSocket from foreign Origin %r", headers.get("origin"))
            await _send_simple(stream, conn, 403, b"forbidden: foreign Origin\n")
            return
        if not self._policy.token_ok(headers.get("authorization"), query.get("token")):
            await _send_simple(stream, conn, 403, b"forbidden: token required\n")
            return
        route = self._routes.get(parts.path)
        if route is None:
            await _send_simple(stream, conn, 404, b"no such WebSocket endpoint\n")
            return
        info = WebSocketRequestInfo(parts.path, query, _remote(stream), dict(headers), arrival)
        full = route.max_connections is not None and self._route_open[parts.path] >= route.max_connections
        if not full:
            self._route_open[parts.path] += 1  # counted before the handshake's first await
        try:
            await self._serve_websocket(stream, route, info, raw, full)
        finally:
            if not full:
                self._route_open[parts.path] -= 1

    async def _serve_websocket(self, stream: trio.SocketStream, route: WebSocketRoute, info: WebSocketRequestInfo,
                               raw: bytes, full: bool) -> None:
        async with trio.open_nursery() as nursery:
            ws = None
            with trio.move_on_after(HEAD_TIMEOUT_S):  # a handshake wsproto refused (400) never completes
                connection = _ServerWebSocket(
                    _ReplayStream(stream, raw), WSConnection(ConnectionType.SERVER),
                    message_queue_size=route.message_queue_size, max_message_size=route.message_limit)
                nursery.start_soon(connection._reader_task)  # what trio_websocket.wrap_server_stream does
                ws_request = await connection._get_request()
                ws = await ws_request.accept()
            if ws is None:
                nursery.cancel_scope.cancel()
                return
            if full:  # the endpoint is full: say so with the WebSocket's own "try again later"
                self._route_refusals[info.path].refused()
                with trio.move_on_after(REFUSE_TIMEOUT_S) as cleanup:
                    cleanup.shield = True
                    await ws.aclose(code=TRY_AGAIN_LATER, reason=f"too many connections on {info.path}")
                nursery.cancel_scope.cancel()
                return
            try:
                await route.handler(ws, info)
            except trio_websocket.ConnectionClosed:
                pass
            except Exception as exc:
                if not _only_disconnects(exc):
                    log.exception("WebSocket %s handler failed", info.path)
                with trio.move_on_after(1.0) as cleanup:
                    cleanup.shield = True
                    await ws.aclose(code=1011, reason="internal error")
            finally:
                with trio.move_on_after(1.0) as cleanup:
                    cleanup.shield = True
                    await ws.aclose()
                nursery.cancel_scope.cancel()


_DISCONNECTS: Final = (trio_websocket.ConnectionClosed, trio.BrokenResourceError, trio.ClosedResourceError)


def _only_disconnects(exc: BaseException) -> bool:
    """True for the peer going away, also when a handler's nursery wrapped it in an ExceptionGroup."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_only_disconnects(e) for e in exc.exceptions)
    return isinstance(exc, _DISCONNECTS)


def _local_address(stream: trio.abc.Stream) -> str | None:
    try:
        return str(stream.socket.getsockname()[0])  # type: ignore[attr-defined]
    except (AttributeError, OSError):
        return None


def _remote(stream: trio.abc.Stream) -> str:
    try:
        host, port, *_ = stream.socket.getpeername()  # type: ignore[attr-defined]
        return f"{host}:{port}"
    except (AttributeError, OSError):
        return "?"


async def serve_http(
    routes: Mapping[str, WebSocketRoute],
    *,
    host: str = DEFAULT_HTTP_HOST,
    port: int = DEFAULT_HTTP_PORT,
    allowed_origins: Sequence[str] = (),
    token: str | None = None,
    web_dir: Path = WEB_DIR,
    max_connections: int = DEFAULT_HTTP_MAX_CONNECTIONS,
    get_routes: Mapping[str, GetHandler] | None = None,
    arrival: Arrival | None = None,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the web player and the WebSocket ``routes`` on ``host:port``; never returns.

    Args:
        routes: path (e.g. ``"/stream"``) -> :class:`WebSocketRoute`.
        host: bind address; a non-loopback address requires ``token``.
        port: TCP port; 0 picks a free one.
        allowed_origins: extra browser origins allowed to open WebSockets (``--allowed-origin``).
        token: bearer token; required (and enforced on every handshake) on non-loopback binds.
        web_dir: the player's folder, the only place files are served from.
        max_connections: open connections on the port (pages and WebSockets), counted at accept;
            one more is answered ``503`` and closed. A route's own ``max_connections`` limits its
            WebSockets (one more is closed with code 1013).
        get_routes: dynamic GET endpoints by path prefix (``/cover/``), under the WebSocket
            rules for Origin and token.
        arrival: numbers each connection when it is accepted (:class:`HttpServer`); route handlers
            read it as :attr:`WebSocketRequestInfo.arrival`.
        task_status: ``started(port)`` with the bound port once listening.

    Error handling:
        A failing connection is logged and closed; the port keeps serving everyone else.
    """
    try:
        listeners = await trio.open_tcp_listeners(port, host=host)
    except OSError as exc:  # name the address: "Address already in use" alone does not say which
        shown = f"[{host}]" if ":" in host else host
        raise OSError(exc.errno, f"HTTP port {shown}:{port}: {exc.strerror or exc}") from None
    bound_port = listeners[0].socket.getsockname()[1]
    policy = HttpPolicy(bind_host=host, port=bound_port, allowed_origins=allowed_origins, token=token)
    server = HttpServer(routes, policy, web_dir, max_connections=max_connections, get_routes=get_routes,
                        arrival=arrival)
    log.info("HTTP/WebSocket on http://%s:%d/", host if ":" not in host else f"[{host}]", bound_port)
    async with trio.open_nursery() as nursery:
        await nursery.start(lambda task_status: server.serve(listeners, task_status=task_status))
        task_status.started(bound_port)
