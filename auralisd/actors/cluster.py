"""The Dask bridge actor: background library analysis on a Dask distributed cluster.

The Dask ``Client`` is blocking (it runs its own asyncio loop on a thread of its own), so it
never touches the trio thread: one dedicated *bridge thread* owns the client and every call
on it. The trio side hands requests to that thread through a ``queue.Queue``; Dask's done
callbacks (on the client's loop thread) only put the finished future on the same queue; the
bridge thread submits the follow-up tasks of a long file (segments, then the exact merge, see
:mod:`auralis.cluster`) and hands each file's result back with ``TrioToken.run_sync_soon``,
which never blocks either side. The event loop therefore never waits on the network.

Bounds: at most :data:`FILES_IN_FLIGHT` files are on the cluster at once (a
``CapacityLimiter`` on the trio side), so the thread's queue holds at most that many requests
plus two completions per file (~100 B each).

Failure: if the scheduler cannot be reached (at start or later), :meth:`ClusterAnalysis.fingerprint`
answers ``None`` and the resolver analyses the track on the local pool: nothing is lost, the
log says so once. Files that fail on the cluster for a reason of their own come back as
``auralis.cluster.FileFailed`` with the error's code.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import trio

from auralis import cluster as dask_tasks

log = logging.getLogger("auralisd.cluster")

FILES_IN_FLIGHT: Final = 64  # files on the cluster at once (each a few kB of scheduler state)
CONNECT_TIMEOUT_S: Final = 10.0
RECONNECT_AFTER_S: Final = 60.0  # after a lost or unreachable scheduler, try again this much later
STOP_WAIT_S: Final = 0.5  # at shutdown, wait this long for the bridge thread to close the client
UNAVAILABLE: Final = "cluster_unavailable"


@dataclass(eq=False)
class _Request:
    path: str  # the daemon's path
    remote: str  # as the workers see it
    token: trio.lowlevel.TrioToken
    done: trio.Event = field(default_factory=trio.Event)
    result: Any = None  # FileDone | FileFailed, or None: not analysed (cluster unavailable)
    cancelled: bool = False
    futures: list[Any] = field(default_factory=list)


@dataclass(frozen=True)
class ClusterStatistics:
    address: str
    connected: bool
    in_flight: int
    done: int
    failed: int  # files that failed for a reason of their own (bad audio)
    unavailable: int  # files handed back to the local pool because the cluster was not there
    workers: int

    def to_wire(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class ClusterAnalysis:
    """Start with ``await nursery.start(bridge.run)``; then ``await bridge.fingerprint(path)``."""

    def __init__(
        self,
        address: str,
        *,
        path_map: Sequence[str] = (),
        split_segments: int | None = None,
        connect_timeout_s: float = CONNECT_TIMEOUT_S,
    ) -> None:
        self.address = address
        self._connect_timeout_s = connect_timeout_s
        self._in_flight_changed = trio.Event()  # set (and replaced) when a file goes out or comes back
        self._path_map = dask_tasks.PathMap.parse(path_map)
        self._split = split_segments or dask_tasks.DEFAULT_SPLIT_SEGMENTS
        self._limiter = trio.CapacityLimiter(FILES_IN_FLIGHT)
        self._inbox: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=3 * FILES_IN_FLIGHT + 8)
        self._thread: threading.Thread | None = None
        self._connected = False
        self._workers = 0
        self._counts = {"done": 0, "failed": 0, "unavailable": 0}

    def statistics(self) -> ClusterStatistics:
        return ClusterStatistics(
            self.address, self._connected, int(self._limiter.borrowed_tokens), self._counts["done"],
            self._counts["failed"], self._counts["unavailable"], self._workers,
        )  # fmt: skip

    @property
    def connected(self) -> bool:
        return self._connected

    async def wait_in_flight(self, count: int) -> None:
        """Return once at least ``count`` files are out on the cluster."""
        while self._limiter.borrowed_tokens < count:
            await self._in_flight_changed.wait()

    def _in_flight_now(self) -> None:
        changed, self._in_flight_changed = self._in_flight_changed, trio.Event()
        changed.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start the bridge thread (it connects in the background) and serve until cancelled.

        Cancellation: the thread is told to stop; it cancels what is on the cluster and closes the
        client; we wait at most :data:`STOP_WAIT_S` for it (it is a daemon thread).
        """
        self._thread = threading.Thread(target=self._bridge, name="auralisd-dask", daemon=True)
        self._thread.start()
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            self._put(("stop", None))
            with trio.move_on_after(STOP_WAIT_S) as scope:
                scope.shield = True
                await trio.to_thread.run_sync(self._thread.join, abandon_on_cancel=True)

    async def fingerprint(self, path: str) -> Any:
        """The fingerprint of ``path`` computed on the cluster: ``FileDone`` or ``FileFailed``
        (``auralis.cluster``); None when the cluster is not available (analyse it locally).

        Cancellation: the file's tasks are cancelled on the cluster.
        """
        async with self._limiter:
            request = _Request(path, self._path_map.to_remote(path), trio.lowlevel.current_trio_token())
            self._put(("analyze", request))
            self._in_flight_now()
            try:
                await request.done.wait()
            except BaseException:
                request.cancelled = True
                self._put(("cancel", request))
                raise
        self._in_flight_now()
        result = request.result
        if result is None:
            self._counts["unavailable"] += 1
        elif isinstance(result, dask_tasks.FileFailed):
            self._counts["failed"] += 1
            result = dask_tasks.FileFailed(result.code, self._path_map.message_to_local(result.message))
        else:
            self._counts["done"] += 1
        return result

    def _put(self, item: tuple[str, Any]) -> None:
        # Never blocks: the limiter bounds requests, and each file posts at most two completions.
        self._inbox.put_nowait(item)

    # ------------------------------------------------------------------ the bridge thread
    def _bridge(self) -> None:
        import time

        client: Any = None
        retry_at = 0.0
        try:
            while True:
                kind, item = self._inbox.get()
                if kind == "stop":
                    return
                if kind == "cancel":
                    if client is not None and item.futures:
                        try:
                            client.cancel(item.futures)
                        except Exception:  # noqa: BLE001 - a lost scheduler: nothing left to cancel
                            pass
                    continue
                if kind == "analyze":
                    if client is None and time.monotonic() >= retry_at:
                        client = self._connect()
                        if client is None:
                            retry_at = time.monotonic() + RECONNECT_AFTER_S
                    if client is None:
                        self._deliver(item, None)
                        continue
                    try:
                        future = client.submit(dask_tasks.file_task, item.remote, self._split, pure=False)
                    except Exception as exc:  # noqa: BLE001 - the client lost its scheduler
                        log.warning("Dask scheduler %s lost (%s); background analysis runs locally", self.address, exc)
                        self._drop(client)
                        client = None
                        retry_at = time.monotonic() + RECONNECT_AFTER_S
                        self._deliver(item, None)
                        continue
                    self._watch(item, future)
                elif kind == "finished":
                    request, future = item
                    if request.cancelled:
                        continue
                    if client is None:  # the scheduler was lost meanwhile
                        self._deliver(request, None)
                        continue
                    try:
                        result = future.result()
                    except Exception as exc:  # noqa: BLE001 - cancelled, or the scheduler went away
                        log.warning("%s: not analysed on the cluster (%s: %s); analysing it locally",
                                    request.path, type(exc).__name__, exc)  # fmt: skip
                        self._deliver(request, None)
                        continue
                    if isinstance(result, dask_tasks.FileSplit):
                        parts = [
                            client.submit(dask_tasks.segment_task, request.remote, k, result.identity, pure=False,
                                          priority=dask_tasks.SEGMENT_PRIORITY)
                            for k in range(result.segments)
                        ]  # fmt: skip
                        merged = client.submit(dask_tasks.merge_task, request.remote, result.identity, *parts,
                                               pure=False, priority=dask_tasks.SEGMENT_PRIORITY + 1)  # fmt: skip
                        request.futures = [*parts, merged]
                        self._watch(request, merged, replace=False)
                        continue
                    self._deliver(request, result)
        finally:
            self._connected = False
            if client is not None:
                self._drop(client)

    def _watch(self, request: _Request, future: Any, *, replace: bool = True) -> None:
        if replace:
            request.futures = [future]
        # Runs on the Dask client's loop thread: only hand the future over, never call the client there.
        future.add_done_callback(lambda f: self._put(("finished", (request, f))))

    def _connect(self) -> Any:
        try:
            import distributed

            client = distributed.Client(self.address, timeout=f"{self._connect_timeout_s}s")
            info = client.scheduler_info()
        except Exception as exc:  # noqa: BLE001 - unreachable, refused, timed out, or not installed
            log.error("cannot reach the Dask scheduler %s (%s); background analysis runs on the local pool",
                      self.address, exc)  # fmt: skip
            return None
        self._workers = len(info.get("workers", {}))
        self._connected = True
        log.info("background analysis on Dask scheduler %s (%d workers)", self.address, self._workers)
        return client

    def _drop(self, client: Any) -> None:
        self._connected = False
        try:
            client.close(timeout=STOP_WAIT_S)
        except Exception:  # noqa: BLE001 - closing a client whose scheduler is gone
            pass

    def _deliver(self, request: _Request, result: Any) -> None:
        def hand_over() -> None:
            request.result = result
            request.done.set()

        try:
            request.token.run_sync_soon(hand_over)
        except trio.RunFinishedError:
            pass  # the daemon stopped meanwhile
