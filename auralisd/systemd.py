"""systemd integration without a dependency: sd_notify and socket activation.

Both protocols are small and stable, so they are implemented inline (as many daemons do)
rather than through libsystemd bindings:

- **sd_notify** (``sd_notify(3)``): one datagram per message to the ``AF_UNIX`` socket named by
  ``$NOTIFY_SOCKET`` (a leading ``@`` means the Linux abstract namespace), holding
  newline-separated ``KEY=VALUE`` assignments. auralisd sends ``READY=1`` once it really
  serves, ``STATUS=...`` lines ("playing X", "scanning 1200/5000"), ``WATCHDOG=1`` at half of
  ``$WATCHDOG_USEC``, ``RELOADING=1`` on SIGHUP and ``STOPPING=1`` on shutdown. Without
  ``$NOTIFY_SOCKET`` (not started by systemd) every call is a cheap no-op.
- **Socket activation** (``sd_listen_fds(3)``): systemd passes listening sockets as file
  descriptors from 3 on, with ``$LISTEN_FDS`` (how many), ``$LISTEN_PID`` (for which process)
  and ``$LISTEN_FDNAMES`` (colon-separated names, from ``FileDescriptorName=``). auralisd's
  socket unit names its control socket ``control``.

Both read their variables once and remove them from ``os.environ``, so worker processes
started later neither notify nor mistake the sockets for their own (``unset_environment`` in
libsystemd's API).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, Final

import trio

from .hooks import Hooks

SD_LISTEN_FDS_START: Final = 3  # sd_listen_fds(3): the first passed file descriptor
CONTROL_FD_NAME: Final = "control"  # FileDescriptorName= of the control socket in auralisd.socket
STATUS_MAX_CHARS: Final = 200  # STATUS= is shown by `systemctl status`; keep it one short line
_NOTIFY_VARIABLES: Final = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")
_LISTEN_VARIABLES: Final = ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES")

log = logging.getLogger(__name__)


class SocketActivationError(Exception):
    """The socket-activation variables are malformed or name descriptors that are not sockets."""


def _notify_address(value: str) -> str | None:
    """The ``sendto`` address for a ``$NOTIFY_SOCKET`` value; None for forms we do not speak."""
    if value.startswith("@") and len(value) > 1:
        return "\0" + value[1:]  # abstract namespace
    if value.startswith("/"):
        return value
    return None  # e.g. vsock:CID:PORT (VMs); not used for user services


@dataclass(frozen=True)
class Notifier:
    """Sends sd_notify messages to the service manager; a no-op when not started by systemd.

    Attributes:
        address: the socket address (``\\0``-prefixed for abstract sockets), or None.
        watchdog_usec: the watchdog timeout granted to this process in microseconds, or None.
    """

    address: str | None = None
    watchdog_usec: int | None = None

    @classmethod
    def from_environ(cls, environ: MutableMapping[str, str] | None = None, *, unset: bool = True) -> Notifier:
        """Read ``NOTIFY_SOCKET``, ``WATCHDOG_USEC`` and ``WATCHDOG_PID`` (then remove them).

        ``WATCHDOG_USEC`` counts only when ``WATCHDOG_PID`` is absent or names this process.
        """
        env = os.environ if environ is None else environ
        address = _notify_address(env.get("NOTIFY_SOCKET", ""))
        watchdog_usec: int | None = None
        usec_text, pid_text = env.get("WATCHDOG_USEC", ""), env.get("WATCHDOG_PID", "")
        if usec_text.isdigit() and int(usec_text) > 0 and (not pid_text or pid_text == str(os.getpid())):
            watchdog_usec = int(usec_text)
        if unset:
            for name in _NOTIFY_VARIABLES:
                env.pop(name, None)
        return cls(address=address, watchdog_usec=watchdog_usec)

    @property
    def enabled(self) -> bool:
        """True when a service manager listens for notifications."""
        return self.address is not None

    @property
    def watchdog_interval_s(self) -> float | None:
        """How often to send ``WATCHDOG=1``: half the timeout, as sd_watchdog_enabled(3) advises."""
        return None if self.watchdog_usec is None else self.watchdog_usec / 2e6

    def send(self, *assignments: str) -> bool:
        """Send ``KEY=VALUE`` assignments in one datagram; True when it was delivered.

        Never blocks: it is called from the event loop, and a datagram send to a receiver
        whose queue is full (``net.unix.max_dgram_qlen``, 10 by default) would block until
        the manager reads; the message is dropped instead.

        Error handling: a missing or full notification socket is logged and reported as False,
        never raised: the daemon keeps serving whatever the service manager does.
        """
        if self.address is None or not assignments:
            return False
        payload = "\n".join(assignments).encode("utf-8")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK) as sock:
                sock.sendto(payload, self.address)
        except BlockingIOError:
            log.warning("sd_notify: the service manager's queue is full; dropped %s", assignments[0])
            return False
        except OSError as exc:
            log.warning("sd_notify to %s failed: %s", self.address.replace("\0", "@"), exc)
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """``READY=1``: startup finished and every listener serves."""
        return self.send("READY=1", *([f"STATUS={_one_line(status)}"] if status else []))

    def status(self, text: str) -> bool:
        """``STATUS=...``: a one-line state shown by ``systemctl --user status auralisd``."""
        return self.send(f"STATUS={_one_line(text)}")

    def watchdog(self) -> bool:
        """``WATCHDOG=1``: the event loop is alive."""
        return self.send("WATCHDOG=1")

    def reloading(self) -> bool:
        """``RELOADING=1``: reloading the configuration (send :meth:`ready` when done)."""
        return self.send("RELOADING=1")

    def stopping(self, status: str | None = None) -> bool:
        """``STOPPING=1``: shutdown has begun."""
        return self.send("STOPPING=1", *([f"STATUS={_one_line(status)}"] if status else []))


def _one_line(text: str) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= STATUS_MAX_CHARS else line[: STATUS_MAX_CHARS - 3] + "..."


async def serve_watchdog(notifier: Notifier, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
    """Send ``WATCHDOG=1`` every :attr:`Notifier.watchdog_interval_s` seconds; never returns.

    Runs in the root nursery: if the event loop wedges, the pings stop and systemd restarts the
    service (``WatchdogSec=`` in the unit). Without a watchdog it only waits to be cancelled.

    Cancellation: cancelled with the nursery at shutdown; nothing to clean up.
    """
    interval_s = notifier.watchdog_interval_s
    task_status.started()
    if interval_s is None or not notifier.enabled:
        await trio.sleep_forever()
    while True:
        notifier.watchdog()
        await trio.sleep(interval_s)


def status_text(status: Mapping[str, Any]) -> str:
    """A ``STATUS=`` line from the control protocol's ``status`` map.

    Examples: ``"playing Artist - Title (adaptive 0.50)"``, ``"scanning 1200/5000"``, ``"idle"``.
    """
    parts = []
    scan = status.get("scan") or {}
    track = status.get("track")
    state = status.get("state")
    if track and state in ("play", "pause"):
        title = track.get("title") or os.path.basename(str(track.get("path") or ""))
        label = f"{track['artist']} - {title}" if track.get("artist") else str(title)
        verb = "playing" if state == "play" else "paused"
        intensity = status.get("intensity")
        setting = f"{status.get('preset')}" + (f" {intensity:.2f}" if isinstance(intensity, (int, float)) else "")
        parts.append(f"{verb} {label} ({setting})")
    if scan.get("running"):
        parts.append(f"scanning {scan.get('done', 0)}/{scan.get('total', 0)}")
    return _one_line("; ".join(parts) if parts else "idle")


def listen_fds(environ: MutableMapping[str, str] | None = None, *, unset: bool = True) -> dict[str, list[socket.socket]]:
    """The sockets passed by socket activation, by ``FileDescriptorName=`` (``{}`` without any).

    Returns stdlib sockets (family and type detected from the descriptor), close-on-exec, in
    the order systemd passed them. Descriptors named nowhere get the name ``"unknown"``, as
    sd_listen_fds_with_names(3) does.

    Raises:
        SocketActivationError: malformed variables, or a passed descriptor that is not a socket.
    """
    env = os.environ if environ is None else environ
    pid_text, count_text = env.get("LISTEN_PID"), env.get("LISTEN_FDS")
    names_text = env.get("LISTEN_FDNAMES")
    if unset:
        for name in _LISTEN_VARIABLES:
            env.pop(name, None)
    if not pid_text or not count_text:
        return {}
    if not pid_text.isdigit() or not count_text.isdigit():
        raise SocketActivationError(f"bad LISTEN_PID={pid_text!r} or LISTEN_FDS={count_text!r}")
    if int(pid_text) != os.getpid():
        return {}  # meant for another process (we inherited the variables)
    count = int(count_text)
    names = names_text.split(":") if names_text is not None else []
    if len(names) != count:
        names = ["unknown"] * count
    result: dict[str, list[socket.socket]] = {}
    for index in range(count):
        fd = SD_LISTEN_FDS_START + index
        try:
            os.set_inheritable(fd, False)
            sock = socket.socket(fileno=fd)
        except OSError as exc:
            raise SocketActivationError(f"passed file descriptor {fd} ({names[index]}) is not a socket: {exc}") from None
        result.setdefault(names[index] or "unknown", []).append(sock)
    return result


def take_control_socket(activated: MutableMapping[str, list[socket.socket]]) -> socket.socket | None:
    """Remove and return the listening control socket from :func:`listen_fds`' result.

    The socket named ``control`` wins; otherwise, when exactly one Unix stream socket was
    passed (a socket unit without ``FileDescriptorName=``), that one. None without a match.
    """
    named = activated.get(CONTROL_FD_NAME)
    if named:
        sock = named.pop(0)
        if not named:
            del activated[CONTROL_FD_NAME]
        return sock
    candidates = [
        (name, sock)
        for name, socks in activated.items()
        for sock in socks
        if sock.family == socket.AF_UNIX and sock.type == socket.SOCK_STREAM
    ]
    if len(candidates) != 1:
        return None
    name, sock = candidates[0]
    activated[name].remove(sock)
    if not activated[name]:
        del activated[name]
    return sock


def service_manager_hooks(
    environ: MutableMapping[str, str] | None = None,
) -> Any:
    """The daemon's :class:`auralisd.main.Hooks` for running under systemd (no-ops without it).

    Reads (and removes) the sd_notify and socket-activation variables, so it must run before
    any worker process is spawned. Wires:

    - the activated ``control`` socket as the control listener (else the daemon binds its own);
    - ``READY=1`` once every listener serves, ``RELOADING=1`` then ``READY=1`` around SIGHUP,
      ``STOPPING=1`` at shutdown, ``STATUS=`` whenever :func:`status_text` changes;
    - the watchdog task (``WATCHDOG=1`` at half of ``WATCHDOG_USEC``).

    Raises:
        SocketActivationError: malformed activation variables or descriptors.
    """
    notifier = Notifier.from_environ(environ)
    activated = listen_fds(environ)
    hooks = Hooks()
    if activated:
        control = take_control_socket(activated)
        if control is not None:
            hooks.control_listeners = [trio.SocketListener(trio.socket.from_stdlib_socket(control))]
            log.info("control socket passed by the service manager (socket activation)")
        for name, socks in activated.items():
            for sock in socks:
                log.warning("ignoring an activated socket named %r that auralisd does not use", name)
                sock.close()
    if not notifier.enabled:
        return hooks
    notifier.status("starting")
    last_status: list[str] = [""]  # the last STATUS= sent, so unchanged lines are not repeated

    def on_status(status: dict[str, Any]) -> None:
        text = status_text(status)
        if text != last_status[0]:
            last_status[0] = text
            notifier.status(text)

    async def watchdog(services: Any) -> None:
        await serve_watchdog(notifier)

    def on_ready() -> None:
        notifier.ready(status="ready")
        last_status[0] = "ready"  # the status loop sends the real state at its next turn

    hooks.on_ready = on_ready
    hooks.on_status = on_status
    hooks.on_stopping = lambda: notifier.stopping(status="stopping")
    hooks.on_reloading = notifier.reloading
    hooks.extra_tasks.append(watchdog)
    return hooks
