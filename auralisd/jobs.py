"""Job functions that run in the worker processes.

Workers import this module and ``auralis`` only (never trio or the rest of the daemon), so
they start light; every ``auralis`` import is inside the function that needs it. Expected
failures are re-raised as :class:`JobFailed`, a picklable exception with a wire code, so the
daemon gets a clean reason instead of an unpicklable library exception.
"""

from __future__ import annotations

import functools
import os
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any, Final, NamedTuple, TypeVar

from auralis.malloc import release_free_memory

F = TypeVar("F", bound=Callable[..., Any])

TRIM_MIN_FREE_BYTES: Final = 8 << 20  # a job that leaves less free heap keeps it for the next (pieces: ~4 MB)


class JobFailed(Exception):
    """A job failed for a reason the daemon reports: ``code`` (wire code) and ``message``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message)
        self.code = code
        self.message = message

    def __str__(self) -> str:
        return self.message


def _job(fn: F) -> F:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from auralis.errors import AuralisError

        try:
            return fn(*args, **kwargs)
        except AuralisError as exc:
            code = "not_found" if getattr(exc, "code", "") == "not_found" else "bad_audio"
            if getattr(exc, "code", "") == "unknown_preset":
                code = "unknown_preset"
            raise JobFailed(code, str(exc)) from None
        except MemoryError:
            raise JobFailed("internal", "out of memory in a worker") from None
        except Exception as exc:
            raise JobFailed("internal", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}") from None
        finally:
            # the job's temporaries are freed; give their pages back, or an idle worker keeps
            # the peak of its largest job resident (auralis/malloc.py). Not a few MiB: the
            # next job faults them in again (a 1 s first piece of a 48 kHz FLAC: 12-15 ms of CPU
            # + 0.7 ms of trim with it, 9-11 ms without; in-process, medians of 60, load 4-6)
            release_free_memory(TRIM_MIN_FREE_BYTES)

    return wrapper  # type: ignore[return-value]


class Traced(NamedTuple):
    """A job's value with the worker-side part of its timeline (``auralisd/actors/pool_timeline.py``)."""

    value: Any
    pid: int
    start_s: float  # time.monotonic() in the worker (CLOCK_MONOTONIC: the daemon's clock too)
    end_s: float
    cpu_s: float  # this process's CPU time (user + system) inside ``fn``


def traced(arena_prefix: str, fn: Callable[..., Any], *args: Any) -> Traced:
    """Run ``fn(*args)`` and say when and at what CPU cost (the pool runs every job through this).

    A large array result goes back through this worker's shared-memory arena when ``arena_prefix``
    names one (``auralisd/result_arena.py``): the value is then an ``ArenaRef`` the daemon copies from.
    """
    from .result_arena import publish

    start_s, cpu0 = time.monotonic(), time.process_time()
    value = fn(*args)
    end_s, cpu_s = time.monotonic(), time.process_time() - cpu0
    return Traced(publish(arena_prefix, value), os.getpid(), start_s, end_s, cpu_s)


def warm_up() -> int:
    """Import the DSP modules so the first real job does not pay for it; returns the worker pid."""
    import auralis.audio  # noqa: F401

    for name in ("auralis.fingerprint", "auralis.plan", "auralis.render"):
        try:
            __import__(name)
        except ImportError:
            pass
    from auralis import kernels

    kernels._native()  # scipy's compiled kernels load on first use (auralis/kernels.py): use is near
    return os.getpid()


@_job
def analyze_segment(path: str, index: int) -> Any:
    from auralis.fingerprint import analyze_segment as run

    return run(path, index)


@_job
def compute_fingerprint(path: str, plan_inputs: Any) -> Any:
    from auralis.fingerprint import compute_fingerprint as run

    return run(path, plan_inputs)


