"""glibc malloc settings that keep a long-running process's resident memory near what it uses.

Two habits of glibc's allocator cost a music daemon memory it never uses again:

* one *arena* per thread that ever allocated, up to 8 per core, each keeping its freed memory
  (the daemon's database and probe threads); :func:`limit_arenas` caps them at
  :data:`DAEMON_ARENAS` (``mallopt(M_ARENA_MAX)``, the setting ``MALLOC_ARENA_MAX`` names);
* freed blocks below the top of the heap are kept, not returned, and after a large array is
  freed the mmap threshold grows (up to 32 MiB), so the next large arrays come from the heap
  too. A worker that analysed a 30 s segment (tens of MiB of float64 temporaries) keeps that
  much resident until it exits. :func:`release_free_memory` (``malloc_trim(0)``) gives the
  free pages back; the worker runs it after every job that leaves at least 8 MiB free
  (``auralisd/jobs.py``: a fast-start piece leaves ~4-6 MB, and trimming it only for the next
  job to fault it in again cost about a quarter of the piece's CPU), the daemon after every library scan. It costs about a millisecond and changes no allocation pattern of the
  DSP itself (a fixed mmap threshold would, with a page fault per large temporary).

A Dask worker is the opposite case. Dask's nanny starts its workers with
``MALLOC_TRIM_THRESHOLD_=65536``, which hands every freed block above 64 KiB back at once and, being
set explicitly, also freezes glibc's mmap threshold at 128 KiB: every large numpy temporary of the
analysis is then a fresh mmap and a page fault per 4 KiB. Measured here on the fingerprint of a 20 s
FLAC: 65 ms of CPU with glibc's defaults, 115 ms under Dask's setting. :func:`favour_speed` (the
cluster's tasks call it) puts the thresholds back where glibc's own dynamic rule ends up.

Elsewhere than glibc (musl, macOS) all of these are no-ops. Nothing here imports numpy or trio.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from typing import Any, Final

M_TRIM_THRESHOLD: Final = -1  # glibc <malloc.h>
M_MMAP_THRESHOLD: Final = -3
M_ARENA_MAX: Final = -8
SPEED_TRIM_THRESHOLD_BYTES: Final = 256 << 20  # keep freed memory for reuse up to this much at the heap top
SPEED_MMAP_THRESHOLD_BYTES: Final = 32 << 20  # glibc's dynamic mmap threshold's own ceiling (64-bit)
DAEMON_ARENAS: Final = 2  # the event loop plus its worker threads (database, probes) share two


@functools.cache
def _libc() -> Any | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        libc.malloc_trim.argtypes = [ctypes.c_size_t]
        libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        return libc
    except (OSError, AttributeError, TypeError):  # not glibc (no malloc_trim/mallopt)
        return None


def limit_arenas(arenas: int = DAEMON_ARENAS) -> bool:
    """Cap malloc arenas (call before threads start allocating); True when glibc took it."""
    libc = _libc()
    return bool(libc is not None and libc.mallopt(M_ARENA_MAX, int(arenas)) == 1)


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]  # fmt: skip


def free_heap_bytes() -> int | None:
    """Bytes free inside malloc's arenas (``mallinfo2().fordblks``, ~3 us), None where unknown (glibc < 2.33)."""
    libc = _libc()
    mallinfo2 = getattr(libc, "mallinfo2", None) if libc is not None else None
    if mallinfo2 is None:
        return None
    mallinfo2.restype = _MallInfo2
    return int(mallinfo2().fordblks)


def release_free_memory(min_free_bytes: int = 0) -> bool:
    """Return the allocator's free pages to the system (``malloc_trim(0)``); True when some were.

    ``min_free_bytes``: only when at least that much is free in the heap (where that is unknown:
    always). Giving back a few MiB that the next job faults in again costs more than it saves.
    """
    libc = _libc()
    if libc is None:
        return False
    if min_free_bytes > 0:
        free = free_heap_bytes()
        if free is not None and free < min_free_bytes:
            return False
    return bool(libc.malloc_trim(0) == 1)


def favour_speed() -> bool:
    """Large trim and mmap thresholds for a compute process started with small ones (a Dask worker):
    freed arrays are reused instead of unmapped and faulted in again. True when glibc took both."""
    libc = _libc()
    if libc is None:
        return False
    trim = libc.mallopt(M_TRIM_THRESHOLD, SPEED_TRIM_THRESHOLD_BYTES) == 1
    mmap = libc.mallopt(M_MMAP_THRESHOLD, SPEED_MMAP_THRESHOLD_BYTES) == 1
    return trim and mmap
