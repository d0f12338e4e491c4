"""auralisctl's standard-library WebSocket client against real servers (trio-websocket, and raw frames)."""

from __future__ import annotations

import os
import socket
import struct
import threading

import pytest
import trio
from trio_websocket import ConnectionClosed, serve_websocket

from clients.auralisctl import ConnectError, WebSocketClient, WebSocketError


async def serve(nursery: trio.Nursery, handler) -> int:
    server = await nursery.start(serve_websocket, handler, "127.0.0.1", 0, None)
    return server.port


async def test_handshake_masked_frames_ping_and_close_with_trio_websocket():
    seen: dict = {}

    async def handler(request):
        seen["headers"] = {k.decode().lower(): v.decode() for k, v in request.headers}
        seen["path"] = request.path
        ws = await request.accept()
        # wsproto refuses unmasked client frames, so every echoed message proves the masking.
        try:
            while True:
                message = await ws.get_message()
                if message == "ping me":
                    with trio.fail_after(5):
                        await ws.ping(b"are you there")  # returns only once our pong came back
                    await ws.send_message("pong received")
                else:
                    await ws.send_message(message)
        except ConnectionClosed as exc:
            seen["close"] = (exc.reason.code, exc.reason.reason)

    def client(port: int) -> list:
        got = []
        with WebSocketClient.connect(f"ws://127.0.0.1:{port}/stream?format=s16", headers=[("Authorization", "Bearer t0k")]) as ws:
            for message in ("hello", b"\x00\x01binary\xff", "x" * 200, b"y" * 70_000, "ping me"):
                ws.send_text(message) if isinstance(message, str) else ws.send_binary(message)
                got.append(ws.recv())
            ws.close(1000, "bye")
            assert ws.recv() is None and ws.closed
        return got

    async with trio.open_nursery() as nursery:
        port = await serve(nursery, handler)
        got = await trio.to_thread.run_sync(client, port)
        nursery.cancel_scope.cancel()
    assert got == ["hello", b"\x00\x01binary\xff", "x" * 200, b"y" * 70_000, "pong received"]
    assert "origin" not in seen["headers"], "a non-browser client sends no Origin"
    assert seen["headers"]["authorization"] == "Bearer t0k"
    assert seen["path"] == "/stream?format=s16"
    assert seen["close"] == (1000, "bye")


async def test_server_close_ends_the_stream_with_its_code():
    async def handler(request):
        ws = await request.accept()
        await ws.send_message("last words")
        await ws.aclose(4001, "too slow")

    def client(port: int):
        ws = WebSocketClient.connect(f"ws://127.0.0.1:{port}/stream")
        try:
            return ws.recv(), ws.recv(), ws.close_code, ws.close_reason
        finally:
            ws.close()

    async with trio.open_nursery() as nursery:
        port = await serve(nursery, handler)
        result = await trio.to_thread.run_sync(client, port)
        nursery.cancel_scope.cancel()
    assert result == ("last words", None, 4001, "too slow")


async def test_refused_upgrade_reports_the_http_status():
    async def handler(request):
        await request.reject(403, body=b"foreign origin")

    async with trio.open_nursery() as nursery:
        port = await serve(nursery, handler)
        with pytest.raises(WebSocketError, match="403"):
            await trio.to_thread.run_sync(lambda: WebSocketClient.connect(f"ws://127.0.0.1:{port}/stream"))
        nursery.cancel_scope.cancel()


def test_nothing_listening_is_a_connect_error():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ConnectError, match=f"127.0.0.1:{port}"):
        WebSocketClient.connect(f"ws://127.0.0.1:{port}/stream", timeout_s=2.0)


class RawServer:
    """A hand-written server that completes the handshake, then sends exactly the bytes given."""

    def __init__(self, frames: bytes) -> None:
        self.frames = frames
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.received = b""
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        import base64
        import hashlib

        conn, _ = self.listener.accept()
        with conn:
            conn.settimeout(5.0)
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(4096)
            key = [line.split(b":", 1)[1].strip() for line in head.split(b"\r\n") if line.lower().startswith(b"sec-websocket-key")][0]
            accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
            conn.sendall(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n" + self.frames
            )
            try:
                while data := conn.recv(4096):
                    self.received += data
            except OSError:
                pass

    def close(self) -> None:
        self.thread.join(timeout=10)
        self.listener.close()


def frame(opcode: int, payload: bytes, *, fin: bool = True, masked: bool = False) -> bytes:
    first = (0x80 if fin else 0) | opcode
    if masked:
        key = os.urandom(4)
        body = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        return bytes([first, 0x80 | len(payload)]) + key + body
    return bytes([first, len(payload)]) + payload


def unmask_client_frames(data: bytes) -> list[tuple[int, bytes]]:
    """Decode the client's frames (all must be masked) into (opcode, payload)."""
    frames = []
    while data:
        opcode, length = data[0] & 0x0F, data[1] & 0x7F
        assert data[1] & 0x80, "client frames are masked"
        key, body = data[2:6], data[6 : 6 + length]
        frames.append((opcode, bytes(b ^ key[i % 4] for i, b in enumerate(body))))
        data = data[6 + length :]
    return frames


def test_fragments_are_joined_and_interleaved_pings_answered():
    server = RawServer(
        frame(0x1, b"frag", fin=False)
        + frame(0x9, b"keepalive")  # a ping between fragments
        + frame(0x0, b"mented", fin=False)
        + frame(0x0, b" text")
        + frame(0x8, struct.pack("!H", 1001) + b"going away")
    )
    try:
        ws = WebSocketClient.connect(f"ws://127.0.0.1:{server.port}/")
        assert ws.recv() == "fragmented text"
        assert ws.recv() is None and ws.close_code == 1001 and ws.close_reason == "going away"
    finally:
        server.close()
    assert unmask_client_frames(server.received) == [(0xA, b"keepalive"), (0x8, struct.pack("!H", 1001))]


def test_a_masked_server_frame_is_a_protocol_error():
    server = RawServer(frame(0x1, b"sneaky", masked=True))
    try:
        ws = WebSocketClient.connect(f"ws://127.0.0.1:{server.port}/")
        with pytest.raises(WebSocketError, match="protocol error"):
            ws.recv()
        assert ws.closed
    finally:
        server.close()
    assert unmask_client_frames(server.received)[0][1][:2] == struct.pack("!H", 1002)
