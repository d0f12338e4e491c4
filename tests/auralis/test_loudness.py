"""BS.1770-4 / R128 meter: filter, gating, maxima, true peak, segment merging, reference cross-checks."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pyloudnorm
import pytest
from scipy import signal

from auralis import loudness
from auralis.audio import AudioReader, write_audio
from auralis.synth import loudness_war, make_music

# ITU-R BS.1770-4 Tables 1 and 2 (48 kHz).
BS1770_TABLE_48K = np.array(
    [
        [1.53512485958697, -2.69169618940638, 1.19839281085285, 1.0, -1.69065929318241, 0.73248077421585],
        [1.0, -2.0, 1.0, 1.0, -1.99004745483398, 0.99007225036621],
    ]
)


def sine(freq_hz: float, level_dbfs: float, duration_s: float, sample_rate: int, channels: int = 2, phase: float = 0.0):
    t = np.arange(int(round(duration_s * sample_rate))) / sample_rate
    tone = 10 ** (level_dbfs / 20) * np.sin(2 * np.pi * freq_hz * t + phase)
    return np.repeat(tone[:, None], channels, axis=1)


@pytest.fixture(scope="module")
def music_44k() -> np.ndarray:
    return make_music(12.0, 44_100, seed=7)


def brute_force_true_peak(x: np.ndarray) -> float:
    """Every 4x-interpolated value with the Annex 2 filter (upfirdn over the whole signal), and the samples."""
    taps = loudness._TP_PHASES.T.reshape(-1)  # h[4j + k] = phase k, tap j
    peak = float(np.abs(x).max())
    for c in range(x.shape[1]):
        up = signal.upfirdn(taps, x[:, c].astype(np.float64), up=4)
        # Keep the interpolated points between sample m and m + 1 for m in [0, N): outputs 4 (m + 6) + k.
        n = x.shape[0]
        peak = max(peak, float(np.abs(up[24 : 4 * (n + 6)]).max()))
    return 20 * math.log10(peak)


# --- K-weighting ---------------------------------------------------------------------------------


def test_k_weighting_48k_is_the_bs1770_table():
    np.testing.assert_array_equal(loudness.k_weighting_sos(48_000), BS1770_TABLE_48K)


def test_k_weighting_derivation_reproduces_the_48k_table():
    np.testing.assert_allclose(loudness._derive_k_weighting_sos(48_000), BS1770_TABLE_48K, rtol=0, atol=1e-13)


@pytest.mark.parametrize("sample_rate", [8_000, 22_050, 44_100, 88_200, 96_000, 192_000])
def test_k_weighting_response_matches_at_every_rate(sample_rate):
    """Same analog curve at every rate: +0.691 dB at 997 Hz, ~+4 dB shelf at 3.5 kHz, RLB -3 dB region at low end."""
    sos = loudness.k_weighting_sos(sample_rate)
    ref = BS1770_TABLE_48K
    freqs = np.array([30.0, 100.0, 997.0, 3500.0])
    _, h = signal.sosfreqz(sos, worN=freqs, fs=sample_rate)
    _, h48 = signal.sosfreqz(ref, worN=freqs, fs=48_000)
    gain_db = 20 * np.log10(np.abs(h))
    # The un-prewarped bilinear transform (libebur128's, which pyloudnorm "DeMan" shares) moves the
    # curve by a few hundredths of a dB away from 48 kHz (measured: 0.003 dB at 44.1 kHz, 0.03 at
    # 22.05/96 kHz), more at 8 kHz where 3.5 kHz nears Nyquist.
    assert gain_db[2] == pytest.approx(0.691, abs=0.035)
    atol = 0.35 if sample_rate == 8_000 else 0.08
    np.testing.assert_allclose(gain_db, 20 * np.log10(np.abs(h48)), atol=atol)
    if sample_rate == 44_100:
        np.testing.assert_allclose(gain_db, 20 * np.log10(np.abs(h48)), atol=0.006)


def test_channel_weights():
    np.testing.assert_array_equal(loudness.channel_weights(1), [1.0])
    np.testing.assert_array_equal(loudness.channel_weights(2), [1.0, 1.0])
    np.testing.assert_array_equal(loudness.channel_weights(5), [1.0, 1.0, 1.0, 1.41, 1.41])
    np.testing.assert_array_equal(loudness.channel_weights(6), [1.0, 1.0, 1.0, 0.0, 1.41, 1.41])


# --- Reference levels -----------------------------------------------------------------------------


@pytest.mark.parametrize("sample_rate", [44_100, 48_000])
def test_997hz_sine_at_minus_23_dbfs_reads_minus_23_lufs(sample_rate):
    m = loudness.measure_loudness(sine(997.0, -23.0, 10.0, sample_rate), sample_rate)
    assert m.integrated_lufs == pytest.approx(-23.0, abs=0.005)
    assert m.max_momentary_lufs == pytest.approx(-23.0, abs=0.005)
    assert m.max_short_term_lufs == pytest.approx(-23.0, abs=0.005)
    assert m.loudness_range_lu == pytest.approx(0.0, abs=0.01)
    assert m.sample_peak_dbfs == pytest.approx(-23.0, abs=0.001)
    assert -23.0 <= m.true_peak_dbtp < -22.9


@pytest.mark.parametrize("sample_rate", [8_000, 11_025, 22_050, 32_000, 88_200, 96_000, 192_000])
def test_997hz_sine_reads_its_level_at_every_rate(sample_rate):
    """The derived filters keep the 997 Hz reading within the bilinear warping (<= 0.045 dB, see above)."""
    m = loudness.measure_loudness(sine(997.0, -20.0, 4.0, sample_rate), sample_rate)
    for value in (m.integrated_lufs, m.max_momentary_lufs, m.max_short_term_lufs):
        assert value == pytest.approx(-20.0, abs=0.05)
    # The Annex 2 interpolator ripples by up to ~+0.2 dB in its passband (997 Hz at 11.025 kHz sits
    # where 4.3 kHz sits at 48 kHz): within Tech 3341's +0.2 / -0.4 dB true-peak tolerance.
    assert m.sample_peak_dbfs <= m.true_peak_dbtp <= -20.0 + 0.25


def test_to_dict_has_exactly_the_field_names():
    m = loudness.measure_loudness(sine(997.0, -23.0, 1.0, 48_000), 48_000)
    assert list(m.to_dict()) == [
        "integrated_lufs",
        "max_momentary_lufs",
        "max_short_term_lufs",
        "loudness_range_lu",
        "true_peak_dbtp",
        "sample_peak_dbfs",
    ]


@pytest.mark.parametrize("frames", [0, 1, 1000, 48_000 * 4])
def test_silence_reads_minus_inf_without_warnings(frames):
    # filterwarnings = error: a log10(0) or an empty mean would fail the test.
    m = loudness.measure_loudness(np.zeros((frames, 2), dtype=np.float32), 48_000)
    assert m.integrated_lufs == -math.inf
    assert m.max_momentary_lufs == -math.inf
    assert m.max_short_term_lufs == -math.inf
    assert m.true_peak_dbtp == -math.inf
    assert m.sample_peak_dbfs == -math.inf
    assert m.loudness_range_lu == 0.0
    assert loudness.integrated_loudness(np.zeros((frames, 1)), 48_000) == -math.inf
    assert loudness.true_peak_dbtp(np.zeros(frames), 48_000) == -math.inf
    assert np.all(loudness.short_term_loudness(np.zeros((frames, 2)), 48_000) == -math.inf)


def test_signal_below_the_absolute_gate_reads_minus_inf_but_keeps_peaks():
    m = loudness.measure_loudness(sine(997.0, -75.0, 5.0, 48_000), 48_000)
    assert m.integrated_lufs == -math.inf
    assert m.max_momentary_lufs == pytest.approx(-75.0, abs=0.01)  # M and S are ungated
    assert m.sample_peak_dbfs == pytest.approx(-75.0, abs=0.01)


def test_short_signals_have_no_short_term_window():
    m = loudness.measure_loudness(sine(997.0, -20.0, 1.0, 48_000), 48_000)
    assert m.integrated_lufs == pytest.approx(-20.0, abs=0.01)
    assert m.max_short_term_lufs == -math.inf
    assert m.loudness_range_lu == 0.0


def test_mono_1d_input_and_float64_equal_float32():
    x = sine(997.0, -20.0, 3.0, 44_100, channels=1).astype(np.float32)
    a = loudness.measure_loudness(x, 44_100)
    b = loudness.measure_loudness(x[:, 0].astype(np.float64), 44_100)
    assert a == b
    assert a.integrated_lufs == pytest.approx(-20.0 - 3.0103, abs=0.01)  # one channel: half the stereo energy


def test_bad_arguments_raise():
    with pytest.raises(ValueError):
        loudness.measure_loudness(np.zeros((10, 2)), 4_000)
    with pytest.raises(ValueError):
        loudness.measure_loudness(np.zeros((10, 2, 2)), 48_000)
    with pytest.raises(TypeError):
        loudness.measure_loudness(np.zeros((10, 2), dtype=np.int16), 48_000)
    with pytest.raises(ValueError):
        loudness.merge_loudness_segments([])


def test_gating_drops_quiet_blocks_and_averages_energies():
    """10 s at -20 plus 10 s at -40: the -40 part falls under the relative gate; -20/-26 average as energy."""
    sr = 48_000
    gated = np.concatenate([sine(997.0, -20.0, 10.0, sr), sine(997.0, -40.0, 10.0, sr)])
    # Kept: 97 blocks at -20 and the 3 blocks straddling the step (3/4, 1/2, 1/4 of them at -20).
    kept_energy = (97 + 0.75 + 0.5 + 0.25 + 1.5e-4) / 100
    assert loudness.integrated_loudness(gated, sr) == pytest.approx(-20.0 + 10 * math.log10(kept_energy), abs=0.005)
    mixed = np.concatenate([sine(997.0, -20.0, 10.0, sr), sine(997.0, -26.0, 10.0, sr)])
    energy_mean = 10 * math.log10((10 ** (-2.0) + 10 ** (-2.6)) / 2)
    assert loudness.integrated_loudness(mixed, sr) == pytest.approx(energy_mean, abs=0.02)


def test_lfe_is_excluded_and_surrounds_weighted():
    sr = 48_000
    tone = sine(997.0, -30.0, 3.0, sr, channels=1)[:, 0]
    five_one = np.zeros((tone.size, 6))
    five_one[:, 3] = tone * 10  # loud LFE: must not count
    assert loudness.integrated_loudness(five_one, sr) == -math.inf
    five_one[:, 4] = tone  # one surround at -30 dBFS: -30 - 3.01 + 10 log10(1.41)
    assert loudness.integrated_loudness(five_one, sr) == pytest.approx(-33.0103 + 1.4922, abs=0.01)


def test_max_momentary_catches_a_burst_off_the_100ms_grid():
    sr = 44_100
    x = np.zeros((sr * 3, 2))
    start = int(1.337 * sr)
    burst = sine(997.0, -20.0, 0.4, sr)
    x[start : start + burst.shape[0]] = burst
    m = loudness.measure_loudness(x, sr)
    # The 2 ms grid loses at most 1 ms of a 400 ms window (0.011 dB); a 100 ms grid would lose ~0.5 dB here.
    assert m.max_momentary_lufs == pytest.approx(-20.0, abs=0.02)
    hop_grid = loudness.momentary_loudness(x, sr).max()
    assert hop_grid < -20.3  # the control: the 100 ms series alone misses it


# --- Reference meter ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sample_rate", "channels"), [(44_100, 2), (48_000, 2), (96_000, 2), (22_050, 1), (48_000, 5)]
)
def test_integrated_matches_pyloudnorm_deman_on_noise(sample_rate, channels):
    rng = np.random.default_rng(sample_rate + channels)
    # Pink-ish noise with a level that moves, so both gates act.
    noise = signal.lfilter([1.0], [1.0, -0.95], rng.standard_normal((sample_rate * 8, channels)), axis=0)
    envelope = np.repeat(10 ** (rng.uniform(-35, 0, 16) / 20), sample_rate // 2)[:, None]
    x = 0.05 * noise * envelope
    reference = pyloudnorm.Meter(sample_rate, filter_class="DeMan").integrated_loudness(x)
    assert loudness.integrated_loudness(x, sample_rate) == pytest.approx(reference, abs=0.01)


def test_integrated_matches_pyloudnorm_deman_on_music(music_44k):
    for x in (music_44k, loudness_war(music_44k)):
        reference = pyloudnorm.Meter(44_100, filter_class="DeMan").integrated_loudness(x.astype(np.float64))
        assert loudness.integrated_loudness(x, 44_100) == pytest.approx(reference, abs=0.01)


# --- True peak ------------------------------------------------------------------------------------


def test_true_peak_of_quarter_rate_sine_is_3db_over_its_samples():
    sr = 48_000
    x = sine(sr / 4, 0.0, 1.0, sr, phase=math.pi / 4)  # every sample at +-0.7071, the wave reaches 1.0
    m = loudness.measure_loudness(x, sr)
    assert m.sample_peak_dbfs == pytest.approx(-3.01, abs=0.01)
    assert m.true_peak_dbtp == pytest.approx(0.0, abs=0.2)


@pytest.mark.parametrize("kind", ["music", "crushed", "noise", "clicks"])
def test_true_peak_candidate_search_equals_brute_force(kind, music_44k):
    """The bound-pruned search must find exactly the maximum of the full 4x interpolation."""
    rng = np.random.default_rng(3)
    x = {
        "music": music_44k[: 44_100 * 4],
        "crushed": loudness_war(music_44k[: 44_100 * 4]),
        "noise": (0.3 * rng.standard_normal((44_100 * 2, 2))).astype(np.float32),
        "clicks": np.zeros((44_100, 2), dtype=np.float32),
    }[kind]
    if kind == "clicks":
        x[[5, 1000, 44_095], 0] = [0.5, -0.9, 0.7]  # near both ends, so the zero padding matters too
        x[2000:2003, 1] = [0.8, -0.8, 0.8]
    assert loudness.true_peak_dbtp(x, 44_100) == pytest.approx(brute_force_true_peak(x), abs=1e-5)
    assert loudness.true_peak_dbtp(x, 44_100) >= 20 * math.log10(np.abs(x).max())


# --- Segments -------------------------------------------------------------------------------------


def segments_of(x: np.ndarray, sample_rate: int, granules_per_segment: int) -> list[loudness.LoudnessSegment]:
    granule, preroll, postroll = loudness.loudness_segment_geometry(sample_rate)
    n = x.shape[0]
    padded = np.concatenate([np.zeros((preroll, x.shape[1]), x.dtype), x, np.zeros((postroll, x.shape[1]), x.dtype)])
    out = []
    step = granules_per_segment * granule
    for start in range(0, n, step):
        length = min(step, n - start)
        context = padded[start : start + preroll + length + postroll]
        out.append(
            loudness.analyze_loudness_segment(context, sample_rate, preroll_frames=preroll, segment_frames=length)
        )
    return out


def assert_measurements_equal(a: loudness.LoudnessMeasurements, b: loudness.LoudnessMeasurements, tol=1e-6):
    for key, value in a.to_dict().items():
        other = b.to_dict()[key]
        if math.isinf(value) or math.isinf(other):
            assert value == other, key
        else:
            assert value == pytest.approx(other, abs=tol), key


def test_geometry():
    for sr in (8_000, 11_025, 22_050, 44_100, 48_000, 88_200, 96_000, 192_000):
        granule, preroll, postroll = loudness.loudness_segment_geometry(sr)
        assert ((sr + 5) // 10) % granule == 0  # divides the 100 ms hop
        assert preroll % granule == 0 and preroll >= sr * 0.5
        assert postroll >= 6
    assert loudness.loudness_segment_geometry(44_100)[0] == 70  # 1.6 ms
    assert loudness.loudness_segment_geometry(48_000)[0] == 96  # 2 ms


@pytest.mark.parametrize("granules_per_segment", [37, 313, 2_000, 7_001])
def test_segments_merge_exactly_whatever_the_split(music_44k, granules_per_segment):
    sr = 44_100
    x = loudness_war(music_44k)  # crushed: true peaks everywhere, including at segment edges
    whole = loudness.measure_loudness(x, sr)
    merged = loudness.merge_loudness_segments(segments_of(x, sr, granules_per_segment))
    assert_measurements_equal(merged, whole)


def test_maxima_and_true_peak_straddling_a_segment_boundary():
    sr = 48_000
    granule, _, _ = loudness.loudness_segment_geometry(sr)
    x = np.zeros((sr * 6, 2))
    boundary = 250 * granule  # 0.5 s
    burst = sine(997.0, -18.0, 0.4, sr)
    x[boundary - 9_000 : boundary - 9_000 + burst.shape[0]] = burst  # the M window crosses the boundary
    # An inter-sample over right at the boundary: fs/4 at 45 degrees, samples at -3 dB, the wave at 0 dB.
    over = sine(sr / 4, -1.0, 0.001, sr, phase=math.pi / 4)
    x[boundary * 3 - 20 : boundary * 3 - 20 + over.shape[0]] = over
    whole = loudness.measure_loudness(x, sr)
    assert whole.true_peak_dbtp > whole.sample_peak_dbfs + 2.0
    merged = loudness.merge_loudness_segments(segments_of(x, sr, 250))
    assert_measurements_equal(merged, whole)
    assert merged.max_momentary_lufs == pytest.approx(-18.0, abs=0.02)


def test_segment_is_small_and_picklable(music_44k):
    sr = 44_100
    seg = segments_of(music_44k, sr, 30 * sr // 70)[0]
    clone = pickle.loads(pickle.dumps(seg))
    np.testing.assert_array_equal(clone.granule_energies, seg.granule_energies)
    assert clone.true_peak == seg.true_peak
    # ~one float per 1.6 ms: far smaller than the audio (12 s stereo float32 = 4.2 MB).
    assert len(pickle.dumps(seg)) < music_44k.nbytes / 20


def test_segments_from_a_file_via_audio_reader(tmp_path, music_44k):
    """The daemon's path: AudioReader.read zero-pads the pre-roll of the first and the post-roll of the last."""
    sr = 44_100
    path = tmp_path / "track.flac"
    write_audio(path, music_44k, sr)
    granule, preroll, postroll = loudness.loudness_segment_geometry(sr)
    step = 3 * sr  # 3 s segments (a multiple of the granule)
    assert step % granule == 0
    segments = []
    with AudioReader(path) as reader:
        n = reader.info.num_frames
        for start in range(0, n, step):
            length = min(step, n - start)
            context = reader.read(start - preroll, start + length + postroll)
            segments.append(
                loudness.analyze_loudness_segment(context, sr, preroll_frames=preroll, segment_frames=length)
            )
        whole = loudness.measure_loudness(reader.read(0, n), sr)
    assert len(segments) == 4
    assert_measurements_equal(loudness.merge_loudness_segments(segments), whole)


def test_merge_rejects_misaligned_segments(music_44k):
    granule, preroll, postroll = loudness.loudness_segment_geometry(44_100)
    x = music_44k[: granule * 100 + preroll + postroll]
    bad = loudness.analyze_loudness_segment(x, 44_100, preroll_frames=preroll, segment_frames=granule * 50 + 1)
    with pytest.raises(ValueError, match="multiple"):
        loudness.merge_loudness_segments([bad, bad])
    with pytest.raises(ValueError):
        loudness.analyze_loudness_segment(x[:100], 44_100, preroll_frames=preroll, segment_frames=granule)
    with pytest.raises(ValueError, match="settling"):  # too little pre-roll would break exact merging
        loudness.analyze_loudness_segment(x, 44_100, preroll_frames=100, segment_frames=granule)
