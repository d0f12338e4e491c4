"""The deck: one track with one plan (or the unprocessed original), read at the output rate.

Pure bookkeeping, no trio: which chunks are wanted around a playhead and at what priority,
which are held, which failed, and slicing a block out of what is held. The actor runs the
fetches the deck asks for (:meth:`Deck.schedule` returns :class:`Fetch` records) and reports
back with :meth:`Deck.accept_chunk` / :meth:`Deck.chunk_failed`; a pending fetch is stored as
an opaque handle with a ``cancel()`` method (the actor's cancel scope), cancelled when the
playhead leaves it behind.

Chunks arrive already at the output rate (the render job resamples, the chunk key carries
the rate): output chunk ``k`` covers output frames :meth:`ChunkGrid.span(k)
<auralis.resample.ChunkGrid.span>`, so reading a block is slicing, never DSP.

Memory: a deck holds at most ``render_ahead + 1`` chunks (the playhead's and the look-ahead)
plus :data:`FAST_START_PIECES` pieces, whatever the seeks: everything behind the playhead is
dropped at the next :meth:`schedule`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import numpy as np

from auralis.resample import ChunkGrid, resampler

PIECES_PER_CHUNK: Final = 5  # fast-start pieces: 1 s when chunks are 5 s
FAST_START_PIECES: Final = 2  # pieces requested at the playhead while its chunk is missing
CHUNK_RETRIES: Final = 3  # extra attempts for a chunk after the pool gave up on it
# pool priorities (lower starts first): the playhead's pieces, then the playhead's chunk, then look-ahead
PRIORITY_PIECE: Final = 0  # + the piece's distance from the playhead's piece
PRIORITY_PLAYHEAD_CHUNK: Final = PRIORITY_PIECE + FAST_START_PIECES
PRIORITY_LOOKAHEAD: Final = 10  # = auralisd.actors.pool.PRIORITY_NORMAL


def output_frames(in_rate: int, out_rate: int, num_frames: int) -> int:
    """Length at ``out_rate`` of a track of ``num_frames`` at ``in_rate`` (as ``resample_poly``)."""
    return resampler(int(in_rate), int(out_rate)).output_frames(int(num_frames))


class Handle(Protocol):
    def cancel(self) -> None: ...


@dataclass(frozen=True)
class Fetch:
    """Render request: ``kind`` is ``chunk`` or ``piece``, ``index`` its place on that grid."""

    kind: str
    index: int
    priority: int


@dataclass
class _Pending:
    priority: int
    handles: list[Handle] = field(default_factory=list)

    def cancel(self) -> None:
        for handle in self.handles:
            handle.cancel()


@dataclass(eq=False)
class Deck:
    """One track (``track`` is the caller's record) with one ``plan`` (None: not planned yet).

    ``original`` decks play the unprocessed file (the A/B side); their chunks need no plan.
    """

    deck_id: int
    track: Any
    preset: str
    intensity: float
    grid: ChunkGrid
    pieces_grid: ChunkGrid
    original: bool = False
    plan: Any = None
    plan_source: str = ""
    chunks: dict[int, np.ndarray] = field(default_factory=dict)
    pieces: dict[int, np.ndarray] = field(default_factory=dict)
    fetching: dict[int, _Pending] = field(default_factory=dict)
    piece_fetching: dict[int, _Pending] = field(default_factory=dict)
    failures: dict[int, int] = field(default_factory=dict)
    prepare: Handle | None = None
    broken_from: int | None = None  # first chunk that cannot be rendered: the track ends there
    piece_anchor: int | None = None  # first fast-start piece of the current head start
    album_mode: str = ""  # the album mode the deck was planned under (off | track | album | auto)
    album: Any = None  # album mode: the album context its chunks are rendered from (None: the track alone)
    scope_reason: str = ""  # why the deck plays with its album's plan or its own
    closed: bool = False  # closed by its owner: wants nothing, takes nothing
    _last_head: int | None = None  # the playhead at the previous schedule (to tell play from a seek)

    @classmethod
    def open(cls, deck_id: int, track: Any, preset: str, intensity: float, *, in_rate: int, out_rate: int,
             num_frames: int, chunk_frames: int, original: bool = False) -> Deck:
        piece = max(1, chunk_frames // PIECES_PER_CHUNK)
        return cls(deck_id, track, preset, intensity, ChunkGrid(in_rate, out_rate, num_frames, chunk_frames),
                   ChunkGrid(in_rate, out_rate, num_frames, piece), original=original)

    @property
    def out_frames(self) -> int:
        return self.grid.out_frames

    @property
    def ready(self) -> bool:
        """Planned (an original deck needs no plan)."""
        return self.original or self.plan is not None

    @property
    def decision(self) -> str | None:
        return None if self.plan is None else (self.plan.decision or None)

    @property
    def end_frame(self) -> int:
        """Where the track ends: its last frame, or where an unrenderable chunk starts."""
        return self.out_frames if self.broken_from is None else self.grid.start(self.broken_from)

    def held_bytes(self) -> int:
        return sum(int(a.nbytes) for a in [*self.chunks.values(), *self.pieces.values()])

    def close(self) -> None:
        """Cancel every pending fetch and drop what it holds; a closed deck wants nothing any more."""
        self.closed = True
        for pending in [*self.fetching.values(), *self.piece_fetching.values()]:
            pending.cancel()
        self.fetching.clear()
        self.piece_fetching.clear()
        self.chunks.clear()
        self.pieces.clear()
        if self.prepare is not None:
            self.prepare.cancel()
            self.prepare = None

    # ------------------------------------------------------------------ what to fetch
    def window(self, head: int, render_ahead: int) -> tuple[int, int]:
        """Chunk indices ``[k_lo, k_hi]`` wanted when the playhead is output frame ``head``."""
        k_lo = self.grid.chunk_of(head)
        return k_lo, min(k_lo + render_ahead, self.grid.count - 1)

    def schedule(
        self, head: int, render_ahead: int, *, playhead: bool,
        cached: Callable[[str, int], np.ndarray | None] = lambda kind, index: None,
    ) -> list[Fetch]:
        """Drop what the playhead left behind and return what to fetch, most urgent first.

        ``playhead``: this deck is heard now (the playing deck or the one fading in), so its
        playhead's chunk is urgent and fast-start pieces cover it while it is missing; else
        (the next track, prepared for gapless) only its first chunk is wanted. ``cached``
        returns an item the cache already holds (taken at once, no fetch). A pending fetch
        whose priority must become more urgent (a look-ahead chunk that is now the playhead's)
        is asked for again at the new priority.
        """
        if not self.ready or self.closed:
            return []
        k_lo, k_hi = self.window(head, render_ahead)
        if not playhead:
            k_hi = k_lo
        for k in [k for k in self.chunks if not k_lo <= k <= k_hi]:
            del self.chunks[k]
        for k in [k for k in self.fetching if not k_lo <= k <= k_hi]:
            self.fetching.pop(k).cancel()
        if self.broken_from is not None:
            k_hi = min(k_hi, self.broken_from - 1)
        if k_lo not in self.chunks and k_lo not in self.fetching:
            hit = cached("chunk", k_lo)
            if hit is not None:
                self.chunks[k_lo] = hit
        if k_lo not in self.chunks:
            k_hi = min(k_hi, k_lo)  # the playhead's chunk first: nothing competes with it for a core
        out: list[Fetch] = []
        if playhead:  # fast-start pieces are queued before the chunk: the first block needs them
            out += self._schedule_pieces(head, need=k_lo not in self.chunks, cached=cached)
        for k in range(k_lo, k_hi + 1):
            if k in self.chunks:
                continue
            priority = PRIORITY_PLAYHEAD_CHUNK if k == k_lo and playhead else PRIORITY_LOOKAHEAD
            pending = self.fetching.get(k)
            if pending is None:
                hit = cached("chunk", k)
                if hit is not None:
                    self.chunks[k] = hit
                    continue
                self.fetching[k] = _Pending(priority)
                out.append(Fetch("chunk", k, priority))
            elif priority < pending.priority:  # escalate: the look-ahead became the playhead
                pending.priority = priority
                out.append(Fetch("chunk", k, priority))
        return out

    def _schedule_pieces(
        self, head: int, *, need: bool, cached: Callable[[str, int], np.ndarray | None]
    ) -> list[Fetch]:
        j0 = self.pieces_grid.chunk_of(head)
        last, self._last_head = self._last_head, head
        # continuous play (not a start or a seek): the playhead moved forward by less than a piece
        continuous = last is not None and 0 <= head - last < self.pieces_grid.span(0)[1]
        wanted: set[int] = set()
        anchor = self.piece_anchor
        if not need:
            anchor = None
        elif anchor is None or not anchor <= j0 <= anchor + FAST_START_PIECES:
            # A head start, not a second way to play: the pieces after a start or a seek, never a
            # rolling window, and none for a chunk that is merely late in continuous play. Pieces cost
            # twice the work per second of audio; asked for at the top priority whenever a chunk is
            # late, they would starve every other session's chunk under load.
            anchor = None if continuous else j0
        self.piece_anchor = anchor
        if anchor is not None:
            wanted = set(range(j0, min(anchor + FAST_START_PIECES, self.pieces_grid.count)))
        for j in [j for j in self.pieces if j < j0 or not need]:
            del self.pieces[j]
        for j in [j for j in self.piece_fetching if j not in wanted]:
            self.piece_fetching.pop(j).cancel()
        out = []
        for j in sorted(wanted):
            if j in self.pieces or j in self.piece_fetching:
                continue
            hit = cached("piece", j)
            if hit is not None:
                self.pieces[j] = hit
                continue
            priority = PRIORITY_PIECE + j - j0
            self.piece_fetching[j] = _Pending(priority)
            out.append(Fetch("piece", j, priority))
        return out

    def started(self, fetch: Fetch, handle: Handle) -> None:
        """The actor started ``fetch``; ``handle.cancel()`` abandons it."""
        table = self.fetching if fetch.kind == "chunk" else self.piece_fetching
        pending = table.get(fetch.index)
        if pending is None:
            handle.cancel()
        else:
            pending.handles.append(handle)

    # ------------------------------------------------------------------ reports
    def accept_chunk(self, k: int, samples: np.ndarray) -> bool:
        """A chunk arrived; False when nobody waits for it any more (it left the window)."""
        pending = self.fetching.pop(k, None)
        if pending is None:
            return False
        pending.cancel()  # a second, escalated request for the same chunk is not needed any more
        self.chunks[k] = samples
        return True

    def accept_piece(self, j: int, samples: np.ndarray) -> bool:
        pending = self.piece_fetching.pop(j, None)
        if pending is None:
            return False
        pending.cancel()
        self.pieces[j] = samples
        return True

    def chunk_failed(self, k: int, *, fatal: bool) -> bool:
        """A chunk could not be rendered. True: try again (a transient failure, within
        :data:`CHUNK_RETRIES`); False: give up (the track ends where chunk ``k`` starts)."""
        pending = self.fetching.pop(k, None)
        if pending is not None:
            pending.cancel()
        attempts = self.failures.get(k, 0) + 1
        self.failures[k] = attempts
        if not fatal and attempts <= CHUNK_RETRIES:
            return True
        self.broken_from = k if self.broken_from is None else min(self.broken_from, k)
        return False

    def retry(self, k: int) -> Fetch:
        """Fetch chunk ``k`` again after a transient failure, as urgently as it was asked for."""
        self.fetching[k] = _Pending(PRIORITY_PLAYHEAD_CHUNK)
        return Fetch("chunk", k, PRIORITY_PLAYHEAD_CHUNK)

    # ------------------------------------------------------------------ reading
    def has_chunk0(self) -> bool:
        return 0 in self.chunks

    def frames(self, n0: int, n1: int) -> np.ndarray | None:
        """Output frames ``[n0, n1)`` as float32 ``(frames, 2)``, or None when some are not rendered yet."""
        n1 = min(n1, self.out_frames)
        if n1 <= n0:
            return np.zeros((0, 2), dtype=np.float32)
        grid = self.grid
        k0, k1 = grid.chunk_of(n0), grid.chunk_of(n1 - 1)
        if k0 == k1 and k0 in self.chunks:  # the common case: one chunk, a view
            c0 = grid.start(k0)
            return self.chunks[k0][n0 - c0 : n1 - c0]
        out = np.empty((n1 - n0, 2), dtype=np.float32)
        for k in range(k0, k1 + 1):
            s, e = max(n0, grid.start(k)), min(n1, grid.start(k + 1))
            chunk = self.chunks.get(k)
            if chunk is not None:
                c0 = grid.start(k)
                out[s - n0 : e - n0] = chunk[s - c0 : e - c0]
            elif not self._from_pieces(out, n0, s, e):
                return None
        return out

    def _from_pieces(self, out: np.ndarray, n0: int, s: int, e: int) -> bool:
        grid = self.pieces_grid
        for j in range(grid.chunk_of(s), grid.chunk_of(e - 1) + 1):
            piece = self.pieces.get(j)
            if piece is None:
                return False
            p0 = grid.start(j)
            a, b = max(s, p0), min(e, grid.start(j + 1))
            out[a - n0 : b - n0] = piece[a - p0 : b - p0]
        return True
