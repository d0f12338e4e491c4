"""Units of the daemon that need no worker process: chunk cache, resampler, database, library."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import trio

from auralis.resample import BlockResampler
from auralisd.actors.cache import ChunkCache
from auralisd.actors.database import MIGRATIONS, Database
from auralisd.actors.events import EventHub
from auralisd.actors.library import Library
from tests.helpers import resample_reference

from .conftest import write_tracks


def test_cache_evicts_least_recently_used_by_bytes_and_counts() -> None:
    cache = ChunkCache(budget_bytes=3000)
    block = lambda v: np.full((250, 1), v, dtype=np.float32)  # noqa: E731  (1000 bytes each)
    for key in "abc":
        cache.put(key, block(ord(key)))
    assert cache.get("a") is not None  # a becomes the most recent
    cache.put("d", block(4))  # evicts b, the least recently used
    assert cache.get("b") is None
    assert cache.get("c") is not None and cache.get("d") is not None
    stats = cache.statistics()
    assert (stats.hits, stats.misses, stats.evictions, stats.bytes, stats.entries) == (3, 1, 1, 3000, 3)
    cache.put("huge", np.zeros(10_000, dtype=np.float32))  # larger than the budget: not stored
    assert not cache.peek("huge") and cache.statistics().bytes == 3000
    with pytest.raises(ValueError):
        cache.get("a")[0, 0] = 1.0  # cached arrays are read-only: every reader shares them


@pytest.mark.parametrize(("in_rate", "out_rate"), [(48_000, 44_100), (44_100, 48_000), (96_000, 44_100)])
def test_block_resampler_equals_one_pass_resample_poly(in_rate: int, out_rate: int) -> None:
    x = np.random.default_rng(1).standard_normal((in_rate // 2, 2)).astype(np.float32)
    reference = resample_reference(x, in_rate, out_rate)
    r = BlockResampler(in_rate, out_rate)
    n = r.output_frames(len(x))
    assert n == len(reference)
    blocks = []
    for start in range(0, n, 2205):  # the player's 50 ms blocks, each computed on its own
        stop = min(n, start + 2205)
        lo, hi = r.input_span(start, stop)
        span = np.zeros((hi - lo, 2), dtype=np.float32)
        a, b = max(lo, 0), min(hi, len(x))
        span[a - lo : b - lo] = x[a:b]
        blocks.append(r.process(span, start, stop))
    assert np.max(np.abs(np.concatenate(blocks) - reference)) < 1e-5


async def test_database_migrates_once_and_survives_reopening(tmp_path: Path) -> None:
    path = str(tmp_path / "state" / "auralis.sqlite3")
    for _ in range(2):
        db = Database(path)
        async with trio.open_nursery() as nursery:
            await nursery.start(db.run)
            assert await db.integrity_check() == "ok"
            await db.save_player(None, {"volume": 40})
            nursery.cancel_scope.cancel()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT value FROM player_state WHERE key = 'volume'").fetchone()[0] == "40"


async def test_library_scan_skips_unchanged_files_and_follows_changes(tmp_path: Path) -> None:
    music = tmp_path / "music"
    write_tracks(music / "A", [("1.flac", 0.5, 44_100, 1, False), ("2.wav", 0.5, 22_050, 2, False)])
    write_tracks(music, [("3.flac", 0.5, 48_000, 3, False)])
    (music / "A" / "cover.jpg").write_bytes(b"\xff\xd8 not audio")
    (music / ".hidden").mkdir()
    write_tracks(music / ".hidden", [("x.flac", 0.5, 44_100, 4, False)])
    (music / "A" / "loop").symlink_to(music)  # a loop back to the top
    (music / "empty.flac").write_bytes(b"")
    db = Database(str(tmp_path / "db.sqlite3"))
    hub = EventHub()
    progress = hub.subscribe(frozenset({"scan_progress"}))
    library = Library(db, hub, [str(music)])
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(db.run)
            await nursery.start(library.run)
            assert library.scan() and not library.scan()  # one scan at a time
            await library.wait_scan()
            stats = library.statistics()
            # by content, not by name: the picture and the empty file are opened too, and rejected
            assert (stats.tracks, stats.files_probed) == (3, 5)
            assert stats.counts is not None and stats.counts.to_wire() == {
                "files": 5, "added": 3, "updated": 0, "unchanged": 0, "removed": 0, "unsupported": 1, "damaged": 1,
                "skipped": 0,
            }
            last = None
            while True:
                try:
                    last = progress.receive.receive_nowait().data
                except trio.WouldBlock:
                    break
            assert last is not None and last["done"] == last["total"] == 5
            assert last["running"] is False and last["counts"]["added"] == 3 and last["error"] is None
            listing = await library.list_dir(None)
            assert listing["dirs"] == [str(music / "A")]
            assert [t["title"] for t in listing["tracks"]] == ["3"]
            # unchanged rescan: no file is opened
            library.scan()
            await library.wait_scan()
            assert library.statistics().files_probed == 5
            counts = library.statistics().counts
            assert counts is not None and (counts.unchanged, counts.unsupported, counts.damaged) == (3, 1, 1)
            # one changed, one vanished
            os.utime(music / "3.flac", ns=(1, 1))
            os.unlink(music / "A" / "2.wav")
            library.scan()
            await library.wait_scan()
            stats = library.statistics()
            assert (stats.tracks, stats.files_probed) == (2, 6)
            assert stats.counts is not None and (stats.counts.updated, stats.counts.removed) == (1, 1)
            found, total = await db.search_tracks("A/1.flac", 10)
            assert total == 1
            assert [t.path for t in found] == [str(music / "A" / "1.flac")]
            nursery.cancel_scope.cancel()


async def test_a_folder_update_during_a_scan_waits_and_then_runs(tmp_path: Path) -> None:
    """MPD queues ``update`` behind a running one: a folder a user changed during a long scan must still
    be read (before, the request answered the running job's id and nothing more happened). Requests a
    waiting job covers share its id; ``wait_scan`` and ``running`` last until the queue is empty."""
    music = tmp_path / "music"
    write_tracks(music / "A", [("1.flac", 0.3, 44_100, 1, False)])
    write_tracks(music / "B", [("2.flac", 0.3, 44_100, 2, False)])
    db = Database(str(tmp_path / "db.sqlite3"))
    hub = EventHub()
    library = Library(db, hub, [str(music)])
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(db.run)
            await nursery.start(library.run)
            progress = hub.subscribe(frozenset({"scan_progress"}))
            # a slow disk: scan 1 cannot reach the database until the requests below are in
            async with db._limiter:  # noqa: SLF001 - the database actor's one thread, held by the test
                assert await library.scan_folder(None) == (1, True)
                assert await library.scan_folder(str(music / "A")) == (2, False)  # waits behind scan 1
                assert await library.scan_folder("A") == (2, False)  # the same folder: the same job
                assert await library.scan_folder(str(music / "B")) == (3, False)
                assert await library.scan_folder(None) == (4, False)
                assert await library.scan_folder("B") == (3, False)
                assert not library.scan(), "a full scan by the daemon itself is not queued"
            await library.wait_scan()
            assert library.statistics().scans == 4 and library.scan_id == 4 and not library.statistics().running
            events = []
            while True:
                try:
                    events.append(progress.receive.receive_nowait().data)
                except trio.WouldBlock:
                    break
            finals = [e for e in events if not e["running"]]
            assert len(finals) == 1 and events[-1] is finals[0], "running: false once, when the queue is empty"
            # the queued scan reads what changed meanwhile
            write_tracks(music / "A", [("3.flac", 0.3, 44_100, 3, False)])
            async with db._limiter:  # noqa: SLF001
                assert await library.scan_folder(None) == (5, True)
                assert await library.scan_folder("A") == (6, False)
            await library.wait_scan()
            assert library.statistics().tracks == 3
            nursery.cancel_scope.cancel()


async def test_rows_from_an_older_schema_get_their_tags_read_again_and_keep_their_fingerprint(tmp_path: Path) -> None:
    from mutagen.flac import FLAC

    from auralisd.actors.database import StoredFingerprint

    music = tmp_path / "music"
    (path,) = write_tracks(music / "Album", [("1.flac", 0.5, 44_100, 1, False)])
    tags = FLAC(path)
    tags.update({"title": "Jóga", "artist": "Björk", "tracknumber": "3", "discnumber": "1"})
    tags.save()
    db = Database(str(tmp_path / "db.sqlite3"))
    library = Library(db, EventHub(), [str(music)])
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(db.run)
            await nursery.start(library.run)
            library.scan()
            await library.wait_scan()
            (track,) = await db.tracks_under(str(music), "", recursive=True)
            fp = StoredFingerprint(track.track_id, track.size, track.mtime_ns, "v", "computed", False, {"lufs": -9.0}, {})
            await db.put_fingerprint(fp)
            # what a version-2 row looks like after migration 3: no new tags, no search text
            conn = sqlite3.connect(db.path)
            conn.execute("UPDATE tracks SET title = NULL, artist = NULL, disc_number = NULL, search_text = '',"
                         " tags_version = 0")  # fmt: skip
            conn.commit()
            conn.close()
            assert (await db.search_tracks("bjork", 10))[1] == 0
            probed = library.statistics().files_probed
            library.scan()
            await library.wait_scan()
            assert library.statistics().files_probed == probed  # the audio is not opened again
            (track,) = await db.tracks_under(str(music), "", recursive=True)
            assert (track.title, track.artist, track.track_number, track.disc_number) == ("Jóga", "Björk", 3, 1)
            assert (await db.search_tracks("BJÖRK", 10))[1] == 1
            stored = await db.get_fingerprint(track.track_id)
            assert stored is not None and stored.dimensions["lufs"] == -9.0 and track.fingerprint_status == "partial"
            nursery.cancel_scope.cancel()
