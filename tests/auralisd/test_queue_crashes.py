"""Acknowledged queue edits survive a crash at any moment (the hunt for a kill -9 test failure in which two
entries came back swapped): random edits (add, insert, delete, move, swap, shuffle, priority, consume, clear,
and runs of insertions at one place that exhaust the key gaps so windows are re-keyed), grouped into commits,
more edits made while a commit is in flight (what the player does while the saver waits for the disk), commits
that fail at any row they write, and crashes followed by a restart.

The real parts: :class:`Database` on a real SQLite file, the player's journalled :class:`PlayQueue` and its
:class:`PlayerStore`. A failure is SQLite's own: a temporary trigger on the store's connection aborts the
transaction at the chosen row (``RAISE(ABORT)``), so the transaction rolls back as it would if the process died
there. After every commit the file, read by another connection, must hold exactly the queue as it was when
the commit's changes were taken (what its replies acknowledge: independent of the edits made meanwhile); after
a failed one, the queue of the last commit that succeeded. A "crash" abandons the queue and the store, opens
the file again and restores a queue from it as ``Player._restore`` does; the restored queue must be the last
acknowledged one and its keys sound (a restore that re-keys would hide a corrupt order).

The expected queue is a model kept beside the queue: song ids in order with their track and priority, changed
by the same edits computed independently (a shuffle's order is read from the queue, as a client learns it).
"""

from __future__ import annotations

import random
import sqlite3
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from auralisd.actors.database import Database, Track, TrackFile
from auralisd.actors.player_store import PlayerStore, load_saved
from auralisd.playback import PlayQueue

Model = list[tuple[int, int, int]]  # (song id, track id, priority) in queue order
EDITS = ("add", "insert", "insert_many", "hammer", "delete", "move", "swap", "swap", "shuffle", "shuffle", "prio",
         "consume", "clear")  # fmt: skip
STEPS = ("edit", "edit", "edit", "commit", "commit_busy", "fail", "crash")


def view(q: PlayQueue[Track]) -> Model:
    return [(i, t.track_id, p) for i, t, p in zip(q.ids, q.entries, q.prios, strict=True)]


def stored(path: Path) -> Model:
    """The queue the file holds, read by another connection, in the order a restart loads it."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT song_id, track_id, prio FROM queue_entries ORDER BY sort_key, song_id").fetchall()
    finally:
        conn.close()
    return [(int(a), int(b), int(c)) for a, b, c in rows]


class Life:
    """One daemon's life on the file: its database connection, queue, store and model, and the edits to make
    while its next commit's transaction runs (``during``: kind and two numbers each)."""

    def __init__(self, db: Database, q: PlayQueue[Track], model: Model, tracks: list[Track]) -> None:
        self.db = db
        self.q = q
        self.model = model
        self.tracks = tracks
        self.store = PlayerStore(db, queue=q, snapshot=self.snapshot, playing=lambda: False)
        self.during: list[tuple[str, int, int]] = []

    def edit(self, kind: str, a: int, b: int) -> None:
        edit(self.q, self.model, kind, a, b, self.tracks)

    def make_edits_during(self) -> None:
        during, self.during = self.during, []
        for kind, a, b in during:
            self.edit(kind, a, b)

    def snapshot(self) -> dict[str, Any]:
        q = self.q
        return {"queue_pos": q.pos, "current_song_id": None if q.pos is None else q.ids[q.pos], "next_song_id": q.next_id}


def edit(q: PlayQueue[Track], model: Model, kind: str, a: int, b: int, tracks: list[Track]) -> None:
    """Make one edit on the queue and, independently, on the model."""
    n = len(q)
    if kind in ("add", "insert", "insert_many", "hammer") or n < 2:
        if kind == "hammer" and n:  # one at a time at one place: the gap halves each time, then a window is re-keyed
            pos = a % (n + 1)
            for i in range(34 + b % 8):
                track = tracks[(a + i) % len(tracks)]
                song_id = q.next_id
                q.add([track], pos)
                model.insert(pos, (song_id, track.track_id, 0))
            return
        count = 1 if kind != "insert_many" else 2 + b % 20
        pos = n if kind == "add" or n < 2 else a % (n + 1)
        new = [tracks[(a + b + i) % len(tracks)] for i in range(count)]
        first = q.next_id
        q.add(new, pos)
        model[pos:pos] = [(first + i, t.track_id, 0) for i, t in enumerate(new)]
    elif kind == "delete":
        positions = sorted({a % n, b % n})
        q.delete(positions)
        for p in reversed(positions):
            del model[p]
    elif kind == "move":
        q.move(a % n, b % n)
        model.insert(b % n, model.pop(a % n))
    elif kind == "swap":
        i, j = a % n, b % n
        q.swap(i, j)
        model[i], model[j] = model[j], model[i]
    elif kind == "shuffle":
        start = a % n
        end = start + b % (n - start + 1)
        before = sorted(model[start:end])
        q.shuffle(start, end)
        model[:] = view(q)  # the order it acknowledged, as a client reads it
        assert sorted(model[start:end]) == before
    elif kind == "prio":
        i = a % n
        q.set_prio(b * 7 % 256, [i])
        model[i] = (model[i][0], model[i][1], b * 7 % 256)
    elif kind == "consume":
        q.set_current(a % n)
        gone = q.pos
        q.set_flags({"consume": True})
        q.set_current(q.advance(auto=False).index)
        q.set_flags({"consume": False})
        assert gone is not None
        del model[gone]
    elif kind == "clear":
        q.clear()
        model.clear()
    assert view(q) == model, kind


