"""The 25D fingerprint: every dimension moves the right way, undefined values, exact segment merging."""

from __future__ import annotations

import dataclasses
import json
import math
import pickle
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest

import auralis.fingerprint as fpmod
from auralis.audio import AudioReader, write_audio
from auralis.fingerprint import (
    ALGORITHM_VERSION,
    DIMENSIONS,
    PLAN_INPUT_KEYS,
    Fingerprint,
    analyze_fingerprint_segment,
    analyze_segment,
    compute_detail_dimensions,
    compute_fingerprint,
    compute_plan_inputs,
    fingerprint_from_samples,
    merge_fingerprint_segments,
    merge_segments,
    segment_count,
)
from auralis.loudness import measure_loudness
from auralis.synth import loudness_war, make_music

SR = 16_000  # most behavioural tests run at 16 kHz: fast, and every feature is defined there


def stereo(x: np.ndarray) -> np.ndarray:
    return np.stack([x, x], axis=1)


def tone(freq_hz: float, duration_s: float, sample_rate: int = SR, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(duration_s * sample_rate))) / sample_rate
    return amplitude * np.sin(2 * np.pi * freq_hz * t)


def noise(duration_s: float, sample_rate: int = SR, seed: int = 0, amplitude: float = 0.1) -> np.ndarray:
    return amplitude * np.random.default_rng(seed).standard_normal(int(round(duration_s * sample_rate)))


def click_track(bpm: float, duration_s: float, sample_rate: int = 44_100) -> np.ndarray:
    """2 ms decaying clicks every beat, silence in between."""
    x = np.zeros(int(duration_s * sample_rate))
    starts = (np.arange(0.0, duration_s, 60.0 / bpm) * sample_rate).astype(np.int64)
    k = np.arange(int(0.002 * sample_rate))
    idx = starts[:, None] + k[None, :]
    keep = idx < x.size
    x[idx[keep]] = np.broadcast_to(0.8 * np.exp(-k / (0.0005 * sample_rate)) * (-1.0) ** k, idx.shape)[keep]
    return stereo(x)


def dims(samples: np.ndarray, sample_rate: int = SR) -> dict[str, float]:
    return fingerprint_from_samples(samples, sample_rate).dimensions


@pytest.fixture(scope="module")
def music() -> np.ndarray:
    return make_music(12.0, 22_050, bpm=120, seed=3)


@pytest.fixture(scope="module")
def music_fp(music: np.ndarray) -> Fingerprint:
    return fingerprint_from_samples(music, 22_050)


# --- names and shape --------------------------------------------------------------------------


def test_exactly_the_25_named_dimensions_in_the_issue_order(music_fp: Fingerprint) -> None:
    assert DIMENSIONS == (
        "sub_bass_pct", "bass_pct", "low_mid_pct", "mid_pct", "upper_mid_pct", "presence_pct", "air_pct",
        "lufs", "crest_db", "bass_mid_ratio", "tempo_bpm", "rhythm_stability", "transient_density",
        "silence_ratio", "spectral_centroid", "spectral_rolloff", "spectral_flatness", "harmonic_ratio",
        "pitch_stability", "chroma_energy", "dynamic_range_variation", "loudness_variation_std",
        "peak_consistency", "stereo_width", "phase_correlation",
    )  # fmt: skip
    assert list(music_fp.dimensions) == list(DIMENSIONS)
    assert all(math.isfinite(v) for v in music_fp.dimensions.values())
    assert set(PLAN_INPUT_KEYS) == {"lufs", "crest_db", "sub_bass_pct", "bass_pct", "low_mid_pct", "mid_pct",
                                    "upper_mid_pct", "presence_pct", "air_pct"}
    assert music_fp.algorithm_version == ALGORITHM_VERSION


