"""The mastering pool: worker processes (trio-parallel) for rendering and analysis.

One worker per core by default, limited by an explicit ``CapacityLimiter``. Each job runs
with ``kill_on_cancel=True``: cancelled work is killed, so it never keeps a core busy. A
worker that dies mid-job (crash, OOM killer, ``kill -9``) fails only that job with
``BrokenWorkerError``; the job is retried (trio-parallel respawns workers) up to
``retries`` times. A job that runs longer than ``timeout_s`` is killed and raises
:class:`PoolTimeout`.

Two priorities: playback work (``background=False``) and idle work (``background=True``,
e.g. fingerprinting the whole library). Idle jobs start only when no playback job is
waiting and never occupy more than ``workers - 1`` workers, so playback always finds a
free one without killing anything (a respawn costs a second or more of imports); with a
single worker, an idle job is killed and re-queued when playback work arrives. Idle jobs
also wait until playback work has been quiet for :data:`BACKGROUND_HOLDOFF_S`, so the
burst that follows a plan (first piece, playhead chunk, look-ahead) finds every worker free.

Playback jobs carry a ``priority`` (lower first, FIFO within a priority): jobs asked for
in the same instant (the player's fast-start piece, the playhead's chunk, the look-ahead)
start in priority order instead of in whatever order trio happens to schedule them. A
:class:`JobPriority` handle lets the job's requesters make a waiting job more urgent (the
single-flight layer lowers it when a more urgent requester joins), and the queue re-sorts.

The waiting queue is a binary heap with lazy deletion, so joining, leaving (cancellation),
re-prioritising and starting cost O(log n) whatever its length: a free worker is handed to
the head of the heap directly (one wake-up per job, never a broadcast to every waiter);
entries of cancelled or re-prioritised jobs stay in the heap, marked stale, until they reach
the head or until they outnumber the live ones (then the heap is rebuilt: amortised O(1)).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import math
import os
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import trio
import trio_parallel

from .. import jobs, result_arena
from ..errgroups import first_leaf
from ..result_arena import arena_prefix
from .pool_timeline import TIMELINE_JOBS, JobTrace, summarise

log = logging.getLogger("auralisd.pool")
T = TypeVar("T")

JOB_TIMEOUT_S: Final = 60.0  # issue 4: fingerprint/render timeout
JOB_RETRIES: Final = 2  # re-runs after a worker died
_SINGLE_THREAD_ENV: Final = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
WORKER_IDLE_TIMEOUT_S: Final = 3600.0  # keep warm workers for an hour of silence
WORKER_GRACE_PERIOD_S: Final = 0.3  # s at shutdown before idle workers are killed (SIGTERM must stop within 2 s)
BACKGROUND_HOLDOFF_S: Final = 0.3  # s of no playback work before idle work may start (covers plan -> first chunks)
PRIORITY_NORMAL: Final = 10  # playback jobs without a stated priority (look-ahead chunks, segments, A/B side)
_COMPACT_MIN_ENTRIES: Final = 64  # rebuild the heap only when it holds more entries than this...


_UPGRADED: Final = object()  # a background job that moved up to playback priority while waiting


class PoolTimeout(Exception):
    """A job ran longer than its timeout and was killed."""


class PoolJobAbandoned(Exception):
    """A job was dropped before it started because nobody wanted its result any more."""


class JobPriority:
    """A playback job's place in the queue: its priority (lower starts first), then when it was asked for.

    Pass one to :meth:`MasteringPool.run` instead of an int when the priority may change while
    the job waits: :meth:`lower` moves the waiting job up the queue at once (O(log n)). Once the
    job started, lowering it has no effect.

    ``seq`` orders jobs of equal priority. Take it when the job is asked for
    (:meth:`MasteringPool.ticket`), not when its task reaches the pool: the task is started with
    ``start_soon`` (a render flight, a fetch), and trio may run a batch of ready tasks in reverse,
    so 64 sessions asking in turn would otherwise reach the queue last-asked first. Without a
    ``seq`` the pool numbers the job when it joins the queue.
    """

    __slots__ = ("_value", "_seq", "_on_change", "asked_s")

    def __init__(self, value: int = PRIORITY_NORMAL, seq: int | None = None) -> None:
        self._value = int(value)
        self._seq = seq
        self._on_change: Callable[[], None] | None = None
        self.asked_s = time.monotonic()  # for the pool's job timeline (not for ordering)

    @property
    def value(self) -> int:
        return self._value

    @property
    def seq(self) -> int | None:
        return self._seq

    def lower(self, value: int, seq: int | None = None) -> None:
        """Make the job at least as urgent as ``(value, seq)`` (a less urgent one changes nothing).

        An equal ``value`` asked for earlier (a smaller ``seq``) moves the job ahead of later ones.
        """
        value = int(value)
        earlier = seq is not None and (self._seq is None or seq < self._seq)
        if value < self._value or (value == self._value and earlier):
            self._value = value
            if earlier:
                self._seq = seq
            if self._on_change is not None:
                self._on_change()


class _Waiter:
    """One playback job in the queue; ``granted`` once a worker token was handed to it."""

    __slots__ = ("priority", "seq", "granted", "granted_s", "gone", "event")

    def __init__(self, priority: int, seq: int) -> None:
        self.priority = priority
        self.seq = seq
        self.granted = False
        self.granted_s = math.nan  # time.monotonic() when the token was handed over (the job's timeline)
        self.gone = False  # left the queue (cancelled): its heap entries are stale
        self.event = trio.Event()


@dataclass(frozen=True)
class GateStatistics:
    """Work done by the playback queue, for tests and benchmarks (counts, not times)."""

    waiting: int  # jobs in the queue now
    heap_entries: int  # entries in the heap now (live + stale)
    pushes: int  # entries pushed (one per job, one per re-prioritisation)
    pops: int  # entries popped (each at most once: O(log n) each)
    wakeups: int  # waiting jobs woken (one per job that was handed a worker)
    compactions: int  # heap rebuilds (stale entries outnumbered the live ones)


@dataclass(frozen=True)
class PoolStatistics:
    workers: int
    running: int
    waiting: int
    jobs_done: int
    worker_deaths: int
    retries: int
    timeouts: int
    background_preempted: int

    def to_wire(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class MasteringPool:
    """Run job functions from :mod:`auralisd.jobs` on worker processes. Use :func:`open_mastering_pool`."""

    def __init__(
        self, ctx: trio_parallel.WorkerContext, workers: int, *, traced: bool = False, arena_prefix: str = ""
    ) -> None:
        """``traced``: run each job through :func:`auralisd.jobs.traced` (real workers), so its timeline
        has the worker's own times; a stand-in context in tests gets the job function itself.
        ``arena_prefix`` (with ``traced``): large array results come back through each worker's
        shared-memory arena (:mod:`auralisd.result_arena`) instead of its pipe; "" keeps the pipe."""
        self._ctx = ctx
        self.workers = workers
        self._traced = traced
        self._arena_prefix = arena_prefix
        self._worker_pids: set[int] = set()  # workers seen: a new one means an old one may have retired
        self._timeline: deque[JobTrace] = deque(maxlen=TIMELINE_JOBS)
        self._limiter = trio.CapacityLimiter(workers)
        self._background_limiter = trio.CapacityLimiter(max(1, workers - 1))
        self._no_limit = trio.CapacityLimiter(math.inf)
        self._foreground_waiting = 0
        self._foreground_active = 0
        self._foreground_idle = trio.Event()
        self._foreground_idle.set()
        self._foreground_idle_since = -math.inf  # trio time when playback work last went quiet
        # heap of (priority, seq, push number, waiter) for playback jobs waiting to start; an entry is
        # live when its waiter is still waiting with that priority and seq, else stale (lazy deletion)
        self._gate: list[tuple[int, int, int, _Waiter]] = []
        self._pushes = itertools.count()
        self._gate_seq = itertools.count()
        self._gate_live = 0
        self._handing_over: _Waiter | None = None  # granted a token, not yet awake: the next grant waits
        self._gate_counts = {"pushes": 0, "pops": 0, "wakeups": 0, "compactions": 0}
        self._background_scopes: set[trio.CancelScope] = set()
        self._running = 0
        self._job_started = trio.Event()  # set (and replaced) whenever a job starts on a worker
        self._jobs_done = 0
        self._worker_deaths = 0
        self._retries = 0
        self._timeouts = 0
        self._preempted = 0

    def statistics(self) -> PoolStatistics:
        return PoolStatistics(
            self.workers,
            self._running,
            self._foreground_waiting,
            self._jobs_done,
            self._worker_deaths,
            self._retries,
            self._timeouts,
            self._preempted,
        )

    async def wait_running(self) -> None:
        """Return once a job is running on a worker (at once if one is)."""
        while self._running == 0:
            await self._job_started.wait()

    def ticket(self, priority: int = PRIORITY_NORMAL) -> JobPriority:
        """A :class:`JobPriority` numbered now: jobs of equal priority start in the order of their tickets.

        Take it in the same step as the request (before any ``start_soon``), and pass it to :meth:`run`.
        """
        return JobPriority(priority, next(self._gate_seq))

    def timeline(self, *, reset: bool = False) -> dict[str, Any]:
        """Where the recent jobs' wall time went (:func:`~.pool_timeline.summarise`); ``reset`` forgets them after."""
        summary = summarise(list(self._timeline))
        if reset:
            self._timeline.clear()
        return summary

    def gate_statistics(self) -> GateStatistics:
        return GateStatistics(self._gate_live, len(self._gate), **self._gate_counts)

    async def warm_up(self) -> list[int]:
        """Start every worker and import the DSP modules in it; returns the worker pids."""
        pids: list[int] = []

        async def one() -> None:
            pids.append(await self.run(jobs.warm_up))

        async with trio.open_nursery() as nursery:
            for _ in range(self.workers):
                nursery.start_soon(one)
        return pids

    async def run_each(
        self, fn: Callable[..., T], args_list: Sequence[tuple[Any, ...]], *, background: bool | Callable[[], bool] = False
    ) -> list[T]:
        """``fn(*args)`` for every ``args`` of ``args_list`` at once, spread over the workers; results in order.

        Used for the segments of one analysis (a track's or an album's): one failed job fails
        the whole and is raised as itself — its cause (e.g. "decode failed near frame N"), not
        an ``ExceptionGroup``. A group of cancellations only propagates.
        """
        results: list[Any] = [None] * len(args_list)

        async def one(index: int) -> None:
            results[index] = await self.run(fn, *args_list[index], background=background)

        try:
            async with trio.open_nursery() as nursery:
                for index in range(len(args_list)):
                    nursery.start_soon(one, index)
        except BaseExceptionGroup as group:
            cause = first_leaf(group, Exception)
            if cause is None:
                raise
            raise cause from None
        return results

    async def run(
        self,
        fn: Callable[..., T],
        *args: Any,
        background: bool | Callable[[], bool] = False,
        timeout_s: float = JOB_TIMEOUT_S,
        retries: int = JOB_RETRIES,
        still_wanted: Callable[[], bool] | None = None,
        priority: int | JobPriority = PRIORITY_NORMAL,
        label: str = "",
    ) -> T:
        """Run ``fn(*args)`` on a worker and return its result.

        Args:
            background: idle priority; a callable is asked again while the job waits, so a
                job someone now waits for can move up to playback priority.
            still_wanted: checked when a worker becomes free; if it returns False the job
                is dropped with :class:`PoolJobAbandoned` instead of started.
            priority: playback jobs start lowest first (FIFO within one priority, by ticket:
                :meth:`ticket`); idle jobs ignore it. A :class:`JobPriority` can be lowered while
                the job waits.
            label: the kind of job in the pool's timeline (default: the function's name).

        Raises:
            PoolTimeout: the job ran longer than ``timeout_s`` (it was killed).
            trio_parallel.BrokenWorkerError: the worker died ``retries + 1`` times.
            jobs.JobFailed: the job reported an expected failure (bad audio, ...).

        Cancellation: the worker running the job is killed; a queued job simply leaves the queue.
        """
        handle = priority if isinstance(priority, JobPriority) else JobPriority(priority)
        trace = JobTrace(label or getattr(fn, "__name__", "job"), handle.value, handle.asked_s, time.monotonic())
        if callable(background) or background:
            is_background = background if callable(background) else (lambda: True)
            if is_background():
                trace.label += " (idle)"
                result = await self._run_background(fn, args, timeout_s, retries, is_background, trace)
                if result is not _UPGRADED:
                    return result
                trace.label = trace.label.removesuffix(" (idle)")
        self._foreground_active += 1
        if self._foreground_idle.is_set():
            self._foreground_idle = trio.Event()
        try:
            if self._limiter.available_tokens == 0 and self.workers == 1:
                # only one worker: idle work must make way (a respawn costs less than waiting
                # for a whole-track analysis); with more, idle work never holds every worker
                for scope in list(self._background_scopes):
                    self._preempted += 1
                    scope.cancel()
            self._foreground_waiting += 1
            try:
                token = await self._acquire_in_order(handle)
            finally:
                self._foreground_waiting -= 1
            trace.granted_s = token.granted_s  # grant_to_dispatch then includes the woken task's turn
            trace.priority = handle.value
            try:
                if still_wanted is not None and not still_wanted():
                    raise PoolJobAbandoned()
                return await self._attempts(fn, args, timeout_s, retries, trace)
            finally:
                self._limiter.release_on_behalf_of(token)
                self._dispatch()
        finally:
            self._foreground_active -= 1
            if self._foreground_active == 0:
                self._foreground_idle_since = trio.current_time()
                self._foreground_idle.set()

    async def _acquire_in_order(self, handle: JobPriority) -> _Waiter:
        """Wait in the queue until a worker token is handed over; returns the token's borrower.

        A token goes to the head of the queue (lowest priority, then earliest) whenever one is
        free, so a job asked for later with a lower priority still overtakes every waiting
        job. One checkpoint after joining lets jobs asked for in the same instant line up
        before the first of them takes a worker.

        Cancellation: the job leaves the queue (its heap entry goes stale); a token handed
        over in the same instant is passed on to the next job.
        """
        if handle.seq is None:
            handle._seq = next(self._gate_seq)
        assert handle.seq is not None
        waiter = _Waiter(handle.value, handle.seq)
        self._push(waiter)
        self._gate_live += 1

        def reprioritise() -> None:
            if waiter.granted or waiter.gone:
                return
            seq = waiter.seq if handle.seq is None else handle.seq
            if (handle.value, seq) < (waiter.priority, waiter.seq):
                waiter.priority, waiter.seq = handle.value, seq  # the old entry is now stale
                self._push(waiter)
                self._maybe_compact()
                self._dispatch()

        handle._on_change = reprioritise
        try:
            await trio.lowlevel.checkpoint()
            self._dispatch()
            await waiter.event.wait()
            self._handing_over = None
            self._dispatch()  # pass any other free token on: jobs start one after the other, in order
            return waiter
        except BaseException:
            if waiter.granted:  # handed a token in the instant we were cancelled: pass it on
                if self._handing_over is waiter:
                    self._handing_over = None
                self._limiter.release_on_behalf_of(waiter)
                self._dispatch()
            else:
                waiter.gone = True
                self._gate_live -= 1
                self._maybe_compact()
            raise
        finally:
            handle._on_change = None

    def _push(self, waiter: _Waiter) -> None:
        heapq.heappush(self._gate, (waiter.priority, waiter.seq, next(self._pushes), waiter))
        self._gate_counts["pushes"] += 1

    def _dispatch(self) -> None:
        """Hand a free worker token to the head of the queue, skipping stale entries.

        One token at a time: the job it wakes calls this again before it starts, so jobs
        granted together start in queue order (one wake-up per job either way).
        """
        gate = self._gate
        while gate and self._handing_over is None:
            priority, seq, _, waiter = gate[0]
            if waiter.gone or waiter.granted or priority != waiter.priority or seq != waiter.seq:  # stale
                heapq.heappop(gate)
                self._gate_counts["pops"] += 1
                continue
            try:
                self._limiter.acquire_on_behalf_of_nowait(waiter)
            except trio.WouldBlock:
                return
            heapq.heappop(gate)
            self._gate_counts["pops"] += 1
            waiter.granted = True
            waiter.granted_s = time.monotonic()
            self._handing_over = waiter
            self._gate_live -= 1
            self._gate_counts["wakeups"] += 1
            waiter.event.set()
            return

    def _maybe_compact(self) -> None:
        """Drop stale entries when they outnumber the live ones (keeps the heap O(live))."""
        if len(self._gate) > _COMPACT_MIN_ENTRIES and len(self._gate) > 2 * self._gate_live:
            self._gate = [e for e in self._gate
                          if not e[3].gone and not e[3].granted and (e[0], e[1]) == (e[3].priority, e[3].seq)]
            heapq.heapify(self._gate)
            self._gate_counts["compactions"] += 1

    def _release(self) -> None:
        self._limiter.release()
        self._dispatch()

    async def _run_background(
        self, fn: Callable[..., T], args: tuple, timeout_s: float, retries: int, is_background: Callable[[], bool],
        trace: JobTrace,
    ) -> Any:
        async def wait_idle() -> bool:
            """Wait for playback work to finish; False when the job was upgraded meanwhile."""
            while True:
                if self._foreground_idle.is_set():
                    quiet_until = self._foreground_idle_since + BACKGROUND_HOLDOFF_S
                    if trio.current_time() >= quiet_until:
                        break
                    with trio.move_on_at(min(quiet_until, trio.current_time() + 0.05)):
                        await trio.sleep_forever()
                else:
                    with trio.move_on_after(0.05):
                        await self._foreground_idle.wait()
                if not is_background():
                    return False
            return is_background()

        while True:
            if not await wait_idle():
                return _UPGRADED
            async with self._background_limiter:
                if not await wait_idle():
                    return _UPGRADED
                with trio.CancelScope() as scope:
                    self._background_scopes.add(scope)
                    try:
                        await self._limiter.acquire()
                        trace.granted_s = time.monotonic()
                        try:
                            return await self._attempts(fn, args, timeout_s, retries, trace)
                        finally:
                            self._release()
                    finally:
                        self._background_scopes.discard(scope)
            # preempted by playback work: wait for it to finish, then start again
            await trio.sleep(0.05)

    async def _attempts(self, fn: Callable[..., T], args: tuple, timeout_s: float, retries: int, trace: JobTrace) -> T:
        attempt = 0
        while True:
            self._running += 1
            self._job_started.set()
            self._job_started = trio.Event()
            try:
                with trio.move_on_after(timeout_s) as timeout_scope:
                    trace.dispatched_s = time.monotonic()
                    if self._traced:
                        outcome = await self._ctx.run_sync(
                            jobs.traced, self._arena_prefix, fn, *args, kill_on_cancel=True, limiter=self._no_limit
                        )
                        result = self._take(outcome, trace)  # no checkpoint in between: the worker waits
                    else:
                        result = await self._ctx.run_sync(fn, *args, kill_on_cancel=True, limiter=self._no_limit)
                    trace.received_s = time.monotonic()
                    self._timeline.append(trace)
                    self._jobs_done += 1
                    return result
            except (trio_parallel.BrokenWorkerError, OSError, result_arena.ArenaOverwritten):
                # OSError: the worker died in the middle of sending its result (trio-parallel
                # only maps a clean end of the pipe to BrokenWorkerError), or its arena was swept
                self._worker_deaths += 1
                self._sweep_arenas()
                if attempt >= retries:
                    log.error("%s failed: its worker died %d times", getattr(fn, "__name__", fn), attempt + 1)
                    raise trio_parallel.BrokenWorkerError(f"the worker died {attempt + 1} times") from None
                attempt += 1
                self._retries += 1
                log.warning("a worker died during %s; retrying (%d/%d)", getattr(fn, "__name__", fn), attempt, retries)
                continue
            finally:
                self._running -= 1
            if timeout_scope.cancelled_caught:
                self._timeouts += 1
                raise PoolTimeout(f"{getattr(fn, '__name__', fn)} took longer than {timeout_s:g} s")


    def _take(self, outcome: jobs.Traced, trace: JobTrace) -> Any:
        """The job's value out of :func:`jobs.traced`'s record; its worker-side times go to ``trace``."""
        trace.worker_pid, trace.worker_start_s, trace.worker_end_s, trace.worker_cpu_s = (
            outcome.pid, outcome.start_s, outcome.end_s, outcome.cpu_s)  # fmt: skip
        value = outcome.value
        if outcome.pid not in self._worker_pids:
            self._worker_pids.add(outcome.pid)
            self._sweep_arenas()  # a new worker: the one it replaced may have retired (idle timeout) and left its arena
        if isinstance(value, result_arena.ArenaRef):
            value = result_arena.take(value)
            trace.via_shm = True
        trace.result_bytes = int(getattr(value, "nbytes", 0))
        return value

    def _sweep_arenas(self) -> None:
        """Remove the shared-memory arenas of this daemon's workers that are gone (cheap: one listdir)."""
        if self._arena_prefix:
            self._worker_pids = {pid for pid in self._worker_pids if result_arena._alive(pid)}
            result_arena.sweep(os.getpid())


