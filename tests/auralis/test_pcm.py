"""auralis.pcm (and the auralis.resample.StreamResampler it uses): the stream resampler is one pass of resample_poly (auralis's filter) whatever the blocks; TPDF quantisation."""

from __future__ import annotations

import numpy as np
import pytest

from auralis.pcm import PcmEncoder, quantize
from auralis.resample import StreamResampler
from tests.helpers import resample_reference


@pytest.mark.parametrize(("in_rate", "out_rate", "up", "down"), [(44_100, 48_000, 160, 147), (48_000, 44_100, 147, 160)])
def test_blocks_of_any_size_equal_one_pass_and_a_reset_per_block_would_not(in_rate, out_rate, up, down) -> None:
    rng = np.random.default_rng(3)
    x = (rng.standard_normal((in_rate, 2)) * 0.1).astype(np.float32)
    ref = resample_reference(x, in_rate, out_rate)
    stream = StreamResampler(in_rate, out_rate)
    pieces, controls, i = [], [], 0
    while i < x.shape[0]:
        n = int(rng.integers(1, 4000))
        pieces.append(stream.process(x[i : i + n]))
        controls.append(resample_reference(x[i : i + n], in_rate, out_rate))  # no carried history
        i += n
    y = np.concatenate(pieces)
    held = -(-stream.latency_input_frames * up // down) + 1  # frames still in the filter (1.7-1.9 ms)
    assert ref.shape[0] - held <= y.shape[0] <= ref.shape[0]  # all but those
    assert np.max(np.abs(y - ref[: y.shape[0]])) < 1e-5
    control = np.concatenate(controls)[: y.shape[0]]
    assert np.max(np.abs(control - ref[: y.shape[0]])) > 1e-2  # the seams a stateless per-block pass leaves


def test_equal_rates_pass_through() -> None:
    x = np.ones((100, 2), dtype=np.float32)
    assert np.array_equal(StreamResampler(48_000, 48_000).process(x), x)


def test_tpdf_dither_keeps_the_mean_and_spans_one_lsb_each_side() -> None:
    quarter_lsb = np.full((200_000, 1), 0.25 / 32768)
    q = quantize(quarter_lsb, 16, np.random.default_rng(0))
    assert q.dtype == np.int16 and set(np.unique(q)) <= {-1, 0, 1}
    assert abs(q.mean() - 0.25) < 0.01  # a level below one LSB survives as a mean (undithered it would be 0)
    assert np.all(quantize(quarter_lsb, 16, None) == 0)
    assert quantize(np.array([[2.0, -2.0]]), 16, None).tolist() == [[32767, -32768]]
    assert quantize(np.array([[0.5]]), 24, None).tolist() == [[1 << 22]]


def test_the_encoder_packs_little_endian_24_bit_in_four_bytes() -> None:
    enc = PcmEncoder(48_000, 48_000, 24)
    data = enc.encode(np.full((10, 2), 0.5, dtype=np.float32))
    assert len(data) == 10 * 2 * 4
    values = np.frombuffer(data, dtype="<i4")
    assert np.all(np.abs(values - (1 << 22)) <= 1)
