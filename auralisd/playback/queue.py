"""The play queue: entries, the current position, MPD's play order (random rounds), history, flags.

Pure and synchronous (no trio, no I/O): the player actor owns one and calls it from its loop.

Random (like MPD): the entries not yet played in this round wait in a shuffled order
(``upcoming``); ``next``, the end of a track and the gapless preparation all take its head,
so every entry plays once before any repeats. With ``repeat`` the next round's order is
drawn when it is first needed and kept, so the prepared track is the one played.
``previous`` walks back along the order played (``history``); queue edits remap every
stored position, so the order survives adds, deletes and moves.
"""

from __future__ import annotations

import random
from bisect import bisect_left
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

T = TypeVar("T")

HISTORY_LENGTH: Final = 100  # queue positions remembered for `previous` in random mode
FLAGS: Final = ("repeat", "random", "single", "consume")


class QueueError(LookupError):
    """A position outside the queue, or an unknown option; ``str()`` is the message for the client."""


@dataclass(frozen=True)
class Advance:
    """Where :meth:`PlayQueue.advance` goes: ``index`` (None: the end) and the entry consumed, if any."""

    index: int | None
    consumed: bool


class PlayQueue(Generic[T]):
    """Entries of type ``T`` with MPD's play order. ``rng`` draws the random order (seed it in tests)."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self.rng = rng if rng is not None else random.Random()
        self.entries: list[T] = []
        self.pos: int | None = None
        self.flags: dict[str, bool] = {name: False for name in FLAGS}
        self.history: list[int] = []  # positions played before the current one (at most HISTORY_LENGTH)
        self.upcoming: list[int] = []  # random: positions not yet played in this round, in play order
        self.next_round: list[int] | None = None  # random + repeat: the next round's order, once drawn

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def current(self) -> T | None:
        return None if self.pos is None else self.entries[self.pos]

    def check(self, pos: int) -> None:
        if not 0 <= pos < len(self.entries):
            raise QueueError(f"no queue position {pos} (queue length {len(self.entries)})")

    # ------------------------------------------------------------------ the order
    def next_index(self, *, auto: bool) -> int | None:
        """The position that plays next; the same answer until the queue or the flags change.

        ``auto`` is True for the end of a track (``single`` applies), False for ``next``.
        """
        if self.pos is None:
            if not self.entries:
                return None
            return self.upcoming[0] if self.flags["random"] and self.upcoming else 0
        n = len(self.entries)
        if auto and self.flags["single"]:
            return self.pos if self.flags["repeat"] else None
        if self.flags["random"]:
            return self._random_next()
        if self.pos + 1 < n:
            return self.pos + 1
        return 0 if self.flags["repeat"] and n else None

    def previous_index(self) -> int:
        """Where ``previous`` goes (the caller checked that something is current)."""
        assert self.pos is not None
        if self.flags["random"]:  # back along the order played; the current entry is next again
            if self.history:
                index = self.history.pop()
                self.upcoming.insert(0, self.pos)
                return index
            return self.pos
        if self.pos > 0:
            return self.pos - 1
        if self.flags["repeat"]:
            return len(self.entries) - 1
        return 0

    def remember_current(self) -> None:
        """A client jumps elsewhere (``play pos``): the current entry goes into the history."""
        if self.pos is not None:
            self._remember(self.pos)

    def set_current(self, index: int | None) -> None:
        """Make ``index`` current (None: stopped, and the next ``play`` starts a new round)."""
        self.pos = index
        if not self.flags["random"]:
            return
        if index is None:
            self.upcoming = self._shuffled(range(len(self.entries)))
            self.next_round = None
            return
        self._begin_round(index)
        if index in self.upcoming:
            self.upcoming.remove(index)

    def advance(self, *, auto: bool, skip: bool = False) -> Advance:
        """Move past the current entry (end of track, ``next``, or an entry that cannot play).

        Applies ``consume`` (the entry leaves the queue) and the history; the caller makes
        ``index`` current with :meth:`set_current`. ``skip``: the current entry cannot play,
        so it is not repeated.
        """
        index = self.next_index(auto=auto and not skip)
        if skip and index == self.pos:
            index = None
        if index is not None:
            self._begin_round(index)
        current = self.pos
        consumed = False
        if self.flags["consume"] and current is not None and current < len(self.entries):
            del self.entries[current]
            gone, current = current, None  # gone: not in the history either
            self._remap(lambda p: None if p == gone else p - (p > gone))
            consumed = True
            if index is not None and index > gone:
                index -= 1
            elif index == gone:
                index = gone if gone < len(self.entries) else None
        if current is not None and index is not None:
            self._remember(current)
        return Advance(index, consumed)

    # ------------------------------------------------------------------ edits
    def add(self, items: Sequence[T], pos: int | None = None) -> int:
        """Insert ``items`` at ``pos`` (default: the end); returns the position of the first."""
        if pos is None:
            pos = len(self.entries)
        if not 0 <= pos <= len(self.entries):
            raise QueueError(f"no queue position {pos} (queue length {len(self.entries)})")
        self.entries[pos:pos] = items
        count = len(items)
        if self.pos is not None and self.pos >= pos:
            self.pos += count
        self._remap(lambda p: p + count if p >= pos else p)
        if self.flags["random"]:  # new entries join the not-yet-played part at random places
            for p in range(pos, pos + count):
                self.upcoming.insert(self.rng.randint(0, len(self.upcoming)), p)
        return pos

    def delete(self, positions: Sequence[int]) -> bool:
        """Remove ``positions``; returns True when the current entry was among them.

        Then ``pos`` is where playback goes on (the entry that followed, the random head, or None)
        and the caller loads it with :meth:`set_current`.
        """
        for p in positions:
            self.check(p)
        removing_current = self.pos is not None and self.pos in positions
        removed = sorted(set(positions))
        for p in reversed(removed):
            del self.entries[p]
            if self.pos is not None and p < self.pos:
                self.pos -= 1
        gone = set(removed)
        self._remap(lambda p: None if p in gone else p - bisect_left(removed, p))
        if removing_current:
            assert self.pos is not None
            if self.flags["random"]:
                self.pos = self._random_next()
            elif self.pos >= len(self.entries):
                self.pos = None
        return removing_current

    def move(self, from_pos: int, to_pos: int) -> None:
        self.check(from_pos)
        self.check(to_pos)
        self.entries.insert(to_pos, self.entries.pop(from_pos))
        order = list(range(len(self.entries)))
        order.insert(to_pos, order.pop(from_pos))
        new_of_old = {old: new for new, old in enumerate(order)}
        self._remap(new_of_old.__getitem__)
        if self.pos is not None:
            if self.pos == from_pos:
                self.pos = to_pos
            elif from_pos < self.pos <= to_pos:
                self.pos -= 1
            elif to_pos <= self.pos < from_pos:
                self.pos += 1

    def clear(self) -> None:
        self.entries.clear()
        self.history.clear()
        self.upcoming.clear()
        self.next_round = None
        self.pos = None

    def set_flags(self, flags: dict[str, bool]) -> None:
        """Set some of ``repeat``/``random``/``single``/``consume``; switching random draws a new round."""
        for key in flags:
            if key not in self.flags:
                raise QueueError(f"unknown option {key!r}")
        was_random = self.flags["random"]
        for key, value in flags.items():
            self.flags[key] = bool(value)
        if self.flags["random"] != was_random:
            self.reset_order()

    def reset_order(self) -> None:
        """A fresh round from the current entry (random switched on, or state restored)."""
        self.next_round = None
        if self.flags["random"]:
            self.upcoming = self._shuffled([i for i in range(len(self.entries)) if i != self.pos])
        else:
            self.upcoming = []

    # ------------------------------------------------------------------ internals
    def _remember(self, index: int) -> None:
        self.history.append(index)
        del self.history[:-HISTORY_LENGTH]

    def _shuffled(self, positions: Sequence[int] | range) -> list[int]:
        order = list(positions)
        self.rng.shuffle(order)
        return order

    def _random_next(self) -> int | None:
        """Head of this round's order; with ``repeat`` after the last one, the next round's head."""
        if self.upcoming:
            return self.upcoming[0]
        n = len(self.entries)
        if not self.flags["repeat"] or n == 0:
            return None
        if self.next_round is None:  # drawn once, so the prepared next track is the one that plays
            order = self._shuffled(range(n))
            if n > 1 and order[0] == self.pos:  # a new round does not start with the track just played
                j = self.rng.randrange(1, n)
                order[0], order[j] = order[j], order[0]
            self.next_round = order
        return self.next_round[0]

    def _begin_round(self, index: int) -> None:
        """``index`` starts the drawn next round (this round is over): make that round current."""
        if self.flags["random"] and not self.upcoming and self.next_round and self.next_round[0] == index:
            self.upcoming, self.next_round = self.next_round, None

    def _remap(self, new_pos: Callable[[int], int | None]) -> None:
        """Positions moved (``new_pos`` maps old to new, None when removed): keep the order valid."""

        def remap(positions: list[int]) -> list[int]:
            return [q for q in map(new_pos, positions) if q is not None]

        self.upcoming = remap(self.upcoming)
        self.history = remap(self.history)
        self.next_round = None  # drawn again from the new queue when needed