def test_measurements_block_matches_the_loudness_meter(music: np.ndarray, music_fp: Fingerprint) -> None:
    ref = measure_loudness(music, 22_050)
    m = music_fp.measurements
    assert m["integrated_lufs"] == pytest.approx(ref.integrated_lufs, abs=1e-6)
    assert m["true_peak_dbtp"] == pytest.approx(ref.true_peak_dbtp, abs=1e-6)
    assert m["sample_peak_dbfs"] == pytest.approx(ref.sample_peak_dbfs, abs=1e-6)
    assert m["loudness_range_lu"] == pytest.approx(ref.loudness_range_lu, abs=1e-6)
    assert m["max_momentary_lufs"] == pytest.approx(ref.max_momentary_lufs, abs=1e-6)
    assert m["max_short_term_lufs"] == pytest.approx(ref.max_short_term_lufs, abs=1e-6)
    assert m["plr_db"] == pytest.approx(ref.true_peak_dbtp - ref.integrated_lufs, abs=1e-6)
    assert (m["duration_s"], m["sample_rate"], m["channels"]) == (pytest.approx(12.0), 22_050, 2)
    assert music_fp.dimensions["lufs"] == pytest.approx(ref.integrated_lufs, abs=1e-6)


# --- the seven bands and bass_mid_ratio -------------------------------------------------------


@pytest.mark.parametrize(
    ("freq_hz", "band"),
    [(40, "sub_bass_pct"), (120, "bass_pct"), (350, "low_mid_pct"), (1000, "mid_pct"), (3000, "upper_mid_pct"),
     (6000, "presence_pct"), (12000, "air_pct")],
)
def test_a_tone_puts_its_energy_in_its_band(freq_hz: float, band: str) -> None:
    d = dims(stereo(tone(freq_hz, 2.0, 48_000)), 48_000)
    assert d[band] > 0.99
    assert sum(d[name] for name in fpmod.spectral.BAND_NAMES) == pytest.approx(1.0, abs=1e-12)


def test_bass_mid_ratio_follows_the_balance() -> None:
    bass = dims(stereo(tone(100, 2.0) + 0.1 * tone(1000, 2.0)))["bass_mid_ratio"]
    mid = dims(stereo(0.1 * tone(100, 2.0) + tone(1000, 2.0)))["bass_mid_ratio"]
    assert bass == pytest.approx(20.0, abs=0.5)  # 20 dB more energy below 250 Hz
    assert mid == pytest.approx(-20.0, abs=0.5)


# --- loudness and crest -----------------------------------------------------------------------


def test_crest_of_a_full_scale_sine_is_3_01_db() -> None:
    d = dims(stereo(tone(1000, 5.0, 48_000, amplitude=1.0)), 48_000)
    assert d["crest_db"] == pytest.approx(3.0103, abs=0.01)


@pytest.mark.parametrize("sample_rate", [44_100, 48_000])
@pytest.mark.parametrize("freq_hz", [997.0, 40.0])
def test_crest_ignores_silence_after_the_sine(sample_rate: int, freq_hz: float) -> None:
    # 10 s of sine then 10 s of silence: silent granules fail the gate, and so does the K-filter's
    # ring-out after the stop (25-40 ms above -70 LUFS, worth ~0.012-0.017 dB if it counted).
    sine = stereo(tone(freq_hz, 10.0, sample_rate, amplitude=1.0))
    with_silence = np.concatenate([sine, np.zeros_like(sine)])
    alone, padded = dims(sine, sample_rate)["crest_db"], dims(with_silence, sample_rate)["crest_db"]
    assert alone == pytest.approx(3.0103, abs=0.002)
    assert padded == pytest.approx(alone, abs=0.002)


def test_crest_ignores_silence_on_both_sides_and_between() -> None:
    sine = stereo(tone(997, 4.0, 48_000, amplitude=1.0))
    # Not a whole number of 96-frame granules: all 4 edges fall mid-granule, so up to 4 x 95 silent
    # frames count against ~384,000 of sine, at most 0.0043 dB (measured 0.0025).
    gap = np.zeros((48_000 * 3 + 17, 2))
    gapped = np.concatenate([gap, sine, gap, sine[:-29], gap])
    assert dims(gapped, 48_000)["crest_db"] == pytest.approx(3.0103, abs=0.005)


