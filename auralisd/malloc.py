"""glibc malloc settings that keep a long-running process's resident memory near what it uses.

Two habits of glibc's allocator cost a music daemon memory it never uses again:

* one *arena* per thread that ever allocated, up to 8 per core, each keeping its freed memory
  (the daemon's database and probe threads); :func:`limit_arenas` caps them at
  :data:`DAEMON_ARENAS` (``mallopt(M_ARENA_MAX)``, the setting ``MALLOC_ARENA_MAX`` names);
* freed blocks below the top of the heap are kept, not returned, and after a large array is
  freed the mmap threshold grows (up to 32 MiB), so the next large arrays come from the heap
  too. A worker that analysed a 30 s segment (tens of MiB of float64 temporaries) keeps that
  much resident until it exits. :func:`release_free_memory` (``malloc_trim(0)``) gives the
  free pages back; the worker runs it after every job (``auralisd/jobs.py``), the daemon after
  every library scan. It costs about a millisecond and changes no allocation pattern of the
  DSP itself (a fixed mmap threshold would, with a page fault per large temporary).

Elsewhere than glibc (musl, macOS) both are no-ops. Nothing here is imported by ``auralis``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from typing import Any, Final

M_ARENA_MAX: Final = -8  # glibc <malloc.h>
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


def release_free_memory() -> bool:
    """Return the allocator's free pages to the system (``malloc_trim(0)``); True when some were."""
    libc = _libc()
    return bool(libc is not None and libc.malloc_trim(0) == 1)
