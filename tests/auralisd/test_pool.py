"""The pool's scheduling: playback priorities and the hold-off of idle work (no worker processes).

On trio's autojump clock; a test waits on events (``wait_all_tasks_blocked``: every task waits, e.g. in
the pool's queue), never on a sleep. The fake jobs take ``JOB_S`` of virtual time.
"""

from __future__ import annotations

import random
from typing import Any

import trio
import trio.testing

from auralisd.actors.pool import BACKGROUND_HOLDOFF_S, PRIORITY_NORMAL, JobPriority, MasteringPool

JOB_S = 1.0  # virtual seconds each fake job takes (autojump clock)


class FakeContext:
    """Stands in for the trio-parallel context: records which job started when."""

    def __init__(self) -> None:
        self.started: list[tuple[str, float]] = []

    async def run_sync(self, fn: Any, name: str, *, kill_on_cancel: bool, limiter: Any) -> str:
        self.started.append((name, trio.current_time()))
        await trio.sleep(JOB_S)
        return name


def _job(name: str) -> str:
    return name


async def test_playback_jobs_asked_for_together_start_in_priority_order(autojump_clock: trio.abc.Clock) -> None:
    ctx = FakeContext()
    pool = MasteringPool(ctx, workers=2)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        # asked for in the same instant, in the worst order: the look-ahead first
        nursery.start_soon(lambda: pool.run(_job, "look-ahead"))
        nursery.start_soon(lambda: pool.run(_job, "playhead chunk", priority=2))
        nursery.start_soon(lambda: pool.run(_job, "piece 1", priority=1))
        nursery.start_soon(lambda: pool.run(_job, "piece 0", priority=0))
    assert [name for name, _ in ctx.started] == ["piece 0", "piece 1", "playhead chunk", "look-ahead"]


async def test_waiting_playback_jobs_start_lowest_priority_first_fifo_within_one(
    autojump_clock: trio.abc.Clock,
) -> None:
    ctx = FakeContext()
    pool = MasteringPool(ctx, workers=1)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: pool.run(_job, "running"))
        await trio.testing.wait_all_tasks_blocked()  # it holds the only worker
        for name, priority in [("a", PRIORITY_NORMAL), ("b", 2), ("c", PRIORITY_NORMAL), ("d", 0)]:
            nursery.start_soon(lambda name=name, priority=priority: pool.run(_job, name, priority=priority))
            await trio.testing.wait_all_tasks_blocked()
    assert [name for name, _ in ctx.started] == ["running", "d", "b", "a", "c"]


async def test_a_cancelled_waiter_leaves_the_queue(autojump_clock: trio.abc.Clock) -> None:
    ctx = FakeContext()
    pool = MasteringPool(ctx, workers=1)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: pool.run(_job, "running"))
        await trio.testing.wait_all_tasks_blocked()
        with trio.CancelScope() as scope:
            nursery.start_soon(lambda: pool.run(_job, "later"))
            await trio.testing.wait_all_tasks_blocked()
            scope.cancel()
        gone = trio.CancelScope()

        async def given_up() -> None:
            with gone:
                await pool.run(_job, "given up", priority=0)

        nursery.start_soon(given_up)
        await trio.testing.wait_all_tasks_blocked()
        gone.cancel()
    assert [name for name, _ in ctx.started] == ["running", "later"]
    assert pool.statistics().waiting == 0


async def test_idle_work_waits_until_playback_work_has_been_quiet(autojump_clock: trio.abc.Clock) -> None:
    ctx = FakeContext()
    pool = MasteringPool(ctx, workers=2)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await pool.run(_job, "plan inputs")
        quiet_from = trio.current_time()
        nursery.start_soon(lambda: pool.run(_job, "rest of the fingerprint", background=True))
        await trio.testing.wait_all_tasks_blocked()  # the player plans, then asks for the first piece
        await pool.run(_job, "first piece", priority=0)
        quiet_from = trio.current_time()
    started = dict(ctx.started)
    assert started["rest of the fingerprint"] >= quiet_from + BACKGROUND_HOLDOFF_S
    assert started["first piece"] < started["rest of the fingerprint"]


