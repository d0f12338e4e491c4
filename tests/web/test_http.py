"""The HTTP/WebSocket dispatcher on a real socket: static files, Host/Origin/token rules, hostile frames.

Clients are independent of the server's stack: raw sockets for HTTP and the ``websockets`` package
(sync client, run in a thread) for WebSocket.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import trio
import trio_websocket
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from auralisd.transport.http import HttpPolicy, WebSocketRoute, resolve_static, serve_http

TOKEN = "s3cret-token"


async def _echo(ws: trio_websocket.WebSocketConnection, info) -> None:
    while True:
        message = await ws.get_message()
        if message == "boom":
            raise RuntimeError("handler bug")  # must stay inside this connection
        if message == "query":
            await ws.send_message(repr(sorted(info.query.items())))
            continue
        await ws.send_message(message)


ROUTES = {"/echo": WebSocketRoute(_echo, max_message_bytes=1024)}


@pytest.fixture
def web_dir(tmp_path: Path) -> Path:
    web = tmp_path / "web"
    web.mkdir()
    (web / "index.html").write_text("<!doctype html><title>player</title>")
    (web / "app.js").write_text("console.log('hi')")
    (web / ".hidden.js").write_text("secret")
    (tmp_path / "secret.txt").write_text("top secret")
    (tmp_path / "outside.js").write_text("outside")
    os.symlink(tmp_path / "outside.js", web / "link.js")
    return web


async def _start(nursery: trio.Nursery, web_dir: Path, **kwargs) -> int:
    return await nursery.start(lambda task_status: serve_http(ROUTES, port=0, web_dir=web_dir, task_status=task_status, **kwargs))


def _http(port: int, request: bytes, host: str = "127.0.0.1") -> tuple[int, dict[str, str], bytes]:
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return status, headers, body


def _get(port: int, path: str, host_header: str | None = None, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    host_header = host_header or f"127.0.0.1:{port}"
    return _http(port, f"{method} {path} HTTP/1.1\r\nHost: {host_header}\r\n\r\n".encode())


def _ws(url: str, **kwargs):
    return connect(url, proxy=None, open_timeout=10, **kwargs)


def _ws_roundtrip(url: str, message: str | bytes = "hello", **kwargs) -> str | bytes:
    with _ws(url, **kwargs) as ws:
        ws.send(message)
        return ws.recv(timeout=10)


def _ws_status(url: str, **kwargs) -> int:
    """HTTP status of a refused handshake (101 when accepted)."""
    try:
        with _ws(url, **kwargs):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


async def test_serves_player_files_and_nothing_else(web_dir: Path) -> None:
    async with trio.open_nursery() as nursery:
        port = await _start(nursery, web_dir)
        status, headers, body = await trio.to_thread.run_sync(_get, port, "/")
        assert status == 200 and body.startswith(b"<!doctype html>")
        assert headers["content-type"].startswith("text/html") and headers["x-content-type-options"] == "nosniff"
        status, headers, body = await trio.to_thread.run_sync(_get, port, "/app.js")
        assert (status, headers["content-type"], body) == (200, "text/javascript; charset=utf-8", b"console.log('hi')")
        status, headers, body = await trio.to_thread.run_sync(lambda: _get(port, "/app.js", method="HEAD"))
        assert status == 200 and body == b"" and headers["content-length"] == str(len("console.log('hi')"))
        for path in ("/../secret.txt", "/%2e%2e/secret.txt", "/..%2fsecret.txt", "/%2E%2E%2Fsecret.txt",
                     "/.hidden.js", "/link.js", "/nope.html", "//etc/passwd", "/..\\secret.txt", "/index.html%00.js"):
            status, _, body = await trio.to_thread.run_sync(_get, port, path)
            assert status == 404, path
            assert b"secret" not in body and b"outside" not in body
        status, _, _ = await trio.to_thread.run_sync(
            _http, port, f"POST / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\n\r\n".encode())
        assert status == 405
        status, _, _ = await trio.to_thread.run_sync(_get, port, "/echo")
        assert status == 426  # a WebSocket endpoint asked for as a page
        status, _, _ = await trio.to_thread.run_sync(_http, port, b"garbage\r\n\r\n")
        assert status == 400
        nursery.cancel_scope.cancel()


async def test_host_header_must_name_this_server(web_dir: Path) -> None:
    async with trio.open_nursery() as nursery:
        port = await _start(nursery, web_dir)
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "LOCALHOST"):
            assert (await trio.to_thread.run_sync(_get, port, "/", host))[0] == 200, host
        for host in ("evil.example", f"evil.example:{port}", f"rebind.attacker.net:{port}", "127.0.0.1.evil.example"):
            assert (await trio.to_thread.run_sync(_get, port, "/", host))[0] == 403, host
        status, _, _ = await trio.to_thread.run_sync(_http, port, b"GET / HTTP/1.0\r\n\r\n")
        assert status == 403  # no Host at all
        # A WebSocket handshake carrying a rebinding Host is refused too.
        status, _, _ = await trio.to_thread.run_sync(_http, port, (
            b"GET /echo HTTP/1.1\r\nHost: evil.example\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"))
        assert status == 403
        nursery.cancel_scope.cancel()


async def test_origin_rules(web_dir: Path) -> None:
    async with trio.open_nursery() as nursery:
        port = await _start(nursery, web_dir, allowed_origins=["https://player.example.org"])
        url = f"ws://127.0.0.1:{port}/echo"
        # No Origin: a non-browser client, accepted.
        assert await trio.to_thread.run_sync(_ws_roundtrip, url) == "hello"
        for origin in (f"http://localhost:{port}", f"http://127.0.0.1:{port}", f"http://[::1]:{port}",
                       "https://player.example.org"):
            assert await trio.to_thread.run_sync(lambda origin=origin: _ws_roundtrip(url, origin=origin)) == "hello", origin
        for origin in ("http://evil.example", f"http://localhost:{port + 1}", f"https://localhost:{port}",
                       "null", f"http://localhost.evil.example:{port}"):
            assert await trio.to_thread.run_sync(lambda origin=origin: _ws_status(url, origin=origin)) == 403, origin
        assert await trio.to_thread.run_sync(lambda: _ws_status(f"ws://127.0.0.1:{port}/nope")) == 404
        nursery.cancel_scope.cancel()


async def test_token_on_non_loopback_bind(web_dir: Path) -> None:
    with pytest.raises(ValueError, match="token"):
        HttpPolicy(bind_host="0.0.0.0", port=1)
    async with trio.open_nursery() as nursery:
        port = await _start(nursery, web_dir, host="0.0.0.0", token=TOKEN)
        url = f"ws://127.0.0.1:{port}/echo"
        assert await trio.to_thread.run_sync(lambda: _ws_status(url)) == 403
        assert await trio.to_thread.run_sync(lambda: _ws_status(url + "?token=wrong")) == 403
        assert await trio.to_thread.run_sync(
            lambda: _ws_status(url, additional_headers={"Authorization": "Bearer wrong"})) == 403
        assert await trio.to_thread.run_sync(lambda: _ws_roundtrip(url + f"?token={TOKEN}", "query")) == \
            repr([("token", TOKEN)])
        assert await trio.to_thread.run_sync(
            lambda: _ws_roundtrip(url, additional_headers={"Authorization": f"Bearer {TOKEN}"})) == "hello"
        # The page itself is public (it carries no secret); it reads the token from its own URL.
        assert (await trio.to_thread.run_sync(_get, port, "/"))[0] == 200
        nursery.cancel_scope.cancel()


def _raw_garbage_after_handshake(port: int) -> bytes:
    """Complete a handshake by hand, then send bytes that are no WebSocket frame."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET /echo HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(4096)
        assert head.startswith(b"HTTP/1.1 101")
        sock.sendall(b"\xff" * 64)  # reserved opcode, unmasked: a protocol error
        data = b""
        try:
            while chunk := sock.recv(4096):
                data += chunk
        except ConnectionResetError:
            pass
        return data


