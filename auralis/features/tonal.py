"""Tonal features per frame: harmonicity, pitch and chroma concentration.

All three come from the frame power spectra of :mod:`auralis.features.spectral`:
the autocorrelation is the inverse FFT of the power spectrum (Wiener-Khinchin), divided
by the window's own autocorrelation so that a steady periodic signal reads 1.
"""

from __future__ import annotations

from typing import Final

import numpy as np

from .. import kernels
from .spectral import SILENT_FRAME_MS, bin_frequencies, hann

PITCH_MIN_HZ: Final = 50.0  # pitch search range of the autocorrelation (lags sr/1000 .. sr/50)
PITCH_MAX_HZ: Final = 1000.0
PEAK_PICK_FRACTION: Final = 0.9  # first lag reaching 90 % of the best one (avoids octave errors)
VOICED_HARMONICITY: Final = 0.5  # frames at least this periodic carry a pitch
STABLE_STEP_SEMITONES: Final = 0.5  # consecutive voiced frames closer than this count as a stable pitch
CHROMA_LOW_HZ: Final = 100.0  # below ~100 Hz the bins are wider than a semitone
CHROMA_HIGH_HZ: Final = 5000.0
A4_HZ: Final = 440.0


def _lag_range(sample_rate: int, frame_length: int) -> tuple[int, int]:
    lo = max(1, int(np.floor(sample_rate / PITCH_MAX_HZ)))
    hi = min(frame_length // 2, int(np.ceil(sample_rate / PITCH_MIN_HZ)))
    return lo, hi


def frame_tonal(power: np.ndarray, frame_length: int, sample_rate: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-frame ``(harmonicity 0..1, pitch in semitones re A4 (NaN if none), chroma concentration 0..1)``.

    Args:
        power: float32 ``(frames, frame_length // 2 + 1)`` power spectra of the mono downmix.
    """
    frames = power.shape[0]
    lo, hi = _lag_range(sample_rate, frame_length)
    if frames == 0 or hi <= lo + 2:
        empty = np.zeros(frames)
        return empty, np.full(frames, np.nan), empty
    acf = kernels.irfft(power, n=frame_length, axis=1)  # float32, lag 0 = frame energy
    window_acf = kernels.irfft(np.abs(kernels.rfft(hann(frame_length).astype(np.float64))) ** 2)[: hi + 1]
    energy = acf[:, 0]
    inv_energy = np.divide(1.0, energy, out=np.zeros(frames, dtype=np.float32), where=energy > 0.0)
    inv_window = (window_acf[0] / window_acf[lo : hi + 1]).astype(np.float32)
    norm = acf[:, lo : hi + 1] * inv_energy[:, None]
    norm *= inv_window[None, :]
    best = norm.max(axis=1).astype(np.float64)
    harmonicity = np.clip(best, 0.0, 1.0)

    # Pitch: the first lag reaching 90 % of the best, refined to the local maximum just after it.
    first = np.argmax(norm >= (PEAK_PICK_FRACTION * best)[:, None], axis=1)
    width = (hi - lo) // 4 + 2
    idx = np.minimum(first[:, None] + np.arange(width)[None, :], norm.shape[1] - 1)
    limit = (first + lo) // 4 + 1  # look at most a quarter period further
    cand = np.take_along_axis(norm, idx, axis=1)
    cand[np.arange(width)[None, :] > limit[:, None]] = -np.inf
    lag = lo + np.take_along_axis(idx, np.argmax(cand, axis=1)[:, None], axis=1)[:, 0]
    voiced = harmonicity >= VOICED_HARMONICITY
    pitch = np.where(voiced, 12.0 * np.log2(sample_rate / lag / A4_HZ), np.nan)

    freqs = bin_frequencies(frame_length, sample_rate)
    sel = np.flatnonzero((freqs >= CHROMA_LOW_HZ) & (freqs < CHROMA_HIGH_HZ))
    if sel.size:
        pitch_class = np.mod(np.round(12.0 * np.log2(freqs[sel] / A4_HZ)).astype(np.int64), 12)
        order = np.argsort(pitch_class, kind="stable")
        present = np.unique(pitch_class)
        starts = np.searchsorted(pitch_class[order], present)
        # Fold bins into pitch classes with numpy reductions (exactly repeatable, unlike a threaded GEMM).
        chroma = np.add.reduceat(power[:, sel[order]], starts, axis=1).astype(np.float64)
        total = chroma.sum(axis=1)
        share = np.divide(chroma.max(axis=1), total, out=np.zeros(frames), where=total > 0.0)
        concentration = np.where(total > 0.0, (share - 1.0 / 12.0) / (11.0 / 12.0), 0.0)
    else:
        concentration = np.zeros(frames)
    return harmonicity, pitch, np.clip(concentration, 0.0, 1.0)


def tonal_dimensions(
    harmonicity: np.ndarray, pitch: np.ndarray, concentration: np.ndarray, frame_ms: np.ndarray
) -> dict[str, float]:
    """``harmonic_ratio``, ``pitch_stability``, ``chroma_energy`` from the per-frame values of a whole track."""
    loud = frame_ms >= SILENT_FRAME_MS
    if not np.any(loud):
        return {"harmonic_ratio": 0.0, "pitch_stability": 0.0, "chroma_energy": 0.0}
    voiced = loud & np.isfinite(pitch)
    pairs = voiced[1:] & voiced[:-1]
    if np.any(pairs):
        steps = np.abs(np.diff(np.where(voiced, pitch, 0.0)))[pairs]
        stability = float(np.mean(steps < STABLE_STEP_SEMITONES))
    else:
        stability = 0.0
    return {
        "harmonic_ratio": float(np.mean(harmonicity[loud])),
        "pitch_stability": stability,
        "chroma_energy": float(np.mean(concentration[loud])),
    }
