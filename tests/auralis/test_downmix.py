"""Channel layouts: each channel lands in the documented side with the BS.775 coefficient."""

from __future__ import annotations

import numpy as np
import pytest

from auralis.downmix import LAYOUTS, channel_layout, mono_downmix, stereo_downmix

C3 = 0.7071067811865476  # -3 dB

# Expected (L', R') coefficient of each channel, in file order (the table in auralis/downmix.py).
EXPECTED = {
    3: [(1, 0), (0, 1), (C3, C3)],
    4: [(1, 0), (0, 1), (C3, 0), (0, C3)],
    5: [(1, 0), (0, 1), (C3, C3), (C3, 0), (0, C3)],
    6: [(1, 0), (0, 1), (C3, C3), (0, 0), (C3, 0), (0, C3)],
    7: [(1, 0), (0, 1), (C3, C3), (0, 0), (0.5, 0.5), (C3, 0), (0, C3)],
    8: [(1, 0), (0, 1), (C3, C3), (0, 0), (C3, 0), (0, C3), (C3, 0), (0, C3)],
}


@pytest.mark.parametrize("channels", sorted(EXPECTED))
def test_each_channel_goes_where_the_layout_says(channels: int) -> None:
    rng = np.random.default_rng(channels)
    frames = 64
    for index, (to_left, to_right) in enumerate(EXPECTED[channels]):
        x = np.zeros((frames, channels), dtype=np.float32)
        x[:, index] = rng.uniform(-1, 1, frames).astype(np.float32)
        y = stereo_downmix(x)
        assert y.dtype == np.float32 and y.shape == (frames, 2)
        np.testing.assert_allclose(y[:, 0], to_left * x[:, index], rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(y[:, 1], to_right * x[:, index], rtol=1e-6, atol=1e-7)


def test_a_mix_of_channels_is_the_sum_of_their_contributions() -> None:
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (1000, 6)).astype(np.float32)
    fl, fr, fc, _lfe, bl, br = x.T.astype(np.float64)
    y = stereo_downmix(x)
    np.testing.assert_allclose(y[:, 0], fl + C3 * fc + C3 * bl, atol=1e-6)  # ITU-R BS.775, LFE dropped
    np.testing.assert_allclose(y[:, 1], fr + C3 * fc + C3 * br, atol=1e-6)


def test_mono_is_dual_mono_and_stereo_passes_through_untouched() -> None:
    mono = np.linspace(-1, 1, 50, dtype=np.float32)[:, None]
    np.testing.assert_array_equal(stereo_downmix(mono), np.hstack([mono, mono]))
    stereo = np.random.default_rng(2).uniform(-1, 1, (50, 2)).astype(np.float32)
    assert stereo_downmix(stereo) is stereo  # no copy on the common path
    np.testing.assert_array_equal(stereo_downmix(stereo.astype(np.float64)), stereo)
    np.testing.assert_allclose(mono_downmix(np.stack([np.ones(10), -np.ones(10)], axis=1)), 0.0)
    np.testing.assert_array_equal(mono_downmix(mono), mono[:, 0])


def test_the_downmix_is_not_normalised_so_loud_multichannel_can_exceed_full_scale() -> None:
    # Documented choice: unity coefficients keep the programme's loudness; the limiter after the
    # downmix takes care of the peaks (a 5.1 at full scale in phase sums to 1 + 2 * 0.7071).
    x = np.ones((4, 6), dtype=np.float32)
    assert stereo_downmix(x)[0, 0] == pytest.approx(1 + 2 * C3, rel=1e-6)


def test_more_than_eight_channels_keep_the_first_two() -> None:
    x = np.random.default_rng(3).uniform(-1, 1, (20, 10)).astype(np.float32)
    np.testing.assert_array_equal(stereo_downmix(x), x[:, :2])
    assert channel_layout(10).channels[:2] == ("FL", "FR")


def test_layout_table_names_every_channel() -> None:
    for count, layout in LAYOUTS.items():
        assert len(layout.channels) == len(layout.left) == len(layout.right) == count
        assert layout.matrix().shape == (count, 2)
    assert [LAYOUTS[n].name for n in (1, 2, 4, 6, 8)] == ["mono", "stereo", "4.0", "5.1", "7.1"]
    with pytest.raises(ValueError):
        channel_layout(0)
    with pytest.raises(ValueError):
        stereo_downmix(np.zeros(10, dtype=np.float32))
