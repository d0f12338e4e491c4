"""One MPD client connection: greeting, request lines, command lists, idle, permissions.

The transport (``auralisd/transport/mpd.py``) feeds the lines of each receive to
:meth:`MpdSession.handle_lines` and runs :meth:`MpdSession.answer_idle` beside it; everything
the client receives goes through the ``send`` callable it gave, one send at a time, so an idle
wake-up and a reply never interleave.

The fast path: the answers of the lines that arrived together are gathered and sent at once,
and a command whose handler is a plain function (:attr:`~.table.MpdCommand.sync`: ``status``,
``currentsong``, ``ping`` ...) runs without awaiting anything; only a command that waits for an
actor awaits (the answers gathered before it are sent first). Idle clients are woken by the
event hub's listener (:meth:`~.server.MpdServer.on_event` calls :meth:`MpdSession.note` inside
the publisher's task), which sets the event :meth:`answer_idle` waits on: no task in between.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final, cast

import trio

from ...errors import INVALID_PARAMS, NOT_FOUND, OUTSIDE_MUSIC_DIRS, UNKNOWN_PRESET, RpcError
from ...protocol.mpd import (
    GREETING,
    LIST_OK,
    OK,
    Ack,
    AckError,
    CommandListFramer,
    CommandListTooLong,
    CommandWordError,
    Run,
    format_pairs,
    tokenize,
)
from ..replies import is_expected_failure
from .server import MpdServer
from .table import ALL_PERMISSIONS, MpdCommand, Permission

log = logging.getLogger("auralisd.mpd")

# one response: MPD's max_output_buffer_size default (8 MiB) plus the 16 KiB MPD 0.23 allows over it
MAX_OUTPUT_BYTES: Final = 8 * 1024 * 1024 + 16 * 1024
DEFAULT_BINARY_LIMIT: Final = 8192  # bytes of one binary chunk until the client sends binarylimit (MPD's)
MIN_BINARY_LIMIT: Final = 64  # MPD refuses a smaller binarylimit ("Value too small")
MAX_BINARY_LIMIT: Final = MAX_OUTPUT_BYTES - 4096  # a chunk and its header lines fit one response (MPD's bound)
SEND_TIMEOUT_S: Final = 30.0  # a client that reads nothing of a response for this long is closed (by the transport)
# gathered answers are sent once they reach this size: a client's pending output stays below
# FLUSH_BYTES + MAX_OUTPUT_BYTES however many requests one receive holds
FLUSH_BYTES: Final = 64 * 1024

SUBSYSTEMS: Final = (
    "database", "update", "stored_playlist", "playlist", "player", "mixer", "output", "options",
    "partition", "sticker", "subscription", "message", "neighbor", "mount",
)  # fmt: skip


class SessionClosed(Exception):
    """The client asked to close, or broke the protocol in a way MPD answers by closing."""


class MpdSession:
    """The state of one client: permissions, idle, tag types, channel subscriptions."""

    def __init__(
        self,
        server: MpdServer,
        send: Callable[[bytes], Awaitable[None]],
        *,
        require_password: bool,
        peer: str = "?",
        send_nowait: Callable[[bytes], int] | None = None,
    ) -> None:
        """``send(data)`` sends all of ``data``; ``send_nowait(data)``, if given, writes what the
        connection takes at once without blocking and returns how many bytes that was (an idle
        client is then answered inside the event's publish, see :meth:`note`)."""
        self.server = server
        self.svc = server.services
        self.peer = peer
        self._send = send
        self._send_nowait = send_nowait
        self._rest = b""  # an idle answer send_nowait did not take whole: answer_idle sends it first
        self._sending = False  # a send is in progress (the reader and answer_idle take turns)
        self._send_turn = trio.lowlevel.ParkingLot()
        self._denied = 0  # the permission bits this client lacks (ints: cheaper than IntFlag per request)
        self.permissions = Permission.NONE if require_password and server.token else ALL_PERMISSIONS
        self.framer = CommandListFramer()
        self.tagtypes: set[str] = set(server.default_tagtypes)
        self.binary_limit = DEFAULT_BINARY_LIMIT  # bytes of one albumart/readpicture chunk (binarylimit)
        self.pending: set[str] = set()  # subsystems changed since the last idle answer
        self.idle_on: frozenset[str] | None = None  # subscribed subsystems while idle, None when not idle
        self.channels: set[str] = set()
        self.messages: list[tuple[str, str]] = []  # (channel, text), at most server.max_messages
        self.closing = trio.Event()
        self.wake = trio.Event()  # set when something arrives for an idle client
        self.local = False  # a Unix-socket client (none yet: TCP only)
        # for the transport's time limits (trio.current_time()): the last input, the send in progress
        self.last_input = trio.current_time()
        self.sending_since: float | None = None
        server.broker.join(self)

    # ----------------------------------------------------------------- output
    @property
    def permissions(self) -> Permission:
        return self._permissions

    @permissions.setter
    def permissions(self, value: Permission) -> None:
        self._permissions = value
        self._denied = int(ALL_PERMISSIONS) & ~int(value)

    async def send(self, data: bytes) -> None:
        """Send ``data`` whole, after any send in progress (the transport closes a send stuck for
        :data:`SEND_TIMEOUT_S`). Usually nothing else is sending: then no checkpoint but the send's."""
        while self._sending:
            await self._send_turn.park()
        self._sending = True
        self.sending_since = trio.current_time()
        try:
            await self._send(data)
        finally:
            self.sending_since = None
            self._sending = False
            if self._send_turn:
                self._send_turn.unpark()

    def close(self) -> None:
        self.server.broker.leave(self)
        self.closing.set()

    @property
    def idle(self) -> bool:
        return self.idle_on is not None

    # ----------------------------------------------------------------- events
    def note(self, *subsystems: str) -> None:
        """Subsystems changed: remembered for the next ``idle``, and an idle client is answered.

        Called inside the event hub's ``publish`` (in the task that made the change). When
        nothing else is being sent to the client, the answer is written right here with
        ``send_nowait`` (one non-blocking socket write: no task in between, as MPD answers from
        its one thread); what the socket does not take, and every answer while another send is in
        progress, goes from :meth:`answer_idle`, before anything else is sent.
        """
        self.pending.update(subsystems)
        if self.idle_on is None or not self.pending & self.idle_on:
            return
        if self._send_nowait is None or self._sending:
            self.wake.set()
            return
        data = self._end_idle()
        try:
            sent = self._send_nowait(data)
        except OSError:  # the connection broke: answer_idle's send reports it and the connection closes
            sent = 0
        if sent < len(data):
            self._sending = True  # nothing else is sent before the rest
            self._rest = data[sent:]
            self.wake.set()

    async def answer_idle(self) -> None:
        """Answer the idle client when :meth:`note` wakes it (run beside the reader until the end)."""
        while True:
            await self.wake.wait()
            self.wake = trio.Event()
            if self._rest:
                await self._send_rest()
            elif self.idle_on is not None and self.pending & self.idle_on:
                await self.send(self._end_idle())

    async def _send_rest(self) -> None:
        """The part of an idle answer ``send_nowait`` left (the send turn is already taken)."""
        rest, self._rest = self._rest, b""
        self.sending_since = trio.current_time()
        try:
            await self._send(rest)
        finally:
            self.sending_since = None
            self._sending = False
            if self._send_turn:
                self._send_turn.unpark()

    def _end_idle(self) -> bytes:
        """Leave idle: the ``changed:`` lines of the subscribed subsystems that changed, and OK."""
        assert self.idle_on is not None
        changed = sorted(self.pending & self.idle_on, key=SUBSYSTEMS.index)
        self.pending.clear()
        self.idle_on = None
        return format_pairs(("changed", name) for name in changed) + OK

    # ----------------------------------------------------------------- input
    async def handle_lines(self, lines: list[bytes]) -> None:
        """Process request lines (without their newlines) that arrived together, in order.

        Their answers are gathered and sent at once; a command that must await an actor first
        sends what was gathered before it. Lines after one that closes the session are ignored.

        Raises:
            SessionClosed: the connection must close (``close``, an empty line, anything but
                ``noidle`` while idle, a command list over its limit, ``idle`` inside a list);
                what was answered before it is sent first.
        """
        out = bytearray()
        try:
            for raw in lines:
                if self.closing.is_set():
                    break
                run = self._feed(raw, out)
                if run is not None:
                    await self._run(run, out)
                if len(out) >= FLUSH_BYTES:
                    await self.send(bytes(out))
                    out.clear()
        except SessionClosed:
            if out:
                await self.send(bytes(out))
            raise
        if out:
            await self.send(bytes(out))

    async def handle_line(self, raw: bytes) -> None:
        """One request line (see :meth:`handle_lines`)."""
        await self.handle_lines([raw])

    def _feed(self, raw: bytes, out: bytearray) -> Run | None:
        """Parse one line: what to run, if anything (errors and idle answers go to ``out``)."""
        if self.idle_on is not None:
            if raw.strip() == b"noidle":
                if self.pending & self.idle_on:
                    out += self._end_idle()
                else:
                    self.idle_on = None
                    out += OK
                return None
            raise SessionClosed("only noidle is allowed while idle")
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            out += AckError(Ack.ARG, "Malformed UTF-8").to_line()
            return None
        if not line.strip():
            raise SessionClosed("empty request line")
        try:
            request = tuple(tokenize(line))
        except CommandWordError as exc:
            if not exc.silent:
                out += exc.to_line()
            raise SessionClosed(exc.message) from None
        except AckError as exc:
            if self.framer.collecting:  # MPD drops the list being collected with it
                self.framer = CommandListFramer()
            out += exc.to_line()
            return None
        if request[0] == "noidle":  # noidle outside idle: MPD ignores it
            return None
        try:
            return self.framer.feed(request, len(raw) + 1)
        except CommandListTooLong as exc:
            raise SessionClosed(str(exc)) from None
        except AckError as exc:
            out += exc.at(command="").to_line()
            return None

    async def _run(self, run: Run, out: bytearray) -> None:
        """Run the requests of ``run``, their answers appended to ``out`` (awaiting only for a
        command that is not :attr:`~.table.MpdCommand.sync`, after sending ``out``)."""
        for index, request in enumerate(run.requests):
            name, args = request[0], list(request[1:])
            if run.in_list and name in ("idle", "noidle"):
                raise SessionClosed(f"{name} inside a command list")
            if name in ("command_list_begin", "command_list_ok_begin"):
                out += AckError(Ack.UNKNOWN, f'unknown command "{name}"', index=index).to_line()
                return
            try:
                command = self._command(name)
                if command.sync:
                    body = self._call_nowait(command, args)
                else:
                    if out:
                        await self.send(bytes(out))
                        out.clear()
                    body = await self._call(command, args)
            except AckError as exc:
                out += exc.at(index=index).to_line()
                return
            if len(body) > MAX_OUTPUT_BYTES:
                log.warning("MPD client %s: %s answer of %d bytes is over the output limit", self.peer, name, len(body))
                out += AckError(Ack.SYSTEM, "Output buffer is full", command=name, index=index).to_line()
                return
            if name == "idle":
                if body:  # changes were pending: answered at once
                    out += body + OK
                return
            out += body
            if run.list_ok:
                out += LIST_OK
            if self.closing.is_set():
                raise SessionClosed("close")
            if len(out) >= FLUSH_BYTES:
                await self.send(bytes(out))
                out.clear()
        out += OK

    async def execute(self, name: str, args: list[str]) -> bytes:
        """One command's response body (without the final OK).

        Raises:
            AckError: the command failed; the caller adds the list index.
        """
        command = self._command(name)
        if command.sync:
            return self._call_nowait(command, args)
        return await self._call(command, args)

    def _command(self, name: str) -> MpdCommand:
        command = self.server.table.get(name)
        if command is None:
            raise AckError(Ack.UNKNOWN, f'unknown command "{name[:64]}"')
        if command.permission_bits & self._denied:
            raise AckError(Ack.PERMISSION, f'you don\'t have permission for "{name}"', command=name)
        return command

    def _call_nowait(self, command: MpdCommand, args: list[str]) -> bytes:
        try:
            reply = command.handler(self, *command.parse(args))
        except Exception as exc:
            raise self._ack_of(command.name, exc) from None
        return _body(reply)

    async def _call(self, command: MpdCommand, args: list[str]) -> bytes:
        try:
            reply = await cast(Awaitable[Any], command.handler(self, *command.parse(args)))
        except Exception as exc:
            raise self._ack_of(command.name, exc) from None
        return _body(reply)

    def _ack_of(self, name: str, exc: Exception) -> AckError:
        """The ACK a failed command answers (an unexpected failure is logged once, here)."""
        if isinstance(exc, AckError):
            return exc.at(command=name)
        if isinstance(exc, RpcError):
            return AckError(_ACK_OF_RPC.get(exc.code, Ack.SYSTEM), exc.message, command=name)
        if not is_expected_failure(exc):
            log.exception("MPD command %s from %s failed", name, self.peer, exc_info=exc)
            return AckError(Ack.SYSTEM, "internal error; see the daemon log", command=name)
        return AckError(Ack.SYSTEM, str(exc).splitlines()[0] if str(exc) else type(exc).__name__, command=name)

    # ----------------------------------------------------------------- used by handlers
    def check_password(self, password: str) -> bool:
        token = self.server.token
        if token is not None and hmac.compare_digest(password.encode(), token.encode()):
            self.permissions = ALL_PERMISSIONS
            return True
        return False

    def start_idle(self, subsystems: Iterable[str]) -> bytes:
        """Enter idle on ``subsystems`` (all when empty); the body to send at once if changes are pending."""
        chosen = frozenset(subsystems) or frozenset(SUBSYSTEMS)
        changed = self.pending & chosen
        if changed:
            self.pending.clear()
            return format_pairs(("changed", name) for name in sorted(changed, key=SUBSYSTEMS.index))
        self.idle_on = chosen
        return b""

    def deliver(self, channel: str, text: str) -> None:
        """A message on a subscribed channel (the oldest is dropped beyond the server's limit)."""
        self.messages.append((channel, text))
        del self.messages[: -self.server.max_messages]
        self.note("message")

    def greeting(self) -> bytes:
        return GREETING


def _body(reply: Any) -> bytes:
    if reply is None:
        return b""
    if isinstance(reply, bytes):
        return reply
    return format_pairs(reply)


_ACK_OF_RPC: Final[dict[str, Ack]] = {
    NOT_FOUND: Ack.NO_EXIST,
    OUTSIDE_MUSIC_DIRS: Ack.NO_EXIST,
    INVALID_PARAMS: Ack.ARG,
    UNKNOWN_PRESET: Ack.ARG,
}


def session_state(session: MpdSession) -> dict[str, Any]:
    """For debugging and tests: what a session holds."""
    return {
        "permissions": int(session.permissions),
        "idle": None if session.idle_on is None else sorted(session.idle_on),
        "pending": sorted(session.pending),
        "channels": sorted(session.channels),
        "messages": len(session.messages),
    }
