"""The one renderer: chunk k of a track, mastered by a plan, from (path, plan, k) alone.

Chunk geometry (documented in docs/mastering.md):

* Chunk k covers source frames ``[k*N, min((k+1)*N, total))`` with ``N = chunk_frames(sample_rate)``
  (``CHUNK_S`` seconds at the file's own rate).
* ``render_chunk`` reads ``[k*N - P, (k+1)*N + A)`` (rounded outwards to the absolute
  16-frame envelope grid; zero-padded outside the file), runs the whole chain on it from zero
  state and returns exactly chunk k's frames, time-aligned with the input. ``P`` =
  ``PREROLL_S`` of pre-roll covers every stage's backward reach plus the EQ's settling time to
  -100 dB; ``A`` = ``LOOKAHEAD_S`` covers every forward reach (the limiter's and compressor's
  look-ahead, the centred envelope windows): look-ahead latency is compensated by reading
  ahead, so output frame n is input frame n.
* Every stage has finite memory (or settles within P), so equal windows give equal output:
  concatenated chunks equal a one-pass render, whatever N, order or process.

The chain, in order: stereo downmix (:mod:`auralis.downmix`: mono as dual mono, multichannel
with the ITU-R BS.775 coefficients), DC blocker, EQ and static gain (one ``sosfilt`` cascade),
compressor, transient expander, true-peak limiter (always on: the -1 dBTP guarantee holds even at
intensity 0). The downmix comes first so the limiter works on what is output, and it is memoryless,
so it keeps every seam guarantee above. Every render is stereo ``(frames, 2)`` whatever the source.
"""

from __future__ import annotations

import os
from typing import Any, Final

import numpy as np
import soundfile as sf

from . import kernels
from .audio import ArrayReader, AudioReader
from .downmix import stereo_downmix
from .errors import UnsupportedAudioError
from .plan import ENGINE_VERSION, MasteringPlan
from .stages.blocks import BLOCK_FRAMES, block_power
from .stages.dynamics import (
    apply_block_gain_db,
    compressor_gain_db,
    compressor_support_frames,
    expander_gain_db,
    expander_support_frames,
)
from .stages.eq import chain_sos, eq_settling_frames
from .stages.limiter import limiter_gain, limiter_support_frames

CHUNK_S: Final = 5.0  # s: chunk length (the daemon's render and cache unit)
PREROLL_S: Final = 1.0  # s: pre-roll P read before each chunk (>= DC blocker + EQ settling + envelope reach)
LOOKAHEAD_S: Final = 0.1  # s: read past each chunk (>= the chain's forward reach, 0.072 s at most)
OFFLINE_CHUNK_S: Final = 60.0  # s: chunk length `render_file` uses (same output, fewer pre-rolls)

__all__ = [
    "CHUNK_S",
    "ENGINE_VERSION",
    "LOOKAHEAD_S",
    "PREROLL_S",
    "chain_reach_frames",
    "chunk_count",
    "chunk_frames",
    "output_format",
    "process_window",
    "render_chunk",
    "render_file",
    "render_range",
    "render_reader",
    "render_samples",
]


def chunk_frames(sample_rate: int) -> int:
    """Frames per chunk at ``sample_rate`` (``CHUNK_S`` seconds)."""
    return int(round(CHUNK_S * sample_rate))


_default_chunk_frames = chunk_frames


