"""The pool's per-job timeline (``actors/pool_timeline.py``): phases per kind of job, use per worker."""

from __future__ import annotations

import trio

from auralisd.actors.pool import MasteringPool
from auralisd.actors.pool_timeline import JobTrace, summarise

from .test_pool import FakeContext, _job


def trace(label: str, t0: float, start: float, end: float, pid: int, *, received: float | None = None) -> JobTrace:
    return JobTrace(label, 0, t0, t0, granted_s=start - 0.002, dispatched_s=start - 0.001, worker_start_s=start,
                    worker_end_s=end, received_s=end + 0.004 if received is None else received,
                    worker_cpu_s=(end - start) / 2, worker_pid=pid)


def test_phases_per_kind_and_idle_gaps_only_while_jobs_waited() -> None:
    traces = [
        trace("piece", 0.0, 0.010, 0.020, 7),
        trace("piece", 0.0, 0.030, 0.040, 7),  # waited from 0.0 to 0.028: the 10 ms gap before it counts
        trace("chunk", 0.5, 0.600, 0.700, 7),  # queued after the previous job ended: that gap does not
    ]
    summary = summarise(traces)
    piece = summary["labels"]["piece"]
    assert summary["jobs"] == 3 and piece["jobs"] == 2
    assert piece["run"]["p50"] == 10.0 and piece["cpu"]["max"] == 5.0
    assert piece["handback"]["max"] == 4.0 and piece["dispatch_to_start"]["max"] == 1.0
    worker = summary["workers"]["7"]
    assert worker["jobs"] == 3 and worker["idle_gaps_s"] == 0.01
    assert abs(worker["busy"] - 0.12 / summary["window_s"]) < 0.002


def test_summarise_of_nothing() -> None:
    assert summarise([]) == {"jobs": 0, "labels": {}, "workers": {}}


async def test_the_pool_records_every_job_and_forgets_them_on_reset(autojump_clock: trio.abc.Clock) -> None:
    pool = MasteringPool(FakeContext(), workers=1)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        for name in ("a", "b", "c"):
            nursery.start_soon(lambda name=name: pool.run(_job, name, priority=0, label="piece"))
    summary = pool.timeline(reset=True)
    assert summary["jobs"] == 3 and summary["labels"]["piece"]["jobs"] == 3
    assert summary["workers"] == {}  # a stand-in context has no worker side
    assert pool.timeline()["jobs"] == 0
