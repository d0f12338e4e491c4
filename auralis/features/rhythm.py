"""Rhythm features from an onset envelope: tempo, rhythm stability, transient density.

The envelope is built block by block on a 5 ms hop grid from the mono downmix ``m``:
per hop, the mean square of ``m`` (broadband) and of its first difference ``m[n] - m[n-1]``
(a high-frequency emphasis that catches hi-hats under a loud bass). Onset strength is
the half-wave rectified rise of the log energies from one hop to the next, summed over
the two. Tempo is the autocorrelation peak of the onset strength weighted by a
log-normal tempo prior centred on 120 BPM (Ellis 2007, "Beat tracking by dynamic
programming", the prior librosa also uses).
"""

from __future__ import annotations

from typing import Final

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .. import kernels

HOP_S: Final = 0.005  # onset envelope hop, seconds (rounded to whole samples)
ENERGY_FLOOR: Final = 1e-10  # -100 dBFS floor before the log
TEMPO_MIN_BPM: Final = 50.0
TEMPO_MAX_BPM: Final = 220.0
TEMPO_PRIOR_BPM: Final = 120.0  # centre of the log-normal tempo prior
TEMPO_PRIOR_OCTAVES: Final = 1.0  # its standard deviation, in octaves
ONSET_MIN_RISE: Final = 0.5  # an onset is a peak of at least 0.5 log10 units (5 dB summed over both bands)
ONSET_MIN_GAP_S: Final = 0.05  # two onsets are at least 50 ms apart
SMOOTH_HOPS: Final = 4  # energies are summed over a trailing 20 ms (one cycle of a 50 Hz bass note)
MIN_ONSETS: Final = 4  # fewer onsets than this: no beat to measure (tempo and stability read 0)


def hop_length(sample_rate: int) -> int:
    """Envelope hop in samples (5 ms, rounded)."""
    return max(1, int(round(sample_rate * HOP_S)))


def onset_strength(broadband_ms: np.ndarray, emphasis_ms: np.ndarray) -> np.ndarray:
    """Onset strength per hop (log10 units) from the two per-hop mean squares of the whole track."""
    if broadband_ms.size == 0:
        return np.zeros(0)
    strength = np.zeros(broadband_ms.size)
    kernel = np.ones(SMOOTH_HOPS) / SMOOTH_HOPS
    for energy in (broadband_ms, emphasis_ms):
        smooth = np.convolve(energy, kernel)[: energy.size]
        rise = np.diff(np.log10(smooth + ENERGY_FLOOR))
        strength[1:] += np.maximum(rise, 0.0)
    return strength


def onset_peaks(strength: np.ndarray, gap: int) -> np.ndarray:
    """Indices of onsets: hops at least :data:`ONSET_MIN_RISE` strong that are the largest within ``gap`` hops.

    Of equal neighbours within the gap the earliest wins.
    """
    padded = np.concatenate((np.full(gap, -np.inf), strength, np.full(gap, -np.inf)))
    windows = sliding_window_view(padded, gap)
    before = windows[: strength.size].max(axis=1)  # the gap hops before each hop
    after = windows[gap + 1 : gap + 1 + strength.size].max(axis=1)  # the gap hops after it
    return np.flatnonzero((strength >= ONSET_MIN_RISE) & (strength > before) & (strength >= after))


def rhythm_dimensions(strength: np.ndarray, hop_s: float, duration_s: float) -> dict[str, float]:
    """``tempo_bpm``, ``rhythm_stability``, ``transient_density`` of a whole track.

    Args:
        strength: onset strength per hop (:func:`onset_strength`).
        hop_s: hop duration in seconds (hop_length / sample_rate).
        duration_s: track duration, for the onsets per second.
    """
    out = {"tempo_bpm": 0.0, "rhythm_stability": 0.0, "transient_density": 0.0}
    if strength.size < 3 or duration_s <= 0.0:
        return out
    peaks = onset_peaks(strength, max(1, int(round(ONSET_MIN_GAP_S / hop_s))))
    out["transient_density"] = float(peaks.size / duration_s)
    if peaks.size < MIN_ONSETS:
        return out

    lag_min = int(np.floor(60.0 / TEMPO_MAX_BPM / hop_s))
    lag_max = int(np.ceil(60.0 / TEMPO_MIN_BPM / hop_s))
    centred = strength - strength.mean()
    if strength.size < 2 * lag_max or not np.any(centred):
        return out
    size = kernels.next_fast_len(2 * strength.size)
    spectrum = kernels.rfft(centred, n=size)
    acf = kernels.irfft(spectrum.real**2 + spectrum.imag**2, n=size)[: lag_max + 2]
    if not acf[0] > 0.0:
        return out
    acf = acf / acf[0]
    lags = np.arange(lag_min, lag_max + 1)
    bpm = 60.0 / (lags * hop_s)
    prior = np.exp(-0.5 * (np.log2(bpm / TEMPO_PRIOR_BPM) / TEMPO_PRIOR_OCTAVES) ** 2)
    best = int(lags[np.argmax(acf[lags] * prior)])
    # Parabolic interpolation of the peak for sub-hop resolution.
    y0, y1, y2 = acf[best - 1], acf[best], acf[best + 1]
    denom = y0 - 2.0 * y1 + y2
    shift = 0.5 * (y0 - y2) / denom if denom < 0.0 else 0.0
    lag = best + float(np.clip(shift, -0.5, 0.5))
    out["tempo_bpm"] = float(60.0 / (lag * hop_s))
    out["rhythm_stability"] = float(np.clip(y1, 0.0, 1.0))
    return out
