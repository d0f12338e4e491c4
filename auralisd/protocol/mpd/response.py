"""Formatting MPD responses: ``Key: value`` lines, ``OK``, ``list_OK`` and binary chunks."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

PROTOCOL_VERSION: Final = "0.23.0"  # the protocol level implemented (MPD 0.23)
GREETING: Final = f"OK MPD {PROTOCOL_VERSION}\n".encode()
OK: Final = b"OK\n"
LIST_OK: Final = b"list_OK\n"

Pairs = Iterable[tuple[str, object]]


def format_value(value: object) -> str:
    """A value as MPD writes it: booleans 0/1, floats with 3 decimals, the rest as text on one line."""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return f"{value:.3f}"
    return " ".join(str(value).splitlines())


def format_pairs(pairs: Pairs) -> bytes:
    """``Key: value\\n`` lines (a None value leaves its key out)."""
    lines = [f"{key}: {format_value(value)}\n" for key, value in pairs if value is not None]
    return "".join(lines).encode("utf-8", "surrogateescape")


def binary_chunk(data: bytes) -> bytes:
    """The ``binary: N`` line, ``N`` raw bytes and the newline after them (albumart, readpicture)."""
    return b"binary: %d\n" % len(data) + bytes(data) + b"\n"


def parse_pairs(text: str) -> list[tuple[str, str]]:
    """The ``(key, value)`` pairs of a response body (for tests and clients); ignores other lines."""
    out = []
    for line in text.splitlines():
        key, sep, value = line.partition(": ")
        if sep:
            out.append((key, value))
    return out