@asynccontextmanager
async def open_mastering_pool(workers: int, *, shared_memory: bool = True) -> AsyncIterator[MasteringPool]:
    """A pool of ``workers`` processes; on exit the workers are stopped (killed after a short grace).

    ``shared_memory``: large array results come back through each worker's arena in ``/dev/shm``
    (:mod:`auralisd.result_arena`); every arena of this daemon is removed on exit, those of its dead
    workers as soon as a death is seen, and those of daemons no longer running when a pool opens.

    Workers that were already gone at shutdown (systemd and ``timeout`` send SIGTERM to the
    whole process group) are not an error.
    """
    # One worker per core already uses every core: a BLAS library that also starts a thread per
    # core in each worker oversubscribes them (two workers then render slower than one).
    # Spawned workers inherit the environment; the daemon's own, already loaded BLAS is unchanged.
    for variable in _SINGLE_THREAD_ENV:
        os.environ.setdefault(variable, "1")
    stale = result_arena.sweep()  # arenas left by daemons that were killed
    if stale:
        log.info("removed %d shared-memory arenas of daemons no longer running", len(stale))
    manager = trio_parallel.open_worker_context(idle_timeout=WORKER_IDLE_TIMEOUT_S, grace_period=WORKER_GRACE_PERIOD_S)
    ctx = await manager.__aenter__()
    try:
        yield MasteringPool(ctx, workers, traced=True, arena_prefix=arena_prefix() if shared_memory else "")
    finally:
        with trio.CancelScope(shield=True):
            try:
                await manager.__aexit__(None, None, None)
            except trio_parallel.BrokenWorkerError as exc:
                # idle workers that miss the short grace period are killed; workers that got the
                # signal with us (systemd, `timeout`) are already gone: neither is an error
                log.info("worker processes stopped: %s", exc.args[0] if exc.args else exc)
            finally:
                result_arena.sweep(os.getpid(), everything=True)


def failure_reason(exc: BaseException) -> str:
    """One line saying why a pool job failed, for the user (a job's own reason, a timeout, dead workers)."""
    if isinstance(exc, jobs.JobFailed):
        return exc.message.splitlines()[0]
    if isinstance(exc, PoolTimeout):
        return str(exc)
    if isinstance(exc, trio_parallel.BrokenWorkerError):
        return "the worker process died repeatedly"
    return f"{type(exc).__name__}: {exc}"
