"""The single-flight layer over the pool: shared renders, their priority, and who may kill a worker.

The pool runs on a stand-in worker context that records which job started, finished or was
killed (cancelled while running with ``kill_on_cancel``), on trio's autojump clock. The tests wait
on events (a job started, a job ended, every task waiting), never on a sleep.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import trio
import trio.testing

from auralisd import jobs
from auralisd.actors.cache import ChunkCache
from auralisd.actors.database import Track
from auralisd.actors.mastering import Mastering
from auralisd.actors.pool import MasteringPool, PoolJobAbandoned

JOB_S = 1.0  # virtual seconds a job takes


class RecordingContext:
    """Stands in for the trio-parallel context: each job takes ``JOB_S``; records starts and kills."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.finished: list[str] = []
        self.killed: list[str] = []
        self.first_started = trio.Event()
        self.ended: defaultdict[str, trio.Event] = defaultdict(trio.Event)  # set when the job finished or died

    async def run_sync(self, fn: Any, *args: Any, kill_on_cancel: bool, limiter: Any) -> np.ndarray:
        name = _name(fn, args)
        self.started.append(name)
        self.first_started.set()
        try:
            await trio.sleep(JOB_S)  # the job's (virtual) run time
        except trio.Cancelled:
            if kill_on_cancel:
                self.killed.append(name)  # trio-parallel SIGKILLs the worker here
            self.ended[name].set()
            raise
        self.finished.append(name)
        self.ended[name].set()
        return np.full((4, 2), len(self.finished), dtype=np.float32)


def _name(fn: Any, args: tuple) -> str:
    if fn is jobs.render_chunk_stereo:
        kind = "original" if args[1] is None else "chunk" if args[3] is None else "piece"
        return f"{kind} {args[2]}"
    return str(args[0])


@dataclass(frozen=True)
class FakePlan:
    def cache_key(self) -> str:
        return "plan"


TRACK = Track(
    track_id=1, path="/music/a.flac", music_dir="/music", rel_dir="", size=1000, mtime_ns=1, title=None,
    artist=None, album=None, track_number=None, duration_s=60.0, num_frames=60 * 44_100, sample_rate=44_100,
    channels=2, format="FLAC", fingerprint_status="complete", fingerprint_error=None, scanned_at=0.0,
)  # fmt: skip
PLAN = FakePlan()


@dataclass
class Rig:
    ctx: RecordingContext
    pool: MasteringPool
    mastering: Mastering
    nursery: trio.Nursery
    mastering_scope: trio.CancelScope


