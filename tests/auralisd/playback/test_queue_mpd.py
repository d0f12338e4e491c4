"""The play queue's MPD model: song ids, the playlist version and plchanges, prio, shuffle, swap, crop."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auralisd.playback import PlayQueue, QueueError


def queue(n: int, seed: int = 1, **flags: bool) -> PlayQueue[str]:
    q: PlayQueue[str] = PlayQueue(random.Random(seed))
    q.add([f"t{i}" for i in range(n)])
    q.set_flags(flags)
    return q


def by_id(q: PlayQueue[str]) -> dict[int, str]:
    return dict(zip(q.ids, q.entries, strict=True))


def test_song_ids_follow_their_entries_and_are_never_reused() -> None:
    q = queue(4)
    ids = by_id(q)
    assert sorted(ids) == [1, 2, 3, 4]
    q.move(0, 3)
    q.swap(0, 1)
    q.delete([2])
    assert all(ids[i] == entry for i, entry in by_id(q).items())
    q.add(["new"])
    assert q.ids[-1] == 5  # a deleted entry's id is not handed out again
    q.clear()
    q.add(["again"])
    assert q.ids == [6]
    assert q.index_of_id(6) == 0
    with pytest.raises(QueueError):
        q.index_of_id(1)


def test_version_grows_with_every_edit_and_plchanges_names_what_moved() -> None:
    q = queue(5)
    v = q.version
    assert q.changes_since(v) == []
    q.move(4, 1)  # positions 1..4 change place
    assert q.version > v
    assert q.changes_since(v) == [1, 2, 3, 4]
    v = q.version
    q.delete([3])  # the entry after it moves up
    assert q.changes_since(v) == [3]
    v = q.version
    q.add(["x"], 0)
    assert q.changes_since(v) == [0, 1, 2, 3, 4]
    assert q.changes_since(0) == list(range(5))
    assert q.changes_since(q.version + 10) == list(range(5))  # a version from the future: everything


def test_consume_removes_the_entry_with_its_id() -> None:
    q = queue(3, consume=True)
    q.set_current(0)
    gone = q.ids[0]
    v = q.version
    step = q.advance(auto=True)
    q.set_current(step.index)
    assert gone not in q.ids and len(q.ids) == len(q.entries) == 2
    assert q.changes_since(v) == [0, 1]


def test_shuffle_keeps_the_playing_entry_first_of_its_range() -> None:
    q = queue(20, seed=3)
    q.set_current(7)
    playing = q.current
    q.shuffle(5, 15)
    assert q.current == playing and q.pos == 5
    assert q.entries[:5] == [f"t{i}" for i in range(5)]
    assert q.entries[15:] == [f"t{i}" for i in range(15, 20)]
    assert sorted(q.entries[5:15]) == sorted(f"t{i}" for i in range(5, 15))
    assert q.entries[6:15] != [f"t{i}" for i in range(5, 15) if i != 7]  # seed 3 does shuffle
    with pytest.raises(QueueError):
        q.shuffle(10, 30)


def test_swap_moves_the_current_entry_with_it() -> None:
    q = queue(4)
    q.set_current(1)
    q.swap(1, 3)
    assert q.entries == ["t0", "t3", "t2", "t1"] and q.pos == 3 and q.current == "t1"


def test_crop_positions_are_all_but_the_current() -> None:
    q = queue(4)
    assert q.crop_positions() == [0, 1, 2, 3]
    q.set_current(2)
    q.delete(q.crop_positions())
    assert q.entries == ["t2"] and q.pos == 0


def test_higher_priority_plays_first_in_random_mode() -> None:
    q = queue(10, seed=5, random=True)
    q.set_prio(200, [7])
    q.set_prio(100, [2])
    assert q.prios[7] == 200
    q.set_current(q.next_index(auto=False))
    assert q.current == "t7"
    step = q.advance(auto=True)
    q.set_current(step.index)
    assert q.current == "t2"
    with pytest.raises(QueueError):
        q.set_prio(256, [0])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["add", "delete", "move", "swap", "shuffle", "advance"]),
                          st.integers(0, 30), st.integers(0, 30)), max_size=25), st.booleans())
def test_metadata_stays_parallel_to_the_entries(ops: list[tuple[str, int, int]], consume: bool) -> None:
    q = queue(5, seed=2, consume=consume)
    for op, a, b in ops:
        n = len(q)
        if op == "add":
            q.add([f"n{a}"] * (b % 3 + 1), a % (n + 1))
        elif op == "delete" and n:
            q.delete([a % n])
        elif op == "move" and n:
            q.move(a % n, b % n)
        elif op == "swap" and n:
            q.swap(a % n, b % n)
        elif op == "shuffle":
            q.shuffle()
        elif op == "advance" and n:
            if q.pos is None:
                q.set_current(0)
            q.set_current(q.advance(auto=True).index)
        assert len(q.ids) == len(q.prios) == len(q.changed) == len(q.entries)
        assert len(set(q.ids)) == len(q.ids)
        assert all(c <= q.version for c in q.changed)
        assert q.pos is None or 0 <= q.pos < len(q)
