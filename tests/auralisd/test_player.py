"""The player with the real pool (worker processes), cache and resolver, read through a PCM subscription.

These run in real time (the clock paces blocks), so the tracks are short.
"""

from __future__ import annotations

import os
import random
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import trio

from auralis.fingerprint import compute_fingerprint, compute_plan_inputs
from auralis.plan import plan_mastering
from auralis.render import chunk_count, render_chunk
from auralis.sidecar import write_sidecar
from auralisd.actors.cache import ChunkCache
from auralisd.actors.database import Database
from auralisd.actors.events import EventHub
from auralisd.actors.fingerprints import FingerprintResolver
from auralisd.actors.library import Library
from auralisd.actors.mastering import Mastering
from auralisd.actors.player import CROSSFADE_S, PcmBlock, Player, StreamEnd, StreamStart
from auralisd.actors.pool import open_mastering_pool
from tests.helpers import resample_reference

from .conftest import children_of, write_tracks

OUT_RATE = 44_100


@dataclass
class Rig:
    db: Database
    library: Library
    player: Player
    mastering: Mastering
    hub: EventHub


@asynccontextmanager
async def rig(
    tmp_path: Path, music: Path, *, cache_bytes: int = 64 << 20, rng: random.Random | None = None
) -> AsyncIterator[Rig]:
    db = Database(str(tmp_path / "state.sqlite3"))
    hub = EventHub()
    async with trio.open_nursery() as outer:  # the database outlives the actors (the player saves last)
        await outer.start(db.run)
        async with open_mastering_pool(2) as pool, trio.open_nursery() as nursery:
            library = Library(db, hub, [str(music)])
            await nursery.start(library.run)
            resolver = FingerprintResolver(db, pool, hub, cache_dir=str(tmp_path / "cache"))
            await nursery.start(resolver.run)
            mastering = Mastering(pool, ChunkCache(cache_bytes))
            await nursery.start(mastering.run)
            player = Player(
                db=db, hub=hub, resolver=resolver, mastering=mastering, sample_rate=OUT_RATE, render_ahead=2, rng=rng
            )
            await nursery.start(player.run)
            library.scan()
            await library.wait_scan()
            yield Rig(db, library, player, mastering, hub)
            nursery.cancel_scope.cancel()
        outer.cancel_scope.cancel()


def reference(path: Path, preset: str = "adaptive", intensity: float = 1.0) -> np.ndarray:
    """What the daemon must play: every chunk of the one renderer, concatenated (native rate)."""
    plan = plan_mastering(compute_plan_inputs(str(path)), preset, intensity)
    import soundfile as sf

    frames = sf.info(str(path)).frames
    rate = sf.info(str(path)).samplerate
    return np.concatenate([render_chunk(str(path), plan, k) for k in range(chunk_count(frames, rate))])


async def collect(sub, until_end: bool = True, max_s: float = 60.0) -> list:
    messages = []
    with trio.fail_after(max_s):
        async for message in sub.receive:
            messages.append((trio.current_time(), message))
            if isinstance(message, StreamEnd) and until_end and message.reason != "paused":
                break
    return messages


