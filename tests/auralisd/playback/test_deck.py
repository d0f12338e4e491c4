"""The deck with fake chunks: what it asks for, how urgently, what it keeps, and slicing at the output rate."""

from __future__ import annotations

import numpy as np

from auralisd.playback import Deck
from auralisd.playback.deck import (
    CHUNK_RETRIES,
    FAST_START_PIECES,
    PRIORITY_LOOKAHEAD,
    PRIORITY_PIECE,
    PRIORITY_PLAYHEAD_CHUNK,
)

N = 1000  # input frames per chunk (fake geometry: 10 chunks, 200-frame pieces)


class Handle:
    def __init__(self) -> None:
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


def fake_chunk(deck: Deck, kind: str, index: int) -> np.ndarray:
    """Output frames ``n`` of the fake track hold the value ``n`` (so any slice is checkable)."""
    grid = deck.grid if kind == "chunk" else deck.pieces_grid
    a, b = grid.span(index)
    return np.repeat(np.arange(a, b, dtype=np.float32)[:, None], 2, axis=1)


def new_deck(in_rate: int = 48_000, out_rate: int = 48_000, frames: int = 10 * N) -> Deck:
    deck = Deck.open(1, "track", "adaptive", 1.0, in_rate=in_rate, out_rate=out_rate, num_frames=frames,
                     chunk_frames=N)
    deck.plan = object()
    return deck


def run(deck: Deck, head: int, ahead: int = 2, *, playhead: bool = True, deliver: bool = True) -> list:
    fetches = deck.schedule(head, ahead, playhead=playhead)
    for f in fetches:
        deck.started(f, Handle())
    if deliver:
        for f in fetches:
            samples = fake_chunk(deck, f.kind, f.index)
            (deck.accept_piece if f.kind == "piece" else deck.accept_chunk)(f.index, samples)
    return fetches


def test_the_playhead_chunk_and_fast_start_pieces_go_first_then_the_look_ahead() -> None:
    deck = new_deck()
    first = run(deck, 0, deliver=False)
    pieces = [(f.kind, f.index, f.priority) for f in first if f.kind == "piece"]
    assert pieces == [("piece", j, PRIORITY_PIECE + j) for j in range(FAST_START_PIECES)]
    assert [(f.kind, f.index, f.priority) for f in first if f.kind == "chunk"] == [("chunk", 0, PRIORITY_PLAYHEAD_CHUNK)]
    assert deck.frames(0, 100) is None  # nothing rendered yet
    deck.accept_piece(0, fake_chunk(deck, "piece", 0))
    assert np.array_equal(deck.frames(0, 100)[:, 0], np.arange(100))  # playable from a piece
    deck.accept_chunk(0, fake_chunk(deck, "chunk", 0))
    later = run(deck, 0, deliver=False)
    assert [(f.index, f.priority) for f in later] == [(1, PRIORITY_LOOKAHEAD), (2, PRIORITY_LOOKAHEAD)]
    assert deck.pieces == {}  # the chunk covers the playhead: pieces are let go


def test_a_look_ahead_chunk_that_becomes_the_playhead_is_asked_for_again_urgently() -> None:
    deck = new_deck()
    run(deck, 0)
    pending = run(deck, 0, deliver=False)  # chunks 1, 2 queued as look-ahead
    assert {f.index: f.priority for f in pending} == {1: PRIORITY_LOOKAHEAD, 2: PRIORITY_LOOKAHEAD}
    escalated = run(deck, N + 10, deliver=False)  # the playhead reached chunk 1 before it arrived
    assert ("chunk", 1, PRIORITY_PLAYHEAD_CHUNK) in [(f.kind, f.index, f.priority) for f in escalated]