@asynccontextmanager
async def rig(workers: int = 1) -> AsyncIterator[Rig]:
    ctx = RecordingContext()
    pool = MasteringPool(ctx, workers=workers)  # type: ignore[arg-type]
    mastering = Mastering(pool, ChunkCache(1 << 20))
    async with trio.open_nursery() as nursery:
        scope = trio.CancelScope()

        async def serve(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            with scope:
                await mastering.run(task_status=task_status)

        await nursery.start(serve)
        yield Rig(ctx, pool, mastering, nursery, scope)
        nursery.cancel_scope.cancel()


async def _occupy(r: Rig) -> None:
    """Take the only worker with another job for JOB_S, so the requests below wait in the queue."""
    r.nursery.start_soon(lambda: r.pool.run(_blocker, "busy"))
    await r.ctx.first_started.wait()


def _blocker(name: str) -> str:
    return name


async def _cancel_when(event: trio.Event, scope: trio.CancelScope) -> None:
    await event.wait()
    await trio.testing.wait_all_tasks_blocked()
    scope.cancel()


async def _cancel_when_all_wait(scope: trio.CancelScope) -> None:
    await trio.testing.wait_all_tasks_blocked()
    scope.cancel()


async def test_a_requester_leaving_a_shared_render_neither_cancels_nor_kills_it(autojump_clock: trio.abc.Clock) -> None:
    async with rig() as r:
        results: list[np.ndarray] = []
        leaving = trio.CancelScope()

        async def leaves() -> None:
            with leaving:
                await r.mastering.render_chunk(TRACK, PLAN, 3)

        async def stays() -> None:
            results.append(await r.mastering.render_chunk(TRACK, PLAN, 3))

        r.nursery.start_soon(leaves)
        r.nursery.start_soon(stays)
        await r.ctx.first_started.wait()  # the shared render is running
        await trio.testing.wait_all_tasks_blocked()  # both requesters wait for it
        assert r.ctx.started == ["chunk 3"]
        leaving.cancel()  # e.g. the player sought away
        await r.ctx.ended["chunk 3"].wait()
        await trio.testing.wait_all_tasks_blocked()  # its result reached whoever still waits
        assert r.ctx.killed == [] and r.ctx.finished == ["chunk 3"] and len(results) == 1


async def test_the_ab_original_is_shared_and_cached_and_closing_it_never_kills_a_worker(
    autojump_clock: trio.abc.Clock,
) -> None:
    """Issue 11: closing an A/B session or changing preset SIGKILLed the worker rendering the original."""
    async with rig() as r:
        with trio.CancelScope() as session:  # the session closes while its original side renders
            r.nursery.start_soon(lambda: _cancel_when(r.ctx.first_started, session))
            await r.mastering.render_chunk(TRACK, None, 0)
        await r.ctx.ended["original 0"].wait()
        await trio.testing.wait_all_tasks_blocked()  # the finished render reached the cache
        assert r.ctx.killed == [] and r.ctx.finished == ["original 0"]
        again = await r.mastering.render_chunk(TRACK, None, 0)  # from the cache: no second job
        assert r.ctx.started == ["original 0"] and again.shape == (4, 2)


async def test_an_original_nobody_wants_any_more_is_dropped_before_it_starts(autojump_clock: trio.abc.Clock) -> None:
    async with rig() as r:
        await _occupy(r)
        with trio.CancelScope() as session:
            r.nursery.start_soon(lambda: _cancel_when_all_wait(session))
            await r.mastering.render_chunk(TRACK, None, 0)  # queued behind "busy", then given up
        await r.ctx.ended["busy"].wait()
        await trio.testing.wait_all_tasks_blocked()  # the worker is free: a queued job would start now
        assert r.ctx.started == ["busy"] and r.ctx.killed == []


async def test_a_more_urgent_requester_moves_a_waiting_render_up_the_queue(autojump_clock: trio.abc.Clock) -> None:
    """Issue 11: a look-ahead chunk queued at priority 10 kept it when the playhead reached it."""
    async with rig() as r:
        await _occupy(r)
        r.nursery.start_soon(lambda: r.mastering.render_chunk(TRACK, PLAN, 5))  # look-ahead, priority 10
        r.nursery.start_soon(lambda: r.mastering.render_chunk(TRACK, PLAN, 9, priority=4))  # another deck's
        await trio.testing.wait_all_tasks_blocked()  # both wait in the pool's queue
        # another listener now needs chunk 5 at its playhead: the shared render moves up
        r.nursery.start_soon(lambda: r.mastering.render_chunk(TRACK, PLAN, 5, priority=2))
        await r.ctx.ended["chunk 9"].wait()
        assert r.ctx.started == ["busy", "chunk 5", "chunk 9"]


async def test_a_cancelled_render_gives_its_waiters_a_typed_error(autojump_clock: trio.abc.Clock) -> None:
    """Issue 11: a cancelled render flight tripped ``assert flight.result is not None``; its waiters
    now get :class:`PoolJobAbandoned` (nobody gets a result), which every requester handles."""
    async with rig() as r:
        errors: list[BaseException] = []

        async def waiter() -> None:
            try:
                await r.mastering.render_chunk(TRACK, PLAN, 0)
            except PoolJobAbandoned as exc:
                errors.append(exc)

        r.nursery.start_soon(waiter)
        await r.ctx.first_started.wait()
        r.mastering_scope.cancel()  # the mastering actor stops (shutdown) mid-render
        await trio.testing.wait_all_tasks_blocked()
        assert len(errors) == 1
        assert r.ctx.killed == ["chunk 0"]  # nobody can use it any more: only now is the worker killed


@pytest.mark.parametrize("workers", [1, 2])
async def test_pieces_and_chunks_asked_together_start_most_urgent_first(
    autojump_clock: trio.abc.Clock, workers: int
) -> None:
    async with rig(workers) as r:
        r.nursery.start_soon(lambda: r.mastering.render_chunk(TRACK, PLAN, 1))
        r.nursery.start_soon(lambda: r.mastering.render_chunk(TRACK, PLAN, 0, priority=2))
        r.nursery.start_soon(lambda: r.mastering.render_piece(TRACK, PLAN, 0, 8820, priority=0))
        for name in ("piece 0", "chunk 0", "chunk 1"):
            await r.ctx.ended[name].wait()
        assert r.ctx.started == ["piece 0", "chunk 0", "chunk 1"]
