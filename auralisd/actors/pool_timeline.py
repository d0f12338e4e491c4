"""Where a pool job's wall time goes: one cheap record per job, and a summary of the recent ones.

Every job the pool runs leaves a :class:`JobTrace`: when it was asked for (its ticket), queued,
handed a worker token, dispatched to trio-parallel, started and ended in the worker (the worker's
own ``time.monotonic()``: ``CLOCK_MONOTONIC`` is one clock for every process of the machine), and
when its result was back on the trio thread, plus the worker's CPU time for it. A job that failed
has no worker times. :func:`summarise` turns the last :data:`TIMELINE_JOBS` into phases per kind
of job and per worker (how much of the window each worker spent inside a job, and computing), so a
benchmark can tell a worker that computes from one that waits (for its job, or for its result to be
taken). Costs two ``monotonic()`` calls per phase and one small object per job; nothing is logged.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from typing import Any, Final

TIMELINE_JOBS: Final = 4096  # job records kept (~200 B each: < 1 MiB), the oldest dropped first


@dataclass(slots=True)
class JobTrace:
    """One job's timeline (``time.monotonic()`` seconds; NaN where a phase did not happen)."""

    label: str
    priority: int
    asked_s: float  # the job's ticket was taken (the requester asked)
    queued_s: float  # it joined the pool's queue
    granted_s: float = math.nan  # a worker token was handed to it
    dispatched_s: float = math.nan  # handed to trio-parallel (last attempt)
    worker_start_s: float = math.nan  # the worker began the job function
    worker_end_s: float = math.nan  # the job function returned, in the worker
    received_s: float = math.nan  # the result was back on the trio thread
    worker_cpu_s: float = math.nan  # the worker's CPU time inside the job function
    worker_pid: int = 0
    result_bytes: int = 0  # the result array's size (0: not an array)
    via_shm: bool = False  # the result came back through the worker's shared-memory arena


def _ms(values: list[float]) -> dict[str, float]:
    """Median, 90th percentile and maximum of ``values`` (seconds), in ms."""
    finite = sorted(v for v in values if math.isfinite(v))
    if not finite:
        return {"p50": math.nan, "p90": math.nan, "max": math.nan}

    def at(q: float) -> float:
        return round(1000 * finite[min(len(finite) - 1, int(q * len(finite)))], 2)

    return {"p50": at(0.5), "p90": at(0.9), "max": round(1000 * finite[-1], 2)}


def summarise(traces: list[JobTrace]) -> dict[str, Any]:
    """Phases of ``traces`` per label (ms: median / 90th percentile / max) and per worker (fractions of the window).

    Phases: ``ask_to_queue`` (the requester's task reaching the pool), ``queue`` (waiting for a worker
    token), ``grant_to_dispatch`` (the woken task's turn on the event loop, then handing the job over), ``dispatch_to_start`` (the job
    crossing the pipe into the worker), ``run`` (the job function, wall) and ``cpu`` (its CPU),
    ``handback`` (the worker's result reaching the trio thread), ``total`` (asked to received).
    Per worker: ``busy`` (inside a job function), ``cpu`` (computing), ``idle_gap_ms`` (from the end
    of one job to the start of the next, while jobs waited in the queue).
    """
    done = [t for t in traces if math.isfinite(t.received_s)]
    if not done:
        return {"jobs": 0, "labels": {}, "workers": {}}
    start = min(t.queued_s for t in done)
    end = max(t.received_s for t in done)
    window_s = max(end - start, 1e-9)
    labels: dict[str, Any] = {}
    for label in sorted({t.label for t in done}):
        group = [t for t in done if t.label == label]
        labels[label] = {
            "jobs": len(group),
            "ask_to_queue": _ms([t.queued_s - t.asked_s for t in group]),
            "queue": _ms([t.granted_s - t.queued_s for t in group]),
            "grant_to_dispatch": _ms([t.dispatched_s - t.granted_s for t in group]),
            "dispatch_to_start": _ms([t.worker_start_s - t.dispatched_s for t in group]),
            "run": _ms([t.worker_end_s - t.worker_start_s for t in group]),
            "cpu": _ms([t.worker_cpu_s for t in group]),
            "handback": _ms([t.received_s - t.worker_end_s for t in group]),
            "total": _ms([t.received_s - t.asked_s for t in group]),
            "result_kb": round(sum(t.result_bytes for t in group) / len(group) / 1024, 1),
            "via_shm": sum(1 for t in group if t.via_shm),
        }
    workers: dict[str, Any] = {}
    # (queued, started): a job queued before a worker's previous job ended that started only at the end of
    # the gap (on any worker) was waiting throughout it
    queued = sorted((t.queued_s, t.worker_start_s if math.isfinite(t.worker_start_s) else t.dispatched_s)
                    for t in done)
    queued_at = [q for q, _ in queued]
    started_by: list[float] = []  # the latest start among the jobs queued so far (prefix maximum)
    for _, started in queued:
        started_by.append(max(started, started_by[-1]) if started_by else started)
    for pid in sorted({t.worker_pid for t in done if t.worker_pid}):
        runs = sorted((t.worker_start_s, t.worker_end_s, t.worker_cpu_s) for t in done if t.worker_pid == pid)
        gaps = []
        for (_, end_a, _), (start_b, _, _) in zip(runs, runs[1:], strict=False):
            # a gap counts when some job was waiting throughout it (the worker could have run it)
            i = bisect.bisect_right(queued_at, end_a)
            if i and started_by[i - 1] >= start_b:
                gaps.append(start_b - end_a)
        workers[str(pid)] = {
            "jobs": len(runs),
            "busy": round(sum(e - s for s, e, _ in runs) / window_s, 3),
            "cpu": round(sum(c for _, _, c in runs) / window_s, 3),
            "idle_gap_ms": _ms(gaps),
            "idle_gaps_s": round(sum(gaps), 3),
        }
    return {"jobs": len(done), "window_s": round(window_s, 3), "labels": labels, "workers": workers}