def test_crest_control_counting_silence_would_fail_the_tolerance() -> None:
    # Control: the same sine with 10 s of quiet noise (-60 dBFS, above every gate) instead of
    # silence reads a clearly higher crest, so the test above would catch silence being counted.
    sine = stereo(tone(997, 10.0, 48_000, amplitude=1.0))
    hiss = stereo(noise(10.0, 48_000, amplitude=1e-3))
    assert dims(np.concatenate([sine, hiss]), 48_000)["crest_db"] > 3.0103 + 2.5


def test_crest_of_a_square_wave_is_zero() -> None:
    square = np.sign(np.sin(2 * np.pi * (np.arange(48_000 * 3) + 0.5) / 48))
    assert dims(stereo(square), 48_000)["crest_db"] == pytest.approx(0.0, abs=0.01)


def test_a_loudness_war_master_has_lower_crest_and_steadier_peaks(music: np.ndarray, music_fp: Fingerprint) -> None:
    crushed = fingerprint_from_samples(loudness_war(music), 22_050).dimensions
    original = music_fp.dimensions
    assert crushed["crest_db"] < original["crest_db"] - 5.0
    assert crushed["lufs"] > original["lufs"] + 5.0
    assert crushed["peak_consistency"] > original["peak_consistency"]
    assert crushed["dynamic_range_variation"] < original["dynamic_range_variation"]


def test_lufs_is_louder_for_a_louder_copy() -> None:
    quiet, loud = dims(stereo(tone(997, 3.0, amplitude=0.1))), dims(stereo(tone(997, 3.0, amplitude=0.4)))
    assert loud["lufs"] - quiet["lufs"] == pytest.approx(20 * math.log10(4), abs=0.01)


# --- rhythm -----------------------------------------------------------------------------------


@pytest.mark.parametrize("bpm", [120.0, 90.0, 150.0])
def test_click_track_tempo(bpm: float) -> None:
    d = dims(click_track(bpm, 12.0), 44_100)
    assert d["tempo_bpm"] == pytest.approx(bpm, abs=2.0)
    assert d["transient_density"] == pytest.approx(bpm / 60.0, abs=0.2)


def test_music_tempo_is_its_beat(music_fp: Fingerprint) -> None:
    assert music_fp.dimensions["tempo_bpm"] == pytest.approx(120.0, abs=2.0)


def test_rhythm_stability_and_transients_separate_a_beat_from_noise() -> None:
    beat = dims(click_track(120.0, 10.0), 44_100)
    hiss = dims(stereo(noise(10.0, 44_100)), 44_100)
    assert beat["rhythm_stability"] > 0.5 > hiss["rhythm_stability"]
    assert hiss["tempo_bpm"] == 0.0  # no onsets, no tempo
    dense = dims(click_track(200.0, 10.0), 44_100)["transient_density"]
    assert dense > beat["transient_density"] > hiss["transient_density"]


# --- silence ratio ----------------------------------------------------------------------------


def test_silence_ratio_counts_silent_time() -> None:
    half = np.concatenate([tone(440, 3.0), np.zeros(3 * SR)])
    assert dims(stereo(half))["silence_ratio"] == pytest.approx(0.5, abs=0.02)
    assert dims(stereo(tone(440, 3.0)))["silence_ratio"] == 0.0


# --- spectral shape ---------------------------------------------------------------------------


def test_a_pure_tone_is_not_flat_and_noise_is() -> None:
    pure, hiss = dims(stereo(tone(440, 3.0))), dims(stereo(noise(3.0)))
    assert pure["spectral_flatness"] < 0.01
    assert hiss["spectral_flatness"] > 0.4


def test_centroid_and_rolloff_follow_the_spectrum() -> None:
    d = dims(stereo(tone(1000, 2.0)))
    assert d["spectral_centroid"] == pytest.approx(1000.0, abs=5.0)
    assert d["spectral_rolloff"] == pytest.approx(1000.0, abs=20.0)
    dark = dims(stereo(tone(200, 2.0) + 0.01 * tone(4000, 2.0)))
    bright = dims(stereo(0.01 * tone(200, 2.0) + tone(4000, 2.0)))
    assert bright["spectral_centroid"] > dark["spectral_centroid"] + 2000.0
    assert bright["spectral_rolloff"] > dark["spectral_rolloff"]


