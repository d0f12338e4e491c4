"""auralis.kernels reaches into scipy's compiled modules to avoid scipy's import cost.

These tests pin it to scipy's public API, bit for bit, so a scipy upgrade that changes a
private signature or a numerical detail fails here, loudly, instead of shifting numbers.
"""

import numpy as np
import pytest
from scipy import fft as sp_fft
from scipy import ndimage, signal

from auralis import kernels


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def test_native_kernels_are_in_use():
    # The fallback keeps results right but loses the start-up win; CI should notice that too.
    assert kernels._native() is not None


def test_sosfilt_matches_scipy(rng):
    sos = signal.butter(4, [200, 4000], btype="band", fs=44100, output="sos")
    x = rng.standard_normal((2, 10_001))
    np.testing.assert_array_equal(kernels.sosfilt(sos, x), signal.sosfilt(sos, x, axis=-1))


def test_lfilter_with_state_matches_scipy(rng):
    b, a = signal.butter(2, 0.1)
    x = rng.standard_normal((3, 5000))
    zi = rng.standard_normal((3, 2))
    y1, z1 = kernels.lfilter(b, a, x, axis=1, zi=zi)
    y2, z2 = signal.lfilter(b, a, x, axis=1, zi=zi)
    np.testing.assert_array_equal(y1, y2)
    np.testing.assert_array_equal(z1, z2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [None, 1000, 4096])
def test_rfft_irfft_match_scipy(rng, dtype, n):
    x = rng.standard_normal((4, 2048)).astype(dtype)
    spec = kernels.rfft(x, n=n, axis=-1)
    np.testing.assert_array_equal(spec, sp_fft.rfft(x, n=n, axis=-1, workers=1))
    np.testing.assert_array_equal(kernels.irfft(spec, n=n, axis=-1), sp_fft.irfft(spec, n=n, axis=-1, workers=1))


def test_next_fast_len_matches_scipy():
    for target in (1, 7, 1000, 4097, 44_100, 123_457):
        assert kernels.next_fast_len(target) == sp_fft.next_fast_len(target)


def test_sos2tf_and_freqz_match_scipy():
    sos = signal.butter(3, 1000, fs=48000, output="sos")
    b1, a1 = kernels.sos2tf(sos)
    b2, a2 = signal.sos2tf(sos)
    np.testing.assert_allclose(b1, b2, rtol=1e-14, atol=1e-18)
    np.testing.assert_allclose(a1, a2, rtol=1e-14)
    freqs = np.array([20.0, 100.0, 1000.0, 10_000.0])
    np.testing.assert_allclose(kernels.freqz_sos(sos, freqs, 48000), signal.freqz_sos(sos, worN=freqs, fs=48000)[1], rtol=1e-12)


@pytest.mark.parametrize("back,ahead", [(0, 0), (3, 0), (0, 5), (7, 2), (100, 100)])
def test_sliding_extremes_match_ndimage(rng, back, ahead):
    v = rng.standard_normal(1001)
    size = back + ahead + 1
    # ndimage centres the window at size // 2; origin shifts it so it spans [b - back, b + ahead].
    origin = back - size // 2
    expect_max = ndimage.maximum_filter1d(v, size, mode="nearest", origin=origin)
    expect_min = ndimage.minimum_filter1d(v, size, mode="nearest", origin=origin)
    np.testing.assert_array_equal(kernels.sliding_max(v, back, ahead), expect_max)
    np.testing.assert_array_equal(kernels.sliding_min(v, back, ahead), expect_min)