async def test_oversize_and_garbage_close_only_that_connection(web_dir: Path) -> None:
    async with trio.open_nursery() as nursery:
        port = await _start(nursery, web_dir)
        url = f"ws://127.0.0.1:{port}/echo"

        def scenario() -> tuple[int | None, bytes, str, str]:
            with _ws(url) as survivor:
                survivor.send("before")
                assert survivor.recv(timeout=10) == "before"
                with _ws(url) as big:
                    big.send("x" * 5000)  # route limit is 1024 bytes
                    with pytest.raises(ConnectionClosed):
                        big.recv(timeout=10)
                    code = big.close_code
                garbage_reply = _raw_garbage_after_handshake(port)
                with _ws(url) as buggy:
                    buggy.send("boom")
                    with pytest.raises(ConnectionClosed):
                        buggy.recv(timeout=10)
                survivor.send("after")
                return code, garbage_reply, survivor.recv(timeout=10), _ws_roundtrip(url, "new")

        status, _, _ = await trio.to_thread.run_sync(_http, port, (  # an upgrade without a key: refused
            f"GET /echo HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
        ).encode())
        assert status == 400
        code, garbage_reply, after, new = await trio.to_thread.run_sync(scenario)
        assert code == 1009  # Message Too Big
        # The server hung up (recv saw EOF before the socket's 10 s timeout), at most after a close frame.
        assert garbage_reply == b"" or garbage_reply[:1] == b"\x88"
        assert (after, new) == ("after", "new")
        nursery.cancel_scope.cancel()


