"""An MPD client's queue survives ``kill -9`` and a restart exactly: order, song ids, priorities.

A real ``auralisd`` with its MPD port: the queue is edited the way ncmpcpp and Cantata edit it
(add, addid at a position, prio, prioid, swap, move, deleteid, shuffle), the daemon is killed
with SIGKILL right after the last OK, and the restarted daemon must list the same queue with the
same ``Id`` and ``Prio`` for every entry. Then a file vanishes while the daemon is down: after the
restart's scan its entry is gone and every other song keeps its id and its priority.
"""

from __future__ import annotations

from pathlib import Path

from ..conftest import DaemonProcess
from .conftest import LIBRARY, MpdConnection, free_port, greets, wait_until, write_library


def start(root: Path, music: Path) -> tuple[DaemonProcess, int]:
    port = free_port()
    daemon = DaemonProcess(root, music, ["--mpd-port", str(port), "--workers", "1"]).start()
    wait_until(lambda: greets(port))
    return daemon, port


def queue_of(conn: MpdConnection) -> list[tuple[str, str, str]]:
    """(file, Id, Prio) of every entry in queue order (``Prio`` is listed only when not 0)."""
    out: list[tuple[str, str, str]] = []
    reply = conn.command("playlistinfo")
    assert reply.error is None, reply.error
    for key, value in reply.pairs:
        if key == "file":
            out.append((value, "", "0"))
        elif key == "Id":
            out[-1] = (out[-1][0], value, out[-1][2])
        elif key == "Prio":
            out[-1] = (out[-1][0], out[-1][1], value)
    return out


def ok(conn: MpdConnection, line: str) -> dict[str, str]:
    reply = conn.command(line)
    assert reply.error is None, f"{line}: {reply.error}"
    return dict(reply.pairs)


def test_queue_ids_and_priorities_survive_kill9_and_a_vanished_file(tmp_path: Path) -> None:
    music = write_library(tmp_path / "music")
    daemon, port = start(tmp_path / "daemon", music)
    try:
        with daemon.client() as client:
            daemon.wait_scan(client, len(LIBRARY))
        conn = MpdConnection(port)
        for line in ("add Alpha", "add Beta", "add loose.flac", "prio 200 2", "swap 0 5", "move 1 3"):
            ok(conn, line)
        inserted = ok(conn, "addid \"Beta/02 sky.flac\" 2")["Id"]
        ok(conn, f"prioid 50 {inserted}")
        ok(conn, f"deleteid {queue_of(conn)[4][1]}")
        ok(conn, "shuffle 3:6")
        ok(conn, "play 1")
        before = queue_of(conn)
        assert len(before) == 6 and {p for _, _, p in before} == {"0", "50", "200"}
        handed_out = {str(i) for i in range(1, 8)}  # 6 added, 1 inserted, 1 of them deleted
        assert {i for _, i, _ in before} < handed_out
        conn.close()
        daemon.kill9()  # right after the last OK: every edit above was acknowledged

        daemon, port = start(tmp_path / "daemon", music)
        conn = MpdConnection(port)
        assert queue_of(conn) == before
        assert ok(conn, "status")["songid"] == before[1][1]
        added = ok(conn, "addid loose.flac")["Id"]
        assert added not in handed_out  # an id is not handed out again, the deleted one's neither
        ok(conn, f"deleteid {added}")
        conn.close()
        daemon.stop()

        vanished = "Beta/01 sea.flac"
        (music / vanished).unlink()
        daemon, port = start(tmp_path / "daemon", music)
        conn = MpdConnection(port)
        expected = [entry for entry in before if entry[0] != vanished]
        assert len(expected) < len(before)
        wait_until(lambda: len(queue_of(conn)) == len(expected))  # the scan, then the queue's clean-up
        assert queue_of(conn) == expected
        conn.close()
    finally:
        daemon.stop()
