"""The block resampler: position-pure (any split gives the same frames), equal to resample_poly, same filter.

The period-matrix path (one BLAS product per block of periods) and the direct tap loop (nearly
coprime rates) are both checked: chunks computed on their own, at random cuts, are bit-identical
to one pass; a control that resamples each chunk without its neighbours' frames must step at the
cuts. The filter's passband ripple and stopband attenuation are those of ``resample_poly``'s
default design, measured through the resampler with sines.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from auralis.resample import MAX_MATRIX_ELEMENTS, BlockResampler

RATE_PAIRS = [(44_100, 48_000), (48_000, 44_100), (96_000, 44_100), (22_050, 48_000)]


def _resample(r: BlockResampler, x: np.ndarray, cuts: list[int], *, alone: bool = False) -> np.ndarray:
    """Output frames [0, n) computed span by span between ``cuts``; ``alone``: each span sees only its own input."""
    n = r.output_frames(len(x))
    edges = [0, *cuts, n]
    out = []
    for start, stop in zip(edges[:-1], edges[1:], strict=True):
        lo, hi = r.input_span(start, stop)
        span = np.zeros((hi - lo, x.shape[1]), dtype=np.float32)
        a, b = max(lo, 0), min(hi, len(x))
        if alone:  # the control: only the input frames "belonging" to this output span
            a = max(a, start * r.down // r.up)
            b = min(b, stop * r.down // r.up)
        span[a - lo : b - lo] = x[a:b]
        out.append(r.process(span, start, stop))
    return np.concatenate(out)


@pytest.mark.parametrize(("in_rate", "out_rate"), [*RATE_PAIRS, (44_056, 44_100)])
def test_any_split_is_bit_identical_to_one_pass_and_equals_resample_poly(in_rate: int, out_rate: int) -> None:
    r = BlockResampler(in_rate, out_rate)
    assert (r._matrix is None) == (in_rate == 44_056)  # the nearly coprime pair takes the tap loop
    x = np.random.default_rng(3).standard_normal((in_rate // 2, 2)).astype(np.float32)
    n = r.output_frames(len(x))
    whole = _resample(r, x, [])
    reference = signal.resample_poly(x.astype(np.float64), r.up, r.down, axis=0)
    assert whole.shape == reference.shape and whole.dtype == np.float32
    assert np.max(np.abs(whole - reference)) < 5e-6
    rng = np.random.default_rng(4)
    cuts = sorted(int(c) for c in rng.choice(np.arange(1, n), 25, replace=False))
    assert np.array_equal(_resample(r, x, cuts), whole)  # exactly: every frame is a function of its position
    assert np.array_equal(_resample(r, x, [1, 2, 3, n // 2]), whole)  # one-frame spans too
    # the control: spans resampled without their neighbours' input frames step at the cuts
    assert np.max(np.abs(_resample(r, x, cuts, alone=True) - whole)) > 0.05


def test_the_period_matrix_is_used_for_the_usual_rates_and_stays_small() -> None:
    for in_rate, out_rate in RATE_PAIRS:
        r = BlockResampler(in_rate, out_rate)
        assert r._matrix is not None and r._matrix.size <= MAX_MATRIX_ELEMENTS
        assert np.count_nonzero(r._matrix) == r.up * r.taps - np.count_nonzero(r._bank32 == 0)


def _level_db(r: BlockResampler, freq_hz: float) -> float:
    """Steady-state level (dB re the input sine) of a sine at ``freq_hz`` through ``r``, aliases included."""
    t = np.arange(r.in_rate) / r.in_rate
    x = np.repeat(np.sin(2 * np.pi * freq_hz * t).astype(np.float32)[:, None], 2, axis=1)
    y = _resample(r, x, [r.output_frames(len(x)) // 3])[r.out_rate // 4 : -r.out_rate // 4, 0].astype(np.float64)
    return float(20 * np.log10(np.sqrt(2 * np.mean(y * y)) + 1e-15))


@pytest.mark.parametrize(("in_rate", "out_rate"), RATE_PAIRS[:3])
def test_filter_quality_is_resample_polys_passband_ripple_and_stopband(in_rate: int, out_rate: int) -> None:
    r = BlockResampler(in_rate, out_rate)
    nyquist = min(in_rate, out_rate) / 2
    passband = [_level_db(r, f) for f in (20.0, 100.0, 1_000.0, 5_000.0, 10_000.0, 15_000.0, 0.8 * nyquist)]
    assert max(abs(v) for v in passband) < 0.03  # measured 0.021 dB (Kaiser beta 5, 10 zero crossings a side)
    if in_rate > out_rate:  # what would alias: attenuated as the design attenuates it
        assert _level_db(r, 1.05 * nyquist) < -10.0  # measured -12.2 dB (the transition band)
        if in_rate / 2 > 1.2 * nyquist:
            assert _level_db(r, 1.2 * nyquist) < -50.0  # measured -55.2 dB
            assert _level_db(r, 1.5 * nyquist) < -65.0  # measured -69.7 dB