def _drain(receive: trio.MemoryReceiveChannel) -> list:
    out = []
    while True:
        try:
            out.append(receive.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
            return out


async def test_queue_plays_gapless_and_sample_exact(tmp_path: Path) -> None:
    music = tmp_path / "music"
    a, b = write_tracks(music, [("1.flac", 3.0, 44_100, 1, False), ("2.flac", 1.5, 48_000, 2, True)])
    write_sidecar(str(b), compute_fingerprint(str(b)))  # the next track's analysis is not what is tested here
    async with rig(tmp_path, music) as r:
        tracks = await r.library.resolve_paths([str(music)])
        await r.player.add(tracks)
        sub = await r.player.subscribe(max_blocks=400)
        mastering = r.hub.subscribe(frozenset({"mastering"}))
        await r.player.play()
        with trio.fail_after(60):
            messages = [(0.0, await sub.receive.receive())]
            while not isinstance(messages[-1][1], PcmBlock):
                messages.append((0.0, await sub.receive.receive()))
            # on a busy machine, give the next track's preparation the time it needs (load is not tested here)
            await r.player.pause()
            await r.player.wait_next_ready()
            await r.player.play()
        messages += await collect(sub)
    starts = [m for _, m in messages if isinstance(m, StreamStart)]
    assert [s.track["path"] for s in starts] == [str(a), str(a), str(b)]
    # the second track follows the first with nothing skipped (a client keeps what it queued); the start
    # and the resume after the pause follow nothing
    assert [s.follows_epoch for s in starts] == [None, None, starts[1].epoch]
    assert isinstance(messages[-1][1], StreamEnd) and messages[-1][1].reason == "end_of_queue"
    by_track: dict[int, list[PcmBlock]] = {}
    for _, m in messages:
        if isinstance(m, PcmBlock):
            by_track.setdefault(m.track_id, []).append(m)
    first, second = by_track.values()
    for blocks in (first, second):  # offsets are contiguous from 0 within each track
        offsets = [blk.offset_frames for blk in blocks]
        sizes = [blk.samples.shape[0] for blk in blocks]
        assert offsets == list(np.cumsum([0] + sizes[:-1]))
    out_a = np.concatenate([blk.samples for blk in first])
    ref_a = reference(a)
    assert out_a.shape == ref_a.shape and np.max(np.abs(out_a - ref_a)) < 1e-6
    out_b = np.concatenate([blk.samples for blk in second])
    ref_b = resample_reference(reference(b), 48_000, 44_100)  # 48 kHz -> 44.1 kHz after mastering
    assert out_b.shape == ref_b.shape and np.max(np.abs(out_b - ref_b)) < 1e-5
    # gapless: the next track was prepared (plan and first chunk) before the first one ended
    stats = r.player.statistics()
    assert (stats.gapless_ready, stats.gapless_late) == (1, 0)
    # one `mastering` event per track, the prepared next track's too (announced when it became current)
    events = _drain(mastering.receive)
    assert [e.data["track_id"] for e in events] == [t.track_id for t in tracks]


async def test_preset_change_crossfades_within_a_second_without_a_click(tmp_path: Path) -> None:
    music = tmp_path / "music"
    (a,) = write_tracks(music, [("1.flac", 3.0, 44_100, 1, False)])
    async with rig(tmp_path, music) as r:
        await r.player.add(await r.library.resolve_paths([str(a)]))
        sub = await r.player.subscribe(max_blocks=400)
        mastering = r.hub.subscribe(frozenset({"mastering"}))
        await r.player.play()
        got_first = False
        with trio.fail_after(30):
            async for message in sub.receive:
                if isinstance(message, PcmBlock):
                    if not got_first:
                        got_first = True
                        first_at = trio.current_time()
                    last_epoch = message.epoch
                    if trio.current_time() - first_at > 0.8:
                        break
        changed_at = trio.current_time()
        await r.player.set_preset("bright")
        rest = await collect(sub)
        await r.player.set_volume(100)
    # one `mastering` event for the track's start and one for the change (not again when the fade ends)
    assert [e.data["plan"]["preset"] for e in _drain(mastering.receive)] == ["adaptive", "bright"]
    blocks = [m for _, m in rest if isinstance(m, PcmBlock)]
    starts = [(t, m) for t, m in rest if isinstance(m, StreamStart)]
    assert starts and starts[0][1].preset == "bright" and starts[0][0] - changed_at < 1.0
    assert starts[0][1].follows_epoch == last_epoch  # the crossfaded epoch continues the audio
    # re-read the whole played signal: before + after the change, then compare with both plans
    ref_old = reference(a, "adaptive")
    ref_new = reference(a, "bright")
    offset0 = blocks[0].offset_frames
    out = np.concatenate([blk.samples for blk in blocks])
    old = ref_old[offset0 : offset0 + len(out)]
    new = ref_new[offset0 : offset0 + len(out)]
    is_old = np.all(np.abs(out - old) < 1e-6, axis=1)
    is_new = np.all(np.abs(out - new) < 1e-6, axis=1)
    fade_start = int(np.argmin(is_old))  # first frame that is not the old plan's
    fade_end = len(is_new) - int(np.argmin(is_new[::-1]))  # after it, everything is the new plan's
    assert is_old[:fade_start].all() and is_new[fade_end:].all()
    assert fade_end - fade_start <= int(CROSSFADE_S * OUT_RATE) + 1
    # no click: the largest sample step in the crossfade is no larger than in either plan's audio
    region = slice(max(fade_start - 1, 0), fade_end + 1)
    step = np.max(np.abs(np.diff(out[region], axis=0)))
    assert step <= 1.01 * max(np.max(np.abs(np.diff(old[region], axis=0))), np.max(np.abs(np.diff(new[region], axis=0))))


async def test_a_seek_or_a_chosen_track_follows_nothing_and_a_late_listener_is_not_told_it_does(
        tmp_path: Path) -> None:
    """``follows_epoch`` tells a client to keep what it queued: never after a jump (a seek, ``next``), and
    never to a listener that joined after the epoch it names (it has not heard that epoch)."""
    music = tmp_path / "music"
    a, b = write_tracks(music, [("1.flac", 2.0, 44_100, 1, False), ("2.flac", 1.0, 44_100, 2, False)])
    write_sidecar(str(b), compute_fingerprint(str(b)))

    async def next_start(sub) -> StreamStart:
        with trio.fail_after(30):
            async for message in sub.receive:
                if isinstance(message, StreamStart):
                    return message
        raise AssertionError("the stream ended")

    async def next_block(sub) -> PcmBlock:
        with trio.fail_after(30):
            async for message in sub.receive:
                if isinstance(message, PcmBlock):
                    return message
        raise AssertionError("the stream ended")

    async with rig(tmp_path, music) as r:
        await r.player.add(await r.library.resolve_paths([str(a), str(b)]))
        sub = await r.player.subscribe(max_blocks=400)
        await r.player.play()
        await next_block(sub)
        await r.player.seek(1.0)
        seek = await next_start(sub)
        assert (seek.offset_frames, seek.follows_epoch) == (OUT_RATE, None)
        await r.player.next()
        chosen = await next_start(sub)
        assert (chosen.track["path"], chosen.offset_frames, chosen.follows_epoch) == (str(b), 0, None)
        await r.player.play(0)  # the first track again, to the end: the second follows it
        await r.player.pause()
        await r.player.wait_next_ready()
        await r.player.play()
        first = await next_start(sub)
        gapless = await next_start(sub)
        assert gapless.track["path"] == str(b) and gapless.follows_epoch == first.epoch
        late = await r.player.subscribe(max_blocks=400)  # joins while the second track plays
        start = await next_start(late)  # the epoch playing, announced to it: it never heard the first track
        assert (start.epoch, start.follows_epoch) == (gapless.epoch, None)
        await r.player.stop()


async def test_worker_killed_mid_render_rerenders_the_same_chunk(tmp_path: Path) -> None:
    music = tmp_path / "music"
    (a,) = write_tracks(music, [("1.flac", 11.0, 44_100, 1, False)])
    async with rig(tmp_path, music) as r:
        (track,) = await r.library.resolve_paths([str(a)])
        plan = plan_mastering(None, "adaptive", 1.0)
        result = []

        async def render() -> None:
            result.append(await r.mastering.render_chunk(track, plan, 1))

        with trio.fail_after(60):
            await r.mastering.render_chunk(track, plan, 0)
            await r.mastering.pool.warm_up()  # every worker is up (one started later would not be stopped)
            # Stopped workers take the job but cannot finish it, so the kill lands mid-render however
            # loaded the machine is (killed right after the job started, a running worker could finish
            # the 5 s chunk first under load, and then nothing was retried).
            workers = children_of(os.getpid())
            for pid in workers:
                os.kill(pid, signal.SIGSTOP)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(render)
                await r.mastering.pool.wait_running()
                for pid in workers:
                    os.kill(pid, signal.SIGKILL)
        stats = r.mastering.pool.statistics()
        assert stats.worker_deaths >= 1 and stats.retries >= 1
        assert np.array_equal(result[0], render_chunk(str(a), plan, 1))


async def test_a_slow_subscriber_is_dropped_and_never_blocks_the_player(tmp_path: Path) -> None:
    music = tmp_path / "music"
    (a,) = write_tracks(music, [("1.flac", 2.0, 44_100, 1, False)])
    async with rig(tmp_path, music) as r:
        await r.player.add(await r.library.resolve_paths([str(a)]))
        frozen = await r.player.subscribe(max_blocks=4)  # never read
        live = await r.player.subscribe(max_blocks=400)
        await r.player.play()
        messages = await collect(live)
    assert frozen.dropped
    blocks = [m for _, m in messages if isinstance(m, PcmBlock)]
    assert sum(b.samples.shape[0] for b in blocks) == 2 * OUT_RATE
    assert r.player.statistics().dropped_subscribers == 1


async def test_a_command_that_fails_unexpectedly_answers_its_caller_and_the_player_serves_on(tmp_path: Path) -> None:
    """issue 9: one bad request must not stop the music for everyone. ``seek(1e308)`` through the facade
    (the command table refuses it before) overflowed the frame arithmetic and ended the player actor,
    and with it the daemon. The error now goes to the caller (whose edge logs it and answers
    ``internal``) and the player keeps serving."""
    import pytest

    music = tmp_path / "music"
    write_tracks(music, [("1.flac", 1.0, 44_100, 1, False)])
    async with rig(tmp_path, music) as r:
        await r.player.add(await r.library.resolve_paths([str(music)]))
        await r.player.play()
        await r.player.pause()  # the track stays loaded, paused at its start
        with trio.fail_after(30):
            with pytest.raises(OverflowError):
                await r.player.seek(1e308)
            status = await r.player.seek(0.5)
        assert abs(status["elapsed_s"] - 0.5) < 0.01