def test_resolve_static_refuses_escapes(web_dir: Path) -> None:
    assert resolve_static(web_dir, "/") == (web_dir / "index.html").resolve()
    assert resolve_static(web_dir, "/app.js?v=1") == (web_dir / "app.js").resolve()
    for target in ("/../secret.txt", "/a/../../secret.txt", "/.hidden.js", "/link.js", "/secret.txt"):
        assert resolve_static(web_dir, target) is None, target


# ---------------------------------------------------------------- the real daemon's endpoints


def test_control_needs_no_auth_on_a_loopback_bind_even_when_a_token_exists(tmp_path: Path) -> None:
    """A token (for --control-tcp) must not break the local web player, which sends `auth` only with ?token=."""
    import msgpack

    from auralis.audio import write_audio
    from auralis.synth import make_music
    from tests.web.daemon import free_port, running_daemon

    music = tmp_path / "music"
    music.mkdir()
    write_audio(music / "a.wav", make_music(1.0, 44_100, seed=1), 44_100)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "-0123456789\n")
    with running_daemon(tmp_path, music, "--control-tcp", f"127.0.0.1:{free_port()}", "--token-file",
                        str(token_file), workers=1) as daemon:
        origin = f"http://127.0.0.1:{daemon.port}"  # what the page sends
        with _ws(f"{daemon.ws}/control", origin=origin) as ws:
            ws.send(msgpack.packb([0, 1, "status", {}]))
            _, msgid, error, result = msgpack.unpackb(ws.recv(timeout=30))
            assert (msgid, error) == (1, None) and result["state"] in ("stop", "pause")
            ws.send(msgpack.packb([0, 2, "auth", {"token": TOKEN + "-0123456789"}]))  # harmless when sent
            assert msgpack.unpackb(ws.recv(timeout=30))[2:] == [None, True]


def _session_close(url: str, message: str) -> tuple[list[dict], int | None]:
    import json

    events = []
    with _ws(url) as ws:
        ws.send(message)
        try:
            while True:
                reply = ws.recv(timeout=20)
                if isinstance(reply, str):
                    events.append(json.loads(reply))
                    if events[-1].get("type") == "audio_stream_error":
                        ws.send("[" * 4000)  # then garbage: closes the session
        except ConnectionClosed:
            pass
        return events, ws.close_code


def test_session_refuses_huge_ids_and_closes_deep_nesting_with_1008(daemon) -> None:
    url = f"{daemon.ws}/session"
    events, code = _session_close(url, f'{{"type": "play_enhanced", "track_id": {2**70}}}')
    assert [e["code"] for e in events if e["type"] == "audio_stream_error"] == ["invalid_params"]
    assert code == 1008
    events, code = _session_close(url, "[" * 4096)
    assert (events, code) == ([], 1008)
    log = daemon.log()
    assert "RecursionError" not in log and "OverflowError" not in log


