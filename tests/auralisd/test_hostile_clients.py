"""Hostile control clients cost the daemon nothing (issue 11): abrupt disconnects, connection
bursts, well-formed values of the wrong shape. A real daemon process over its real sockets."""

from __future__ import annotations

import select
import socket
import struct
import time

import msgpack
import pytest

from .conftest import free_port
from .rpc import Client

TOKEN = "hostile-test-token-0123456789"


@pytest.fixture(scope="module")
def hostile(module_daemon_factory, tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    (root / "music").mkdir()
    token_file = root / "token"
    token_file.write_text(TOKEN + "\n")
    port = free_port()
    daemon = module_daemon_factory(
        root / "music", ["--control-tcp", f"127.0.0.1:{port}", "--token-file", str(token_file)], name="hostile"
    ).start()
    return daemon, port


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def connect_unix(path: str) -> Client:
    """A client on the Unix socket, waiting while the listen backlog is full (the daemon is behind)."""
    while True:
        try:
            return Client.unix(path)
        except BlockingIOError:
            select.select([], [], [], 0.005)


def abrupt_disconnects(path: str, count: int) -> None:
    """``count`` clients that send a request and reset the connection before the reply is written."""
    request = msgpack.packb([0, 1, "status", {}])
    linger_reset = struct.pack("ii", 1, 0)  # close() sends RST at once
    for _ in range(count):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger_reset)
            while True:
                try:
                    sock.connect(path)
                    break
                except BlockingIOError:  # the listen backlog is full: the daemon is behind, wait for it
                    select.select([], [], [], 0.005)
            sock.sendall(request)


def test_abrupt_disconnects_are_quiet_and_cost_no_memory(hostile) -> None:
    daemon, _ = hostile
    assert daemon.proc is not None
    abrupt_disconnects(daemon.socket_path, 300)  # warm up allocator arenas and caches
    with connect_unix(daemon.socket_path) as c:
        assert c.call("ping") == "pong"
    log_before = len(daemon.log())
    before_kib = rss_kib(daemon.proc.pid)
    abrupt_disconnects(daemon.socket_path, 3000)
    with connect_unix(daemon.socket_path) as c:  # every disconnect has been handled once this is answered in order
        assert c.call("status")["queue_length"] == 0
    grown_kib = rss_kib(daemon.proc.pid) - before_kib
    new_log = daemon.log()[log_before:]
    assert "ERROR" not in new_log and "Traceback" not in new_log, new_log[:3000]
    # Before the fix: ~6.7 KiB per disconnect (about 20 MiB here) and a 50-line ERROR each.
    assert grown_kib < 2 * 1024, f"resident memory grew {grown_kib} KiB over 3000 disconnects"


def test_a_burst_of_tcp_connections_never_exceeds_the_limit(hostile) -> None:
    from auralisd.transport.control import MAX_TCP_CONNECTIONS

    daemon, port = hostile
    burst = MAX_TCP_CONNECTIONS + 16
    socks = []
    try:
        for _ in range(burst):  # all connect before the daemon runs a single connection task
            socks.append(socket.create_connection(("127.0.0.1", port), timeout=10))
        # The refused ones are closed at once; the accepted ones are served. Every connection asks to
        # authenticate at once (well within the 5 s auth deadline), then each answer is awaited: the reply or
        # the close is the event (the socket timeout is a safety bound only).
        for sock in socks:
            sock.sendall(msgpack.packb([0, 1, "auth", {"token": TOKEN}], use_bin_type=True))
        served = 0
        for sock in socks:
            try:
                reply = Client(sock, timeout_s=30).read_message()
            except (ConnectionError, OSError):  # closed (or reset) by the daemon: refused
                continue
            assert reply[:3] == [1, 1, None] and reply[3] is True, reply
            served += 1
        assert served == MAX_TCP_CONNECTIONS
    finally:
        for sock in socks:
            sock.close()
    # the slots come back once the daemon has seen the closes: a poll of another process, the deadline a safety
    # bound only
    deadline = time.monotonic() + 10.0
    while True:
        try:
            with Client.tcp("127.0.0.1", port) as c:
                assert c.call("auth", token=TOKEN) is True
                break
        except ConnectionError:
            assert time.monotonic() < deadline, "the connection slots never came back"
            select.select([], [], [], 0.05)


@pytest.mark.parametrize(
    "request_",
    [
        [0, 5, "status", {1: 2}],
        [0, 5, "status", {"x": msgpack.ExtType(3, b"ext")}],
        [0, 5, msgpack.ExtType(3, b"ext"), {}],
    ],
)
def test_integer_keys_and_ext_values_are_answered_and_the_connection_stays(hostile, request_) -> None:
    daemon, _ = hostile
    with daemon.client() as c:
        c.send_raw(msgpack.packb(request_, use_bin_type=True))
        reply = c.read_message()
        assert reply[0] == 1 and reply[1] == 5 and reply[2]["code"] == "bad_request", reply
        assert c.call("ping") == "pong"
