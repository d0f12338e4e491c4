"""Framing of the request stream: lines with a length limit, and the command-list state machine.

Sans-IO: :class:`LineSplitter` takes bytes and gives complete lines; :class:`CommandListFramer`
takes tokenized requests and says what to run. The session (``auralisd/app/mpd``) runs them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from .errors import Ack, AckError

MAX_LINE_BYTES: Final = 4096  # one request line, newline included (MPD's client input buffer)
MAX_COMMAND_LIST_BYTES: Final = 2 * 1024 * 1024  # MPD's max_command_list_size default (2048 KiB)
MAX_COMMAND_LIST_COMMANDS: Final = 16_384  # also bounded by count, so tiny lines cannot hold more memory in objects

LIST_BEGIN: Final = "command_list_begin"
LIST_OK_BEGIN: Final = "command_list_ok_begin"
LIST_END: Final = "command_list_end"


class LineTooLong(Exception):
    """A request line over :data:`MAX_LINE_BYTES`: MPD drops such a client."""


class CommandListTooLong(Exception):
    """A command list over :data:`MAX_COMMAND_LIST_BYTES`: MPD drops such a client."""


class LineSplitter:
    """Bytes in, complete lines out (``\\n`` ends a line; a trailing ``\\r`` is kept as MPD keeps it).

    Holds at most :data:`MAX_LINE_BYTES` of an unfinished line.
    """

    def __init__(self, max_line_bytes: int = MAX_LINE_BYTES) -> None:
        self._max = max_line_bytes
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """Complete lines (without their newline) from what arrived so far.

        Raises:
            LineTooLong: a line is longer than the limit (finished or not).
        """
        self._buffer += data
        lines = []
        start = 0
        while True:
            end = self._buffer.find(b"\n", start)
            if end < 0:
                break
            if end + 1 - start > self._max:
                raise LineTooLong(f"request line longer than {self._max} bytes")
            lines.append(bytes(self._buffer[start:end]))
            start = end + 1
        del self._buffer[:start]
        if len(self._buffer) >= self._max:
            raise LineTooLong(f"request line longer than {self._max} bytes")
        return lines

    @property
    def pending_bytes(self) -> int:
        return len(self._buffer)


@dataclass(frozen=True)
class Run:
    """Run these requests in order. ``in_list``: they came from a command list (an error stops the
    rest, each error names its index); ``list_ok``: answer ``list_OK`` after each one."""

    requests: tuple[tuple[str, ...], ...]
    in_list: bool = False
    list_ok: bool = False


class CommandListFramer:
    """``command_list_begin`` / ``command_list_ok_begin`` ... ``command_list_end``.

    :meth:`feed` takes one tokenized request and returns a :class:`Run` when something is ready
    to run, or None while a list is being collected.
    """

    def __init__(self, max_bytes: int = MAX_COMMAND_LIST_BYTES, max_commands: int = MAX_COMMAND_LIST_COMMANDS) -> None:
        self._max_bytes = max_bytes
        self._max_commands = max_commands
        self._list: list[tuple[str, ...]] | None = None
        self._list_ok = False
        self._bytes = 0

    @property
    def collecting(self) -> bool:
        return self._list is not None

    def feed(self, request: tuple[str, ...], size_bytes: int) -> Run | None:
        """Raises:
        CommandListTooLong: the list grew past its limits (close the connection).
        AckError: ``command_list_end`` outside a list (answered like an unknown command).
        """
        name = request[0]
        if self._list is None:
            if name in (LIST_BEGIN, LIST_OK_BEGIN) and len(request) == 1:
                self._list = []
                self._list_ok = name == LIST_OK_BEGIN
                self._bytes = 0
                return None
            if name == LIST_END:
                raise AckError(Ack.UNKNOWN, f'unknown command "{name}"')
            return Run((request,))
        if name == LIST_END:
            requests, self._list = tuple(self._list), None
            return Run(requests, in_list=True, list_ok=self._list_ok)
        self._bytes += size_bytes
        if self._bytes > self._max_bytes or len(self._list) >= self._max_commands:
            self._list = None
            raise CommandListTooLong(
                f"command list larger than {self._max_bytes} bytes or {self._max_commands} commands"
            )
        self._list.append(request)
        return None
