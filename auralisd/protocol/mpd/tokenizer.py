"""Splitting one MPD request line into a command name and its arguments.

MPD's rules (its protocol document, "Requests"): the command name is a word of ASCII
letters, digits and ``_``; arguments are separated by spaces or tabs and are either unquoted
(any printable character but space, tab, ``"`` and ``'``) or double-quoted, where a
backslash takes the next character literally (``\\"`` and ``\\\\``). A closing quote must be
followed by a space or the end of the line.
"""

from __future__ import annotations

import re
from typing import Final

from .errors import Ack, AckError

_SPACE: Final = " \t"
_NEEDS_QUOTES: Final = frozenset(' \t"\'\\')
# The common line in one match: a valid command word and unquoted arguments only (what the
# character-by-character reading below accepts without a quote); anything else takes that path.
_PLAIN_LINE: Final = re.compile(r"[ \t]*([a-z][A-Za-z0-9_]*)((?:[ \t]+[^\x00-\x20\"'\x7f]+)*)[ \t]*")
_PLAIN_ARG: Final = re.compile(r"[^ \t]+")


class CommandWordError(AckError):
    """The command word itself is malformed. MPD answers and then closes the connection; when the
    line does not even start with a lower-case letter it closes without an answer (``silent``)."""

    def __init__(self, message: str, *, silent: bool = False) -> None:
        super().__init__(Ack.UNKNOWN, message)
        self.silent = silent


def _is_word_char(char: str) -> bool:
    return char.isascii() and (char.isalnum() or char == "_")


def _is_unquoted_char(char: str) -> bool:
    return char >= " " and char not in "\"'" and char != "\x7f"


def tokenize(line: str) -> list[str]:
    """``[command, arg, ...]`` of one request line (without its newline).

    Raises:
        AckError: ``ACK_ERROR_UNKNOWN`` naming what is wrong (a missing closing quote, a bad
            character in an argument...), with an empty command name, as MPD answers.
        CommandWordError: the command word is malformed (MPD closes the connection after it).
    """
    plain = _PLAIN_LINE.fullmatch(line)
    if plain is not None:
        name, args = plain.group(1, 2)
        return [name, *_PLAIN_ARG.findall(args)] if args else [name]
    return read_words(line)


def read_words(line: str) -> list[str]:
    """:func:`tokenize` character by character (any line; :func:`tokenize` takes a shortcut for
    plain lines that must give the same answer)."""
    i = 0
    n = len(line)
    while i < n and line[i] in _SPACE:
        i += 1
    start = i
    while i < n and _is_word_char(line[i]):
        i += 1
    name = line[start:i]
    if not name:
        raise CommandWordError("No command given", silent=True)
    if not ("a" <= name[0] <= "z"):
        raise CommandWordError("Letter expected", silent=True)
    if i < n and line[i] not in _SPACE:
        raise CommandWordError("Invalid word character")
    out = [name]
    while True:
        while i < n and line[i] in _SPACE:
            i += 1
        if i >= n:
            return out
        if line[i] == '"':
            i += 1
            chars: list[str] = []
            while True:
                if i >= n:
                    raise AckError(Ack.UNKNOWN, "Missing closing '\"'")
                char = line[i]
                if char == "\\":
                    i += 1
                    if i >= n:
                        raise AckError(Ack.UNKNOWN, "Missing closing '\"'")
                    chars.append(line[i])
                elif char == '"':
                    i += 1
                    break
                else:
                    chars.append(char)
                i += 1
            if i < n and line[i] not in _SPACE:
                raise AckError(Ack.UNKNOWN, "Space expected after closing '\"'")
            out.append("".join(chars))
        else:
            start = i
            while i < n and line[i] not in _SPACE:
                if not _is_unquoted_char(line[i]):
                    raise AckError(Ack.UNKNOWN, "Invalid unquoted character")
                i += 1
            out.append(line[start:i])


def quote(arg: str) -> str:
    """``arg`` as one argument: bare when that is unambiguous, else double-quoted with escapes."""
    if arg and all(_is_unquoted_char(c) and c not in _NEEDS_QUOTES for c in arg):
        return arg
    return '"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"'


def join(command: str, *args: str) -> str:
    """One request line (no newline) for ``command`` and ``args``; :func:`tokenize` reads it back."""
    return " ".join([command, *(quote(a) for a in args)])
