"""Benchmark ``/stream?format=opus``: the daemon's CPU with 1 and N Opus listeners, against N f32 listeners.

Starts a real ``auralisd`` (1 worker) on a generated 40 s track played on repeat, lets its chunks reach
the cache, then for each case connects the listeners (``websockets``, one asyncio loop in this process)
and measures the CPU time of the daemon's own process (every thread: the trio loop and the Opus encoder
threads; not the worker processes) over :data:`WINDOW_S` seconds, and the bytes each listener received.
One shared encoder per variant: the CPU with N Opus listeners should stay near that with one, while N
f32 listeners cost N times the bandwidth.

Prints a table and writes ``bench/out/opus.json``. ``--quick`` shortens the windows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import websockets  # noqa: E402

from auralis.audio import write_audio  # noqa: E402
from auralis.synth import make_music  # noqa: E402
from bench.procstat import process_cpu_s  # noqa: E402
from tests.web.daemon import running_daemon  # noqa: E402

OUT = ROOT / "bench" / "out"
SAMPLE_RATE = 44_100
WINDOW_S = 15.0
MANY = 20


async def listen(url: str, seconds: float, counts: list[int]) -> None:
    async with websockets.connect(url, max_size=None, proxy=None) as ws:
        deadline = time.monotonic() + seconds
        total = 0
        while (left := deadline - time.monotonic()) > 0:
            try:
                message = await asyncio.wait_for(ws.recv(), timeout=left)
            except TimeoutError:
                break
            total += len(message)
        counts.append(total)


async def measure(base: str, pid: int, fmt: str, listeners: int, seconds: float) -> dict:
    counts: list[int] = []
    url = f"{base}/stream?format={fmt}"
    tasks = [asyncio.create_task(listen(url, seconds + 2.0, counts)) for _ in range(listeners)]
    await asyncio.sleep(2.0)  # connected and streaming
    cpu0, wall0 = process_cpu_s(pid), time.monotonic()
    await asyncio.sleep(seconds)
    cpu_per_s = (process_cpu_s(pid) - cpu0) / (time.monotonic() - wall0)
    await asyncio.gather(*tasks)
    kbit_s = [8 * c / (seconds + 2.0) / 1000 for c in counts]
    return {"format": fmt, "listeners": listeners, "daemon_cpu_s_per_s": round(cpu_per_s, 4),
            "kbit_s_per_listener": round(sum(kbit_s) / len(kbit_s), 1) if kbit_s else 0.0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 s windows")
    args = parser.parse_args()
    seconds = 5.0 if args.quick else WINDOW_S
    work = OUT / "opus"
    music = work / "music"
    music.mkdir(parents=True, exist_ok=True)
    track = music / "song.wav"
    if not track.exists():
        write_audio(track, make_music(40.0, SAMPLE_RATE, seed=7), SAMPLE_RATE)
    state = work / "daemon"
    state.mkdir(exist_ok=True)
    with running_daemon(state, music, workers=1) as daemon, daemon.control() as control:
        control.call("queue.clear")
        control.call("queue.add", {"paths": [str(track)]})
        control.call("options.set", {"repeat": True})
        control.call("play", {"pos": 0})
        time.sleep(3.0)  # first chunks rendered
        pid = daemon.process.pid

        async def run_all() -> list[dict]:
            rows = [await measure(daemon.ws, pid, "f32", 0, seconds)]
            for fmt, n in (("opus", 1), ("opus", MANY), ("f32", 1), ("f32", MANY)):
                rows.append(await measure(daemon.ws, pid, fmt, n, seconds))
            return rows

        rows = asyncio.run(run_all())
        control.call("stop")
    idle = rows[0]["daemon_cpu_s_per_s"]
    print(f"{'format':>6} {'listeners':>9} {'daemon CPU s/s':>15} {'above playing':>14} {'kbit/s each':>12}")
    for row in rows:
        print(f"{row['format']:>6} {row['listeners']:>9} {row['daemon_cpu_s_per_s']:>15.3f} "
              f"{row['daemon_cpu_s_per_s'] - idle:>14.3f} {row['kbit_s_per_listener']:>12.1f}")
    one, many = rows[1]["daemon_cpu_s_per_s"] - idle, rows[2]["daemon_cpu_s_per_s"] - idle
    print(f"opus: {MANY} listeners cost {many / one if one > 0 else float('nan'):.2f}x the CPU of one "
          f"(above playing with no listener)")
    (OUT / "opus.json").write_text(json.dumps({"window_s": seconds, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
