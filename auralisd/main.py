"""``auralisd``: the root nursery. Start the actors in dependency order, stop them in reverse.

Start order: the control listeners, answering ``ping`` at once (``transport/early.py``) while
the rest is imported on a thread -> database -> mastering pool -> library -> (Dask bridge, with
dask_scheduler) -> fingerprint resolver -> albums -> chunk renderer -> player -> outputs -> control
transport (takes over the early connections) -> HTTP/WebSocket. Each is started with
``nursery.start`` and counts as up only when its ``run`` called ``task_status.started()``.
The daemon is *ready* (the one place: :meth:`Daemon.run` calls ``on_ready``) when every
listener accepts connections. Shutdown (SIGTERM, SIGINT) cancels the actors one by one in
reverse order within :data:`SHUTDOWN_GRACE_S` (the player saves its state on the way
out); SIGHUP reloads the configuration file and rescans the library.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Final

import trio

from . import config as config_mod
from .config import ConfigError, Settings
from .errgroups import first_leaf
from .hooks import Hooks
from .logs import setup_logging
from .transport.early import EarlyControl, open_tcp_listener, open_unix_listener

if TYPE_CHECKING:
    from .actors.pool import MasteringPool
    from .app.commands import Services

# What the daemon needs beyond answering `ping` (numpy, sqlite3, trio-parallel, the actors, the
# command table, the control server): imported on a thread once the control socket answers, so a
# client's first contact does not wait for them (issue 15; transport/early.py).
DAEMON_MODULES: Final = (
    "auralisd.actors.albums", "auralisd.actors.cache", "auralisd.actors.cluster", "auralisd.actors.database", "auralisd.actors.events",
    "auralisd.actors.fingerprints", "auralisd.actors.library", "auralisd.actors.mastering",
    "auralisd.actors.opus_stream", "auralisd.actors.outputs", "auralisd.actors.player", "auralisd.actors.playlists",
    "auralisd.actors.pool", "auralisd.actors.session", "auralisd.app.commands", "auralisd.transport.control",
)  # fmt: skip


def import_daemon_modules() -> None:
    """Import :data:`DAEMON_MODULES` (blocking; ``Daemon.run`` runs it on a thread)."""
    for name in DAEMON_MODULES:
        importlib.import_module(name)

log = logging.getLogger("auralisd")

SHUTDOWN_GRACE_S: Final = 1.8  # SIGTERM/SIGINT: everything stopped within 2 s (issue 6)
EXIT_OK: Final = 0
EXIT_CONFIG: Final = 2
EXIT_RUNTIME: Final = 1


class _PoolActor:
    """Owns the worker context for the lifetime of the daemon (so it sits in the ordered start)."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.pool: MasteringPool | None = None
        self._warm_up_asked = trio.Event()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        from .actors.pool import open_mastering_pool

        async with open_mastering_pool(self.workers) as pool:
            self.pool = pool
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._warm_up_when_asked, pool)
                task_status.started()
                await trio.sleep_forever()

    def warm_up_soon(self) -> None:
        """Start the workers now, in the background (the daemon calls it once it serves: earlier,
        the workers' imports would compete with its own start-up for the cores)."""
        self._warm_up_asked.set()

    async def _warm_up_when_asked(self, pool: MasteringPool) -> None:
        await self._warm_up_asked.wait()
        await self._warm_up(pool)

    @staticmethod
    async def _warm_up(pool: MasteringPool) -> None:
        started = time.monotonic()
        try:
            pids = await pool.warm_up()
        except Exception as exc:  # a head start only: jobs start their own workers anyway
            log.warning("warming up the workers failed: %s", exc)
            return
        log.info("%d worker processes ready in %.2f s (pids %s)", len(pids), time.monotonic() - started, pids)


