"""The shared player's timing on trio's MockClock, with fake chunks: stalls, underruns, gapless
track change, crossfade, seek. No test sleeps: virtual time jumps whenever every task waits.

Nothing runs on a thread: the database (a real SQLite file) and planning are given a runner that
runs their jobs inline on the trio thread, so virtual time cannot jump ahead while a thread works
and every run is the same whatever the machine's load.

The fake renderer (the only fake: the database is a real SQLite file, the queue, deck, clock and
mixer are the real core) returns output-rate chunks whose left channel is the output frame index
and whose right channel names the track and the preset, so every block says where it came from.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import trio
import trio.testing

from auralis.resample import ChunkGrid
from auralisd.actors.database import Database, Track
from auralisd.actors.events import EventHub
from auralisd.actors.player import BLOCK_S, CROSSFADE_S, PcmBlock, Player, StreamEnd, StreamStart
from auralisd.playback.deck import PIECES_PER_CHUNK

RATE = 44_100
CHUNK = 5 * RATE  # the renderer's chunk at 44.1 kHz
PRESET_CODE = {"adaptive": 1.0, "bright": 2.0}


def track(track_id: int, seconds: float) -> Track:
    frames = int(seconds * RATE)
    return Track(track_id, f"/music/{track_id}.flac", "/music", "", 1000 + track_id, 1, f"t{track_id}", None, None,
                 None, frames / RATE, frames, RATE, 2, "FLAC", "complete", None, 0.0)


@dataclass
class FakeRenderer:
    """Mastering's facade with virtual render times: ``delay_s(kind, track_id, k)``."""

    delay_s: Any = lambda kind, track_id, k: 0.2
    requests: list[tuple[str, int, int, int, float]] = field(default_factory=list)
    presets: list[str] = field(default_factory=list)  # the plan of each request

    def cached_chunk(self, *args: Any, **kwargs: Any) -> None:
        return None

    def ticket(self, priority: int = 10, seq: int | None = None) -> int:
        return priority  # the pool's ticket; a plain priority here (no pool)

    async def _render(self, kind: str, track: Track, plan: Any, k: int, chunk: int, out_rate: int,
                      priority: int) -> np.ndarray:
        self.requests.append((kind, track.track_id, k, priority, trio.current_time()))
        self.presets.append(plan.preset)
        await trio.sleep(self.delay_s(kind, track.track_id, k))
        a, b = ChunkGrid(track.sample_rate, out_rate, track.num_frames, chunk).span(k)
        out = np.empty((b - a, 2), dtype=np.float32)
        out[:, 0] = np.arange(a, b)
        out[:, 1] = 10 * track.track_id + PRESET_CODE[plan.preset]
        return out

    async def render_chunk(self, track: Track, plan: Any, k: int, *, out_rate: int, priority: int) -> np.ndarray:
        return await self._render("chunk", track, plan, k, CHUNK, out_rate, priority)

    async def render_piece(self, track: Track, plan: Any, j: int, piece_frames: int, *, out_rate: int,
                           priority: int) -> np.ndarray:
        return await self._render("piece", track, plan, j, piece_frames, out_rate, priority)


async def inline(fn: Any, *args: Any, limiter: Any = None) -> Any:
    """``trio.to_thread.run_sync`` without the thread: the job runs on the trio thread, in no virtual time."""
    await trio.lowlevel.checkpoint()
    return fn(*args)


class NeutralResolver:
    async def plan_inputs(self, track: Track) -> None:
        return None  # the neutral plan: analysis is not what is timed here


@asynccontextmanager
async def player(tmp_path: Path, renderer: FakeRenderer) -> AsyncIterator[Player]:
    db = Database(str(tmp_path / "state.sqlite3"), run_sync=inline)
    async with trio.open_nursery() as nursery:
        await nursery.start(db.run)
        p = Player(db=db, hub=EventHub(), resolver=NeutralResolver(), mastering=renderer,  # type: ignore[arg-type]
                   sample_rate=RATE, render_ahead=2, rng=random.Random(1), run_sync=inline)
        await nursery.start(p.run)
        yield p
        nursery.cancel_scope.cancel()


async def listen(p: Player, until: Any = None) -> list[tuple[float, Any]]:
    """Every message with its (virtual) arrival time, until the stream ends or ``until(messages)``."""
    sub = await p.subscribe(max_blocks=400)
    got: list[tuple[float, Any]] = []
    async for message in sub.receive:
        got.append((trio.current_time(), message))
        if isinstance(message, StreamEnd) and message.reason != "paused" or until is not None and until(got):
            break
    sub.close()
    return got