def test_address_in_use_names_the_address(tmp_path: Path) -> None:
    import subprocess
    import sys

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        env = {**os.environ, "XDG_CONFIG_HOME": str(tmp_path / "config")}
        env.pop("NOTIFY_SOCKET", None)
        result = subprocess.run(
            [sys.executable, "-m", "auralisd", "--http-port", str(port), "--workers", "1",
             "--state-dir", str(tmp_path / "state"), "--runtime-dir", str(tmp_path / "run")],
            capture_output=True, text=True, timeout=120, env=env,
        )  # fmt: skip
    assert result.returncode == 1, result.stderr
    assert f"127.0.0.1:{port}: Address already in use" in result.stderr
    assert "Traceback" not in result.stderr


# ----------------------------------------------------------------- issue 11: protocol violations and limits
def _masked(first_byte: int, payload: bytes, mask: bytes = b"\x01\x02\x03\x04") -> bytes:
    """One client frame: ``first_byte`` (FIN/RSV/opcode) then a masked payload."""
    n = len(payload)
    length = bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + n.to_bytes(2, "big")
    return bytes([first_byte]) + length + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def _handshake(port: int, path: str = "/echo") -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def _close_code_after(port: int, frame: bytes) -> int | None:
    """Send ``frame`` after a handshake; the close code of the server's first frame (None: no close frame)."""
    with _handshake(port) as sock:
        sock.sendall(frame)
        data = b""
        try:
            while chunk := sock.recv(4096):  # read to EOF: the server must also close the TCP connection
                data += chunk
        except ConnectionResetError:
            pass
    if len(data) < 4 or data[0] != 0x88:
        return None
    return int.from_bytes(data[2:4], "big")


VIOLATIONS = {
    "unmasked frame": (b"\x81\x02hi", 1002),
    "reserved opcode 3": (_masked(0x83, b"x"), 1002),
    "RSV1 without an extension": (_masked(0xC1, b"hi"), 1002),
    "200-byte ping": (_masked(0x89, b"p" * 200), 1002),
    "close code 999": (_masked(0x88, (999).to_bytes(2, "big")), 1002),
    "fragmented ping": (_masked(0x09, b"p"), 1002),
    "invalid UTF-8 text": (_masked(0x81, b"\xff\xfe"), 1007),  # RFC 6455 7.4.1: 1007, data not of the message's type
}


async def test_websocket_protocol_violations_get_a_close_frame_before_the_tcp_close(web_dir: Path) -> None:
    async with trio.open_nursery() as nursery:
        port = await _start(nursery, web_dir)
        for name, (frame, code) in VIOLATIONS.items():
            assert await trio.to_thread.run_sync(_close_code_after, port, frame) == code, name
        assert await trio.to_thread.run_sync(_ws_roundtrip, f"ws://127.0.0.1:{port}/echo") == "hello"
        nursery.cancel_scope.cancel()


def _head_of(port: int, size: int) -> bytes:
    """A GET / request head of exactly ``size`` bytes (padded with one header)."""
    start = f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Pad: "
    pad = size - len(start) - 4
    assert pad >= 0
    return (start + "a" * pad + "\r\n\r\n").encode()


async def test_request_head_limit_is_exact(web_dir: Path) -> None:
    from auralisd.transport.http import MAX_HEAD_BYTES

    async with trio.open_nursery() as nursery:
        port = await _start(nursery, web_dir)
        for size, status in ((MAX_HEAD_BYTES, 200), (MAX_HEAD_BYTES + 1, 431), (20_000, 431), (64_000, 431)):
            assert len(_head_of(port, size)) == size
            assert (await trio.to_thread.run_sync(_http, port, _head_of(port, size)))[0] == status, size
        nursery.cancel_scope.cancel()


