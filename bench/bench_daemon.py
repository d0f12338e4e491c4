"""Daemon latency and pool throughput (issue 4).

Measures, on a generated 5-minute FLAC, with the real actors in one process (database,
worker pool, resolver, cache, player) and a PCM subscription as the listener:

* time to the first PCM block after ``play`` with nothing cached (budget <= 0.5 s, issue 15;
  issue 4 asked <= 1.0 s),
* the same with the fingerprint in the database but no chunk cached (budget <= 0.05 s; was 0.15 s),
* seek to audio: from ``seek`` to the first block of the new epoch, uncached (budget <= 0.1 s; was 0.3 s),
* the pool's render throughput in x real time with one and two workers, against
  ``auralis.render.render_file`` in this process (the offline peer, same run).

Latencies are the median of ``--runs`` daemon lives (default 5; each cold life starts from
an empty database and no sidecar), with the spread printed beside them: on a shared 2-core
machine one run says little. Writes ``bench/out/daemon.json``. Run:
``.venv/bin/python bench/bench_daemon.py [--runs N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from auralis.audio import write_audio  # noqa: E402
from auralis.render import chunk_count, render_file  # noqa: E402
from auralis.synth import make_music  # noqa: E402
from auralisd import jobs  # noqa: E402
from auralisd.actors.cache import ChunkCache  # noqa: E402
from auralisd.actors.database import Database  # noqa: E402
from auralisd.actors.events import EventHub  # noqa: E402
from auralisd.actors.fingerprints import FingerprintResolver  # noqa: E402
from auralisd.actors.library import Library  # noqa: E402
from auralisd.actors.mastering import Mastering  # noqa: E402
from auralisd.actors.player import PcmBlock, Player  # noqa: E402
from auralisd.actors.pool import open_mastering_pool  # noqa: E402

OUT = ROOT / "bench" / "out"
TRACK_S = 300.0
SAMPLE_RATE = 44_100
BUDGETS_S = {"cold": 0.5, "warm": 0.05, "seek": 0.1}  # issue 15: first audio cold / fingerprint known / seek


async def first_block(sub, *, epoch_after: int = -1, min_offset: int = 0, timeout_s: float = 60.0) -> PcmBlock:
    with trio.fail_after(timeout_s):
        async for message in sub.receive:
            if isinstance(message, PcmBlock) and message.epoch > epoch_after and message.offset_frames >= min_offset:
                return message
    raise RuntimeError("stream ended")


async def play_latencies(music: Path, state: Path, workers: int, seek_to_s: float) -> dict[str, float]:
    """One daemon life: returns first-block latency and (optionally) seek latency."""
    db = Database(str(state))
    hub = EventHub()
    out: dict[str, float] = {}
    async with trio.open_nursery() as outer:  # the database outlives the actors
        await outer.start(db.run)
        async with open_mastering_pool(workers) as pool, trio.open_nursery() as nursery:
            await pool.warm_up()  # workers start with the daemon, before anyone presses play
            library = Library(db, hub, [str(music)])
            await nursery.start(library.run)
            resolver = FingerprintResolver(db, pool, hub)
            await nursery.start(resolver.run)
            mastering = Mastering(pool, ChunkCache(256 << 20))
            await nursery.start(mastering.run)
            player = Player(db=db, hub=hub, resolver=resolver, mastering=mastering, sample_rate=SAMPLE_RATE, render_ahead=3)
            await nursery.start(player.run)
            library.scan()
            await library.wait_scan()
            tracks = await library.resolve_paths([str(music)])
            await player.clear()
            await player.add(tracks)
            sub = await player.subscribe(max_blocks=400)
            started = time.perf_counter()
            await player.play(0)
            block = await first_block(sub)
            out["first_block_s"] = time.perf_counter() - started
            await trio.sleep(0.3)
            started = time.perf_counter()
            status = await player.seek(seek_to_s)
            block = await first_block(sub, epoch_after=status["epoch"] - 1, min_offset=int(seek_to_s * SAMPLE_RATE))
            out["seek_s"] = time.perf_counter() - started
            out["seek_block_offset_s"] = block.offset_frames / SAMPLE_RATE
            sub.close()
            nursery.cancel_scope.cancel()
        outer.cancel_scope.cancel()
    return out


async def pool_throughput(path: Path, workers: int) -> float:
    from auralis.fingerprint import compute_plan_inputs
    from auralis.plan import plan_mastering

    plan = plan_mastering(compute_plan_inputs(str(path)), "adaptive", 1.0)
    n = chunk_count(int(TRACK_S * SAMPLE_RATE), SAMPLE_RATE)
    async with open_mastering_pool(workers) as pool:
        await pool.warm_up()
        started = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for k in range(n):
                nursery.start_soon(pool.run, jobs.render_chunk_stereo, str(path), plan, k)
        elapsed = time.perf_counter() - started
    return TRACK_S / elapsed


def _median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def _spread(runs: list[dict[str, float]], key: str) -> str:
    values = [r[key] for r in runs]
    return f"{min(values):.3f}-{max(values):.3f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="daemon lives per latency (median reported)")
    args = parser.parse_args(argv)
    work = OUT / "daemon"
    music = work / "music"
    music.mkdir(parents=True, exist_ok=True)
    track = music / "five-minutes.flac"
    if not track.exists():
        write_audio(str(track), make_music(TRACK_S, SAMPLE_RATE, seed=11), SAMPLE_RATE)
    state = work / "state.sqlite3"
    colds: list[dict[str, float]] = []
    warms: list[dict[str, float]] = []
    import sqlite3

    for _ in range(max(1, args.runs)):
        for leftover in list(music.glob("*.25d")) + list(work.glob("state*")):
            leftover.unlink()
        colds.append(trio.run(play_latencies, music, state, 2, 200.0))  # nothing anywhere
        for sidecar in music.glob("*.25d"):
            sidecar.unlink()  # keep the database as the only cache: "fingerprint cached"
        db = sqlite3.connect(state)  # forget the saved player, so nothing is prepared at start-up
        with db:
            db.execute("DELETE FROM player_state")
            db.execute("DELETE FROM queue_entries")
        db.close()
        warms.append(trio.run(play_latencies, music, state, 2, 250.0))  # fingerprint in the database, no chunk cached
        print(
            f"  run {len(colds)}: cold {colds[-1]['first_block_s']:.3f} s, cached {warms[-1]['first_block_s']:.3f} s,"
            f" seek {warms[-1]['seek_s']:.3f} s",
            flush=True,
        )
    cold = {k: _median(colds, k) for k in ("first_block_s", "seek_s")}
    warm = {k: _median(warms, k) for k in ("first_block_s", "seek_s")}
    started = time.perf_counter()
    render_file(str(track), str(work / "offline.flac"), _plan_for(track))
    offline_x = TRACK_S / (time.perf_counter() - started)
    one = trio.run(pool_throughput, track, 1)
    two = trio.run(pool_throughput, track, 2)

    results = {
        "track_s": TRACK_S,
        "cpu_count": os.cpu_count(),
        "first_block_cold_s": cold["first_block_s"],
        "first_block_fingerprint_cached_s": warm["first_block_s"],
        "seek_to_audio_s": warm["seek_s"],
        "seek_to_audio_cold_run_s": cold["seek_s"],
        "runs": len(colds),
        "first_block_cold_runs_s": [r["first_block_s"] for r in colds],
        "first_block_fingerprint_cached_runs_s": [r["first_block_s"] for r in warms],
        "seek_to_audio_runs_s": [r["seek_s"] for r in warms],
        "pool_render_x_realtime_1_worker": one,
        "pool_render_x_realtime_2_workers": two,
        "offline_render_file_x_realtime": offline_x,
    }
    def verdict(value: float, budget: float) -> str:
        return f"budget <= {budget:.2f} s: {'met' if value <= budget else f'MISSED by {value - budget:.3f} s'}"

    results["budgets_s"] = dict(BUDGETS_S)
    results["load_average_1min"] = os.getloadavg()[0]
    rows = [
        ("first PCM block after play, nothing cached", f"{cold['first_block_s']:.3f} s",
         f"{verdict(cold['first_block_s'], BUDGETS_S['cold'])}  (runs {_spread(colds, 'first_block_s')})"),
        ("first PCM block, fingerprint cached", f"{warm['first_block_s']:.3f} s",
         f"{verdict(warm['first_block_s'], BUDGETS_S['warm'])}  (runs {_spread(warms, 'first_block_s')})"),
        ("seek to audio (uncached chunk)", f"{warm['seek_s']:.3f} s",
         f"{verdict(warm['seek_s'], BUDGETS_S['seek'])}  (runs {_spread(warms, 'seek_s')})"),
        ("pool render, 1 worker", f"{one:.1f}x real time", f"{one / offline_x:.2f}x offline render_file"),
        ("pool render, 2 workers", f"{two:.1f}x real time", f"{two / one:.2f}x one worker"),
        ("offline render_file (peer, this process)", f"{offline_x:.1f}x real time", "1.00"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"auralisd on a {TRACK_S:.0f} s FLAC ({os.cpu_count()} cores; latencies: median of {len(colds)} runs; "
          f"load average {results['load_average_1min']:.2f})")
    for name, value, note in rows:
        print(f"  {name:<{width}}  {value:>18}  {note}")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "daemon.json").write_text(json.dumps(results, indent=2))
    return 0


def _plan_for(path: Path):
    from auralis.fingerprint import compute_plan_inputs
    from auralis.plan import plan_mastering

    return plan_mastering(compute_plan_inputs(str(path)), "adaptive", 1.0)


if __name__ == "__main__":
    sys.exit(main())
