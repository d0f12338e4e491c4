"""Stored playlists and tag queries against a real auralisd process, through auralisctl and msgpack.

One daemon serves the module: a tagged library (tests/tagged_library.py) plus a file whose name
is not UTF-8. Each test names its own playlists.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from clients import auralisctl
from tests.service.daemon_process import rpc, start_daemon
from tests.tagged_library import SONGS, Song, write_song, write_tagged_library

LATIN1_NAME = b"caf\xe9.flac"  # not UTF-8


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("playlists")
    music = tmp / "music"
    paths = write_tagged_library(music)
    odd = write_song(music, Song("Odd/x.flac", "Café", "Odd", "Odd", 1, "1999", "Folk"), 9)
    odd_bytes = os.fsencode(odd.parent) + b"/" + LATIN1_NAME
    os.rename(odd, odd_bytes)
    process = start_daemon(tmp, music)
    process.music = music  # type: ignore[attr-defined]
    process.paths = paths  # type: ignore[attr-defined]
    process.odd = os.fsdecode(odd_bytes)  # type: ignore[attr-defined]
    deadline = time.monotonic() + 60
    while process.call("status")["scan"]["tracks"] < len(SONGS) + 1:
        assert time.monotonic() < deadline, process.log()
        time.sleep(0.05)
    yield process
    assert process.stop() == 0, process.log()


@pytest.fixture
def ctl(daemon, capsys):
    def run(*args: str) -> tuple[int, str, str]:
        code = auralisctl.main(["--socket", daemon.socket_path, *args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def _queue(daemon, paths: list[str]) -> None:
    daemon.call("stop")
    daemon.call("queue.clear")
    daemon.call("queue.add", {"paths": paths})


def _queue_paths(daemon) -> list[str]:
    return [item["path"] for item in daemon.call("queue.list")["items"]]


# ---------------------------------------------------------------- stored playlists
def test_save_load_and_edit_a_playlist_with_auralisctl(daemon, ctl) -> None:
    wire_odd = auralisctl.path_to_wire(daemon.odd)
    hunter, joga = str(daemon.paths["Hunter"]), str(daemon.paths["Jóga"])
    _queue(daemon, [hunter, wire_odd, joga])
    assert ctl("save", "road trip")[0] == 0
    code, _, err = ctl("save", "road trip")
    assert code == 1 and "already exists (exists)" in err  # create mode never overwrites
    # the file: extended M3U in UTF-8, the non-UTF-8 name in the wire escaping
    text = (daemon.state_dir / "playlists" / "road trip.m3u8").read_text("utf-8")
    assert text.splitlines()[0] == "#EXTM3U" and "#EXTINF:1,Björk - Hunter" in text
    assert "caf\\xE9.flac" in text
    assert ctl("lsplaylists")[1].splitlines() == ["road trip"]
    assert ctl("playlist", "road trip")[1].splitlines() == [hunter, wire_odd, joga]

    assert ctl("playlist", "move", "road trip", "3", "1")[0] == 0
    assert ctl("playlist", "del", "road trip", "2")[0] == 0
    assert ctl("playlist", "add", "road trip", str(daemon.paths["Song A"]))[0] == 0
    assert ctl("playlist", "show", "road trip")[1].splitlines() == [joga, wire_odd, str(daemon.paths["Song A"])]

    daemon.call("queue.clear")
    code, out, _ = ctl("load", "road trip", "--range", "2:3")
    assert code == 0 and "added 2 tracks" in out
    assert _queue_paths(daemon) == [wire_odd, str(daemon.paths["Song A"])]
    ctl("load", "road trip", "--pos", "1")
    assert _queue_paths(daemon)[:3] == [joga, wire_odd, str(daemon.paths["Song A"])]

    assert ctl("playlist", "rename", "road trip", "trip")[0] == 0
    assert ctl("lsplaylists")[1].splitlines() == ["trip"]
    assert ctl("playlist", "rm", "trip")[0] == 0
    code, _, err = ctl("playlist", "show", "trip")
    assert code == 1 and "(not_found)" in err


def test_save_modes_and_bad_names(daemon) -> None:
    _queue(daemon, [str(daemon.paths["Hunter"])])
    rpc(daemon.socket_path, "playlist.save", {"name": "modes"})
    rpc(daemon.socket_path, "playlist.save", {"name": "modes", "mode": "append"})
    assert len(rpc(daemon.socket_path, "playlist.show", {"name": "modes"})["entries"]) == 2
    rpc(daemon.socket_path, "playlist.save", {"name": "modes", "mode": "replace"})
    assert len(rpc(daemon.socket_path, "playlist.show", {"name": "modes"})["entries"]) == 1
    for bad in ("", "a/b", "..", ".hidden", "x" * 201, "line\nbreak"):
        with pytest.raises(RuntimeError, match="invalid_params"):
            rpc(daemon.socket_path, "playlist.save", {"name": bad})
    with pytest.raises(RuntimeError, match="not_found"):
        rpc(daemon.socket_path, "playlist.delete", {"name": "modes", "positions": [5]})
    assert len(rpc(daemon.socket_path, "playlist.show", {"name": "modes"})["entries"]) == 1  # unchanged
    rpc(daemon.socket_path, "playlist.remove", {"name": "modes"})


def test_an_entry_whose_file_left_the_library_stays(daemon, tmp_path) -> None:
    gone = write_song(daemon.music, Song("Gone/g.flac", "Gone", "G", "G", 1, "2000", "Pop"), 11)
    rpc(daemon.socket_path, "playlist.add", {"name": "keep", "paths": [str(gone), str(daemon.paths["Hunter"])]})
    gone.unlink()
    gone.parent.rmdir()  # (an empty folder keeps its tracks: it may be an unmounted drive)
    rpc(daemon.socket_path, "library.scan", {"path": str(gone.parent.parent)})
    deadline = time.monotonic() + 30
    while rpc(daemon.socket_path, "library.find", {"tags": {"title": "Gone"}})["total"]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    shown = rpc(daemon.socket_path, "playlist.show", {"name": "keep"})["entries"]
    assert [e["path"] for e in shown] == [str(gone), str(daemon.paths["Hunter"])]
    assert shown[0]["track"] is None and shown[1]["track"]["title"] == "Hunter"
    daemon.call("queue.clear")
    assert rpc(daemon.socket_path, "playlist.load", {"name": "keep"})["missing"] == 1
    assert _queue_paths(daemon) == [str(daemon.paths["Hunter"])]
    rpc(daemon.socket_path, "playlist.remove", {"name": "keep"})


def test_watchers_see_stored_playlist_changes(daemon, ctl) -> None:
    import socket

    import msgpack

    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(30)
        sock.connect(daemon.socket_path)
        sock.sendall(msgpack.packb([0, 1, "subscribe", {"events": ["stored_playlist"]}]))
        unpacker = msgpack.Unpacker(raw=False)

        def next_message():
            while True:
                for message in unpacker:
                    return message
                unpacker.feed(sock.recv(65536))

        assert next_message()[3] is True
        rpc(daemon.socket_path, "playlist.clear", {"name": "watched"})
        assert next_message() == [2, "stored_playlist", {"name": "watched", "change": "modified"}]
        rpc(daemon.socket_path, "playlist.remove", {"name": "watched"})
        assert next_message() == [2, "stored_playlist", {"name": "watched", "change": "deleted"}]


# ---------------------------------------------------------------- queries
def test_find_search_list_and_count(daemon, ctl) -> None:
    code, out, _ = ctl("find", "artist", "Björk")
    assert code == 0 and out.splitlines() == [str(daemon.paths["Hunter"]), str(daemon.paths["Jóga"])]
    assert ctl("find", "artist", "björk")[1] == ""  # find is exact
    assert ctl("search", "artist", "BJORK")[1].splitlines() == [str(daemon.paths["Hunter"]), str(daemon.paths["Jóga"])]
    assert ctl("search", "title", "song")[1].count("\n") == 2
    assert ctl("find", "(genre != 'Pop')")[1].count("\n") == 4  # Electronic x2, Rock, Folk
    assert ctl("list", "album", "--group", "albumartist")[1].splitlines() == [
        "Beta\tSolo", "Björk\tHomogenic", "Odd\tOdd", "Various\tMix",
    ]  # fmt: skip
    assert ctl("list", "date", "artist", "Beta")[1].splitlines() == ["2001", "2005"]
    counted = rpc(daemon.socket_path, "library.count", {"tags": {"artist": "Björk"}})
    assert counted == {"songs": 2, "playtime_s": pytest.approx(2.5, abs=0.01)}
    code, _, err = ctl("find", "(title =~ '(')")
    assert code == 1 and "bad filter" in err and "(invalid_params)" in err
    code, _, err = ctl("find", "nosuchtag", "x")
    assert code == 2 and "unknown tag" in err


def test_stats_and_update_of_one_folder(daemon, ctl) -> None:
    stats = json.loads(ctl("stats", "--json")[1])
    assert stats["songs"] >= len(SONGS) + 1 and stats["db_update_s"] > 1e9 and stats["uptime_s"] > 0
    assert "Songs:" in ctl("stats")[1]
    # a new file in one folder and one in another: updating the first finds only its own
    inside = write_song(daemon.music, Song("Beta/Solo/02 New.flac", "New One", "Beta", "Solo", 2, "2005", "Rock"), 12)
    outside = write_song(daemon.music, Song("Later/l.flac", "Later", "L", "L", 1, "2005", "Rock"), 13)
    code, out, _ = ctl("update", str(daemon.music / "Beta"), "--wait")
    assert code == 0 and "scan complete" in out
    assert rpc(daemon.socket_path, "library.find", {"tags": {"title": "New One"}})["total"] == 1
    assert rpc(daemon.socket_path, "library.find", {"tags": {"title": "Later"}})["total"] == 0
    assert ctl("update", "--wait")[0] == 0
    assert rpc(daemon.socket_path, "library.find", {"tags": {"title": "Later"}})["total"] == 1
    inside.unlink()
    outside.unlink()
    assert ctl("update", "--wait")[0] == 0


def test_current_with_a_format_string(daemon, ctl) -> None:
    _queue(daemon, [str(daemon.paths["Song A"])])
    daemon.call("play")
    daemon.call("pause")
    assert ctl("current")[1] == "Alpha - Song A\n"
    assert ctl("current", "--format", "%title% [(%album%)] [%composer%]#%position%")[1] == "Song A (Mix) #1\n"
    assert ctl("current", "-f", "[%composer%|%albumartist%]: %title%")[1] == "Various: Song A\n"
    daemon.call("stop")
    assert ctl("current")[1] == ""


def test_a_path_given_back_works(daemon: object, tmp_path: Path) -> None:
    """The non-UTF-8 file is found by its wire path through find's file tag."""
    rel = auralisctl.path_to_wire(os.path.relpath(daemon.odd, daemon.music))  # type: ignore[attr-defined]
    found = rpc(daemon.socket_path, "library.find", {"tags": {"file": rel}})  # type: ignore[attr-defined]
    assert found["total"] == 1 and found["tracks"][0]["title"] == "Café"
