"""The player's persistence: an acknowledged change survives ``kill -9``.

The queue (``queue_entries``: a row per entry with its song id, order key and priority) and the player
state (``player_state``: current entry, play state, position, preset, intensity, volume, album mode,
repeat/random/single/consume) live in SQLite. A command that changes any of them is *committed
before it is answered*: the player applies the change at once (its clock never waits for the disk),
marks the store :meth:`~PlayerStore.changed`, and hands the reply to :meth:`~PlayerStore.hold`; the
saver task (:meth:`PlayerStore.run`) commits in one transaction what changed since the last commit
(the queue's journal, :meth:`~auralisd.playback.PlayQueue.take_changes`, and the state keys whose value
changed) and only then sends every reply it was holding (a group commit: a burst of changes costs one
transaction). While playing it also saves the position every :data:`SAVE_INTERVAL_S`.

SQLite runs in WAL mode with ``synchronous=NORMAL``: a committed transaction survives the
death of the process. ``tests/auralisd/test_kill9.py`` checks the promise on a real daemon.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import trio

from ..playback import PlayQueue, QueueChanges
from .database import Database, QueueRow, QueueWrite, Track

log = logging.getLogger("auralisd.player")

SAVE_INTERVAL_S: Final = 0.5  # s: while playing, the saved position is at most this old (plus one commit)
SAVE_ON_EXIT_S: Final = 1.0  # s: the last save at shutdown gives up after this long


# a facade call's answer: (ok, value or exception), or a function that makes it when it is sent
Answer = tuple[bool, Any] | Callable[[], tuple[bool, Any]]


def send_reply(reply: trio.MemorySendChannel, answer: tuple[bool, Any]) -> None:
    """Answer a facade call (``(ok, value or exception)``) on its one-shot channel; a caller gone is fine."""
    try:
        reply.send_nowait(answer)
    except (trio.BrokenResourceError, trio.WouldBlock):
        pass
    reply.close()


@dataclass(frozen=True)
class SavedPlayer:
    """What a previous run left in the database, read back at start: the queue as
    ``(song id, order key, priority, track)`` in queue order, and the state map."""

    queue: list[tuple[int, int, int, Track]]
    state: dict[str, Any] = field(default_factory=dict)

    def queue_pos(self) -> int | None:
        """The current entry's position: found by its song id (so a vanished entry before it does not
        shift it), else by the saved position (a state saved before song ids were)."""
        song_id = self.state.get("current_song_id")
        if isinstance(song_id, int) and not isinstance(song_id, bool):
            for pos, row in enumerate(self.queue):
                if row[0] == song_id:
                    return pos
            return None
        saved_pos = self.state.get("queue_pos")
        return saved_pos if isinstance(saved_pos, int) and 0 <= saved_pos < len(self.queue) else None

    def next_song_id(self) -> int:
        value = self.state.get("next_song_id")
        return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 1

    def elapsed_s(self) -> float:
        try:
            return max(0.0, float(self.state.get("elapsed_s", 0.0) or 0.0))
        except (TypeError, ValueError):
            return 0.0


async def load_saved(db: Database) -> SavedPlayer:
    """The saved queue (the entries of forgotten tracks went with them) and the saved state map."""
    state = await db.load_player_state()
    queue = [(row.song_id, row.sort_key, row.prio, track) for row, track in await db.load_queue_entries()]
    return SavedPlayer(queue, state)


def queue_write(changes: QueueChanges[Track]) -> QueueWrite:
    """The rows a commit writes for the queue's journalled changes."""
    rows = []
    removed = []
    for song_id, row in changes.rows.items():
        if row is None:
            removed.append(song_id)
        else:
            key, prio, track = row
            rows.append(QueueRow(song_id, key, prio, track.track_id))
    return QueueWrite(changes.cleared, rows, removed)


