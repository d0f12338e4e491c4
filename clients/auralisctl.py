#!/usr/bin/env python3
"""auralisctl: the command-line remote for auralisd, in the spirit of ``mpc``.

A thin client: it speaks the daemon's msgpack-RPC control protocol (``docs/protocol.md``) and
needs nothing but ``msgpack`` and the Python standard library, so this one file can be copied
to any machine with ``python3-msgpack`` and run there (a test enforces the dependency rule).

Finding the daemon (first match wins): ``--host HOST:PORT`` (TCP; sends ``auth`` with
``--token``/``--token-file``/``$AURALIS_TOKEN`` first), ``--socket PATH``, ``$AURALIS_SOCKET``,
``$AURALIS_HOST``, then the daemon's default socket ``$XDG_RUNTIME_DIR/auralis/control.sock``
(``/tmp/auralis-UID/control.sock`` without ``XDG_RUNTIME_DIR``, as auralisd does).

Queue positions on the command line are 1-based, as in mpc (``#2/10`` is the second track);
the protocol's are 0-based.

Exit codes: 0 ok, 1 the daemon answered with an error (message on stderr), 2 usage error,
3 cannot connect (the message names the socket or address that was tried).

``listen`` carries its own minimal WebSocket client (RFC 6455 over the standard library:
handshake, masked frames, ping/pong, close; it sends no ``Origin``, so the daemon treats it as
a non-browser client) and writes the audio stream to a WAV file or raw PCM on stdout::

    auralisctl listen --out - | aplay -f FLOAT_LE -c 2 -r 44100
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import math
import os
import re
import socket
import struct
import sys
import time
import urllib.parse
from collections import deque
from collections.abc import Callable, Sequence
from typing import IO, Any, Final

import msgpack

EXIT_OK: Final = 0
EXIT_DAEMON_ERROR: Final = 1
EXIT_USAGE: Final = 2
EXIT_NO_CONNECTION: Final = 3
EXIT_INTERRUPTED: Final = 130  # 128 + SIGINT, the shell convention

DEFAULT_TIMEOUT_S: Final = 30.0  # per request (a socket-activated daemon may be starting); idle/watch wait without limit
ANALYSIS_POLL_S: Final = 0.5  # `analysis --wait` asks the daemon for its totals this often
DEFAULT_HTTP: Final = "127.0.0.1:8765"  # auralisd's default --http-host/--http-port (issue 4)
CONTROL_SOCKET_NAME: Final = "control.sock"
MAX_MESSAGE_BYTES: Final = 64 << 20  # largest control or WebSocket message we accept (a long queue.list)
RECV_BYTES: Final = 1 << 16

REQUEST: Final = 0  # msgpack-RPC message types (docs/protocol.md)
RESPONSE: Final = 1
NOTIFICATION: Final = 2

EVENTS: Final = ("player", "queue", "options", "volume", "scan_progress", "fingerprint_progress", "mastering",
                  "stored_playlist", "error")  # fmt: skip
OPTION_FLAGS: Final = ("repeat", "random", "single", "consume")
STATE_LABELS: Final = {"play": "playing", "pause": "paused", "stop": "stopped"}

WS_GUID: Final = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3
WS_CONTINUATION, WS_TEXT, WS_BINARY, WS_CLOSE, WS_PING, WS_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
WS_CLOSE_NORMAL: Final = 1000
WS_CLOSE_PROTOCOL_ERROR: Final = 1002
WS_CLOSE_TOO_BIG: Final = 1009
WS_CLOSE_WAIT_S: Final = 2.0  # how long close() waits for the server's close frame
AUDIO_HEADER: Final = struct.Struct("<IIQ")  # stream_epoch, sequence, offset_frames (issue 5 wire format)
SAMPLE_BYTES: Final = {"f32": 4, "s16": 2}
LISTEN_FORMATS: Final = ("f32", "s16", "opus")  # opus: decoded here with PyAV, written as f32 at 48 kHz
OPUS_HEADER: Final = struct.Struct("<IIQBBHIB")  # epoch, sequence, offset, version, flags, skip, keep, packets
OPUS_LAYOUT_VERSION: Final = 1
WAVE_FORMAT_PCM: Final = 0x0001  # RIFF/WAVE format tags (Microsoft mmreg.h)
WAVE_FORMAT_IEEE_FLOAT: Final = 0x0003


# --------------------------------------------------------------------------------------------
# Errors: each carries the exit code it ends the program with.


class CtlError(Exception):
    """A failure that ends the command with ``exit_code`` and a message on stderr."""

    exit_code: int = EXIT_DAEMON_ERROR


class UsageError(CtlError):
    """The command line asks for something impossible (exit 2)."""

    exit_code = EXIT_USAGE


class ConnectError(CtlError):
    """The daemon cannot be reached, or the connection broke (exit 3)."""

    exit_code = EXIT_NO_CONNECTION


class DaemonError(CtlError):
    """The daemon answered a request with an error (exit 1)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{message} ({code})")
        self.code = code
        self.message = message


# --------------------------------------------------------------------------------------------
# Where the daemon is.


class Target:
    """Where to reach the daemon: a Unix socket path or a TCP address, and where that came from."""

    def __init__(
        self, *, path: str | None = None, host: str | None = None, port: int = 0, token: str | None = None, source: str
    ) -> None:
        self.path = path
        self.host = host
        self.port = port
        self.token = token
        self.source = source

    @property
    def is_local(self) -> bool:
        """True for a Unix socket: the daemon sees the same files we do."""
        return self.path is not None

    def describe(self) -> str:
        if self.path is not None:
            return self.path
        host = f"[{self.host}]" if self.host and ":" in self.host else self.host
        return f"{host}:{self.port}"


def default_socket_path(environ: dict[str, str] | None = None) -> str:
    """The daemon's default control socket: ``$XDG_RUNTIME_DIR/auralis/control.sock``.

    Without ``XDG_RUNTIME_DIR`` auralisd uses ``/tmp/auralis-UID``; so do we.
    """
    env = os.environ if environ is None else environ
    base = env.get("XDG_RUNTIME_DIR")
    if base and os.path.isabs(base):
        return os.path.join(base, "auralis", CONTROL_SOCKET_NAME)
    return os.path.join("/tmp", f"auralis-{os.getuid()}", CONTROL_SOCKET_NAME)


def parse_host_port(text: str, default_port: int | None = None) -> tuple[str, int]:
    """``HOST:PORT``, ``[V6]:PORT`` or (with ``default_port``) ``HOST`` -> ``(host, port)``.

    Raises:
        UsageError: the text is not an address.
    """
    text = text.strip()
    host, port_text = text, ""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise UsageError(f"bad address {text!r}: use [IPV6]:PORT")
        host, rest = text[1:end], text[end + 1 :]
        if rest.startswith(":"):
            port_text = rest[1:]
        elif rest:
            raise UsageError(f"bad address {text!r}: use [IPV6]:PORT")
    elif text.count(":") == 1:
        host, port_text = text.split(":")
    if not port_text:
        if default_port is None:
            raise UsageError(f"bad address {text!r}: use HOST:PORT")
        port_text = str(default_port)
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise UsageError(f"bad port in {text!r} (1-65535)")
    return host or "127.0.0.1", int(port_text)


def read_token(args: argparse.Namespace) -> str | None:
    """The TCP token: ``--token``, else the first line of ``--token-file``, else ``$AURALIS_TOKEN``."""
    if args.token:
        return str(args.token)
    if args.token_file:
        try:
            with open(args.token_file, encoding="utf-8") as handle:
                return handle.readline().strip()
        except OSError as exc:
            raise UsageError(f"cannot read --token-file {args.token_file}: {exc.strerror}") from None
    return os.environ.get("AURALIS_TOKEN") or None


def resolve_target(args: argparse.Namespace) -> Target:
    """Apply the precedence documented at the top of this module."""
    if args.host and args.socket:
        raise UsageError("give either --socket or --host, not both")
    if args.host:
        host, port = parse_host_port(args.host)
        return Target(host=host, port=port, token=read_token(args), source="--host")
    if args.socket:
        return Target(path=args.socket, source="--socket")
    if os.environ.get("AURALIS_SOCKET"):
        return Target(path=os.environ["AURALIS_SOCKET"], source="$AURALIS_SOCKET")
    if os.environ.get("AURALIS_HOST"):
        host, port = parse_host_port(os.environ["AURALIS_HOST"])
        return Target(host=host, port=port, token=read_token(args), source="$AURALIS_HOST")
    source = "default $XDG_RUNTIME_DIR/auralis/control.sock"
    if not os.environ.get("XDG_RUNTIME_DIR"):
        source = "default without $XDG_RUNTIME_DIR"
    return Target(path=default_socket_path(), source=source)


def connect_hint(target: Target, reason: str) -> str:
    """The exit-3 message: what was tried, why it failed, and what to do about it."""
    if target.is_local:
        return (
            f"cannot connect to auralisd at {target.path} ({target.source}): {reason}\n"
            "hint: is the daemon running? Start it with `systemctl --user start auralisd` or `auralisd`,\n"
            "      or point auralisctl at its socket with --socket PATH or $AURALIS_SOCKET."
        )
    return (
        f"cannot connect to auralisd at {target.describe()} ({target.source}): {reason}\n"
        "hint: is auralisd serving TCP there (auralisd --control-tcp [HOST:]PORT)?"
    )


# --------------------------------------------------------------------------------------------
# The control connection.


