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
by one at background priority, so playback work always comes first.
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
from .database import Database, StoredFingerprint, Track
from .events import EventHub
from .pool import MasteringPool, PoolTimeout, failure_reason

log = logging.getLogger("auralisd.fingerprints")

REQUEST_BUFFER: Final = 64  # pending requests (each a small record: ~200 B)
MEMORY_ENTRIES: Final = 20_000  # fingerprints kept in memory (~2 KB each: ~40 MB worst case)
IDLE_BATCH: Final = 50  # tracks fetched per idle-time round


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


@dataclass(frozen=True)
class FingerprintStatistics:
    computed: int  # full fingerprints computed
    plan_inputs_computed: int
    memory_hits: int
    db_hits: int
    sidecar_hits: int
    failures: int
    in_flight: int

    def to_wire(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


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
        self, db: Database, pool: MasteringPool, hub: EventHub, *, cache_dir: str | None = None
    ) -> None:
        self._db = db
        self._pool = pool
        self._hub = hub
        self._cache_dir = cache_dir
        self._send, self._receive = trio.open_memory_channel[_Request](REQUEST_BUFFER)
        self._memory: OrderedDict[int, tuple[tuple[int, int], Resolved]] = OrderedDict()
        self._failed: dict[int, tuple[tuple[int, int], str]] = {}
        self._flights: dict[tuple[int, bool], _Flight] = {}
        self._idle_wakeup = trio.Event()
        self._algorithm_version = ""
        self._counts = dict(computed=0, plan_inputs_computed=0, memory_hits=0, db_hits=0, sidecar_hits=0, failures=0)

    def statistics(self) -> FingerprintStatistics:
        return FingerprintStatistics(**self._counts, in_flight=len(self._flights))

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
                full_flight.background = full_flight.background and request.background
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
        flight.background = flight.background and request.background
        flight.foreground_full = flight.foreground_full or (request.full and not request.background)

    async def _fly(self, request: _Request, flight: _Flight, key: tuple[int, bool], nursery: trio.Nursery) -> None:
        track = request.track
        result: Resolved | None = None
        def on_partial(partial: Resolved) -> None:
            flight.partial = partial
            flight.background = not flight.foreground_full  # the rest is idle work unless awaited
            for reply in flight.partial_replies:
                _reply(reply, partial)
            flight.partial_replies.clear()

        try:
            result = await self._resolve(
                track, full=request.full, background=lambda: flight.background, on_partial=on_partial
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
        self, track: Track, *, full: bool, background: Callable[[], bool], on_partial: Callable[[Resolved], None]
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
        self._counts["computed"] += 1
        await self._db.put_fingerprint(to_stored(track, fp, source="computed", complete=True))
        where = await trio.to_thread.run_sync(self._write_sidecar, track.path, fp)
        log.info("fingerprinted %s (sidecar %s)", track.path, where or "not written")
        resolved = Resolved(fp, True, "computed")
        self._remember(track, resolved)
        self._hub.publish("fingerprint_progress", {"track_id": track.track_id, "status": "complete"})
        return resolved

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
            return read_sidecar(path, cache_dir=self._cache_dir)
        except Exception:  # the contract says it never raises; be defensive all the same
            log.exception("reading the sidecar of %s failed", path)
            return None

    def _write_sidecar(self, path: str, fp: Any) -> str | None:
        from auralis.sidecar import write_sidecar

        try:
            return write_sidecar(path, fp, cache_dir=self._cache_dir)
        except Exception as exc:
            log.warning("cannot write the sidecar of %s: %s", path, exc)
            return None

    async def _idle_loop(self) -> None:
        """Fingerprint tracks without a complete fingerprint, at background priority."""
        while True:
            await self._idle_wakeup.wait()
            self._idle_wakeup = trio.Event()
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
                    reply_send, reply_receive = trio.open_memory_channel[Resolved | None](1)
                    await self._send.send(_Request(track, True, reply_send, background=True))
                    async with reply_receive:
                        await reply_receive.receive()


def _reply(channel: trio.MemorySendChannel | None, value: Resolved | None) -> None:
    if channel is None:
        return
    try:
        channel.send_nowait(value)
    except (trio.BrokenResourceError, trio.ClosedResourceError, trio.WouldBlock):
        pass  # the requester gave up (cancelled); nothing to do
    finally:
        channel.close()