async def run_program(data: st.DataObject, path: Path) -> None:
    tracks: list[Track] = []
    acked: Model = []  # the queue as the last commit that succeeded holds it
    lives = 0

    async def hook(fn: Callable[..., Any], *args: Any, limiter: Any = None) -> Any:
        """The database's ``run_sync``: the transaction runs inline on the same real file; edits queued
        for "while it runs" are made first (the store took its changes before it awaited)."""
        if current is not None:
            current.make_edits_during()
        await trio.lowlevel.checkpoint()
        return fn(*args)

    current: Life | None = None
    while True:
        db = Database(str(path), run_sync=hook)
        async with trio.open_nursery() as nursery:
            await nursery.start(db.run)
            if not tracks:
                files = [TrackFile(f"/m/t{i}.flac", "/m", "", 100 + i, 1, f"t{i}", None, None, i + 1, 1.0, 44_100,
                                   44_100, 2, "FLAC") for i in range(6)]  # fmt: skip
                tracks = [t for t in [await db.get_track(i) for i in await db.upsert_tracks(files)] if t is not None]
            saved = await load_saved(db)
            q: PlayQueue[Track] = PlayQueue(random.Random(data.draw(st.integers(0, 9), label="seed")), journal=True)
            q.restore(saved.queue, saved.next_song_id())
            assert view(q) == acked, f"life {lives}: the restart lost an acknowledged edit"
            assert not q.has_changes, f"life {lives}: the stored keys were not strictly increasing"
            life = current = Life(db, q, list(acked), tracks)
            crashed = False
            for _ in range(data.draw(st.integers(1, 25), label="steps")):
                step = data.draw(st.sampled_from(STEPS), label="step")
                if step == "edit":
                    kind = data.draw(st.sampled_from(EDITS), label="edit")
                    life.edit(kind, data.draw(st.integers(0, 63)), data.draw(st.integers(0, 63)))
                elif step in ("commit", "commit_busy"):
                    taken = list(life.model)
                    if step == "commit_busy":  # edits made while the transaction runs belong to the next commit
                        kinds = data.draw(st.lists(st.sampled_from(EDITS), min_size=1, max_size=3), label="during")
                        life.during = [(k, data.draw(st.integers(0, 63)), data.draw(st.integers(0, 63))) for k in kinds]
                    await life.store.save()
                    acked = taken
                    life.make_edits_during()  # nothing was written (no transaction ran): they come after it
                    assert stored(path) == acked, "a commit did not store the queue its replies acknowledge"
                elif step == "fail":  # the transaction aborts at one of the rows it writes, then rolls back
                    rows = data.draw(st.integers(0, 12), label="fail_at_row")
                    conn = db._require()  # the store's own connection (a temporary trigger lives on it)
                    conn.executescript(
                        f"""
                        CREATE TEMP TABLE IF NOT EXISTS fault (left INTEGER);
                        DELETE FROM fault; INSERT INTO fault VALUES ({rows});
                        CREATE TEMP TRIGGER IF NOT EXISTS fault_ins BEFORE INSERT ON main.queue_entries BEGIN
                            UPDATE fault SET left = left - 1;
                            SELECT RAISE(ABORT, 'injected') WHERE (SELECT left FROM fault) < 0; END;
                        CREATE TEMP TRIGGER IF NOT EXISTS fault_del BEFORE DELETE ON main.queue_entries BEGIN
                            UPDATE fault SET left = left - 1;
                            SELECT RAISE(ABORT, 'injected') WHERE (SELECT left FROM fault) < 0; END;
                        """
                    )
                    try:
                        await life.store.save()
                    except sqlite3.IntegrityError:
                        assert stored(path) == acked, "a failed commit changed the file"
                    else:
                        acked = list(life.model)  # it wrote fewer rows than the fault allowed
                        assert stored(path) == acked
                    conn.executescript("DROP TRIGGER fault_ins; DROP TRIGGER fault_del;")
                else:  # crash: whatever was not committed is lost; the next life reads the file
                    crashed = True
                    break
            if not crashed:
                await life.store.save()
                acked = list(life.model)
                assert stored(path) == acked
            current = None
            nursery.cancel_scope.cancel()
        lives += 1
        if lives == 3 or not data.draw(st.booleans(), label="restart"):
            break
    # the last life's file, restored once more
    async with trio.open_nursery() as nursery:
        db = Database(str(path))
        await nursery.start(db.run)
        saved = await load_saved(db)
        nursery.cancel_scope.cancel()
    assert [(i, t.track_id, p) for i, _, p, t in saved.queue] == acked


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.data())
def test_acknowledged_queue_edits_survive_failed_commits_and_crashes(data: st.DataObject) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        trio.run(run_program, data, Path(tmp) / "state" / "auralis.sqlite3")

