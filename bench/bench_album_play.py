"""First audio in album mode (issue 10), against track mode in the same run.

Uses the 45-minute album of ``bench/bench_album.py`` (nine 5-minute FLAC tracks, built if missing)
with the real actors in one process (database, two worker processes, library, resolver, album
actor, cache, player) and a PCM subscription as the listener. Per daemon life it times ``play``
of the first track to its first PCM block:

* cold: empty database, no sidecars, mode ``auto``: the first track may start on its own plan
  (the event says so) while the album is analysed in the background; also the time until the
  album's analysis is complete, and which plan the first and second tracks got;
* warm: the album's analysis (and the first track's fingerprint) in the database, no chunk
  cached, mode ``album``: the first block comes from the album plan;
* the same two in ``track`` mode (the peer: what playing without album mode costs).

Medians of ``--runs`` lives (default 3) with the spread. Writes ``bench/out/album_play.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_album import build_album  # noqa: E402

from auralisd.actors.albums import AlbumPlans  # noqa: E402
from auralisd.actors.cache import ChunkCache  # noqa: E402
from auralisd.actors.database import Database  # noqa: E402
from auralisd.actors.events import EventHub  # noqa: E402
from auralisd.actors.fingerprints import FingerprintResolver  # noqa: E402
from auralisd.actors.library import Library  # noqa: E402
from auralisd.actors.mastering import Mastering  # noqa: E402
from auralisd.actors.player import PcmBlock, Player  # noqa: E402
from auralisd.actors.pool import open_mastering_pool  # noqa: E402

OUT = ROOT / "bench" / "out"
RATE = 44_100


async def life(music: Path, state: Path, mode: str, *, wait_album: bool) -> dict[str, float | str]:
    db = Database(str(state))
    hub = EventHub()
    out: dict[str, float | str] = {}
    async with trio.open_nursery() as outer:
        await outer.start(db.run)
        async with open_mastering_pool(2) as pool, trio.open_nursery() as nursery:
            await pool.warm_up()
            library = Library(db, hub, [str(music)])
            await nursery.start(library.run)
            resolver = FingerprintResolver(db, pool, hub)
            await nursery.start(resolver.run)
            albums = AlbumPlans(db, pool, hub)
            await nursery.start(albums.run)
            mastering = Mastering(pool, ChunkCache(256 << 20))
            await nursery.start(mastering.run)
            player = Player(db=db, hub=hub, resolver=resolver, mastering=mastering, sample_rate=RATE, render_ahead=3,
                            albums=albums, album_mode=mode)
            await nursery.start(player.run)
            library.scan()
            await library.wait_scan()
            tracks = await library.resolve_paths([str(music)])
            events = hub.subscribe(frozenset({"mastering", "album_progress"}))
            await player.clear()
            sub = await player.subscribe(max_blocks=400)
            started = time.perf_counter()
            await player.add(tracks)
            await player.play(0)
            with trio.fail_after(120):
                async for message in sub.receive:
                    if isinstance(message, PcmBlock):
                        break
            out["first_block_s"] = time.perf_counter() - started
            with trio.fail_after(120):
                async for event in events.receive:
                    if event.name == "mastering" and "first_track_plan" not in out:
                        out["first_track_plan"] = event.data["plan_scope"]
                        if not wait_album:
                            break
                    if event.name == "album_progress" and event.data.get("status") == "complete":
                        out["album_analysed_s"] = time.perf_counter() - started
                        break
            await player.stop()
            sub.close()
            nursery.cancel_scope.cancel()
        outer.cancel_scope.cancel()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    paths = build_album()
    music = Path(paths[0]).parent
    work = OUT / "album_play"
    work.mkdir(parents=True, exist_ok=True)
    state = work / "state.sqlite3"
    results: dict[str, list[dict[str, float | str]]] = {"cold_auto": [], "warm_album": [], "cold_track": [],
                                                         "warm_track": []}
    import sqlite3

    def reset(keep_analysis: bool) -> None:
        for leftover in music.glob("*.25d"):
            leftover.unlink()
        if not keep_analysis:
            for leftover in work.glob("state*"):
                leftover.unlink()
            return
        db = sqlite3.connect(state)
        with db:
            db.execute("DELETE FROM player_state")
            db.execute("DELETE FROM queue_entries")
        db.close()

    for _ in range(max(1, args.runs)):
        reset(False)
        results["cold_auto"].append(trio.run(lambda: life(music, state, "auto", wait_album=True)))
        reset(True)
        results["warm_album"].append(trio.run(lambda: life(music, state, "album", wait_album=False)))
        reset(False)
        results["cold_track"].append(trio.run(lambda: life(music, state, "track", wait_album=False)))
        reset(True)
        results["warm_track"].append(trio.run(lambda: life(music, state, "track", wait_album=False)))
        print("  run:", {k: v[-1] for k, v in results.items()}, flush=True)

    def med(key: str, field: str) -> float:
        return statistics.median(float(r[field]) for r in results[key])

    def spread(key: str, field: str) -> str:
        values = [float(r[field]) for r in results[key]]
        return f"{min(values):.3f}-{max(values):.3f}"

    print(f"first audio on a 45-minute album of 9 tracks (2 workers; median of {len(results['cold_auto'])} runs)")
    for key, label, goal in (("warm_album", "album mode, album analysed (warm)", "goal <= 0.15 s"),
                             ("warm_track", "track mode, fingerprint cached (peer)", ""),
                             ("cold_auto", "auto mode, nothing analysed (cold)", "goal <= 1.0 s"),
                             ("cold_track", "track mode, nothing analysed (peer)", "")):
        print(f"  {label:<42} {med(key, 'first_block_s'):.3f} s  ({spread(key, 'first_block_s')})  {goal}")
    print(f"  cold: album analysis complete after {med('cold_auto', 'album_analysed_s'):.1f} s; first track's plan: "
          f"{[r.get('first_track_plan') for r in results['cold_auto']]}")
    (OUT / "album_play.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