# --- tonal ------------------------------------------------------------------------------------


def random_notes(duration_s: float, note_s: float = 0.04, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    n = int(duration_s * SR)
    per_note = int(note_s * SR)
    freqs = 440.0 * 2.0 ** (rng.integers(-12, 12, n // per_note + 1) / 12.0)
    return 0.5 * np.sin(2 * np.pi * np.cumsum(np.repeat(freqs, per_note)[:n]) / SR)


def test_harmonic_ratio_separates_tone_from_noise() -> None:
    assert dims(stereo(tone(220, 2.0)))["harmonic_ratio"] > 0.9
    assert dims(stereo(noise(2.0)))["harmonic_ratio"] < 0.2


def test_pitch_stability_is_high_for_a_held_note_and_low_for_jumping_notes() -> None:
    assert dims(stereo(tone(330, 3.0)))["pitch_stability"] > 0.9
    assert dims(stereo(random_notes(3.0)))["pitch_stability"] < 0.3


def test_chroma_energy_is_high_for_a_note_and_low_for_noise() -> None:
    assert dims(stereo(tone(440, 2.0)))["chroma_energy"] > 0.8
    assert dims(stereo(noise(2.0)))["chroma_energy"] < 0.15


# --- dynamics over time -----------------------------------------------------------------------


def test_loudness_variation_follows_level_changes() -> None:
    levels = np.repeat(np.tile([1.0, 0.1], 3), SR)  # 1 s loud, 1 s 20 dB down
    varying = dims(stereo(noise(6.0) * levels))["loudness_variation_std"]
    steady = dims(stereo(noise(6.0)))["loudness_variation_std"]
    assert varying == pytest.approx(10.0, abs=0.5)
    assert steady < 0.5


def test_dynamic_range_variation_follows_crest_changes() -> None:
    sine_or_noise = np.where(np.repeat(np.tile([True, False], 3), SR), 0.3 * tone(440, 6.0, amplitude=1.0), noise(6.0))
    assert dims(stereo(sine_or_noise))["dynamic_range_variation"] > 3.0
    assert dims(stereo(noise(6.0)))["dynamic_range_variation"] < 1.0


def test_peak_consistency_is_one_for_a_steady_tone_and_low_for_a_fading_one() -> None:
    assert dims(stereo(tone(440, 4.0)))["peak_consistency"] == pytest.approx(1.0, abs=1e-3)
    fading = tone(440, 6.0) * np.repeat(0.5 ** np.arange(6), SR)
    assert dims(stereo(fading))["peak_consistency"] < 0.3


# --- stereo -----------------------------------------------------------------------------------


def test_mono_reads_width_0_and_correlation_1() -> None:
    for samples in (noise(2.0)[:, None], stereo(noise(2.0))):
        d = dims(samples)
        assert d["stereo_width"] == pytest.approx(0.0, abs=1e-6)
        assert d["phase_correlation"] == pytest.approx(1.0, abs=1e-6)


def test_wide_and_anti_phase_stereo() -> None:
    left, right = noise(2.0, seed=1), noise(2.0, seed=2)
    wide = dims(np.stack([left, right], axis=1))
    assert wide["stereo_width"] == pytest.approx(0.5, abs=0.03)
    assert wide["phase_correlation"] == pytest.approx(0.0, abs=0.03)
    anti = dims(np.stack([left, -left], axis=1))
    assert anti["stereo_width"] == pytest.approx(1.0, abs=1e-6)
    assert anti["phase_correlation"] == pytest.approx(-1.0, abs=1e-6)


def test_multichannel_uses_the_stereo_downmix() -> None:
    five_one = make_music(3.0, 22_050, seed=4, channels=6)
    fp = fingerprint_from_samples(five_one, 22_050)
    assert fp.measurements["channels"] == 6
    assert all(math.isfinite(v) for v in fp.dimensions.values())


# --- undefined values -------------------------------------------------------------------------

SILENT_VALUES = {
    "lufs": -70.0, "crest_db": 0.0, "bass_mid_ratio": 0.0, "tempo_bpm": 0.0, "rhythm_stability": 0.0,
    "transient_density": 0.0, "silence_ratio": 1.0, "spectral_centroid": 0.0, "spectral_rolloff": 0.0,
    "spectral_flatness": 0.0, "harmonic_ratio": 0.0, "pitch_stability": 0.0, "chroma_energy": 0.0,
    "dynamic_range_variation": 0.0, "loudness_variation_std": 0.0, "peak_consistency": 1.0,
    "stereo_width": 0.0, "phase_correlation": 1.0,
    **{name: 1.0 / 7.0 for name in fpmod.spectral.BAND_NAMES},
}  # fmt: skip


@pytest.mark.parametrize("num_frames", [1, 100, SR * 3])
def test_silence_and_very_short_silence_read_the_documented_values(num_frames: int) -> None:
    fp = fingerprint_from_samples(np.zeros((num_frames, 2), dtype=np.float32), SR)
    assert fp.dimensions == pytest.approx(SILENT_VALUES, abs=1e-12)
    for key in ("integrated_lufs", "true_peak_dbtp", "sample_peak_dbfs", "plr_db", "max_momentary_lufs"):
        assert fp.measurements[key] == -math.inf
    assert fp.measurements["loudness_range_lu"] == 0.0
    text = json.dumps(fp.to_json_dict(), allow_nan=False)
    assert json.loads(text)["measurements"]["integrated_lufs"] is None
    assert Fingerprint.from_json_dict(json.loads(text)) == fp


def test_very_short_sound_is_finite() -> None:
    fp = fingerprint_from_samples(stereo(tone(440, 0.05)), SR)  # shorter than one 400 ms block
    assert all(math.isfinite(v) for v in fp.dimensions.values())
    assert fp.dimensions["lufs"] == -70.0  # no complete block: integrated loudness is undefined
    assert fp.dimensions["crest_db"] == pytest.approx(3.0103, abs=0.01)  # ~2 ms granules: still measured
    assert fp.dimensions["low_mid_pct"] > 0.9  # the band energy is real: 440 Hz sits in 250-500 Hz
    blip = fingerprint_from_samples(stereo(tone(440, 0.001)), SR)  # 16 frames, under one 32-frame granule
    assert blip.dimensions["crest_db"] == 0.0


def test_bad_in_memory_input_raises_value_error() -> None:
    with pytest.raises(ValueError):
        fingerprint_from_samples(np.zeros((0, 2)), SR)
    with pytest.raises(ValueError):
        fingerprint_from_samples(np.zeros((100, 2)), 4_000)


# --- files, segments, determinism -------------------------------------------------------------


@pytest.fixture(scope="module")
def track(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A 65 s float WAV: three segments of 30 s, the last one short."""
    path = str(tmp_path_factory.mktemp("fp") / "track.wav")
    write_audio(path, make_music(65.0, 16_000, bpm=128, seed=5), 16_000)
    return path


@pytest.fixture(scope="module")
def track_fp(track: str) -> Fingerprint:
    return compute_fingerprint(track)


def test_file_and_in_memory_fingerprints_agree_and_repeat(track: str, track_fp: Fingerprint) -> None:
    samples, rate = AudioReader(track).read(0, AudioReader(track).info.num_frames), 16_000
    assert fingerprint_from_samples(samples, rate) == track_fp
    assert compute_fingerprint(track) == track_fp  # deterministic


def test_plan_inputs_alone_equal_the_full_fingerprint(track: str, track_fp: Fingerprint) -> None:
    plan = compute_plan_inputs(track)
    assert set(plan.dimensions) == set(PLAN_INPUT_KEYS)
    assert plan.dimensions == {k: track_fp.dimensions[k] for k in PLAN_INPUT_KEYS}
    assert plan.measurements == track_fp.measurements
    assert compute_detail_dimensions(track) == {k: v for k, v in track_fp.dimensions.items() if k not in PLAN_INPUT_KEYS}
    assert compute_fingerprint(track, plan_inputs=plan) == track_fp


def test_segments_merge_exactly_in_worker_processes_and_any_order(track: str, track_fp: Fingerprint) -> None:
    count = segment_count(track)
    assert count == 3
    with ProcessPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(analyze_segment, [track] * count, range(count)))
    # Small enough to ship between processes: ~120 kB, mostly the loudness meter's 2 ms granule energies.
    assert all(len(pickle.dumps(r)) < 256_000 for r in results)
    merged = merge_segments(track, list(reversed(results)))
    assert merged.dimensions == {k: track_fp.dimensions[k] for k in PLAN_INPUT_KEYS}
    assert merged.measurements == track_fp.measurements
    with pytest.raises(ValueError):
        merge_segments(track, results[:2])
    with pytest.raises(ValueError):  # a segment of another version of the file
        merge_segments(track, [*results[:2], dataclasses.replace(results[2], num_frames=results[2].num_frames + 1)])
    with pytest.raises(IndexError):
        analyze_segment(track, count)


def test_full_fingerprint_segments_merge_bit_for_bit_in_other_processes(track: str, track_fp: Fingerprint) -> None:
    """The cluster's split: every segment of both halves computed elsewhere, merged in any order."""
    count = segment_count(track)
    with ProcessPoolExecutor(max_workers=2) as pool:
        parts = list(pool.map(analyze_fingerprint_segment, [track] * count, range(count)))
    assert all(len(pickle.dumps(p)) < 512_000 for p in parts)  # what moves between machines per 30 s
    merged = merge_fingerprint_segments(track, [parts[2], parts[0], parts[1]])
    assert merged == track_fp  # every dimension and measurement to the last bit
    assert json.dumps(merged.to_json_dict()) == json.dumps(track_fp.to_json_dict())
    with pytest.raises(ValueError, match="cover"):
        merge_fingerprint_segments(track, parts[:2])
    with pytest.raises(ValueError, match="cover"):  # one segment twice, one missing
        merge_fingerprint_segments(track, [parts[0], parts[0], parts[2]])
    with pytest.raises(IndexError):
        analyze_fingerprint_segment(track, count)


@pytest.mark.parametrize("segment_s", [0.7, 4.0, 100.0])
def test_plan_inputs_do_not_depend_on_the_split(
    track: str, track_fp: Fingerprint, segment_s: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fpmod, "SEGMENT_S", segment_s)
    plan = compute_plan_inputs(track)
    for key in PLAN_INPUT_KEYS:
        assert plan.dimensions[key] == pytest.approx(track_fp.dimensions[key], rel=1e-9, abs=1e-12), key
    for key, value in track_fp.measurements.items():
        assert plan.measurements[key] == pytest.approx(value, rel=1e-9, abs=1e-9), key


def test_detail_pass_reads_one_segment_at_a_time(track: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bounded memory: no read asks for more than a segment plus its context."""
    sizes: list[int] = []
    original = AudioReader.read

    def recording_read(self: AudioReader, start: int, stop: int) -> np.ndarray:
        sizes.append(stop - start)
        return original(self, start, stop)

    monkeypatch.setattr(AudioReader, "read", recording_read)
    compute_fingerprint(track)
    assert len(sizes) == 3
    assert max(sizes) <= (fpmod.SEGMENT_S + 1.0) * 16_000


def test_json_round_trip_keeps_every_value(track_fp: Fingerprint) -> None:
    text = json.dumps(track_fp.to_json_dict(), allow_nan=False)
    assert Fingerprint.from_json_dict(json.loads(text)) == track_fp
    broken = json.loads(text)
    del broken["fingerprint"]["tempo_bpm"]
    with pytest.raises(ValueError):
        Fingerprint.from_json_dict(broken)


@pytest.mark.parametrize("sample_rate", [8_000, 11_025, 22_050, 44_100, 96_000, 192_000])
def test_every_supported_rate_reads_the_same_tone_alike(sample_rate: int) -> None:
    d = dims(stereo(tone(1000, 1.5, sample_rate)), sample_rate)
    assert d["mid_pct"] > 0.99
    assert d["spectral_centroid"] == pytest.approx(1000.0, abs=10.0)
    assert d["crest_db"] == pytest.approx(3.01, abs=0.02)
    assert d["harmonic_ratio"] > 0.9 and d["stereo_width"] == pytest.approx(0.0, abs=1e-6)
