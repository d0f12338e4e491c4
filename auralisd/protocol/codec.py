"""Sans-IO msgpack-RPC codec: bytes in, messages out; messages in, bytes out.

Message shapes (the team contract):
    request       ``[0, msgid, method, params]``   msgid: int >= 0, method: str, params: map
    response      ``[1, msgid, error, result]``    error: None or ``{"code", "message"}``
    notification  ``[2, event, data]``

Input is untrusted. :class:`Decoder` feeds bytes to a streaming ``msgpack.Unpacker`` whose
buffer and every container/string are limited (:data:`MAX_FRAME_BYTES`), so a hostile peer
cannot make us allocate more than about that much per connection. Any malformed frame raises
:class:`ProtocolViolation`; the connection that sent it is then closed (the peer is broken or
hostile, and the byte stream can no longer be trusted), and nobody else is affected.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

import msgpack

from .paths import text_to_wire

MAX_FRAME_BYTES: Final = 1 << 20  # 1 MiB, issue 4: "size limits (1 MiB)"
MAX_CONTAINER_ITEMS: Final = 65_536  # per array/map in one frame
# The unpacker's first buffer; it grows up to MAX_FRAME_BYTES only for a big frame. msgpack's default
# is min(max_buffer_size, 1 MiB): a 1 MiB malloc per connection, which fragmented the heap (about
# 6 KiB of resident memory never returned per short-lived connection, issue 11).
INITIAL_BUFFER_BYTES: Final = 16 * 1024
MAX_MSGID: Final = (1 << 32) - 1  # msgpack-RPC msgid is a 32-bit unsigned int
REQUEST: Final = 0
RESPONSE: Final = 1
NOTIFICATION: Final = 2


class ProtocolViolation(Exception):
    """The peer sent bytes that are not a valid frame; close its connection."""


@dataclass(frozen=True)
class Request:
    msgid: int
    method: str
    params: dict[str, Any]


@dataclass(frozen=True)
class Response:
    msgid: int
    error: dict[str, str] | None
    result: Any


@dataclass(frozen=True)
class Notification:
    event: str
    data: Any


Message = Request | Response | Notification


class BadRequestShape(Exception):
    """A well-formed msgpack value that is not a valid message (answerable: ``bad_request``)."""

    def __init__(self, message: str, msgid: int | None) -> None:
        super().__init__(message)
        self.msgid = msgid


class _ShapeCheck:
    """Unpacker hooks that note (without raising) msgpack this protocol does not use."""

    __slots__ = ("odd",)

    def __init__(self) -> None:
        self.odd: str | None = None  # why the value being decoded has the wrong shape

    def map(self, pairs: list[tuple[Any, Any]]) -> dict[str, Any]:
        if all(isinstance(key, str) for key, _ in pairs):
            return dict(pairs)
        self.odd = self.odd or "map keys must be strings"
        return {}

    def ext(self, code: int, data: bytes) -> None:
        self.odd = self.odd or f"msgpack ext values (type {code}) are not used by this protocol"


class Decoder:
    """Incremental decoder for one connection. ``feed(data)`` then iterate ``messages()``.

    Yields :class:`Request`/:class:`Response`/:class:`Notification`, or a
    :class:`BadRequestShape` instance (not raised: the stream is still in sync and the
    sender gets a ``bad_request`` reply). Raises :class:`ProtocolViolation` for bytes that
    are not msgpack or exceed the limits.

    Well-formed msgpack that this protocol does not use is a wrong *shape*, not a violation:
    a map key that is not a string, or an ext value anywhere in the message, makes that one
    message a :class:`BadRequestShape` (its msgid kept when it can be read), and the
    connection stays. The hooks below only raise a flag while the value is decoded, so the
    stream stays in sync and nothing is walked twice.
    """

    def __init__(self, max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        self._max_frame_bytes = max_frame_bytes
        self._fed = 0  # bytes fed so far; unpacker.tell() is how many whole messages consumed
        self._last_end = 0
        self._shape = _ShapeCheck()  # the hooks' state: no reference back to self, so no cycle to collect
        self._unpacker = msgpack.Unpacker(
            max_buffer_size=max_frame_bytes,
            read_size=INITIAL_BUFFER_BYTES,
            max_str_len=max_frame_bytes,
            max_bin_len=max_frame_bytes,
            max_array_len=MAX_CONTAINER_ITEMS,
            max_map_len=MAX_CONTAINER_ITEMS,
            max_ext_len=max_frame_bytes,
            raw=False,
            strict_map_key=False,  # checked by the pairs hook, so a non-string key is answerable
            object_pairs_hook=self._shape.map,
            ext_hook=self._shape.ext,
            use_list=True,
        )

    def feed(self, data: bytes | bytearray) -> None:
        try:
            self._unpacker.feed(data)
        except msgpack.BufferFull:
            raise ProtocolViolation(f"frame larger than {self._max_frame_bytes} bytes") from None
        self._fed += len(data)

    def messages(self) -> Iterator[Message | BadRequestShape]:
        """Every complete message fed so far, in order."""
        while True:
            try:
                obj = self._unpacker.unpack()
            except msgpack.OutOfData:
                if self._fed - self._unpacker.tell() > self._max_frame_bytes:
                    raise ProtocolViolation(f"frame larger than {self._max_frame_bytes} bytes") from None
                return
            except Exception as exc:  # any unpacker error: the stream is garbage
                raise ProtocolViolation(f"malformed msgpack: {type(exc).__name__}: {exc}") from None
            finally:
                odd, self._shape.odd = self._shape.odd, None
            end = self._unpacker.tell()
            if end - self._last_end > self._max_frame_bytes:
                raise ProtocolViolation(f"frame larger than {self._max_frame_bytes} bytes")
            self._last_end = end
            message = parse_message(obj)
            if odd is not None and not isinstance(message, BadRequestShape):
                message = BadRequestShape(odd, message.msgid if isinstance(message, Request) else None)
            yield message


def parse_message(obj: Any) -> Message | BadRequestShape:
    if not isinstance(obj, list) or not obj or not isinstance(obj[0], int) or isinstance(obj[0], bool):
        return BadRequestShape("a message must be an array starting with its type (0, 1 or 2)", None)
    kind = obj[0]
    if kind == REQUEST:
        msgid = obj[1] if len(obj) > 1 and _is_msgid(obj[1]) else None
        if len(obj) != 4 or msgid is None:
            return BadRequestShape("a request is [0, msgid, method, params] with msgid an unsigned 32-bit int", msgid)
        if not isinstance(obj[2], str) or not obj[2]:
            return BadRequestShape("method must be a non-empty string", msgid)
        params = obj[3]
        if params is None or params == []:
            params = {}
        if not isinstance(params, dict):
            return BadRequestShape("params must be a map of named arguments", msgid)
        return Request(msgid, obj[2], params)
    if kind == RESPONSE:
        if len(obj) != 4 or not _is_msgid(obj[1]) or not (obj[2] is None or isinstance(obj[2], dict)):
            return BadRequestShape("a response is [1, msgid, error, result]", None)
        return Response(obj[1], obj[2], obj[3])
    if kind == NOTIFICATION:
        if len(obj) != 3 or not isinstance(obj[1], str):
            return BadRequestShape("a notification is [2, event, data]", None)
        return Notification(obj[1], obj[2])
    return BadRequestShape(f"unknown message type {kind}", None)


def _is_msgid(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_MSGID


def _default(obj: Any) -> Any:
    # numpy is looked up, not imported: the control socket answers before the daemon loads it
    # (transport/early.py), and without numpy loaded no value can be a numpy one
    np = sys.modules.get("numpy")
    if np is None:
        if isinstance(obj, (tuple, set, frozenset)):
            return list(obj)
        raise TypeError(f"cannot encode {type(obj).__name__}")
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (tuple, set, frozenset)):
        return list(obj)
    raise TypeError(f"cannot encode {type(obj).__name__}")


def wire_safe(value: Any) -> Any:
    """Replace non-finite floats by None recursively (JSON peers of the same maps need it)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: wire_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [wire_safe(v) for v in value]
    return value


def _pack(obj: Any) -> bytes:
    try:
        packed: bytes = msgpack.packb(obj, default=_default, use_bin_type=True, strict_types=False)
    except UnicodeEncodeError:  # free text naming a file that is not UTF-8 (an album folder, a message)
        packed = msgpack.packb(_text_safe(obj), default=_default, use_bin_type=True, strict_types=False)
    return packed


def _text_safe(value: Any) -> Any:
    """Strings with lone surrogates get them written ``\\xHH`` (paths.text_to_wire), recursively."""
    if isinstance(value, str):
        return text_to_wire(value)
    if isinstance(value, dict):
        return {_text_safe(k): _text_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_text_safe(v) for v in value]
    return value


def encode_request(msgid: int, method: str, params: dict[str, Any] | None = None) -> bytes:
    return _pack([REQUEST, msgid, method, params or {}])


def encode_response(msgid: int, error: dict[str, str] | None, result: Any) -> bytes:
    return _pack([RESPONSE, msgid, error, None if error is not None else result])


def encode_notification(event: str, data: Any) -> bytes:
    return _pack([NOTIFICATION, event, data])
