"""python-mpd2 (from PyPI), unmodified, against Auralis's MPD port: its client API incl. idle and command lists."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

mpd = pytest.importorskip("mpd")  # python-mpd2, in the test extras

from .conftest import AuralisMpd  # noqa: E402


@pytest.fixture
def client(auralis_mpd: AuralisMpd) -> Iterator[mpd.MPDClient]:
    c = mpd.MPDClient()
    c.timeout = 20
    c.connect("127.0.0.1", auralis_mpd.mpd_port)
    c.clear()
    c.stop()
    yield c
    c.setvol(100)
    c.clear()
    c.close()
    c.disconnect()


def test_version_status_and_queue(client: mpd.MPDClient) -> None:
    assert client.mpd_version == "0.23.0"
    client.add("Beta")
    song_id = client.addid("loose.flac", 0)
    songs = client.playlistinfo()
    assert [s["file"] for s in songs] == ["loose.flac", "Beta/01 sea.flac", "Beta/02 sky.flac"]
    assert songs[0]["id"] == song_id and songs[2]["title"] == 'Sky "quoted"'
    assert client.playlistid(song_id)[0]["file"] == "loose.flac"
    client.playid(song_id)
    status = client.status()
    assert status["state"] == "play" and status["songid"] == song_id and status["playlistlength"] == "3"
    assert client.currentsong()["title"] == "Loose"
    client.setvol(55)
    assert client.status()["volume"] == "55"
    client.moveid(song_id, 2)
    assert client.playlistinfo(2)[0]["id"] == song_id
    client.prioid(10, song_id)
    assert client.playlistid(song_id)[0]["prio"] == "10"
    client.deleteid(song_id)
    assert len(client.playlistinfo()) == 2
    with pytest.raises(mpd.CommandError) as caught:
        client.deleteid(song_id)
    assert "No such song" in str(caught.value)
    assert client.outputs()[0]["outputname"] == "stream"
    assert int(client.stats()["songs"]) == 6


def test_command_lists(client: mpd.MPDClient) -> None:
    client.command_list_ok_begin()
    client.add("Alpha")
    client.status()
    client.playlistinfo()
    results = client.command_list_end()
    assert results[1]["playlistlength"] == "3"
    assert [s["title"] for s in results[2]] == ["Dawn", "Noon", "Dusk"]
    client.command_list_ok_begin()
    client.ping()
    client.play(99)
    with pytest.raises(mpd.CommandError) as caught:
        client.command_list_end()
    assert "Bad song index" in str(caught.value)
    client.ping()  # the connection is fine after a failed list


def test_idle_and_noidle(client: mpd.MPDClient, auralis_mpd: AuralisMpd) -> None:
    other = mpd.MPDClient()
    other.timeout = 20
    other.connect("127.0.0.1", auralis_mpd.mpd_port)
    try:
        with ThreadPoolExecutor(1) as pool:
            waiting = pool.submit(client.idle, "playlist", "mixer")
            other.add("loose.flac")
            assert waiting.result(timeout=10) == ["playlist"]
            other.setvol(30)
            assert client.idle("mixer") == ["mixer"]  # pending since: answered at once
            client.subscribe("news")
            waiting = pool.submit(client.idle, "message")
            other.sendmessage("news", "extra")
            assert waiting.result(timeout=10) == ["message"]
            assert client.readmessages() == [{"channel": "news", "message": "extra"}]
            assert "news" in other.channels()
    finally:
        other.close()
        other.disconnect()


def test_errors_map_to_command_errors(client: mpd.MPDClient) -> None:
    with pytest.raises(mpd.CommandError, match=r"\[2@0\] \{setvol\} Number too large: 200"):
        client.setvol(200)
    with pytest.raises(mpd.CommandError, match=r"\[50@0\] \{add\} No such directory"):
        client.add("missing")
    client.tagtypes("clear")
    client.tagtypes("enable", "Title")
    client.add("loose.flac")
    song = client.playlistinfo()[0]
    assert song["title"] == "Loose" and "artist" not in song
    client.tagtypes("all")
