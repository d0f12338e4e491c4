"""Fingerprint a library on a Dask distributed cluster: the tasks, and one blocking driver.

The ``.25d`` sidecar is the natural boundary: any machine that can read a file can
fingerprint it. Per file the cluster runs:

* :func:`file_task`: opens the file where the worker mounts it, takes its identity (size,
  mtime, content hash: :func:`auralis.sidecar.file_identity`, *before* analysing, so a file
  replaced meanwhile never gets a sidecar it would pass) and, for a file of at most
  ``split_segments`` 30 s segments, computes the whole fingerprint there
  (:func:`auralis.fingerprint.compute_fingerprint`). A longer file answers how many segments it has;
* :func:`segment_task` for each segment of a long file, spread over the workers (one
  album-length file does not hold one worker), then :func:`merge_task` on a worker, which
  merges them exactly (:func:`auralis.fingerprint.merge_fingerprint_segments`: bit-for-bit the
  one-process value) and checks the file did not change while it was read.

Only the ~1.2 kB fingerprint comes back to the driver; segment results (~330 kB per 30 s) move
between workers at most once. The driver (:func:`analyze_on_cluster`) runs on the machine
that asked: it skips files whose sidecar is valid, keeps a bounded window of files in flight
(the scheduler's memory stays flat for a million files), writes each sidecar there
atomically as its result arrives, and reports each file once. A worker that dies loses nothing:
Dask runs its tasks again elsewhere. Expected failures (a damaged file) come back as
:class:`FileFailed` values with the error's code, never as exceptions.

``distributed`` is an optional dependency (``pip install 'auralis[cluster]'``), imported
only by the functions that talk to a cluster, never at import time: ``auralis analyze``
without cluster flags starts as fast as before. This module never imports trio.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Final

from .errors import AuralisError
from .fingerprint import (
    SEGMENT_S,
    Fingerprint,
    FingerprintSegment,
    analyze_fingerprint_segment,
    compute_fingerprint,
    merge_fingerprint_segments,
    reader_segment_count,
)
from .malloc import favour_speed
from .sidecar import FileIdentity, file_identity, read_sidecar, write_sidecar

__all__ = ["SEGMENT_S", "ClusterUnavailableError", "FileDone", "FileFailed", "FileSplit", "Outcome", "PathMap",
           "SidecarPolicy", "analyze_on_cluster", "analyze_paths_locally", "file_task", "merge_task", "open_client",
           "segment_task"]

INSTALL_HINT: Final = "pip install 'auralis[cluster]'"
DEFAULT_SPLIT_SEGMENTS: Final = 10  # files longer than 10 x 30 s = 5 min are split over the workers
FILES_IN_FLIGHT_PER_WORKER_THREAD: Final = 4  # files submitted at once per worker thread (min 16)
MIN_FILES_IN_FLIGHT: Final = 16
SEGMENT_PRIORITY: Final = 10  # Dask priority (higher first): a started file finishes before new ones start
_SINGLE_THREAD_ENV: Final = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


class ClusterUnavailableError(AuralisError):
    """``distributed`` is not installed, or the scheduler cannot be reached; the message says what to do."""

    code = "cluster_unavailable"


# ------------------------------------------------------------------------------------------- paths


@dataclass(frozen=True)
class PathMap:
    """Where the workers see a folder the driver sees elsewhere: ``(local_prefix, remote_prefix)`` pairs.

    Prefixes match whole path components; the longest local (or remote) prefix wins. A path
    under no prefix is the same on both sides.
    """

    pairs: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, specs: Iterable[str]) -> PathMap:
        """From ``LOCAL=REMOTE`` strings (the local side made absolute). Raises ValueError."""
        pairs = []
        for spec in specs:
            local, sep, remote = spec.partition("=")
            if not sep or not local or not remote:
                raise ValueError(f"--path-map {spec!r}: expected LOCAL=REMOTE")
            pairs.append((_strip(os.path.abspath(os.path.expanduser(local))), _strip(remote)))
        return cls(tuple(pairs))

    def to_remote(self, path: str) -> str:
        return _translate(path, [(a, b) for a, b in self.pairs])

    def to_local(self, path: str) -> str:
        return _translate(path, [(b, a) for a, b in self.pairs])

    def message_to_local(self, message: str) -> str:
        """A worker's message with remote prefixes written as the driver's (for the user)."""
        for local, remote in sorted(self.pairs, key=lambda p: -len(p[1])):
            message = message.replace(remote + "/", local + "/")
        return message


def _strip(prefix: str) -> str:
    return prefix.rstrip("/") or "/"


def _translate(path: str, pairs: list[tuple[str, str]]) -> str:
    best: tuple[str, str] | None = None
    for src, dst in pairs:
        if (path == src or path.startswith(src.rstrip("/") + "/")) and (best is None or len(src) > len(best[0])):
            best = (src, dst)
    if best is None:
        return path
    rest = path[len(best[0]) :].lstrip("/")
    return os.path.join(best[1], rest) if rest else best[1]


# ------------------------------------------------------------------------------------------- tasks


@dataclass(frozen=True)
class FileDone:
    """A fingerprint computed on the cluster, with the identity taken before the analysis."""

    identity: FileIdentity
    fingerprint: Fingerprint


@dataclass(frozen=True)
class FileSplit:
    """A long file: analyse its ``segments`` segments on the workers, then merge."""

    identity: FileIdentity
    segments: int


@dataclass(frozen=True)
class FileFailed:
    """An expected failure: ``code`` (as :class:`~auralis.errors.AuralisError`'s) and a one-line message."""

    code: str
    message: str


def _failed(exc: BaseException) -> FileFailed:
    if isinstance(exc, AuralisError):
        return FileFailed(exc.code, str(exc))
    if isinstance(exc, MemoryError):
        return FileFailed("internal", "out of memory on a worker")
    return FileFailed("internal", f"{type(exc).__name__}: {exc}")


def _single_threaded_blas() -> None:
    # One task per worker thread already fills a core: BLAS threads would oversubscribe it.
    for variable in _SINGLE_THREAD_ENV:
        os.environ.setdefault(variable, "1")


def _unchanged(path: str, identity: FileIdentity) -> FileFailed | None:
    try:
        st = os.stat(path)
    except OSError as exc:
        return FileFailed("not_found", f"{path}: {exc.strerror}")
    if (st.st_size, st.st_mtime_ns) != (identity.size, identity.mtime_ns):
        return FileFailed("changed", f"{path}: the file changed while it was analysed; run again")
    return None


def file_task(path: str, split_segments: int) -> FileDone | FileSplit | FileFailed:
    """On a worker: the identity of ``path`` and its fingerprint, or its segment count when it is long.

    Never raises for bad audio: returns :class:`FileFailed`.
    """
    from .audio import AudioReader

    favour_speed()  # undo the nanny's small malloc thresholds (auralis/malloc.py); idempotent, microseconds

    try:
        identity = file_identity(path)
        with AudioReader(path) as reader:
            count = reader_segment_count(reader)
        if count > split_segments:
            return FileSplit(identity, count)
        return FileDone(identity, compute_fingerprint(path))
    except Exception as exc:  # noqa: BLE001 - every failure goes back to the driver as a value
        return _failed(exc)


def segment_task(path: str, index: int, identity: FileIdentity) -> FingerprintSegment | FileFailed:
    """On a worker: both halves of segment ``index`` of ``path`` (which must still be ``identity``'s file)."""
    favour_speed()
    try:
        changed = _unchanged(path, identity)
        return changed if changed is not None else analyze_fingerprint_segment(path, index)
    except Exception as exc:  # noqa: BLE001
        return _failed(exc)


def merge_task(path: str, identity: FileIdentity, *parts: FingerprintSegment | FileFailed) -> FileDone | FileFailed:
    """On a worker: the exact merge of every segment of ``path``; the file must not have changed meanwhile."""
    favour_speed()
    for part in parts:
        if isinstance(part, FileFailed):
            return part
    try:
        fp = merge_fingerprint_segments(path, [p for p in parts if isinstance(p, FingerprintSegment)])
        changed = _unchanged(path, identity)
        return changed if changed is not None else FileDone(identity, fp)
    except Exception as exc:  # noqa: BLE001
        return _failed(exc)


# ------------------------------------------------------------------------------------------- driver


@dataclass(frozen=True)
class Outcome:
    """What happened to one file: ``source`` is ``sidecar`` (skipped), ``computed`` or ``failed``."""

    path: str  # the driver's path
    source: str
    fingerprint: Fingerprint | None = None
    code: str = ""
    message: str = ""
    sidecar: str | None = None  # where the sidecar was written (None: not written)


@dataclass(frozen=True)
class SidecarPolicy:
    """Where sidecars are read and written: ``placement`` is beside | mirror | none (see auralis.sidecar)."""

    placement: str = "beside"
    mirror_dir: str | None = None
    read: bool = True  # False: never read (``--no-sidecar``): every file is analysed again

    def lookup(self, path: str) -> Fingerprint | None:
        if not self.read:
            return None
        return read_sidecar(path, mirror_dir=self.mirror_dir if self.placement == "mirror" else None)

    def write(self, path: str, fp: Fingerprint, identity: FileIdentity) -> str | None:
        """Write (atomically) per the placement; None when placement is ``none``. Raises OSError/AuralisError."""
        if self.placement == "none":
            return None
        mirror = self.mirror_dir if self.placement == "mirror" else None
        return write_sidecar(path, fp, identity=identity, mirror_dir=mirror)


def require_distributed() -> Any:
    """The ``distributed`` module. Raises ClusterUnavailableError saying how to install it."""
    try:
        import distributed
    except ImportError:
        raise ClusterUnavailableError(
            f"a Dask cluster needs the 'distributed' package, which is not installed: {INSTALL_HINT}"
        ) from None
    return distributed


def open_client(*, scheduler: str | None = None, local_workers: int | None = None) -> tuple[Any, Any]:
    """``(client, cluster_or_None)``: a Client of ``scheduler`` (``tcp://HOST:8786``) or of a new
    ``LocalCluster`` of ``local_workers`` single-threaded worker processes. Close both when done.

    Raises:
        ClusterUnavailableError: ``distributed`` is missing or the scheduler does not answer.
    """
    import logging

    distributed = require_distributed()
    _single_threaded_blas()  # local worker processes inherit it; remote ones: see docs/cluster.md
    if local_workers is not None:
        cluster = distributed.LocalCluster(
            n_workers=local_workers, threads_per_worker=1, processes=True, dashboard_address=":0",
            silence_logs=logging.ERROR,  # Dask's INFO/WARNING chatter (worker start, cancelled tasks) is not ours
        )
        return distributed.Client(cluster), cluster
    try:
        return distributed.Client(scheduler, timeout="10s"), None
    except (OSError, TimeoutError) as exc:
        raise ClusterUnavailableError(f"cannot reach the Dask scheduler {scheduler}: {exc}") from None


def worker_threads(client: Any) -> int:
    """Total worker threads of the cluster now (at least 1)."""
    info = client.scheduler_info()
    return max(1, sum(int(w.get("nthreads", 1)) for w in info.get("workers", {}).values()))


@dataclass(eq=False)
class _File:
    path: str  # driver side
    remote: str
    identity: FileIdentity | None = None


def analyze_on_cluster(
    client: Any,
    paths: Iterable[str],
    on_outcome: Callable[[Outcome], None],
    *,
    path_map: PathMap | None = None,
    sidecars: SidecarPolicy | None = None,
    split_segments: int = DEFAULT_SPLIT_SEGMENTS,
    files_in_flight: int | None = None,
) -> None:
    """Fingerprint every file of ``paths`` on the cluster behind ``client``; ``on_outcome`` once per file.

    Blocking. Files with a valid sidecar are reported as ``sidecar`` without a task; each result
    is written as a sidecar (atomically) *before* it is reported, so an interrupted run
    (KeyboardInterrupt) leaves only valid sidecars, and a rerun skips every reported file.
    Outcomes arrive in completion order. At most ``files_in_flight`` files are on the cluster
    at once (default: 4 per worker thread, at least 16).

    Cancellation: on any exception (Ctrl-C) the futures still running are cancelled before it propagates.
    """
    distributed = require_distributed()
    path_map = path_map or PathMap()
    policy = sidecars or SidecarPolicy()
    window = files_in_flight or max(MIN_FILES_IN_FLIGHT, FILES_IN_FLIGHT_PER_WORKER_THREAD * worker_threads(client))
    pending: Iterator[str] = iter(paths)
    owner: dict[Any, _File] = {}  # future -> its file (file tasks and merge tasks)
    completed = distributed.as_completed()
    exhausted = False

    def refill() -> None:
        nonlocal exhausted
        while not exhausted and len(owner) < window:
            path = next(pending, None)
            if path is None:
                exhausted = True
                return
            cached = policy.lookup(path)
            if cached is not None:
                on_outcome(Outcome(path, "sidecar", cached))
                continue
            item = _File(path, path_map.to_remote(path))
            future = client.submit(file_task, item.remote, split_segments, pure=False)
            owner[future] = item
            completed.add(future)

    def finish(item: _File, result: Any) -> None:
        if isinstance(result, FileFailed):
            message = path_map.message_to_local(result.message)
            on_outcome(Outcome(item.path, "failed", code=result.code, message=message))
            return
        assert isinstance(result, FileDone)
        where: str | None = None
        try:
            where = policy.write(item.path, result.fingerprint, result.identity)
        except (OSError, AuralisError) as exc:
            on_outcome(Outcome(item.path, "computed", result.fingerprint, message=f"sidecar not written: {exc}"))
            return
        on_outcome(Outcome(item.path, "computed", result.fingerprint, sidecar=where))

    try:
        refill()
        while owner:
            future = next(completed)
            item = owner.pop(future)
            try:
                result = future.result()
            except Exception as exc:  # noqa: BLE001 - a task Dask gave up on (workers died too often)
                on_outcome(Outcome(item.path, "failed", code="internal", message=f"{item.path}: {type(exc).__name__}: {exc}"))
                refill()
                continue
            if isinstance(result, FileSplit):
                item.identity = result.identity
                parts = [
                    client.submit(segment_task, item.remote, k, result.identity, pure=False, priority=SEGMENT_PRIORITY)
                    for k in range(result.segments)
                ]
                merged = client.submit(
                    merge_task, item.remote, result.identity, *parts, pure=False, priority=SEGMENT_PRIORITY + 1
                )
                owner[merged] = item
                completed.add(merged)
                continue
            finish(item, result)
            refill()
    except BaseException:
        client.cancel(list(owner))
        raise


def analyze_paths_locally(
    paths: Sequence[str], on_outcome: Callable[[Outcome], None], *, sidecars: SidecarPolicy | None = None
) -> None:
    """The one-process reference of :func:`analyze_on_cluster`: same outcomes, same sidecars (for tests and benches)."""
    policy = sidecars or SidecarPolicy()
    for path in paths:
        cached = policy.lookup(path)
        if cached is not None:
            on_outcome(Outcome(path, "sidecar", cached))
            continue
        result = file_task(path, split_segments=1 << 62)
        if isinstance(result, FileFailed):
            on_outcome(Outcome(path, "failed", code=result.code, message=result.message))
            continue
        assert isinstance(result, FileDone)
        try:
            where = policy.write(path, result.fingerprint, result.identity)
        except (OSError, AuralisError) as exc:
            on_outcome(Outcome(path, "computed", result.fingerprint, message=f"sidecar not written: {exc}"))
            continue
        on_outcome(Outcome(path, "computed", result.fingerprint, sidecar=where))