def _status_or_eof(sock: socket.socket) -> int | None:
    """The HTTP status the server sent on ``sock`` before closing it, or None while it stays silent."""
    sock.settimeout(0.5)
    try:
        data = sock.recv(4096)
    except TimeoutError:
        return None
    return int(data.split()[1]) if data.startswith(b"HTTP/1.1") else -1


async def test_http_connections_are_limited_at_accept_and_refused_with_503(web_dir: Path) -> None:
    limit = 8
    async with trio.open_nursery() as nursery:
        port = await _start(nursery, web_dir, max_connections=limit)

        def burst() -> list[int | None]:
            socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(limit + 12)]
            try:
                return [_status_or_eof(s) for s in socks]
            finally:
                for s in socks:
                    s.close()

        statuses = await trio.to_thread.run_sync(burst)
        assert statuses.count(503) == 12 and statuses.count(None) == limit, statuses  # idle ones wait for a head

        def served_again() -> int:  # the slots come back once the idle ones have gone
            for _ in range(100):
                status = _get(port, "/")[0]
                if status != 503:
                    return status
            return 503

        assert await trio.to_thread.run_sync(served_again) == 200
        nursery.cancel_scope.cancel()


async def test_route_listener_limit_closes_the_extra_one_with_1013(web_dir: Path) -> None:
    routes = {"/echo": WebSocketRoute(_echo, max_message_bytes=1024, max_connections=2)}
    async with trio.open_nursery() as nursery:
        port = await nursery.start(lambda task_status: serve_http(routes, port=0, web_dir=web_dir, task_status=task_status))
        url = f"ws://127.0.0.1:{port}/echo"

        def scenario() -> tuple[int | None, str]:
            with _ws(url) as first, _ws(url) as second:
                first.send("a")
                second.send("b")
                assert (first.recv(timeout=10), second.recv(timeout=10)) == ("a", "b")
                with _ws(url) as third:
                    with pytest.raises(ConnectionClosed):
                        third.recv(timeout=10)
                    code = third.close_code
            return code, _ws_roundtrip(url, "again")  # the slots are given back

        code, again = await trio.to_thread.run_sync(scenario)
        assert (code, again) == (1013, "again")
        nursery.cancel_scope.cancel()


async def _picture(rest: str) -> tuple[bytes, str] | None:
    return {"1": (b"\x89PNG\r\n\x1a\npicture", "image/png"), "2": (b"", "")}.get(rest)


async def test_get_routes_follow_the_websocket_rules_for_origin_and_token(web_dir: Path) -> None:
    """A dynamic GET route (the daemon's /cover/): 200 with its type, 204 when empty, 404 when unknown;
    a foreign Origin and, on a non-loopback bind, a missing or wrong token get 403."""
    async with trio.open_nursery() as nursery:
        port = await _start(nursery, web_dir, host="0.0.0.0", token=TOKEN, get_routes={"/cover/": _picture})
        get = lambda path, extra="": _http(  # noqa: E731
            port, f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra}\r\n".encode())
        status, headers, body = await trio.to_thread.run_sync(get, f"/cover/1?token={TOKEN}")
        assert (status, headers["content-type"], body) == (200, "image/png", b"\x89PNG\r\n\x1a\npicture")
        assert headers["x-content-type-options"] == "nosniff"
        assert (await trio.to_thread.run_sync(get, "/cover/1", f"Authorization: Bearer {TOKEN}\r\n"))[0] == 200
        status, headers, body = await trio.to_thread.run_sync(get, f"/cover/2?token={TOKEN}")
        assert (status, body) == (204, b"") and "content-length" not in headers
        assert (await trio.to_thread.run_sync(get, f"/cover/3?token={TOKEN}"))[0] == 404
        assert (await trio.to_thread.run_sync(get, "/cover/1"))[0] == 403
        assert (await trio.to_thread.run_sync(get, "/cover/1?token=wrong"))[0] == 403
        foreign = f"Origin: http://evil.example\r\nAuthorization: Bearer {TOKEN}\r\n"
        assert (await trio.to_thread.run_sync(get, "/cover/1", foreign))[0] == 403
        nursery.cancel_scope.cancel()
