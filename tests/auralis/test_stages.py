"""The chain's stages one by one: envelope helpers, DC removal, EQ, compressor, expander, limiter."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from auralis.render import PREROLL_S
from auralis.stages import (
    EQ_BANDS,
    apply_eq,
    chain_sos,
    compress,
    dc_blocker_sos,
    eq_response_db,
    eq_settling_frames,
    eq_sos,
    expand_transients,
    limit_true_peak,
)
from auralis.stages.blocks import BLOCK_FRAMES, moving_average, sliding_max, sliding_min, upsample_blocks
from auralis.stages.limiter import block_true_peaks
from auralis.synth import loudness_war, make_music

SR = 44_100


def cf(x: np.ndarray) -> np.ndarray:
    """(frames, channels) -> contiguous float64 (channels, frames), frames trimmed to the block grid."""
    n = x.shape[0] - x.shape[0] % BLOCK_FRAMES
    return np.ascontiguousarray(np.asarray(x[:n], dtype=np.float64).T)


def tp8_db(x_cf: np.ndarray) -> float:
    up = signal.resample_poly(x_cf, 8, 1, axis=1)
    return float(20 * np.log10(np.max(np.abs(up))))


def crest_db(x_cf: np.ndarray) -> float:
    return float(20 * np.log10(np.max(np.abs(x_cf)) / np.sqrt(np.mean(x_cf**2))))


def test_sliding_windows_match_brute_force() -> None:
    rng = np.random.default_rng(0)
    v = rng.standard_normal(200)
    for back, ahead in ((0, 0), (3, 1), (1, 5), (7, 7), (0, 9)):
        lo = [v[max(0, i - back) : i + ahead + 1] for i in range(v.size)]
        np.testing.assert_array_equal(sliding_min(v, back, ahead), [w.min() for w in lo])
        np.testing.assert_array_equal(sliding_max(v, back, ahead), [w.max() for w in lo])
    avg = moving_average(v, 4)
    np.testing.assert_allclose(avg[10:-10], [v[i - 4 : i + 5].mean() for i in range(10, 190)], atol=1e-12)


def test_upsample_is_a_convex_interpolation() -> None:
    v = np.array([1.0, 0.5, 0.5, 0.9, 0.2])
    up = upsample_blocks(v)
    assert up.shape == (v.size * BLOCK_FRAMES,)
    assert up[0] == 1.0 and up[BLOCK_FRAMES] == 0.5
    for b in range(v.size):
        block = up[b * BLOCK_FRAMES : (b + 1) * BLOCK_FRAMES]
        nxt = v[min(b + 1, v.size - 1)]
        assert np.all(block >= min(v[b], nxt) - 1e-15) and np.all(block <= max(v[b], nxt) + 1e-15)
    np.testing.assert_array_equal(upsample_blocks(np.zeros(4)), 0.0)  # exact zero stays exact


def test_dc_blocker_removes_offset_and_keeps_music() -> None:
    t = np.arange(SR * 3) / SR
    tone = 0.3 * np.sin(2 * np.pi * 40.0 * t)
    x = cf(np.stack([tone + 0.2, tone - 0.1], axis=1))
    y = apply_eq(x, dc_blocker_sos(1.0, SR))
    core = slice(SR, None)  # after the blocker's settling time
    np.testing.assert_allclose(y[:, core].mean(axis=1), 0.0, atol=1e-4)
    gain_db = 20 * np.log10(np.std(y[:, core], axis=1) / np.std(x[:, core] - x[:, core].mean(axis=1, keepdims=True), axis=1))
    assert np.all(np.abs(gain_db) < 0.1)  # a 40 Hz tone passes (< 0.1 dB)
    assert dc_blocker_sos(0.0, SR).shape == (0, 6)  # depth 0: off
    half = apply_eq(x, dc_blocker_sos(0.5, SR))
    np.testing.assert_allclose(half[:, core].mean(axis=1), [0.1, -0.05], atol=1e-3)
    # the DC blocker, the EQ bands and the static gain form one cascade; flat and 0 dB is no cascade at all
    assert chain_sos(0.0, (0.0,) * 4, SR).shape == (0, 6)
    assert chain_sos(1.0, (1.0, 0.0, 0.0, 2.0), SR, 3.0).shape == (3, 6)
    assert eq_settling_frames(dc_blocker_sos(1.0, SR)) < 0.6 * PREROLL_S * SR


def test_eq_response_and_settling() -> None:
    gains = (2.0, -1.5, 3.0, -2.0)
    freqs = np.array([20.0, 350.0, 4000.0, 20000.0])
    resp = eq_response_db(gains, freqs, 48_000)
    assert resp[0] == pytest.approx(2.0, abs=0.3)  # low shelf plateau
    assert resp[1] == pytest.approx(-1.5, abs=0.3)  # bell centre
    assert resp[2] == pytest.approx(3.0, abs=0.3)
    assert resp[3] == pytest.approx(-2.0, abs=0.3)  # high shelf plateau
    assert eq_sos((0.0, 0.0, 0.0, 0.0), SR).shape == (0, 6)
    x = cf(make_music(1.0, SR, seed=1))
    assert apply_eq(x, eq_sos((0.0,) * 4, SR)) is x  # flat: exact bypass
    for sample_rate in (8_000, 44_100, 192_000):
        sos = eq_sos((6.0, -6.0, 6.0, -6.0), sample_rate)
        assert sos.shape == (len(EQ_BANDS), 6)
        assert 0 < eq_settling_frames(sos) < 0.3 * PREROLL_S * sample_rate
        full = chain_sos(1.0, (6.0, -6.0, 6.0, -6.0), sample_rate)
        h_full = signal.sosfilt(full, np.r_[1.0, np.zeros(eq_settling_frames(full) + 10)])
        assert np.max(np.abs(h_full[eq_settling_frames(full) :])) < 1e-5
        # the impulse response really has decayed by 100 dB at the settling time
        h = signal.sosfilt(sos, np.r_[1.0, np.zeros(eq_settling_frames(sos) + 10)])
        assert np.max(np.abs(h[eq_settling_frames(sos) :])) < 1e-5


def test_compressor_reduces_loud_passages_only() -> None:
    quiet = 0.05 * np.sin(2 * np.pi * 200 * np.arange(SR) / SR)
    loud = 0.8 * np.sin(2 * np.pi * 200 * np.arange(SR) / SR)
    x = cf(np.repeat(np.r_[quiet, loud, quiet][:, None], 2, axis=1))
    y, gr = compress(x, SR, threshold_dbfs=-20.0, ratio=4.0, attack_ms=10.0, release_ms=100.0)
    assert gr > 6.0
    q = slice(SR // 4, 3 * SR // 4)
    lo = slice(SR + SR // 4, SR + 3 * SR // 4)
    np.testing.assert_allclose(y[:, q], x[:, q], rtol=1e-9)  # below threshold: untouched
    level_in = 20 * np.log10(np.sqrt(np.mean(x[:, lo] ** 2)))
    level_out = 20 * np.log10(np.sqrt(np.mean(y[:, lo] ** 2)))
    # -4.9 dB RMS, 15 dB above threshold at 4:1 -> about 11 dB reduction (soft knee)
    assert level_in - level_out == pytest.approx(15.1 * 0.75, abs=0.7)
    same, gr1 = compress(x, SR, threshold_dbfs=-20.0, ratio=1.0, attack_ms=10.0, release_ms=100.0)
    assert same is x and gr1 == 0.0


def test_expander_restores_transients_of_a_crushed_master() -> None:
    x = cf(loudness_war(make_music(6.0, SR, seed=2)))
    y, boost = expand_transients(x, SR, 0.45)
    assert 2.0 < boost <= 9.0
    assert crest_db(y) > crest_db(x) + 2.0
    # envelope-based: steady tones are left alone (no waveshaping)
    tone = cf(np.repeat(0.5 * np.sin(2 * np.pi * 440 * np.arange(SR * 2) / SR)[:, None], 2, axis=1))
    out, _ = expand_transients(tone, SR, 0.5)
    core = slice(SR // 2, -SR // 2)  # away from the window edges (the renderer's pre-roll covers those)
    np.testing.assert_allclose(out[:, core], tone[:, core], rtol=0.02)  # < 0.2 dB


def test_limiter_holds_the_true_peak_ceiling() -> None:
    x = cf(make_music(5.0, SR, seed=7)) * 10 ** (8.0 / 20)  # +7 dBFS float
    for ceiling in (-1.0, -3.0):
        y, gr = limit_true_peak(x, SR, ceiling)
        assert tp8_db(y) <= ceiling
        assert gr > 6.0
    # the detector sees between samples: a full-scale fs/4 sine at 45 degrees peaks 3 dB above its samples
    t = np.arange(SR) / SR
    fs4 = cf(np.repeat(np.sin(2 * np.pi * SR / 4 * t + np.pi / 4)[:, None], 2, axis=1))  # true peak 0 dBTP
    assert 20 * np.log10(np.max(np.abs(fs4))) < -2.9  # samples at -3 dBFS: a sample-peak limiter would not act
    y, gr = limit_true_peak(fs4, SR, -1.0)
    assert gr > 0.5 and tp8_db(y) <= -1.0


def test_limiter_is_exact_identity_below_ceiling_and_local_above() -> None:
    x = cf(make_music(4.0, SR, seed=9)) * 10 ** (-3.0 / 20)
    y, gr = limit_true_peak(x, SR, -1.0)
    assert y is x and gr == 0.0
    spike = x.copy()
    spike[:, SR] = 1.5  # one hot sample
    y, gr = limit_true_peak(spike, SR, -1.0)
    assert gr > 3.0
    changed = np.flatnonzero(np.any(y != spike, axis=0))
    assert changed.min() > SR - 0.01 * SR and changed.max() < SR + 0.05 * SR  # attack < 10 ms, release < 50 ms
    np.testing.assert_array_equal(y[:, : SR - SR // 100], spike[:, : SR - SR // 100])


def test_true_peak_detector_matches_a_reference() -> None:
    for x in (make_music(4.0, SR, seed=3), loudness_war(make_music(4.0, SR, seed=3))):
        xc = cf(x)
        detected = 20 * np.log10(block_true_peaks(xc, 0.0).max())
        assert detected == pytest.approx(tp8_db(xc), abs=0.05)