class InstantContext:
    """A fake worker context whose jobs finish at once (one checkpoint): only the queue is measured.

    A job named ``"holder"`` keeps its worker until ``release`` is set, so a test can fill the queue.
    """

    def __init__(self) -> None:
        self.started: list[Any] = []
        self.holding = trio.Event()
        self.release = trio.Event()

    async def run_sync(self, fn: Any, name: Any, *, kill_on_cancel: bool, limiter: Any) -> Any:
        self.started.append(name)
        if name == "holder":
            self.holding.set()
            await self.release.wait()
        await trio.lowlevel.checkpoint()
        return name


async def test_tens_of_thousands_of_waiting_jobs_cost_one_wakeup_and_log_n_each(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Issue 9: 52,000 queued segment jobs froze the loop (every free token woke every waiter).

    With 20,000 jobs waiting, each is pushed once, popped once and woken once (a binary heap:
    O(log n) per job), and they start lowest priority first, FIFO within one priority."""
    n = 20_000
    ctx = InstantContext()
    pool = MasteringPool(ctx, workers=1)  # type: ignore[arg-type]
    rng = random.Random(9)
    jobs = [(i, rng.randrange(20)) for i in range(n)]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: pool.run(_job, "holder", priority=0))
        await ctx.holding.wait()
        for name, priority in jobs:
            nursery.start_soon(lambda n=name, p=priority: pool.run(_job, n, priority=p))
        await trio.testing.wait_all_tasks_blocked()
        stats = pool.gate_statistics()
        assert (stats.waiting, stats.heap_entries, stats.pushes) == (n, n, n + 1)
        ctx.release.set()
    stats = pool.gate_statistics()
    assert (stats.pushes, stats.pops, stats.wakeups, stats.waiting, stats.heap_entries) == (n + 1,) * 3 + (0, 0)
    priority_of = dict(jobs)
    started = [priority_of[name] for name in ctx.started[1:]]
    assert started == sorted(priority_of.values())  # every job once, the most urgent first


async def test_cancelled_waiters_are_dropped_lazily_and_the_heap_stays_bounded(autojump_clock: trio.abc.Clock) -> None:
    n = 20_000
    ctx = InstantContext()
    pool = MasteringPool(ctx, workers=1)  # type: ignore[arg-type]
    scopes: dict[int, trio.CancelScope] = {}

    async def job(i: int) -> None:
        with trio.CancelScope() as scope:
            scopes[i] = scope
            await pool.run(_job, i, priority=i % 7)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: pool.run(_job, "holder", priority=0))
        await ctx.holding.wait()  # the only worker is taken: every job below waits
        for i in range(n):
            nursery.start_soon(job, i)
        await trio.testing.wait_all_tasks_blocked()
        assert pool.gate_statistics().waiting == n
        for i in range(0, n, 4):  # give up three quarters of them, spread over the whole queue
            for j in (i, i + 1, i + 2):
                scopes[j].cancel()
        await trio.testing.wait_all_tasks_blocked()
        stats = pool.gate_statistics()
        assert stats.waiting == n // 4
        assert stats.heap_entries <= 2 * stats.waiting and stats.compactions >= 1
        ctx.release.set()
    assert sorted(ctx.started[1:]) == list(range(3, n, 4))  # no cancelled job ever started
    stats = pool.gate_statistics()
    assert stats.wakeups == 1 + n // 4 and stats.pushes == 1 + n and stats.waiting == 0


async def test_a_waiting_job_made_more_urgent_moves_up_the_queue(autojump_clock: trio.abc.Clock) -> None:
    ctx = FakeContext()
    pool = MasteringPool(ctx, workers=1)  # type: ignore[arg-type]
    look_ahead = JobPriority(PRIORITY_NORMAL)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: pool.run(_job, "running"))
        await trio.testing.wait_all_tasks_blocked()  # it holds the only worker
        nursery.start_soon(lambda: pool.run(_job, "look-ahead (becomes the playhead's)", priority=look_ahead))
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(lambda: pool.run(_job, "other deck's chunk", priority=5))
        await trio.testing.wait_all_tasks_blocked()
        look_ahead.lower(2)
        look_ahead.lower(7)  # less urgent: no effect
    assert [name for name, _ in ctx.started] == ["running", "look-ahead (becomes the playhead's)", "other deck's chunk"]
    assert look_ahead.value == 2
