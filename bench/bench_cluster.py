"""Library analysis on a Dask cluster (issue 14): throughput, Dask's overhead, first audio meanwhile.

Measured in one run, on the same generated files:

* **throughput**: one process (``auralis.cluster.analyze_paths_locally``, the ``auralis analyze``
  path) against a 2-worker ``distributed.LocalCluster`` (``analyze_on_cluster``), in files/s and
  seconds of audio per second, with the CPU seconds each side spent (driver + workers): on a
  shared machine wall-clock alone says little (goal: >= 1.8x with 2 workers);
* **Dask's overhead**: the round trip of empty tasks through the same cluster, per task; the CPU
  the analysis itself took inside the tasks (thread CPU time) against the same files in this
  process, the workers' whole-process CPU, and what idle workers burn per second (heartbeats,
  the profiler): whole-process minus in-task minus idle is Dask's cost per file;
* **first audio while the daemon's background analysis runs on the cluster**: the real actors
  (database, pool, resolver with a ClusterAnalysis bridge, mastering, player) with the library's
  background analysis out on the cluster, then ``play`` of a track nobody analysed yet: time to the
  first PCM block (goal <= 1.0 s), against the same with no background work and with the
  background work on the daemon's own pool.

Writes ``bench/out/cluster.json``. Run: ``.venv/bin/python bench/bench_cluster.py [--files N] [--runs N]``.
Needs the cluster extra (``pip install 'auralis[cluster]'``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import shutil
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import trio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from auralis import cluster  # noqa: E402
from auralis.audio import write_audio  # noqa: E402
from auralis.synth import make_music  # noqa: E402
from auralisd.actors.cache import ChunkCache  # noqa: E402
from auralisd.actors.cluster import ClusterAnalysis  # noqa: E402
from auralisd.actors.database import Database  # noqa: E402
from auralisd.actors.events import EventHub  # noqa: E402
from auralisd.actors.fingerprints import FingerprintResolver  # noqa: E402
from auralisd.actors.library import Library  # noqa: E402
from auralisd.actors.mastering import Mastering  # noqa: E402
from auralisd.actors.player import PcmBlock, Player  # noqa: E402
from auralisd.actors.pool import open_mastering_pool  # noqa: E402

OUT = ROOT / "bench" / "out"
SAMPLE_RATE = 44_100
FILE_S = 20.0  # throughput files: 20 s stereo FLAC each
PLAY_S = 120.0  # the track played while the library is analysed


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _loadavg() -> float:
    return os.getloadavg()[0]


def write_files(folder: Path, count: int, seconds: float) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"{i:04d}.flac"
        if not path.exists():
            rng = np.random.default_rng(i)
            t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
            x = 0.3 * np.sin(2 * np.pi * (100 + 5 * i) * t)[:, None] + 0.05 * rng.standard_normal((t.size, 2))
            sf.write(str(path), x.astype(np.float32), SAMPLE_RATE, subtype="PCM_16")
        paths.append(str(path))
    return paths


def _timed_file_task(path: str) -> float:
    """Thread CPU seconds of one file's whole task (identity + fingerprint), where it runs."""
    started = time.thread_time()
    result = cluster.file_task(path, 1 << 30)
    assert isinstance(result, cluster.FileDone), result
    return time.thread_time() - started


def _warm_worker() -> int:
    import auralis.fingerprint  # noqa: F401 - the first task would pay for these imports
    import auralis.sidecar  # noqa: F401

    return os.getpid()


def _worker_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def in_task_cpu(paths: list[str], client) -> dict[str, float]:
    """The analysis' own CPU per file here and on the workers, the workers' whole CPU, their idle CPU."""
    local = sum(_timed_file_task(p) for p in paths)
    before, t0 = sum(client.run(_worker_cpu).values()), time.perf_counter()
    remote = sum(client.gather(client.map(_timed_file_task, paths, pure=False)))
    wall = time.perf_counter() - t0
    whole = sum(client.run(_worker_cpu).values()) - before
    before, t0 = sum(client.run(_worker_cpu).values()), time.perf_counter()
    time.sleep(3.0)
    idle_per_s = (sum(client.run(_worker_cpu).values()) - before) / (time.perf_counter() - t0)
    n = len(paths)
    return {
        "local_in_task_cpu_per_file_ms": 1000.0 * local / n,
        "cluster_in_task_cpu_per_file_ms": 1000.0 * remote / n,
        "cluster_process_cpu_per_file_ms": 1000.0 * whole / n,
        "idle_workers_cpu_per_s": idle_per_s,
        "dask_cpu_per_file_ms": 1000.0 * (whole - remote - idle_per_s * wall) / n,
    }


