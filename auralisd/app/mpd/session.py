"""One MPD client connection: greeting, request lines, command lists, idle, permissions.

The transport (``auralisd/transport/mpd.py``) feeds raw lines to :meth:`MpdSession.handle_line`
and runs :meth:`MpdSession.pump_events` beside it; everything the client receives goes through
the ``send`` callable it gave, under one lock, so an idle wake-up and a reply never interleave.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Final

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
from .table import ALL_PERMISSIONS, Permission

log = logging.getLogger("auralisd.mpd")

# one response: MPD's max_output_buffer_size default (8 MiB) plus the 16 KiB MPD 0.23 allows over it
MAX_OUTPUT_BYTES: Final = 8 * 1024 * 1024 + 16 * 1024
DEFAULT_BINARY_LIMIT: Final = 8192  # bytes of one binary chunk until the client sends binarylimit (MPD's)
MIN_BINARY_LIMIT: Final = 64  # MPD refuses a smaller binarylimit ("Value too small")
MAX_BINARY_LIMIT: Final = MAX_OUTPUT_BYTES - 4096  # a chunk and its header lines fit one response (MPD's bound)
SEND_TIMEOUT_S: Final = 30.0  # a client that reads nothing of a response for this long is closed

# Daemon events -> MPD idle subsystems
EVENT_SUBSYSTEMS: Final = {
    "player": ("player",),
    "queue": ("playlist",),
    "options": ("options",),
    "volume": ("mixer",),
    "stored_playlist": ("stored_playlist",),
    "output": ("output",),
}
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
    ) -> None:
        self.server = server
        self.svc = server.services
        self.peer = peer
        self._send = send
        self._send_lock = trio.Lock()
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
        server.broker.join(self)

    # ----------------------------------------------------------------- output
    async def send(self, data: bytes) -> None:
        async with self._send_lock:
            with trio.move_on_after(SEND_TIMEOUT_S) as scope:
                await self._send(data)
            if scope.cancelled_caught:
                log.warning("MPD client %s stopped reading; closing it", self.peer)
                self.close()

    def close(self) -> None:
        self.server.broker.leave(self)
        self.closing.set()

    @property
    def idle(self) -> bool:
        return self.idle_on is not None

    # ----------------------------------------------------------------- events
    def note(self, *subsystems: str) -> None:
        """Subsystems changed: remembered for the next ``idle``, and an idle client is woken."""
        self.pending.update(subsystems)
        if self.idle_on is not None and self.pending & self.idle_on:
            self.wake.set()

    async def pump_events(self) -> None:
        """Turn daemon events into idle subsystems and answer an idle client (run beside the reader).

        A subscription that fell behind (the hub dropped it) is renewed and every subsystem is
        reported changed, so a client never misses that something changed.
        """
        hub = self.svc.hub
        while not self.closing.is_set():
            sub = hub.subscribe()
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._answer_idle_loop)
                    async for event in sub.receive:
                        subsystems: tuple[str, ...] | None = EVENT_SUBSYSTEMS.get(event.name)
                        if event.name == "scan_progress":
                            subsystems = ("update",) if event.data.get("running") is not False else ("update", "database")
                        if subsystems:
                            self.note(*subsystems)
                    nursery.cancel_scope.cancel()
            finally:
                hub.unsubscribe(sub)
            if sub.dropped:
                self.note(*SUBSYSTEMS)

    async def _answer_idle_loop(self) -> None:
        while True:
            await self.wake.wait()
            self.wake = trio.Event()
            if self.idle_on is not None and self.pending & self.idle_on:
                await self._finish_idle()

    async def _finish_idle(self) -> None:
        assert self.idle_on is not None
        changed = sorted(self.pending & self.idle_on, key=SUBSYSTEMS.index)
        self.pending.clear()
        self.idle_on = None
        await self.send(format_pairs(("changed", name) for name in changed) + OK)

    # ----------------------------------------------------------------- input
    async def handle_line(self, raw: bytes) -> None:
        """Process one request line (without its newline).

        Raises:
            SessionClosed: the connection must close (``close``, an empty line, anything but
                ``noidle`` while idle, a command list over its limit, ``idle`` inside a list).
        """
        if self.idle_on is not None:
            if raw.strip() == b"noidle":
                changed = self.pending & self.idle_on
                if changed:
                    await self._finish_idle()
                else:
                    self.idle_on = None
                    await self.send(OK)
                return
            raise SessionClosed("only noidle is allowed while idle")
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            await self.send(AckError(Ack.ARG, "Malformed UTF-8").to_line())
            return
        if not line.strip():
            raise SessionClosed("empty request line")
        try:
            request = tuple(tokenize(line))
        except CommandWordError as exc:
            if not exc.silent:
                await self.send(exc.to_line())
            raise SessionClosed(exc.message) from None
        except AckError as exc:
            if self.framer.collecting:  # MPD drops the list being collected with it
                self.framer = CommandListFramer()
            await self.send(exc.to_line())
            return
        if request[0] == "noidle":  # noidle outside idle: MPD ignores it
            return
        try:
            run = self.framer.feed(request, len(raw) + 1)
        except CommandListTooLong as exc:
            raise SessionClosed(str(exc)) from None
        except AckError as exc:
            await self.send(exc.at(command="").to_line())
            return
        if run is not None:
            await self._run(run)

    async def _run(self, run: Run) -> None:
        for index, request in enumerate(run.requests):
            name, args = request[0], list(request[1:])
            if run.in_list and name in ("idle", "noidle"):
                raise SessionClosed(f"{name} inside a command list")
            if name in ("command_list_begin", "command_list_ok_begin"):
                await self.send(AckError(Ack.UNKNOWN, f'unknown command "{name}"', index=index).to_line())
                return
            try:
                body = await self.execute(name, args)
            except AckError as exc:
                await self.send(exc.at(index=index).to_line())
                return
            if len(body) > MAX_OUTPUT_BYTES:
                log.warning("MPD client %s: %s answer of %d bytes is over the output limit", self.peer, name, len(body))
                await self.send(AckError(Ack.SYSTEM, "Output buffer is full", command=name, index=index).to_line())
                return
            if name == "idle":
                if body:  # changes were pending: answered at once
                    await self.send(body + OK)
                return
            await self.send(body + (LIST_OK if run.list_ok else b""))
            if self.closing.is_set():
                raise SessionClosed("close")
        await self.send(OK)

    async def execute(self, name: str, args: list[str]) -> bytes:
        """One command's response body (without the final OK).

        Raises:
            AckError: the command failed; the caller adds the list index.
        """
        command = self.server.table.get(name)
        if command is None:
            raise AckError(Ack.UNKNOWN, f'unknown command "{name[:64]}"')
        if command.permission & ~self.permissions:
            raise AckError(Ack.PERMISSION, f'you don\'t have permission for "{name}"', command=name)
        try:
            values = command.parse(args)
            reply = await command.handler(self, *values)
        except AckError as exc:
            raise exc.at(command=name) from None
        except RpcError as exc:
            raise AckError(_ACK_OF_RPC.get(exc.code, Ack.SYSTEM), exc.message, command=name) from None
        except Exception as exc:
            if not is_expected_failure(exc):
                log.exception("MPD command %s from %s failed", name, self.peer)
                raise AckError(Ack.SYSTEM, "internal error; see the daemon log", command=name) from None
            raise AckError(Ack.SYSTEM, str(exc).splitlines()[0] if str(exc) else type(exc).__name__,
                           command=name) from None
        if reply is None:
            return b""
        if isinstance(reply, bytes):
            return reply
        return format_pairs(reply)

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
