"""The fingerprint resolver actor: memory, then database, then ``.25d`` sidecar, then compute.

Requests arrive on a bounded channel (:data:`REQUEST_BUFFER` small records) from the
facade methods :meth:`FingerprintResolver.plan_inputs` and :meth:`FingerprintResolver.fingerprint`;
only :meth:`run` and the flight tasks it starts touch the state. One computation per
(track, kind) runs however many ask at once (single flight): later requesters attach their
reply channel to the running flight.

Cold play: the resolver first computes only the plan inputs (``lufs``, ``crest_db``, the
seven band fractions and the measurements) with the track's 30 s segments spread over every
worker, answers, and then computes the other 16 dimensions in the background (idle
priority), storing the full fingerprint in the database and the sidecar. A valid sidecar is
back-filled into the database. Failures (unreadable file, worker died three times, 60 s
timeout) mark the track with the reason, publish ``fingerprint_progress`` ``failed`` and an
``error`` event, and answer None: the player then uses the neutral plan.

Idle time: after every library scan, tracks without a complete fingerprint are resolved one
by one at background priority, so playback work always comes first. With a Dask cluster
(:class:`~auralisd.actors.cluster.ClusterAnalysis`, ``dask_scheduler``), up to
:data:`CLUSTER_IDLE_CONCURRENCY` of them at once go to the cluster instead, while everything
someone waits for (the current track's plan, first audio, seeks) stays on the local pool; a
track someone starts waiting for while it is on the cluster is taken back to the pool at once.
Progress (done, queued, failed, rate, ETA) is :meth:`FingerprintResolver.analysis_progress`;
the log gets one summary line every :data:`LOG_SUMMARY_INTERVAL_S` and one when a round ends,
instead of a line per track (each track is logged at DEBUG).

Sidecars are read and written where the settings say (``sidecars``: beside the audio, a
mirror tree under ``sidecar_dir``, or none: database only; existing sidecars are still read).
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import trio
import trio_parallel

from .. import jobs
from ..errors import BAD_AUDIO, RpcError
from .cluster import ClusterAnalysis
from .database import Database, StoredFingerprint, Track
from .events import EventHub
from .pool import MasteringPool, PoolTimeout, failure_reason

log = logging.getLogger("auralisd.fingerprints")

REQUEST_BUFFER: Final = 64  # pending requests (each a small record: ~200 B)
MEMORY_ENTRIES: Final = 1_000  # recent fingerprints kept in memory (~2 KB each: ~2 MB); the database holds them all
# (issue 15: the idle pass over a large library must not leave every fingerprint resident)
IDLE_BATCH: Final = 50  # tracks fetched per idle-time round
CLUSTER_IDLE_BATCH: Final = 256  # with a Dask cluster: tracks fetched per round (each a ~200 B request)
CLUSTER_IDLE_CONCURRENCY: Final = 64  # with a Dask cluster: background tracks in flight at once
LOG_SUMMARY_INTERVAL_S: Final = 30.0  # one INFO line of analysis totals this often while it runs


@dataclass(frozen=True)
class Resolved:
    """A resolver answer: ``value`` is a ``Fingerprint`` (complete) or ``PlanInputs``."""

    value: Any
    complete: bool
    source: str  # memory | database | sidecar | computed


@dataclass(frozen=True)
class _Request:
    track: Track
    full: bool
    reply: trio.MemorySendChannel | None  # None: background work nobody waits for
    background: bool = False


@dataclass(eq=False)
class _Flight:
    replies: list = field(default_factory=list)
    partial_replies: list = field(default_factory=list)  # plan-input requesters riding on a full flight
    partial: Resolved | None = None
    followups: list = field(default_factory=list)  # full requests waiting for a plan-input flight
    background: bool = True  # idle priority until someone waits for it
    foreground_full: bool = False  # someone waits for the complete fingerprint (not just plan inputs)
    waited_for: trio.Event = field(default_factory=trio.Event)  # set when it stops being background work

    def set_background(self, value: bool) -> None:
        self.background = value
        if not value:
            self.waited_for.set()


@dataclass(frozen=True)
class FingerprintStatistics:
    computed: int  # full fingerprints computed
    plan_inputs_computed: int
    memory_hits: int
    db_hits: int
    sidecar_hits: int
    failures: int
    in_flight: int
    cluster_computed: int = 0  # of ``computed``: fingerprints that came from the Dask cluster

    def to_wire(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class AnalysisProgress:
    """The idle-time analysis of the library: this round's totals (``auralisctl analysis``).

    ``done`` counts tracks finished this round (computed, or taken from a sidecar), ``failed``
    those that could not be analysed, ``queued`` those still waiting; ``rate`` is done tracks
    per second since the round started; ``eta_s`` is ``queued / rate`` (None before the first).
    """

    running: bool
    done: int
    failed: int
    queued: int
    elapsed_s: float
    rate: float  # tracks per second
    eta_s: float | None
    where: str  # "local" or the Dask scheduler's address

    def to_wire(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def summary(self) -> str:
        eta = "" if self.eta_s is None or not self.running else f", ETA {self.eta_s:.0f} s"
        return (f"{self.done} done, {self.failed} failed, {self.queued} queued, {self.rate:.1f} tracks/s"
                f"{eta} ({self.where})")  # fmt: skip


@dataclass(eq=False)
class _Progress:
    running: bool = False
    done: int = 0
    failed: int = 0
    queued: int = 0
    started_at: float = 0.0
    finished_at: float = 0.0


def _identity(track: Track) -> tuple[int, int]:
    return (track.size, track.mtime_ns)


def _measurements_from_json(measurements: dict[str, Any]) -> dict[str, Any]:
    """Undo the JSON mapping of -inf to None for loudness measurements of silence."""
    return {k: (-math.inf if v is None else v) for k, v in measurements.items()}


def _stored_float(value: float | None) -> float:
    """A stored dimension (NaN travels as None on the wire and in JSON)."""
    return math.nan if value is None else float(value)


def to_auralis(stored: StoredFingerprint) -> Any:
    """A stored row as ``auralis.fingerprint.Fingerprint`` (complete) or ``PlanInputs``."""
    from auralis import fingerprint as fpm

    measurements = _measurements_from_json(stored.measurements)
    if stored.complete:
        dims = {name: _stored_float(stored.dimensions[name]) for name in fpm.DIMENSIONS}
        return fpm.Fingerprint(dimensions=dims, measurements=measurements, algorithm_version=stored.algorithm_version)
    dims = {name: _stored_float(stored.dimensions[name]) for name in fpm.PLAN_INPUT_KEYS if name in stored.dimensions}
    return fpm.PlanInputs(dimensions=dims, measurements=measurements)


def to_stored(track: Track, value: Any, *, source: str, complete: bool) -> StoredFingerprint:
    from auralis import fingerprint as fpm

    return StoredFingerprint(
        track_id=track.track_id,
        size=track.size,
        mtime_ns=track.mtime_ns,
        algorithm_version=str(getattr(value, "algorithm_version", fpm.ALGORITHM_VERSION)),
        source=source,
        complete=complete,
        dimensions={k: float(v) for k, v in value.dimensions.items()},
        measurements=dict(value.measurements),
    )


def fingerprint_to_wire(track: Track, value: Any, source: str) -> dict[str, Any]:
    from ..protocol.codec import wire_safe

    return {
        "track_id": track.track_id,
        "fingerprint": wire_safe(dict(value.dimensions)),
        "measurements": wire_safe(dict(value.measurements)),
        "algorithm_version": getattr(value, "algorithm_version", None),
        "source": source,
    }


class FingerprintResolver:
    """Start with ``await nursery.start(resolver.run)``."""

    def __init__(
        self,
        db: Database,
        pool: MasteringPool,
        hub: EventHub,
        *,
        cache_dir: str | None = None,
        sidecars: str = "beside",
        sidecar_dir: str | None = None,
        cluster: ClusterAnalysis | None = None,
    ) -> None:
        self._db = db
        self._pool = pool
        self._hub = hub
        self._cache_dir = cache_dir
        self._sidecars = sidecars  # beside | mirror | none
        self._mirror_dir = sidecar_dir if sidecars == "mirror" else None
        self._cluster = cluster
        self._progress = _Progress()
        self._cluster_computed = 0
        self._analysis_changed = trio.Event()  # set (and replaced) when a round starts or ends
        self._send, self._receive = trio.open_memory_channel[_Request](REQUEST_BUFFER)
        self._memory: OrderedDict[int, tuple[tuple[int, int], Resolved]] = OrderedDict()
        self._failed: dict[int, tuple[tuple[int, int], str]] = {}
        self._flights: dict[tuple[int, bool], _Flight] = {}
        self._idle_wakeup = trio.Event()
        self._algorithm_version = ""
        self._counts = dict(computed=0, plan_inputs_computed=0, memory_hits=0, db_hits=0, sidecar_hits=0, failures=0)

    def statistics(self) -> FingerprintStatistics:
        return FingerprintStatistics(
            **self._counts, in_flight=len(self._flights), cluster_computed=self._cluster_computed
        )

    def analysis_progress(self) -> AnalysisProgress:
        """Totals of the current (or last) idle-time analysis round."""
        p = self._progress
        end = trio.current_time() if p.running else p.finished_at
        elapsed_s = max(0.0, end - p.started_at) if p.started_at else 0.0
        rate = p.done / elapsed_s if elapsed_s > 0.0 else 0.0
        eta_s = p.queued / rate if rate > 0.0 else None
        where = self._cluster.address if self._cluster is not None else "local"
        running = p.running or self._idle_wakeup.is_set()  # a round asked for counts as running
        return AnalysisProgress(running, p.done, p.failed, p.queued, elapsed_s, rate, eta_s, where)

    # ----------------------------------------------------------------- facade
    async def plan_inputs(self, track: Track) -> Resolved | None:
        """What the mastering plan needs (the full fingerprint when known); None when analysis failed.

        Cancellation: safe; the computation goes on for other requesters and the database.
        """
        return await self._ask(track, full=False)

    async def fingerprint(self, track: Track) -> Resolved:
        """The complete fingerprint (computing it if needed).

        Raises:
            RpcError: ``bad_audio``/``not_found``/``internal`` when it cannot be computed.
        """
        resolved = await self._ask(track, full=True)
        if resolved is None:
            reason = self._failed.get(track.track_id, (None, "analysis failed"))[1]
            raise RpcError(BAD_AUDIO, f"{track.path}: fingerprint failed: {reason}")
        return resolved

    def remembers(self, track: Track) -> bool:
        """Whether :meth:`plan_inputs` for ``track`` is answered from memory, with no analysis and no
        database read (the track's file is the one the remembered result was computed from)."""
        entry = self._memory.get(track.track_id)
        return entry is not None and entry[0] == _identity(track)

    def schedule_idle(self) -> None:
        """Wake the idle-time loop (after a scan) to fingerprint the rest of the library."""
        self._idle_wakeup.set()

    async def wait_analysis(self) -> None:
        """Return once no idle-time analysis is pending or running (at once if none is)."""
        while self._idle_wakeup.is_set() or self._progress.running:
            await self._analysis_changed.wait()

    def _analysis_changed_now(self) -> None:
        changed, self._analysis_changed = self._analysis_changed, trio.Event()
        changed.set()

    async def _ask(self, track: Track, *, full: bool) -> Resolved | None:
        reply_send, reply_receive = trio.open_memory_channel[Resolved | None](1)
        await self._send.send(_Request(track, full, reply_send))
        async with reply_receive:
            return await reply_receive.receive()

    # ----------------------------------------------------------------- actor
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        from auralis.fingerprint import ALGORITHM_VERSION

        self._algorithm_version = str(ALGORITHM_VERSION)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._idle_loop)
            task_status.started()
            async with self._receive:
                async for request in self._receive:
                    self._handle(request, nursery)

    def _handle(self, request: _Request, nursery: trio.Nursery) -> None:
        track = request.track
        entry = self._memory.get(track.track_id)
        if entry is not None and entry[0] == _identity(track) and (entry[1].complete or not request.full):
            self._memory.move_to_end(track.track_id)
            self._counts["memory_hits"] += 1
            _reply(request.reply, Resolved(entry[1].value, entry[1].complete, "memory"))
            return
        failed = self._failed.get(track.track_id)
        if failed is not None and failed[0] == _identity(track):
            _reply(request.reply, None)
            return
        key = (track.track_id, request.full)
        flight = self._flights.get(key)
        full_flight = self._flights.get((track.track_id, True))
        if flight is None and not request.full and full_flight is not None:
            # a full computation is running: it answers plan-input requesters as soon as it can
            if full_flight.partial is not None:
                self._counts["memory_hits"] += 1
                _reply(request.reply, full_flight.partial)
            elif request.reply is not None:
                full_flight.partial_replies.append(request.reply)
                full_flight.set_background(full_flight.background and request.background)
            return
        plan_flight = self._flights.get((track.track_id, False))
        if flight is None and request.full and plan_flight is not None:
            plan_flight.followups.append(request)  # resubmitted when the plan inputs are known
            return
        if flight is None:
            flight = _Flight()
            self._flights[key] = flight
            nursery.start_soon(self._fly, request, flight, key, nursery)
        if request.reply is not None:
            flight.replies.append(request.reply)
        flight.set_background(flight.background and request.background)
        flight.foreground_full = flight.foreground_full or (request.full and not request.background)

    async def _fly(self, request: _Request, flight: _Flight, key: tuple[int, bool], nursery: trio.Nursery) -> None:
        track = request.track
        result: Resolved | None = None
        def on_partial(partial: Resolved) -> None:
            flight.partial = partial
            flight.set_background(not flight.foreground_full)  # the rest is idle work unless awaited
            for reply in flight.partial_replies:
                _reply(reply, partial)
            flight.partial_replies.clear()

        try:
            result = await self._resolve(
                track, full=request.full, background=lambda: flight.background, on_partial=on_partial,
                waited_for=flight.waited_for,
            )
        except (jobs.JobFailed, PoolTimeout, trio_parallel.BrokenWorkerError, OSError) as exc:
            await self._fail(track, failure_reason(exc))
        except Exception as exc:
            log.exception("fingerprint of %s failed unexpectedly", track.path)
            await self._fail(track, f"internal error: {type(exc).__name__}")
        finally:
            del self._flights[key]
            for reply in flight.replies + flight.partial_replies:
                _reply(reply, result)
        for followup in flight.followups:
            self._handle(followup, nursery)
        if result is not None and not result.complete:
            # the other 16 dimensions follow at idle priority
            self._handle(_Request(track, True, None, background=True), nursery)

    def _remember(self, track: Track, resolved: Resolved) -> None:
        self._memory[track.track_id] = (_identity(track), resolved)
        self._memory.move_to_end(track.track_id)
        while len(self._memory) > MEMORY_ENTRIES:
            self._memory.popitem(last=False)

    def _valid(self, stored: StoredFingerprint | None, track: Track, full: bool) -> bool:
        return (
            stored is not None
            and (stored.size, stored.mtime_ns) == _identity(track)
            and stored.algorithm_version == self._algorithm_version
            and (stored.complete or not full)
        )

    async def _resolve(
        self,
        track: Track,
        *,
        full: bool,
        background: Callable[[], bool],
        on_partial: Callable[[Resolved], None],
        waited_for: trio.Event | None = None,
    ) -> Resolved:
        # memory may hold plan inputs that a full request can build on
        entry = self._memory.get(track.track_id)
        partial = entry[1].value if entry is not None and entry[0] == _identity(track) else None
        stored = await self._db.get_fingerprint(track.track_id)
        if self._valid(stored, track, full):
            assert stored is not None
            resolved = Resolved(to_auralis(stored), stored.complete, "database")
            self._counts["db_hits"] += 1
            self._remember(track, resolved)
            on_partial(resolved)
            return resolved
        if stored is not None and partial is None and self._valid(stored, track, False):
            partial = to_auralis(stored)
            self._counts["db_hits"] += 1
        sidecar = await trio.to_thread.run_sync(self._read_sidecar, track.path)
        if sidecar is not None and str(sidecar.algorithm_version) == self._algorithm_version:
            self._counts["sidecar_hits"] += 1
            await self._db.put_fingerprint(to_stored(track, sidecar, source="sidecar", complete=True))
            resolved = Resolved(sidecar, True, "sidecar")
            self._remember(track, resolved)
            on_partial(resolved)
            self._hub.publish("fingerprint_progress", {"track_id": track.track_id, "status": "complete"})
            return resolved
        self._hub.publish("fingerprint_progress", {"track_id": track.track_id, "status": "analyzing"})
        if self._cluster is not None and waited_for is not None and background():
            done = await self._analyse_on_cluster(track, waited_for)
            if done is not None:
                self._cluster_computed += 1
                return await self._store_complete(track, done.fingerprint, done.identity)
        if partial is None:
            partial = await self._compute_plan_inputs(track, background=background)
            self._counts["plan_inputs_computed"] += 1
            await self._db.put_fingerprint(to_stored(track, partial, source="computed", complete=False))
            self._remember(track, Resolved(partial, False, "computed"))
            if not full:
                return Resolved(partial, False, "computed")
            on_partial(Resolved(partial, False, "computed"))
        else:
            on_partial(Resolved(partial, False, "memory"))
        fp = await self._pool.run(jobs.compute_fingerprint, track.path, partial, background=background)
        return await self._store_complete(track, fp, None)

    async def _store_complete(self, track: Track, fp: Any, identity: Any) -> Resolved:
        """Keep a computed fingerprint: database, sidecar (per the settings), memory, event."""
        self._counts["computed"] += 1
        await self._db.put_fingerprint(to_stored(track, fp, source="computed", complete=True))
        where = await trio.to_thread.run_sync(self._write_sidecar, track.path, fp, identity)
        log.debug("fingerprinted %s (sidecar %s)", track.path, where or "not written")
        resolved = Resolved(fp, True, "computed")
        self._remember(track, resolved)
        self._hub.publish("fingerprint_progress", {"track_id": track.track_id, "status": "complete"})
        return resolved

    async def _analyse_on_cluster(self, track: Track, waited_for: trio.Event) -> Any:
        """The whole fingerprint from the Dask cluster (``auralis.cluster.FileDone``), or None: analyse
        locally (someone now waits for this track, the cluster is not there, or the file is not the
        one scanned).

        Raises:
            jobs.JobFailed: the file cannot be analysed (its own reason, from a worker).
        """
        from auralis.cluster import FileFailed

        assert self._cluster is not None
        result: Any = None
        async with trio.open_nursery() as nursery:

            async def upgrade_watch() -> None:
                await waited_for.wait()
                nursery.cancel_scope.cancel()  # someone waits now: the local pool answers at once

            nursery.start_soon(upgrade_watch)
            result = await self._cluster.fingerprint(track.path)
            nursery.cancel_scope.cancel()
        if result is None:
            return None
        if isinstance(result, FileFailed):
            if result.code == "changed":
                return None  # replaced while the workers read it: the local pool reads the file as it is now
            raise jobs.JobFailed(result.code, result.message)
        if (result.identity.size, result.identity.mtime_ns) != _identity(track):
            return None  # the workers saw another version of the file than the scan did
        return result

    async def _compute_plan_inputs(self, track: Track, *, background: Callable[[], bool]) -> Any:
        """Segments spread over every worker, then merged exactly (on a thread)."""
        count = await trio.to_thread.run_sync(jobs.segment_count, track.path)
        results = await self._pool.run_each(
            jobs.analyze_segment, [(track.path, index) for index in range(count)], background=background
        )
        return await trio.to_thread.run_sync(jobs.merge_results, track.path, results)

    async def _fail(self, track: Track, reason: str) -> None:
        self._counts["failures"] += 1
        self._failed[track.track_id] = (_identity(track), reason)
        log.warning("fingerprint of %s failed: %s", track.path, reason)
        with trio.CancelScope(shield=True):
            await self._db.set_fingerprint_status(track.track_id, "failed", reason)
        self._hub.publish(
            "fingerprint_progress", {"track_id": track.track_id, "status": "failed", "reason": reason}
        )
        self._hub.publish("error", {"code": BAD_AUDIO, "message": f"{track.path}: fingerprint failed: {reason}"})

    def _read_sidecar(self, path: str) -> Any:
        from auralis.sidecar import read_sidecar

        try:
            return read_sidecar(path, cache_dir=self._cache_dir, mirror_dir=self._mirror_dir)
        except Exception:  # the contract says it never raises; be defensive all the same
            log.exception("reading the sidecar of %s failed", path)
            return None

    def _write_sidecar(self, path: str, fp: Any, identity: Any = None) -> str | None:
        from auralis.sidecar import write_sidecar

        if self._sidecars == "none":
            return None
        try:
            return write_sidecar(path, fp, cache_dir=self._cache_dir, identity=identity, mirror_dir=self._mirror_dir)
        except Exception as exc:
            log.warning("cannot write the sidecar of %s: %s", path, exc)
            return None

    async def _idle_loop(self) -> None:
        """Fingerprint tracks without a complete fingerprint, at background priority."""
        while True:
            await self._idle_wakeup.wait()
            self._idle_wakeup = trio.Event()
            progress = self._progress
            progress.running, progress.done, progress.failed = True, 0, 0
            self._analysis_changed_now()
            progress.started_at = trio.current_time()
            progress.queued = await self._db.count_tracks_without_fingerprint()
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(self._summarise_periodically)
                    if self._cluster is None:
                        await self._idle_round_one_by_one()
                    else:
                        await self._idle_round_on_cluster()
                    nursery.cancel_scope.cancel()
            finally:
                progress.running = False
                progress.finished_at = trio.current_time()
                self._analysis_changed_now()
            if progress.done or progress.failed:
                log.info("library analysis finished: %s", self.analysis_progress().summary())

    async def _summarise_periodically(self) -> None:
        while True:
            await trio.sleep(LOG_SUMMARY_INTERVAL_S)
            log.info("library analysis: %s", self.analysis_progress().summary())

    async def _idle_round_one_by_one(self) -> None:
        tried: set[int] = set()
        while True:
            ids = [i for i in await self._db.track_ids_without_fingerprint(IDLE_BATCH) if i not in tried]
            if not ids:
                break
            for track_id in ids:
                tried.add(track_id)
                track = await self._db.get_track(track_id)
                if track is None:
                    continue
                await self._background_one(track)

    async def _idle_round_on_cluster(self) -> None:
        """Up to CLUSTER_IDLE_CONCURRENCY background tracks at once (they go to the cluster)."""
        tried: set[int] = set()
        limiter = trio.CapacityLimiter(CLUSTER_IDLE_CONCURRENCY)

        async def one(track: Track) -> None:
            async with limiter:
                await self._background_one(track)

        while True:
            ids = [i for i in await self._db.track_ids_without_fingerprint(CLUSTER_IDLE_BATCH) if i not in tried]
            if not ids:
                break
            self._progress.queued = max(self._progress.queued, len(ids))
            async with trio.open_nursery() as nursery:
                for track_id in ids:
                    tried.add(track_id)
                    track = await self._db.get_track(track_id)
                    if track is not None:
                        nursery.start_soon(one, track)
            self._progress.queued = await self._db.count_tracks_without_fingerprint()

    async def _background_one(self, track: Track) -> None:
        reply_send, reply_receive = trio.open_memory_channel[Resolved | None](1)
        await self._send.send(_Request(track, True, reply_send, background=True))
        async with reply_receive:
            resolved = await reply_receive.receive()
        progress = self._progress
        progress.queued = max(0, progress.queued - 1)
        if resolved is None:
            progress.failed += 1
        else:
            progress.done += 1


def _reply(channel: trio.MemorySendChannel | None, value: Resolved | None) -> None:
    if channel is None:
        return
    try:
        channel.send_nowait(value)
    except (trio.BrokenResourceError, trio.ClosedResourceError, trio.WouldBlock):
        pass  # the requester gave up (cancelled); nothing to do
    finally:
        channel.close()