class PlayerStore:
    """Group commit of the player's state, owned by the player actor.

    ``queue`` is the player's queue (made with ``journal=True``): each commit writes the entries its
    journal names. ``snapshot()`` returns the state map as it is now (only the keys whose value changed
    since the last commit are written) and ``playing()`` whether the position moves (it is then saved
    every :data:`SAVE_INTERVAL_S`). Every method but :meth:`run` and :meth:`save` is non-blocking and
    called from the actor's loop.
    """

    def __init__(
        self, db: Database, *, queue: PlayQueue[Track], snapshot: Callable[[], dict[str, Any]],
        playing: Callable[[], bool],
    ) -> None:
        self._db = db
        self._queue = queue
        self._snapshot = snapshot
        self._playing = playing
        self.dirty = False  # the state map changed since the last commit
        self._saved: dict[str, Any] = {}  # the state map as last committed (what the database holds)
        # replies held until the change they acknowledge is committed (at most the mailbox's callers)
        self._unacked: list[tuple[trio.MemorySendChannel, Answer]] = []
        self._wake_send, self._wake_receive = trio.open_memory_channel[None](1)

    def changed(self) -> None:
        """The state changed: the next save commits it (queue edits are journalled by the queue itself)."""
        self.dirty = True

    @property
    def pending(self) -> bool:
        """A change is not committed yet (a reply to a command now must wait for it)."""
        return self.dirty or self._queue.has_changes

    def hold(self, reply: trio.MemorySendChannel, answer: Answer) -> None:
        """Send ``answer`` once the changes made so far are committed; wakes the saver at once.

        ``answer`` may be a function that makes it, called when it is sent (the player's status
        after a change is built then, not in its run loop)."""
        self._unacked.append((reply, answer))
        try:
            self._wake_send.send_nowait(None)
        except trio.WouldBlock:  # a wake-up is already pending
            pass

    async def save(self) -> int:
        """Commit what changed since the last commit, then send the replies held for the changes it
        contains. Returns the number of rows written."""
        acks, self._unacked = self._unacked, []  # every held change happened before this snapshot
        changes = self._queue.take_changes()
        state = {k: v for k, v in self._snapshot().items() if not _same(self._saved.get(k, _MISSING), v)}
        self.dirty = False
        if changes is None and not state:  # the database holds all of it already
            _send_acks(acks)
            return 0
        try:
            written = await self._db.save_player(None if changes is None else queue_write(changes), state)
        except BaseException:
            # not known to be committed: the next save writes the whole queue and state map again,
            # and the callers get no acknowledgement
            self._queue.journal_everything()
            self._saved.clear()
            self.dirty = True
            for reply, _ in acks:
                reply.close()
            raise
        self._saved.update(state)
        _send_acks(acks)
        return written

    async def run(self) -> None:
        """The saver task: held replies wake it at once (one transaction for all waiting), and while
        playing it saves the position every :data:`SAVE_INTERVAL_S`. Never returns.

        A change's reply is sent only after its transaction committed (WAL, ``synchronous=NORMAL``:
        a committed transaction survives the death of the process), so an acknowledged change
        survives ``kill -9``; the saved play position lags by at most about ``SAVE_INTERVAL_S``.
        """
        while True:
            with trio.move_on_after(SAVE_INTERVAL_S):
                await self._wake_receive.receive()
            # the tasks the same change woke (an idle MPD client's answer, a watcher's event) run
            # first: the commit's thread would otherwise compete with them for the interpreter
            await trio.lowlevel.checkpoint()
            if self._unacked or self.pending or self._playing():
                await self.save()

    async def close(self) -> None:
        """At shutdown (shielded, bounded by :data:`SAVE_ON_EXIT_S`): a last save; replies it could not
        commit are closed unanswered (their callers get no acknowledgement)."""
        with trio.CancelScope(shield=True):
            with trio.move_on_after(SAVE_ON_EXIT_S):
                try:
                    await self.save()
                except Exception as exc:  # e.g. the database failed first: report, do not mask the cause
                    log.error("could not save the player state: %s", exc)
            for reply, _ in self._unacked:
                reply.close()
            self._unacked.clear()


_MISSING: Final = object()


def _send_acks(acks: list[tuple[trio.MemorySendChannel, Answer]]) -> None:
    """Send the replies held for committed changes (an answer that is a function is made now)."""
    for reply, answer in acks:
        if callable(answer):
            try:
                answer = answer()
            except Exception as exc:  # a bug: its caller gets it, the saver carries on
                answer = (False, exc)
        send_reply(reply, answer)


def _same(a: Any, b: Any) -> bool:
    """The same JSON value (``True`` is not ``1``, ``1.0`` is not ``1``)."""
    return type(a) is type(b) and a == b