def blocks(messages: list[tuple[float, Any]]) -> list[tuple[float, PcmBlock]]:
    return [(t, m) for t, m in messages if isinstance(m, PcmBlock)]


def assert_contiguous(bs: list[tuple[float, PcmBlock]]) -> None:
    frames = np.concatenate([b.samples[:, 0] for _, b in bs]).astype(np.float64)
    expected = np.arange(bs[0][1].offset_frames, bs[0][1].offset_frames + frames.size)
    assert np.max(np.abs(frames - expected)) < 0.05  # exact but for float rounding inside a crossfade
    offsets = [b.offset_frames for _, b in bs]
    assert offsets == list(np.cumsum([offsets[0]] + [b.samples.shape[0] for _, b in bs][:-1]))


async def test_a_late_chunk_stalls_once_then_playback_resumes_at_pace_without_a_burst(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    def delay_s(kind: str, track_id: int, k: int) -> float:  # chunk 1 and its fast-start pieces are late
        late = k == 1 if kind == "chunk" else k // PIECES_PER_CHUNK == 1
        return 8.0 if late else 0.2

    renderer = FakeRenderer(delay_s)
    async with player(tmp_path, renderer) as p:
        await p.add([track(1, 12.0)])
        async with trio.open_nursery() as nursery:
            result: list[Any] = []

            async def run() -> None:
                result.extend(await listen(p))

            nursery.start_soon(run)
            await trio.lowlevel.checkpoint()
            await p.play()
        stats = p.statistics()
    bs = blocks(result)
    assert_contiguous(bs)
    assert sum(b.samples.shape[0] for _, b in bs) == 12 * RATE  # every frame, once
    assert stats.underruns == 1  # one stall, counted once however long it lasts
    times = np.array([t for t, _ in bs])
    gaps = np.diff(times)
    stall = int(np.argmax(gaps))
    assert bs[stall + 1][1].offset_frames >= CHUNK - int(BLOCK_S * RATE)  # it stalled where chunk 1 starts
    assert gaps[stall] > 2.0  # waited for the late chunk ...
    others = np.delete(gaps, stall)
    assert np.all(others >= BLOCK_S * 0.999) and np.all(others <= BLOCK_S * 1.001)  # ... and never burst


async def test_the_next_track_follows_gaplessly_with_its_first_chunk_ready(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with player(tmp_path, FakeRenderer()) as p:
        await p.add([track(1, 6.0), track(2, 3.0)])
        async with trio.open_nursery() as nursery:
            result: list[Any] = []

            async def run() -> None:
                result.extend(await listen(p))

            nursery.start_soon(run)
            await trio.lowlevel.checkpoint()
            await p.play()
        stats = p.statistics()
    bs = blocks(result)
    first = [(t, b) for t, b in bs if b.track_id == 1]
    second = [(t, b) for t, b in bs if b.track_id == 2]
    assert_contiguous(first) and assert_contiguous(second)
    assert second[0][1].offset_frames == 0 and sum(b.samples.shape[0] for _, b in second) == 3 * RATE
    assert second[0][0] - first[-1][0] == pytest.approx(first[-1][1].samples.shape[0] / RATE, abs=1e-9)  # no gap
    assert (stats.gapless_ready, stats.gapless_late, stats.underruns) == (1, 0, 0)
    assert isinstance(result[-1][1], StreamEnd) and result[-1][1].reason == "end_of_queue"


async def test_a_preset_change_crossfades_at_the_playhead_over_the_one_crossfade_length(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    renderer = FakeRenderer()
    async with player(tmp_path, renderer) as p:
        await p.add([track(1, 8.0)])
        async with trio.open_nursery() as nursery:
            result: list[Any] = []

            async def run() -> None:
                result.extend(await listen(p))

            nursery.start_soon(run)
            await trio.lowlevel.checkpoint()
            await p.play()
            await trio.sleep(2.0)  # virtual: two seconds of playback pass at once
            changed_at = trio.current_time()
            await p.set_preset("bright")
    bs = blocks(result)
    assert_contiguous(bs)  # the preset change neither skips nor repeats a frame
    side = np.concatenate([b.samples[:, 1] for _, b in bs])
    old, new = 10 + PRESET_CODE["adaptive"], 10 + PRESET_CODE["bright"]
    mixing = np.flatnonzero((side != old) & (side != new))
    assert mixing.size == int(CROSSFADE_S * RATE) - 1  # frame 0 of the fade is all old
    assert np.all(side[: mixing[0]] == old) and np.all(side[mixing[-1] + 1 :] == new)
    assert np.all(np.diff(side[mixing[0] - 1 : mixing[-1] + 2]) > 0)  # a monotonic ramp: no click
    fade_time = next(t for t, b in bs if np.any(b.samples[:, 1] != old))
    # the new plan's first chunk is asked for at the change (planning takes no virtual time here), and
    # the fade starts with the first block once that render (0.2 s) is in
    asked_at = next(r[4] for r, preset in zip(renderer.requests, renderer.presets, strict=True) if preset == "bright")
    assert asked_at == changed_at
    assert changed_at + 0.2 <= fade_time <= changed_at + 0.2 + BLOCK_S + 1e-9
    starts = [m for _, m in result if isinstance(m, StreamStart)]
    assert starts[-1].preset == "bright"


async def test_a_seek_lands_exactly_and_its_playhead_is_asked_for_most_urgently(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    renderer = FakeRenderer()
    async with player(tmp_path, renderer) as p:
        await p.add([track(1, 40.0)])
        async with trio.open_nursery() as nursery:
            result: list[Any] = []
            playing = trio.Event()

            def until(got: list[tuple[float, Any]]) -> bool:
                if blocks(got):
                    playing.set()
                return len(blocks(got)) > 60

            async def run() -> None:
                result.extend(await listen(p, until=until))

            nursery.start_soon(run)
            await trio.lowlevel.checkpoint()
            await p.play()
            await playing.wait()  # planned and playing
            await trio.sleep(1.0)
            sought_at = trio.current_time()
            await p.seek(33.3)
    after = [(t, m) for t, m in result if t >= sought_at]
    start = next(m for _, m in after if isinstance(m, StreamStart))
    bs = [(t, b) for t, b in blocks(after) if b.epoch == start.epoch]
    assert start.offset_frames == bs[0][1].offset_frames == round(33.3 * RATE)
    assert_contiguous(bs)
    assert bs[0][0] - sought_at <= 0.2 + 1e-9  # one render of a fast-start piece, not of a whole chunk
    asked = [(kind, k, prio) for kind, tid, k, prio, t in renderer.requests if t >= sought_at]
    piece = round(33.3 * RATE) // (CHUNK // PIECES_PER_CHUNK)
    by_urgency = sorted(asked, key=lambda r: r[2])  # the pool starts jobs in priority order
    assert [r[:2] for r in by_urgency[:3]] == [("piece", piece), ("piece", piece + 1), ("chunk", 6)]


async def test_crossfade_seconds_fade_the_end_of_a_track_into_the_next(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    async with player(tmp_path, FakeRenderer()) as p:
        await p.add([track(1, 6.0), track(2, 4.0)])
        await p.set_crossfade(1)
        async with trio.open_nursery() as nursery:
            result: list[Any] = []

            async def run() -> None:
                result.extend(await listen(p))

            nursery.start_soon(run)
            await trio.lowlevel.checkpoint()
            await p.play()
        stats = p.statistics()
    bs = blocks(result)
    first = [b for _, b in bs if b.track_id == 1]
    second = [b for _, b in bs if b.track_id == 2]
    # the first track's blocks cover it whole; its last second carries the next track mixed in
    frames = np.concatenate([b.samples for b in first])
    assert frames.shape[0] == 6 * RATE
    side = frames[:, 1]
    start = 5 * RATE  # 1 s before the end
    assert np.all(side[:start] == 10 + PRESET_CODE["adaptive"])
    ramp = np.arange(RATE) / RATE
    assert np.max(np.abs(side[start:] - ((1 - ramp) * 11.0 + ramp * 21.0))) < 1e-3  # linear, no step
    mixed_index = (1 - ramp) * np.arange(start, 6 * RATE) + ramp * np.arange(RATE)
    assert np.max(np.abs(frames[start:, 0] - mixed_index)) < 0.05  # the next track from its first frame
    # ... and the second track goes on where the fade left it: nothing of it is played twice
    assert second[0].offset_frames == RATE
    assert sum(b.samples.shape[0] for b in second) == 3 * RATE
    assert np.all(np.concatenate([b.samples[:, 1] for b in second]) == 20 + PRESET_CODE["adaptive"])
    assert stats.underruns == 0


def test_track_crossfade_span_never_takes_more_than_half_a_track() -> None:
    from auralisd.playback.mixer import track_crossfade_span

    assert track_crossfade_span(10 * RATE, 8 * RATE, 3, RATE) == (7 * RATE, 3 * RATE)
    assert track_crossfade_span(2 * RATE, 8 * RATE, 3, RATE) == (RATE, RATE)  # a short ending track
    assert track_crossfade_span(10 * RATE, RATE, 3, RATE) == (10 * RATE - RATE // 2, RATE // 2)  # a short next
    assert track_crossfade_span(10 * RATE, 8 * RATE, 0, RATE) is None


async def test_an_early_listener_gets_the_lead_at_once_after_a_seek_on_the_schedule_on_time_listeners_hear(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """One schedule, two kinds of listener: an early one (the web player) gets a new position's first
    ``lead_s`` as soon as it is mixed, an on-time one (an output) every block at its play time. Through a
    seek, a pause and resume, and a gapless track change, the on-time listener never gets a burst (its
    buffer never grows), the early one never gets more than the lead ahead, and both hear the same blocks
    at the same play times (the early one ``lead_s`` before)."""
    async with player(tmp_path, FakeRenderer()) as p:
        lead = p.lead_s
        assert lead == pytest.approx(0.5)
        await p.add([track(1, 6.0), track(2, 3.0)])
        early, on_time = await p.subscribe(400, early=True), await p.subscribe(400)
        got: dict[str, list[tuple[float, Any]]] = {"early": [], "on_time": []}

        async def collect(name: str, sub: Any) -> None:
            async for message in sub.receive:
                got[name].append((trio.current_time(), message))
                if isinstance(message, StreamEnd) and message.reason == "end_of_queue":
                    return

        async with trio.open_nursery() as nursery:
            nursery.start_soon(collect, "early", early)
            nursery.start_soon(collect, "on_time", on_time)
            await p.play()
            await trio.sleep(1.0)
            sought_at = trio.current_time()
            await p.seek(3.0)
            await trio.sleep(1.0)
            await p.pause()
            await trio.sleep(0.2)  # resumed while the on-time listener still plays what was mixed ahead
            await p.play()
    stats = p.statistics()
    assert stats.underruns == 0 and stats.gapless_ready == 1
    early_at = {(b.epoch, b.offset_frames): t for t, b in blocks(got["early"])}
    on_time_at = {(b.epoch, b.offset_frames): t for t, b in blocks(got["on_time"])}
    seek_epoch = next(m.epoch for t, m in got["early"] if isinstance(m, StreamStart) and m.offset_frames == 3 * RATE)

    # The seek: the early listener holds the lead of the new position as soon as its first block is mixed.
    new = [(t, b) for t, b in blocks(got["early"]) if b.epoch == seek_epoch]
    first_t = new[0][0]
    assert first_t - sought_at <= 0.2 + 1e-9  # one render of a fast-start piece
    assert sum(b.samples.shape[0] for t, b in new if t <= first_t) >= lead * RATE
    # ... while the on-time listener never hears what was mixed ahead for the old position
    on_time = blocks(got["on_time"])
    first_new = next(i for i, (_, b) in enumerate(on_time) if b.epoch == seek_epoch)
    assert all(b.epoch >= seek_epoch for _, b in on_time[first_new:])
    cut = set(early_at) - set(on_time_at)
    assert cut and all(epoch < seek_epoch for epoch, _ in cut) and len(cut) * BLOCK_S <= lead + 1e-9
    assert set(on_time_at) <= set(early_at)

    # The on-time listener: one block per block length, through the seek, the resume and the track change.
    times = np.array([t for t, _ in on_time])
    spacing = np.delete(np.diff(times), first_new - 1)  # but at the seek, where the new position replaces the old
    assert np.all(spacing >= BLOCK_S - 1e-9), "a burst reached an on-time listener"
    assert_contiguous([(t, b) for t, b in on_time if b.epoch >= seek_epoch and b.track_id == 1])
    # One schedule: the early listener gets each block at most the lead before it plays, the lead in steady state.
    ahead = np.array([on_time_at[k] - early_at[k] for k in on_time_at])
    assert np.all(ahead >= -1e-9) and np.all(ahead <= lead + 1e-9)
    assert np.mean(np.abs(ahead - lead) < 1e-9) > 0.8
    for name in ("early", "on_time"):
        assert isinstance(got[name][-1][1], StreamEnd)
