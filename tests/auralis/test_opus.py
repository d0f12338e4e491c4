"""auralis.opus and auralis.resample.StreamResampler: a live Opus stream that decodes to the input.

The streaming resampler is checked against one pass of ``resample_poly`` with auralis's filter (with a per-block control that
shows the seam a stateless-per-block resampler would leave); the encoder's pre-skip and granule
bookkeeping against a decode that must give back exactly the input's length, aligned to the sample.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import correlate

from auralis.loudness import integrated_loudness
from auralis.opus import (
    FRAME_SAMPLES,
    OPUS_SAMPLE_RATE,
    OpusDecoder,
    OpusEncoder,
    OpusError,
    opus_head,
)
from auralis.resample import StreamResampler
from auralis.synth import make_music
from tests.helpers import resample_reference


def _random_blocks(x: np.ndarray, rng: np.random.Generator, largest: int = 3000) -> list[np.ndarray]:
    blocks, i = [], 0
    while i < x.shape[0]:
        n = int(rng.integers(0, largest))  # zero-length blocks too
        blocks.append(x[i : i + n])
        i += n
    return blocks


def _encode(x: np.ndarray, rate: int, blocks: list[np.ndarray] | None = None, **kwargs):
    enc = OpusEncoder(rate, **kwargs)
    packets = []
    for block in blocks if blocks is not None else [x]:
        packets += enc.encode(block)
    packets += enc.flush()
    return enc, packets


def _decode(enc: OpusEncoder, packets) -> np.ndarray:
    dec = OpusDecoder(pre_skip=enc.pre_skip)
    return np.concatenate([dec.decode(p) for p in packets])


@pytest.mark.parametrize(("in_rate", "out_rate"), [(44_100, 48_000), (96_000, 48_000), (48_000, 48_000)])
def test_stream_resampler_equals_one_pass_of_resample_poly(in_rate: int, out_rate: int) -> None:
    rng = np.random.default_rng(3)
    x = (0.1 * rng.standard_normal((in_rate // 2, 2))).astype(np.float32)
    r = StreamResampler(in_rate, out_rate)
    y = np.concatenate([r.process(b) for b in _random_blocks(x, rng)] + [r.flush()])
    ref = resample_reference(x, in_rate, out_rate)
    assert y.shape == ref.shape
    assert np.max(np.abs(y - ref)) < 1e-5

    # Control: resampling each block on its own (no carried state) leaves seams the test above would see.
    blocks = _random_blocks(x, np.random.default_rng(3))
    seamed = np.concatenate([resample_reference(b, in_rate, out_rate) for b in blocks if b.shape[0]])
    if in_rate != out_rate:
        n = min(seamed.shape[0], ref.shape[0])
        assert np.max(np.abs(seamed[:n] - ref[:n])) > 1e-2


def test_stream_resampler_releases_output_with_a_short_latency() -> None:
    r = StreamResampler(44_100, 48_000)
    out = r.process(np.zeros((4410, 2), np.float32))
    assert r.latency_input_frames == 77  # half the filter: 1.7 ms at 44.1 kHz
    held = -(-r.latency_input_frames * 48_000 // 44_100)  # the same, in output frames
    assert 4800 - held - 1 <= out.shape[0] <= 4800 - held + 1  # that much held back, no more
    with pytest.raises(ValueError):
        r.process(np.zeros(10, np.float32))  # not (frames, channels)


@pytest.mark.parametrize("rate", [48_000, 44_100])
def test_decoded_stream_has_the_input_length_and_is_sample_aligned(rate: int) -> None:
    n = rate * 2
    x = np.zeros((n, 2), np.float32)
    x[rate // 2 :, 0] = 0.3 * np.sin(2 * np.pi * 997 * np.arange(n - rate // 2) / rate)
    x[:, 1] = x[:, 0]
    rng = np.random.default_rng(5)
    enc, packets = _encode(x, rate, _random_blocks(x, rng))
    assert enc.pre_skip == 312  # libopus's look-ahead at 48 kHz, as FFmpeg reports it
    z = _decode(enc, packets)
    ref = resample_reference(x, rate, OPUS_SAMPLE_RATE)
    assert z.shape == ref.shape  # pre-skip dropped and end trimmed: exactly the input's duration at 48 kHz
    lag = int(np.argmax(correlate(z[:, 0], ref[:, 0], mode="full", method="fft"))) - (ref.shape[0] - 1)
    assert lag == 0
    err = z[2000:-2000] - ref[2000:-2000]
    snr_db = 10 * np.log10(np.mean(ref[2000:-2000] ** 2) / np.mean(err**2))
    assert snr_db > 30


def test_granule_positions_follow_rfc_7845() -> None:
    x = (0.1 * np.random.default_rng(2).standard_normal((48_000 + 500, 2))).astype(np.float32)
    enc, packets = _encode(x, 48_000)
    granules = [p.granule_position for p in packets]
    assert granules == sorted(granules)
    assert all(b - a == FRAME_SAMPLES for a, b in zip(granules[:-2], granules[1:-1], strict=True))
    assert packets[-1].last and not any(p.last for p in packets[:-1])
    assert packets[-1].granule_position == enc.pre_skip + x.shape[0]  # end trimming
    assert sum(p.num_samples for p in packets) == x.shape[0]


def test_packets_do_not_depend_on_how_the_stream_was_cut() -> None:
    x = make_music(3.0, 44_100, seed=4)
    _, whole = _encode(x, 44_100)
    _, cut = _encode(x, 44_100, _random_blocks(x, np.random.default_rng(9)))
    assert [p.data for p in cut] == [p.data for p in whole]


def test_loudness_and_bit_rate_at_160_kbit() -> None:
    x = make_music(10.0, 44_100, seed=1)
    enc, packets = _encode(x, 44_100, bitrate_bps=160_000)
    z = _decode(enc, packets)
    assert abs(integrated_loudness(z, 48_000) - integrated_loudness(x, 44_100)) < 0.2
    kbit_s = sum(len(p.data) for p in packets) * 8 / 10.0 / 1000
    assert 130 < kbit_s < 180  # constrained VBR: near the target, far below f32 PCM's 2822 kbit/s

    enc64, packets64 = _encode(x, 44_100, bitrate_bps=64_000)
    assert sum(len(p.data) for p in packets64) < 0.5 * sum(len(p.data) for p in packets)


def test_bad_use_is_refused_clearly() -> None:
    with pytest.raises(ValueError, match="bitrate_bps"):
        OpusEncoder(48_000, bitrate_bps=1_000_000)
    with pytest.raises(ValueError, match="channels"):
        OpusEncoder(48_000, channels=6)
    enc = OpusEncoder(48_000)
    with pytest.raises(ValueError, match="frames, 2"):
        enc.encode(np.zeros((10, 1), np.float32))
    enc.flush()
    with pytest.raises(OpusError, match="flushed"):
        enc.encode(np.zeros((10, 2), np.float32))
    assert enc.flush() == []


def test_non_finite_samples_become_silence_not_a_failure() -> None:
    x = np.zeros((4800, 2), np.float32)
    x[100] = np.nan
    enc, packets = _encode(x, 48_000)
    assert np.all(np.isfinite(_decode(enc, packets)))


def test_opus_head_layout() -> None:
    head = opus_head(2, 312, 44_100)
    assert head[:8] == b"OpusHead" and len(head) == 19
    assert head[8] == 1 and head[9] == 2  # version 1, two channels
    assert int.from_bytes(head[10:12], "little") == 312
    assert int.from_bytes(head[12:16], "little") == 44_100


def test_a_stream_that_starts_mid_music_is_accurate_from_its_first_sample() -> None:
    """A seek opens a new Opus stream on loud music: with the pre-skip dropped, its first 5 ms are as close
    to the input as the steady state (no click at the start beyond the codec's usual error)."""
    x = make_music(3.0, 48_000, seed=2)[48_000:]
    enc, packets = _encode(x, 48_000)
    z = _decode(enc, packets)

    def snr_db(a: int, b: int) -> float:
        return float(10 * np.log10(np.mean(x[a:b] ** 2) / np.mean((z[a:b] - x[a:b]) ** 2)))

    head, steady = snr_db(0, 240), snr_db(4800, 48_000)
    assert head > steady - 3.0
    assert np.max(np.abs(z[:240] - x[:240])) <= 1.5 * np.max(np.abs(z[4800:] - x[4800:]))
