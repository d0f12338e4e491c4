"""Differential test: Debian's real MPD and Auralis on the same generated library, the same scripted
sessions per subsystem, replies compared field by field (tests/auralisd/mpd/differential.py).

Every difference is either fixed or listed in docs/mpd.md ("Differences from MPD") and encoded
in the rules below, so a new difference fails here.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .conftest import AuralisMpd, RealMpd
from .differential import DEFAULT_RULES, Rules, Side, run_script


@pytest.fixture
def sides(real_mpd: RealMpd, auralis_mpd: AuralisMpd) -> Iterator[tuple[Side, Side]]:
    mpd, auralis = Side("mpd", real_mpd.connect()), Side("auralis", auralis_mpd.connect())
    for side in (mpd, auralis):
        for line in ("stop", "clear", "random 0", "repeat 0", "single 0", "consume 0", "crossfade 0", "setvol 100",
                     "tagtypes all"):
            side.run(line)
    yield mpd, auralis
    for side in (mpd, auralis):
        side.run("stop")
        side.run("clear")
        side.conn.close()


def check(sides: tuple[Side, Side], script: list[str], rules: Rules = DEFAULT_RULES) -> None:
    problems = run_script(*sides, script, rules)
    assert problems == [], "\n".join(problems)


def test_queue_session(sides: tuple[Side, Side]) -> None:
    check(sides, [
        "add Alpha",
        "add loose.flac",
        'addid "Beta/01 sea.flac" 1',
        "playlistinfo",
        "status",
        "move 0 3",
        "playlistinfo",
        "swap 0 1",
        "playlistinfo 1",
        "playlistinfo 1:3",
        "delete 2",
        "playlistinfo",
        "playlistid {id:loose.flac}",
        "moveid {id:loose.flac} 0",
        "playlistinfo",
        "deleteid {id:loose.flac}",
        "playlist",
        "prio 5 0:2",
        "playlistinfo",
        "prioid 9 {id:Alpha/03 dusk.flac}",
        "playlistinfo",
        "add Beta",
        "delete 1:3",
        "playlistinfo",
        "status",
        "clear",
        "playlistinfo",
        "status",
    ])


def test_queue_errors(sides: tuple[Side, Side]) -> None:
    check(sides, [
        "add Alpha",
        "delete 7",
        "delete 2:9",
        "move 5 0",
        "move 0 9",
        "swap 0 9",
        "playlistinfo 9",
        "playlistid 9999",
        "deleteid 9999",
        "moveid 9999 0",
        "add nope",
        "add nope/deeper.flac",
        "prio 300 0",
        "prio -1 0",
        "play x",
        "play 1 2",
        "seek",
        "seek 0 x",
        "random 2",
        "setvol 101",
        "setvol x",
        "idle foo",
        "foo",
        'play "1',
        'play "1"x',
        "play 'x'",
        "config",
        "next",
        "previous",
        "seekcur 1",
        "move 0 3",
        "move 0 -1",
        "delete 3",
        "delete 5:9",
        "playlistinfo 2:9",
        "playlistinfo -1",
        "shuffle 0:9",
        "prio 1 1:9",
        "setvol -1",
        "clear",
        "playlistinfo 0",
        "delete -1",
        "seek 9 1",
        "seekid 9999 1",
        "sendmessage nobody here",
        'subscribe "a b"',
        "unsubscribe never",
        "tagtypes enable Bogus",
        "tagtypes frobnicate",
    ])


def test_player_session(sides: tuple[Side, Side]) -> None:
    check(sides, [
        "add Alpha",
        "play 1",
        "currentsong",
        "pause 1",
        "seekcur 1",
        "status",
        "seek 2 0.5",
        "status",
        "currentsong",
        "previous",
        "currentsong",
        "stop",
        "status",
        "currentsong",
        "playid {id:Alpha/03 dusk.flac}",
        "pause 1",
        "status",
        "stop",
        "status",
    ])


def test_options_and_mixer_session(sides: tuple[Side, Side]) -> None:
    check(sides, [
        "random 1",
        "repeat 1",
        "single 1",
        "consume 1",
        "crossfade 3",
        "status",
        "setvol 40",
        "getvol",
        "volume 5",
        "status",
        "random 0",
        "repeat 0",
        "single 0",
        "consume 0",
        "crossfade 0",
        "status",
    ])


def test_connection_and_message_session(sides: tuple[Side, Side]) -> None:
    check(sides, [
        "ping",
        "tagtypes clear",
        "tagtypes",
        "tagtypes enable Artist Title Album",
        "tagtypes",
        "add loose.flac",
        "playlistinfo",
        "tagtypes disable album",
        "playlistinfo",
        "tagtypes all",
        "subscribe chat",
        "subscribe chat",
        "channels",
        "sendmessage chat hi",
        'sendmessage chat "two words"',
        "readmessages",
        "readmessages",
        "unsubscribe chat",
        "channels",
        "stats",
    ], Rules(presence=DEFAULT_RULES.presence | {"tagtype"}, ignore=DEFAULT_RULES.ignore, close=DEFAULT_RULES.close))


@pytest.mark.parametrize("line", ["pla-y", "Play", ""])
def test_bad_command_words_close_the_connection(real_mpd: RealMpd, auralis_mpd: AuralisMpd, line: str) -> None:
    answers = []
    for server in (real_mpd, auralis_mpd):
        conn = server.connect()
        conn.send(line)
        answers.append(conn.file.readline())
        assert conn.file.readline() == b""  # then closed
        conn.close()
    assert answers[0] == answers[1]


def test_command_lists(sides: tuple[Side, Side]) -> None:
    mpd, auralis = sides
    for side in sides:
        side.conn.sock.sendall(b"command_list_ok_begin\nadd Beta\nstatus\nplaylistinfo\ncommand_list_end\n")
    replies = [side.conn.read_reply() for side in sides]
    keys = [sorted(k for k, _ in reply.pairs if k not in ("playlist", "Format")) for reply in replies]
    assert keys[0] == keys[1]  # (MPD writes a song's tags in the file's order, Auralis in a fixed one)
    for side in sides:
        side.conn.sock.sendall(b"command_list_begin\nping\nplay 9\nclear\ncommand_list_end\n")
    errors = [side.conn.read_reply().error for side in sides]
    assert errors[0] == errors[1] == "ACK [2@1] {play} Bad song index"
    check(sides, ["status"])


def test_idle_session(real_mpd: RealMpd, auralis_mpd: AuralisMpd) -> None:
    """The same changes wake the same subsystems on both servers."""
    answers = []
    for server in (real_mpd, auralis_mpd):
        waiter, actor = server.connect(), server.connect()
        try:
            actor.command("clear")
            actor.command("setvol 100")
            waiter.command("idle")  # drain what is pending from the setup
            got = []
            for subsystems, change in [
                ("playlist", "add loose.flac"),
                ("player", "play 0"),
                ("mixer", "setvol 90"),
                ("options", "random 1"),
                ("options", "random 0"),
                ("player playlist", "stop"),
                ("playlist", "clear"),
                ("subscription message", "subscribe news"),
            ]:
                waiter.send(f"idle {subsystems}")
                actor.command(change)
                got.append(waiter.read_reply().pairs)
            waiter.send("idle")
            waiter.send("noidle")
            got.append(waiter.read_reply().pairs)
            answers.append(got)
        finally:
            actor.command("setvol 100")
            waiter.close()
            actor.close()
    assert answers[0] == answers[1]
