"""The queue's journal (``journal=True``): replaying what :meth:`PlayQueue.take_changes` hands out onto a
stored copy (song id -> order key, priority, entry) gives back the queue exactly, in key order, whatever
the edits and however they are grouped into commits; each edit journals only the entries it changed."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from auralisd.playback import PlayQueue
from auralisd.playback.queue import KEY_LIMIT


class Stored:
    """What the database holds: the rows written so far."""

    def __init__(self) -> None:
        self.rows: dict[int, tuple[int, int, str]] = {}

    def commit(self, q: PlayQueue[str]) -> int:
        changes = q.take_changes()
        if changes is None:
            return 0
        if changes.cleared:
            self.rows.clear()
        for song_id, row in changes.rows.items():
            if row is None:
                self.rows.pop(song_id, None)
            else:
                self.rows[song_id] = row
        return len(changes.rows)

    def rows_in_order(self) -> list[tuple[int, int, int, str]]:
        """(song id, key, priority, entry) in key order, as the database loads them."""
        return [(i, *row) for i, row in sorted(self.rows.items(), key=lambda kv: kv[1][0])]

    def queue(self) -> list[tuple[int, int, str]]:
        """(song id, priority, entry) in key order."""
        return [(i, prio, entry) for i, (_, prio, entry) in sorted(self.rows.items(), key=lambda kv: kv[1][0])]


def view(q: PlayQueue[str]) -> list[tuple[int, int, str]]:
    return list(zip(q.ids, q.prios, q.entries, strict=True))


def keys_are_sound(q: PlayQueue[str]) -> bool:
    keys = q.keys
    return len(keys) == len(q) and all(0 < k < KEY_LIMIT for k in keys) and all(
        a < b for a, b in zip(keys, keys[1:], strict=False)
    )


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["add", "insert", "delete", "move", "swap", "shuffle", "prio", "advance",
                                           "clear", "commit", "restart"]),
                          st.integers(0, 40), st.integers(0, 40)), max_size=40), st.booleans(), st.booleans())  # fmt: skip
def test_replaying_the_journal_rebuilds_the_queue(ops: list[tuple[str, int, int]], consume: bool, rand: bool) -> None:
    q: PlayQueue[str] = PlayQueue(random.Random(2), journal=True)
    q.set_flags({"consume": consume, "random": rand})
    stored = Stored()
    for op, a, b in ops:
        n = len(q)
        if op == "add":
            q.add([f"n{a}"] * (b % 4 + 1))
        elif op == "insert":
            q.add([f"i{a}"] * (b % 3 + 1), a % (n + 1))
        elif op == "delete" and n:
            q.delete(sorted({a % n, b % n}))
        elif op == "move" and n:
            q.move(a % n, b % n)
        elif op == "swap" and n:
            q.swap(a % n, b % n)
        elif op == "shuffle" and n:
            q.shuffle(min(a % n, b % n), max(a % n, b % n) + 1)
        elif op == "prio" and n:
            q.set_prio(a * 6, [b % n])
        elif op == "advance" and n:
            if q.pos is None:
                q.set_current(a % n)
            q.set_current(q.advance(auto=True).index)
        elif op == "clear" and a % 5 == 0:
            q.clear()
        elif op == "commit":
            stored.commit(q)
        elif op == "restart":  # what a new daemon reads back, and goes on editing
            stored.commit(q)
            pos = q.pos
            q = PlayQueue(random.Random(a), journal=True)
            q.restore(stored.rows_in_order(), next_id=max(stored.rows, default=0) + 1)
            q.set_flags({"consume": consume, "random": rand})
            q.set_current(pos)
        assert keys_are_sound(q)
    stored.commit(q)
    assert stored.queue() == view(q)


def test_an_edit_journals_only_what_it_changed() -> None:
    q: PlayQueue[str] = PlayQueue(random.Random(1), journal=True)
    stored = Stored()
    q.add([f"t{i}" for i in range(1000)])
    assert stored.commit(q) == 1000
    q.add(["x"], 500)
    assert stored.commit(q) == 1
    q.move(999, 0)
    assert stored.commit(q) == 1
    q.swap(3, 900)
    assert stored.commit(q) == 2
    q.delete([7, 8])
    assert stored.commit(q) == 2
    q.set_prio(9, [1, 2])
    assert stored.commit(q) == 2
    q.set_current(10)  # the current entry is the state map's business, not the queue's
    assert stored.commit(q) == 0
    assert stored.queue() == view(q)


def test_insertions_at_one_place_relabel_a_small_window_and_keep_the_order() -> None:
    q: PlayQueue[str] = PlayQueue(random.Random(1), journal=True)
    stored = Stored()
    q.add([f"t{i}" for i in range(2000)])
    stored.commit(q)
    written = 0
    for i in range(300):  # every insertion halves the same gap: relabels are needed from the 32nd on
        q.add([f"x{i}"], 1000)
        written += stored.commit(q)
    assert keys_are_sound(q)
    assert written < 3 * 300  # rewriting the queue would be 300 x 2,000 rows
    assert stored.queue() == view(q)
    q.add([f"front{i}" for i in range(40)], 0)  # and many at once before the first key
    stored.commit(q)
    assert keys_are_sound(q) and stored.queue() == view(q)


def test_restore_takes_saved_ids_and_priorities_and_repairs_unsound_keys() -> None:
    q: PlayQueue[str] = PlayQueue(journal=True)
    q.restore([(7, 10, 0, "a"), (3, 20, 200, "b"), (12, 30, 5, "c")], next_id=20)
    assert view(q) == [(7, 0, "a"), (3, 200, "b"), (12, 5, "c")]
    assert not q.has_changes
    q.add(["d"])
    assert q.ids[-1] == 20
    broken: PlayQueue[str] = PlayQueue(journal=True)
    broken.restore([(1, 5, 0, "a"), (2, 5, 0, "b"), (3, 4, 0, "c")])  # ties and a step back (a damaged row)
    assert keys_are_sound(broken) and broken.entries == ["a", "b", "c"]
    changes = broken.take_changes()
    assert changes is not None and set(changes.rows) == {1, 2, 3}  # written again in the order restored
