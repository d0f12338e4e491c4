"""The stored-playlist store (actors/playlists.py): file format, names, atomic writes, events."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from auralisd.actors.events import EventHub
from auralisd.actors.playlists import (
    PlaylistEntry,
    PlaylistStore,
    check_name,
    format_playlist,
    parse_playlist,
)
from auralisd.errors import RpcError

LATIN1 = os.fsdecode(b"/music/Bj\xf6rk/caf\xe9.flac")  # a path that is not UTF-8


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[PlaylistStore]:
    s = PlaylistStore(str(tmp_path / "playlists"), EventHub())
    async with trio.open_nursery() as nursery:
        await nursery.start(s.run)
        yield s
        nursery.cancel_scope.cancel()


def test_format_and_parse_round_trip_every_path() -> None:
    entries = [PlaylistEntry("/music/a\\b.flac", "12,A - B"), PlaylistEntry(LATIN1), PlaylistEntry("/m/#1.flac")]
    data = format_playlist(entries)
    assert data.decode("utf-8").splitlines() == [
        "#EXTM3U", "#EXTINF:12,A - B", "/music/a\\\\b.flac", "/music/Bj\\xF6rk/caf\\xE9.flac", "/m/#1.flac",
    ]  # fmt: skip
    assert parse_playlist(data) == entries


def test_a_playlist_from_another_program_is_read_as_it_is() -> None:
    data = b"\xef\xbb\xbf#EXTM3U\r\n\r\n# a comment\r\nrelative/song.mp3\r\n/raw/caf\xe9.flac\n"
    assert parse_playlist(data) == [PlaylistEntry("relative/song.mp3"), PlaylistEntry(os.fsdecode(b"/raw/caf\xe9.flac"))]


@pytest.mark.parametrize("name", ["", "a/b", ".", "..", ".x", "nul\x00", "new\nline", "é" * 101, "\udce9"])
def test_names_that_cannot_be_playlists(name: str) -> None:
    with pytest.raises(RpcError) as caught:
        check_name(name)
    assert caught.value.code == "invalid_params"


def test_names_users_type_are_fine() -> None:
    for name in ("road trip", "Björk's best", "x" * 200, "a.b", "100%"):
        assert check_name(name) == name


async def test_writes_are_atomic_and_leftovers_are_cleared(store: PlaylistStore, tmp_path: Path) -> None:
    await store.save("keep", [PlaylistEntry("/m/1.flac")])
    folder = Path(store.folder)
    assert os.stat(folder / "keep.m3u8").st_mode & 0o777 == 0o600
    assert os.stat(folder).st_mode & 0o777 == 0o700

    # a write that fails half-way (here: too many entries) leaves the old playlist, and no temporary file
    with pytest.raises(RpcError):
        await store.add("keep", [PlaylistEntry(f"/m/{i}.flac") for i in range(70_000)])
    assert [e.path for e in await store.entries("keep")] == ["/m/1.flac"]
    assert sorted(os.listdir(folder)) == ["keep.m3u8"]

    # a temporary file a crash left behind is removed at the next start; the playlist is intact
    (folder / ".keep.m3u8.0badc0de.tmp").write_text("#EXTM3U\n/m/half")
    again = PlaylistStore(str(folder), EventHub())
    async with trio.open_nursery() as nursery:
        await nursery.start(again.run)
        assert [p.name for p in await again.list_all()] == ["keep"]
        assert [e.path for e in await again.entries("keep")] == ["/m/1.flac"]
        nursery.cancel_scope.cancel()
    assert sorted(os.listdir(folder)) == ["keep.m3u8"]


async def test_edits_and_their_errors(store: PlaylistStore) -> None:
    a, b, c = (PlaylistEntry(f"/m/{x}.flac") for x in "abc")
    assert await store.add("p", [a, c]) == 2  # created by add
    assert await store.add("p", [b], pos=1) == 3
    await store.move("p", 0, 2)
    assert [e.path for e in await store.entries("p")] == ["/m/b.flac", "/m/c.flac", "/m/a.flac"]
    assert await store.delete("p", [0, 2]) == 1
    with pytest.raises(RpcError, match="no position 5"):
        await store.delete("p", [5])
    with pytest.raises(RpcError, match="already exists") as caught:
        await store.save("p", [a])
    assert caught.value.code == "exists"
    await store.save("q", [])
    with pytest.raises(RpcError, match="already exists"):
        await store.rename("p", "q")
    await store.rename("p", "r")
    assert [p.name for p in await store.list_all()] == ["q", "r"]
    await store.clear("r")
    assert await store.entries("r") == []
    await store.remove("r")
    for call in (store.entries("r"), store.remove("r"), store.rename("r", "s")):
        with pytest.raises(RpcError) as missing:
            await call
        assert missing.value.code == "not_found"


async def test_concurrent_appends_never_lose_an_entry(store: PlaylistStore) -> None:
    async with trio.open_nursery() as nursery:
        for i in range(20):
            nursery.start_soon(store.add, "busy", [PlaylistEntry(f"/m/{i}.flac")])
    assert sorted(e.path for e in await store.entries("busy")) == sorted(f"/m/{i}.flac" for i in range(20))
