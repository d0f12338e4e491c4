"""The pool's scheduling: playback priorities and the hold-off of idle work (no worker processes)."""

from __future__ import annotations

from typing import Any

import trio

from auralisd.actors.pool import BACKGROUND_HOLDOFF_S, PRIORITY_NORMAL, MasteringPool

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
        await trio.sleep(0.1)  # it holds the only worker
        for name, priority in [("a", PRIORITY_NORMAL), ("b", 2), ("c", PRIORITY_NORMAL), ("d", 0)]:
            nursery.start_soon(lambda name=name, priority=priority: pool.run(_job, name, priority=priority))
            await trio.sleep(0.01)
    assert [name for name, _ in ctx.started] == ["running", "d", "b", "a", "c"]


async def test_a_cancelled_waiter_leaves_the_queue(autojump_clock: trio.abc.Clock) -> None:
    ctx = FakeContext()
    pool = MasteringPool(ctx, workers=1)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: pool.run(_job, "running"))
        await trio.sleep(0.1)
        with trio.CancelScope() as scope:
            nursery.start_soon(lambda: pool.run(_job, "later"))
            await trio.sleep(0.01)
            scope.cancel()
        gone = trio.CancelScope()

        async def given_up() -> None:
            with gone:
                await pool.run(_job, "given up", priority=0)

        nursery.start_soon(given_up)
        await trio.sleep(0.01)
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
        await trio.sleep(0.01)  # the player plans, then asks for the first piece
        await pool.run(_job, "first piece", priority=0)
        quiet_from = trio.current_time()
    started = dict(ctx.started)
    assert started["rest of the fingerprint"] >= quiet_from + BACKGROUND_HOLDOFF_S
    assert started["first piece"] < started["rest of the fingerprint"]
