"""The MPD database and stored-playlist commands: against the real MPD on the same files, and
through Debian's ``mpc`` and python-mpd2 (tests/auralisd/mpd/conftest.py starts both servers).

Field-by-field: song blocks must agree on every value both send (tags, durations, URIs,
Last-Modified); the differences listed in docs/mpd.md ("Database: differences") are taken
out by :data:`KNOWN_DIFFERENCES`, each with its reason there.
"""

from __future__ import annotations

import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from tests.helpers import require_tool

from .conftest import LIBRARY, MpdConnection, Reply, mpd_env, wait_until

# Fields we do not compare, with the reason in docs/mpd.md: Format (the decoder's sample format,
# which Auralis does not report) and Time (integer seconds: compared through `duration` instead).
KNOWN_DIFFERENCES = frozenset({"Format", "Time"})
ENTRY_KEYS = ("file", "directory", "playlist")

COMMANDS = [
    "lsinfo", "lsinfo Alpha", "lsinfo \"Beta/02 sky.flac\"", "lsinfo nosuch",
    "listall", "listall Beta", "listall loose.flac", "listallinfo", "listallinfo Alpha",
    "list album", "list album group artist", "list album group date group genre", "list genre", "list file",
    "list title \"(artist == 'Bo Carter')\"", "list date artist \"Bo Carter\"", "list album \"Ann Arbor\"",
    "list composer", "list artistsort", "list albumartist", "list nosuch",
    "find artist \"Ann Arbor\"", "find Artist \"ann arbor\"", "find \"(genre != 'Rock')\"", "find album Alpha track 2",
    "find \"((artist == 'Ann Arbor') AND (!(title == 'Noon')))\"", "find \"(title contains 'o')\"",
    "find \"(title =~ '^S')\"", "find \"(title !~ '^S')\"", "find \"(base 'Alpha')\"", "find file loose.flac",
    "find \"(file == 'Beta/01 sea.flac')\"", "find \"(modified-since '0')\"", "find \"(title == 'Sky \\\\\\\"quoted\\\\\\\"')\"",
    "find \"(base 'Alpha')\" sort -Title", "find \"(base 'Alpha')\" sort Title window 1:3", "find any Loose",
    "search title s", "search artist ANN", "search any beta", "search \"(title contains 'SK')\"", "search title xyz",
    "count artist \"Ann Arbor\"", "count group genre", "count \"(title =~ '^S')\"", "count genre Nope",
    "find nosuch x", "find artist", "find \"(artist == x)\"", "find \"(artist = 'x')\"", "find \"(artist == 'x'\"",
    "search \"(title =~ '(')\"", "count \"(base 'nosuch')\"", "find base nosuch",
    "readpicture loose.flac 0", "albumart loose.flac 0", "albumart nosuch.flac 0",
]  # fmt: skip


def entries(reply: Reply) -> list[dict[str, str]]:
    """The reply as entries (a song, a folder, a playlist, or other lines), the known differences removed."""
    out: list[dict[str, str]] = []
    current: dict[str, str] | None = None
    for key, value in reply.pairs:
        if key in KNOWN_DIFFERENCES:
            continue
        if key in ENTRY_KEYS or current is None or key in current:
            current = {}
            out.append(current)
        current[key] = value
    for entry in out:
        if "directory" in entry:  # a folder's mtime changes when .25d sidecars are written beside the audio:
            entry.pop("Last-Modified", None)  # we report it now, MPD as of its last update (docs/mpd.md)
    return out


@pytest.fixture(scope="module")
def both(auralis_mpd, real_mpd):
    ours, theirs = auralis_mpd.connect(), real_mpd.connect()
    yield ours, theirs
    ours.close()
    theirs.close()


@pytest.mark.parametrize("command", COMMANDS)
def test_database_commands_agree_with_the_real_mpd(both: tuple[MpdConnection, MpdConnection], command: str) -> None:
    ours, theirs = both
    mine, reference = ours.command(command), theirs.command(command)
    # errors: the same code and the same index; messages may be worded differently
    assert (mine.error or "")[:12] == (reference.error or "")[:12], (mine.error, reference.error)
    assert entries(mine) == entries(reference)


