"""The play queue on its own: MPD's order rules, remapping on edits, consume/single/repeat (no trio)."""

from __future__ import annotations

import random

import pytest

from auralisd.playback import PlayQueue, QueueError


def queue(n: int, seed: int = 1, **flags: bool) -> PlayQueue[str]:
    q: PlayQueue[str] = PlayQueue(random.Random(seed))
    q.add([f"t{i}" for i in range(n)])
    q.set_flags(flags)
    return q


def play_through(q: PlayQueue[str], steps: int) -> list[str]:
    q.set_current(q.next_index(auto=False))
    played = [q.current]
    for _ in range(steps):
        step = q.advance(auto=True)
        q.set_current(step.index)
        if step.index is None:
            break
        played.append(q.current)
    return played


def test_in_order_plays_each_entry_then_stops_and_repeat_wraps() -> None:
    assert play_through(queue(3), 10) == ["t0", "t1", "t2"]
    assert play_through(queue(3, repeat=True), 5) == ["t0", "t1", "t2", "t0", "t1", "t2"]


@pytest.mark.parametrize("seed", range(20))
def test_random_plays_every_entry_once_per_round_and_never_twice_in_a_row(seed: int) -> None:
    played = play_through(queue(5, seed, random=True, repeat=True), 5 * 4 - 1)
    for k in range(4):
        assert sorted(played[5 * k : 5 * k + 5]) == [f"t{i}" for i in range(5)]
    assert all(a != b for a, b in zip(played, played[1:], strict=False))
    assert play_through(queue(5, seed, random=True), 20)[5:] == []  # no repeat: one round, then the end


def test_the_prepared_next_entry_is_the_one_that_plays() -> None:
    q = queue(4, 7, random=True, repeat=True)
    q.set_current(q.next_index(auto=False))
    for _ in range(12):
        announced = q.next_index(auto=True)
        assert q.next_index(auto=True) == announced  # stable until something changes
        step = q.advance(auto=True)
        assert step.index == announced
        q.set_current(step.index)


def test_previous_walks_back_along_the_order_played_then_next_walks_forward_again() -> None:
    q = queue(6, 3, random=True)
    q.set_current(q.next_index(auto=False))
    order = [q.pos]
    for _ in range(3):
        q.set_current(q.advance(auto=False).index)
        order.append(q.pos)
    back = []
    for _ in range(3):
        q.set_current(q.previous_index())
        back.append(q.pos)
    assert back == order[-2::-1]
    forward = []
    for _ in range(3):
        q.set_current(q.advance(auto=False).index)
        forward.append(q.pos)
    assert forward == order[1:]


def test_edits_keep_the_order_of_what_is_left() -> None:
    q = queue(6, 11, random=True)
    q.set_current(q.next_index(auto=False))
    upcoming = [q.entries[p] for p in q.upcoming]
    q.move(0, 5)
    q.add(["new"], 2)
    q.delete([q.entries.index(upcoming[0])])
    left = [q.entries[p] for p in q.upcoming]
    assert [t for t in left if t != "new"] == upcoming[1:]  # same relative order, deleted one gone
    assert "new" in left and q.current == q.entries[q.pos]


def test_deleting_the_current_entry_moves_on_to_the_one_after_it() -> None:
    q = queue(3)
    q.set_current(1)
    assert q.delete([1]) and q.pos == 1 and q.current == "t2"
    q.set_current(1)
    assert q.delete([1]) and q.pos is None  # it was the last


def test_consume_removes_what_played_and_single_stops_or_repeats_one() -> None:
    q = queue(3, consume=True)
    assert play_through(q, 10) == ["t0", "t1", "t2"] and q.entries == []
    q = queue(3, single=True)
    q.set_current(0)
    assert q.advance(auto=True).index is None and q.advance(auto=False).index == 1  # `next` still moves
    q = queue(3, single=True, repeat=True)
    q.set_current(1)
    assert q.advance(auto=True).index == 1


def test_bad_positions_and_options_are_refused_with_a_message() -> None:
    q = queue(2)
    with pytest.raises(QueueError, match="no queue position 5"):
        q.check(5)
    with pytest.raises(QueueError, match="no queue position 3"):
        q.add(["x"], 3)
    with pytest.raises(QueueError, match="unknown option 'shuffle'"):
        q.set_flags({"shuffle": True})
    assert q.entries == ["t0", "t1"]
