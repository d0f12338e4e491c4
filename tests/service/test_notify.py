"""sd_notify: datagrams to a fake NOTIFY_SOCKET, path and abstract; the watchdog cadence."""

from __future__ import annotations

import os
import socket
import uuid

import pytest
import trio

from auralisd.systemd import Notifier, serve_watchdog, status_text


@pytest.fixture
def listener(tmp_path):
    """A fake service manager: a datagram socket bound to a path, and its NOTIFY_SOCKET value."""
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2.0)
    yield sock, path
    sock.close()


def received(sock: socket.socket) -> list[str]:
    """Every datagram waiting on ``sock``, decoded."""
    messages = []
    sock.setblocking(False)
    try:
        while True:
            messages.append(sock.recv(4096).decode())
    except BlockingIOError:
        return messages
    finally:
        sock.settimeout(2.0)


def test_ready_status_stopping_reach_a_path_socket(listener):
    sock, path = listener
    env = {"NOTIFY_SOCKET": path}
    notifier = Notifier.from_environ(env)
    assert notifier.enabled and env == {}, "the variables are consumed so worker processes do not inherit them"
    assert notifier.ready(status="serving 3 tracks")
    assert sock.recv(4096) == b"READY=1\nSTATUS=serving 3 tracks"
    assert notifier.status("scanning 1200/5000\nsecond line")
    assert sock.recv(4096) == b"STATUS=scanning 1200/5000 second line"
    assert notifier.reloading() and sock.recv(4096) == b"RELOADING=1"
    assert notifier.stopping() and sock.recv(4096) == b"STOPPING=1"


def test_abstract_namespace_socket():
    name = f"auralis-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2.0)
        notifier = Notifier.from_environ({"NOTIFY_SOCKET": "@" + name})
        assert notifier.watchdog()
        assert sock.recv(4096) == b"WATCHDOG=1"


def test_without_notify_socket_everything_is_a_quiet_no_op():
    notifier = Notifier.from_environ({})
    assert not notifier.enabled
    assert notifier.ready() is False and notifier.watchdog() is False
    assert notifier.watchdog_interval_s is None


def test_vanished_manager_socket_is_reported_not_raised(tmp_path, caplog):
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")})
    assert notifier.ready() is False
    assert "sd_notify" in caplog.text


def test_watchdog_interval_is_half_the_timeout_and_only_for_this_pid():
    env = {"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}
    assert Notifier.from_environ(env).watchdog_interval_s == pytest.approx(15.0)
    other = {"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid() + 1)}
    assert Notifier.from_environ(other).watchdog_interval_s is None
    assert Notifier.from_environ({"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "bogus"}).watchdog_interval_s is None


async def test_watchdog_pings_at_half_the_timeout(listener, autojump_clock):
    sock, path = listener
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "2000000"})
    with trio.move_on_after(3.5):  # virtual time: pings at 0, 1, 2 and 3 s
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_watchdog, notifier)
    assert received(sock) == ["WATCHDOG=1"] * 4


async def test_watchdog_without_a_timeout_sends_nothing(listener, autojump_clock):
    sock, path = listener
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": path})
    with trio.move_on_after(100):
        async with trio.open_nursery() as nursery:
            await nursery.start(serve_watchdog, notifier)
    assert received(sock) == []


def test_status_text_names_what_the_daemon_does():
    playing = {
        "state": "play",
        "track": {"track_id": 1, "path": "/m/a.flac", "title": "Song", "artist": "Band"},
        "preset": "warm",
        "intensity": 0.5,
        "scan": {"running": True, "done": 1200, "total": 5000},
    }
    assert status_text(playing) == "playing Band - Song (warm 0.50); scanning 1200/5000"
    untitled = {"state": "pause", "track": {"track_id": 2, "path": "/m/b.wav"}, "preset": "adaptive", "intensity": 1.0}
    assert status_text(untitled) == "paused b.wav (adaptive 1.00)"
    assert status_text({"state": "stop", "track": None, "scan": {"running": False}}) == "idle"


def test_a_full_manager_queue_drops_the_message_instead_of_blocking(listener):
    """The event loop calls notify: a receiver that does not read must never block it."""
    sock, path = listener
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": path})
    results = [notifier.watchdog() for _ in range(200)]  # far beyond net.unix.max_dgram_qlen
    assert results[0] is True and results[-1] is False
    assert received(sock) == ["WATCHDOG=1"] * results.count(True)
