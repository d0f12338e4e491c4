"""ITU-R BS.1770-4 / EBU R128 loudness meter: K-weighting, gating, M/S maxima, LRA, true peak.

Everything is computed from one intermediate quantity: the channel-weighted K-weighted
energy ``z[n] = sum_i G_i * y_i[n]**2`` summed over *granules* of about 2 ms (a divisor
of the 100 ms hop, :func:`loudness_segment_geometry`). Granule energies are additive, so

* integrated loudness gates the 400 ms blocks on the 100 ms hop (75 % overlap),
* max momentary (400 ms) and max short-term (3 s) loudness slide their window granule
  by granule (a 2 ms grid: EBU Tech 3341 cases 10 and 13 shift bursts by 20 ms),
* loudness range (EBU Tech 3342) uses the short-term values every 100 ms,

and a track cut into segments (each analysed with pre-roll so the IIR filters settle)
merges to exactly the numbers of one whole-signal pass: :func:`measure_loudness` *is*
the one-segment case of :func:`analyze_loudness_segment` + :func:`merge_loudness_segments`.

True peak follows BS.1770-4 Annex 2 (4x oversampling, the tabled 48-tap polyphase
interpolator; the result is never below the sample peak). Interpolating every sample costs
48 multiply-adds per sample, so values are only computed where they could matter: over an
8-frame block whose 12-tap reach spans ``[low, high]``, phase ``k`` cannot exceed
``|S_k| |mid| + L1_k (high - low) / 2`` (tap sum and absolute tap sum; ``mid`` the centre),
and blocks whose bound does not beat the running maximum are skipped. The result is the
exact maximum (float32 arithmetic, ~1e-6 dB), identical whatever the segmentation.

Silence and signals too short for a window read ``-inf`` (LRA ``0.0``), without warnings.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Final

import numpy as np

from . import kernels
from .audio import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE

ABSOLUTE_GATE_LUFS: Final = -70.0  # ITU-R BS.1770-4 §2.8, EBU Tech 3342
RELATIVE_GATE_LU: Final = -10.0  # ITU-R BS.1770-4 §2.8
LRA_RELATIVE_GATE_LU: Final = -20.0  # EBU Tech 3342 §3
LRA_LOW_PERCENTILE: Final = 10.0  # EBU Tech 3342 §3
LRA_HIGH_PERCENTILE: Final = 95.0  # EBU Tech 3342 §3
LOUDNESS_OFFSET_DB: Final = -0.691  # ITU-R BS.1770-4 eq. 2 (cancels the K-filter gain at 997 Hz)
BLOCK_HOPS: Final = 4  # 400 ms gating block / momentary window = 4 hops of 100 ms (BS.1770-4, Tech 3341)
SHORT_TERM_HOPS: Final = 30  # 3 s short-term window (EBU Tech 3341)
SURROUND_WEIGHT: Final = 1.41  # ITU-R BS.1770-4 Table 3, G for Ls/Rs
TRUE_PEAK_OVERSAMPLING: Final = 4  # ITU-R BS.1770-4 Annex 2
GRANULE_TARGET_S: Final = 0.002  # granule ~2 ms: M/S maxima evaluated on this grid (max 0.011 dB short)
FILTER_SETTLE_S: Final = 0.5  # pre-roll: the K-filter's slowest pole (RLB, ~4 ms) decays by e^-100

# K-weighting analog prototypes (ITU-R BS.1770-4 Table 1 re-derived; libebur128's constants).
_SHELF_F0_HZ: Final = 1681.974450955533
_SHELF_GAIN_DB: Final = 3.999843853973347
_SHELF_Q: Final = 0.7071752369554196
_SHELF_VB_EXPONENT: Final = 0.4996667741545416
_HIGHPASS_F0_HZ: Final = 38.13547087602444
_HIGHPASS_Q: Final = 0.5003270373238773
# ITU-R BS.1770-4 Table 1 and 2: the tabled 48 kHz coefficients.
_K_SOS_48K: Final = np.array(
    [
        [1.53512485958697, -2.69169618940638, 1.19839281085285, 1.0, -1.69065929318241, 0.73248077421585],
        [1.0, -2.0, 1.0, 1.0, -1.99004745483398, 0.99007225036621],
    ]
)

# ITU-R BS.1770-4 Annex 2: 4-phase, 12-tap interpolator. Phase k, tap j multiplies x[n - j]
# and yields the signal at time n - 5.875 + k/4 (the 48-tap FIR is symmetric, delay 23.5/4).
_TP_PHASES: Final = np.array(
    [
        [0.0017089843750, 0.0109863281250, -0.0196533203125, 0.0332031250000, -0.0594482421875, 0.1373291015625,
         0.9721679687500, -0.1022949218750, 0.0476074218750, -0.0266113281250, 0.0148925781250, -0.0083007812500],
        [-0.0291748046875, 0.0292968750000, -0.0517578125000, 0.0891113281250, -0.1665039062500, 0.4650878906250,
         0.7797851562500, -0.2003173828125, 0.1015625000000, -0.0582275390625, 0.0330810546875, -0.0189208984375],
        [-0.0189208984375, 0.0330810546875, -0.0582275390625, 0.1015625000000, -0.2003173828125, 0.7797851562500,
         0.4650878906250, -0.1665039062500, 0.0891113281250, -0.0517578125000, 0.0292968750000, -0.0291748046875],
        [-0.0083007812500, 0.0148925781250, -0.0266113281250, 0.0476074218750, -0.1022949218750, 0.9721679687500,
         0.1373291015625, -0.0594482421875, 0.0332031250000, -0.0196533203125, 0.0109863281250, 0.0017089843750],
    ]
)
# Centred form: the 4 values between frame m and m+1 (times m + 1/8 + k/4) read frames m-5 .. m+6.
_TP_BEFORE: Final = 5
_TP_AFTER: Final = 6
_TP_TAPS: Final = _TP_BEFORE + _TP_AFTER + 1
_TP_MATRIX: Final = np.ascontiguousarray(_TP_PHASES[:, ::-1].T)  # (12 frames m-5..m+6, 4 phases)
_TP_ABS_GAINS: Final = np.abs(_TP_PHASES).sum(axis=1)  # L1_k: |y_k| <= L1_k * max|x| over the taps
# Phases 3 and 2 mirror phases 0 and 1: two (|S_k|, L1_k) pairs bound all four.
_TP_DC_GAINS_F32: Final = np.abs(_TP_PHASES.sum(axis=1))[:2].astype(np.float32)  # |S_k|: 1.0016, 0.9730
_TP_ABS_GAINS_F32: Final = _TP_ABS_GAINS[:2].astype(np.float32)  # L1_k: 1.4342, 2.0228
_TP_BLOCK: Final = 8  # frames per candidate block (>= _TP_AFTER, so neighbour blocks cover the reach)
_TP_BATCH_BLOCKS: Final = 8192  # candidate blocks interpolated per numpy call (~1 MB of windows)
_TP_UNION_FRACTION: Final = 0.02  # above this share of union candidates, bound each channel alone
_TP_DENSE_FRACTION: Final = 0.25  # above this share of candidate blocks, interpolate the whole chunk
_TP_ROUNDING_MARGIN: Final = 1.0 + 1e-5  # float32 interpolation error is < 1e-6 of the bound
_TP_MATRIX_F32: Final = _TP_MATRIX.astype(np.float32)
_CHUNK_FRAMES: Final = 1 << 16  # streaming chunk: keeps temporaries small (no page-fault storms)


def _check_rate(sample_rate: int) -> int:
    rate = int(sample_rate)
    if rate != sample_rate or not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise ValueError(f"sample rate {sample_rate!r} Hz is outside {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz")
    return rate


def _derive_k_weighting_sos(sample_rate: float) -> np.ndarray:
    """K-weighting biquads by bilinear transform of the analog prototypes (libebur128's formulas)."""
    k = math.tan(math.pi * _SHELF_F0_HZ / sample_rate)
    vh = 10.0 ** (_SHELF_GAIN_DB / 20.0)
    vb = vh**_SHELF_VB_EXPONENT
    a0 = 1.0 + k / _SHELF_Q + k * k
    shelf = [
        (vh + vb * k / _SHELF_Q + k * k) / a0,
        2.0 * (k * k - vh) / a0,
        (vh - vb * k / _SHELF_Q + k * k) / a0,
        1.0,
        2.0 * (k * k - 1.0) / a0,
        (1.0 - k / _SHELF_Q + k * k) / a0,
    ]
    k = math.tan(math.pi * _HIGHPASS_F0_HZ / sample_rate)
    a0 = 1.0 + k / _HIGHPASS_Q + k * k
    highpass = [1.0, -2.0, 1.0, 1.0, 2.0 * (k * k - 1.0) / a0, (1.0 - k / _HIGHPASS_Q + k * k) / a0]
    return np.array([shelf, highpass])


def k_weighting_sos(sample_rate: int) -> np.ndarray:
    """K-weighting filter (ITU-R BS.1770-4 Annex 1) as second-order sections, shape ``(2, 6)``.

    Row 0 is the high shelf (+4 dB above ~1.7 kHz), row 1 the RLB high-pass (~38 Hz). At
    48 kHz these are the tabled coefficients; at other rates they are derived from the
    analog prototypes, which reproduce the 48 kHz table to ~1e-15.
    """
    rate = _check_rate(sample_rate)
    if rate == 48_000:
        return _K_SOS_48K.copy()
    return _derive_k_weighting_sos(rate)


def channel_weights(channels: int) -> np.ndarray:
    """BS.1770-4 channel weights ``G_i`` (Table 3) for a WAV/SMPTE channel order.

    1-3 channels (mono, L R, L R C): 1.0 each. 4 channels (L R Ls Rs): surrounds 1.41.
    5 channels (L R C Ls Rs): surrounds 1.41. 6 channels (5.1: L R C LFE Ls Rs): LFE 0,
    surrounds 1.41. Other counts: 1.0 each (layout unknown).
    """
    if channels < 1:
        raise ValueError(f"channels must be >= 1, got {channels}")
    weights = np.ones(channels)
    if channels == 4:
        weights[2:4] = SURROUND_WEIGHT
    elif channels == 5:
        weights[3:5] = SURROUND_WEIGHT
    elif channels == 6:
        weights[3] = 0.0
        weights[4:6] = SURROUND_WEIGHT
    return weights


@dataclass(frozen=True)
class LoudnessMeasurements:
    """The R128 measurements of one signal. Loudness in LUFS, range in LU, peaks in dBTP / dBFS.

    Silence (or a signal shorter than the window concerned) reads ``-inf``; its LRA reads 0.0.
    """

    integrated_lufs: float
    max_momentary_lufs: float
    max_short_term_lufs: float
    loudness_range_lu: float
    true_peak_dbtp: float
    sample_peak_dbfs: float

    def to_dict(self) -> dict[str, float]:
        """The measurements by field name (``-inf`` kept as a float; JSON writers map it to null)."""
        return asdict(self)


@dataclass(frozen=True, eq=False)
class LoudnessSegment:
    """Additive loudness quantities of one segment: small (one float per ~2 ms granule) and picklable.

    Attributes:
        sample_rate: Hz.
        channels: channel count of the analysed audio.
        num_frames: frames the segment owns (its ``segment_frames``).
        granule_frames: granule length in frames (see :func:`loudness_segment_geometry`).
        granule_energies: float64 ``(num_frames // granule_frames,)``; sum over each complete
            granule of the channel-weighted K-weighted energy. A final partial granule is dropped
            (no gating block or window of the whole signal can use it).
        sample_peak: largest ``|x|`` over the owned frames (linear).
        true_peak: largest ``|x|`` or 4x-interpolated value between an owned frame and the next (linear).
    """

    sample_rate: int
    channels: int
    num_frames: int
    granule_frames: int
    granule_energies: np.ndarray
    sample_peak: float
    true_peak: float


def _hop_frames(sample_rate: int) -> int:
    return (sample_rate + 5) // 10  # 100 ms, rounded as libebur128 does


def gating_hop_frames(sample_rate: int) -> int:
    """The 100 ms gating hop in frames, ``(sample_rate + 5) // 10`` (rounded as libebur128 does).

    BS.1770 blocks start every hop; the granule (:func:`loudness_segment_geometry`) divides it.
    """
    return _hop_frames(_check_rate(sample_rate))


def _granule_frames(sample_rate: int) -> int:
    hop = _hop_frames(sample_rate)
    target = max(1, int(sample_rate * GRANULE_TARGET_S))
    best = max(d for d in range(1, target + 1) if hop % d == 0)
    # A hop with no divisor near the target (e.g. 1103 frames at 11025 Hz) falls back to the hop.
    return best if 4 * best >= target else hop


def loudness_segment_geometry(sample_rate: int) -> tuple[int, int, int]:
    """``(granule_frames, preroll_frames, postroll_frames)`` for :func:`analyze_loudness_segment`.

    Segment starts and lengths must be multiples of ``granule_frames`` (a divisor of the
    100 ms hop; about 2 ms), except the last segment's length. ``preroll_frames`` (about
    0.5 s) lets the K-weighting filters settle; ``postroll_frames`` covers the true-peak
    interpolator's reach past the segment end.
    """
    rate = _check_rate(sample_rate)
    granule = _granule_frames(rate)
    preroll = -(-int(FILTER_SETTLE_S * rate) // granule) * granule
    return granule, preroll, _TP_AFTER


def _as_frames(samples: np.ndarray) -> np.ndarray:
    x = np.asarray(samples)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[1] < 1:
        raise ValueError(f"samples must be (frames, channels), got shape {np.shape(samples)}")
    if not np.issubdtype(x.dtype, np.floating):
        raise TypeError(f"samples must be float audio (full scale 1.0), got dtype {x.dtype}")
    return x


def _granule_energies(x: np.ndarray, sample_rate: int, lo: int, hi: int, granule: int) -> np.ndarray:
    """K-weighted, channel-weighted energy per complete granule of frames [lo, hi); the filters start at frame 0."""
    # One 4th-order pass is ~2x faster than sosfilt's two sections; in float64 it matches the
    # cascade to ~1e-11 relative (the pyloudnorm cross-check agrees to 1e-10 LU).
    b, a = kernels.sos2tf(k_weighting_sos(sample_rate))
    weights = channel_weights(x.shape[1])
    nonzero = np.flatnonzero(weights)  # LFE never needs filtering
    w = weights[nonzero]
    zi = np.zeros((nonzero.size, max(len(a), len(b)) - 1))
    # A plain slice avoids a fancy-indexing copy per chunk when every channel counts.
    active: np.ndarray | slice = slice(None) if nonzero.size == x.shape[1] else nonzero
    num_granules = (hi - lo) // granule
    out = np.empty(num_granules)
    chunk = max(granule, (_CHUNK_FRAMES // granule) * granule)
    # Pre-roll [0, lo): settle the filters, discard the output.
    for start in range(0, lo, _CHUNK_FRAMES):
        block = x[start : min(start + _CHUNK_FRAMES, lo), active].T.astype(np.float64)
        _, zi = kernels.lfilter(b, a, block, 1, zi)
    done = 0
    for start in range(lo, lo + num_granules * granule, chunk):
        stop = min(start + chunk, lo + num_granules * granule)
        block = x[start:stop, active].T.astype(np.float64)
        y, zi = kernels.lfilter(b, a, block, 1, zi)
        y *= y
        z = w @ y
        n = z.size // granule
        out[done : done + n] = z.reshape(n, granule).sum(axis=1)
        done += n
    return out


def _frames_zero_padded(x: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Frames [start, stop) of ``x`` as a float32 ``(channels, frames)`` array, zero outside ``x``."""
    out = np.zeros((x.shape[1], stop - start), dtype=np.float32)
    lo, hi = max(start, 0), min(stop, x.shape[0])
    if hi > lo:
        out[:, lo - start : hi - start] = x[lo:hi].T
    return out


def _interpolate_rows(rows: np.ndarray, width: int) -> np.ndarray:
    """The 4 phases for ``width`` frames of each row: ``(4, rows, width)`` float32.

    ``rows[..., j]`` holds frame ``j - 5``. Every path computes each value with the same float32
    operations in the same order, so a value does not depend on how a track was split.
    """
    acc = np.zeros((_TP_MATRIX.shape[1], rows.shape[0], width), dtype=np.float32)
    tmp = np.empty_like(acc)
    for i in range(_TP_TAPS):  # 12 shifted multiply-adds, all 4 phases at once
        np.multiply(_TP_MATRIX_F32[i][:, None, None], rows[None, :, i : i + width], out=tmp)
        acc += tmp
    return acc


def _block_bounds(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    """Bound on every interpolated value of each 8-frame block (all but the first and last block).

    ``top`` and ``bottom`` are ``(rows, frames)`` float32 upper and lower envelopes (the samples
    themselves, or their max and min over channels). A block's reach (the block and its two
    neighbours) spans ``[low, high]``; phase k's values are at most ``|S_k| |mid| + L1_k half_span``.
    """
    rows = top.shape[0]
    top_view = top.reshape(rows, -1, _TP_BLOCK)
    bottom_view = bottom.reshape(rows, -1, _TP_BLOCK)
    high, low = top_view[:, :, 0].copy(), bottom_view[:, :, 0].copy()
    for j in range(1, _TP_BLOCK):  # a loop over the short axis: numpy's axis=2 reduce is ~40x slower
        np.maximum(high, top_view[:, :, j], out=high)
        np.minimum(low, bottom_view[:, :, j], out=low)
    reach_high = np.maximum(np.maximum(high[:, :-2], high[:, 1:-1]), high[:, 2:])
    reach_low = np.minimum(np.minimum(low[:, :-2], low[:, 1:-1]), low[:, 2:])
    mid = np.add(reach_high, reach_low)
    np.abs(mid, out=mid)
    mid *= 0.5
    half_span = np.subtract(reach_high, reach_low, out=reach_high)
    half_span *= 0.5
    bound = _TP_DC_GAINS_F32[0] * mid
    bound += _TP_ABS_GAINS_F32[0] * half_span
    for k in range(1, _TP_DC_GAINS_F32.size):
        other = _TP_DC_GAINS_F32[k] * mid
        other += _TP_ABS_GAINS_F32[k] * half_span
        np.maximum(bound, other, out=bound)
    bound *= _TP_ROUNDING_MARGIN  # float32 arithmetic never beats the bound it was pruned by
    return bound


def _interpolated_peak(ext: np.ndarray, first: int, stop: int, best: float) -> float:
    """Largest |4x-interpolated value| of one chunk, or ``best`` if nothing beats it.

    ``ext`` holds the chunk's frames as float32 ``(channels, frames)`` with one block of context
    before (frame ``first`` at column ``_TP_BLOCK``) and enough after to complete its last block
    plus one; interpolated values are kept for frames m < ``stop`` (values between m and m + 1).
    """
    channels, width = ext.shape
    num_blocks = width // _TP_BLOCK - 2
    owned = stop - first
    if channels > 1:
        # First one bound for all channels (their union span, half the work); per channel only
        # when that leaves many candidates (channels of opposite sign widen the union).
        top, bottom = ext.max(axis=0, keepdims=True), ext.min(axis=0, keepdims=True)
        union = _block_bounds(top, bottom)[0]
        if not (union > best).any():
            return best
        if np.count_nonzero(union > best) > _TP_UNION_FRACTION * num_blocks:
            bound = _block_bounds(ext, ext)
        else:
            bound = np.repeat(union[None, :], channels, axis=0)
    else:
        bound = _block_bounds(ext, ext)
    bound = bound.ravel()  # (channels * blocks,)
    candidates = np.flatnonzero(bound > best)
    if candidates.size > _TP_DENSE_FRACTION * bound.size:
        # Dense: interpolate whole rows (contiguous, cheaper than gathering most blocks).
        values = _interpolate_rows(ext[:, _TP_BLOCK - _TP_BEFORE :], owned)
        return max(best, float(values.max()), -float(values.min()))
    order = candidates[np.argsort(-bound[candidates], kind="stable")]
    offsets = np.arange(-_TP_BEFORE, _TP_BLOCK + _TP_AFTER)
    position, batch = 0, 64  # a small first batch usually finds the peak and prunes most of the rest
    while position < order.size:
        chosen = order[position : position + batch]
        position += batch
        batch = _TP_BATCH_BLOCKS
        chosen = chosen[bound[chosen] > best]
        if chosen.size == 0:
            break
        channel, block = np.divmod(chosen, num_blocks)
        columns = _TP_BLOCK * (block + 1)  # ext column of each block's first frame
        values = _interpolate_rows(ext[channel[:, None], columns[:, None] + offsets], _TP_BLOCK)
        np.abs(values, out=values)
        values *= (_TP_BLOCK * block[:, None] + np.arange(_TP_BLOCK)) < owned
        best = max(best, float(values.max()))
    return best


def _peaks(x: np.ndarray, lo: int, hi: int, *, with_true_peak: bool) -> tuple[float, float]:
    """(sample peak, true peak), linear, of frames [lo, hi) of ``x`` (zero outside).

    The true peak is the larger of the sample peak and every 4x-interpolated value between an
    owned frame and the next. Over a block of frames whose 12-tap reach spans [low, high] in
    a channel, an interpolated value is at most ``|S_k| |mid| + L1_k (high - low) / 2``
    (``S_k``, ``L1_k``: sum and absolute sum of phase k's taps; ``mid`` the centre of the
    span). Chunks, then blocks, are interpolated only when their bound beats the running
    maximum, largest bound first: the result is exact, the work mostly skipped.
    """
    step = (_CHUNK_FRAMES // _TP_BLOCK) * _TP_BLOCK
    peaks = []
    for a in range(lo, hi, step):
        seg = x[a : min(a + step, hi)]
        peaks.append(max(float(seg.max()), -float(seg.min()), 0.0))
    sample_peak = max(peaks, default=0.0)
    if not with_true_peak or sample_peak == 0.0:
        return sample_peak, sample_peak
    # Coarse bound per chunk: its reach extends one block into the neighbours (or the context).
    before = x[max(lo - _TP_BLOCK, 0) : lo]
    after = x[hi : hi + _TP_BLOCK]
    edge_before = float(np.abs(before).max()) if before.size else 0.0
    edge_after = float(np.abs(after).max()) if after.size else 0.0
    padded = np.array([edge_before, *peaks, edge_after])
    reach = np.maximum(np.maximum(padded[:-2], padded[1:-1]), padded[2:])
    coarse = _TP_ROUNDING_MARGIN * np.max(_TP_ABS_GAINS) * reach
    best = sample_peak
    for k in np.argsort(-coarse, kind="stable"):
        if coarse[k] <= best:
            break
        a = lo + int(k) * step
        b = min(a + step, hi)
        num_blocks = -(-(b - a) // _TP_BLOCK)
        ext = _frames_zero_padded(x, a - _TP_BLOCK, a + (num_blocks + 1) * _TP_BLOCK)
        best = _interpolated_peak(ext, a, b, best)
    return sample_peak, best


def _analyze(x: np.ndarray, sample_rate: int, lo: int, hi: int, *, with_true_peak: bool = True) -> LoudnessSegment:
    rate = _check_rate(sample_rate)
    granule = _granule_frames(rate)
    energies = _granule_energies(x, rate, lo, hi, granule)
    sample_peak, true_peak = _peaks(x, lo, hi, with_true_peak=with_true_peak)
    return LoudnessSegment(
        sample_rate=rate,
        channels=int(x.shape[1]),
        num_frames=hi - lo,
        granule_frames=granule,
        granule_energies=energies,
        sample_peak=sample_peak,
        true_peak=true_peak,
    )


def analyze_loudness_segment(
    samples_with_context: np.ndarray, sample_rate: int, *, preroll_frames: int, segment_frames: int
) -> LoudnessSegment:
    """Additive loudness quantities of one segment, for :func:`merge_loudness_segments`.

    Args:
        samples_with_context: ``(frames, channels)`` float audio covering
            ``[start - preroll_frames, start + segment_frames + postroll_frames)`` of the track,
            zero outside the track (``AudioReader.read`` does that).
        sample_rate: Hz.
        preroll_frames: context frames before the segment (``loudness_segment_geometry``'s value).
        segment_frames: frames the segment owns; a multiple of ``granule_frames`` except for the
            last segment of a track.

    Returns:
        A small picklable :class:`LoudnessSegment`.
    """
    x = _as_frames(samples_with_context)
    _, min_preroll, postroll = loudness_segment_geometry(sample_rate)
    if preroll_frames < min_preroll or segment_frames < 0:
        raise ValueError(f"preroll_frames must be >= {min_preroll} (filter settling) and segment_frames >= 0")
    if x.shape[0] < preroll_frames + segment_frames + postroll:
        raise ValueError(
            f"samples_with_context has {x.shape[0]} frames; need preroll + segment + postroll = "
            f"{preroll_frames + segment_frames + postroll}"
        )
    return _analyze(x, sample_rate, preroll_frames, preroll_frames + segment_frames)


def _energy_to_lufs(mean_energy: float) -> float:
    return LOUDNESS_OFFSET_DB + 10.0 * math.log10(mean_energy) if mean_energy > 0.0 else -math.inf


def _peak_to_db(peak: float) -> float:
    return 20.0 * math.log10(peak) if peak > 0.0 else -math.inf


def _window_sums(cumulative: np.ndarray, width: int) -> np.ndarray:
    """Sums of every ``width`` consecutive granules (>= 0; exact zeros stay zero)."""
    if cumulative.size <= width:
        return np.zeros(0)
    return np.maximum(cumulative[width:] - cumulative[:-width], 0.0)


def _gated_mean(energies: np.ndarray, relative_gate_lu: float) -> float:
    """Mean of block energies above the absolute gate and ``relative_gate_lu`` below their mean."""
    absolute = 10.0 ** ((ABSOLUTE_GATE_LUFS - LOUDNESS_OFFSET_DB) / 10.0)
    above = energies[energies > absolute]
    if above.size == 0:
        return 0.0
    relative = above.mean() * 10.0 ** (relative_gate_lu / 10.0)
    kept = above[above > relative]
    return float(kept.mean()) if kept.size else 0.0


def _loudness_range(short_term_energies: np.ndarray) -> float:
    """EBU Tech 3342 loudness range of short-term mean energies (one per 100 ms)."""
    absolute = 10.0 ** ((ABSOLUTE_GATE_LUFS - LOUDNESS_OFFSET_DB) / 10.0)
    above = short_term_energies[short_term_energies > absolute]
    if above.size == 0:
        return 0.0
    relative = above.mean() * 10.0 ** (LRA_RELATIVE_GATE_LU / 10.0)
    kept = np.sort(above[above > relative])
    # Nearest-rank percentiles, as libebur128 does.
    low = kept[int((kept.size - 1) * LRA_LOW_PERCENTILE / 100.0 + 0.5)]
    high = kept[int((kept.size - 1) * LRA_HIGH_PERCENTILE / 100.0 + 0.5)]
    return float(10.0 * math.log10(high / low))


def merge_loudness_segments(segments: Sequence[LoudnessSegment]) -> LoudnessMeasurements:
    """Measurements of the whole track from its segments, given in track order.

    Equals :func:`measure_loudness` of the whole signal (to float rounding, ~1e-9 dB) whatever the split.

    Raises:
        ValueError: no segments, mixed rates/channels, or a non-final segment whose length is not
            a multiple of the granule.
    """
    if not segments:
        raise ValueError("no segments to merge")
    first = segments[0]
    for k, seg in enumerate(segments):
        if (seg.sample_rate, seg.channels, seg.granule_frames) != (
            first.sample_rate,
            first.channels,
            first.granule_frames,
        ):
            raise ValueError(f"segment {k} has a different sample rate, channel count or granule")
        if k < len(segments) - 1 and seg.num_frames % seg.granule_frames:
            raise ValueError(f"segment {k} length {seg.num_frames} is not a multiple of {seg.granule_frames}")
    energies = np.concatenate([seg.granule_energies for seg in segments])
    granule = first.granule_frames
    hop = _hop_frames(first.sample_rate) // granule
    cumulative = np.concatenate(([0.0], np.cumsum(energies)))
    block = _window_sums(cumulative, BLOCK_HOPS * hop) / (BLOCK_HOPS * hop * granule)
    short = _window_sums(cumulative, SHORT_TERM_HOPS * hop) / (SHORT_TERM_HOPS * hop * granule)
    sample_peak = max(seg.sample_peak for seg in segments)
    true_peak = max(max(seg.true_peak for seg in segments), sample_peak)
    return LoudnessMeasurements(
        integrated_lufs=_energy_to_lufs(_gated_mean(block[::hop], RELATIVE_GATE_LU)),
        max_momentary_lufs=_energy_to_lufs(float(block.max()) if block.size else 0.0),
        max_short_term_lufs=_energy_to_lufs(float(short.max()) if short.size else 0.0),
        loudness_range_lu=_loudness_range(short[::hop]),
        true_peak_dbtp=_peak_to_db(true_peak),
        sample_peak_dbfs=_peak_to_db(sample_peak),
    )


def measure_loudness(samples: np.ndarray, sample_rate: int) -> LoudnessMeasurements:
    """All R128 measurements of an in-memory signal.

    Args:
        samples: ``(frames, channels)`` (or ``(frames,)``) finite float audio, full scale 1.0;
            channels in WAV/SMPTE order (see :func:`channel_weights`).
        sample_rate: Hz, 8 kHz to 192 kHz.

    Returns:
        :class:`LoudnessMeasurements`; the signal is taken as silent before and after.
    """
    x = _as_frames(samples)
    return merge_loudness_segments([_analyze(x, sample_rate, 0, x.shape[0])])


def _window_loudness(samples: np.ndarray, sample_rate: int, hops: int) -> np.ndarray:
    x = _as_frames(samples)
    segment = _analyze(x, sample_rate, 0, x.shape[0], with_true_peak=False)
    hop = _hop_frames(segment.sample_rate) // segment.granule_frames
    cumulative = np.concatenate(([0.0], np.cumsum(segment.granule_energies)))
    mean = _window_sums(cumulative, hops * hop)[::hop] / (hops * hop * segment.granule_frames)
    out = np.full(mean.shape, -np.inf)
    positive = mean > 0.0
    out[positive] = LOUDNESS_OFFSET_DB + 10.0 * np.log10(mean[positive])
    return out


def momentary_loudness(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """Momentary (400 ms) loudness in LUFS every 100 ms: value k covers [0.1 k s, 0.1 k s + 0.4 s); -inf if silent."""
    return _window_loudness(samples, sample_rate, BLOCK_HOPS)


def short_term_loudness(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """Short-term (3 s) loudness in LUFS every 100 ms: value k covers [0.1 k s, 0.1 k s + 3 s); -inf if silent.

    These are the values EBU Tech 3342's loudness range is computed from.
    """
    return _window_loudness(samples, sample_rate, SHORT_TERM_HOPS)


def integrated_loudness(samples: np.ndarray, sample_rate: int) -> float:
    """Gated integrated loudness (ITU-R BS.1770-4) in LUFS; ``-inf`` for silence or < 400 ms."""
    x = _as_frames(samples)
    segment = _analyze(x, sample_rate, 0, x.shape[0], with_true_peak=False)
    return merge_loudness_segments([segment]).integrated_lufs


def true_peak_dbtp(samples: np.ndarray, sample_rate: int) -> float:
    """True peak (ITU-R BS.1770-4 Annex 2, 4x oversampling) in dBTP over all channels; ``-inf`` for silence.

    Never below the sample peak; the signal is taken as silent before and after.
    """
    x = _as_frames(samples)
    _check_rate(sample_rate)
    return _peak_to_db(_peaks(x, 0, x.shape[0], with_true_peak=True)[1])