def throughput(paths: list[str], client) -> dict[str, float]:
    """One process vs the cluster on the same files (no sidecars: every file is computed)."""
    none = cluster.SidecarPolicy("none", read=False)
    audio_s = len(paths) * FILE_S
    outcomes: list[cluster.Outcome] = []
    cpu0, t0, load0 = _cpu_s(), time.perf_counter(), _loadavg()
    cluster.analyze_paths_locally(paths, outcomes.append, sidecars=none)
    one_wall, one_cpu = time.perf_counter() - t0, _cpu_s() - cpu0
    assert all(o.source == "computed" for o in outcomes)
    reference = {o.path: o.fingerprint for o in outcomes}

    worker_cpu = _worker_cpu
    before = sum(client.run(worker_cpu).values())
    outcomes = []
    cpu0, t0 = _cpu_s(), time.perf_counter()
    cluster.analyze_on_cluster(client, paths, outcomes.append, sidecars=none)
    two_wall, driver_cpu = time.perf_counter() - t0, _cpu_s() - cpu0
    workers_cpu = sum(client.run(worker_cpu).values()) - before
    assert all(o.source == "computed" and o.fingerprint == reference[o.path] for o in outcomes), "not exact"
    return {
        "files": len(paths), "file_s": FILE_S, "load_before": load0, "load_after": _loadavg(),
        "one_process_wall_s": one_wall, "one_process_cpu_s": one_cpu,
        "one_process_files_per_s": len(paths) / one_wall, "one_process_x_realtime": audio_s / one_wall,
        "cluster_wall_s": two_wall, "cluster_driver_cpu_s": driver_cpu, "cluster_workers_cpu_s": workers_cpu,
        "cluster_files_per_s": len(paths) / two_wall, "cluster_x_realtime": audio_s / two_wall,
        "speedup_wall": one_wall / two_wall,
        "extra_cpu_per_file_ms": 1000.0 * (driver_cpu + workers_cpu - one_cpu) / len(paths),
        "one_process_cpu_per_file_ms": 1000.0 * one_cpu / len(paths),
    }  # fmt: skip


def _noop(x: int) -> int:
    return x


def task_overhead(client, tasks: int = 2000) -> dict[str, float]:
    """Dask's own cost: empty tasks through the same scheduler and workers, as the driver submits them."""
    client.gather(client.map(_noop, range(50), pure=False))  # warm
    t0 = time.perf_counter()
    futures = client.map(_noop, range(tasks), pure=False)
    client.gather(futures)
    batch = (time.perf_counter() - t0) / tasks
    t0 = time.perf_counter()
    for i in range(200):
        client.submit(_noop, i, pure=False).result()
    one_by_one = (time.perf_counter() - t0) / 200
    return {"empty_task_batched_ms": 1000.0 * batch, "empty_task_round_trip_ms": 1000.0 * one_by_one}


