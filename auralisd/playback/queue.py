"""The play queue: entries, the current position, MPD's play order (random rounds), history, flags.

Pure and synchronous (no trio, no I/O): the player actor owns one and calls it from its loop.

Random (like MPD): the entries not yet played in this round wait in a shuffled order
(``upcoming``); ``next``, the end of a track and the gapless preparation all take its head,
so every entry plays once before any repeats. With ``repeat`` the next round's order is
drawn when it is first needed and kept, so the prepared track is the one played.
``previous`` walks back along the order played (``history``); queue edits remap every
stored position, so the order survives adds, deletes and moves.

For MPD's clients every entry also carries a song id (stable while the entry is in the queue,
never handed out twice; the player's store keeps ids across restarts), a priority (0-255: in random mode higher priorities play first) and
the queue version at which it last changed place or content; ``version`` grows with every edit,
so :meth:`PlayQueue.changes_since` answers MPD's ``plchanges``.

Persistence (``journal=True``, the player's queue): every entry also has an order key, an integer
that grows along the queue with gaps between neighbours (:data:`KEY_GAP` apart when appended), so
an insertion or a move takes a key between its new neighbours' and no other entry changes. Keys
belong to places, not entries, in a permutation (``shuffle``, ``swap``): only the entries that
changed place get another key. When two neighbours have no key left between them, the smallest
window around the insertion that leaves :data:`MIN_KEY_STEP` between keys is spread out again
(a window that doubles until it fits; the whole queue at worst). Each edit records the entries it
wrote or removed (song id -> order key, priority, entry) in a journal that the store takes at
its next commit (:meth:`PlayQueue.take_changes`): a commit writes what changed, not the queue.
"""

from __future__ import annotations

import random
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

T = TypeVar("T")

MAX_PRIO: Final = 255  # MPD's priority range is 0..255
HISTORY_LENGTH: Final = 100  # queue positions remembered for `previous` in random mode
FLAGS: Final = ("repeat", "random", "single", "consume")
KEY_GAP: Final = 1 << 32  # order keys of appended entries lie this far apart: 32 halvings before a relabel
KEY_LIMIT: Final = 1 << 62  # order keys lie in (0, KEY_LIMIT), inside SQLite's signed 64-bit INTEGER
MIN_KEY_STEP: Final = 1 << 16  # a relabelled window leaves at least this much between neighbouring keys


class QueueError(LookupError):
    """A position outside the queue, or an unknown option; ``str()`` is the message for the client."""


@dataclass(frozen=True)
class Advance:
    """Where :meth:`PlayQueue.advance` goes: ``index`` (None: the end) and the entry consumed, if any."""

    index: int | None
    consumed: bool


@dataclass(frozen=True)
class QueueChanges(Generic[T]):
    """The queue's changes since the last :meth:`PlayQueue.take_changes`, for the store to commit.

    ``cleared``: every stored entry goes first. ``rows``: by song id, the entry's ``(order key,
    priority, entry)`` as it is now, or None when it left the queue.
    """

    cleared: bool
    rows: dict[int, tuple[int, int, T] | None]


