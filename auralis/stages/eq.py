"""Four-band mastering EQ: RBJ biquads (low shelf, two bells, high shelf) run by ``sosfilt``.

Bands (fixed frequencies; the plan sets their gains in dB):

====  ===========  ==========  ====  =========================================
band  type         frequency   Q     fingerprint bands it moves
====  ===========  ==========  ====  =========================================
0     low shelf    100 Hz      0.71  sub_bass, bass (20-250 Hz)
1     bell         350 Hz      1.0   low_mid (250-500 Hz)
2     bell         4000 Hz     0.7   upper_mid, presence (2-8 kHz)
3     high shelf   10000 Hz    0.71  air (8-20 kHz)
====  ===========  ==========  ====  =========================================

Biquad formulas: R. Bristow-Johnson, "Cookbook formulae for audio EQ biquad filter
coefficients". A band at 0 dB is left out (exact bypass). The filters are IIR; the renderer
starts them (with the DC blocker, :func:`chain_sos`) from zero state in its pre-roll, which is
longer than their settling time to -100 dB (:func:`eq_settling_frames`).
"""

from __future__ import annotations

from typing import Final

import numpy as np

from .. import kernels
from .dc import dc_blocker_sos

# (kind, frequency Hz, Q)
EQ_BANDS: Final = (
    ("low_shelf", 100.0, 0.7071),
    ("bell", 350.0, 1.0),
    ("bell", 4000.0, 0.7),
    ("high_shelf", 10000.0, 0.7071),
)
_MIN_GAIN_DB: Final = 1e-4  # a band below this is bypassed
_SETTLE_DB: Final = -100.0  # settling criterion for the renderer's pre-roll


def _biquad(kind: str, freq_hz: float, q: float, gain_db: float, sample_rate: int) -> np.ndarray:
    freq_hz = min(freq_hz, 0.45 * sample_rate)
    a = 10.0 ** (gain_db / 40.0)
    w0 = 2.0 * np.pi * freq_hz / sample_rate
    cw, sw = np.cos(w0), np.sin(w0)
    alpha = sw / (2.0 * q)
    if kind == "bell":
        b = [1 + alpha * a, -2 * cw, 1 - alpha * a]
        den = [1 + alpha / a, -2 * cw, 1 - alpha / a]
    elif kind == "low_shelf":
        sa = 2 * np.sqrt(a) * alpha
        b = [a * ((a + 1) - (a - 1) * cw + sa), 2 * a * ((a - 1) - (a + 1) * cw), a * ((a + 1) - (a - 1) * cw - sa)]
        den = [(a + 1) + (a - 1) * cw + sa, -2 * ((a - 1) + (a + 1) * cw), (a + 1) + (a - 1) * cw - sa]
    elif kind == "high_shelf":
        sa = 2 * np.sqrt(a) * alpha
        b = [a * ((a + 1) + (a - 1) * cw + sa), -2 * a * ((a - 1) + (a + 1) * cw), a * ((a + 1) + (a - 1) * cw - sa)]
        den = [(a + 1) - (a - 1) * cw + sa, 2 * ((a - 1) - (a + 1) * cw), (a + 1) - (a - 1) * cw - sa]
    else:  # pragma: no cover - EQ_BANDS is a constant
        raise ValueError(kind)
    return np.concatenate([np.asarray(b) / den[0], np.asarray(den) / den[0]])


def eq_sos(gains_db: tuple[float, ...], sample_rate: int) -> np.ndarray:
    """Second-order sections ``(k, 6)`` for the bands whose gain is not 0 dB (``k`` may be 0)."""
    rows = [
        _biquad(kind, freq, q, gain, sample_rate)
        for (kind, freq, q), gain in zip(EQ_BANDS, gains_db, strict=True)
        if abs(gain) >= _MIN_GAIN_DB
    ]
    return np.array(rows, dtype=np.float64).reshape(-1, 6)


def chain_sos(dc_depth: float, gains_db: tuple[float, ...], sample_rate: int, gain_db: float = 0.0) -> np.ndarray:
    """The linear part of the chain as one cascade: DC blocker, the EQ bands, and a static gain.

    The static gain rides on the first section's numerator (free). ``(0, 6)`` when the cascade is
    the identity; a lone gain becomes a pass-through section.
    """
    sos = np.concatenate([dc_blocker_sos(dc_depth, sample_rate), eq_sos(gains_db, sample_rate)])
    if gain_db != 0.0:
        if sos.shape[0] == 0:
            sos = np.array([[1.0, 0.0, 0.0, 1.0, 0.0, 0.0]])
        sos[0, :3] *= 10.0 ** (gain_db / 20.0)
    return sos


def apply_eq(x: np.ndarray, sos: np.ndarray) -> np.ndarray:
    """Filter float64 ``(channels, frames)`` through ``sos`` from zero state (no-op when there are no sections)."""
    if sos.shape[0] == 0:
        return x
    return kernels.sosfilt(sos, x)


def eq_settling_frames(sos: np.ndarray) -> int:
    """Frames after which the filter's zero-state start transient has decayed by 100 dB (or more).

    Uses the slowest pole radius r: ``n = log(10^(-100/20) / 100) / log(r)``, with a factor 100
    (40 dB) of headroom for the transient's initial amplitude.
    """
    if sos.shape[0] == 0:
        return 0
    radius = max(float(np.max(np.abs(np.roots(row[3:])))) for row in sos)
    if radius <= 0.0:
        return 2
    return int(np.ceil(np.log(10 ** (_SETTLE_DB / 20) / 100.0) / np.log(radius)))


def eq_response_db(gains_db: tuple[float, ...], freqs_hz: np.ndarray, sample_rate: int = 48_000) -> np.ndarray:
    """Magnitude response in dB of the EQ at ``freqs_hz`` (used by the plan to predict loudness changes)."""
    sos = eq_sos(gains_db, sample_rate)
    freqs_hz = np.asarray(freqs_hz, dtype=np.float64)
    if sos.shape[0] == 0:
        return np.zeros_like(freqs_hz)
    h = kernels.freqz_sos(sos, freqs_hz, sample_rate)
    return 20.0 * np.log10(np.maximum(np.abs(h), 1e-12))
