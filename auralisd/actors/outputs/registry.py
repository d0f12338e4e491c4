"""The outputs actor: the named places the shared player's stream goes besides the browser.

``stream`` (the WebSocket ``/stream``) is always listed; every configured output (a Snapcast source,
an Icecast mount, docs/outputs.md) runs as its own task in this actor's nursery, fed by its own
:class:`~auralisd.actors.player.PcmSubscription`. A failing output never disturbs the others or
the player: its task catches every failure, says so once (a state change in ``status``, one log
line, an ``output`` event) and reconnects after a capped exponential back-off
(:data:`BACKOFF_START_S` doubling up to :data:`BACKOFF_MAX_S`). Enabled/disabled is saved in the
database (``settings`` table, key :data:`ENABLED_KEY`) before the command returns, so it survives
a restart.

The API other parts use (the control protocol, the MPD frontend): :meth:`Outputs.list`,
:meth:`Outputs.enable`, :meth:`Outputs.disable`, :meth:`Outputs.find`.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Final, Protocol

import trio

from ...config import STREAM_OUTPUT_NAME, OutputSpec
from ...errgroups import first_leaf
from ...errors import NOT_FOUND, RpcError
from ..database import Database
from ..events import EventHub

log = logging.getLogger("auralisd.outputs")

ENABLED_KEY: Final = "outputs.enabled"  # settings table: {name: bool}
OUTPUT_EVENT: Final = "output"
BACKOFF_START_S: Final = 1.0  # s: first retry after a failure
BACKOFF_MAX_S: Final = 30.0  # s: the back-off doubles up to this
SEND_TIMEOUT_S: Final = 5.0  # s: an output's server that takes no data for this long is treated as gone
BACKOFF_RESET_AFTER_S: Final = 10.0  # s connected: the next failure starts the back-off again from the start
STATES: Final = ("disabled", "connecting", "connected", "reconnecting", "error")


class OutputFailure(Exception):
    """An expected failure of an output, in one sentence. ``needs_user``: it will not fix itself
    (wrong password, full disk, a pipe that is a directory); state ``error``, else ``reconnecting``.
    Both are retried with the back-off."""

    def __init__(self, message: str, *, needs_user: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.needs_user = needs_user


@dataclass(frozen=True)
class OutputInfo:
    """One output as the protocol shows it (``outputs``, ``status``, the ``output`` event)."""

    output_id: int
    name: str
    kind: str  # "stream" | "snapcast" | "icecast"
    target: str
    enabled: bool
    state: str  # one of STATES
    message: str = ""
    retry_in_s: float | None = None
    since: float = 0.0  # time.time() of the last state change

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.output_id, "name": self.name, "kind": self.kind, "target": self.target,
            "enabled": self.enabled, "state": self.state, "message": self.message,
            "retry_in_s": self.retry_in_s, "since": self.since,
        }  # fmt: skip


class OutputLink:
    """What an output kind's ``serve`` gets: the player to subscribe to and a way to say it is connected."""

    def __init__(self, registry: Outputs, name: str, player: Any) -> None:
        self._registry = registry
        self.name = name
        self.player = player
        self.connected_at: float | None = None

    def connected(self, message: str = "") -> None:
        """The output reached its server; state ``connected``."""
        self.connected_at = trio.current_time()
        self._registry._set_state(self.name, "connected", message)


class OutputKind(Protocol):
    """A configured output. ``serve`` connects, calls ``link.connected()``, sends until it fails
    (raising :class:`OutputFailure` or ``OSError``) or is cancelled (disabled, shutdown)."""

    spec: OutputSpec

    async def serve(self, link: OutputLink) -> None: ...


@dataclass
class _Entry:
    info: OutputInfo
    kind: OutputKind | None  # None: the /stream output, served by the HTTP transport
    scope: trio.CancelScope | None = None
    disabled: trio.Event = field(default_factory=trio.Event)  # set while disabled (the /stream gate)


@asynccontextmanager
async def pcm_feed(player: Any, max_blocks: int) -> AsyncIterator[Any]:
    """A subscription to the shared player for one output, closed on the way out."""
    sub = await player.subscribe(max_blocks)
    try:
        yield sub
    finally:
        sub.close()