class Daemon:
    """The whole daemon, runnable in-process (tests) or from :func:`main`."""

    def __init__(
        self,
        settings: Settings,
        *,
        argv: Sequence[str] | None = None,
        hooks: Hooks | None = None,
        handle_signals: bool = True,
        initial_scan: bool = True,
    ) -> None:
        self.settings = settings
        self._argv = list(argv) if argv is not None else None
        self.hooks = hooks or Hooks()
        self._handle_signals = handle_signals
        self._initial_scan = initial_scan
        self._stack: list[tuple[str, trio.CancelScope, trio.Event]] = []
        self.ready = trio.Event()
        self.services: Services | None = None
        self.http_port: int | None = None
        self.mpd_port: int | None = None  # the MPD frontend's port once it serves (None: off)
        self._stopping = False

    async def _supervise(self, name: str, fn: Callable[..., Awaitable[Any]], *, task_status: trio.TaskStatus[Any]) -> None:
        scope = trio.CancelScope()
        done = trio.Event()
        self._stack.append((name, scope, done))
        try:
            with scope:
                async with trio.open_nursery() as nursery:
                    value = await nursery.start(fn)
                    task_status.started(value)
        finally:
            done.set()

    async def _start(self, nursery: trio.Nursery, name: str, fn: Callable[..., Awaitable[Any]]) -> Any:
        started = time.monotonic()
        value = await nursery.start(self._supervise, name, fn)
        log.debug("%s started in %.3f s", name, time.monotonic() - started)
        return value

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Run until stopped (signal or :meth:`stop`); returns after an orderly shutdown."""
        s = self.settings
        os.makedirs(s.state_dir, mode=0o700, exist_ok=True)
        async with trio.open_nursery() as root:
            self._root = root
            try:
                await self._run_inner(root, task_status)
            finally:
                # Also on a start-up failure: stop what started, in reverse order, before the
                # nursery cancels everything at once (the player must save before the database closes).
                with trio.CancelScope(shield=True):
                    await self._teardown()

    async def _run_inner(self, root: trio.Nursery, task_status: trio.TaskStatus[None]) -> None:
        s = self.settings
        if self._handle_signals:
            root.start_soon(self._signals)
        # The control socket first: it answers `ping` while the rest is imported and started,
        # and holds every other request until the real control server takes over below.
        listeners = await self._control_listeners()
        early = EarlyControl(listeners)
        await self._start(root, "control (starting)", early.serve)
        await trio.to_thread.run_sync(import_daemon_modules)
        from .actors.albums import AlbumPlans
        from .actors.cache import ChunkCache
        from .actors.cluster import ClusterAnalysis
        from .actors.database import Database
        from .actors.events import EventHub
        from .actors.fingerprints import FingerprintResolver
        from .actors.library import Library
        from .actors.mastering import Mastering
        from .actors.opus_stream import OpusStreamHub
        from .actors.outputs import Outputs, make_outputs
        from .actors.player import Player
        from .actors.playlists import PLAYLISTS_FOLDER, PlaylistStore
        from .actors.session import SessionBackend
        from .app.commands import Services
        from .transport.control import ControlServer

        db = Database(s.database_path)
        await self._start(root, "database", db.run)
        pool_actor = _PoolActor(s.workers)
        await self._start(root, "pool", pool_actor.run)
        assert pool_actor.pool is not None
        hub = EventHub()
        library = Library(db, hub, s.music_dir)
        await self._start(root, "library", library.run)
        bridge: ClusterAnalysis | None = None
        if s.dask_scheduler is not None:
            bridge = ClusterAnalysis(s.dask_scheduler, path_map=s.dask_path_map)
            await self._start(root, "cluster", bridge.run)
        resolver = FingerprintResolver(
            db, pool_actor.pool, hub, cache_dir=s.cache_dir, sidecars=s.sidecars, sidecar_dir=s.sidecar_dir,
            cluster=bridge,
        )  # fmt: skip
        await self._start(root, "fingerprints", resolver.run)
        playlists = PlaylistStore(os.path.join(s.state_dir, PLAYLISTS_FOLDER), hub)
        await self._start(root, "playlists", playlists.run)
        albums = AlbumPlans(db, pool_actor.pool, hub)
        await self._start(root, "albums", albums.run)
        mastering = Mastering(pool_actor.pool, ChunkCache(s.cache_bytes))
        await self._start(root, "mastering", mastering.run)
        player = Player(
            db=db, hub=hub, resolver=resolver, mastering=mastering, sample_rate=s.sample_rate,
            render_ahead=s.render_ahead, restore_paused=s.restore_paused, albums=albums, album_mode=s.album_mode,
        )  # fmt: skip
        await self._start(root, "player", player.run)
        self._session_backend = SessionBackend(db, resolver, mastering, sample_rate=s.sample_rate,
                                               opus_bitrate_bps=1000 * s.opus_bitrate_kbps)
        self._opus_hub = OpusStreamHub(player, hub, self._session_backend)
        await self._start(root, "opus", self._opus_hub.run)
        outputs = Outputs(db=db, hub=hub, player=player, kinds=make_outputs(s.output_specs(), player.sample_rate))
        await self._start(root, "outputs", outputs.run)
        services = Services(
            db=db, hub=hub, library=library, resolver=resolver, mastering=mastering, player=player,
            started_at=time.monotonic(), albums=albums, playlists=playlists, outputs=outputs,
        )  # fmt: skip
        self.services = services
        library.on_scan_complete.append(resolver.schedule_idle)
        library.on_scan_complete.append(lambda: root.start_soon(player.refresh_albums))
        library.on_tracks_removed.append(player.forget_tracks)
        from auralis.malloc import release_free_memory

        library.on_scan_complete.append(release_free_memory)  # a scan's lists of every file are garbage now

        token = s.read_token()
        server = ControlServer(services, token=token)
        held = await early.hand_over()
        await self._start(root, "control", lambda task_status: server.serve(listeners, held=held, task_status=task_status))
        self.http_port = await self._start(root, "http", lambda task_status: self._serve_http(services, token, task_status))
        services.http_address = (s.http_host, self.http_port)  # status tells clients (auralisctl listen) where
        if s.mpd_port:
            self.mpd_port = await self._start(root, "mpd", lambda task_status: self._serve_mpd(services, token, task_status))
        for extra in self.hooks.extra_tasks:
            root.start_soon(extra, services)

        # ---- ready: every listener accepts connections
        log.info(
            "auralisd ready: control %s%s, http %s:%s, %d workers, %d MiB cache, %d Hz",
            s.control_socket_path,
            f" and tcp {s.control_tcp}" if s.control_tcp else "",
            s.http_host,
            self.http_port,
            s.workers,
            s.cache_mib,
            s.sample_rate,
        )
        self.ready.set()
        if self.hooks.on_ready is not None:
            self.hooks.on_ready()
        task_status.started()
        pool_actor.warm_up_soon()
        if self._initial_scan:
            library.scan()
        if self.hooks.on_status is not None:
            root.start_soon(self._status_loop, services)
        await trio.sleep_forever()

    async def _control_listeners(self) -> list[tuple[trio.abc.Listener[Any], bool]]:
        s = self.settings
        out: list[tuple[trio.abc.Listener[Any], bool]] = []
        if self.hooks.control_listeners is not None:
            out += [(listener, False) for listener in self.hooks.control_listeners]
        else:
            out.append((await open_unix_listener(s.control_socket_path), False))
        address = s.control_tcp_address()
        if address is not None:
            out.append((await open_tcp_listener(*address), True))
            log.info("control protocol on tcp %s:%d (auth required)", *address)
        return out

    async def _serve_http(self, services: Services, token: str | None, task_status: trio.TaskStatus[int]) -> None:
        from .transport.covers import cover_handler
        from .transport.http import WebSocketRoute, serve_http

        routes = http_routes(services, self.settings, token, backend=self._session_backend, opus_hub=self._opus_hub)
        limits = {"/stream": self.settings.stream_max_listeners}  # /session limits itself (sessions.py)
        await serve_http(
            {path: WebSocketRoute(handler, max_connections=limits.get(path)) for path, handler in routes.items()},
            get_routes={"/cover/": cover_handler(services.db, services.covers)},
            host=self.settings.http_host,
            port=self.settings.http_port,
            max_connections=self.settings.http_max_connections,
            allowed_origins=self.settings.allowed_origin,
            token=token,
            arrival=self._session_backend.ticket,  # a /session is served in the order it connected
            task_status=task_status,
        )

    async def _serve_mpd(self, services: Services, token: str | None, task_status: trio.TaskStatus[int | None]) -> None:
        """The MPD frontend. Port 6600 taken (a real MPD runs there) by default: a warning, no frontend."""
        from .app.mpd import make_server
        from .transport.mpd import MpdListener, open_mpd_listeners

        s = self.settings
        try:
            listeners = await open_mpd_listeners(s.mpd_host, s.mpd_port)
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE or s.mpd_port != config_mod.DEFAULT_MPD_PORT:
                raise
            log.warning("%s; the MPD frontend is off (choose another mpd_port, or 0 to silence this)", exc.strerror)
            task_status.started(None)
            return
        remote = not config_mod.is_loopback_host(s.mpd_host)
        listener = MpdListener(make_server(services, token=token), require_password=remote)
        log.info("MPD protocol on %s:%d%s", s.mpd_host, listeners[0].socket.getsockname()[1],
                 " (password: the token)" if remote else "")
        await listener.serve(listeners, task_status=task_status)

    async def _status_loop(self, services: Services) -> None:
        assert self.hooks.on_status is not None
        while True:
            try:
                self.hooks.on_status(await services.status())
            except Exception:
                log.exception("status hook failed")
            await trio.sleep(2.0)

    async def _signals(self) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async for signum in signals:
                if signum == signal.SIGHUP:
                    await self.reload()
                else:
                    log.info("%s: stopping", signal.Signals(signum).name)
                    self._root.start_soon(self.stop)

    async def reload(self) -> None:
        """SIGHUP: re-read the config file (flags still win), apply what can change live, rescan."""
        if self.hooks.on_reloading is not None:
            self.hooks.on_reloading()
        try:
            parser = build_parser()
            args = parser.parse_args(self._argv or [])
            new, _ = config_mod.load_settings(args)
        except (ConfigError, SystemExit) as exc:
            log.error("reload failed, keeping the old configuration: %s", exc)
            return
        logging.getLogger().setLevel(config_mod.python_log_level(new.log_level))
        if self.services is not None:
            self.services.library.set_music_dirs(new.music_dir)
            self.services.library.scan()
        changed = [k for k in ("workers", "cache_mib", "sample_rate", "http_host", "http_port", "mpd_host", "mpd_port", "http_max_connections", "stream_max_listeners", "control_tcp", "snapcast", "icecast",
                               "state_dir", "runtime_dir") if getattr(new, k) != getattr(self.settings, k)]  # fmt: skip
        if changed:
            log.warning("reload: %s change only at the next restart", ", ".join(changed))
        self.settings = dataclass_replace(self.settings, music_dir=new.music_dir, log_level=new.log_level)
        log.info("configuration reloaded; rescanning %s", ", ".join(new.music_dir) or "(no music folders)")
        if self.hooks.on_ready is not None:
            self.hooks.on_ready()

    async def stop(self) -> None:
        """Stop the actors in reverse start order, all within SHUTDOWN_GRACE_S, then return from run()."""
        if self._stopping:
            return
        self._stopping = True
        if self.hooks.on_stopping is not None:
            self.hooks.on_stopping()
        if self.services is not None:  # tell control clients and listeners before the sockets close
            self.services.hub.publish("shutdown", {"reason": "the daemon is stopping"})
            await trio.sleep(0.05)
        await self._teardown()
        self._root.cancel_scope.cancel()

    async def _teardown(self) -> None:
        deadline = trio.current_time() + SHUTDOWN_GRACE_S
        while self._stack:
            name, scope, done = self._stack.pop()
            scope.cancel()
            with trio.move_on_at(deadline):
                await done.wait()
            if not done.is_set():
                log.warning("%s did not stop in time", name)


def dataclass_replace(settings: Settings, **changes: Any) -> Settings:
    import dataclasses

    return dataclasses.replace(settings, **changes)


def http_routes(services: Services, settings: Settings, token: str | None, *, backend: Any = None,
                opus_hub: Any = None) -> dict[str, Any]:
    """The WebSocket routes of the HTTP port: ``/stream``, ``/session`` (sessions.py) and ``/control``.

    ``opus_hub``: the :class:`~auralisd.actors.opus_stream.OpusStreamHub` serving ``/stream?format=opus``
    (without it, that format is refused)."""
    from .actors.session import SessionBackend
    from .transport import sessions
    from .transport.control import websocket_control_handler

    if backend is None:
        backend = SessionBackend(services.db, services.resolver, services.mastering, sample_rate=settings.sample_rate)
    return {
        "/stream": sessions.stream_listener_handler(services.player, services.hub, services.db, services.resolver,
                                                    backend=backend, outputs=services.outputs, opus_hub=opus_hub,
                                                    counters=services.streams),
        "/session": sessions.private_session_handler(backend, services.streams),
        # A loopback bind needs no token on any WebSocket (as for the Unix socket); elsewhere the
        # handshake carries it and /control also asks for `auth` first.
        "/control": websocket_control_handler(
            services, token=token, require_auth=token is not None and not config_mod.is_loopback_host(settings.http_host)
        ),
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="auralisd",
        description="Auralis daemon: adaptive mastering music player controlled like MPD.",
    )
    config_mod.add_arguments(parser)
    parser.add_argument("--print-config", action="store_true", help="print the effective settings and their sources")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings, origin = config_mod.load_settings(args)
    except ConfigError as exc:
        print(f"auralisd: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.print_config:
        print(config_mod.format_settings(settings, origin))
        return EXIT_OK
    setup_logging(config_mod.python_log_level(settings.log_level))
    from auralis.malloc import limit_arenas  # here, not at import: auralisd.main loads no auralis (early ping)

    limit_arenas()  # before trio starts its threads (auralis/malloc.py)
    if not settings.music_dir:
        log.warning("no music folder configured (--music-dir or music_dir in %s)", config_mod.default_config_path())
    try:
        hooks = make_hooks()
    except Exception as exc:  # e.g. malformed socket-activation variables: one clear line, no traceback
        log.error("cannot start: %s", exc)
        return EXIT_RUNTIME
    daemon = Daemon(settings, argv=argv, hooks=hooks)
    try:
        trio.run(daemon.run)
    except (OSError, ConfigError, ExceptionGroup) as exc:
        expected = first_leaf(exc, (OSError, ConfigError))
        if expected is None:
            raise
        log.error("cannot run: %s", expected)
        return EXIT_CONFIG if isinstance(expected, ConfigError) else EXIT_RUNTIME
    log.info("stopped")
    return EXIT_OK


def make_hooks() -> Hooks:
    """Service-manager integration (socket activation, sd_notify); plain defaults without systemd."""
    from .systemd import service_manager_hooks

    return service_manager_hooks()


if __name__ == "__main__":
    sys.exit(main())
