"""Job results through shared memory instead of the worker's pipe: one arena file per worker process.

trio-parallel hands a job's result back by pickling it into the worker's pipe. A pipe holds 64 KiB,
so a 5 s chunk (1.7 MB of float32) crosses in ~27 writes, and the worker is blocked in ``write()``
until the event loop has read each 64 KiB: one pass of the trio scheduler per 64 KiB, measured at
6 ms per chunk beside an idle loop and 11 ms beside 64 busy sessions, a third of the chunk's 30 ms of
CPU, with the worker idle all along (docs/benchmarks.md, issue 11).

Here the worker writes an array result into its own arena, a file in ``/dev/shm`` (tmpfs: memory,
no disk), with one ``pwrite`` after a generation number, and returns only an :class:`ArenaRef`
(a few hundred bytes through the pipe). The daemon copies the array out with one ``pread`` in the
same trio step in which the job's result arrives, before the worker can be given another job, and
checks the generation afterwards (a changed one means the arena was overwritten during the copy:
the result is refused, never returned torn). Space is reserved with ``posix_fallocate``, so a full
tmpfs is an ``OSError`` in the worker (the result then goes through the pipe), never a ``SIGBUS``.

Arenas are named ``auralisd-arena-<daemon pid>-<worker pid>`` (mode 0600). The daemon removes the
arena of every worker that is gone whenever a worker dies (a ``SIGKILL`` mid-job) or a new worker
appears (an idle one retired), all of its own at shutdown, and those of daemons that are no longer
running at start-up (:func:`sweep`). Workers import this module; it imports neither trio nor the
rest of the daemon, and numpy only where an array is handled.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Any, Final

SHM_DIR: Final = "/dev/shm"
ARENA_PREFIX: Final = "auralisd-arena"
SHM_MIN_BYTES: Final = 64 << 10  # smaller arrays fit the pipe's buffer in one write: no gain in an arena
_HEADER: Final = struct.Struct("<Q")  # the generation of the result in the arena
_DATA_OFFSET: Final = 64  # the array starts here (a cache line after the header)


class ArenaOverwritten(Exception):
    """The arena changed while its result was copied out (never expected: the copy runs before the worker
    can get another job); the result is refused."""


@dataclass(frozen=True)
class ArenaRef:
    """Where a worker left an array result: ``path`` holds it at :data:`_DATA_OFFSET`, after ``generation``."""

    path: str
    generation: int
    shape: tuple[int, ...]
    dtype: str

    @property
    def nbytes(self) -> int:
        import numpy as np

        return int(np.dtype(self.dtype).itemsize * int(np.prod(self.shape, dtype=np.int64)))


def arena_prefix(daemon_pid: int | None = None) -> str:
    """The name every arena of the daemon ``daemon_pid`` (default: this process) starts with."""
    return f"{ARENA_PREFIX}-{os.getpid() if daemon_pid is None else int(daemon_pid)}-"


class WorkerArena:
    """The worker side: one file, reused for every result of this worker process (grown when needed)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._capacity = 0
        self._generation = 0

    def put(self, array: Any) -> ArenaRef:
        """Write ``array`` (C-contiguous copy if needed) and return its reference.

        Raises:
            OSError: the arena cannot hold it (tmpfs full, no ``/dev/shm``): send it through the pipe.
        """
        import numpy as np

        data = np.ascontiguousarray(array)
        need = _DATA_OFFSET + data.nbytes
        if need > self._capacity:
            os.posix_fallocate(self._fd, 0, need)  # reserves the pages: a full tmpfs fails here, not as SIGBUS
            self._capacity = need
        self._generation += 1
        # the new generation goes first: a reader that copies while the data changes sees it afterwards
        _write_all(self._fd, _HEADER.pack(self._generation), 0)
        _write_all(self._fd, data.data.cast("B"), _DATA_OFFSET)
        return ArenaRef(self.path, self._generation, tuple(int(n) for n in data.shape), data.dtype.str)


def _write_all(fd: int, data: Any, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


_arenas: dict[str, WorkerArena] = {}  # in a worker process: its arena (one path per worker pid)


def publish(prefix: str, value: Any) -> Any:
    """In a worker: ``value`` itself, or an :class:`ArenaRef` when it is an array worth the arena.

    Only numpy arrays of at least :data:`SHM_MIN_BYTES` of a plain numeric dtype go to the arena;
    anything else, and anything the arena cannot take, goes through the pipe as before.
    """
    nbytes = getattr(value, "nbytes", 0)
    if not prefix or nbytes < SHM_MIN_BYTES or getattr(getattr(value, "dtype", None), "hasobject", True):
        return value
    path = os.path.join(SHM_DIR, f"{prefix}{os.getpid()}")
    try:
        arena = _arenas.get(path)
        if arena is None:
            arena = _arenas[path] = WorkerArena(path)
        return arena.put(value)
    except OSError:
        return value


def take(ref: ArenaRef) -> Any:
    """In the daemon: a new array holding the result ``ref`` points at.

    Raises:
        ArenaOverwritten: the arena's generation changed during the copy.
        OSError: the arena is gone (its worker died and was swept).
    """
    import numpy as np

    out = np.empty(ref.shape, dtype=np.dtype(ref.dtype))
    fd = os.open(ref.path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        view = out.data.cast("B")
        offset = _DATA_OFFSET
        while view:
            read = os.preadv(fd, [view], offset)
            if read <= 0:
                raise OSError(f"arena {ref.path} is shorter than its result")
            view, offset = view[read:], offset + read
        (generation,) = _HEADER.unpack(os.pread(fd, _HEADER.size, 0))
    finally:
        os.close(fd)
    if generation != ref.generation:
        raise ArenaOverwritten(f"arena {ref.path} was overwritten while its result was read")
    return out


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep(daemon_pid: int | None = None, *, everything: bool = False) -> list[str]:
    """Remove arenas nobody can use any more; returns their names.

    With ``daemon_pid`` (normally this daemon): the arenas of its workers that are gone, or all of
    them with ``everything`` (at shutdown). Without: the arenas of daemons that are no longer
    running (at start-up). Only files of this user are touched.
    """
    try:
        names = os.listdir(SHM_DIR)
    except OSError:
        return []
    uid = os.getuid()
    removed = []
    for name in names:
        parts = name.split("-")
        if not name.startswith(ARENA_PREFIX + "-") or len(parts) != 4 or not (parts[2] + parts[3]).isdigit():
            continue
        owner, worker = int(parts[2]), int(parts[3])
        if daemon_pid is None:
            stale = not _alive(owner)
        else:
            stale = owner == daemon_pid and (everything or not _alive(worker))
        if not stale:
            continue
        path = os.path.join(SHM_DIR, name)
        try:
            if os.stat(path).st_uid != uid:
                continue
            os.unlink(path)
            removed.append(name)
        except OSError:
            continue
    return removed