async def send_or_fail(stream: trio.abc.SendStream, data: bytes, *, too_slow: str,
                       broken: Callable[[BaseException], OutputFailure]) -> None:
    """Send ``data`` to an output's server within :data:`SEND_TIMEOUT_S`, else fail that output.

    ``too_slow`` is the message for a server that takes nothing for that long (a frozen server must not
    hold the output's task forever); ``broken`` turns a closed or broken connection into the output's
    own failure (each kind says in its own words what a closed connection usually means)."""
    try:
        with trio.fail_after(SEND_TIMEOUT_S):
            await stream.send_all(data)
    except trio.TooSlowError:
        raise OutputFailure(f"{too_slow} took no data for {SEND_TIMEOUT_S:g} s") from None
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
        raise broken(exc) from None


def describe_os_error(exc: OSError) -> str:
    """``[Errno 111] Connection refused`` -> ``connection refused`` (one short phrase)."""
    text = os.strerror(exc.errno) if exc.errno else (exc.strerror or str(exc) or type(exc).__name__)
    return text[:1].lower() + text[1:]


def root_os_error(exc: OSError) -> OSError:
    """trio's ``all attempts to connect ... failed`` -> the first attempt's own error (``Connection refused``)."""
    cause = exc.__cause__
    if isinstance(cause, BaseException):
        leaf = first_leaf(cause, OSError)
        if isinstance(leaf, OSError):
            return leaf
    return exc


async def watch_close(stream: trio.abc.ReceiveStream, closed: list[str], scope: trio.CancelScope, message: str) -> None:
    """A server that never sends after the handshake: end of file (or a reset) means it went away.

    Appends ``message`` to ``closed`` and cancels ``scope``.
    """
    try:
        while await stream.receive_some(4096):
            pass
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass  # a reset is the same news as an end of file
    closed.append(message)
    scope.cancel()