@_job
def render_chunk_stereo(
    path: str, plan: Any, k: int, chunk_frames: int | None = None, out_rate: int | None = None
) -> Any:
    """Output chunk ``k`` of ``path`` mastered with ``plan``: float32 ``(frames, 2)`` at ``out_rate``.

    ``chunk_frames`` overrides the chunk length (the player's short fast-start pieces);
    ``out_rate`` (default: the file's rate) resamples here, in the worker, so the daemon's
    event loop only slices: output chunk ``k`` is :meth:`auralis.resample.ChunkGrid.span` ``(k)``
    of the resampled track, bit-identical to one pass of :mod:`auralis.resample` over the whole
    mastered track.
    With ``plan`` None the chunk is the unprocessed original (the A/B side; no gain applied).
    """
    import numpy as np

    from auralis.audio import AudioReader
    from auralis.downmix import stereo_downmix
    from auralis.render import chunk_frames as standard
    from auralis.render import render_range
    from auralis.resample import ChunkGrid, resample_span

    # One open for the grid and the samples: an open probes the file (a tail decode), ~1 ms of a
    # fast-start piece's ~8 ms.
    with AudioReader(path) as reader:
        info = reader.info
        n = int(chunk_frames) if chunk_frames else standard(info.sample_rate)
        grid = ChunkGrid(info.sample_rate, int(out_rate or info.sample_rate), info.num_frames, n)
        if k >= grid.count >= 0:  # the player counted chunks from the library's length for the file
            from auralis.errors import AudioError

            raise AudioError(path, f"its audio ends at {info.duration_s:.2f} s, shorter than the library's length "
                                   "for it (the file changed since it was scanned?)")  # fmt: skip
        if not 0 <= k < grid.count:
            raise IndexError(f"chunk {k} is outside {path} ({grid.count} chunks)")

        if plan is None:
            def read(a: int, b: int) -> Any:
                return stereo_downmix(np.asarray(reader.read(a, b), dtype=np.float32))
        else:
            def read(a: int, b: int) -> Any:
                # Already stereo: the renderer downmixes before the chain, so the true-peak limiter
                # worked on exactly these samples and nothing may change them after it. The same
                # absolute-grid window as auralis.render.render_frames.
                return np.asarray(render_range(reader, plan, a, b)[0], dtype=np.float32)

        return resample_span(read, grid, k)


def merge_results(path: str, results: Sequence[Any]) -> Any:
    """Merge segment results (cheap; run on a thread of the daemon, not in a worker)."""
    from auralis.errors import AuralisError
    from auralis.fingerprint import merge_segments

    try:
        return merge_segments(path, results)
    except AuralisError as exc:
        raise JobFailed("bad_audio", str(exc)) from None


def segment_count(path: str) -> int:
    from auralis.errors import AuralisError
    from auralis.fingerprint import segment_count as run

    try:
        return int(run(path))
    except AuralisError as exc:
        raise JobFailed("not_found" if exc.code == "not_found" else "bad_audio", str(exc)) from None


def album_segment_count(layout: Any) -> int:
    """How many 30 s album segments the album has (run on a thread of the daemon)."""
    from auralis.album import album_segment_count as run
    from auralis.errors import AuralisError

    try:
        return int(run(layout))
    except AuralisError as exc:
        raise JobFailed("not_found" if exc.code == "not_found" else "bad_audio", str(exc)) from None


@_job
def analyze_album_segment(layout: Any, index: int) -> Any:
    """The additive plan quantities of album segment ``index`` (the album read as one file)."""
    from auralis.album import analyze_album_segment as run

    return run(layout, index)


def merge_album_results(layout: Any, results: Sequence[Any]) -> Any:
    """Merge album segment results into the album's plan inputs (on a thread of the daemon)."""
    from auralis.album import merge_album_segments
    from auralis.errors import AuralisError

    try:
        return merge_album_segments(layout, results)
    except AuralisError as exc:
        raise JobFailed("bad_audio", str(exc)) from None


@_job
def render_album_chunk_stereo(
    layout: Any, index: int, plan: Any, k: int, chunk_frames: int | None = None, out_rate: int | None = None
) -> Any:
    """Output chunk ``k`` of track ``index`` of an album, rendered from the album as one file (album mode).

    As :func:`render_chunk_stereo`, but the mastering window reaches across the track's
    boundaries (pre-roll from the previous track, look-ahead into the next, the album's 16-frame
    grid: :func:`auralis.album.render_album_frames`), so at the album's own rate consecutive
    tracks join exactly as the one-file render of the album. Resampling to another output rate
    is per track, as in track mode.
    """
    import numpy as np

    from auralis.album import render_album_frames
    from auralis.render import chunk_frames as standard
    from auralis.resample import ChunkGrid, resample_span

    rate = int(layout.sample_rate)
    n = int(chunk_frames) if chunk_frames else standard(rate)
    grid = ChunkGrid(rate, int(out_rate or rate), int(layout.num_frames[index]), n)
    if not 0 <= k < grid.count:
        raise IndexError(f"chunk {k} is outside track {index} of the album ({grid.count} chunks)")

    def read(a: int, b: int) -> Any:
        return np.asarray(render_album_frames(layout, index, plan, a, b), dtype=np.float32)  # stereo already

    return resample_span(read, grid, k)