def _png(width: int = 2, height: int = 2) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def test_albumart_in_chunks_and_readpicture_with_python_mpd2(auralis_mpd, real_mpd, mpd_library: Path) -> None:
    """python-mpd2 reassembles the chunks; every chunk agrees with the real MPD byte for byte."""
    import mpd  # python-mpd2

    picture = _png(64, 64) + b"\x00" * 20_000  # larger than one 8 KiB chunk (trailing bytes are still the file)
    (mpd_library / "Alpha" / "cover.png").write_bytes(picture)
    try:
        client = mpd.MPDClient()
        client.connect("127.0.0.1", auralis_mpd.mpd_port)
        try:
            art = client.albumart("Alpha/01 dawn.flac")
            assert art["binary"] == picture  # reassembled from 3 chunks
            assert client.readpicture("Alpha/01 dawn.flac") == {}  # nothing embedded
            with pytest.raises(mpd.CommandError, match="No file exists"):
                client.albumart("loose.flac")
        finally:
            client.disconnect()
        ours, theirs = auralis_mpd.connect(), real_mpd.connect()
        try:
            for offset in (0, 8192, len(picture) - 5, len(picture)):
                assert ours.command(f'albumart "Alpha/02 noon.flac" {offset}').pairs == theirs.command(
                    f'albumart "Alpha/02 noon.flac" {offset}'
                ).pairs
            # binarylimit: a client's own chunk size (M.A.L.P. and Cantata set one), refused as MPD refuses it
            for line in ("binarylimit 10", "binarylimit 63", "binarylimit abc", "binarylimit -5", "binarylimit ''",
                         "binarylimit 8400897", "binarylimit 99999999999999999999", "binarylimit +100",
                         "binarylimit 8400896", "binarylimit 64", "albumart \"Alpha/02 noon.flac\" 0",
                         "binarylimit 1000", "albumart \"Alpha/02 noon.flac\" 999", "readpicture loose.flac 0"):
                mine, real = ours.command(line), theirs.command(line)
                assert (mine.pairs, mine.error) == (real.pairs, real.error), line
        finally:
            ours.close()
            theirs.close()
    finally:
        (mpd_library / "Alpha" / "cover.png").unlink()


