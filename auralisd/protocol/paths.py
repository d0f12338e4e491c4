"""The one escaping of file paths on the wire, in JSON and in the database.

On Linux a path is bytes; Python hands the daemon ``str`` paths in which every byte that is
not part of valid UTF-8 became a lone surrogate (U+DC80..U+DCFF, PEP 383 ``surrogateescape``).
msgpack, JSON text and SQLite ``TEXT`` cannot carry lone surrogates, so a path leaves the
daemon in *wire form*:

* each byte that is not valid UTF-8 is written ``\\xHH`` (two upper-case hex digits, 80-FF);
* a backslash is written ``\\\\`` (two backslashes);
* everything else is the path's own text, unchanged.

:func:`path_from_wire` undoes it and is lenient: ``\\\\`` is one backslash, ``\\xHH`` with HH
from 80 to FF (either case) is that byte, ``\\xHH`` with HH from 01 to 1F or 7F is that control
character (clients print a name holding a line break as ``\\x0A``, so that a line-oriented
listing keeps one path per line and gives it back intact), and any other backslash stands for
itself (so a typed ``a\\b.flac`` still names ``a\\b.flac``). ``path_from_wire(path_to_wire(p)) == p``
for every path, and a path printed by a client can be given back to the daemon as it is.

Pure functions, no I/O: ``auralisctl`` carries an identical copy (it imports nothing of ours;
``tests/clients`` checks that the two agree).
"""

from __future__ import annotations

import re
from typing import Final

_ESCAPE: Final = re.compile(r"[\\\udc80-\udcff]")
_UNESCAPE: Final = re.compile(r"\\(\\|[xX](?:[89a-fA-F][0-9a-fA-F]|0[1-9a-fA-F]|1[0-9a-fA-F]|7[fF]))")


def _escape_one(match: re.Match[str]) -> str:
    char = match.group()
    return "\\\\" if char == "\\" else f"\\x{ord(char) - 0xDC00:02X}"


def _unescape_one(match: re.Match[str]) -> str:
    body = match.group(1)
    if body == "\\":
        return "\\"
    byte = int(body[1:], 16)
    return chr(0xDC00 + byte) if byte >= 0x80 else chr(byte)  # a control character is itself (ASCII)


def path_to_wire(path: str) -> str:
    """The wire form of an OS path (``os.fsdecode`` form, lone surrogates for non-UTF-8 bytes)."""
    return _ESCAPE.sub(_escape_one, path)


def path_from_wire(text: str) -> str:
    """The OS path (``os.fsdecode`` form) that a wire-form path names."""
    return _UNESCAPE.sub(_unescape_one, text) if "\\" in text else text


def path_to_line(wire: str) -> str:
    """A wire-form path for a line-based protocol (MPD's ``file:`` and ``directory:`` lines): a line
    break in a name as ``\\x0A`` (``\\x0D``), which :func:`path_from_wire` reads back, so the name
    stays on its line and a client's ``add`` of what it was shown names the file."""
    if "\n" not in wire and "\r" not in wire:
        return wire
    return wire.replace("\r", "\\x0D").replace("\n", "\\x0A")


def text_to_wire(text: str) -> str:
    """Free text (a log line, an error message) made encodable: lone surrogates become ``\\xHH``.

    Backslashes are kept as they are: the result is for reading, not for giving back.
    """
    if not any("\udc80" <= c <= "\udcff" for c in text):
        return text
    return re.sub(r"[\udc80-\udcff]", lambda m: f"\\x{ord(m.group()) - 0xDC00:02X}", text)
