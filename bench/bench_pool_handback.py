"""Benchmark a pool job's hand-back: a result through trio-parallel's pipe vs the worker's shared-memory arena.

A real pool (2 workers, ``open_mastering_pool``) runs a job that only allocates its result (a float32
``(frames, 2)`` array: a 1 s piece, 350 kB, and a 5 s chunk, 1.7 MB, at 44.1 kHz), 40 times each, beside
an idle event loop and beside 64 busy tasks (each a short burst of numpy work and a 1 ms sleep, like the
sessions' send loops). From the pool's per-job timeline (``MasteringPool.timeline``): ``handback`` (the
worker's end of the job to the result on the trio thread: the worker is blocked in ``write()`` on the pipe
path), ``dispatch_to_start`` and the whole round trip, medians and 90th percentiles in ms, and the trio
thread's CPU per job. Prints a table; writes ``bench/out/pool_handback.json``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import trio  # noqa: E402

from auralisd.actors.pool import open_mastering_pool  # noqa: E402

OUT = ROOT / "bench" / "out"
JOBS = 40
BUSY_TASKS = 64


def make_result(frames: int) -> Any:
    return np.full((frames, 2), 0.25, dtype=np.float32)


async def one_case(shared_memory: bool, frames: int, busy: bool) -> dict[str, Any]:
    async with open_mastering_pool(2, shared_memory=shared_memory) as pool:
        await pool.warm_up()
        pool.timeline(reset=True)
        async with trio.open_nursery() as nursery:
            if busy:
                async def spin() -> None:
                    x = np.ones(2048, dtype=np.float32)
                    while True:
                        float((x * 0.5).sum())
                        await trio.sleep(0.001)

                for _ in range(BUSY_TASKS):
                    nursery.start_soon(spin)
            cpu0 = time.thread_time()
            for _ in range(JOBS):
                await pool.run(make_result, frames, label="result")
            cpu_s = time.thread_time() - cpu0
            nursery.cancel_scope.cancel()
        row = pool.timeline()["labels"]["result"]
    return {"path": "shm" if shared_memory else "pipe", "kb": round(frames * 8 / 1024), "busy_loop": busy,
            "handback_ms": row["handback"], "dispatch_to_start_ms": row["dispatch_to_start"],
            "round_trip_ms": {k: round(row["handback"][k] + row["dispatch_to_start"][k] + row["run"][k], 2)
                              for k in ("p50", "p90")},
            "via_shm": row["via_shm"], "trio_thread_cpu_ms_per_job": round(1000 * cpu_s / JOBS, 2) if not busy else None}


async def main_async() -> list[dict[str, Any]]:
    rows = []
    for busy in (False, True):
        for frames in (44_100, 5 * 44_100):
            for shared_memory in (False, True):
                rows.append(await one_case(shared_memory, frames, busy))
    return rows


def main() -> int:
    load = os.getloadavg()[0]
    rows = trio.run(main_async)
    print(f"hand-back of a job's result, 2 workers, medians / 90th percentiles of {JOBS} (load {load:.2f} before, "
          f"{os.getloadavg()[0]:.2f} after)")
    print(f"{'path':5s} {'kB':>6s} {'loop':5s} {'handback ms':>16s} {'dispatch ms':>16s} {'round trip ms':>16s} "
          f"{'trio CPU ms/job':>15s}")
    for r in rows:
        cpu = "" if r["trio_thread_cpu_ms_per_job"] is None else f"{r['trio_thread_cpu_ms_per_job']:.2f}"
        print(f"{r['path']:5s} {r['kb']:6d} {'busy' if r['busy_loop'] else 'idle':5s} "
              f"{r['handback_ms']['p50']:7.2f} / {r['handback_ms']['p90']:6.2f} "
              f"{r['dispatch_to_start_ms']['p50']:7.2f} / {r['dispatch_to_start_ms']['p90']:6.2f} "
              f"{r['round_trip_ms']['p50']:7.2f} / {r['round_trip_ms']['p90']:6.2f} {cpu:>15s}")
    OUT.mkdir(exist_ok=True)
    (OUT / "pool_handback.json").write_text(json.dumps({"load_average_1min": load, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