def chunk_count(num_frames: int, sample_rate: int) -> int:
    """How many chunks a track of ``num_frames`` frames has (the last one may be short)."""
    n = chunk_frames(sample_rate)
    return max(0, -(-int(num_frames) // n))


def chain_reach_frames(plan: MasteringPlan, sample_rate: int) -> tuple[int, int]:
    """Frames ``(back, ahead)`` the whole chain reaches from one output frame (stage reaches add up).

    The renderer's pre-roll and look-ahead must be at least these (a test checks every preset).
    """
    back = eq_settling_frames(chain_sos(plan.dc_depth, plan.eq_gains_db, sample_rate))
    ahead = 0
    if plan.comp_ratio > 1.0:
        b, a = compressor_support_frames(sample_rate, plan.comp_attack_ms, plan.comp_release_ms)
        back, ahead = back + b, ahead + a
    if plan.expander_factor > 0.0:
        b, a = expander_support_frames(sample_rate)
        back, ahead = back + b, ahead + a
    b, a = limiter_support_frames(sample_rate)
    return back + b, ahead + a


def process_window(x: np.ndarray, sample_rate: int, plan: MasteringPlan) -> tuple[np.ndarray, dict[str, float]]:
    """Run the chain on one window.

    Args:
        x: ``(frames, channels)`` audio; frames a multiple of ``BLOCK_FRAMES`` and the window
            starting on the absolute 16-frame grid (a multiple of 16 frames from the track start).
        sample_rate: Hz.
        plan: the mastering plan.

    Returns:
        ``(y, stats)``: float32 ``(frames, channels)`` and the stage maxima over the window,
        ``{"compressor_gr_db", "expander_boost_db", "limiter_gr_db"}``.
    """
    sos = chain_sos(plan.dc_depth, plan.eq_gains_db, sample_rate, plan.gain_db)  # DC blocker, EQ, gain
    if sos.shape[0]:
        # sosfilt copies its input to float64 (channels, frames) C order itself: no copy of our own
        y = kernels.sosfilt(sos, np.asarray(x).T)
    else:
        y = np.array(np.asarray(x).T, dtype=np.float64, order="C")
    stats = {"compressor_gr_db": 0.0, "expander_boost_db": 0.0, "limiter_gr_db": 0.0}
    if plan.comp_ratio > 1.0:
        gain_db = compressor_gain_db(
            block_power(y),
            sample_rate,
            threshold_dbfs=plan.comp_threshold_dbfs,
            ratio=plan.comp_ratio,
            attack_ms=plan.comp_attack_ms,
            release_ms=plan.comp_release_ms,
        )
        stats["compressor_gr_db"] = float(-np.min(gain_db, initial=0.0))
        y = apply_block_gain_db(y, gain_db)
    if plan.expander_factor > 0.0:
        gain_db = expander_gain_db(block_power(y), sample_rate, plan.expander_factor)
        stats["expander_boost_db"] = float(np.max(gain_db, initial=0.0))
        y = apply_block_gain_db(y, gain_db)
    gain = limiter_gain(y, sample_rate, plan.true_peak_ceiling_dbtp)
    if gain is not None:
        stats["limiter_gr_db"] = float(-20.0 * np.log10(max(float(np.min(gain)), 1e-12)))
    # Interleaved (frames, channels) float32, as writers want it. The limiter gain is applied in the
    # same pass: each product is computed in float64 and rounded once, as (y * gain).astype(float32).
    out = np.empty((y.shape[1], y.shape[0]), dtype=np.float32)
    for c in range(y.shape[0]):
        if gain is None:
            out[:, c] = y[c]
        else:
            np.multiply(y[c], gain, out=out[:, c], casting="same_kind")
    return out, stats


def _window(start: int, stop: int, sample_rate: int, preroll_s: float) -> tuple[int, int]:
    pre = int(round(preroll_s * sample_rate))
    ahead = int(round(LOOKAHEAD_S * sample_rate))
    lo = ((start - pre) // BLOCK_FRAMES) * BLOCK_FRAMES
    hi = -((-(stop + ahead)) // BLOCK_FRAMES) * BLOCK_FRAMES
    return lo, hi


def _render_range(
    reader: AudioReader | ArrayReader, plan: MasteringPlan, start: int, stop: int, preroll_s: float
) -> tuple[np.ndarray, dict[str, float]]:
    sample_rate = reader.info.sample_rate
    lo, hi = _window(start, stop, sample_rate, preroll_s)
    y, stats = process_window(stereo_downmix(reader.read(lo, hi)), sample_rate, plan)
    return y[start - lo : stop - lo], stats


def render_range(
    reader: Any, plan: MasteringPlan, start: int, stop: int, *, preroll_s: float = PREROLL_S
) -> tuple[np.ndarray, dict[str, float]]:
    """Frames ``[start, stop)`` of any reader (``info`` + zero-padded ``read``) mastered by ``plan``.

    The window is rounded on the reader's own absolute 16-frame grid, so the output equals
    those frames of a one-pass render of everything the reader holds (an album read as one
    file: :mod:`auralis.album`).

    Returns:
        ``(y float32 (stop - start, 2), stats)`` (the stereo master, see :mod:`auralis.downmix`) where stats are
        the stage maxima.
    """
    if not 0 <= start <= stop <= reader.info.num_frames:
        raise IndexError(f"range [{start}, {stop}) is outside 0..{reader.info.num_frames}")
    return _render_range(reader, plan, start, stop, preroll_s)


def render_chunk(
    path: str | os.PathLike[str],
    plan: MasteringPlan,
    k: int,
    *,
    chunk_frames: int | None = None,
    preroll_s: float = PREROLL_S,
) -> np.ndarray:
    """Chunk ``k`` of ``path`` mastered by ``plan``: float32 stereo ``(frames, 2)``, exactly its frames.

    Depends on (path, plan, k, chunk_frames) only: safe to call in any process, in any order.

    Args:
        path: the audio file.
        plan: from :func:`auralis.plan.plan_mastering`.
        k: chunk index, ``0 <= k < chunk_count(...)``.
        chunk_frames: override N (default ``chunk_frames(sample_rate)``).
        preroll_s: pre-roll P; only the seam test's control sets it (to 0).

    Raises:
        AudioError: the file cannot be read.
        IndexError: ``k`` is outside the track.
    """
    with AudioReader(path) as reader:
        info = reader.info
        n = int(chunk_frames) if chunk_frames else _default_chunk_frames(info.sample_rate)
        if n <= 0:
            raise ValueError("chunk_frames must be positive")
        start = int(k) * n
        if k < 0 or start >= info.num_frames:
            raise IndexError(f"chunk {k} is outside {info.path} ({info.num_frames} frames, {n} per chunk)")
        stop = min(start + n, info.num_frames)
        return _render_range(reader, plan, start, stop, preroll_s)[0]


def render_frames(path: str | os.PathLike[str], plan: MasteringPlan, start: int, stop: int) -> np.ndarray:
    """Frames ``[start, stop)`` of ``path`` mastered by ``plan`` (inside the track), float32 stereo ``(frames, 2)``.

    The same absolute-grid window as :func:`render_chunk` (pre-roll, look-ahead), so any range
    equals the same frames of the standard chunks: the output-rate chunk jobs render a chunk
    plus the few frames on either side that resampling reads.
    """
    with AudioReader(path) as reader:
        n = reader.info.num_frames
        if not 0 <= start < stop <= n:
            raise IndexError(f"frames [{start}, {stop}) are outside {reader.info.path} ({n} frames)")
        return _render_range(reader, plan, int(start), int(stop), PREROLL_S)[0]


def render_samples(
    samples: np.ndarray, sample_rate: int, plan: MasteringPlan
) -> tuple[np.ndarray, dict[str, float]]:
    """One-pass render of an in-memory track (tests, previews): same chain, zero-padded like a file.

    ``samples`` is ``(frames, channels)`` (or ``(frames,)`` mono), downmixed to stereo first.

    Returns:
        ``(y float32 (frames, 2), stats)`` where stats are the stage maxima.
    """
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim == 1:
        x = x[:, None]
    x = stereo_downmix(x)
    frames = x.shape[0]
    lo, hi = _window(0, frames, sample_rate, PREROLL_S)
    window = np.zeros((hi - lo, x.shape[1]), dtype=np.float32)
    window[-lo : -lo + frames] = x
    y, stats = process_window(window, sample_rate, plan)
    return y[-lo : -lo + frames], stats


_WRITE_FORMATS: Final = {
    ".wav": ("WAV", "FLOAT"),
    ".flac": ("FLAC", "PCM_24"),
    ".aif": ("AIFF", "PCM_24"),
    ".aiff": ("AIFF", "PCM_24"),
}


def render_file(
    in_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    plan: MasteringPlan,
    *,
    chunk_frames: int | None = None,
) -> dict[str, Any]:
    """Master a whole file through the chunk renderer and write it (atomically: temp name + rename).

    Output is the stereo master (a mono input as dual mono, multichannel as its BS.775 downmix,
    see :mod:`auralis.downmix`) with the input's frame count and sample rate; its format follows the
    extension (``.wav`` float32, ``.flac``/``.aiff`` 24-bit PCM). Chunks of
    ``OFFLINE_CHUNK_S`` are rendered in order and streamed to disk (bounded memory); the audio
    is identical for any chunk length.

    Returns:
        Stage maxima over the track (``compressor_gr_db``, ``expander_boost_db``, ``limiter_gr_db``).

    Raises:
        AudioError: unreadable input; UnsupportedAudioError for an output extension we cannot write.
    """
    out_path = os.fspath(out_path)
    output_format(out_path)  # an unwritable extension fails before any decoding
    with AudioReader(in_path) as reader:
        return render_reader(reader, out_path, plan, chunk_frames=chunk_frames)


def output_format(out_path: str) -> tuple[str, str]:
    """libsndfile ``(format, subtype)`` for an output path's extension (``.wav`` float32, ``.flac``/``.aiff`` 24-bit).

    Raises:
        UnsupportedAudioError: any other extension.
    """
    ext = os.path.splitext(out_path)[1].lower()
    if ext not in _WRITE_FORMATS:
        raise UnsupportedAudioError(out_path, f"cannot write '{ext or 'no extension'}' (use .wav, .flac or .aiff)")
    return _WRITE_FORMATS[ext]


def render_reader(
    reader: AudioReader | ArrayReader,
    out_path: str | os.PathLike[str],
    plan: MasteringPlan,
    *,
    chunk_frames: int | None = None,
) -> dict[str, Any]:
    """:func:`render_file` from an open reader: the same chunks from the same frames, so the same audio.

    With an :class:`~auralis.audio.ArrayReader` (:func:`~auralis.audio.open_reader`), a track
    decoded once for its plan inputs is rendered without being decoded again.

    Raises:
        AudioError: the reader cannot decode; UnsupportedAudioError for an output extension we cannot write.
    """
    out_path = os.fspath(out_path)
    fmt, subtype = output_format(out_path)
    ext = os.path.splitext(out_path)[1].lower()
    totals = {"compressor_gr_db": 0.0, "expander_boost_db": 0.0, "limiter_gr_db": 0.0}
    tmp = f"{out_path}.tmp-{os.getpid()}{ext}"
    try:
        info = reader.info
        n = int(chunk_frames) if chunk_frames else int(round(OFFLINE_CHUNK_S * info.sample_rate))
        with sf.SoundFile(os.fsencode(tmp), "w", samplerate=info.sample_rate, channels=2,
                          format=fmt, subtype=subtype) as out:
            for start in range(0, info.num_frames, n):
                y, stats = _render_range(reader, plan, start, min(start + n, info.num_frames), PREROLL_S)
                out.write(y)
                for key, value in stats.items():
                    totals[key] = max(totals[key], value)
        os.replace(tmp, out_path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return totals
