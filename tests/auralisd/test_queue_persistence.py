"""The queue is persisted entry by entry (``queue_entries``): an edit writes the rows it changed,
every edit comes back exactly after a restart, priorities follow their songs, and a database of
the earlier layout (the whole queue in ``queue``, priorities by position in ``player_state``)
comes back whole after the upgrade.

The real parts: a real SQLite file through :class:`Database`, the player's :class:`PlayQueue`
(journalled, as the player makes it) and its :class:`PlayerStore`; a "restart" is a new
``Database`` on the same file and a fresh queue restored from it, as ``Player._restore`` does.
"""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio

from auralisd.actors.database import MIGRATIONS, Database, Track, TrackFile
from auralisd.actors.player_store import PlayerStore, load_saved
from auralisd.playback import PlayQueue
from auralisd.playback.queue import KEY_LIMIT

BOUND_S = 60


@asynccontextmanager
async def open_db(path: Path) -> AsyncIterator[Database]:
    db = Database(str(path))
    async with trio.open_nursery() as nursery:
        await nursery.start(db.run)
        yield db
        nursery.cancel_scope.cancel()


async def make_tracks(db: Database, count: int) -> list[Track]:
    files = [
        TrackFile(f"/music/t{i:03d}.flac", "/music", "", 1000 + i, 1, f"t{i}", None, None, i + 1, 1.0, 44_100, 44_100, 2,
                  "FLAC")
        for i in range(count)
    ]  # fmt: skip
    ids = await db.upsert_tracks(files)
    tracks = [await db.get_track(i) for i in ids]
    assert all(t is not None for t in tracks)
    return [t for t in tracks if t is not None]


class Saved:
    """A queue and its store over ``db``, with the state map the player would save."""

    def __init__(self, db: Database, seed: int = 1) -> None:
        self.queue: PlayQueue[Track] = PlayQueue(random.Random(seed), journal=True)
        self.store = PlayerStore(db, queue=self.queue, snapshot=self.snapshot, playing=lambda: False)

    def snapshot(self) -> dict[str, Any]:
        q = self.queue
        return {"queue_pos": q.pos, "current_song_id": None if q.pos is None else q.ids[q.pos], "next_song_id": q.next_id}

    async def commit(self) -> int:
        self.store.changed()
        return await self.store.save()


async def restart(path: Path) -> PlayQueue[Track]:
    """What a new daemon reads back: a fresh queue restored from the file, its current entry set."""
    async with open_db(path) as db:
        saved = await load_saved(db)
    q: PlayQueue[Track] = PlayQueue(journal=True)
    q.restore(saved.queue, saved.next_song_id())
    q.pos = saved.queue_pos()
    assert not q.has_changes  # a restore of sound rows writes nothing
    return q


def view(q: PlayQueue[Track]) -> list[tuple[int, int, int]]:
    """What must survive: (song id, track id, priority) in queue order."""
    return [(i, t.track_id, p) for i, t, p in zip(q.ids, q.entries, q.prios, strict=True)]


# ----------------------------------------------------------------- O(changed) rows per edit
async def test_each_edit_writes_only_the_rows_it_changed(tmp_path: Path) -> None:
    with trio.fail_after(BOUND_S):
        async with open_db(tmp_path / "db.sqlite3") as db:
            tracks = await make_tracks(db, 10)
            s = Saved(db)
            q = s.queue
            q.add(tracks * 10)
            assert await s.commit() == 100 + 3  # the first commit writes the whole state map (3 keys here)
            for _ in range(99):  # 10,000 entries, 100 at a time like the MPD bench's `add` of a folder
                q.add(tracks * 10)
                assert await s.commit() == 100 + 1  # + next_song_id: state keys are written when they change
            assert len(q) == 10_000
            assert await s.commit() == 0  # nothing changed: nothing written
            q.add([tracks[0]])
            assert await s.commit() == 1 + 1  # the entry, next_song_id
            q.add([tracks[1]], 5_000)
            assert await s.commit() == 1 + 1
            q.add(tracks[:3], 0)
            assert await s.commit() == 3 + 1
            q.delete([10, 20, 9_000])
            assert await s.commit() == 3
            q.move(9_000, 3)
            assert await s.commit() == 1
            q.swap(2, 7_000)
            assert await s.commit() == 2
            q.set_prio(200, [1, 2, 3, 4, 5])
            assert await s.commit() == 5
            q.set_prio(200, [1, 2, 3])  # unchanged: nothing written
            assert await s.commit() == 0
            q.shuffle(100, 110)
            assert await s.commit() <= 10
            q.set_current(50)
            assert await s.commit() == 2  # queue_pos, current_song_id
            q.set_flags({"consume": True})
            q.set_current(q.advance(auto=True).index)  # consume: the played entry leaves
            assert await s.commit() == 1 + 1  # the deleted row, current_song_id (queue_pos stays 50)
            assert view(await restart(tmp_path / "db.sqlite3")) == view(q)


