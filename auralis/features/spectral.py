"""Spectral features: the seven band energies, centroid, roll-off and flatness.

Frames of the mono downmix ``m = (L' + R') / 2`` are Hann-windowed, non-overlapping, on
the global grid (step = length = :func:`spectral_frame_length`). Band energies and the
long-term average spectrum (LTAS) are sums of their power spectra over frames, hence
additive across blocks.
"""

from __future__ import annotations

from typing import Final

import numpy as np

from .. import kernels
from .grid import frame_view

# The seven mastering bands (Hz), [low, high): sub-bass .. air, as in issue 2.
BAND_NAMES: Final = ("sub_bass_pct", "bass_pct", "low_mid_pct", "mid_pct", "upper_mid_pct", "presence_pct", "air_pct")
BAND_EDGES_HZ: Final = ((20.0, 60.0), (60.0, 250.0), (250.0, 500.0), (500.0, 2000.0), (2000.0, 4000.0),
                        (4000.0, 8000.0), (8000.0, 20000.0))
ANALYSIS_LOW_HZ: Final = 20.0  # centroid, roll-off and flatness look at 20 Hz .. min(20 kHz, Nyquist)
ANALYSIS_HIGH_HZ: Final = 20000.0
ROLLOFF_FRACTION: Final = 0.85  # the usual spectral roll-off point (Peeters 2004, CUIDADO)
FRAME_DURATION_S: Final = 0.085  # frame length is the next power of two above this: 4096 at 44.1/48 kHz
FLATNESS_FLOOR: Final = 1e-10  # power floor before the log (about -100 dB re a full-scale frame)
SILENT_FRAME_MS: Final = 1e-7  # frames whose mean square is below -70 dBFS are left out of per-frame means


def spectral_frame_length(sample_rate: int) -> int:
    """Frame length in samples: the next power of two above 85 ms (4096 at 44.1 and 48 kHz)."""
    return int(2 ** np.ceil(np.log2(sample_rate * FRAME_DURATION_S)))


def hann(length: int) -> np.ndarray:
    """Periodic Hann window, float32."""
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(length) / length)).astype(np.float32)


def frame_power(mono: np.ndarray, mono_start: int, k0: int, k1: int, frame_length: int) -> np.ndarray:
    """Power spectra of frames ``k0..k1-1`` of the mono downmix: float32 ``(frames, frame_length // 2 + 1)``.

    Args:
        mono: float32 ``(samples,)`` mono downmix, absolute position ``mono_start`` at index 0.
    """
    frames = frame_view(mono, mono_start, k0, k1, frame_length, frame_length)
    spectrum = kernels.rfft(frames * hann(frame_length), axis=1)
    power = spectrum.real**2
    power += spectrum.imag**2
    return power


def bin_frequencies(frame_length: int, sample_rate: int) -> np.ndarray:
    """Centre frequency (Hz) of each rfft bin."""
    return np.arange(frame_length // 2 + 1) * (sample_rate / frame_length)


def band_energies(ltas: np.ndarray, frame_length: int, sample_rate: int) -> np.ndarray:
    """Energy of the seven bands (float64, arbitrary but common unit) from a summed power spectrum."""
    freqs = bin_frequencies(frame_length, sample_rate)
    return np.array([ltas[(freqs >= lo) & (freqs < hi)].sum() for lo, hi in BAND_EDGES_HZ], dtype=np.float64)


def band_fractions(energies: np.ndarray) -> dict[str, float]:
    """The seven ``*_pct`` dimensions: fractions summing to 1; 1/7 each when there is no energy."""
    total = float(np.sum(energies))
    if not total > 0.0:
        return {name: 1.0 / len(BAND_NAMES) for name in BAND_NAMES}
    return {name: float(e / total) for name, e in zip(BAND_NAMES, energies, strict=True)}


def frame_mean_square(power: np.ndarray, frame_length: int) -> np.ndarray:
    """Mean square of the downmix in each frame (Parseval on the windowed rfft), float64 ``(frames,)``."""
    doubled = 2.0 * power.sum(axis=1, dtype=np.float64) - power[:, 0] - power[:, -1]
    window_energy = float(np.sum(hann(frame_length).astype(np.float64) ** 2))
    return doubled / frame_length / window_energy


def frame_flatness(power: np.ndarray, frame_length: int, sample_rate: int) -> np.ndarray:
    """Spectral flatness (geometric / arithmetic mean of power, 20 Hz .. 20 kHz) per frame, float64."""
    freqs = bin_frequencies(frame_length, sample_rate)
    sel = power[:, (freqs >= ANALYSIS_LOW_HZ) & (freqs < ANALYSIS_HIGH_HZ)] + np.float32(FLATNESS_FLOOR)
    if sel.shape[1] == 0:
        return np.zeros(power.shape[0])
    log_mean = np.log(sel).mean(axis=1, dtype=np.float64)
    arith = sel.mean(axis=1, dtype=np.float64)
    return np.exp(log_mean) / arith


def spectral_dimensions(
    ltas: np.ndarray, flatness: np.ndarray, frame_ms: np.ndarray, frame_length: int, sample_rate: int
) -> dict[str, float]:
    """``bass_mid_ratio``, ``spectral_centroid``, ``spectral_rolloff``, ``spectral_flatness`` of a whole track.

    Args:
        ltas: summed power spectrum of all frames (float64).
        flatness, frame_ms: per-frame flatness and mean square of every frame of the track.
    """
    freqs = bin_frequencies(frame_length, sample_rate)
    energies = band_energies(ltas, frame_length, sample_rate)
    low, mid = float(energies[0] + energies[1]), float(energies[2] + energies[3])
    if low + mid > 0.0:
        ratio_db = float(np.clip(10.0 * np.log10(max(low, 1e-300) / max(mid, 1e-300)), -60.0, 60.0))
    else:
        ratio_db = 0.0
    sel = (freqs >= ANALYSIS_LOW_HZ) & (freqs < ANALYSIS_HIGH_HZ)
    spectrum, f = ltas[sel], freqs[sel]
    total = float(spectrum.sum())
    if total > 0.0:
        centroid = float(np.dot(spectrum, f) / total)
        cumulative = np.cumsum(spectrum)
        rolloff = float(f[min(int(np.searchsorted(cumulative, ROLLOFF_FRACTION * cumulative[-1])), f.size - 1)])
    else:
        centroid = rolloff = 0.0
    loud = frame_ms >= SILENT_FRAME_MS
    flat = float(np.mean(flatness[loud])) if np.any(loud) else 0.0
    return {
        "bass_mid_ratio": ratio_db,
        "spectral_centroid": centroid,
        "spectral_rolloff": rolloff,
        "spectral_flatness": float(np.clip(flat, 0.0, 1.0)),
    }
