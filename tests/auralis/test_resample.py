"""The block resampler: position-pure (any split gives the same frames), one filter, measured as an engineer would.

The period-matrix path (BLAS products per block of periods) and the two-stage path (nearly coprime
rates: an exact 2/d stage, then a 16-tap interpolator read from a table) are both checked: chunks
computed on their own, at random cuts, are bit-identical to one pass; one pass of the period path
equals ``resample_poly`` with the same filter, and the two-stage path equals it on a signal inside
the passband (the two filters differ only in the transition band); a control that resamples each
chunk without its neighbours' frames must step at the cuts.

The filter's targets (docs/mastering.md, "Sample-rate conversion") are measured with sines through
the real resampler: passband gain and phase (and a sweep across the whole passband against the
same sweep computed at the output rate), aliasing (downsampling) and imaging (upsampling) below
-100 dB, exact DC gain. Each quality test runs the same measurement on ``resample_poly``'s default
filter (what the resampler used before) as a control that must fail it.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from scipy import signal

from auralis.resample import (
    MAX_MATRIX_ELEMENTS,
    TABLE_PHASES,
    BlockResampler,
    StreamResampler,
    design_filter,
    passband_edge_hz,
    resampler,
    stopband_edge_hz,
)

RATE_PAIRS = [(44_100, 48_000), (48_000, 44_100), (96_000, 44_100), (96_000, 48_000), (88_200, 44_100),
              (22_050, 44_100), (32_000, 44_100), (22_050, 48_000)]
# nearly coprime: periods of 11,025 and 44,100 output frames, too long for a period matrix
TWO_STAGE_PAIRS = [(44_056, 44_100), (44_100, 44_056), (96_001, 44_100)]

Resample = Callable[[np.ndarray], np.ndarray]


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


def _ours(in_rate: int, out_rate: int) -> Resample:
    r = resampler(in_rate, out_rate)
    return lambda x: _resample(r, x, [r.output_frames(len(x)) // 3])  # one cut: chunked, as the daemon does


def _old_default(in_rate: int, out_rate: int) -> Resample:
    """The control: ``resample_poly``'s default filter (Kaiser beta 5, 10 zero crossings a side)."""
    g = np.gcd(in_rate, out_rate)
    return lambda x: signal.resample_poly(x.astype(np.float64), out_rate // g, in_rate // g, axis=0)


def _assert_position_pure(r: BlockResampler, x: np.ndarray, whole: np.ndarray) -> None:
    """Random cuts, one-frame spans and a stream of random blocks all give ``whole`` bit for bit; the control steps."""
    n = r.output_frames(len(x))
    rng = np.random.default_rng(4)
    cuts = sorted(int(c) for c in rng.choice(np.arange(1, n), 25, replace=False))
    assert np.array_equal(_resample(r, x, cuts), whole)  # exactly: every frame is a function of its position
    assert np.array_equal(_resample(r, x, [1, 2, 3, n // 2]), whole)  # one-frame spans too
    # the streaming resampler (Snapcast, Opus paths) computes the same frames, bit for bit, whatever the blocks
    stream = StreamResampler(r.in_rate, r.out_rate)
    pieces, i = [], 0
    while i < len(x):
        step = int(rng.integers(1, 3000))
        pieces.append(stream.process(x[i : i + step]))
        i += step
    assert np.array_equal(np.concatenate([*pieces, stream.flush()]), whole)
    # the control: spans resampled without their neighbours' input frames step at the cuts
    assert np.max(np.abs(_resample(r, x, cuts, alone=True) - whole)) > 0.05
    # a stream releases an output frame as soon as every input frame it reads has arrived, not before
    head = StreamResampler(r.in_rate, r.out_rate).process(x[:1000])
    assert r.input_span(0, len(head))[1] <= 1000 < r.input_span(0, len(head) + 1)[1]


@pytest.mark.parametrize(("in_rate", "out_rate"), RATE_PAIRS)
def test_any_split_is_bit_identical_to_one_pass_and_equals_resample_poly(in_rate: int, out_rate: int) -> None:
    r = BlockResampler(in_rate, out_rate)
    assert r._matrix is not None and r._stage1 is None  # the usual rates take the period matrix
    x = np.random.default_rng(3).standard_normal((in_rate // 4, 2)).astype(np.float32)
    whole = _resample(r, x, [])
    reference = signal.resample_poly(x.astype(np.float64), r.up, r.down, axis=0, window=design_filter(in_rate, out_rate))
    assert whole.shape == reference.shape and whole.dtype == np.float32
    assert np.max(np.abs(whole - reference)) < 5e-6
    _assert_position_pure(r, x, whole)


@pytest.mark.parametrize(("in_rate", "out_rate"), TWO_STAGE_PAIRS)
def test_the_two_stage_path_is_position_pure_and_equals_the_exact_filter_in_the_passband(
    in_rate: int, out_rate: int
) -> None:
    r = BlockResampler(in_rate, out_rate)
    assert r._matrix is None and r._stage1 is not None and r._stage1._matrix is not None
    assert r._table.shape[0] == TABLE_PHASES + 1 and r._table.shape[1] <= 16  # 2K taps per output frame
    assert np.allclose(r._table.sum(axis=1), 1.0, atol=1e-6)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((in_rate // 4, 2)).astype(np.float32)
    whole = _resample(r, x, [])
    assert whole.shape == (r.output_frames(len(x)), 2) and whole.dtype == np.float32
    _assert_position_pure(r, x, whole)
    if r.up > 20_000:
        return  # resample_poly's filter for 44,100/96,001 would be 29 M taps: the sine tests cover this pair
    # Inside the passband the two designs agree (each is flat within 3e-6): noise low-passed to 0.85 x Nyquist
    sos = signal.ellip(12, 0.01, 120, 0.85 * min(in_rate, out_rate) / 2, fs=in_rate, output="sos")
    band = signal.sosfilt(sos, rng.standard_normal((in_rate // 2, 2)), axis=0).astype(np.float32)
    ours = _resample(r, band, [r.output_frames(len(band)) // 3])[1000:-1000]
    exact = signal.resample_poly(band.astype(np.float64), r.up, r.down, axis=0,
                                 window=design_filter(in_rate, out_rate))[1000:-1000]
    error_db = 10 * np.log10(np.mean((ours - exact) ** 2) / np.mean(exact**2))
    assert error_db < -100.0  # measured -105 dB


def test_the_period_matrix_is_used_for_the_usual_rates_and_stays_small() -> None:
    for in_rate, out_rate in RATE_PAIRS:
        r = BlockResampler(in_rate, out_rate)
        assert r._matrix is not None and r._matrix.size <= MAX_MATRIX_ELEMENTS
        periods = r._matrix.shape[1] // r.up  # cycles of the ratio per matrix column block
        assert np.count_nonzero(r._matrix) == periods * (r.up * r.taps - np.count_nonzero(r._bank32 == 0))
        # only the wanted output frames are computed: a row of the matrix per period, never the zero-stuffed signal
        assert r._matrix.shape[0] <= r._matrix.shape[1] * r.down // r.up + r.taps
        # the sub-blocks (the products actually run) hold every tap, and read less than the whole width
        assert sum(np.count_nonzero(m) for *_, m in r._sub_blocks) == np.count_nonzero(r._matrix)
        assert sum(m.size for *_, m in r._sub_blocks) <= r._matrix.size


def test_the_filter_is_linear_phase_and_long_enough_for_its_targets() -> None:
    h = design_filter(48_000, 44_100)
    assert h.size % 2 == 1 and np.array_equal(h, h[::-1])  # symmetric, odd: linear phase, whole-sample delay
    assert not h.flags.writeable and design_filter(48_000, 44_100) is h  # designed once per rate pair
    assert (passband_edge_hz(48_000, 44_100), stopband_edge_hz(48_000, 44_100)) == (20_000.0, 22_050.0)
    assert (passband_edge_hz(44_100, 48_000), stopband_edge_hz(44_100, 48_000)) == (20_000.0, 22_050.0)
    assert passband_edge_hz(96_000, 48_000) == pytest.approx(21_600.0)  # 0.9 x Nyquist where that is more
    assert passband_edge_hz(22_050, 44_100) == pytest.approx(10_025.0)  # Nyquist - 1 kHz, above 0.9 x Nyquist
    r = resampler(48_000, 44_100)
    assert 150 <= r.taps <= 180  # ~165 multiply-adds per output frame (resample_poly's default: 22)


def _spurious_db(resample: Resample, in_rate: int, out_rate: int, freq_hz: float) -> tuple[float, float, float]:
    """A 0 dBFS sine at ``freq_hz`` through ``resample``: (gain dB, phase error rad, everything else dB re the sine).

    Measured in the middle half of one second of output (clear of the start and end transients); the
    tone (if it is below the output Nyquist) is fitted at ``freq_hz`` on the output's own time axis,
    so a delay shows as a phase error, and "everything else" is the residual: aliases and images.
    """
    t = np.arange(in_rate) / in_rate
    x = np.repeat(np.sin(2 * np.pi * freq_hz * t).astype(np.float32)[:, None], 2, axis=1)
    y = resample(x)[:, 0].astype(np.float64)
    k = np.arange(y.size)[y.size // 4 : 3 * y.size // 4]
    y = y[k]
    gain_db = phase = -np.inf
    if freq_hz < out_rate / 2:
        basis = np.stack([np.sin(2 * np.pi * freq_hz * k / out_rate), np.cos(2 * np.pi * freq_hz * k / out_rate)], 1)
        coef = np.linalg.lstsq(basis, y, rcond=None)[0]
        y = y - basis @ coef
        gain_db, phase = 20 * np.log10(np.hypot(*coef)), float(np.arctan2(coef[1], coef[0]))
    return float(gain_db), phase, float(10 * np.log10(np.mean(y * y) / 0.5 + 1e-30))


PASSBAND = [(48_000, 44_100, [1_000.0, 10_000.0, 18_000.0, 20_000.0]),
            (44_056, 44_100, [1_000.0, 10_000.0, 18_000.0, 20_000.0]),  # the two-stage path
            (44_100, 44_056, [1_000.0, 20_000.0]),
            (44_100, 48_000, [1_000.0, 10_000.0, 18_000.0, 20_000.0]),
            (96_000, 44_100, [1_000.0, 20_000.0]),
            (88_200, 44_100, [1_000.0, 20_000.0]),
            (96_000, 48_000, [1_000.0, 20_000.0, 21_600.0]),
            (22_050, 44_100, [1_000.0, 10_000.0]),
            (32_000, 44_100, [1_000.0, 10_000.0, 15_000.0])]


@pytest.mark.parametrize(("in_rate", "out_rate", "freqs"), PASSBAND)
def test_passband_is_flat_to_a_thousandth_of_a_db_and_in_phase(in_rate: int, out_rate: int, freqs: list[float]) -> None:
    for freq in freqs:
        gain_db, phase, _ = _spurious_db(_ours(in_rate, out_rate), in_rate, out_rate, freq)
        assert abs(gain_db) < 0.001, freq  # measured <= 3.2e-5 dB (the target: +-0.05 dB)
        assert abs(phase) < 1e-6, freq  # no delay: output time equals input time
    # the control: the old filter fails at the top of the band (48 -> 44.1 kHz: -0.83 dB at 20 kHz)
    assert abs(_spurious_db(_old_default(in_rate, out_rate), in_rate, out_rate, freqs[-1])[0]) > 0.001


ALIASING = [(48_000, 44_100, [22_100.0, 23_500.0, 23_990.0]),
            (96_000, 44_100, [22_100.0, 23_500.0, 30_000.0, 47_000.0]),
            (88_200, 44_100, [22_100.0, 30_000.0, 44_000.0]),
            (96_000, 48_000, [24_050.0, 30_000.0, 47_000.0]),
            (44_100, 44_056, [22_040.0, 22_049.0])]  # the two-stage path: 22,028-22,050 Hz must not fold back


@pytest.mark.parametrize(("in_rate", "out_rate", "freqs"), ALIASING)
def test_downsampling_aliases_stay_below_minus_100_db(in_rate: int, out_rate: int, freqs: list[float]) -> None:
    for freq in freqs:  # above the output Nyquist: everything that comes out is an alias
        assert _spurious_db(_ours(in_rate, out_rate), in_rate, out_rate, freq)[2] < -100.0, freq  # measured <= -110
    # the control: the old filter lets 23.5 kHz alias down to 20.6 kHz at -14.6 dB, 50 Hz above Nyquist at -6 dB
    assert _spurious_db(_old_default(in_rate, out_rate), in_rate, out_rate, freqs[0])[2] > -100.0


IMAGING = [(44_100, 48_000, [1_000.0, 15_000.0, 20_000.0]),  # 20 kHz images at 24.1 and 64.1 kHz: 23.9 / 16.1 kHz
           (44_056, 44_100, [1_000.0, 15_000.0, 20_000.0]),  # the two-stage path
           (22_050, 44_100, [1_000.0, 9_000.0, 10_000.0]),  # 10 kHz images at 12.05 kHz
           (32_000, 44_100, [1_000.0, 14_000.0, 15_000.0]),  # 15 kHz images at 17 kHz
           (22_050, 48_000, [5_000.0, 10_000.0])]


@pytest.mark.parametrize(("in_rate", "out_rate", "freqs"), IMAGING)
def test_upsampling_images_stay_below_minus_100_db(in_rate: int, out_rate: int, freqs: list[float]) -> None:
    for freq in freqs:  # the tone itself is fitted out: what is left is images (and rounding)
        assert _spurious_db(_ours(in_rate, out_rate), in_rate, out_rate, freq)[2] < -100.0, freq  # measured <= -110
    assert _spurious_db(_old_default(in_rate, out_rate), in_rate, out_rate, freqs[-1])[2] > -100.0  # the control


def test_aliasing_of_a_23_5_khz_tone_from_48_to_44_1_khz_measured_at_its_alias() -> None:
    """The defect this filter fixes, at the frequency it lands on: 23.5 kHz folds to 20.6 kHz."""
    in_rate, out_rate = 48_000, 44_100

    def alias_db(resample: Resample) -> float:
        t = np.arange(in_rate) / in_rate
        x = np.repeat(np.sin(2 * np.pi * 23_500.0 * t).astype(np.float32)[:, None], 2, axis=1)
        y = resample(x)[out_rate // 4 : 3 * out_rate // 4, 0].astype(np.float64)
        k = np.arange(y.size)
        probe = np.exp(-2j * np.pi * (out_rate - 23_500.0) * k / out_rate)
        return float(20 * np.log10(2 * np.abs(np.mean(y * probe)) + 1e-30))

    assert alias_db(_ours(in_rate, out_rate)) < -100.0  # measured about -119 dB
    assert alias_db(_old_default(in_rate, out_rate)) > -20.0  # the old filter: -14.6 dB, audible


@pytest.mark.parametrize(("in_rate", "out_rate"), [*RATE_PAIRS, (44_056, 44_100)])
def test_dc_passes_with_unit_gain_on_every_output_frame(in_rate: int, out_rate: int) -> None:
    x = np.full((in_rate // 4, 2), 0.5, dtype=np.float32)
    r = resampler(in_rate, out_rate)
    y = _resample(r, x, [])
    inner = slice(2 * r.taps, y.shape[0] - 2 * r.taps)  # clear of the start and the end of the signal
    assert np.max(np.abs(y[inner] - 0.5)) < 1e-6  # float32 rounding only: each phase sums to exactly 1
    if r.up > 1:  # the control (where there are phases): resample_poly's per-phase gains differ by up to 7e-4
        old = _old_default(in_rate, out_rate)(x)
        assert np.max(np.abs(old[inner] - 0.5)) > 5e-6


@pytest.mark.parametrize(("in_rate", "out_rate"), [(48_000, 44_100), (44_100, 48_000), (96_000, 44_100),
                                                   (22_050, 44_100), (32_000, 44_100), (44_056, 44_100)])
def test_a_chirp_through_the_passband_comes_out_as_the_same_chirp_at_the_new_rate(in_rate: int, out_rate: int) -> None:
    """Every frequency of the passband, not just a few: a sweep from its top edge down to 20 Hz in 2 s,
    compared sample by sample with the same sweep computed at the output rate (gain, phase and delay at once)."""
    top = passband_edge_hz(in_rate, out_rate)
    sweep = {"f0": top, "t1": 2.0, "f1": 20.0, "method": "linear"}
    x = signal.chirp(np.arange(2 * in_rate) / in_rate, **sweep).astype(np.float32)
    want = signal.chirp(np.arange(2 * out_rate) / out_rate, **sweep)
    edge, window = out_rate // 50, out_rate // 100  # clear of the onset and the end; 10 ms windows

    def worst_error_db(resample: Resample) -> float:
        y = resample(np.repeat(x[:, None], 2, axis=1))[:, 0].astype(np.float64)
        err = (y - want)[edge:-edge]
        n = err.size // window
        return float(10 * np.log10(np.max(np.mean(err[: n * window].reshape(n, window) ** 2, axis=1)) / 0.5))

    assert worst_error_db(_ours(in_rate, out_rate)) < -100.0  # measured -113 to -117 dB
    assert worst_error_db(_old_default(in_rate, out_rate)) > -40.0  # the control: -21 to -24 dB at the top
