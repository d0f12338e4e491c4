"""The player's persistence: an acknowledged change survives ``kill -9``.

The queue and the player state (queue position, play state, position, preset, intensity,
volume, album mode, repeat/random/single/consume) live in SQLite (``queue``,
``player_state``). A command that changes any of them is *committed before it is answered*:
the player applies the change at once (its clock never waits for the disk), marks the store
:meth:`~PlayerStore.changed`, and hands the reply to :meth:`~PlayerStore.hold`; the saver task
(:meth:`PlayerStore.run`) takes one snapshot, commits it in one transaction and only then
sends every reply it was holding (a group commit: a burst of changes costs one transaction).
While playing it also saves the position every :data:`SAVE_INTERVAL_S`.

SQLite runs in WAL mode with ``synchronous=NORMAL``: a committed transaction survives the
death of the process. ``tests/auralisd/test_kill9.py`` checks the promise on a real daemon.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import trio

from .database import Database, Track

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
    """What a previous run left in the database, read back at start."""

    queue: list[Track]
    state: dict[str, Any] = field(default_factory=dict)

    def queue_pos(self) -> int | None:
        pos = self.state.get("queue_pos")
        return pos if isinstance(pos, int) and 0 <= pos < len(self.queue) else None

    def elapsed_s(self) -> float:
        try:
            return max(0.0, float(self.state.get("elapsed_s", 0.0) or 0.0))
        except (TypeError, ValueError):
            return 0.0


async def load_saved(db: Database) -> SavedPlayer:
    """The saved queue (entries whose track is gone are skipped) and the saved state map."""
    state = await db.load_player_state()
    queue = []
    for track_id in await db.load_queue():
        track = await db.get_track(track_id)
        if track is not None:
            queue.append(track)
    return SavedPlayer(queue, state)


class PlayerStore:
    """Group commit of the player's state, owned by the player actor.

    ``snapshot()`` returns the state map as it is now, ``queue_ids()`` the queue's track ids and
    ``playing()`` whether the position moves (it is then saved every :data:`SAVE_INTERVAL_S`).
    Every method but :meth:`run` and :meth:`save` is non-blocking and called from the actor's loop.
    """

    def __init__(
        self, db: Database, *, snapshot: Callable[[], dict[str, Any]], queue_ids: Callable[[], list[int]],
        playing: Callable[[], bool],
    ) -> None:
        self._db = db
        self._snapshot = snapshot
        self._queue_ids = queue_ids
        self._playing = playing
        self.dirty = False  # the state map changed since the last commit
        self.queue_dirty = False  # the queue changed since the last commit
        # replies held until the change they acknowledge is committed (at most the mailbox's callers)
        self._unacked: list[tuple[trio.MemorySendChannel, Answer]] = []
        self._wake_send, self._wake_receive = trio.open_memory_channel[None](1)

    def changed(self, *, queue: bool = False) -> None:
        """The state (and, with ``queue``, the queue) changed: the next save commits it."""
        self.dirty = True
        if queue:
            self.queue_dirty = True

    @property
    def pending(self) -> bool:
        """A change is not committed yet (a reply to a command now must wait for it)."""
        return self.dirty or self.queue_dirty

    def hold(self, reply: trio.MemorySendChannel, answer: Answer) -> None:
        """Send ``answer`` once the changes made so far are committed; wakes the saver at once.

        ``answer`` may be a function that makes it, called when it is sent (the player's status
        after a change is built then, not in its run loop)."""
        self._unacked.append((reply, answer))
        try:
            self._wake_send.send_nowait(None)
        except trio.WouldBlock:  # a wake-up is already pending
            pass

    async def save(self) -> None:
        """Commit the state as it is now, then send the replies held for the changes it contains."""
        acks, self._unacked = self._unacked, []  # every held change happened before this snapshot
        queue = self._queue_ids() if self.queue_dirty else None
        snapshot = self._snapshot()
        self.dirty = self.queue_dirty = False
        try:
            await self._db.save_player(queue, snapshot)
        except BaseException:
            for reply, _ in acks:  # not committed: the callers get no acknowledgement
                reply.close()
            raise
        for reply, answer in acks:
            if callable(answer):
                try:
                    answer = answer()
                except Exception as exc:  # a bug: its caller gets it, the saver carries on
                    answer = (False, exc)
            send_reply(reply, answer)

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
