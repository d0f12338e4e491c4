"""Robustness of the library and the database: folders that go away, path aliases, bad
files, a damaged database file. Real folders, a real SQLite file, a real daemon process."""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from auralisd.actors.database import Database, QueueRow, QueueWrite, StoredFingerprint
from auralisd.actors.events import EventHub
from auralisd.actors.library import Library
from auralisd.errors import RpcError

from .conftest import write_tracks

BOUND_S = 60


@asynccontextmanager
async def open_library(db_path: Path, music_dirs: list[Path]) -> AsyncIterator[tuple[Database, Library]]:
    db = Database(str(db_path))
    library = Library(db, EventHub(), [str(d) for d in music_dirs])
    async with trio.open_nursery() as nursery:
        await nursery.start(db.run)
        await nursery.start(library.run)
        yield db, library
        nursery.cancel_scope.cancel()


def queue_of(track_ids: list[int]) -> QueueWrite:
    """A whole queue of these tracks, as the player's first commit writes it."""
    return QueueWrite(rows=[QueueRow(i + 1, (i + 1) << 32, 0, t) for i, t in enumerate(track_ids)])


async def rescan(library: Library) -> None:
    assert library.scan()
    await library.wait_scan()


def fingerprint_of(track_id: int, size: int, mtime_ns: int) -> StoredFingerprint:
    return StoredFingerprint(track_id, size, mtime_ns, "test", "computed", False, {"lufs": -14.0}, {"x": 1})


# ----------------------------------------------------------------- defect 1: data loss on a missing folder
async def test_a_missing_empty_or_unlistable_folder_keeps_tracks_queue_and_fingerprints(tmp_path: Path) -> None:
    music = tmp_path / "music"
    write_tracks(music / "Album", [("1.flac", 0.3, 44_100, 1, False), ("2.flac", 0.3, 44_100, 2, False)])
    write_tracks(music / "Other", [("3.flac", 0.3, 44_100, 3, False)])
    with trio.fail_after(BOUND_S):
        async with open_library(tmp_path / "db.sqlite3", [music]) as (db, library):
            await rescan(library)
            tracks = sorted((await db.tracks_under(str(music), "", recursive=True)), key=lambda t: t.path)
            ids = [t.track_id for t in tracks]
            assert len(ids) == 3
            await db.save_player(queue_of(ids), {"queue_pos": 1})
            for t in tracks:
                await db.put_fingerprint(fingerprint_of(t.track_id, t.size, t.mtime_ns))

            async def assert_all_kept() -> None:
                assert await db.load_queue() == ids
                assert await db.count_tracks() == 3
                for t in tracks:
                    assert await db.get_fingerprint(t.track_id) is not None

            # the whole music folder away (an unmounted drive, a renamed folder), then back
            music.rename(tmp_path / "music.off")
            await rescan(library)
            await assert_all_kept()
            # the mount point is there but empty (the drive is not mounted)
            music.mkdir()
            await rescan(library)
            await assert_all_kept()
            music.rmdir()
            (tmp_path / "music.off").rename(music)
            await rescan(library)
            await assert_all_kept()
            assert library.statistics().files_probed == 3  # nothing re-read when it came back

            # a subfolder that cannot be listed: a dangling symlink in its place, an empty folder
            (music / "Album").rename(tmp_path / "Album.off")
            (music / "Album").symlink_to(tmp_path / "nowhere")
            await rescan(library)
            await assert_all_kept()
            (music / "Album").unlink()
            (music / "Album").mkdir()
            await rescan(library)
            await assert_all_kept()
            (music / "Album").rmdir()
            (tmp_path / "Album.off").rename(music / "Album")
            await rescan(library)
            await assert_all_kept()

            # control: a file that is really deleted (its folder listed fine without it) goes,
            # and so does a folder deleted from a folder that listed fine
            os.unlink(music / "Album" / "2.flac")
            await rescan(library)
            assert await db.count_tracks() == 2
            assert await db.load_queue() == [ids[0], ids[2]]
            shutil.rmtree(music / "Other")
            await rescan(library)
            assert await db.count_tracks() == 1
            assert await db.load_queue() == [ids[0]]


def test_daemon_queue_survives_a_rescan_with_the_music_folder_away(tmp_path: Path, daemon_factory) -> None:
    music = tmp_path / "music"
    write_tracks(music, [(f"{i}.flac", 0.5, 44_100, i, False) for i in range(1, 4)])
    daemon = daemon_factory(music).start()
    with daemon.client() as client:
        daemon.wait_scan(client, 3)
        client.call("queue.add", paths=[str(music)])
        queued = [item["track_id"] for item in client.call("queue.list")["items"]]
        assert len(queued) == 3
        for _ in range(2):  # away, then back
            music.rename(tmp_path / "music.off") if music.exists() else (tmp_path / "music.off").rename(music)
            scans = client.call("status")["scan"]["scans"]
            client.call("library.scan")
            client.wait_status(lambda s, scans=scans: s["scan"]["scans"] > scans and not s["scan"]["running"])
            assert [item["track_id"] for item in client.call("queue.list")["items"]] == queued
            assert client.call("status")["scan"]["tracks"] == 3
        # control: a file really deleted leaves the queue by the time its scan is seen to end
        (music / "2.flac").unlink()
        scans = client.call("status")["scan"]["scans"]
        client.call("library.scan")
        client.wait_status(lambda s, scans=scans: s["scan"]["scans"] > scans and not s["scan"]["running"])
        assert [item["track_id"] for item in client.call("queue.list")["items"]] == [queued[0], queued[2]]


