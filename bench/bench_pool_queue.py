"""The pool's playback queue under tens of thousands of waiting jobs (issue 9).

A FLAC whose header claimed 433 hours once queued ~52,000 segment jobs; the queue then
handled them in quadratic time (every free worker woke every waiter) and the event loop froze.
This measures the queue alone: ``n`` jobs wait for one worker whose jobs finish at once (a
stand-in worker context, no processes), then they drain. Printed per ``n``: the time per job
from release to the last start, and the same for the previous algorithm (a broadcast to every
waiter, ``list.remove`` + ``heapify`` on leaving), reimplemented here as the peer, on the sizes
where it finishes in reasonable time. The cost per job should stay flat as ``n`` grows.

Run: ``.venv/bin/python bench/bench_pool_queue.py [--sizes 1000,10000,50000]``. Writes
``bench/out/pool_queue.json``.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

import trio
import trio.testing

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from auralisd.actors.pool import JobPriority, MasteringPool  # noqa: E402

OLD_GATE_MAX_N = 2_000  # beyond this the quadratic peer takes minutes (5,000: several)


class InstantContext:
    def __init__(self) -> None:
        self.started = 0
        self.hold = trio.Event()
        self.holding = trio.Event()

    async def run_sync(self, fn: Any, name: Any, *, kill_on_cancel: bool, limiter: Any) -> Any:
        self.started += 1
        if name == "holder":
            self.holding.set()
            await self.hold.wait()
        await trio.lowlevel.checkpoint()
        return name


class OldGatePool(MasteringPool):
    """The queue as it was: a heap of [priority, seq], each waiter woken on every change."""

    def __init__(self, ctx: Any, workers: int) -> None:
        super().__init__(ctx, workers)
        self._old_gate: list[list[int]] = []
        self._old_seq = itertools.count()
        self._old_changed = trio.Event()

    async def _acquire_in_order(self, handle: JobPriority) -> Any:  # type: ignore[override]
        entry = [handle.value, next(self._old_seq)]
        heapq.heappush(self._old_gate, entry)
        borrower = object()
        try:
            await trio.lowlevel.checkpoint()
            while True:
                if self._old_gate[0] is entry:
                    try:
                        self._limiter.acquire_on_behalf_of_nowait(borrower)
                        return borrower
                    except trio.WouldBlock:
                        pass
                await self._old_changed.wait()
        finally:
            self._old_gate.remove(entry)
            heapq.heapify(self._old_gate)
            self._dispatch()

    def _dispatch(self) -> None:
        changed, self._old_changed = self._old_changed, trio.Event()
        changed.set()


def _job(name: Any) -> Any:
    return name


async def drain(pool_class: type[MasteringPool], n: int) -> float:
    """Seconds from releasing the worker until all ``n`` queued jobs have started and finished."""
    ctx = InstantContext()
    pool = pool_class(ctx, workers=1)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: pool.run(_job, "holder", priority=0))
        await ctx.holding.wait()
        for i in range(n):
            nursery.start_soon(lambda i=i: pool.run(_job, i, priority=i % 20))
        await trio.testing.wait_all_tasks_blocked()  # every job has joined the queue
        assert pool.statistics().waiting == n
        started = time.perf_counter()
        ctx.hold.set()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,2000,10000,50000")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    rows = []
    print(f"{'jobs':>8} {'heap queue us/job':>18} {'old queue us/job':>17} {'ratio':>7}")
    for n in sizes:
        new_s = trio.run(drain, MasteringPool, n)
        old_s = trio.run(drain, OldGatePool, n) if n <= OLD_GATE_MAX_N else None
        row = {
            "jobs": n,
            "heap_us_per_job": 1e6 * new_s / n,
            "old_us_per_job": None if old_s is None else 1e6 * old_s / n,
        }
        rows.append(row)
        old_text = "-" if old_s is None else f"{row['old_us_per_job']:.0f}"
        ratio = "-" if old_s is None else f"{old_s / new_s:.0f}x"
        print(f"{n:>8} {row['heap_us_per_job']:>18.0f} {old_text:>17} {ratio:>7}")
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    (out / "pool_queue.json").write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