async def test_inserting_again_and_again_at_one_place_stays_cheap(tmp_path: Path) -> None:
    """The worst case for gaps (every insertion halves the same gap) relabels small windows, not the queue."""
    with trio.fail_after(BOUND_S):
        async with open_db(tmp_path / "db.sqlite3") as db:
            tracks = await make_tracks(db, 10)
            s = Saved(db)
            q = s.queue
            q.add(tracks * 1_000)
            await s.commit()
            written = 0
            for i in range(500):
                q.add([tracks[i % 10]], 5_000)
                written += await s.commit() - 1  # - next_song_id
            assert written < 500 * 3, written  # (544 here); rewriting the queue: 500 x 10,000
            assert all(a < b for a, b in zip(q.keys, q.keys[1:], strict=False)) and 0 < q.keys[0] and q.keys[-1] < KEY_LIMIT
            assert view(await restart(tmp_path / "db.sqlite3")) == view(q)


# ----------------------------------------------------------------- exact round trips
async def test_every_kind_of_edit_round_trips_through_a_restart_exactly(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    rng = random.Random(7)
    with trio.fail_after(BOUND_S):
        async with open_db(path) as db:
            tracks = await make_tracks(db, 12)
            s = Saved(db, seed=3)
            q = s.queue
            kinds = ["add", "insert", "insert_many", "delete", "move", "swap", "shuffle", "prio", "current",
                     "consume", "clear"]  # fmt: skip
            for step in range(400):
                n = len(q)
                kind = rng.choice(kinds)
                if kind == "add" or n < 2:
                    q.add(rng.choices(tracks, k=rng.randrange(1, 6)))
                elif kind == "insert":
                    q.add([rng.choice(tracks)], rng.randrange(n + 1))
                elif kind == "insert_many":
                    q.add(rng.choices(tracks, k=rng.randrange(2, 30)), rng.randrange(n + 1))
                elif kind == "delete":
                    q.delete(rng.sample(range(n), rng.randrange(1, min(n, 4) + 1)))
                elif kind == "move":
                    q.move(rng.randrange(n), rng.randrange(n))
                elif kind == "swap":
                    q.swap(rng.randrange(n), rng.randrange(n))
                elif kind == "shuffle":
                    a = rng.randrange(n)
                    q.shuffle(a, rng.randrange(a, n + 1))
                elif kind == "prio":
                    q.set_prio(rng.randrange(256), rng.sample(range(n), rng.randrange(1, min(n, 5) + 1)))
                elif kind == "current":
                    q.set_current(rng.randrange(n))
                elif kind == "consume" and q.pos is not None:
                    q.set_flags({"consume": True})
                    q.set_current(q.advance(auto=False).index)
                    q.set_flags({"consume": False})
                elif kind == "clear" and rng.random() < 0.2:
                    q.clear()
                if rng.random() < 0.7:  # sometimes several edits go into one commit (a group commit)
                    await s.commit()
                if step % 25 == 24:
                    await s.commit()
                    restored = await restart(path)
                    assert view(restored) == view(q), f"step {step}"
                    assert restored.pos == q.pos, f"step {step}"
                    assert restored.next_id == q.next_id
            await s.commit()
        restored = await restart(path)
        assert view(restored) == view(q)
        restored.add([tracks[0]])
        assert restored.ids[-1] == q.next_id  # no song id handed out twice, across a restart either


async def test_after_a_failed_commit_the_next_one_writes_the_queue_whole(tmp_path: Path) -> None:
    """A commit that fails (here: another process holds the write lock past the busy timeout) leaves
    unknown what the file holds: the next commit writes the whole queue and state map again."""
    path = tmp_path / "db.sqlite3"
    with trio.fail_after(BOUND_S):
        async with open_db(path) as db:
            tracks = await make_tracks(db, 3)
            s = Saved(db)
            s.queue.add(tracks)
            await s.commit()
            s.queue.swap(0, 2)
            s.queue.set_prio(7, [1])
            blocker = sqlite3.connect(path, timeout=0, isolation_level=None)
            blocker.execute("BEGIN IMMEDIATE")
            with pytest.raises(sqlite3.OperationalError):
                await s.commit()  # waits out the busy timeout (5 s), then fails
            blocker.execute("ROLLBACK")
            blocker.close()
            assert s.queue.has_changes
            assert await s.commit() == 3 + 3 + 3  # the stored rows deleted, every entry and state key written
        assert view(await restart(path)) == view(s.queue)


# ----------------------------------------------------------------- a vanished track
async def test_priorities_and_the_current_entry_follow_their_songs_when_a_track_vanishes(tmp_path: Path) -> None:
    """A scan forgets a track (its file is gone) while the player still holds it: the stored entries of
    the other songs keep their priorities and the current one stays current. With priorities saved by
    position, d inherited c's priority and the current entry moved."""
    path = tmp_path / "db.sqlite3"
    with trio.fail_after(BOUND_S):
        async with open_db(path) as db:
            a, b, c, d = await make_tracks(db, 4)
            s = Saved(db)
            s.queue.add([a, b, c, d])
            s.queue.set_prio(200, [2])  # c
            s.queue.set_prio(9, [0])  # a
            s.queue.set_current(3)  # d plays
            await s.commit()
            await db.delete_tracks([b.track_id])  # what a scan does; the daemon dies before the player hears
        q = await restart(path)
        assert [(t.track_id, p) for t, p in zip(q.entries, q.prios, strict=True)] == [
            (a.track_id, 9), (c.track_id, 200), (d.track_id, 0)
        ]  # fmt: skip
        assert q.pos is not None and q.entries[q.pos].track_id == d.track_id


# ----------------------------------------------------------------- migration from the old layout
async def test_a_database_of_the_old_layout_keeps_its_queue_priorities_and_state(tmp_path: Path) -> None:
    """Schema version 8 written as the old code wrote it: ``queue(pos, track_id)`` and the priorities as
    a JSON map position -> priority in ``player_state``."""
    path = tmp_path / "state" / "auralis.sqlite3"
    path.parent.mkdir()
    conn = sqlite3.connect(path)
    for script in MIGRATIONS[:8]:  # released migrations never change: this is the old schema
        conn.executescript(script)
    conn.execute("PRAGMA user_version = 8")
    for i in range(1, 5):
        conn.execute(
            "INSERT INTO tracks (track_id, path, music_dir, rel_dir, size, mtime_ns, duration_s, num_frames,"
            " sample_rate, channels, format, scanned_at) VALUES (?, ?, '/m', '', 1, 1, 1.0, 44100, 44100, 2, 'FLAC', 0)",
            (i, f"/m/{i}.flac"),
        )
    old_queue = [3, 1, 4, 1, 2]  # a track may be queued twice
    conn.executemany("INSERT INTO queue (pos, track_id) VALUES (?, ?)", list(enumerate(old_queue)))
    state = {"queue_pos": 2, "state": "pause", "elapsed_s": 1.5, "volume": 40, "random": True,
             "prios": {"1": 120, "3": 7, "4": "x", "9": 50}}  # fmt: skip
    conn.executemany("INSERT INTO player_state (key, value) VALUES (?, ?)", [(k, json.dumps(v)) for k, v in state.items()])
    conn.commit()
    conn.close()

    with trio.fail_after(BOUND_S):
        async with open_db(path) as db:
            saved = await load_saved(db)
            assert await db.load_queue() == old_queue
    assert [(t.track_id, prio) for _, _, prio, t in saved.queue] == [(3, 0), (1, 120), (4, 0), (1, 7), (2, 0)]
    assert [song_id for song_id, *_ in saved.queue] == [1, 2, 3, 4, 5]
    assert saved.queue_pos() == 2 and saved.next_song_id() == 6
    assert {k: saved.state[k] for k in ("state", "elapsed_s", "volume", "random")} == {
        "state": "pause", "elapsed_s": 1.5, "volume": 40, "random": True
    }  # fmt: skip
    assert "prios" not in saved.state
    q = await restart(path)
    assert q.prios == [0, 120, 0, 7, 0] and q.pos == 2
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert conn.execute("SELECT count(*) FROM sqlite_master WHERE name = 'queue'").fetchone()[0] == 0
    conn.close()
