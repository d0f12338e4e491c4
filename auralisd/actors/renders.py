"""Render-ahead for every player: runs the fetches a :class:`~auralisd.playback.Deck` asks for and settles them.

The one fetch machinery of the shared player and of every private session (and of the A/B side of
``/stream``). The deck decides what is wanted and how urgently (:meth:`Deck.schedule
<auralisd.playback.Deck.schedule>`); :class:`DeckRenders` takes what the chunk cache already holds,
starts one task per remaining fetch in its owner's nursery (through :class:`~auralisd.actors.mastering.Mastering`:
cache, single flight, pool priority; chunks arrive at the output rate), hands each outcome to the owner
as a :class:`RenderReport` (the player posts it to its mailbox, a session settles it at once), and
:meth:`DeckRenders.settle` applies it to the deck with one rule for everyone:

- a chunk or piece that arrives for a deck still waiting for it is taken (else it is stale);
- a fast-start piece that fails is counted and forgotten (the chunk still covers playback);
- a chunk that fails transiently (a dead worker, a pool timeout, an unexpected error) is fetched again,
  at most :data:`~auralisd.playback.deck.CHUNK_RETRIES` times, as urgently as the playhead's chunk;
- a chunk that cannot be rendered (bad audio) ends the track where it starts.

The unprocessed original (``deck.original``: the A/B side) renders on the same cached path with no plan,
so closing a session or changing preset never kills a worker.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np
import trio
import trio_parallel

from .. import jobs
from ..playback import Deck, Fetch
from .mastering import Mastering
from .pool import JobPriority, PoolJobAbandoned, PoolTimeout

log = logging.getLogger("auralisd.renders")


class Outcome(enum.Enum):
    """What :meth:`DeckRenders.settle` did with a report."""

    CHUNK = "chunk"  # a chunk arrived and the deck took it
    PIECE = "piece"  # a fast-start piece arrived and the deck took it
    STALE = "stale"  # nobody waits for it any more (the deck closed, or the playhead left it behind)
    PIECE_FAILED = "piece_failed"  # a piece failed: counted; the chunk covers playback
    RETRY = "retry"  # a chunk failed transiently and was asked for again
    BROKEN = "broken"  # a chunk cannot be rendered: the track ends where it starts (``deck.end_frame``)


@dataclass(frozen=True)
class RenderReport:
    """The outcome of one fetch: ``samples``, or a failure (``code``, first line of ``message``, ``fatal``)."""

    deck: Deck
    fetch: Fetch
    samples: np.ndarray | None = None
    code: str = ""
    message: str = ""
    fatal: bool = False
    error: BaseException | None = None


@dataclass(frozen=True)
class RenderStatistics:
    chunk_retries: int
    piece_failures: int


Report = Callable[[RenderReport], Awaitable[None]]


class DeckRenders:
    """Fetches for the decks of one owner (an actor), at ``out_rate``, in the owner's nursery.

    ``report(report)`` delivers each outcome to the owner, which calls :meth:`settle` from its own loop
    (a deck is only ever changed by its owner). Every method but the fetch tasks is non-blocking.
    """

    def __init__(self, mastering: Mastering, out_rate: int, report: Report, nursery: trio.Nursery | None = None) -> None:
        self._mastering = mastering
        self._out_rate = int(out_rate)
        self._report = report
        self.nursery = nursery
        self.chunk_retries = 0
        self.piece_failures = 0

    def statistics(self) -> RenderStatistics:
        return RenderStatistics(self.chunk_retries, self.piece_failures)

    def cached(self, deck: Deck) -> Callable[[str, int], np.ndarray | None]:
        """What the chunk cache already holds for ``deck`` (taken at once, counted as a hit)."""
        plan = None if deck.original else deck.plan
        piece_frames = deck.pieces_grid.chunk_frames

        def hit(kind: str, index: int) -> np.ndarray | None:
            frames = piece_frames if kind == "piece" else 0
            album = () if deck.album is None else (deck.album,)  # album mode: rendered from the album
            return self._mastering.cached_chunk(deck.track, plan, index, frames, self._out_rate, *album)

        return hit

    def schedule(self, deck: Deck, head: int, render_ahead: int, *, playhead: bool, asked: int | None = None) -> int:
        """Keep ``deck``'s render window around output frame ``head`` fetched (see :meth:`Deck.schedule`);
        returns how many fetches started. ``asked``: their place in the pool's line among equal
        priorities (a ticket's ``seq`` taken when the command that wants them arrived); default: now."""
        if deck.closed:
            return 0
        fetches = deck.schedule(head, render_ahead, playhead=playhead, cached=self.cached(deck))
        for fetch in fetches:
            self.start(deck, fetch, asked)
        return len(fetches)

    def start(self, deck: Deck, fetch: Fetch, asked: int | None = None) -> None:
        assert self.nursery is not None, "DeckRenders needs its owner's nursery"
        scope = trio.CancelScope()
        deck.started(fetch, scope)
        if fetch.kind == "piece":
            log.debug("deck %d: fast-start piece %d requested", deck.deck_id, fetch.index)
        # numbered now, as asked: the fetch task may reach the pool after fetches asked for later
        # (trio may run the tasks started together in reverse), and equal priorities are served in ticket order
        ticket = self._mastering.ticket(fetch.priority, asked)
        self.nursery.start_soon(self._fetch, deck, fetch, scope, ticket)

    async def _fetch(self, deck: Deck, fetch: Fetch, scope: trio.CancelScope, ticket: int | JobPriority) -> None:
        track, plan = deck.track, None if deck.original else deck.plan
        album = {} if deck.album is None else {"album": deck.album}  # album mode: rendered from the album
        with scope:
            try:
                if fetch.kind == "piece":
                    samples = await self._mastering.render_piece(
                        track, plan, fetch.index, deck.pieces_grid.chunk_frames, out_rate=self._out_rate,
                        priority=ticket, **album,
                    )  # fmt: skip
                else:
                    samples = await self._mastering.render_chunk(
                        track, plan, fetch.index, out_rate=self._out_rate, priority=ticket, **album
                    )
            except PoolJobAbandoned:
                return
            except jobs.JobFailed as exc:
                report = RenderReport(deck, fetch, code=exc.code, message=_first_line(exc.message, exc),
                                      fatal=True, error=exc)
            except (PoolTimeout, trio_parallel.BrokenWorkerError) as exc:
                report = RenderReport(deck, fetch, code="internal", message=_first_line(str(exc), exc), error=exc)
            except Exception as exc:  # a bug somewhere below: report it, retry, never crash playback
                if fetch.kind == "chunk":
                    log.exception("rendering chunk %d of %s failed unexpectedly", fetch.index, track.path)
                report = RenderReport(deck, fetch, code="internal", message=_first_line(str(exc), exc), error=exc)
            else:
                report = RenderReport(deck, fetch, samples=samples)
            await self._report(report)

    def settle(self, report: RenderReport) -> Outcome:
        """Apply ``report`` to its deck (from the owner's loop); a transient chunk failure is fetched again."""
        deck, fetch = report.deck, report.fetch
        if report.samples is not None:
            if deck.closed:
                return Outcome.STALE
            if fetch.kind == "piece":
                return Outcome.PIECE if deck.accept_piece(fetch.index, report.samples) else Outcome.STALE
            if not deck.accept_chunk(fetch.index, report.samples):
                return Outcome.STALE
            log.debug("deck %d: chunk %d ready", deck.deck_id, fetch.index)
            return Outcome.CHUNK
        if fetch.kind == "piece":
            # a piece is only a head start: count and log it; the playhead's chunk still covers playback.
            # It stays marked as fetched, so it is not requested (nor logged) again for this deck.
            self.piece_failures += 1
            log.warning("fast-start piece %d of %s failed (%s); playback waits for its chunk",
                        fetch.index, deck.track.path, report.message)
            return Outcome.PIECE_FAILED
        if deck.closed:
            return Outcome.STALE
        if deck.chunk_failed(fetch.index, fatal=report.fatal):
            self.chunk_retries += 1
            log.warning("chunk %d of %s failed (%s); retrying", fetch.index, deck.track.path, report.message)
            self.start(deck, deck.retry(fetch.index))
            return Outcome.RETRY
        log.error("cannot render chunk %d of %s: %s", fetch.index, deck.track.path, report.message)
        return Outcome.BROKEN


def _first_line(message: str, exc: BaseException) -> str:
    return (message.splitlines() or [""])[0] or type(exc).__name__