# ----------------------------------------------------------------- defect 6: path aliases
async def test_aliases_answer_one_track_and_outside_paths_are_refused(tmp_path: Path) -> None:
    music = tmp_path / "music"
    write_tracks(music / "sub", [("a.flac", 0.3, 44_100, 1, False)])
    outside = tmp_path / "outside"
    write_tracks(outside, [("secret.flac", 0.3, 44_100, 2, False)])
    (music / "sub" / "loop").symlink_to(music / "sub")  # a symlink loop
    (music / "linked").symlink_to(outside)  # a symlink the library follows out: allowed
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "alias.flac").symlink_to(music / "sub" / "a.flac")  # outside, pointing inside
    with trio.fail_after(BOUND_S):
        async with open_library(tmp_path / "db.sqlite3", [music]) as (db, library):
            await rescan(library)
            assert await db.count_tracks() == 2
            a = await library.resolve_track_path("sub/a.flac")
            for alias in ("sub/loop/a.flac", "sub/loop/loop/a.flac", str(music / "sub/loop/loop/loop/a.flac")):
                assert (await library.resolve_track_path(alias)).track_id == a.track_id
            [from_loop] = await library.resolve_paths([str(music / "sub" / "loop" / "loop")])
            assert from_loop.track_id == a.track_id
            linked = await library.resolve_track_path(str(music / "linked" / "secret.flac"))
            assert linked.path == str(music / "linked" / "secret.flac")
            for escape in (str(elsewhere / "alias.flac"), str(music / ".." / "elsewhere" / "alias.flac")):
                with pytest.raises(RpcError) as info:
                    await library.resolve_track_path(escape)
                assert info.value.code == "outside_music_dirs"
            assert await db.count_tracks() == 2
            listing = await library.list_dir(None)
            assert sorted(listing["dirs"]) == [str(music / "linked"), str(music / "sub")]

            # a new file first asked for through the loop is stored under its own path
            write_tracks(music / "sub", [("b.flac", 0.3, 44_100, 3, False)])
            b = await library.resolve_track_path("sub/loop/loop/b.flac")
            assert b.path == str(music / "sub" / "b.flac") and b.rel_dir == "sub"
            await db.save_player(queue_of([a.track_id, b.track_id, linked.track_id]), {})
            await rescan(library)  # nothing vanishes, nothing is added twice
            assert await db.count_tracks() == 3
            assert await db.load_queue() == [a.track_id, b.track_id, linked.track_id]
            assert (await library.list_dir(str(music / "sub")))["dirs"] == []


async def test_older_rows_stored_under_an_alias_are_merged_by_real_path(tmp_path: Path) -> None:
    music = tmp_path / "music"
    write_tracks(music / "sub", [("a.flac", 0.3, 44_100, 1, False)])
    (music / "sub" / "loop").symlink_to(music / "sub")
    db_path = tmp_path / "db.sqlite3"
    with trio.fail_after(BOUND_S):
        async with open_library(db_path, [music]) as (db, library):
            await rescan(library)
        # what an older auralisd stored: a second row for the same file, through the loop
        conn = sqlite3.connect(db_path)
        with conn:
            conn.execute(
                "INSERT INTO tracks (path, music_dir, rel_dir, size, mtime_ns, duration_s, num_frames, sample_rate,"
                " channels, format, scanned_at) SELECT ?, music_dir, 'sub/loop', size, mtime_ns, duration_s,"
                " num_frames, sample_rate, channels, format, scanned_at FROM tracks",
                (str(music / "sub" / "loop" / "a.flac"),),
            )
        conn.close()
        async with open_library(db_path, [music]) as (db, library):
            assert await db.count_tracks() == 2
            await rescan(library)
            assert await db.count_tracks() == 1
            assert library.statistics().files_probed == 0


# ----------------------------------------------------------------- defect 9: bad files probed once
async def test_an_unchanged_bad_file_is_not_probed_again_and_a_changed_one_is(tmp_path: Path) -> None:
    music = tmp_path / "music"
    write_tracks(music, [("good.flac", 0.3, 44_100, 1, False)])
    garbage = music / "garbage.flac"
    garbage.write_bytes(b"this is not audio" * 100)
    db_path = tmp_path / "db.sqlite3"
    with trio.fail_after(BOUND_S):
        async with open_library(db_path, [music]) as (db, library):
            await rescan(library)
            assert (library.statistics().files_probed, await db.count_tracks()) == (2, 1)
            await rescan(library)
            assert library.statistics().files_probed == 2  # the bad file was not opened again
        async with open_library(db_path, [music]) as (db, library):  # remembered across restarts
            await rescan(library)
            assert library.statistics().files_probed == 0
            os.utime(garbage, ns=(1, 1))  # changed: tried again (and still bad)
            await rescan(library)
            assert library.statistics().files_probed == 1
            await rescan(library)
            assert library.statistics().files_probed == 1
            shutil.copy(music / "good.flac", garbage)  # now good: it becomes a track
            await rescan(library)
            assert (library.statistics().files_probed, await db.count_tracks()) == (2, 2)
            assert await db.rejected_files() == {}


# ----------------------------------------------------------------- defect 8: a damaged database file
def test_a_damaged_database_file_stops_the_daemon_cleanly_with_exit_2(tmp_path: Path, daemon_factory) -> None:
    daemon = daemon_factory(None)
    daemon.state_dir.mkdir(parents=True)
    db_file = daemon.state_dir / "auralis.sqlite3"
    damage = os.urandom(8192)
    db_file.write_bytes(damage)
    with pytest.raises(RuntimeError, match="exited with 2"):
        daemon.start()
    log = daemon.log()
    assert "Traceback" not in log
    [line] = [line for line in log.splitlines() if "ERROR" in line]
    assert str(db_file) in line and "move it aside" in line.lower()
    assert db_file.read_bytes() == damage  # nothing was changed: the user decides