def test_memory_stays_bounded_whatever_the_seeks() -> None:
    deck = new_deck()
    sizes = []
    for head in [0, 5 * N, 2 * N, 9 * N, 0, 7 * N, 3 * N, 8 * N - 1]:
        run(deck, head)
        run(deck, head)
        sizes.append(len(deck.chunks) + len(deck.pieces))
        assert all(deck.grid.chunk_of(head) <= k <= deck.grid.chunk_of(head) + 2 for k in deck.chunks)
    assert max(sizes) <= 3 + FAST_START_PIECES


def test_leaving_a_pending_chunk_behind_cancels_its_fetch() -> None:
    deck = new_deck()
    fetches = deck.schedule(0, 2, playhead=True)
    handles = {}
    for f in fetches:
        handles[(f.kind, f.index)] = Handle()
        deck.started(f, handles[(f.kind, f.index)])
    run(deck, 6 * N)  # seek far ahead
    assert handles[("chunk", 0)].cancelled and all(h.cancelled for h in handles.values())
    assert not deck.accept_chunk(0, fake_chunk(deck, "chunk", 0))  # a late arrival is not kept
    assert 0 not in deck.chunks


def test_transient_failures_retry_then_the_track_ends_where_the_damage_starts() -> None:
    deck = new_deck()
    for _ in range(CHUNK_RETRIES):
        assert deck.chunk_failed(4, fatal=False)
        assert deck.retry(4).priority == PRIORITY_PLAYHEAD_CHUNK  # a retry keeps its urgency
    assert not deck.chunk_failed(4, fatal=False)
    assert deck.end_frame == deck.grid.start(4)
    other = new_deck()
    assert not other.chunk_failed(7, fatal=True)  # a bad file is not retried
    assert other.end_frame == other.grid.start(7)


def test_slices_across_chunk_borders_at_another_output_rate_tile_the_track() -> None:
    deck = new_deck(in_rate=48_000, out_rate=44_100)
    for k in range(deck.grid.count):
        deck.chunks[k] = fake_chunk(deck, "chunk", k)
    assert deck.out_frames == -(-10 * N * 147 // 160)
    block = 2205
    got = [deck.frames(n, n + block) for n in range(0, deck.out_frames, block)]
    assert all(g is not None for g in got)
    assert np.array_equal(np.concatenate(got)[:, 0], np.arange(deck.out_frames))  # no gap, no repeat


def test_fast_start_pieces_are_a_head_start_not_a_rolling_window() -> None:
    deck = new_deck()
    first = run(deck, 0, deliver=False)
    assert {f.index for f in first if f.kind == "piece"} == {0, 1}
    for f in first:
        if f.kind == "piece":
            deck.accept_piece(f.index, fake_chunk(deck, "piece", f.index))
    piece = deck.pieces_grid.chunk_frames
    for head in range(0, 2 * piece + 1, piece // 4):  # the playhead plays the pieces; chunk 0 is late
        assert [f for f in run(deck, head, deliver=False) if f.kind == "piece"] == []
    assert deck.frames(2 * piece, 2 * piece + 10) is None  # it waits for the chunk, no third piece
    seek = run(deck, 7 * N + 10, deliver=False)  # a seek is a new start: a new head start
    assert {f.index for f in seek if f.kind == "piece"} == {35, 36}


def test_a_chunk_that_is_late_in_continuous_play_gets_no_pieces_but_a_seek_does() -> None:
    deck = new_deck()
    run(deck, 0)  # chunk 0 and its pieces arrive
    run(deck, 0, deliver=False)  # chunks 1 and 2 asked for as look-ahead ... and they are late
    block = 50  # less than a piece (200 frames here; 2205 of 44 100 in the player)
    late = []
    for head in range(0, N + 3 * block, block):  # playing on into chunk 1, which is missing
        late += run(deck, head, deliver=False)
    assert [f for f in late if f.kind == "piece"] == []  # no rescue pieces at the top priority ...
    assert ("chunk", 1, PRIORITY_PLAYHEAD_CHUNK) in [(f.kind, f.index, f.priority) for f in late]  # ... urgency
    seek = run(deck, 6 * N, deliver=False)
    assert {f.index for f in seek if f.kind == "piece"} == {30, 31}
