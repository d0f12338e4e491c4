"""Benchmark WebSocket audio: first-audio latency, concurrent private sessions, shared-stream listeners.

Starts a real ``auralisd`` (2 workers) on a generated library under ``bench/out/stream/`` and measures
with ``websockets`` clients (one asyncio loop in this process):

* first audio: ``play_enhanced`` on ``/session`` to the first binary frame, on a 5-minute 44.1 kHz FLAC,
  cold (nothing analysed or rendered), warm fingerprint (new preset: chunk not cached) and warm (cached);
  peers in the same run: the shared player's ``play`` -> first ``/stream`` frame (cold and warm), and
  ``auralis master`` of the whole file (the "render first, then play" alternative);
* concurrent private sessions: N realtime ``/session`` streams of different tracks and presets started
  at once, for :data:`WINDOW_S` s each step; a frame is late when it arrives more than :data:`LATE_S`
  after its due time (the web player's jitter buffer), and a session must start within
  :data:`STARTUP_S`; the largest N with neither is reported (goal >= 16);
* shared-stream listeners: N ``/stream`` listeners, same rule, plus no dropped listener.
* ``--sessions48k``: :data:`SESSIONS_48K` real-time private sessions on **48 kHz** sources (the daemon
  plays at 44.1 kHz, so every chunk is resampled, in the render job) started at once: none may be late,
  every session's first audio must come within :data:`FIRST_AUDIO_LIMIT_S`; and the CPU time of the
  daemon's trio thread (its main thread, from ``/proc``) per real-time session, against the same
  thread idle in the same run.

Prints a table, writes ``bench/out/stream.json`` (``stream_48k_<count>.json`` for ``--sessions48k``).
``--quick`` runs shorter windows and fewer steps.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import websockets  # noqa: E402

from auralis.audio import write_audio  # noqa: E402
from auralis.presets import PRESET_NAMES  # noqa: E402
from auralis.synth import loudness_war, make_music  # noqa: E402
from tests.web.daemon import running_daemon  # noqa: E402

OUT = ROOT / "bench" / "out"
SAMPLE_RATE = 44_100
LONG_TRACK_S = 300.0
SHORT_TRACK_S = 40.0
LIBRARY_TRACKS = 24
LATE_S = 0.5  # the web player's jitter buffer (PREBUFFER_S in worklet.js): a frame later than this underruns
WINDOW_S = 20.0
STARTUP_S = 2.0  # a session counts as real time only if its first audio came within this (all N at once)
SESSIONS_48K = 64  # issue 11: 64 concurrent real-time private sessions on 48 kHz sources
FIRST_AUDIO_LIMIT_S = 1.0  # issue 11: every one of them hears its first audio within this
TRACKS_48K = 16
RATE_48K = 48_000
HEADER = struct.Struct("<IIQ")


def build_library(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    long_path = folder / "long.flac"
    if not long_path.exists():
        write_audio(long_path, make_music(LONG_TRACK_S, SAMPLE_RATE, bpm=124, seed=100), SAMPLE_RATE)
    for i in range(LIBRARY_TRACKS):
        path = folder / f"track{i:02d}.wav"
        if not path.exists():
            x = make_music(SHORT_TRACK_S, SAMPLE_RATE, bpm=96 + 4 * i, seed=i)
            write_audio(path, loudness_war(x) if i % 3 == 0 else x, SAMPLE_RATE)


class Rpc:
    def __init__(self, ws) -> None:
        import msgpack

        self.ws, self.msgpack, self.id = ws, msgpack, 0

    async def call(self, method: str, params: dict | None = None):
        self.id += 1
        await self.ws.send(self.msgpack.packb([0, self.id, method, params or {}]))
        unpacker = self.msgpack.Unpacker(raw=False)
        while True:
            unpacker.feed(await self.ws.recv())
            for msg in unpacker:
                if msg[0] == 1 and msg[1] == self.id:
                    if msg[2]:
                        raise RuntimeError(msg[2])
                    return msg[3]


async def first_audio_session(url: str, track_id: int, preset: str) -> float:
    async with websockets.connect(url + "/session", proxy=None, max_size=None) as ws:
        t0 = time.perf_counter()
        await ws.send(json.dumps({"type": "play_enhanced", "track_id": track_id, "preset": preset, "pace": "burst"}))
        while True:
            message = await ws.recv()
            if isinstance(message, bytes):
                return time.perf_counter() - t0
            if json.loads(message)["type"] == "audio_stream_error":
                raise RuntimeError(message)


async def first_audio_player(url: str, track_id: int) -> float:
    async with websockets.connect(url + "/control", proxy=None, max_size=None) as control, \
            websockets.connect(url + "/stream", proxy=None, max_size=None) as stream:
        rpc = Rpc(control)
        await rpc.call("stop")
        await rpc.call("queue.clear")
        await rpc.call("queue.add", {"track_ids": [track_id]})
        await asyncio.sleep(0.2)
        t0 = time.perf_counter()
        await rpc.call("play", {"pos": 0})
        while True:
            if isinstance(await stream.recv(), bytes):
                elapsed = time.perf_counter() - t0
                await rpc.call("stop")
                return elapsed


def lateness_s(arrivals: list[float], frames: list[int]) -> float:
    """Worst delay of a frame behind a player that starts at the first frame (0 = every frame on time).

    Frame i is due at ``arrival[0] + media_i`` (plus the client's jitter buffer, :data:`LATE_S`).
    """
    if len(arrivals) < 2:
        return float("inf")
    media = np.concatenate([[0.0], np.cumsum(frames)[:-1]]) / SAMPLE_RATE
    late = np.asarray(arrivals) - media
    return float(max(0.0, (late - late[0]).max()))


async def _receive(ws, seconds: float, arrivals: list[float], frames: list[int], bytes_per_frame: int = 8) -> None:
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        try:
            message = await asyncio.wait_for(ws.recv(), timeout=left)
        except TimeoutError:
            return
        if isinstance(message, bytes):
            arrivals.append(time.monotonic())
            frames.append((len(message) - HEADER.size) // bytes_per_frame)


async def run_sessions(url: str, track_ids: list[int], n: int, seconds: float) -> dict:
    async def one(i: int):
        arrivals: list[float] = []
        frames: list[int] = []
        async with websockets.connect(url + "/session", proxy=None, max_size=None) as ws:
            await ws.send(json.dumps({"type": "play_enhanced", "track_id": track_ids[i % len(track_ids)],
                                      "preset": PRESET_NAMES[i % len(PRESET_NAMES)], "intensity": 0.5 + 0.5 * (i % 2)}))
            await _receive(ws, seconds, arrivals, frames)
        return arrivals, frames

    results = await asyncio.gather(*[one(i) for i in range(n)])
    worst = max(lateness_s(a, f) for a, f in results)
    got = min(sum(f) for _, f in results) / SAMPLE_RATE
    # Real time includes starting in time: every session must have played all but STARTUP_S of the window.
    return {"sessions": n, "worst_lateness_s": round(worst, 3), "min_audio_s": round(got, 2),
            "late": worst > LATE_S or got < seconds - STARTUP_S}


async def run_listeners(url: str, n: int, seconds: float) -> dict:
    async def one():
        arrivals: list[float] = []
        frames: list[int] = []
        try:
            async with websockets.connect(url + "/stream", proxy=None, max_size=None) as ws:
                await _receive(ws, seconds, arrivals, frames)
            return arrivals, frames, False
        except websockets.ConnectionClosed:
            return arrivals, frames, True

    results = await asyncio.gather(*[one() for _ in range(n)])
    worst = max(lateness_s(a, f) for a, f, _ in results)
    dropped = sum(d for _, _, d in results)
    return {"listeners": n, "worst_lateness_s": round(worst, 3), "dropped": dropped,
            "late": worst > LATE_S or dropped > 0}


async def wait_idle(rpc: Rpc, quiet_s: float = 2.0, timeout_s: float = 300.0) -> None:
    """Wait until the worker pool has been idle for ``quiet_s`` (start-up analysis of the library done)."""
    deadline = time.monotonic() + timeout_s
    quiet_since = None
    while time.monotonic() < deadline:
        pool = (await rpc.call("status")).get("pool", {})
        if pool.get("running", 0) == 0 and pool.get("waiting", 0) == 0:
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since >= quiet_s:
                return
        else:
            quiet_since = None
        await asyncio.sleep(0.2)


async def add_cold_copy(rpc: Rpc, music: Path, source: Path, name: str) -> int:
    """Copy ``source`` under a new name (nothing analysed or rendered for it), rescan, return its id."""
    target = music / name
    shutil.copyfile(source, target)
    await rpc.call("library.scan")
    while True:
        found = (await rpc.call("library.search", {"query": target.stem, "limit": 10}))["tracks"]
        match = [t for t in found if Path(t["path"]).name == name]
        if match and not (await rpc.call("status"))["scan"]["running"]:
            return match[0]["track_id"]
        await asyncio.sleep(0.1)


async def bench(url: str, ids: dict[str, int], music: Path, quick: bool) -> dict:
    window = 8.0 if quick else WINDOW_S
    out: dict = {}
    short = [v for k, v in sorted(ids.items()) if k.startswith("track")]
    async with websockets.connect(url + "/control", proxy=None, max_size=None) as control:
        rpc = Rpc(control)
        await wait_idle(rpc)  # cold means cold for this track, not "while the library is being analysed"
        stamp = int(time.time())
        long_id = await add_cold_copy(rpc, music, music / "long.flac", f"cold-{stamp}.flac")
        short_cold = await add_cold_copy(rpc, music, music / "track01.wav", f"cold-{stamp}.wav")
    out["first_audio_cold_s"] = await first_audio_session(url, long_id, "adaptive")
    out["first_audio_warm_fingerprint_s"] = await first_audio_session(url, long_id, "warm")
    out["first_audio_warm_s"] = min([await first_audio_session(url, long_id, "warm") for _ in range(3)])
    out["player_first_audio_cold_s"] = await first_audio_player(url, short_cold)  # fingerprint cold, first play
    out["player_first_audio_warm_s"] = await first_audio_player(url, short_cold)
    async with websockets.connect(url + "/control", proxy=None, max_size=None) as control:
        rpc = Rpc(control)
        for track_id in short:  # fingerprints ready: the session steps measure rendering, not analysis
            await rpc.call("fingerprint.get", {"track_id": track_id})
    steps = [8, 16, 24] if quick else [4, 8, 16, 24, 32, 48, 64]
    out["session_steps"] = []
    for n in steps:
        step = await run_sessions(url, short, n, window)
        out["session_steps"].append(step)
        print(f"  sessions {n:3d}: worst lateness {step['worst_lateness_s']:.3f} s, "
              f"least audio {step['min_audio_s']:.1f} s of {window:.0f} s", flush=True)
        if step["late"]:
            break
    ok = [s["sessions"] for s in out["session_steps"] if not s["late"]]
    out["max_realtime_sessions"] = max(ok) if ok else 0
    async with websockets.connect(url + "/control", proxy=None, max_size=None) as control:
        rpc = Rpc(control)
        await rpc.call("queue.clear")
        await rpc.call("queue.add", {"track_ids": short[:4]})
        await rpc.call("options.set", {"repeat": True})
        await rpc.call("play", {"pos": 0})
        out["listener_steps"] = []
        for n in ([50, 100] if quick else [50, 75, 100, 150, 200]):
            step = await run_listeners(url, n, window)
            out["listener_steps"].append(step)
            print(f"  listeners {n:3d}: worst lateness {step['worst_lateness_s']:.3f} s, dropped {step['dropped']}",
                  flush=True)
            if step["late"]:
                break
        await rpc.call("stop")
        await rpc.call("options.set", {"repeat": False})
    ok = [s["listeners"] for s in out["listener_steps"] if not s["late"]]
    out["max_listeners"] = max(ok) if ok else 0
    return out


def offline_master_s(source: Path) -> float:
    target = OUT / "stream_offline.wav"
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "auralis.cli", "master", str(source), str(target)], check=True,
                   capture_output=True)
    elapsed = time.perf_counter() - t0
    target.unlink(missing_ok=True)
    return elapsed


def build_library_48k(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(TRACKS_48K):
        path = folder / f"hr{i:02d}.flac"
        if not path.exists():
            x = make_music(SHORT_TRACK_S, RATE_48K, bpm=100 + 3 * i, seed=200 + i)
            write_audio(path, loudness_war(x) if i % 3 == 0 else x, RATE_48K)


def event_loop_resample_ms_per_s() -> float:
    """The peer: what the trio thread spent per second of a 48 kHz session before resampling moved into
    the render job (the removed ``auralisd/resample.py``: one ``(frames, taps, channels)`` gather and an
    einsum per 100 ms frame, on the event loop, with the filter of that time: ``resample_poly``'s
    default, 21-22 taps per output frame), measured here in the same run."""
    from math import gcd

    from auralis.resample import lowpass_fir

    g = gcd(RATE_48K, SAMPLE_RATE)
    up, down = SAMPLE_RATE // g, RATE_48K // g
    half_len = 10 * max(up, down)
    taps = -(-(2 * half_len + 1) // up)
    h = np.zeros(taps * up)
    h[: 2 * half_len + 1] = lowpass_fir(2 * half_len + 1, 1.0 / max(up, down), 5.0) * up
    bank = h.reshape(taps, up).T  # bank[phase, tap]
    block = SAMPLE_RATE // 10
    span = np.random.default_rng(0).standard_normal((RATE_48K, 2)).astype(np.float32)
    n_blocks = 50
    t0 = time.process_time()
    for i in range(n_blocks):
        n0 = i * block
        n = np.arange(n0, n0 + block, dtype=np.int64) * down + half_len
        lo = int(n[0] // up) - taps + 1
        idx = (n // up - lo)[:, None] - np.arange(taps)[None, :]
        x = span[(idx + lo - (idx + lo).min()) % span.shape[0]]
        np.einsum("ft,ftc->fc", bank[n % up], x).astype(np.float32)
    return 1000 * (time.process_time() - t0) / (n_blocks / 10)


def workers_cpu_s(pid: int) -> float:
    """CPU time (user + system) of the daemon's child processes (its workers) now, from ``/proc``."""
    total = 0.0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            try:
                fields = Path(f"/proc/{child}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def process_cpu_s(pid: int) -> float:
    """CPU time (user + system) of every thread of a process, from ``/proc/<pid>/stat``."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu_s(pid: int, tid: int) -> float:
    """CPU time (user + system) of one thread of a process, from ``/proc/<pid>/task/<tid>/stat``."""
    import os

    fields = Path(f"/proc/{pid}/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime (fields 14, 15)


async def sessions_48k(url: str, pid: int, track_ids: list[int], n: int, seconds: float) -> dict:
    """``n`` real-time sessions on 48 kHz tracks started at once: first audio, lateness, trio-thread CPU."""
    await asyncio.sleep(2.0)
    idle0 = thread_cpu_s(pid, pid)
    await asyncio.sleep(seconds / 2)
    idle_cpu_s = (thread_cpu_s(pid, pid) - idle0) / (seconds / 2)  # per second, nothing playing

    async def one(i: int) -> tuple[float, list[float], list[int]]:
        arrivals: list[float] = []
        frames: list[int] = []
        async with websockets.connect(url + "/session", proxy=None, max_size=None) as ws:
            t0 = time.monotonic()
            await ws.send(json.dumps({"type": "play_enhanced", "track_id": track_ids[i % len(track_ids)],
                                      "preset": PRESET_NAMES[i % len(PRESET_NAMES)], "intensity": 0.5 + 0.5 * (i % 2)}))
            await _receive(ws, seconds, arrivals, frames)
        return (arrivals[0] - t0 if arrivals else float("inf")), arrivals, frames

    async with websockets.connect(url + "/control", proxy=None, max_size=None) as control:
        rpc = Rpc(control)
        pool0 = (await rpc.call("status")).get("pool", {})
        await rpc.call("pool.timeline", {"reset": True})  # the per-job timeline covers the sessions only
        cpu0, workers0, client0 = thread_cpu_s(pid, pid), workers_cpu_s(pid), time.process_time()
        daemon0 = process_cpu_s(pid)
        wall0 = time.monotonic()
        samples: list[tuple[int, int, int]] = []  # (workers, running, waiting) every 0.25 s

        async def sample_pool() -> None:
            while True:
                pool = (await rpc.call("status")).get("pool", {})
                samples.append((pool.get("workers", 0), pool.get("running", 0), pool.get("waiting", 0)))
                await asyncio.sleep(0.25)

        sampler = asyncio.ensure_future(sample_pool())
        results = await asyncio.gather(*[one(i) for i in range(n)])
        sampler.cancel()
        try:
            await sampler  # its status call must end before the next one on the same connection
        except asyncio.CancelledError:
            pass
        cpu_s = thread_cpu_s(pid, pid) - cpu0
        workers_s = workers_cpu_s(pid) - workers0
        daemon_s = process_cpu_s(pid) - daemon0  # every thread of the daemon (trio, to_thread work)
        client_s = time.process_time() - client0  # this process: the 64 WebSocket clients share the cores
        wall_s = time.monotonic() - wall0
        cpu_per_s = cpu_s / wall_s
        pool1 = (await rpc.call("status")).get("pool", {})
        timeline = await rpc.call("pool.timeline")
    jobs = pool1.get("jobs_done", 0) - pool0.get("jobs_done", 0)
    firsts = sorted(r[0] for r in results)
    worst = max(lateness_s(a, f) for _, a, f in results)
    least = min(sum(f) for _, _, f in results) / SAMPLE_RATE
    audio_s = sum(sum(f) for _, _, f in results) / SAMPLE_RATE
    return {
        "sessions": n, "source_rate": RATE_48K, "output_rate": SAMPLE_RATE, "window_s": seconds,
        "first_audio_median_s": round(firsts[len(firsts) // 2], 3), "first_audio_max_s": round(firsts[-1], 3),
        "worst_lateness_s": round(worst, 3), "least_audio_s": round(least, 2),
        "late": worst > LATE_S, "first_audio_ok": firsts[-1] <= FIRST_AUDIO_LIMIT_S,
        "trio_thread_cpu_s_per_s": round(cpu_per_s, 4), "trio_thread_idle_cpu_s_per_s": round(idle_cpu_s, 4),
        "trio_thread_cpu_ms_per_s_per_session": round(1000 * max(0.0, cpu_per_s - idle_cpu_s) / n, 3),
        "peer_event_loop_resampling_ms_per_s_per_session": round(event_loop_resample_ms_per_s(), 3),
        "pool_jobs": jobs, "pool_jobs_per_session": round(jobs / n, 1),
        "workers_cpu_s_per_s": round(workers_s / wall_s, 3),
        "workers_cpu_ms_per_job": round(1000 * workers_s / jobs, 1) if jobs else None,
        "daemon_all_threads_cpu_s_per_s": round(daemon_s / wall_s, 3),
        "bench_clients_cpu_s_per_s": round(client_s / wall_s, 3),
        # while jobs waited, were all workers running? (1.0: the pool kept them busy; the wait was CPU)
        "pool_busy_when_jobs_waited": round(
            sum(1 for w, r, q in samples if q > 0 and r >= w) / max(1, sum(1 for _, _, q in samples if q > 0)), 2),
        "pool_samples_with_jobs_waiting": sum(1 for _, _, q in samples if q > 0),
        "first_audio_by_session_s": [round(r[0], 3) for r in results],  # in start order
        "audio_delivered_s": round(audio_s, 1),
        "trio_thread_cpu_ms_per_audio_s": round(1000 * cpu_s / audio_s, 3) if audio_s else None,
        "pool_timeline": timeline,
    }


PHASES = ("ask_to_queue", "queue", "grant_to_dispatch", "dispatch_to_start", "run", "cpu", "handback", "total")


def print_timeline(timeline: dict) -> None:
    """The pool's per-job timeline (``pool.timeline``): phases per kind of job, use per worker."""
    print(f"pool timeline: {timeline.get('jobs', 0)} jobs over {timeline.get('window_s', 0)} s "
          "(ms, median / 90th percentile / max)")
    print(f"  {'job':16s} {'n':>4s} " + " ".join(f"{p:>19s}" for p in PHASES) + "  result_kB via_shm")
    for label, row in timeline.get("labels", {}).items():
        cells = " ".join(f"{row[p]['p50']:>6.1f}/{row[p]['p90']:>6.1f}/{row[p]['max']:>5.0f}" for p in PHASES)
        print(f"  {label:16s} {row['jobs']:4d} {cells}  {row['result_kb']:9.1f} {row['via_shm']:7d}")
    for pid, row in timeline.get("workers", {}).items():
        gap = row["idle_gap_ms"]
        print(f"  worker {pid}: {row['jobs']} jobs, in a job {row['busy']:.0%} of the window, computing "
              f"{row['cpu']:.0%}; idle between jobs while others waited {row['idle_gaps_s']:.2f} s "
              f"(gap median {gap['p50']} ms, max {gap['max']} ms)")


def main_48k(quick: bool, count: int = SESSIONS_48K) -> int:
    work = OUT / "stream48k"
    music = work / "music"
    build_library_48k(music)
    for stale in music.glob("*.25d"):
        stale.unlink(missing_ok=True)
    for leftover in ("state", "runtime", "config", "cache", "xstate", "xrun"):
        shutil.rmtree(work / leftover, ignore_errors=True)
    window = 10.0 if quick else WINDOW_S
    with running_daemon(work, music, workers=2) as daemon:
        from tests.web.daemon import track_ids

        ids = sorted(track_ids(daemon).values())

        async def run() -> dict:
            async with websockets.connect(daemon.ws + "/control", proxy=None, max_size=None) as control:
                rpc = Rpc(control)
                for track_id in ids:  # fingerprints ready: this measures playback, not analysis
                    await rpc.call("fingerprint.get", {"track_id": track_id})
                await wait_idle(rpc)
            return await sessions_48k(daemon.ws, daemon.process.pid, ids, count, window)

        load_before = os.getloadavg()[0]
        result = asyncio.run(run())
    result["load_average_1min_before"] = round(load_before, 2)
    result["load_average_1min_after"] = round(os.getloadavg()[0], 2)
    for key, value in result.items():
        if key != "pool_timeline":
            print(f"  {key:40s} {value}")
    print_timeline(result["pool_timeline"])
    print(f"budgets (issue 11), {count} sessions on 48 kHz sources at {SAMPLE_RATE} Hz out:")
    print(f"  first audio, every session      <= {FIRST_AUDIO_LIMIT_S:.2f} s   measured max {result['first_audio_max_s']:.3f} s"
          f" (median {result['first_audio_median_s']:.3f} s): {'met' if result['first_audio_ok'] else 'MISSED'}")
    print(f"  no frame late (> {LATE_S:.1f} s)          measured worst {result['worst_lateness_s']:.3f} s: "
          f"{'met' if not result['late'] else 'MISSED'}")
    print(f"  trio thread per real-time session: {result['trio_thread_cpu_ms_per_s_per_session']:.2f} ms/s "
          f"(peer, event-loop resampling alone: {result['peer_event_loop_resampling_ms_per_s_per_session']:.1f} ms/s)")
    OUT.mkdir(exist_ok=True)
    (OUT / f"stream_48k_{count}.json").write_text(json.dumps(result, indent=2))
    return 0 if not result["late"] and result["first_audio_ok"] else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter windows, fewer steps")
    parser.add_argument("--sessions48k", action="store_true",
                        help=f"{SESSIONS_48K} real-time sessions on 48 kHz sources, trio-thread CPU per session")
    parser.add_argument("--count", type=int, default=SESSIONS_48K, help="sessions for --sessions48k")
    args = parser.parse_args()
    if args.sessions48k:
        return main_48k(args.quick, args.count)
    work = OUT / "stream"
    music = work / "music"
    build_library(music)
    for stale in [*music.glob("*.25d"), *music.glob("cold-*")]:  # cold means cold: no sidecar either
        stale.unlink(missing_ok=True)
    for leftover in ("state", "runtime", "config", "cache", "xstate", "xrun"):
        shutil.rmtree(work / leftover, ignore_errors=True)
    with running_daemon(work, music, workers=2) as daemon:
        from tests.web.daemon import track_ids

        ids = track_ids(daemon)
        results = asyncio.run(bench(daemon.ws, ids, music, args.quick))
    results["offline_master_long_s"] = offline_master_s(music / "long.flac")
    results["machine_note"] = "2 workers; clients in one asyncio process on the same machine"
    rows = [
        ("first audio, /session cold (5 min FLAC)", results["first_audio_cold_s"], results["offline_master_long_s"],
         "auralis master, whole file"),
        ("first audio, /session warm fingerprint", results["first_audio_warm_fingerprint_s"],
         results["first_audio_cold_s"], "cold"),
        ("first audio, /session warm (cached)", results["first_audio_warm_s"], results["first_audio_cold_s"], "cold"),
        ("first audio, shared player cold (40 s WAV)", results["player_first_audio_cold_s"], None, ""),
        ("first audio, shared player warm", results["player_first_audio_warm_s"],
         results["player_first_audio_cold_s"], "player cold"),
    ]
    print(f"\n{'measure':44s} {'seconds':>9s} {'ratio':>8s}  vs")
    for name, value, peer, peer_name in rows:
        ratio = f"{value / peer:8.3f}" if peer else " " * 8
        print(f"{name:44s} {value:9.3f} {ratio}  {peer_name}")
    print(f"{'concurrent realtime /session (goal >= 16)':44s} {results['max_realtime_sessions']:9d}")
    print(f"{'/stream listeners, none late or dropped':44s} {results['max_listeners']:9d}")
    OUT.mkdir(exist_ok=True)
    (OUT / "stream.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