async def first_audio(music: Path, state: Path, mode: str, scheduler: str | None) -> float:
    """One daemon life: background analysis (none | local | cluster), then ``play`` of an unanalysed track."""
    db = Database(str(state))
    hub = EventHub()
    async with trio.open_nursery() as outer:
        await outer.start(db.run)
        async with open_mastering_pool(2) as pool, trio.open_nursery() as nursery:
            await pool.warm_up()
            bridge = ClusterAnalysis(scheduler) if mode == "cluster" and scheduler else None
            if bridge is not None:
                await nursery.start(bridge.run)
            library = Library(db, hub, [str(music)])
            await nursery.start(library.run)
            resolver = FingerprintResolver(db, pool, hub, sidecars="none", cluster=bridge)
            await nursery.start(resolver.run)
            mastering = Mastering(pool, ChunkCache(256 << 20))
            await nursery.start(mastering.run)
            player = Player(db=db, hub=hub, resolver=resolver, mastering=mastering, sample_rate=SAMPLE_RATE,
                            render_ahead=3)  # fmt: skip
            await nursery.start(player.run)
            library.scan()
            await library.wait_scan()
            (track,) = await library.resolve_paths([str(music / "zz-play.flac")])
            if mode != "none":
                resolver.schedule_idle()
                if bridge is not None:
                    await bridge.wait_in_flight(32)  # the cluster is busy with the library
                else:
                    with trio.move_on_after(1.0):  # let the local pool pick up background work
                        await pool.wait_running()
            await player.clear()
            await player.add([track])
            sub = await player.subscribe(max_blocks=400)
            started = time.perf_counter()
            await player.play(0)
            with trio.fail_after(120):
                async for message in sub.receive:
                    if isinstance(message, PcmBlock):
                        break
            latency = time.perf_counter() - started
            sub.close()
            nursery.cancel_scope.cancel()
        outer.cancel_scope.cancel()
    return latency


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=60, help="files for the throughput run (20 s each)")
    parser.add_argument("--runs", type=int, default=3, help="daemon lives per first-audio mode (median reported)")
    args = parser.parse_args(argv)
    distributed = cluster.require_distributed()
    for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, "1")
    work = OUT / "cluster"
    paths = write_files(work / "files", args.files, FILE_S)
    results: dict[str, object] = {"cores": os.cpu_count()}
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                                  silence_logs=logging.ERROR) as lc, distributed.Client(lc) as client:  # fmt: skip
        client.run(_warm_worker)  # imports done before timing, as the daemon's pool warms up
        _warm_worker()
        results["throughput"] = tp = throughput(paths, client)
        results["overhead"] = oh = task_overhead(client)
        results["cpu"] = cpu = in_task_cpu(paths[: max(10, len(paths) // 3)], client)
        print(f"throughput on {tp['files']} x {FILE_S:.0f} s FLAC (load {tp['load_before']:.1f} -> {tp['load_after']:.1f}):")
        print(f"  one process      {tp['one_process_files_per_s']:6.2f} files/s  {tp['one_process_x_realtime']:6.0f}x real time"
              f"  wall {tp['one_process_wall_s']:6.2f} s  CPU {tp['one_process_cpu_s']:6.2f} s")
        print(f"  2-worker cluster {tp['cluster_files_per_s']:6.2f} files/s  {tp['cluster_x_realtime']:6.0f}x real time"
              f"  wall {tp['cluster_wall_s']:6.2f} s  CPU {tp['cluster_workers_cpu_s']:6.2f} s workers"
              f" + {tp['cluster_driver_cpu_s']:.2f} s driver")
        print(f"  speed-up {tp['speedup_wall']:.2f}x (goal >= 1.8x); extra CPU per file on the cluster"
              f" {tp['extra_cpu_per_file_ms']:.1f} ms (a file costs {tp['one_process_cpu_per_file_ms']:.0f} ms)")
        print(f"  Dask empty task: {oh['empty_task_batched_ms']:.2f} ms batched, {oh['empty_task_round_trip_ms']:.2f} ms"
              " one at a time")
        print(f"  CPU per file inside the task: {cpu['local_in_task_cpu_per_file_ms']:.0f} ms here,"
              f" {cpu['cluster_in_task_cpu_per_file_ms']:.0f} ms on the 2 workers at once;"
              f" worker processes {cpu['cluster_process_cpu_per_file_ms']:.0f} ms;"
              f" idle workers {1000 * cpu['idle_workers_cpu_per_s']:.0f} ms/s;"
              f" Dask per file {cpu['dask_cpu_per_file_ms']:.1f} ms")

        music = work / "music"
        shutil.rmtree(music, ignore_errors=True)
        write_files(music, 200, 10.0)
        write_audio(str(music / "zz-play.flac"), make_music(PLAY_S, SAMPLE_RATE, seed=5), SAMPLE_RATE)
        latencies: dict[str, list[float]] = {}
        for mode in ("none", "local", "cluster"):
            for run in range(max(1, args.runs)):
                state = work / f"state-{mode}-{run}.sqlite3"
                for leftover in work.glob("state-*"):
                    leftover.unlink()
                latencies.setdefault(mode, []).append(trio.run(first_audio, music, state, mode, lc.scheduler_address))
        results["first_audio_s"] = {mode: {"median": statistics.median(v), "runs": v} for mode, v in latencies.items()}
        print("time to first audio of an unanalysed 2-minute track (median of runs, s):")
        for mode, label in (("none", "no background work"), ("local", "library analysis on the daemon's pool"),
                            ("cluster", "library analysis on the cluster")):  # fmt: skip
            runs = latencies[mode]
            print(f"  {label:<40} {statistics.median(runs):.3f}  ({min(runs):.3f}-{max(runs):.3f})")
    (OUT / "cluster.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
