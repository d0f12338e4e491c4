"""auralisd as systemd runs it: socket activation, sd_notify, and the sandbox's read-only music.

The daemon is started by ``systemd-socket-activate`` (which binds the control socket and
execs the daemon on the first connection, passing the socket as fd 3 named ``control``)
with a fake ``NOTIFY_SOCKET`` this test listens on and a 1 s watchdog. Its music folder is
read-only, as ``ProtectHome=read-only`` makes it under the user unit; as root, the daemon
runs without capabilities (``setpriv``) so the folder's permissions apply.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from pathlib import Path

import msgpack
import pytest
from helpers import require_tool

from auralis.sidecar import SIDECAR_SUFFIX, cache_sidecar_path, read_sidecar
from tests.service.daemon_process import rpc, start_daemon, wait_scanned, write_library

WATCHDOG_USEC = 1_000_000  # WATCHDOG=1 expected every 0.5 s


class NotifyListener:
    """The service manager's side of sd_notify: a datagram socket drained by a thread, as systemd does."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.1)
        self.messages: list[str] = []
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while not self._closed.is_set():
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except TimeoutError:
                continue

    def wait_for(self, predicate, what: str, timeout_s: float = 60.0) -> str:
        """Wait until a received message satisfies ``predicate``; returns it."""
        deadline = time.monotonic() + timeout_s
        while True:
            for message in list(self.messages):
                if predicate(message):
                    return message
            if time.monotonic() > deadline:
                raise AssertionError(f"no sd_notify message {what}; got {self.messages}")
            time.sleep(0.02)

    def close(self) -> None:
        self._closed.set()
        self._thread.join(timeout=5)
        self.sock.close()


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    activate = require_tool("systemd-socket-activate")
    tmp = tmp_path_factory.mktemp("service")
    music = tmp / "music"
    tracks = write_library(music)
    for folder in (music / "Album", music):
        folder.chmod(0o555)
    prefix: list[str] = []
    if os.geteuid() == 0:  # root ignores permissions unless it drops CAP_DAC_OVERRIDE
        prefix = [require_tool("setpriv"), "--inh-caps=-all", "--bounding-set=-all", "--"]
    run = tmp / "run"
    run.mkdir(mode=0o700)
    notify = NotifyListener(tmp / "notify.sock")
    socket_path = run / "control.sock"
    prefix += [
        activate, "-l", str(socket_path), "--fdname=control",
        "-E", f"NOTIFY_SOCKET={notify.path}", "-E", f"WATCHDOG_USEC={WATCHDOG_USEC}",
        "-E", f"XDG_CONFIG_HOME={tmp / 'config'}", "-E", "PYTHONUNBUFFERED=1",
    ]  # fmt: skip
    daemon = start_daemon(tmp, music, prefix=prefix, wait=False)
    deadline = time.monotonic() + 30
    while not socket_path.exists():
        assert daemon.process.poll() is None, daemon.log()
        assert time.monotonic() < deadline, "systemd-socket-activate did not bind"
        time.sleep(0.02)
    inode = socket_path.stat().st_ino
    try:
        yield daemon, notify, tracks, inode
    finally:
        daemon.stop()
        notify.close()
        for folder in (music, music / "Album"):
            folder.chmod(0o755)


def test_first_connection_starts_the_daemon_which_serves_the_passed_socket(service):
    daemon, notify, _, inode = service
    assert notify.messages == [], "nothing runs before the first connection"
    # The first connection waits in the activated socket's backlog while the daemon execs; its
    # ping is answered as soon as the control socket is served (transport/early.py), and the
    # status pipelined behind it once the daemon is up, on the same connection, in order.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(60)
        client.connect(daemon.socket_path)
        client.sendall(msgpack.packb([0, 1, "ping", {}]) + msgpack.packb([0, 2, "status", {}]))
        unpacker = msgpack.Unpacker(raw=False)
        replies: list = []
        while len(replies) < 2:
            data = client.recv(65536)
            assert data, daemon.log()
            unpacker.feed(data)
            replies += list(unpacker)
    assert replies[0] == [1, 1, None, "pong"]
    assert replies[1][:3] == [1, 2, None] and replies[1][3]["state"] in ("stop", "play", "pause")
    assert rpc(daemon.socket_path, "ping", timeout_s=60) == "pong"
    ready = notify.wait_for(lambda m: "READY=1" in m.split("\n"), "READY=1")
    assert ready.startswith("READY=1")
    assert os.stat(daemon.socket_path).st_ino == inode, "the daemon used the passed socket, it did not rebind"
    assert "socket activation" in daemon.log()
    wait_scanned(daemon)


def test_status_lines_follow_the_player_and_the_watchdog_pings(service):
    daemon, notify, tracks, _ = service
    wait_scanned(daemon)
    daemon.call("queue.clear")
    daemon.call("queue.add", {"paths": [str(tracks["three"])]})
    daemon.call("play", {"pos": 0})
    playing = notify.wait_for(lambda m: m.startswith("STATUS=playing"), "STATUS=playing ...")
    assert playing.startswith("STATUS=playing three (")
    daemon.call("stop")
    first = notify.messages.count("WATCHDOG=1")
    notify.wait_for(lambda m: notify.messages.count("WATCHDOG=1") >= first + 2, "two more WATCHDOG=1")


def test_sidecar_goes_to_the_cache_folder_when_the_music_folder_is_read_only(service):
    daemon, _, tracks, _ = service
    wait_scanned(daemon)
    path = str(tracks["one"])
    result = daemon.call("fingerprint.get", {"path": path})
    assert result["source"] in ("computed", "database", "memory")
    cached = cache_sidecar_path(path, str(daemon.cache_dir))
    deadline = time.monotonic() + 30
    while not os.path.exists(cached):
        assert time.monotonic() < deadline, f"no sidecar in the cache folder:\n{daemon.log()}"
        time.sleep(0.05)
    assert not os.path.exists(path + SIDECAR_SUFFIX), "the music folder is read-only"
    assert not os.access(os.path.dirname(path), os.W_OK) or os.geteuid() == 0
    fingerprint = read_sidecar(path, cache_dir=str(daemon.cache_dir))
    assert fingerprint is not None
    assert fingerprint.dimensions == pytest.approx(result["fingerprint"])


def test_sighup_reloads_with_reloading_then_ready(service):
    daemon, notify, _, _ = service
    wait_scanned(daemon)
    assert "RELOADING=1" not in notify.messages
    daemon.process.send_signal(signal.SIGHUP)
    notify.wait_for(lambda m: m == "RELOADING=1", "RELOADING=1")
    reload_at = notify.messages.index("RELOADING=1")
    notify.wait_for(
        lambda _: any(m.startswith("READY=1") for m in notify.messages[reload_at + 1 :]), "READY=1 after RELOADING=1"
    )
    assert daemon.call("ping") == "pong"


def test_sigterm_sends_stopping_and_exits_cleanly(service):
    daemon, notify, _, _ = service
    wait_scanned(daemon)
    assert daemon.stop() == 0, daemon.log()
    notify.wait_for(lambda m: m.startswith("STOPPING=1"), "STOPPING=1", timeout_s=5)
