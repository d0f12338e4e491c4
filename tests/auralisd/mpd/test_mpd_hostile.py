"""A slow or hostile MPD client costs bounded memory and never disturbs the others."""

from __future__ import annotations

import socket

from .conftest import AuralisMpd


def test_a_client_that_never_reads_does_not_stall_the_others(auralis_mpd: AuralisMpd) -> None:
    setup = auralis_mpd.connect()
    setup.command("clear")
    for _ in range(20):
        setup.command("add Alpha")  # 60 entries: each playlistinfo answer is ~10 kB
    hog = socket.create_connection(("127.0.0.1", auralis_mpd.mpd_port), timeout=10)
    hog.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    try:
        hog.recv(64)  # the greeting
        hog.setblocking(False)
        sent = 0
        request = b"playlistinfo\n" * 200
        try:
            while sent < 4_000_000:  # until its socket (and the server's for it) are full
                sent += hog.send(request)
        except BlockingIOError:
            pass
        other = auralis_mpd.connect()
        try:
            for _ in range(20):  # everyone else is served at once while the hog's replies are stuck
                assert other.command("ping").error is None
                assert other.command("status").get("playlistlength") == "60"
        finally:
            other.close()
    finally:
        hog.close()
        setup.command("clear")
        setup.close()


def test_an_oversized_command_list_closes_only_that_connection(auralis_mpd: AuralisMpd) -> None:
    bad = auralis_mpd.connect()
    good = auralis_mpd.connect()
    try:
        bad.sock.sendall(b"command_list_begin\n")
        chunk = b"ping\n" * 10_000
        try:
            for _ in range(60):  # 3 MB of list, over the 2 MiB / 16 384 command limit
                bad.sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        assert bad.file.readline() == b""  # closed, nothing run
        assert good.command("ping").error is None
    finally:
        bad.close()
        good.close()


def test_garbage_bytes_get_answers_not_crashes(auralis_mpd: AuralisMpd) -> None:
    conn = auralis_mpd.connect()
    try:
        conn.sock.sendall(b"status \xff\xfe\n")
        assert conn.read_reply().error == "ACK [2@0] {} Malformed UTF-8"
        conn.sock.sendall(b"add \"a\x00b\"\n")
        assert conn.read_reply().error is not None
        assert conn.command("ping").error is None
    finally:
        conn.close()