def _mpc(port: int, *args: str) -> str:
    mpc = require_tool("mpc")
    done = subprocess.run([mpc, *args], env=mpd_env(port), capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_mpc_browses_and_searches_like_against_mpd(auralis_mpd, real_mpd) -> None:
    for args in (("ls",), ("ls", "Alpha"), ("listall",), ("search", "title", "s"), ("find", "artist", "Bo Carter"),
                 ("list", "album"), ("list", "album", "group", "artist"), ("search", "any", "LOOSE"),
                 ("find", "(genre == 'Jazz')"), ("-f", "%artist% - %title% [%date%]", "search", "album", "alpha")):  # fmt: skip
        assert _mpc(auralis_mpd.mpd_port, *args) == _mpc(real_mpd.port, *args), args
    stats = _mpc(auralis_mpd.mpd_port, "stats")
    assert "Artists:      3" in stats and "Albums:       3" in stats and f"Songs:        {len(LIBRARY)}" in stats


def test_mpc_findadd_update_and_stored_playlists(auralis_mpd) -> None:
    port = auralis_mpd.mpd_port
    _mpc(port, "clear")
    _mpc(port, "findadd", "album", "Alpha")
    assert _mpc(port, "playlist").splitlines() == ["Ann Arbor - Dawn", "Ann Arbor - Noon", "Ann Arbor - Dusk"]
    _mpc(port, "searchadd", "genre", "jaz")
    assert len(_mpc(port, "playlist").splitlines()) == 5
    _mpc(port, "save", "evening")
    assert _mpc(port, "lsplaylists").splitlines() == ["evening"]
    assert _mpc(port, "playlist", "evening").splitlines()[:1] == ["Ann Arbor - Dawn"]
    _mpc(port, "clear")
    _mpc(port, "load", "evening")
    assert len(_mpc(port, "playlist").splitlines()) == 5
    conn = auralis_mpd.connect()
    try:
        assert conn.command("playlistadd evening loose.flac").error is None
        assert conn.command("save evening").error == "ACK [56@0] {save} Playlist already exists"
        assert conn.command("load nosuch").error == "ACK [50@0] {load} No such playlist"
        assert conn.command("playlistdelete evening 99").error == "ACK [2@0] {playlistdelete} Bad song index"
        assert conn.command("playlistmove evening 5 0").error is None
        assert conn.command("listplaylist evening").pairs[0] == ("file", "loose.flac")
        assert conn.command("playlistdelete evening 0:2").error is None
        listed = conn.command("listplaylistinfo evening")
        assert len(listed.all("file")) == 4 and listed.get("Title") == "Noon"
        assert conn.command("rename evening night").error is None
        assert conn.command("save night append").error is None  # MPD 0.24's save modes
        assert len(conn.command("listplaylist night").all("file")) == 4 + 5
        assert conn.command("playlistclear night").error is None and conn.command("listplaylist night").pairs == []
        assert conn.command("rm night").error is None
        assert conn.command("listplaylists").pairs == []
        # update of one folder: a job id, and `updating_db` disappears from status when done
        job = conn.command("update Beta").get("updating_db")
        assert job is not None and int(job) >= 1
        wait_until(lambda: conn.command("status").get("updating_db") is None)
        assert conn.command("update nosuch").error == "ACK [2@0] {update} Malformed path"
    finally:
        conn.close()


def test_idle_reports_stored_playlist_and_database_changes(auralis_mpd) -> None:
    watcher, actor = auralis_mpd.connect(), auralis_mpd.connect()
    try:
        watcher.send("idle stored_playlist")
        actor.command("playlistclear idle-test")
        assert watcher.read_reply().pairs == [("changed", "stored_playlist")]
        watcher.send("idle database")
        actor.command("update")
        assert watcher.read_reply().pairs == [("changed", "database")]
        actor.command("rm idle-test")
    finally:
        watcher.close()
        actor.close()


PLAYLIST_SESSION = [
    "clear", "add Alpha", "add loose.flac", "save p1", "save p1", "listplaylists", "listplaylist p1",
    "listplaylistinfo p1", "playlistadd p1 \"Beta/01 sea.flac\"", "playlistmove p1 4 0", "listplaylist p1",
    "playlistdelete p1 1", "listplaylist p1", "playlistdelete p1 9", "rename p1 p2", "rename nosuch p3",
    "listplaylist p1", "clear", "load p2 0:2", "playlistinfo", "load p2", "playlistclear p2", "listplaylist p2",
    "playlistadd p3 nosuch.flac", "rm p2", "rm p2", "listplaylists", "load nosuch", "listplaylistinfo nosuch",
    "save bad/name", "clear",
]  # fmt: skip


@pytest.fixture(scope="module")
def real_mpd_playlists(mpd_library: Path, tmp_path_factory: pytest.TempPathFactory):
    """The real MPD with a playlist_directory (stored playlists are off without one)."""
    from .conftest import RealMpd

    root = tmp_path_factory.mktemp("real-mpd-playlists")
    (root / "playlists").mkdir()
    mpd = RealMpd(root, mpd_library, extra_conf=f'playlist_directory "{root / "playlists"}"\n')
    try:
        yield mpd.start()
    finally:
        mpd.stop()


def test_a_stored_playlist_session_agrees_with_the_real_mpd(auralis_mpd, real_mpd_playlists) -> None:
    """The same session on both: every reply field by field (a playlist's Last-Modified aside: the
    two servers saved it at different instants; and queue song ids, which count every add of the
    server's life), every error with MPD's code."""
    ours, theirs = auralis_mpd.connect(), real_mpd_playlists.connect()
    try:
        for command in PLAYLIST_SESSION:
            mine, reference = ours.command(command), theirs.command(command)
            assert (mine.error or "")[:12] == (reference.error or "")[:12], (command, mine.error, reference.error)
            def comparable(reply: Reply) -> list[dict[str, str]]:
                return [{k: v for k, v in e.items() if k != "Id" and not ("playlist" in e and k == "Last-Modified")}
                        for e in entries(reply)]  # fmt: skip

            assert comparable(mine) == comparable(reference), command
    finally:
        ours.close()
        theirs.close()