class Outputs:
    """The outputs actor. Start with ``await nursery.start(outputs.run)``."""

    def __init__(self, *, db: Database, hub: EventHub, player: Any, kinds: Sequence[OutputKind] = ()) -> None:
        self._db = db
        self._hub = hub
        self._player = player
        self._entries: dict[str, _Entry] = {}
        self._lock = trio.Lock()
        self._nursery: trio.Nursery | None = None
        now = time.time()
        self._entries[STREAM_OUTPUT_NAME] = _Entry(
            OutputInfo(0, STREAM_OUTPUT_NAME, "stream", "WebSocket /stream", True, "connected", since=now), None
        )
        for i, kind in enumerate(kinds, start=1):
            spec = kind.spec
            if spec.name in self._entries:
                raise ValueError(f"two outputs are named {spec.name!r}")
            info = OutputInfo(i, spec.name, spec.kind, spec.target, True, "connecting", since=now)
            self._entries[spec.name] = _Entry(info, kind)

    # ================================================================= facade
    def list(self) -> list[OutputInfo]:
        """Every output in id order (``stream`` first)."""
        return sorted((e.info for e in self._entries.values()), key=lambda i: i.output_id)

    def find(self, ref: str | int) -> OutputInfo:
        """The output named ``ref`` (a string) or with id ``ref`` (an int); ``RpcError(not_found)`` else."""
        return self._entry(ref).info

    def is_enabled(self, name: str) -> bool:
        entry = self._entries.get(name)
        return entry is not None and entry.info.enabled

    async def wait_disabled(self, name: str) -> None:
        """Return once output ``name`` is disabled (at once if it is)."""
        await self._entries[name].disabled.wait()

    async def enable(self, ref: str | int) -> OutputInfo:
        """Enable an output (saved before this returns); it connects at once."""
        return await self._set_enabled(ref, True)

    async def disable(self, ref: str | int) -> OutputInfo:
        """Disable an output (saved before this returns): it disconnects and stays off across restarts."""
        return await self._set_enabled(ref, False)

    # ================================================================= actor
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        saved = await self._db.load_setting(ENABLED_KEY)
        if isinstance(saved, dict):
            for name, enabled in saved.items():
                entry = self._entries.get(name)
                if entry is not None and enabled is False:
                    entry.info = replace(entry.info, enabled=False, state="disabled")
                    entry.disabled.set()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for entry in self._entries.values():
                if entry.kind is not None and entry.info.enabled:
                    self._start(entry)
            task_status.started()
            await trio.sleep_forever()

    # ================================================================= inside
    def _entry(self, ref: str | int) -> _Entry:
        if isinstance(ref, int):
            for entry in self._entries.values():
                if entry.info.output_id == ref:
                    return entry
        elif ref in self._entries:
            return self._entries[ref]
        names = ", ".join(f"{i.output_id} {i.name}" for i in self.list())
        raise RpcError(NOT_FOUND, f"no output {ref!r} (outputs: {names})")

    async def _set_enabled(self, ref: str | int, enabled: bool) -> OutputInfo:
        async with self._lock:
            entry = self._entry(ref)
            if entry.info.enabled != enabled:
                saved = {e.info.name: (enabled if e is entry else e.info.enabled) for e in self._entries.values()}
                await self._db.save_setting(ENABLED_KEY, saved)
                entry.info = replace(entry.info, enabled=enabled)
                if enabled:
                    entry.disabled = trio.Event()
                    if entry.kind is None:
                        self._set_state(entry.info.name, "connected", "")
                    else:
                        self._set_state(entry.info.name, "connecting", "")
                        self._start(entry)
                else:
                    entry.disabled.set()
                    if entry.scope is not None:
                        entry.scope.cancel()
                        entry.scope = None
                    self._set_state(entry.info.name, "disabled", "")
            return entry.info

    def _start(self, entry: _Entry) -> None:
        assert self._nursery is not None and entry.kind is not None
        entry.scope = trio.CancelScope()
        self._nursery.start_soon(self._supervise, entry, entry.kind, entry.scope)

    def _set_state(self, name: str, state: str, message: str, retry_in_s: float | None = None) -> None:
        entry = self._entries[name]
        old = entry.info
        if (old.state, old.message) == (state, message) and old.retry_in_s == retry_in_s:
            return
        entry.info = replace(old, state=state, message=message, retry_in_s=retry_in_s,
                             since=time.time() if (old.state, old.message) != (state, message) else old.since)
        if (old.state, old.message) != (state, message):
            level = logging.WARNING if state in ("reconnecting", "error") else logging.INFO
            retry = f"; retrying in {retry_in_s:g} s" if retry_in_s is not None else ""
            log.log(level, "output %s (%s %s): %s%s%s", name, old.kind, old.target, state,
                    f": {message}" if message else "", retry)
        self._hub.publish(OUTPUT_EVENT, entry.info.to_wire())

    async def _supervise(self, entry: _Entry, kind: OutputKind, scope: trio.CancelScope) -> None:
        """Serve one output until it is disabled: connect, send, and after a failure wait and start again."""
        name = kind.spec.name
        delay = BACKOFF_START_S
        with scope:
            while True:
                link = OutputLink(self, name, self._player)  # a retry keeps showing the last failure until it connects
                try:
                    await kind.serve(link)
                    state, message = "reconnecting", "the stream ended"
                except Exception as exc:  # noqa: BLE001 - every failure of one output stays in that output
                    state, message = _classify(name, exc)
                if link.connected_at is not None and trio.current_time() - link.connected_at >= BACKOFF_RESET_AFTER_S:
                    delay = BACKOFF_START_S
                self._set_state(name, state, message, retry_in_s=delay)
                await trio.sleep(delay)
                delay = min(delay * 2, BACKOFF_MAX_S)


def _classify(name: str, exc: BaseException) -> tuple[str, str]:
    """``(state, one-sentence message)`` for a failure of output ``name`` (nurseries wrap it in groups)."""
    leaf = first_leaf(exc, (OutputFailure, OSError, trio.TooSlowError)) or first_leaf(exc, Exception) or exc
    if isinstance(leaf, OutputFailure):
        return ("error" if leaf.needs_user else "reconnecting"), leaf.message
    if isinstance(leaf, OSError):
        return "reconnecting", describe_os_error(leaf)
    if isinstance(leaf, trio.TooSlowError):
        return "reconnecting", "timed out"
    # a bug in one output: said once (the traceback at debug level), that output retries, nothing else stops
    log.debug("output %s failed unexpectedly", name, exc_info=exc)
    return "error", f"unexpected {type(leaf).__name__}: {leaf}"


__all__ = [
    "BACKOFF_MAX_S", "BACKOFF_START_S", "ENABLED_KEY", "OUTPUT_EVENT", "OutputFailure", "OutputInfo", "OutputKind",
    "OutputLink", "Outputs", "SEND_TIMEOUT_S", "describe_os_error", "pcm_feed", "root_os_error", "send_or_fail",
    "watch_close",
]