class PlayQueue(Generic[T]):
    """Entries of type ``T`` with MPD's play order. ``rng`` draws the random order (seed it in tests);
    ``journal``: record every change for :meth:`take_changes` (the queue that is persisted)."""

    def __init__(self, rng: random.Random | None = None, *, journal: bool = False) -> None:
        self.rng = rng if rng is not None else random.Random()
        self.entries: list[T] = []
        self.pos: int | None = None
        self.flags: dict[str, bool] = {name: False for name in FLAGS}
        self.history: list[int] = []  # positions played before the current one (at most HISTORY_LENGTH)
        self.upcoming: list[int] = []  # random: positions not yet played in this round, in play order
        self.next_round: list[int] | None = None  # random + repeat: the next round's order, once drawn
        # per entry, parallel to ``entries``: song id, priority, queue version of its last change
        self.ids: list[int] = []
        self.prios: list[int] = []
        self.changed: list[int] = []
        self.keys: list[int] = []  # order keys, strictly increasing along the queue (persistence)
        self.version = 1  # grows by one with every edit (MPD's playlist version)
        self._next_id = 1
        # changes not taken yet (journal=True): at most one per entry plus one per entry removed since
        self._journal = journal
        self._cleared = False
        self._rows: dict[int, tuple[int, int, T] | None] = {}

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def next_id(self) -> int:
        """The song id the next added entry gets (saved, so that ids are not reused after a restart)."""
        return self._next_id

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
            self._remove_meta([current])
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
        self.ids[pos:pos] = range(self._next_id, self._next_id + count)
        self._next_id += count
        self.prios[pos:pos] = [0] * count
        self.changed[pos:pos] = [0] * count
        self.keys[pos:pos] = [0] * count
        self._place(pos, pos + count)
        self._touch(pos, len(self.entries))
        if self.pos is not None and self.pos >= pos:
            self.pos += count
        self._remap(lambda p: p + count if p >= pos else p)
        if self.flags["random"]:  # new entries join the not-yet-played part at random places
            for p in range(pos, pos + count):
                self.upcoming.insert(self.rng.randint(0, len(self.upcoming)), p)
            self._order_by_prio()
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
        self._remove_meta(removed)
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
        for meta in (self.ids, self.prios, self.changed):
            meta.insert(to_pos, meta.pop(from_pos))
        del self.keys[from_pos]
        self.keys.insert(to_pos, 0)
        self._place(to_pos, to_pos + 1)  # a key between its new neighbours': no other entry is written
        self._touch(min(from_pos, to_pos), max(from_pos, to_pos) + 1)
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
        self.ids.clear()
        self.prios.clear()
        self.changed.clear()
        self.keys.clear()
        if self._journal:
            self._cleared = True
            self._rows.clear()
        self.version += 1
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
            self._order_by_prio()
        else:
            self.upcoming = []

    def permute(self, order: Sequence[int]) -> None:
        """Put the entries in a new order: ``order[i]`` is the old position of new position ``i``.

        The current entry, the history and the random order follow their entries.
        """
        n = len(self.entries)
        if sorted(order) != list(range(n)):
            raise QueueError("not a permutation of the queue")
        new_of_old = [0] * n
        for new, old in enumerate(order):
            new_of_old[old] = new
        self.entries = [self.entries[old] for old in order]
        self.ids = [self.ids[old] for old in order]
        self.prios = [self.prios[old] for old in order]
        self.changed = [self.changed[old] for old in order]
        if self.pos is not None:
            self.pos = new_of_old[self.pos]
        self._remap(new_of_old.__getitem__)
        moved = [new for new, old in enumerate(order) if new != old]
        self._mark(moved)  # keys stay with the places: an entry that changed place takes its new place's key
        if moved:
            self._touch(min(moved), max(moved) + 1)

    def shuffle(self, start: int = 0, end: int | None = None) -> None:
        """Shuffle the entries in ``[start, end)`` (default: all); MPD's ``shuffle``.

        Like MPD, a playing entry inside the range moves to the range's first place, so what
        is still to come is what gets shuffled.
        """
        end = len(self.entries) if end is None else end
        if not 0 <= start <= end <= len(self.entries):
            raise QueueError(f"bad range {start}:{end} (queue length {len(self.entries)})")
        inside = list(range(start, end))
        if self.pos is not None and start <= self.pos < end:
            inside.remove(self.pos)
            self.rng.shuffle(inside)
            inside.insert(0, self.pos)
        else:
            self.rng.shuffle(inside)
        self.permute([*range(start), *inside, *range(end, len(self.entries))])

    def swap(self, a: int, b: int) -> None:
        """Exchange the entries at positions ``a`` and ``b``."""
        self.check(a)
        self.check(b)
        order = list(range(len(self.entries)))
        order[a], order[b] = order[b], order[a]
        self.permute(order)

    def crop_positions(self) -> list[int]:
        """Every position but the current one (all of them when nothing is current): ``crop`` deletes these."""
        return [p for p in range(len(self.entries)) if p != self.pos]

    def index_of_id(self, song_id: int) -> int:
        """The position of song id ``song_id``."""
        try:
            return self.ids.index(song_id)
        except ValueError:
            raise QueueError(f"no song id {song_id}") from None

    def set_prio(self, prio: int, positions: Sequence[int]) -> None:
        """Give ``positions`` priority ``prio`` (0-255); in random mode higher priorities play first."""
        if not 0 <= prio <= MAX_PRIO:
            raise QueueError(f"priority must be between 0 and {MAX_PRIO}")
        for p in positions:
            self.check(p)
        for p in positions:
            if self.prios[p] != prio:
                self.prios[p] = prio
                self.changed[p] = self.version + 1
                self._mark((p,))
        self.version += 1
        self._order_by_prio()

    def changes_since(self, version: int) -> list[int]:
        """Positions whose entry was added, moved or changed after queue ``version`` (MPD's
        ``plchanges``); every position when ``version`` is newer than the queue's."""
        if version > self.version:
            return list(range(len(self.entries)))
        return [p for p, changed in enumerate(self.changed) if changed > version]

    # ------------------------------------------------------------------ persistence (journal=True)
    def restore(self, rows: Sequence[tuple[int, int, int, T]], next_id: int = 1) -> None:
        """Load the entries an earlier run saved, into an empty queue: ``(song id, order key, priority,
        entry)`` in queue order. Song ids and priorities come back as they were; ids from ``next_id`` on
        (and above every restored one) are handed out next. Keys that are not strictly increasing inside
        ``(0, KEY_LIMIT)`` are spread out again (and journalled); nothing else is journalled."""
        if self.entries:
            raise QueueError("restore needs an empty queue")
        ids = [int(r[0]) for r in rows]
        if len(set(ids)) != len(ids):
            raise QueueError("restored song ids are not unique")
        self.ids = ids
        self.keys = [int(r[1]) for r in rows]
        self.prios = [min(max(int(r[2]), 0), MAX_PRIO) for r in rows]
        self.entries = [r[3] for r in rows]
        self.changed = [0] * len(rows)
        self._next_id = max(int(next_id), max(ids, default=0) + 1)
        self._touch(0, len(rows))
        keys = self.keys
        if any(not 0 < k < KEY_LIMIT for k in keys) or any(a >= b for a, b in zip(keys, keys[1:], strict=False)):
            self._relabel(0, len(keys))

    @property
    def has_changes(self) -> bool:
        """Changes are journalled that :meth:`take_changes` has not taken yet."""
        return self._cleared or bool(self._rows)

    def take_changes(self) -> QueueChanges[T] | None:
        """The changes since the last call (None: none), and a fresh journal."""
        if not self.has_changes:
            return None
        changes = QueueChanges(self._cleared, self._rows)
        self._cleared, self._rows = False, {}
        return changes

    def journal_everything(self) -> None:
        """Journal the whole queue as a replacement (a commit failed: what it held is unknown)."""
        if self._journal:
            self._cleared = True
            self._rows = {}
            self._mark(range(len(self.entries)))

    # ------------------------------------------------------------------ internals
    def _mark(self, positions: Iterable[int]) -> None:
        """Journal the entries at ``positions`` as they are now (their order key, priority or place changed)."""
        if self._journal:
            for p in positions:
                self._rows[self.ids[p]] = (self.keys[p], self.prios[p], self.entries[p])

    def _place(self, start: int, end: int) -> None:
        """Give the entries just put at ``[start, end)`` order keys between their neighbours' (evenly spread;
        :data:`KEY_GAP` apart at the end of the queue); a relabel when there is no room."""
        keys = self.keys
        count = end - start
        lo = keys[start - 1] if start > 0 else 0
        if end < len(keys):
            step = (keys[end] - lo) // (count + 1)
        else:
            step = KEY_GAP if lo + KEY_GAP * count < KEY_LIMIT else 0
        if step < 1:
            self._relabel(start, end)
            return
        keys[start:end] = range(lo + step, lo + step * count + 1, step)
        self._mark(range(start, end))

    def _relabel(self, start: int, end: int) -> None:
        """Spread out the keys of the smallest window around ``[start, end)`` (growing by doubling) in which
        they can lie at least :data:`MIN_KEY_STEP` apart; the whole queue always can."""
        keys = self.keys
        n = len(keys)
        grow = 1
        while True:
            a, b = max(0, start - grow), min(n, end + grow)
            lo = keys[a - 1] if a > 0 else 0
            hi = keys[b] if b < n else KEY_LIMIT
            step = (hi - lo) // (b - a + 1)
            if b == n:  # leave room after the last entry: appends come there
                step = min(step, KEY_GAP)
            if step >= MIN_KEY_STEP or (a == 0 and b == n):
                break
            grow *= 2
        keys[a:b] = range(lo + step, lo + step * (b - a) + 1, step)
        self._mark(range(a, b))

    def _touch(self, start: int, end: int) -> None:
        """One edit: the version grows and entries ``[start, end)`` are marked changed in it."""
        self.version += 1
        for p in range(start, end):
            self.changed[p] = self.version

    def _remove_meta(self, removed: Sequence[int]) -> None:
        """Drop the metadata of ``removed`` (ascending positions); later entries moved up."""
        for p in reversed(removed):
            if self._journal:
                self._rows[self.ids[p]] = None
            del self.ids[p], self.prios[p], self.changed[p], self.keys[p]
        self._touch(removed[0] if removed else len(self.ids), len(self.ids))

    def _order_by_prio(self) -> None:
        """Random mode: the not-yet-played entries of higher priority come first (stable otherwise)."""
        if self.flags["random"] and any(self.prios):
            self.upcoming.sort(key=lambda p: -self.prios[p])

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