class ControlClient:
    """A blocking msgpack-RPC connection to auralisd.

    ``call`` sends one request and returns its result; notifications that arrive meanwhile are
    kept in order for ``next_event``.
    """

    def __init__(self, sock: socket.socket, target: Target, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self._sock = sock
        self._target = target
        self._timeout_s = timeout_s
        self._next_msgid = 0
        self._events: deque[tuple[str, Any]] = deque()
        self._unpacker = msgpack.Unpacker(
            raw=False,
            max_buffer_size=MAX_MESSAGE_BYTES,
            strict_map_key=False,
        )
        self._packer = msgpack.Packer(use_bin_type=True)

    @classmethod
    def connect(cls, target: Target, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> ControlClient:
        """Connect (and authenticate on TCP).

        Raises:
            ConnectError: nothing listens there, or the connection broke.
            DaemonError: the daemon refused the token.
        """
        try:
            if target.path is not None:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.settimeout(timeout_s)
                try:
                    sock.connect(target.path)
                except BaseException:
                    sock.close()
                    raise
            else:
                sock = socket.create_connection((target.host, target.port), timeout=timeout_s)
        except OSError as exc:
            raise ConnectError(connect_hint(target, exc.strerror or str(exc))) from None
        client = cls(sock, target, timeout_s=timeout_s)
        if target.path is None:
            if not target.token:
                client.close()
                raise UsageError("TCP needs a token: --token T, --token-file FILE or $AURALIS_TOKEN")
            try:
                client.call("auth", {"token": target.token})
            except BaseException:
                client.close()
                raise
        return client

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """Send ``[0, msgid, method, params]`` and return the result of the matching response.

        Raises:
            DaemonError: the response carries an error.
            ConnectError: the connection broke or timed out.
        """
        msgid = self._next_msgid
        self._next_msgid += 1
        self._send([REQUEST, msgid, method, params or {}])
        self._sock.settimeout(self._timeout_s)
        while True:
            message = self._receive()
            if message[0] == NOTIFICATION:
                self._events.append((message[1], message[2]))
                continue
            if message[1] != msgid:
                continue  # a late answer to nothing we are waiting for
            error, result = message[2], message[3]
            if error is not None:
                code = str(error.get("code", "internal")) if isinstance(error, dict) else "internal"
                text = str(error.get("message", error)) if isinstance(error, dict) else str(error)
                raise DaemonError(code, text)
            return result

    def next_event(self, timeout_s: float | None = None) -> tuple[str, Any] | None:
        """The next notification ``(event, data)``; None when ``timeout_s`` passes first."""
        if self._events:
            return self._events.popleft()
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
            self._sock.settimeout(remaining)
            try:
                message = self._receive(timeout_is_error=False)
            except TimeoutError:
                return None
            if message[0] == NOTIFICATION:
                return message[1], message[2]

    def _send(self, message: list[Any]) -> None:
        try:
            self._sock.sendall(self._packer.pack(message))
        except OSError as exc:
            raise ConnectError(f"lost the connection to auralisd at {self._target.describe()}: {exc}") from None

    def _receive(self, *, timeout_is_error: bool = True) -> list[Any]:
        while True:
            try:
                message = next(self._unpacker)
            except StopIteration:
                pass
            except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError) as exc:
                raise ConnectError(f"auralisd at {self._target.describe()} sent a malformed frame: {exc}") from None
            else:
                if (
                    isinstance(message, list)
                    and (
                        (len(message) == 4 and message[0] == RESPONSE)
                        or (len(message) == 3 and message[0] == NOTIFICATION and isinstance(message[1], str))
                    )
                ):
                    return message
                raise ConnectError(f"auralisd at {self._target.describe()} sent an unexpected message: {message!r:.200}")
            try:
                data = self._sock.recv(RECV_BYTES)
            except TimeoutError:
                if not timeout_is_error:
                    raise
                raise ConnectError(
                    f"auralisd at {self._target.describe()} did not answer within {self._timeout_s:g} s"
                ) from None
            except OSError as exc:
                raise ConnectError(f"lost the connection to auralisd at {self._target.describe()}: {exc}") from None
            if not data:
                raise ConnectError(f"auralisd at {self._target.describe()} closed the connection")
            try:
                self._unpacker.feed(data)
            except msgpack.BufferFull:
                raise ConnectError(f"auralisd at {self._target.describe()} sent a message over the size limit") from None


# --------------------------------------------------------------------------------------------
# A minimal WebSocket client (RFC 6455) on the standard library.


class WebSocketError(CtlError):
    """A failed handshake or a protocol violation by the server."""


class StreamCut(WebSocketError):
    """The connection ended in the middle of a frame (the server gave up sending, or went away)."""


class WebSocketClient:
    """A blocking RFC 6455 client: handshake, masked frames, ping/pong, close. No extensions.

    It never sends ``Origin``: the daemon accepts handshakes without one as non-browser clients.
    """

    def __init__(self, sock: socket.socket, buffered: bytes = b"", *, max_message_bytes: int = MAX_MESSAGE_BYTES) -> None:
        self._sock = sock
        self._buffer = bytearray(buffered)
        self._max_message_bytes = max_message_bytes
        self._close_sent = False
        self.closed = False
        self.close_code: int | None = None
        self.close_reason = ""

    @classmethod
    def connect(
        cls, url: str, *, headers: Sequence[tuple[str, str]] = (), timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> WebSocketClient:
        """Open ``ws://host:port/path?query`` and complete the opening handshake.

        Raises:
            ConnectError: nothing listens there.
            WebSocketError: the server refused the upgrade (the message has its HTTP status).
        """
        parts = urllib.parse.urlsplit(url)
        if parts.scheme != "ws":
            raise UsageError(f"only ws:// URLs are supported, not {url!r}")
        host = parts.hostname or "127.0.0.1"
        port = parts.port or 80
        try:
            sock = socket.create_connection((host, port), timeout=timeout_s)
        except OSError as exc:
            raise ConnectError(
                f"cannot connect to auralisd's HTTP port at {parts.netloc}: {exc.strerror or exc}\n"
                "hint: is auralisd running and serving HTTP there? Use --http HOST:PORT or $AURALIS_HTTP."
            ) from None
        try:
            key = base64.b64encode(os.urandom(16)).decode("ascii")
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            host_header = f"[{host}]" if ":" in host else host
            if parts.port:
                host_header += f":{port}"
            lines = [
                f"GET {target} HTTP/1.1",
                f"Host: {host_header}",
                "Upgrade: websocket",
                "Connection: Upgrade",
                f"Sec-WebSocket-Key: {key}",
                "Sec-WebSocket-Version: 13",
                "User-Agent: auralisctl",
            ]
            lines += [f"{name}: {value}" for name, value in headers]
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
            head = bytearray()
            while b"\r\n\r\n" not in head:
                data = sock.recv(4096)
                if not data:
                    raise WebSocketError(f"{url}: the server closed the connection during the handshake")
                head += data
                if len(head) > 65536:
                    raise WebSocketError(f"{url}: the handshake response is too long")
            head_bytes, _, rest = bytes(head).partition(b"\r\n\r\n")
            status_line, *header_lines = head_bytes.decode("latin-1").split("\r\n")
            fields = {}
            for line in header_lines:
                name, _, value = line.partition(":")
                fields[name.strip().lower()] = value.strip()
            status = status_line.split(" ", 2)
            if len(status) < 2 or status[1] != "101":
                raise WebSocketError(f"{url}: the server refused the WebSocket upgrade: {status_line}")
            expected = base64.b64encode(hashlib.sha1((key + WS_GUID).encode("ascii")).digest()).decode("ascii")
            if (
                fields.get("upgrade", "").lower() != "websocket"
                or "upgrade" not in fields.get("connection", "").lower()
                or fields.get("sec-websocket-accept") != expected
            ):
                raise WebSocketError(f"{url}: invalid WebSocket handshake response")
            if fields.get("sec-websocket-extensions"):
                raise WebSocketError(f"{url}: the server chose an extension we did not offer")
        except TimeoutError:
            sock.close()
            raise WebSocketError(f"{url}: no handshake response within {timeout_s:g} s") from None
        except OSError as exc:
            sock.close()
            raise ConnectError(f"{url}: the connection broke during the handshake: {exc}") from None
        except BaseException:
            sock.close()
            raise
        return cls(sock, rest)

    def settimeout(self, timeout_s: float | None) -> None:
        self._sock.settimeout(timeout_s)

    def send_text(self, text: str) -> None:
        self._send_frame(WS_TEXT, text.encode("utf-8"))

    def send_binary(self, data: bytes) -> None:
        self._send_frame(WS_BINARY, bytes(data))

    def ping(self, payload: bytes = b"") -> None:
        self._send_frame(WS_PING, payload)

    def recv(self) -> str | bytes | None:
        """The next message: ``str`` (text), ``bytes`` (binary), or None once the connection closed.

        Pings are answered with pongs, pongs are dropped, and a close frame is answered and
        ends the stream (``close_code`` and ``close_reason`` tell why).

        Raises:
            WebSocketError: a protocol violation (the connection is closed with 1002 or 1009).
            TimeoutError: nothing arrived within the socket timeout.
        """
        if self.closed:
            return None
        message = bytearray()
        message_opcode: int | None = None
        while True:
            try:
                header = self._read_exact(2)
            except EOFError:
                self._abort()
                return None
            fin, rsv, opcode = header[0] & 0x80, header[0] & 0x70, header[0] & 0x0F
            masked, length = header[1] & 0x80, header[1] & 0x7F
            if rsv or masked:
                self._fail(WS_CLOSE_PROTOCOL_ERROR, "reserved bits set or a masked server frame")
            if length == 126:
                (length,) = struct.unpack("!H", self._read_exact_or_fail(2))
            elif length == 127:
                (length,) = struct.unpack("!Q", self._read_exact_or_fail(8))
            if opcode >= 0x8 and (length > 125 or not fin):
                self._fail(WS_CLOSE_PROTOCOL_ERROR, "invalid control frame")
            if len(message) + length > self._max_message_bytes:
                self._fail(WS_CLOSE_TOO_BIG, f"message over {self._max_message_bytes} bytes")
            payload = self._read_exact_or_fail(length)
            if opcode == WS_PING:
                self._send_frame(WS_PONG, payload)
                continue
            if opcode == WS_PONG:
                continue
            if opcode == WS_CLOSE:
                self.close_code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                self.close_reason = payload[2:].decode("utf-8", errors="replace")
                if not self._close_sent:
                    self._send_close(WS_CLOSE_NORMAL if self.close_code == 1005 else self.close_code)
                self._abort()
                return None
            if opcode in (WS_TEXT, WS_BINARY):
                if message_opcode is not None:
                    self._fail(WS_CLOSE_PROTOCOL_ERROR, "a new message before the previous one ended")
                message_opcode = opcode
            elif opcode == WS_CONTINUATION:
                if message_opcode is None:
                    self._fail(WS_CLOSE_PROTOCOL_ERROR, "a continuation frame without a message")
            else:
                self._fail(WS_CLOSE_PROTOCOL_ERROR, f"unknown opcode {opcode:#x}")
            message += payload
            if fin:
                if message_opcode == WS_TEXT:
                    try:
                        return message.decode("utf-8")
                    except UnicodeDecodeError:
                        self._fail(1007, "invalid UTF-8 in a text message")
                return bytes(message)

    def close(self, code: int = WS_CLOSE_NORMAL, reason: str = "") -> None:
        """Send a close frame, wait briefly for the server's, then close the socket."""
        if self.closed:
            return
        try:
            if not self._close_sent:
                self._send_close(code, reason)
            self._sock.settimeout(WS_CLOSE_WAIT_S)
            while self.recv() is not None:
                pass
        except (OSError, WebSocketError):
            pass
        finally:
            self._abort()

    def __enter__(self) -> WebSocketClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _send_close(self, code: int, reason: str = "") -> None:
        self._close_sent = True
        try:
            self._send_frame(WS_CLOSE, struct.pack("!H", code) + reason.encode("utf-8")[:123])
        except OSError:
            pass

    def _send_frame(self, opcode: int, payload: bytes) -> None:
        length = len(payload)
        if length < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
        elif length < 1 << 16:
            header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
        mask = os.urandom(4)
        self._sock.sendall(header + mask + _mask(payload, mask))

    def _read_exact(self, count: int) -> bytes:
        while len(self._buffer) < count:
            data = self._sock.recv(max(RECV_BYTES, count - len(self._buffer)))
            if not data:
                raise EOFError
            self._buffer += data
        chunk = bytes(self._buffer[:count])
        del self._buffer[:count]
        return chunk

    def _read_exact_or_fail(self, count: int) -> bytes:
        try:
            return self._read_exact(count)
        except EOFError:
            self._abort()
            raise StreamCut("the connection was cut in the middle of a frame") from None

    def _fail(self, code: int, reason: str) -> None:
        self._send_close(code, reason)
        self._abort()
        raise WebSocketError(f"WebSocket protocol error: {reason}")

    def _abort(self) -> None:
        self.closed = True
        self._sock.close()


class OpusWireDecoder:
    """Opus frames (docs/protocol.md, "Opus frames") to interleaved float32 PCM at 48 kHz, with PyAV.

    PyAV is imported only here (``--format opus``); everything else in this client is the standard library.
    """

    def __init__(self) -> None:
        try:
            import av
        except ImportError:
            raise CtlError("--format opus needs PyAV (pip install av)") from None
        self._av = av
        self._decoder: Any = None

    def decode(self, message: bytes) -> tuple[int, int, bytes]:
        """``(epoch, offset_frames, pcm)`` of one binary message; CtlError for one that is malformed."""
        if len(message) < OPUS_HEADER.size:
            raise CtlError("the daemon sent an Opus frame shorter than its header")
        epoch, _sequence, offset, version, flags, skip, keep, count = OPUS_HEADER.unpack_from(message)
        if version != OPUS_LAYOUT_VERSION:
            raise CtlError(f"Opus frame layout {version} is newer than this auralisctl (reads {OPUS_LAYOUT_VERSION})")
        if flags & 1 or self._decoder is None:
            self._decoder = self._av.CodecContext.create("opus", "r")
            self._decoder.sample_rate = 48_000
            self._decoder.layout = "stereo"
        parts: list[bytes] = []
        pos = OPUS_HEADER.size
        for _ in range(count):
            (length,) = struct.unpack_from("<H", message, pos)
            packet = bytes(message[pos + 2 : pos + 2 + length])
            pos += 2 + length
            for frame in self._decoder.decode(self._av.Packet(packet)):
                planes = frame.to_ndarray()  # float32 (channels, samples), planar
                parts.append(planes.T.astype("<f4").tobytes())
        pcm = b"".join(parts)
        return epoch, offset, pcm[8 * skip : 8 * (skip + keep)]  # 8 bytes per stereo float32 frame


def _mask(payload: bytes, key: bytes) -> bytes:
    """XOR ``payload`` with the 4-byte masking ``key`` (RFC 6455 section 5.3), whole-buffer at once."""
    length = len(payload)
    if length == 0:
        return b""
    keystream = (key * (length // 4 + 1))[:length]
    return (int.from_bytes(payload, "little") ^ int.from_bytes(keystream, "little")).to_bytes(length, "little")


# --------------------------------------------------------------------------------------------
# Audio output: a WAV writer and raw PCM.


class RawWriter:
    """Raw interleaved little-endian PCM (for ``--out -`` piped into ``aplay`` or ``sox``)."""

    def __init__(self, handle: IO[bytes], *, sample_rate: int, channels: int, sample_format: str) -> None:
        if sample_format not in SAMPLE_BYTES:
            raise ValueError(f"unknown sample format {sample_format!r}")
        self._handle = handle
        self.sample_rate = int(sample_rate)
        self.channels = int(channels)
        self.sample_format = sample_format
        self.frame_bytes = SAMPLE_BYTES[sample_format] * self.channels
        self.data_bytes = 0

    @property
    def num_frames(self) -> int:
        return self.data_bytes // self.frame_bytes

    def write(self, pcm: bytes) -> None:
        self._handle.write(pcm)
        self.data_bytes += len(pcm)

    def close(self) -> None:
        self._handle.flush()


class WavWriter(RawWriter):
    """Writes interleaved PCM to a RIFF/WAVE file; the sizes are patched in on ``close``.

    ``f32`` is written as WAVE_FORMAT_IEEE_FLOAT (with the ``fact`` chunk the format requires),
    ``s16`` as WAVE_FORMAT_PCM. On an unseekable output the sizes stay at their maximum, which
    players read as "until the end of the stream".
    """

    def __init__(self, handle: IO[bytes], *, sample_rate: int, channels: int, sample_format: str) -> None:
        super().__init__(handle, sample_rate=sample_rate, channels=channels, sample_format=sample_format)
        self._is_float = sample_format == "f32"
        self._write_header(0xFFFFFFFF - 64)

    def close(self) -> None:
        """Pad to an even size, patch the chunk sizes (seekable outputs) and flush."""
        if self.data_bytes % 2:
            self._handle.write(b"\0")
        try:
            seekable = self._handle.seekable()
        except (AttributeError, OSError, ValueError):
            seekable = False
        if seekable:
            self._handle.seek(0)
            self._write_header(self.data_bytes)
            self._handle.seek(0, os.SEEK_END)
        self._handle.flush()

    def _write_header(self, data_bytes: int) -> None:
        sample_bytes = SAMPLE_BYTES[self.sample_format]
        fmt = struct.pack(
            "<HHIIHH",
            WAVE_FORMAT_IEEE_FLOAT if self._is_float else WAVE_FORMAT_PCM,
            self.channels,
            self.sample_rate,
            self.sample_rate * self.frame_bytes,
            self.frame_bytes,
            8 * sample_bytes,
        )
        chunks = b""
        if self._is_float:
            fmt += struct.pack("<H", 0)  # cbSize: non-PCM formats carry the extension size
            frames = min(data_bytes // self.frame_bytes, 0xFFFFFFFF)
            chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"fact" + struct.pack("<II", 4, frames)
        else:
            chunks = b"fmt " + struct.pack("<I", len(fmt)) + fmt
        riff_bytes = 4 + len(chunks) + 8 + data_bytes + (data_bytes % 2)
        self._handle.write(
            b"RIFF" + struct.pack("<I", min(riff_bytes, 0xFFFFFFFF)) + b"WAVE" + chunks + b"data" + struct.pack("<I", data_bytes)
        )

# --------------------------------------------------------------------------------------------
# Paths. The daemon's one escaping (docs/protocol.md, "Paths"; the same as auralisd/protocol/paths.py,
# which tests/clients checks): a byte that is not UTF-8 is written \xHH and a backslash \\.

_ESCAPE: Final = re.compile(r"[\\\udc80-\udcff]")
_SURROGATE: Final = re.compile(r"[\udc80-\udcff]")


def path_to_wire(path: str) -> str:
    """The wire form of a local OS path (``os.fsdecode`` form)."""
    return _ESCAPE.sub(lambda m: "\\\\" if m.group() == "\\" else f"\\x{ord(m.group()) - 0xDC00:02X}", path)


_CONTROL: Final = re.compile(r"[\x01-\x1f\x7f]")


def shown(text: Any) -> str:
    """Text for one line of output: a control character (a line break or tab in a file name) as ``\\xHH``.

    The daemon reads ``\\x01``-``\\x1F`` and ``\\x7F`` back as those characters (docs/protocol.md,
    "Paths"), so a printed path stays one line and still names its file: ``ls | add -`` works.
    """
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02X}", str(text))


def arg_to_wire(text: str) -> str:
    """A path as the user gave it, for the daemon: a printed (wire-form) path goes back unchanged; bytes
    that are not UTF-8 (a tab-completed name) become ``\\xHH``."""
    return _SURROGATE.sub(lambda m: f"\\x{ord(m.group()) - 0xDC00:02X}", text)


def stdin_lines() -> list[str]:
    """Non-empty lines of stdin, read as bytes (a name need not be UTF-8), line ends removed."""
    data = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read().encode()
    lines = (os.fsdecode(raw.rstrip(b"\r")) for raw in data.split(b"\n"))
    return [line for line in lines if line.strip()]


# --------------------------------------------------------------------------------------------
# Formatting.


def json_safe(value: Any) -> Any:
    """Make a decoded msgpack value JSON-safe: non-finite floats -> None, bytes -> hex."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    return value


def print_json(value: Any) -> None:
    print(json.dumps(json_safe(value), allow_nan=False, ensure_ascii=False), flush=True)


def quiet_call(ctx: Context, method: str, params: dict[str, Any] | None = None) -> int:
    """A command that prints nothing on success, as mpc's queue edits (the reply with ``--json``)."""
    result = ctx.call(method, params)
    if ctx.json:
        print_json(result)
    return EXIT_OK


def format_time(seconds: float | None) -> str:
    """``m:ss`` (``h:mm:ss`` from one hour), as mpc prints times."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        seconds = 0.0
    total = int(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def track_label(track: dict[str, Any] | None) -> str:
    """``Artist - Title``; the file name when the track has no title tag."""
    if not track:
        return ""
    title = track.get("title") or os.path.basename(str(track.get("path") or "")) or f"track {track.get('track_id')}"
    artist = track.get("artist")
    return shown(f"{artist} - {title}" if artist else title)


def on_off(value: Any) -> str:
    return "on" if value else "off"


def format_status(status: dict[str, Any]) -> str:
    """mpc-style status text (the track and position lines only while a track is current)."""
    lines = []
    state = status.get("state", "stop")
    track = status.get("track")
    if track and state in ("play", "pause"):
        lines.append(track_label(track))
        elapsed_s = float(status.get("elapsed_s") or 0.0)
        duration_s = float(status.get("duration_s") or track.get("duration_s") or 0.0)
        percent = int(100 * elapsed_s / duration_s) if duration_s > 0 else 0
        pos = status.get("queue_pos")
        where = f"#{pos + 1}/{status.get('queue_length', 0)}" if isinstance(pos, int) else "#-"
        lines.append(
            f"[{STATE_LABELS.get(state, state)}] {where}   {format_time(elapsed_s)}/{format_time(duration_s)} ({percent}%)"
        )
    volume = status.get("volume")
    lines.append(
        f"volume: {volume if isinstance(volume, int) else '-':>3}%   "
        + "   ".join(f"{name}: {on_off(status.get(name))}" for name in OPTION_FLAGS)
    )
    intensity = status.get("intensity")
    intensity_text = f"{intensity:.2f}" if isinstance(intensity, (int, float)) else "-"
    lines.append(f"preset: {status.get('preset', '-')}   intensity: {intensity_text}")
    album_mode = status.get("album_mode")
    if album_mode is not None:
        line = f"album mode: {album_mode}"
        album = status.get("album")
        if track and state in ("play", "pause") and status.get("plan_scope"):
            if album:
                line += f"   plan: album {album.get('name')!r} (track {album.get('index', 0) + 1}/{album.get('tracks')})"
            else:
                line += "   plan: this track's own"
            if status.get("scope_reason"):
                line += f" ({status['scope_reason']})"
        lines.append(line)
    decision = status.get("decision")
    if decision and track and state in ("play", "pause"):
        lines.append(f"mastering: {decision}")
    scan = status.get("scan") or {}
    if scan.get("running"):
        lines.append(f"scanning: {scan.get('done', 0)}/{scan.get('total', 0)}")
    for output in status.get("outputs") or []:  # only the ones that need a look
        if output.get("enabled") and output.get("state") != "connected":
            message = f": {output['message']}" if output.get("message") else ""
            lines.append(f"output {output.get('name')}: {output.get('state')}{message}")
    return "\n".join(lines)


def format_event(event: str, data: Any) -> str:
    """One line per event: ``event: key=value ...`` (nested values as compact JSON)."""
    if isinstance(data, dict):
        parts = []
        for key, value in data.items():
            if isinstance(value, (dict, list)):
                value = json.dumps(json_safe(value), separators=(",", ":"), ensure_ascii=False)
            parts.append(f"{key}={value}")
        return f"{event}: " + " ".join(parts)
    return f"{event}: {data}"


# --------------------------------------------------------------------------------------------
# Argument helpers.


def parse_position(text: str) -> int:
    """A 1-based queue position -> 0-based. Raises UsageError."""
    if not text.isdigit() or int(text) < 1:
        raise UsageError(f"bad queue position {text!r}: positions start at 1")
    return int(text) - 1


def parse_positions(items: Sequence[str], current: int | None) -> list[int]:
    """``3``, ``2-5`` (inclusive) or ``0`` (the current track) -> sorted 0-based positions."""
    positions: set[int] = set()
    for item in items:
        if item == "0":
            if current is None:
                raise UsageError("position 0 means the current track, and there is none")
            positions.add(current)
        elif "-" in item:
            first, _, last = item.partition("-")
            start, stop = parse_position(first), parse_position(last)
            if stop < start:
                raise UsageError(f"bad range {item!r}")
            positions.update(range(start, stop + 1))
        else:
            positions.add(parse_position(item))
    return sorted(positions)


def parse_time_s(text: str) -> float:
    """``SS``, ``MM:SS`` or ``HH:MM:SS`` (fractions allowed in the seconds) -> seconds."""
    parts = text.split(":")
    if not 1 <= len(parts) <= 3:
        raise UsageError(f"bad time {text!r}: use [[HH:]MM:]SS or N%")
    try:
        values = [float(part) for part in parts]
    except ValueError:
        raise UsageError(f"bad time {text!r}: use [[HH:]MM:]SS or N%") from None
    if any(not math.isfinite(v) or v < 0 for v in values) or any(v >= 60 for v in values[1:]):
        raise UsageError(f"bad time {text!r}: use [[HH:]MM:]SS or N%")
    total = 0.0
    for value in values:
        total = total * 60 + value
    return total


def seek_target_s(spec: str, elapsed_s: float, duration_s: float) -> float:
    """Where ``seek SPEC`` lands: ``[+-]TIME`` or ``[+-]PERCENT%``, clamped to the track."""
    sign = spec[0] if spec[:1] in ("+", "-") else ""
    body = spec[1:] if sign else spec
    if body.endswith("%"):
        try:
            percent = float(body[:-1])
        except ValueError:
            raise UsageError(f"bad percentage {spec!r}") from None
        if not math.isfinite(percent) or percent < 0:
            raise UsageError(f"bad percentage {spec!r}")
        amount_s = duration_s * percent / 100.0
    else:
        amount_s = parse_time_s(body)
    if sign == "+":
        target_s = elapsed_s + amount_s
    elif sign == "-":
        target_s = elapsed_s - amount_s
    else:
        target_s = amount_s
    if duration_s > 0:
        target_s = min(target_s, duration_s)
    return max(0.0, target_s)


def parse_on_off(text: str) -> bool:
    value = text.lower()
    if value in ("on", "1", "yes", "true"):
        return True
    if value in ("off", "0", "no", "false"):
        return False
    raise UsageError(f"expected on or off, got {text!r}")


# --------------------------------------------------------------------------------------------
# Commands. Each takes (client, args) and returns an exit code; ``client`` is connected lazily.


class Context:
    """What a command needs: its arguments and a control connection opened on first use."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self._client: ControlClient | None = None
        self._target: Target | None = None

    @property
    def target(self) -> Target:
        if self._target is None:
            self._target = resolve_target(self.args)
        return self._target

    @property
    def client(self) -> ControlClient:
        if self._client is None:
            self._client = ControlClient.connect(self.target, timeout_s=self.args.timeout)
        return self._client

    def call(self, method: str, params: dict[str, Any] | None = None) -> Any:
        try:
            return self.client.call(method, params)
        except DaemonError as exc:
            if method in QUEUE_POSITION_METHODS:
                raise one_based_error(exc) from None
            raise

    def local_path(self, path: str) -> str:
        """A path for the daemon, in wire form: the absolute form of a file that exists here when the
        daemon shares our files (Unix socket), else the path as given (a printed path is wire form)."""
        if self.target.is_local and os.path.exists(path):
            return path_to_wire(os.path.abspath(path))
        return arg_to_wire(path)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    @property
    def json(self) -> bool:
        return bool(self.args.json)


QUEUE_POSITION_METHODS: Final = frozenset({"play", "queue.insert", "queue.delete", "queue.move"})
_QUEUE_POSITION_MESSAGE: Final = re.compile(r"no queue position (\d+)")


def one_based_error(exc: DaemonError) -> DaemonError:
    """The daemon counts queue positions from 0, this command line from 1 (as mpc): say the user's number."""
    message = _QUEUE_POSITION_MESSAGE.sub(lambda m: f"no queue position {int(m.group(1)) + 1}", exc.message)
    return DaemonError(exc.code, message)


def show_status(ctx: Context) -> int:
    status = ctx.call("status")
    if ctx.json:
        print_json(status)
    elif not ctx.args.quiet:
        print(format_status(status))
    return EXIT_OK


def cmd_status(ctx: Context) -> int:
    return show_status(ctx)


def cmd_ping(ctx: Context) -> int:
    result = ctx.call("ping")
    if ctx.json:
        print_json(result)
    else:
        print(result)
    return EXIT_OK


def cmd_play(ctx: Context) -> int:
    params = {} if ctx.args.position is None else {"pos": parse_position(ctx.args.position)}
    ctx.call("play", params)
    return show_status(ctx)


def simple_transport(method: str) -> Callable[[Context], int]:
    def command(ctx: Context) -> int:
        ctx.call(method)
        return show_status(ctx)

    command.__doc__ = f"Send ``{method}`` and print the status."
    return command


def cmd_seek(ctx: Context) -> int:
    seek_target_s(ctx.args.time, 0.0, 0.0)  # a usage error (exit 2) before anything is asked
    status = ctx.call("status")
    if not status.get("track"):
        raise CtlError("nothing to seek in: no current track")
    elapsed_s = float(status.get("elapsed_s") or 0.0)
    duration_s = float(status.get("duration_s") or status["track"].get("duration_s") or 0.0)
    ctx.call("seek", {"position_s": seek_target_s(ctx.args.time, elapsed_s, duration_s)})
    return show_status(ctx)


def cmd_volume(ctx: Context) -> int:
    spec = ctx.args.change
    if spec is None:
        volume = ctx.call("status").get("volume")
        if ctx.json:
            print_json({"volume": volume})
        else:
            print(f"volume: {volume}%")
        return EXIT_OK
    body = spec[1:] if spec[:1] in ("+", "-") else spec
    if not body.isdigit():
        raise UsageError(f"bad volume {spec!r}: use N, +N or -N (percent)")
    amount = int(body)
    if spec[:1] in ("+", "-"):
        current = int(ctx.call("status").get("volume") or 0)
        amount = current + amount if spec[0] == "+" else current - amount
    ctx.call("volume.set", {"percent": max(0, min(100, amount))})
    return show_status(ctx)


def _queue_params(ctx: Context) -> dict[str, Any]:
    paths: list[str] = []
    for item in ctx.args.paths:
        if item == "-":
            paths.extend(stdin_lines())
        else:
            paths.append(item)
    params: dict[str, Any] = {}
    if paths:
        params["paths"] = [ctx.local_path(p) for p in paths]
    if ctx.args.ids:
        params["track_ids"] = list(ctx.args.ids)
    if not params:
        raise UsageError("name at least one PATH (or - to read paths from stdin), or --id N")
    return params


def _report_added(ctx: Context, result: Any) -> int:
    if ctx.json:
        print_json(result)
        return EXIT_OK
    added = (result or {}).get("added", []) if isinstance(result, dict) else []
    if not ctx.args.quiet:
        if added:
            first, last = added[0]["pos"] + 1, added[-1]["pos"] + 1
            where = f"#{first}" if first == last else f"#{first}-#{last}"
            print(f"added {len(added)} track{'s' if len(added) != 1 else ''} at {where}")
        else:
            print("added 0 tracks")
    return EXIT_OK


def cmd_add(ctx: Context) -> int:
    return _report_added(ctx, ctx.call("queue.add", _queue_params(ctx)))


def cmd_insert(ctx: Context) -> int:
    params = _queue_params(ctx)
    if ctx.args.pos is not None:
        params["pos"] = parse_position(ctx.args.pos)
    else:
        current = ctx.call("status").get("queue_pos")
        if current is None:
            return _report_added(ctx, ctx.call("queue.add", params))
        params["pos"] = current + 1
    return _report_added(ctx, ctx.call("queue.insert", params))


def cmd_del(ctx: Context) -> int:
    current = None
    if "0" in ctx.args.positions:
        current = ctx.call("status").get("queue_pos")
    return quiet_call(ctx, "queue.delete", {"positions": parse_positions(ctx.args.positions, current)})


def cmd_move(ctx: Context) -> int:
    return quiet_call(ctx, "queue.move", {"from_pos": parse_position(ctx.args.source), "to_pos": parse_position(ctx.args.dest)})


def cmd_shuffle(ctx: Context) -> int:
    return quiet_call(ctx, "queue.shuffle")


def cmd_crop(ctx: Context) -> int:
    return quiet_call(ctx, "queue.crop")


def cmd_swap(ctx: Context) -> int:
    return quiet_call(ctx, "queue.swap", {"a": parse_position(ctx.args.first), "b": parse_position(ctx.args.second)})


def cmd_clear(ctx: Context) -> int:
    return quiet_call(ctx, "queue.clear")


def cmd_queue(ctx: Context) -> int:
    result = ctx.call("queue.list")
    if ctx.json:
        print_json(result)
        return EXIT_OK
    current = result.get("current")
    for item in result.get("items", []):
        marker = ">" if item.get("pos") == current else " "
        album = f"  [{item['album_name']}]" if item.get("album_name") else ""
        print(f"{marker}{item['pos'] + 1:>4}  {track_label(item)}{album}  {format_time(item.get('duration_s'))}")
    return EXIT_OK


def _print_tracks(ctx: Context, tracks: Sequence[dict[str, Any]]) -> None:
    for track in tracks:
        if ctx.args.long:
            print(f"{track.get('track_id'):>6}  {format_time(track.get('duration_s')):>8}  {track_label(track)}  "
                  f"{shown(track.get('path'))}")
        else:
            print(shown(track.get("path")))


SEARCH_PAGE: Final = 1000  # the daemon's largest page


def cmd_search(ctx: Context) -> int:
    """Every match (page by page), or the first ``--limit``; a cut list says so on stderr.

    ``search TAG VALUE [TAG VALUE...]`` (a known tag first, in pairs) or ``search '(EXPR)'`` searches
    by tag, case-insensitively by substring (mpc search); any other words search everything.
    """
    words = list(ctx.args.query)
    by_tag = (len(words) % 2 == 0 and words[0].lower() in SEARCH_TAGS) or (
        len(words) == 1 and words[0].lstrip().startswith("(")
    )
    base: dict[str, Any] = tag_filter(words, command="search") if by_tag else {"query": " ".join(words)}
    wanted = ctx.args.limit
    tracks: list[dict[str, Any]] = []
    total = 0
    while wanted is None or len(tracks) < wanted:
        page = SEARCH_PAGE if wanted is None else min(SEARCH_PAGE, wanted - len(tracks))
        result = ctx.call("library.search", {**base, "limit": page, "offset": len(tracks)})
        got = result.get("tracks", [])
        tracks += got
        total = int(result.get("total", len(tracks)))
        if not got or not result.get("truncated"):
            break
    truncated = len(tracks) < total
    if ctx.json:
        print_json({"tracks": tracks, "total": total, "truncated": truncated})
    else:
        _print_tracks(ctx, tracks)
        if truncated:
            print(f"auralisctl: showing {len(tracks)} of {total} matches (--limit)", file=sys.stderr)
    return EXIT_OK


SEARCH_TAGS: Final = (
    "artist", "albumartist", "album", "title", "track", "disc", "genre", "date", "composer", "performer", "comment",
    "musicbrainz_albumid", "file", "any",
)  # fmt: skip
"""Tags ``find``, ``search`` and ``list`` take (docs/protocol.md, library.find)."""


def tag_filter(words: Sequence[str], *, command: str) -> dict[str, Any]:
    """``TAG VALUE [TAG VALUE...]`` (mpc's form) or one filter expression ``(TAG == 'V')`` -> request params."""
    if len(words) == 1 and words[0].lstrip().startswith("("):
        return {"filter": words[0]}
    if not words or len(words) % 2:
        raise UsageError(f"{command}: give TAG VALUE pairs (tags: {', '.join(SEARCH_TAGS)}) or one '(TAG == \"V\")'")
    tags: dict[str, str] = {}
    for tag, value in zip(words[0::2], words[1::2], strict=True):
        if tag.lower() not in SEARCH_TAGS:
            raise UsageError(f"{command}: unknown tag {tag!r} (tags: {', '.join(SEARCH_TAGS)})")
        if tag.lower() in tags:
            raise UsageError(f"{command}: tag {tag!r} given twice; use a filter expression for that")
        tags[tag.lower()] = value
    return {"tags": tags}


def _all_pages(ctx: Context, method: str, params: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    tracks: list[dict[str, Any]] = []
    total = 0
    while True:
        result = ctx.call(method, {**params, "limit": SEARCH_PAGE, "offset": len(tracks)})
        got = result.get("tracks", [])
        tracks += got
        total = int(result.get("total", len(tracks)))
        if not got or not result.get("truncated"):
            return tracks, total


def cmd_find(ctx: Context) -> int:
    """Tracks whose tags equal the values exactly (mpc find)."""
    tracks, total = _all_pages(ctx, "library.find", tag_filter(ctx.args.query, command="find"))
    if ctx.json:
        print_json({"tracks": tracks, "total": total})
    else:
        _print_tracks(ctx, tracks)
    return EXIT_OK


def cmd_list(ctx: Context) -> int:
    """The distinct values of a tag (mpc list TAG [filter] [--group TAG])."""
    params: dict[str, Any] = {"tag": ctx.args.tag.lower()}
    if ctx.args.query:
        params.update(tag_filter(ctx.args.query, command="list"))
    if ctx.args.group:
        params["group"] = [g.lower() for g in ctx.args.group]
    result = ctx.call("library.values", params)
    if ctx.json:
        print_json(result)
        return EXIT_OK
    names = [*result.get("group", []), result.get("tag")]
    for row in result.get("rows", []):
        values = [row.get(n) for n in names]
        if values[-1] is None:
            continue
        print("\t".join("" if v is None else str(v) for v in values))
    return EXIT_OK


def cmd_stats(ctx: Context) -> int:
    stats = ctx.call("library.stats")
    if ctx.json:
        print_json(stats)
        return EXIT_OK
    updated = stats.get("db_update_s")
    print(f"Artists: {stats.get('artists', 0):>6}")
    print(f"Albums:  {stats.get('albums', 0):>6}")
    print(f"Songs:   {stats.get('songs', 0):>6}")
    print()
    print(f"Play Time:    {format_days(stats.get('playtime_s'))}")
    print(f"Uptime:       {format_days(stats.get('uptime_s'))}")
    print(f"DB Updated:   {time.strftime('%c', time.localtime(updated)) if updated else 'never'}")
    print(f"DB Play Time: {format_days(stats.get('db_playtime_s'))}")
    return EXIT_OK


def format_days(seconds: Any) -> str:
    """``D days, H:MM:SS`` as mpc prints durations in stats."""
    total = int(seconds or 0)
    days, rest = divmod(total, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{days} days, {hours}:{minutes:02d}:{secs:02d}"


def cmd_update(ctx: Context) -> int:
    """Rescan the library, or one folder of it (mpc update [PATH])."""
    params = {} if ctx.args.path is None else {"path": ctx.local_path(ctx.args.path)}
    if ctx.args.wait:
        return cmd_scan(ctx, params)
    result = ctx.call("library.scan", params)
    if ctx.json:
        print_json(result)
    elif not ctx.args.quiet:
        print(f"updating: job {result.get('job')}" if result.get("started")
              else f"updating: job {result.get('job')}, after the scan that is running")
    return EXIT_OK


# --- mpc-like format strings: %tag% fields, [optional groups], | alternatives, & both


def _format_fields(status: dict[str, Any]) -> dict[str, str]:
    track = status.get("track") or {}
    fields = {
        "artist": track.get("artist"), "albumartist": track.get("album_artist"), "album": track.get("album"),
        "title": track.get("title"), "track": track.get("track_number"), "disc": track.get("disc_number"),
        "date": track.get("date"), "genre": track.get("genre"), "composer": track.get("composer"),
        "performer": track.get("performer"), "comment": track.get("comment"), "file": track.get("path"),
        "time": format_time(track.get("duration_s")) if track else None,
        "position": None if status.get("queue_pos") is None else int(status["queue_pos"]) + 1,
        "id": track.get("track_id"), "preset": status.get("preset"),
    }  # fmt: skip
    return {k: str(v) for k, v in fields.items() if v not in (None, "")}


def format_track(fmt: str, fields: dict[str, str]) -> str:
    """Expand an mpc format string: ``%artist%`` is a field; ``[...]`` is dropped when a field inside is
    missing; ``|`` inside a group picks the first alternative that is complete; ``&`` joins parts that
    must all be complete; ``\\`` escapes the next character. Unknown fields are missing."""
    text, _, _ = _format_seq(fmt, 0, fields, top=True)
    return text


def _format_seq(fmt: str, i: int, fields: dict[str, str], *, top: bool = False) -> tuple[str, bool, int]:
    """``(text, complete, next index)`` of alternatives up to the closing ``]`` (or the end)."""
    out: list[str] = []
    complete = True
    alternatives: list[tuple[str, bool]] = []
    while i < len(fmt):
        char = fmt[i]
        if char == "\\" and i + 1 < len(fmt):
            out.append(fmt[i + 1])
            i += 2
        elif char == "[":
            text, ok, i = _format_seq(fmt, i + 1, fields)
            if ok:
                out.append(text)
        elif char == "]" and not top:
            i += 1
            break
        elif char == "|":
            alternatives.append(("".join(out), complete))
            out, complete = [], True
            i += 1
        elif char == "&":
            i += 1
        elif char == "%":
            end = fmt.find("%", i + 1)
            if end < 0:
                out.append(fmt[i:])
                i = len(fmt)
            else:
                name = fmt[i + 1 : end]
                if name in fields:
                    out.append(fields[name])
                else:
                    complete = False
                i = end + 1
        else:
            out.append(char)
            i += 1
    alternatives.append(("".join(out), complete))
    for text, ok in alternatives:
        if ok:
            return text, True, i
    return alternatives[-1][0] if top else "", top, i


DEFAULT_CURRENT_FORMAT: Final = "[%artist% - ]%title%"


def cmd_current(ctx: Context) -> int:
    """The current track, as ``Artist - Title`` or a ``--format`` string (mpc current)."""
    status = ctx.call("status")
    if ctx.json:
        print_json({"track": status.get("track"), "queue_pos": status.get("queue_pos"), "state": status.get("state")})
        return EXIT_OK
    if not status.get("track") or status.get("state") == "stop":  # mpc prints nothing when stopped
        return EXIT_OK
    if ctx.args.format and status["track"].get("track_id") is not None:  # every tag, not only the status brief
        status = {**status, "track": ctx.call("library.track", {"track_id": status["track"]["track_id"]})}
    line = format_track(ctx.args.format or DEFAULT_CURRENT_FORMAT, _format_fields(status))
    if line:
        print(line)
    return EXIT_OK


# --- stored playlists


def cmd_save(ctx: Context) -> int:
    result = ctx.call("playlist.save", {"name": ctx.args.name, "mode": ctx.args.mode})
    if ctx.json:
        print_json(result)
    elif not ctx.args.quiet:
        print(f"saved {result.get('length')} tracks as {ctx.args.name!r}")
    return EXIT_OK


def cmd_load(ctx: Context) -> int:
    params: dict[str, Any] = {"name": ctx.args.name}
    if ctx.args.range:
        start, sep, end = ctx.args.range.partition(":")
        if not start.isdigit() or (sep and end and not end.isdigit()) or (not sep and not start):
            raise UsageError(f"bad range {ctx.args.range!r}: use START:END (1-based, inclusive) or N")
        params["start"] = max(0, int(start) - 1)
        if not sep:
            params["end"] = int(start)
        elif end:
            params["end"] = int(end)
    if ctx.args.pos is not None:
        params["pos"] = parse_position(ctx.args.pos)
    result = ctx.call("playlist.load", params)
    if ctx.json:
        print_json(result)
        return EXIT_OK
    if not ctx.args.quiet:
        print(f"loading: {ctx.args.name}")
        _report_added(ctx, result)
    if result.get("missing"):
        print(f"auralisctl: {result['missing']} entries of {ctx.args.name!r} are not in the library (skipped)",
              file=sys.stderr)  # fmt: skip
    return EXIT_OK


def cmd_lsplaylists(ctx: Context) -> int:
    playlists = ctx.call("playlist.list").get("playlists", [])
    if ctx.json:
        print_json({"playlists": playlists})
        return EXIT_OK
    for item in playlists:
        print(item.get("name"))
    return EXIT_OK


PLAYLIST_ACTIONS: Final = ("show", "add", "clear", "del", "move", "rename", "rm")


def cmd_playlist(ctx: Context) -> int:
    """``playlist``: the queue (as mpc); ``playlist NAME`` or ``playlist show|add|clear|del|move|rename|rm NAME ...``."""
    action, rest = ctx.args.action, list(ctx.args.rest)
    if action is None:
        return cmd_queue(ctx)
    if action not in PLAYLIST_ACTIONS:
        rest, action = [action, *rest], "show"  # `playlist NAME` lists it, as mpc does
    if not rest:
        raise UsageError(f"playlist {action}: name a playlist")
    name, args = rest[0], rest[1:]
    result: Any
    if action == "show":
        result = ctx.call("playlist.show", {"name": name})
        if ctx.json:
            print_json(result)
            return EXIT_OK
        for entry in result.get("entries", []):
            track = entry.get("track")
            if ctx.args.long:
                label = track_label(track) if track else "(not in the library)"
                print(f"{entry['pos'] + 1:>5}  {format_time((track or {}).get('duration_s')):>8}  {label}  "
                      f"{shown(entry['path'])}")
            else:
                print(shown(entry.get("path")))
        return EXIT_OK
    params: dict[str, Any] = {"name": name}
    if action == "add":
        paths = [p for a in args for p in (stdin_lines() if a == "-" else [a])]
        if not paths:
            raise UsageError("playlist add NAME PATH...: name at least one file or folder (- reads stdin)")
        params["paths"] = [ctx.local_path(p) for p in paths]
    elif action == "del":
        if not args:
            raise UsageError("playlist del NAME POS...: give positions (N or N-M, from 1)")
        params["positions"] = parse_positions(args, None)
    elif action == "move":
        if len(args) != 2:
            raise UsageError("playlist move NAME FROM TO")
        params.update(from_pos=parse_position(args[0]), to_pos=parse_position(args[1]))
    elif action == "rename":
        if len(args) != 1:
            raise UsageError("playlist rename NAME NEW_NAME")
        params["new_name"] = args[0]
    elif args:  # clear, rm
        raise UsageError(f"playlist {action} NAME")
    method = {"add": "playlist.add", "clear": "playlist.clear", "del": "playlist.delete", "move": "playlist.move",
              "rename": "playlist.rename", "rm": "playlist.remove"}[action]
    return quiet_call(ctx, method, params)


def cmd_rejected(ctx: Context) -> int:
    """The files the library could not use, with the reason."""
    files = ctx.call("library.rejected").get("files", [])
    if ctx.json:
        print_json({"files": files})
        return EXIT_OK
    for item in files:
        print(f"{item.get('kind', '?'):<11}  {shown(item.get('path'))}: {shown(item.get('reason'))}")
    return EXIT_OK


def cmd_ls(ctx: Context) -> int:
    params = {} if ctx.args.path is None else {"path": ctx.local_path(ctx.args.path)}
    result = ctx.call("library.list", params)
    if ctx.json:
        print_json(result)
        return EXIT_OK
    for directory in result.get("dirs", []):
        print(shown(directory.rstrip("/")) + "/")
    _print_tracks(ctx, result.get("tracks", []))
    return EXIT_OK


def _progress_bar(done: int, total: int, width: int = 30) -> str:
    fraction = min(1.0, done / total) if total > 0 else 0.0
    filled = int(round(width * fraction))
    return f"[{'#' * filled}{'.' * (width - filled)}] {done}/{total} ({int(100 * fraction)}%)"


def cmd_scan(ctx: Context, params: dict[str, Any] | None = None) -> int:
    client = ctx.client
    if ctx.args.wait:
        client.call("subscribe", {"events": ["scan_progress"]})
    result = client.call("library.scan", params or {})
    if not ctx.args.wait:
        if ctx.json:
            print_json(result)
        elif not ctx.args.quiet:
            print("scan started" if result.get("started") else "scan queued: it starts when the running one ends")
        return EXIT_OK
    tty = sys.stdout.isatty() and not ctx.json and not ctx.args.quiet
    started_at = time.monotonic()
    seen_activity = False
    last_poll = 0.0
    done = total = 0
    scan: dict[str, Any] = {}
    while True:
        event = client.next_event(timeout_s=0.25)
        if event is not None and event[0] == "scan_progress" and isinstance(event[1], dict):
            seen_activity = True
            done, total = int(event[1].get("done", 0)), int(event[1].get("total", 0))
            if event[1].get("running") is False:
                last_poll = 0.0  # the daemon says the scan ended: confirm with a status now
            if ctx.json:
                print_json(event[1])
            elif tty:
                sys.stdout.write("\rscanning " + _progress_bar(done, total) + "\x1b[K")
                sys.stdout.flush()
            elif not ctx.args.quiet:
                print(f"scan: {done}/{total} {shown(event[1].get('path') or '')}".rstrip(), flush=True)
        now = time.monotonic()
        if event is None or now - last_poll >= 0.5 or last_poll == 0.0:
            last_poll = now
            scan = client.call("status").get("scan") or {}
            if scan.get("running"):
                seen_activity = True
                continue
            if seen_activity or not result.get("started") or now - started_at >= 1.0:
                done, total = int(scan.get("done", done)), int(scan.get("total", total))
                break
    if tty:
        sys.stdout.write("\r\x1b[K")
    counts, error = scan.get("counts"), scan.get("error")
    if ctx.json:
        print_json({"done": done, "total": total, "complete": error is None, "counts": counts, "error": error})
    elif not ctx.args.quiet:
        print(f"scan complete: {done}/{total} files" if error is None else f"scan failed after {done}/{total} files")
        if isinstance(counts, dict):
            print(format_scan_counts(counts))
    if error is not None:
        print(f"auralisctl: {error}", file=sys.stderr)
        return EXIT_DAEMON_ERROR
    return EXIT_OK


def format_analysis(analysis: dict[str, Any]) -> str:
    """``analysis: 120 done, 2 failed, 880 queued, 52.3 tracks/s, ETA 00:17 (tcp://host:8786)``."""
    eta_s = analysis.get("eta_s")
    running = bool(analysis.get("running"))
    eta = f", ETA {_format_duration(float(eta_s))}" if running and isinstance(eta_s, (int, float)) else ""
    state = "running" if running else "idle"
    return (
        f"analysis {state}: {int(analysis.get('done') or 0)} done, {int(analysis.get('failed') or 0)} failed, "
        f"{int(analysis.get('queued') or 0)} queued, {float(analysis.get('rate') or 0.0):.1f} tracks/s{eta}"
        f" ({analysis.get('where') or 'local'})"
    )


def _format_duration(seconds: float) -> str:
    seconds = int(round(max(0.0, seconds)))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60:02d}:{rest % 60:02d}"


def cmd_analysis(ctx: Context) -> int:
    """Background library analysis: done, queued, failed, rate, ETA; ``--wait`` until it is finished."""
    analysis = ctx.call("status").get("analysis") or {}
    if not ctx.args.wait:
        if ctx.json:
            print_json(analysis)
        elif not ctx.args.quiet:
            print(format_analysis(analysis))
        return EXIT_OK
    tty = sys.stdout.isatty() and not ctx.json and not ctx.args.quiet
    last_line = ""
    while analysis.get("running"):
        if tty:
            done, queued = int(analysis.get("done") or 0), int(analysis.get("queued") or 0)
            sys.stdout.write("\r" + _progress_bar(done, done + queued) + "  " + format_analysis(analysis) + "\x1b[K")
            sys.stdout.flush()
        elif not ctx.args.quiet and not ctx.json:
            line = format_analysis(analysis)
            if line != last_line:
                print(line, flush=True)
                last_line = line
        time.sleep(ANALYSIS_POLL_S)
        analysis = ctx.call("status").get("analysis") or {}
    if tty:
        sys.stdout.write("\r\x1b[K")
    if ctx.json:
        print_json(analysis)
    elif not ctx.args.quiet:
        print(format_analysis(analysis).replace("analysis idle", "analysis complete", 1))
    return EXIT_OK


def format_scan_counts(counts: dict[str, Any]) -> str:
    """``1001 files: 3 added, ... 1 damaged, 2 skipped; 0 removed``."""
    parts = ", ".join(f"{int(counts.get(k) or 0)} {k}"
                      for k in ("added", "updated", "unchanged", "unsupported", "damaged", "skipped"))  # fmt: skip
    line = f"{int(counts.get('files') or 0)} files: {parts}; {int(counts.get('removed') or 0)} removed"
    if counts.get("unsupported") or counts.get("damaged"):
        line += " (auralisctl rejected lists why)"
    return line


def cmd_preset(ctx: Context) -> int:
    if ctx.args.name is not None:
        ctx.call("preset.set", {"name": ctx.args.name})
        if ctx.json:
            print_json({"preset": ctx.args.name})
        elif not ctx.args.quiet:
            print(f"preset: {ctx.args.name}")
        return EXIT_OK
    presets = ctx.call("preset.list").get("presets", [])
    current = ctx.call("status").get("preset")
    if ctx.json:
        print_json({"current": current, "presets": presets})
        return EXIT_OK
    for preset in presets:
        marker = "*" if preset.get("name") == current else " "
        target = preset.get("target_lufs")
        target_text = f"{target:6.1f} LUFS" if isinstance(target, (int, float)) else ""
        print(f"{marker} {preset.get('name', ''):<10} {target_text}  {preset.get('description', '')}".rstrip())
    return EXIT_OK


ALBUM_MODES = ("off", "track", "album", "auto")


def cmd_album_mode(ctx: Context) -> int:
    if ctx.args.mode is not None:
        if ctx.args.mode not in ALBUM_MODES:
            raise UsageError(f"bad album mode {ctx.args.mode!r}: one of {', '.join(ALBUM_MODES)}")
        ctx.call("album_mode.set", {"mode": ctx.args.mode})
    mode = ctx.call("status").get("album_mode")
    if ctx.json:
        print_json({"album_mode": mode})
    elif not ctx.args.quiet or ctx.args.mode is None:
        print(f"album mode: {mode}")
    return EXIT_OK


def format_output(output: dict[str, Any]) -> str:
    """``1 room (snapcast tcp 127.0.0.1:4953): enabled, connected`` plus the message when there is one."""
    line = (f"{output.get('id')} {output.get('name')} ({output.get('kind')} {output.get('target')}): "
            f"{'enabled' if output.get('enabled') else 'disabled'}")
    if output.get("enabled"):
        line += f", {output.get('state')}"
        if output.get("message"):
            line += f": {output['message']}"
        if output.get("state") in ("reconnecting", "error") and output.get("retry_in_s") is not None:
            line += f" (retrying every {output['retry_in_s']:g} s at most)"
    return line


def _output_ref(text: str) -> dict[str, Any]:
    return {"id": int(text)} if text.isdigit() else {"name": text}


def cmd_outputs(ctx: Context) -> int:
    outputs = ctx.call("outputs").get("outputs", [])
    if ctx.json:
        print_json(outputs)
    else:
        for output in outputs:
            print(format_output(output))
    return EXIT_OK


def output_switch(method: str) -> Callable[[Context], int]:
    def command(ctx: Context) -> int:
        result = ctx.call(method, _output_ref(ctx.args.output))
        if ctx.json:
            print_json(result)
        elif not ctx.args.quiet:
            print(format_output(result))
        return EXIT_OK

    return command


def cmd_intensity(ctx: Context) -> int:
    if ctx.args.value is not None:
        try:
            value = float(ctx.args.value)
        except ValueError:
            raise UsageError(f"bad intensity {ctx.args.value!r}: a number such as 0.5") from None
        if not math.isfinite(value):
            raise UsageError(f"bad intensity {ctx.args.value!r}")
        ctx.call("intensity.set", {"value": value})
    intensity = ctx.call("status").get("intensity")
    if ctx.json:
        print_json({"intensity": intensity})
    elif not ctx.args.quiet or ctx.args.value is None:
        print(f"intensity: {intensity:.2f}" if isinstance(intensity, (int, float)) else f"intensity: {intensity}")
    return EXIT_OK


def _track_params(ctx: Context, track: str | None) -> dict[str, Any]:
    if track is None:
        current = ctx.call("status").get("track")
        if not current:
            raise CtlError("no current track: name one (a track id or a path)")
        return {"track_id": current["track_id"]}
    if track.isdigit():
        return {"track_id": int(track)}
    return {"path": ctx.local_path(track)}


def cmd_fingerprint(ctx: Context) -> int:
    result = ctx.call("fingerprint.get", _track_params(ctx, ctx.args.track))
    if ctx.json:
        print_json(result)
        return EXIT_OK
    print(
        f"track {result.get('track_id')}  (source: {result.get('source')}, algorithm {result.get('algorithm_version')})"
    )
    for title, values in (("fingerprint", result.get("fingerprint") or {}), ("measurements", result.get("measurements") or {})):
        print(f"{title}:")
        for key, value in values.items():
            shown = f"{value:10.3f}" if isinstance(value, float) else f"{'-inf' if value is None else value!s:>10}"
            print(f"  {key:<24}{shown}")
    return EXIT_OK


def option_command(name: str) -> Callable[[Context], int]:
    def command(ctx: Context) -> int:
        if ctx.args.state is None:
            value = not ctx.call("status").get(name)
        else:
            value = parse_on_off(ctx.args.state)
        ctx.call("options.set", {name: value})
        return show_status(ctx)

    command.__doc__ = f"Set or toggle ``{name}``."
    return command


def _watch(ctx: Context, *, limit: int | None) -> int:
    params = {"events": list(ctx.args.events)} if ctx.args.events else {}
    unknown = [e for e in ctx.args.events if e not in EVENTS]
    if unknown:
        raise UsageError(f"unknown event {unknown[0]!r}; events: {', '.join(EVENTS)}")
    client = ctx.client
    client.call("subscribe", params)
    seen = 0
    while limit is None or seen < limit:
        event = client.next_event(timeout_s=None)
        if event is None:
            continue
        if ctx.args.events and event[0] not in ctx.args.events:
            continue
        seen += 1
        if ctx.json:
            print_json({"event": event[0], "data": event[1]})
        else:
            print(format_event(*event), flush=True)
    return EXIT_OK


def cmd_idle(ctx: Context) -> int:
    return _watch(ctx, limit=1)


def cmd_watch(ctx: Context) -> int:
    return _watch(ctx, limit=ctx.args.count)


def silence_stdout() -> None:
    """Point stdout at /dev/null after a broken pipe, so later flushes (and the one at exit) cannot fail."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
    finally:
        os.close(devnull)


def _open_output(spec: str) -> tuple[IO[bytes], bool]:
    """The output handle and whether it is a WAV file (``-`` is raw PCM on stdout)."""
    if spec == "-":
        return sys.stdout.buffer, False
    try:
        return open(spec, "wb"), True  # noqa: SIM115 - closed by cmd_listen
    except OSError as exc:
        raise UsageError(f"cannot write {spec}: {exc.strerror}") from None


def http_address(ctx: Context) -> tuple[str, int]:
    """The daemon's HTTP port: ``--http``, ``$AURALIS_HTTP``, else where the daemon says it listens.

    The daemon's ``status`` carries its HTTP address (``http``); a daemon started with another
    ``--http-port`` is found without the user repeating it. The default address is the last resort
    (a daemon that cannot be asked, or one too old to say).
    """
    address = ctx.args.http or os.environ.get("AURALIS_HTTP")
    if address:
        return parse_host_port(address, default_port=8765)
    try:
        http = ctx.call("status").get("http")
    except CtlError:
        http = None
    if not (isinstance(http, dict) and isinstance(http.get("host"), str) and isinstance(http.get("port"), int)):
        return parse_host_port(DEFAULT_HTTP)
    host = http["host"]
    if not ctx.target.is_local and ctx.target.host:
        host = ctx.target.host  # over TCP the daemon's name for itself may not be ours for it
    elif host in ("", "0.0.0.0"):
        host = "127.0.0.1"  # listening everywhere: loopback is one of them
    elif host == "::":
        host = "::1"
    return host, int(http["port"])


def listen_url(ctx: Context) -> str:
    host, port = http_address(ctx)
    host_text = f"[{host}]" if ":" in host else host
    path = "/session" if ctx.args.session is not None else "/stream"
    query = {"format": ctx.args.format}
    if path == "/stream":  # each frame at its play time: a file or a sound card buffers on its own (no lead)
        query["lead"] = "0"
    if ctx.args.variant:
        query["variant"] = ctx.args.variant
    return f"ws://{host_text}:{port}{path}?{urllib.parse.urlencode(query)}"


# Close codes a listener can meet, and what they mean to its user.
WS_CLOSE_TOO_SLOW: Final = 4008  # the daemon dropped a listener that fell behind (docs/protocol.md)
WS_CLOSE_TRY_LATER: Final = 1013  # the endpoint is full
DROPPED_BEHIND: Final = "the daemon dropped this listener: it fell behind the stream (not read fast enough)"


def _stream_closed_error(ws: WebSocketClient) -> CtlError | None:
    """The error a listen reports for how the daemon closed the stream (None: a normal end)."""
    if ws.close_code == WS_CLOSE_TOO_SLOW:
        return CtlError(f"{DROPPED_BEHIND} (close code {WS_CLOSE_TOO_SLOW})")
    if ws.close_code == WS_CLOSE_TRY_LATER:
        return CtlError(f"the daemon is serving all the listeners it allows; try again later (close code {WS_CLOSE_TRY_LATER})")
    return None


def cmd_listen_play(ctx: Context) -> int:
    """``listen --play``: the shared stream on this machine's sound server or card (clients/speaker.py)."""
    args = ctx.args
    if args.out is not None or args.seconds is not None or args.session is not None:
        raise UsageError("--play plays the shared stream: it takes no --out, --seconds or --session")
    try:
        import trio

        try:
            from clients import speaker
        except ImportError:  # auralisctl.py copied alone with speaker.py beside it
            import speaker  # type: ignore[no-redef,import-not-found]
    except ImportError as exc:
        raise CtlError(f"--play needs speaker.py beside auralisctl.py, trio and trio-websocket (installed with "
                       f"auralis): {exc}") from None
    try:
        player = speaker.find_player(args.player)
    except speaker.SpeakerError as exc:
        raise CtlError(str(exc)) from None
    decode = None
    if args.format == "opus":
        opus = OpusWireDecoder()

        def decode(message: bytes) -> tuple[int, bytes]:
            epoch, _offset, pcm = opus.decode(message)
            return epoch, pcm

    token = read_token(args)
    headers = [("Authorization", f"Bearer {token}")] if token else []
    trio.run(lambda: speaker.play_stream(listen_url(ctx), headers, player=player,
                                         fmt="s16" if args.format == "s16" else "f32", decode=decode,
                                         quiet=args.quiet))
    return EXIT_OK


def cmd_listen(ctx: Context) -> int:
    args = ctx.args
    if args.play:
        return cmd_listen_play(ctx)
    out = args.out
    if out is None:
        if sys.stdout.isatty():
            raise UsageError("listen needs --out FILE.wav, or --out - to write raw PCM to a pipe")
        out = "-"
    if args.seconds is not None and not (math.isfinite(args.seconds) and args.seconds > 0):
        raise UsageError("--seconds must be a positive number")
    if args.session is None and (args.preset is not None or args.intensity is not None or args.burst):
        raise UsageError("--preset, --intensity and --burst apply to --session TRACK only")
    play_message: dict[str, Any] | None = None
    if args.session is not None:
        track_id = int(args.session) if args.session.isdigit() else None
        preset, intensity = args.preset, args.intensity
        if track_id is None:
            track_id = int(ctx.call("library.track", {"path": ctx.local_path(args.session)})["track_id"])
        if preset is None or intensity is None:
            status = ctx.call("status")
            preset = preset if preset is not None else status.get("preset")
            intensity = intensity if intensity is not None else status.get("intensity")
        play_message = {
            "type": "play_enhanced",
            "track_id": track_id,
            "preset": preset,
            "intensity": intensity,
            "pace": "burst" if args.burst else "realtime",
        }
    token = read_token(args)
    headers = [("Authorization", f"Bearer {token}")] if token else []
    url = listen_url(ctx)
    ws = WebSocketClient.connect(url, headers=headers, timeout_s=args.timeout)
    handle: IO[bytes] | None = None
    writer: WavWriter | RawWriter | None = None
    interrupted = False
    try:
        if play_message is not None:
            ws.send_text(json.dumps(play_message))
        ws.settimeout(None)
        handle, is_wav = _open_output(out)
        opus = OpusWireDecoder() if args.format == "opus" else None
        epoch: int | None = None
        limit_frames: int | None = None
        while True:
            try:
                message = ws.recv()
            except StreamCut:  # the daemon gave up sending to us mid-frame: we were too slow, or it stopped
                raise CtlError(f"{DROPPED_BEHIND}, or it stopped: the connection was cut in the middle of"
                               " an audio frame") from None
            if message is None:
                closed_error = _stream_closed_error(ws)
                if closed_error is not None:
                    raise closed_error
                if args.session is not None and writer is None:
                    raise CtlError(f"the daemon closed the stream ({ws.close_code} {ws.close_reason})".strip())
                break
            if isinstance(message, str):
                try:
                    event = json.loads(message)
                except ValueError:
                    raise CtlError(f"the daemon sent a text frame that is not JSON: {message[:80]!r}") from None
                kind = event.get("type") if isinstance(event, dict) else None
                if kind == "audio_stream_start":
                    epoch = int(event["stream_epoch"])
                    if writer is None:
                        cls = WavWriter if is_wav else RawWriter
                        writer = cls(
                            handle,
                            sample_rate=int(event["sample_rate"]),
                            channels=int(event["channels"]),
                            sample_format="f32" if opus is not None else str(event.get("format", args.format)),
                        )
                        if args.seconds is not None:
                            limit_frames = int(round(args.seconds * writer.sample_rate))
                        if not args.quiet and out != "-":
                            print(
                                f"listening: {writer.sample_rate} Hz, {writer.channels} ch, {writer.sample_format}"
                                f" -> {out}",
                                file=sys.stderr,
                            )
                    elif (int(event["sample_rate"]), int(event["channels"])) != (writer.sample_rate, writer.channels):
                        raise CtlError("the stream changed its sample rate or channels; restart listen")
                elif kind == "audio_stream_error":
                    raise DaemonError(str(event.get("code", "internal")), str(event.get("message", "stream error")))
                elif kind == "audio_stream_end" and args.session is not None:
                    break
                elif kind in ("lwrp_decision",) and not args.quiet and out != "-":
                    print(f"mastering: {event.get('decision')}", file=sys.stderr)
                continue
            if writer is None or len(message) < AUDIO_HEADER.size:
                continue
            if opus is not None:
                frame_epoch, _offset, decoded = opus.decode(message)  # every message: the decoder's state
                pcm = memoryview(decoded)
            else:
                frame_epoch, _sequence, _offset = AUDIO_HEADER.unpack_from(message)
                pcm = memoryview(message)[AUDIO_HEADER.size :]
            if frame_epoch != epoch:
                continue  # a frame from before the last seek / track change: stale
            if limit_frames is not None:
                room = (limit_frames - writer.num_frames) * writer.frame_bytes
                pcm = pcm[: max(0, room)]
            writer.write(bytes(pcm))
            if limit_frames is not None and writer.num_frames >= limit_frames:
                break
    except KeyboardInterrupt:
        interrupted = True  # Ctrl-C is how a listen without --seconds ends: finish the file properly
    except BrokenPipeError:
        # The reader of `--out -` (aplay, head) went away: that ends the listen, quietly.
        silence_stdout()
        ws.close()
        return EXIT_OK
    finally:
        if handle is not None and out != "-":
            if writer is not None:
                writer.close()
            handle.close()
            if writer is None:
                os.unlink(out)  # no audio came: leave no empty file behind
        elif writer is not None:
            writer.close()  # flushes stdout (which is /dev/null after a broken pipe)
        ws.close()
    if writer is None:
        if interrupted:
            return EXIT_INTERRUPTED
        raise CtlError("the stream ended before any audio arrived")
    if not args.quiet and out != "-":
        print(f"wrote {writer.num_frames / writer.sample_rate:.2f} s to {out}", file=sys.stderr)
    return EXIT_OK


# --------------------------------------------------------------------------------------------
# The command line.


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree: global options, then one subcommand (default ``status``)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON for scripts")
    common.add_argument(
        "-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="print nothing after a change"
    )

    parser = argparse.ArgumentParser(
        prog="auralisctl",
        description="Control auralisd, the adaptive-mastering music daemon (like mpc for MPD).",
        epilog="Exit codes: 0 ok, 1 daemon error, 2 usage error, 3 cannot connect. "
        "Queue positions start at 1.",
    )
    parser.add_argument("--socket", metavar="PATH", help="control socket (default $AURALIS_SOCKET, then $XDG_RUNTIME_DIR/auralis/control.sock)")
    parser.add_argument("--host", metavar="HOST:PORT", help="connect over TCP instead (or $AURALIS_HOST)")
    parser.add_argument("--token", help="token for TCP and remote WebSockets (or $AURALIS_TOKEN)")
    parser.add_argument("--token-file", metavar="FILE", help="read the token from the first line of FILE")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="S", help="seconds to wait for an answer")
    parser.add_argument("--json", action="store_true", default=False, help="print JSON for scripts")
    parser.add_argument("-q", "--quiet", action="store_true", default=False, help="print nothing after a change")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, func: Callable[[Context], int], help_text: str, aliases: Sequence[str] = ()) -> argparse.ArgumentParser:
        command = sub.add_parser(
            name, parents=[common], help=help_text, description=help_text.replace("%%", "%"), aliases=list(aliases)
        )
        command.set_defaults(func=func)
        return command

    add("status", cmd_status, "print the player status (the default command)")
    add("ping", cmd_ping, "check that the daemon answers")
    add("play", cmd_play, "start playing (at queue position POS)").add_argument("position", nargs="?", metavar="POS")
    add("pause", simple_transport("pause"), "pause")
    add("toggle", simple_transport("toggle"), "toggle play/pause")
    add("stop", simple_transport("stop"), "stop")
    add("next", simple_transport("next"), "play the next track")
    add("prev", simple_transport("previous"), "play the previous track", aliases=["previous"])
    add("seek", cmd_seek, "seek to [+-][[HH:]MM:]SS or [+-]N%%").add_argument("time", metavar="[+-]TIME|N%")
    add("volume", cmd_volume, "print or set the shared volume: N, +N, -N (percent)").add_argument(
        "change", nargs="?", metavar="[+-]N"
    )
    for name, func, help_text in (
        ("add", cmd_add, "append files or folders to the queue (- reads paths from stdin)"),
        ("insert", cmd_insert, "insert files after the current track"),
    ):
        command = add(name, func, help_text)
        command.add_argument("paths", nargs="*", metavar="PATH")
        command.add_argument("--id", dest="ids", type=int, action="append", default=[], metavar="N", help="a track id")
        if name == "insert":
            command.add_argument("--pos", metavar="POS", help="insert at this position instead")
    add("del", cmd_del, "delete queue positions (N, N-M, 0 = current)", aliases=["delete"]).add_argument(
        "positions", nargs="+", metavar="POS"
    )
    move = add("move", cmd_move, "move the track at FROM to TO")
    move.add_argument("source", metavar="FROM")
    move.add_argument("dest", metavar="TO")
    add("clear", cmd_clear, "empty the queue")
    add("shuffle", cmd_shuffle, "shuffle the queue (the playing track first)")
    add("crop", cmd_crop, "delete every queue entry but the playing one")
    swap = add("swap", cmd_swap, "swap the tracks at positions A and B")
    swap.add_argument("first", metavar="A")
    swap.add_argument("second", metavar="B")
    add("queue", cmd_queue, "list the queue")
    playlist = add("playlist", cmd_playlist, "the queue; or a stored playlist: playlist [show|add|clear|del|move|rename|rm] NAME ...")
    playlist.add_argument("action", nargs="?", metavar="ACTION|NAME")
    playlist.add_argument("rest", nargs="*", metavar="ARG")
    playlist.add_argument("-l", "--long", action="store_true", help="show: position, duration, artist - title and path")
    save = add("save", cmd_save, "save the queue as a stored playlist")
    save.add_argument("name", metavar="NAME")
    save.add_argument("--mode", choices=("create", "append", "replace"), default="create",
                      help="create (default: refuse an existing name), append or replace")  # fmt: skip
    load = add("load", cmd_load, "append a stored playlist to the queue")
    load.add_argument("name", metavar="NAME")
    load.add_argument("--range", metavar="START:END", help="only these entries (from 1, END included)")
    load.add_argument("--pos", metavar="POS", help="insert at this queue position instead of the end")
    add("lsplaylists", cmd_lsplaylists, "list the stored playlists")
    find = add("find", cmd_find, "find tracks by exact tags: TAG VALUE [TAG VALUE...] or '(TAG == \"V\")'")
    find.add_argument("query", nargs="+", metavar="TAG VALUE")
    find.add_argument("-l", "--long", action="store_true", help="id, duration, artist - title and path")
    lister = add("list", cmd_list, "list the values of a tag: TAG [TAG VALUE...] [--group TAG]")
    lister.add_argument("tag", metavar="TAG")
    lister.add_argument("query", nargs="*", metavar="TAG VALUE")
    lister.add_argument("--group", action="append", metavar="TAG", help="group by this tag (repeatable)")
    add("stats", cmd_stats, "library and daemon statistics")
    update = add("update", cmd_update, "rescan the library, or one folder of it")
    update.add_argument("path", nargs="?", metavar="PATH")
    update.add_argument("--wait", action="store_true", help="wait, show progress and what the scan found")
    add("current", cmd_current, "print the current track").add_argument(
        "-f", "--format", metavar="FMT", help="an mpc format string, e.g. '[%%artist%% - ]%%title%%'"
    )
    search = add("search", cmd_search, "search the library: words, or TAG VALUE pairs (prints paths; -l for details)")
    search.add_argument("query", nargs="+", metavar="QUERY")
    search.add_argument("--limit", type=int, metavar="N")
    search.add_argument("-l", "--long", action="store_true", help="id, duration, artist - title and path")
    ls = add("ls", cmd_ls, "list a library folder")
    ls.add_argument("path", nargs="?", metavar="PATH")
    ls.add_argument("-l", "--long", action="store_true", help="id, duration, artist - title and path")
    add("scan", cmd_scan, "rescan the music folders").add_argument(
        "--wait", action="store_true", help="wait, show progress and what the scan found"
    )
    add("analysis", cmd_analysis, "background library analysis: done, failed, queued, rate, ETA").add_argument(
        "--wait", action="store_true", help="wait until the library is analysed, showing progress"
    )
    add("rejected", cmd_rejected, "list the files the library could not use, and why")
    add("preset", cmd_preset, "list presets, or choose one").add_argument("name", nargs="?", metavar="NAME")
    add("intensity", cmd_intensity, "print or set the mastering intensity").add_argument("value", nargs="?", metavar="X")
    add("outputs", cmd_outputs, "list the outputs (the /stream, Snapcast, Icecast) with their state")
    add("enable", output_switch("enable_output"), "enable an output (by name or id); remembered across restarts").add_argument(
        "output", metavar="NAME|ID")
    add("disable", output_switch("disable_output"), "disable an output (by name or id); remembered across restarts"
        ).add_argument("output", metavar="NAME|ID")
    add("album-mode", cmd_album_mode, "print or set the album mode: off, track, album or auto").add_argument(
        "mode", nargs="?", metavar="MODE"
    )
    add("fingerprint", cmd_fingerprint, "print a track's fingerprint (default: the current track)").add_argument(
        "track", nargs="?", metavar="TRACK", help="a track id or a path"
    )
    for flag in OPTION_FLAGS:
        add(flag, option_command(flag), f"turn {flag} on or off (toggle without an argument)").add_argument(
            "state", nargs="?", metavar="on|off"
        )
    add("idle", cmd_idle, "wait for the next event and print it").add_argument("events", nargs="*", metavar="EVENT")
    watch = add("watch", cmd_watch, "print events as they happen")
    watch.add_argument("events", nargs="*", metavar="EVENT")
    watch.add_argument("--count", type=int, metavar="N", help="stop after N events")
    listen = add("listen", cmd_listen, "write the audio stream to a WAV file or raw PCM on stdout")
    listen.add_argument("--out", metavar="FILE.wav|-", help="a WAV file, or - for raw PCM on stdout")
    listen.add_argument("--seconds", type=float, metavar="N", help="stop after N seconds of audio")
    listen.add_argument("--play", action="store_true",
                        help="play the shared stream on this machine's speakers (follows pause, reconnects; Ctrl-C stops)")
    listen.add_argument("--player", choices=("pw-play", "paplay", "aplay"),
                        help="with --play: the program to play through (default: the first of pw-play, paplay, aplay found)")
    listen.add_argument("--format", choices=LISTEN_FORMATS, default="f32",
                        help="f32 (default), s16, or opus (~165 kbit/s instead of 2.8 Mbit/s; decoded with PyAV, written as f32 at 48 kHz)")
    listen.add_argument("--session", metavar="TRACK", help="a private session of TRACK (id or path) instead of the shared stream")
    listen.add_argument("--preset", help="preset of the private session (default: the daemon's)")
    listen.add_argument("--intensity", type=float, help="intensity of the private session (default: the daemon's)")
    listen.add_argument("--burst", action="store_true", help="render the session as fast as possible")
    listen.add_argument("--variant", choices=("mastered", "original"), help="original: the unprocessed, level-matched audio")
    listen.add_argument("--http", metavar="HOST:PORT",
                        help="the daemon's HTTP port (default $AURALIS_HTTP, else where the daemon says it listens)")
    return parser


def _protect_negative_values(argv: list[str]) -> list[str]:
    """Let ``seek -0:30`` and ``volume -5`` through argparse, which would read them as options."""
    for index, token in enumerate(argv):
        if token in ("seek", "volume") and index + 1 < len(argv):
            rest = argv[index + 1 :]
            negative = [t for t in rest if len(t) > 1 and t[0] == "-" and (t[1].isdigit() or t[1] == ".")]
            if negative and "--" not in rest:
                others = [t for t in rest if t is not negative[0]]
                return argv[: index + 1] + others + ["--", negative[0]]
            break
    return argv


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``auralisctl`` console script; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(_protect_negative_values(list(sys.argv[1:] if argv is None else argv)))
    if args.command is None:
        args.func = cmd_status
    if not (args.timeout > 0 and math.isfinite(args.timeout)):
        parser.error("--timeout must be a positive number of seconds")
    ctx = Context(args)
    try:
        return args.func(ctx)
    except CtlError as exc:
        print(f"auralisctl: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # `auralisctl queue | head` closes the pipe early; that is not an error.
        silence_stdout()
        return EXIT_OK
    finally:
        ctx.close()


if __name__ == "__main__":
    sys.exit(main())
