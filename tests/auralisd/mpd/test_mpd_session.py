"""End to end through a real daemon's MPD port: the exact replies and the state they leave."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from ..conftest import DaemonProcess
from .conftest import LIBRARY, AuralisMpd, MpdConnection, free_port, greets, wait_until


@pytest.fixture
def conn(auralis_mpd: AuralisMpd):
    c = auralis_mpd.connect()
    c.command("clear")
    c.command("stop")
    yield c
    c.close()


def test_greeting_and_errors_in_mpds_form(conn: MpdConnection) -> None:
    assert conn.greeting == "OK MPD 0.23.0\n"
    assert conn.command("ping").error is None
    assert conn.command("foo").error == 'ACK [5@0] {} unknown command "foo"'
    assert conn.command("play x").error == "ACK [2@0] {play} Integer expected: x"
    assert conn.command("play 1 2").error == 'ACK [2@0] {play} too many arguments for "play"'
    assert conn.command("seek").error == 'ACK [2@0] {seek} wrong number of arguments for "seek"'
    assert conn.command("random 2").error == "ACK [2@0] {random} Boolean (0/1) expected: 2"
    assert conn.command("play 99").error == "ACK [2@0] {play} Bad song index"
    assert conn.command("playlistid 99").error == "ACK [50@0] {playlistid} No such song"
    assert conn.command("add nope").error == "ACK [50@0] {add} No such directory"
    assert conn.command("idle foo").error == "ACK [2@0] {idle} Unrecognized idle event: foo"
    assert conn.command("prio 300 0").error == "ACK [2@0] {prio} Number too large: 300"
    assert conn.command("config").error == "ACK [4@0] {config} Command only permitted to local clients"
    assert conn.command('play "1').error == "ACK [5@0] {} Missing closing '\"'"
    assert conn.command("ping").error is None  # errors never cost the connection


def test_queue_ids_and_versions(conn: MpdConnection) -> None:
    version = int(conn.command("status").get("playlist") or 0)
    assert conn.command("add Alpha").error is None
    info = conn.command("playlistinfo")
    assert info.all("file") == ["Alpha/01 dawn.flac", "Alpha/02 noon.flac", "Alpha/03 dusk.flac"]
    assert info.all("Title") == ["Dawn", "Noon", "Dusk"]
    assert info.all("Pos") == ["0", "1", "2"]
    ids = info.all("Id")
    assert len(set(ids)) == 3
    status = conn.command("status")
    assert int(status.get("playlist") or 0) > version and status.get("playlistlength") == "3"
    added = conn.command('addid "Beta/01 sea.flac" 1')
    new_id = added.get("Id")
    assert new_id is not None and new_id not in ids
    after = conn.command("status").get("playlist")
    changes = conn.command(f"plchangesposid {status.get('playlist')}")
    assert changes.all("cpos") == ["1", "2", "3"] and changes.all("Id")[0] == new_id
    assert conn.command(f"plchanges {after}").pairs == []
    assert conn.command(f"playlistid {new_id}").get("file") == "Beta/01 sea.flac"
    assert conn.command(f"moveid {new_id} 3").error is None
    assert conn.command("playlistinfo 3").get("Id") == new_id
    assert conn.command("swap 0 3").error is None
    assert conn.command("playlistinfo 0").get("Id") == new_id
    assert conn.command(f"deleteid {new_id}").error is None
    assert conn.command("playlistinfo").all("Id") == [ids[1], ids[2], ids[0]]
    assert conn.command(f"deleteid {new_id}").error == "ACK [50@0] {deleteid} No such song"
    assert conn.command("delete 0:2").error is None
    assert conn.command("status").get("playlistlength") == "1"


def test_play_pause_seek_and_status_fields(conn: MpdConnection) -> None:
    conn.command("add Alpha")
    assert conn.command("play 1").error is None
    status = conn.command("status")
    assert status.get("state") == "play" and status.get("song") == "1"
    assert status.get("nextsong") == "2"
    song = conn.command("currentsong")
    assert song.get("file") == "Alpha/02 noon.flac" and song.get("Pos") == "1"
    assert song.get("Id") == status.get("songid")
    assert abs(float(song.get("duration") or 0) - 2.5) < 0.01
    assert conn.command("pause 1").error is None
    assert conn.command("status").get("state") == "pause"
    assert conn.command("seekcur 1.5").error is None
    assert abs(float(conn.command("status").get("elapsed") or 0) - 1.5) < 0.06
    assert conn.command("seekcur -1").error is None
    assert abs(float(conn.command("status").get("elapsed") or 0) - 0.5) < 0.06
    assert conn.command("seek 2 1").error is None
    status = conn.command("status")
    assert status.get("song") == "2" and abs(float(status.get("elapsed") or 0) - 1.0) < 0.06
    assert conn.command("setvol 40").error is None
    assert conn.command("getvol").get("volume") == "40"
    assert conn.command("volume +5").error is None
    assert conn.command("status").get("volume") == "45"
    assert conn.command("setvol 101").error == "ACK [2@0] {setvol} Number too large: 101"
    assert conn.command("crossfade 3").error is None
    assert conn.command("status").get("xfade") == "3"
    conn.command("crossfade 0")
    for flag in ("random", "repeat", "single", "consume"):
        assert conn.command(f"{flag} 1").error is None
        assert conn.command("status").get(flag) == "1"
        conn.command(f"{flag} 0")
    conn.command("setvol 100")
    assert conn.command("stop").error is None
    assert conn.command("status").get("state") == "stop"


def test_command_lists(conn: MpdConnection) -> None:
    for line in ("command_list_ok_begin", "ping", "status", "command_list_end"):
        conn.send(line)
    reply = conn.read_reply()
    assert reply.error is None
    assert [k for k, _ in reply.pairs if k.startswith("list_OK")] == ["list_OK", "list_OK"]  # one per command
    assert reply.get("state") == "stop"
    conn.sock.sendall(b"command_list_ok_begin\nping\nping\ncommand_list_end\n")
    raw = b""
    while not raw.endswith(b"OK\n") or raw.count(b"\n") < 3:
        raw += conn.sock.recv(4096)
    assert raw == b"list_OK\nlist_OK\nOK\n"
    conn.sock.sendall(b"command_list_begin\nping\nfoo\nping\ncommand_list_end\n")
    assert conn.read_reply().error == 'ACK [5@1] {} unknown command "foo"'
    conn.sock.sendall(b"command_list_begin\nadd Beta\nplay 9\nclear\ncommand_list_end\n")
    assert conn.read_reply().error == "ACK [2@1] {play} Bad song index"
    assert conn.command("status").get("playlistlength") == "2"  # the list stopped before clear


def test_idle_wakes_on_changes_and_noidle_ends_it(auralis_mpd: AuralisMpd, conn: MpdConnection) -> None:
    conn.send("idle playlist mixer")
    other = auralis_mpd.connect()
    try:
        other.command("add loose.flac")
        assert conn.read_reply().pairs == [("changed", "playlist")]
        other.command("setvol 70")  # its reply comes after the change was published to every connection
        assert conn.command("idle mixer").pairs == [("changed", "mixer")]  # pending: answered at once
        conn.send("idle")
        conn.send("noidle")
        assert conn.read_reply().pairs == []
        conn.send("idle output")
        other.command("disableoutput 0")
        assert conn.read_reply().pairs == [("changed", "output")]
        other.command("enableoutput 0")
        conn.send("idle options")
        other.command("random 1")
        other.command("random 0")
        assert conn.read_reply().pairs == [("changed", "options")]
        other.command("setvol 100")
    finally:
        other.close()


def test_anything_but_noidle_while_idle_closes(auralis_mpd: AuralisMpd) -> None:
    c = auralis_mpd.connect()
    c.send("idle")
    c.send("status")
    assert c.file.readline() == b""  # closed, as MPD does
    c.close()


def test_empty_line_bad_command_word_and_overlong_line_close_the_connection(auralis_mpd: AuralisMpd) -> None:
    c = auralis_mpd.connect()
    c.send("")
    assert c.file.readline() == b""
    c.close()
    c = auralis_mpd.connect()
    c.send("pla-y")
    assert c.file.readline() == b"ACK [5@0] {} Invalid word character\n"
    assert c.file.readline() == b""
    c.close()
    c = auralis_mpd.connect()
    c.sock.sendall(b"ping " + b"x" * 5000 + b"\n")
    assert c.file.readline() == b""
    c.close()
    c = auralis_mpd.connect()
    assert c.command("ping").error is None  # the server is fine
    c.close()


def test_messages_and_the_auralis_channel(auralis_mpd: AuralisMpd, conn: MpdConnection) -> None:
    other = auralis_mpd.connect()
    try:
        assert conn.command("sendmessage chat hi").error == (
            "ACK [50@0] {sendmessage} nobody is subscribed to this channel")
        assert other.command("subscribe chat").error is None
        assert other.command("subscribe chat").error == "ACK [56@0] {subscribe} already subscribed to this channel"
        assert other.command('subscribe "a b"').error == "ACK [2@0] {subscribe} invalid channel name"
        assert "chat" in conn.command("channels").all("channel")
        assert conn.command('sendmessage chat "hello there"').error is None
        assert other.command("readmessages").pairs == [("channel", "chat"), ("message", "hello there")]
        assert other.command("readmessages").pairs == []
        assert other.command("subscribe auralis").error is None
        assert conn.command('sendmessage auralis "preset warm"').error is None
        with auralis_mpd.daemon.client() as rpc:
            assert rpc.call("status")["preset"] == "warm"
            assert conn.command('sendmessage auralis "intensity 0.5"').error is None
            assert rpc.call("status")["intensity"] == 0.5
        assert conn.command('sendmessage auralis "preset nope"').error.startswith("ACK [2@0] {sendmessage} unknown preset")
        conn.command("add Alpha")
        conn.command("play 0")
        other.send("idle message")
        assert other.read_reply().pairs == [("changed", "message")]

        def decision_posted() -> bool:
            return any(m.startswith("decision ") for m in other.command("readmessages").all("message"))

        wait_until(decision_posted, 30)
        conn.command('sendmessage auralis "preset adaptive"')
        conn.command('sendmessage auralis "intensity 1"')
    finally:
        other.close()


def test_commands_tagtypes_outputs_and_misc(auralis_mpd: AuralisMpd, conn: MpdConnection) -> None:
    commands = conn.command("commands").all("command")
    for name in ("status", "play", "idle", "noidle", "command_list_begin", "sendmessage", "tagtypes"):
        assert name in commands
    assert conn.command("notcommands").pairs == []
    assert "Artist" in conn.command("tagtypes").all("tagtype")
    assert conn.command("tagtypes clear").error is None
    assert conn.command("tagtypes").pairs == []
    assert conn.command("tagtypes enable Title artist").error is None
    assert conn.command("tagtypes").all("tagtype") == ["Artist", "Title"]
    conn.command("add loose.flac")
    song = conn.command("playlistinfo 0")
    assert song.get("Title") == "Loose" and song.get("Album") is None and song.get("Artist") == "Cy Dee"
    assert conn.command("tagtypes disable Bogus").error == "ACK [2@0] {tagtypes} Unknown tag type"
    assert conn.command("tagtypes all").error is None
    outputs = conn.command("outputs")
    assert outputs.get("outputid") == "0" and outputs.get("outputname") == "stream"
    assert outputs.get("plugin") == "stream" and outputs.get("outputenabled") == "1"
    assert conn.command("disableoutput 0").error is None
    with auralis_mpd.daemon.client() as rpc:  # the real output registry, as the control protocol sees it
        assert rpc.call("outputs")["outputs"][0]["enabled"] is False
    assert conn.command("outputs").get("outputenabled") == "0"
    assert conn.command("toggleoutput 0").error is None
    assert conn.command("outputs").get("outputenabled") == "1"
    assert conn.command("enableoutput 5").error == "ACK [50@0] {enableoutput} No such audio output"
    assert conn.command("replay_gain_mode album").error is None
    assert conn.command("replay_gain_status").get("replay_gain_mode") == "album"
    conn.command("replay_gain_mode auto")
    stats = conn.command("stats")
    assert stats.get("songs") == str(len(LIBRARY)) and stats.get("albums") == "3" and stats.get("artists") == "3"


def test_password_required_off_loopback(mpd_library: Path, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("a-token-of-sixteen-chars\n")
    port = free_port()
    daemon = DaemonProcess(tmp_path / "d", mpd_library,
                           ["--mpd-host", "0.0.0.0", "--mpd-port", str(port), "--token-file", str(token_file)])
    try:
        daemon.start()
        wait_until(lambda: greets(port))
        c = MpdConnection(port)
        assert c.command("status").error == 'ACK [4@0] {status} you don\'t have permission for "status"'
        assert c.command("ping").error is None
        assert "status" in c.command("notcommands").all("command")
        assert c.command("password wrong").error == "ACK [3@0] {password} incorrect password"
        assert c.command("password a-token-of-sixteen-chars").error is None
        assert c.command("status").get("state") is not None
        c.close()
    finally:
        daemon.stop()


def test_connection_limit_counted_at_accept(auralis_mpd: AuralisMpd) -> None:
    held = []
    try:
        for _ in range(100):
            held.append(auralis_mpd.connect())
        extra = socket.create_connection(("127.0.0.1", auralis_mpd.mpd_port), timeout=10)
        assert extra.recv(100) == b""  # refused: closed at once
        extra.close()
    finally:
        for c in held:
            c.close()
    wait_until(lambda: greets(auralis_mpd.mpd_port))
