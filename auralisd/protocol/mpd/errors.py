"""MPD's error replies: ``ACK [code@index] {command} message`` with MPD's numeric codes.

Part of the sans-IO protocol leaf (imports nothing from ``auralisd``).
"""

from __future__ import annotations

from enum import IntEnum


class Ack(IntEnum):
    """MPD's ``enum ack`` (src/protocol/Ack.hxx): the number between ``[`` and ``@``."""

    NOT_LIST = 1
    ARG = 2
    PASSWORD = 3
    PERMISSION = 4
    UNKNOWN = 5
    NO_EXIST = 50
    PLAYLIST_MAX = 51
    SYSTEM = 52
    PLAYLIST_LOAD = 53
    UPDATE_ALREADY = 54
    PLAYER_SYNC = 55
    EXIST = 56


class AckError(Exception):
    """An error reply for one command. ``index`` is its place in a command list (0 outside one);
    ``command`` the name shown between braces (empty for a line that named no known command)."""

    def __init__(self, code: Ack, message: str, *, command: str = "", index: int = 0) -> None:
        super().__init__(message)
        self.code = Ack(code)
        self.message = message
        self.command = command
        self.index = index

    def at(self, *, command: str | None = None, index: int | None = None) -> AckError:
        """A copy naming the command and list index the session knows (the handler may not)."""
        return AckError(
            self.code,
            self.message,
            command=self.command if command is None else command,
            index=self.index if index is None else index,
        )

    def to_line(self) -> bytes:
        """The wire line, newline included. Newlines inside the message are flattened (one line)."""
        message = " ".join(self.message.splitlines())
        return f"ACK [{int(self.code)}@{self.index}] {{{self.command}}} {message}\n".encode("utf-8", "surrogateescape")
