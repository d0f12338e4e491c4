"""Measurable effects of mastering on synthesised music (drums + bass + pads), via the real chain.

Loudness is measured with ``auralis.loudness`` (BS.1770); true peak independently at 8x with
``scipy.signal.resample_poly``. Fingerprints come from ``auralis.fingerprint``.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from scipy import signal

from auralis.fingerprint import fingerprint_from_samples
from auralis.loudness import integrated_loudness, measure_loudness
from auralis.plan import plan_mastering
from auralis.presets import PRESET_NAMES, PRESETS
from auralis.render import render_samples
from auralis.synth import loudness_war, make_music
from tests.helpers import true_peak_8x

SR = 44_100
CEILING_DBTP = -1.0



def plr(x: np.ndarray) -> float:
    return true_peak_8x(x) - integrated_loudness(x, SR)


def at_lufs(x: np.ndarray, lufs: float) -> np.ndarray:
    return (np.asarray(x, dtype=np.float64) * 10 ** ((lufs - integrated_loudness(x, SR)) / 20)).astype(np.float32)


_FINGERPRINTS: dict[str, object] = {}


def fingerprint(x: np.ndarray):
    """The real fingerprint of ``x``, computed once per distinct signal (presets share it)."""
    key = hashlib.sha1(np.ascontiguousarray(x).tobytes()).hexdigest()
    if key not in _FINGERPRINTS:
        _FINGERPRINTS[key] = fingerprint_from_samples(x, SR)
    return _FINGERPRINTS[key]


def master(x: np.ndarray, preset: str, intensity: float = 1.0):
    plan = plan_mastering(fingerprint(x), preset, intensity)
    y, stats = render_samples(x, SR, plan)
    return y, stats, plan


def band_db(x: np.ndarray, lo: float, hi: float) -> float:
    f, p = signal.welch(np.mean(x, axis=1), SR, nperseg=8192)
    sel = (f >= lo) & (f < hi)
    return float(10 * np.log10(np.sum(p[sel]) + 1e-30))


@pytest.fixture(scope="module")
def music() -> np.ndarray:
    return make_music(8.0, SR, bpm=120, seed=21)


@pytest.fixture(scope="module")
def music_alt() -> np.ndarray:
    # Another groove, lightly bus-compressed (soft clip with 4 dB of drive): PLR about 14 dB.
    return loudness_war(make_music(8.0, SR, bpm=97, seed=8), drive_db=4.0, ceiling_dbfs=-1.0)


@pytest.mark.parametrize("preset", PRESET_NAMES)
@pytest.mark.parametrize("which", ["music", "music_alt"])
def test_quiet_music_lands_on_target(preset: str, which: str, request: pytest.FixtureRequest) -> None:
    x = at_lufs(request.getfixturevalue(which), -25.0)
    assert plr(x) <= 16.0
    y, stats, plan = master(x, preset)
    assert plan.region == "quiet"
    assert integrated_loudness(y, SR) == pytest.approx(PRESETS[preset].target_lufs, abs=1.0)
    assert stats["limiter_gr_db"] <= 6.0
    assert true_peak_8x(y) <= CEILING_DBTP


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_normal_music_lands_on_target(preset: str, music: np.ndarray) -> None:
    target = PRESETS[preset].target_lufs
    x = at_lufs(music, target - 0.5)  # within 1 LU of the target: "normal"
    y, _, plan = master(x, preset)
    assert plan.region == "normal"
    assert integrated_loudness(y, SR) == pytest.approx(target, abs=1.0)


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_compressed_loud_gains_dynamics_and_turns_down(preset: str, music: np.ndarray) -> None:
    x = loudness_war(music)
    y, stats, plan = master(x, preset)
    assert plan.region == "compressed_loud"
    assert stats["expander_boost_db"] > 1.0
    assert plr(y) >= plr(x) + 2.0
    assert integrated_loudness(y, SR) < integrated_loudness(x, SR)
    assert integrated_loudness(y, SR) == pytest.approx(PRESETS[preset].target_lufs, abs=1.5)
    assert true_peak_8x(y) <= CEILING_DBTP


@pytest.mark.parametrize("preset", PRESET_NAMES)
@pytest.mark.parametrize("lufs", [-11.0, -8.0])
def test_dynamic_loud_keeps_plr_and_limiter_idle(preset: str, lufs: float, music: np.ndarray) -> None:
    x = at_lufs(music, lufs)  # crest ~18 dB: peaks far above 0 dBFS (float)
    assert np.max(np.abs(x)) > 1.0
    y, stats, plan = master(x, preset)
    assert plan.region == "dynamic_loud"
    assert plan.comp_ratio == 1.0 and plan.expander_factor == 0.0
    assert plr(y) == pytest.approx(plr(x), abs=0.5)
    assert stats["limiter_gr_db"] <= 0.5
    assert true_peak_8x(y) <= CEILING_DBTP


def test_presets_differ_warm_vs_bright(music: np.ndarray) -> None:
    x = at_lufs(music, -18.0)
    ratios = {}
    for preset in ("warm", "bright"):
        y, _, _ = master(x, preset)
        low_mid = band_db(y, 250, 500)
        presence_air = 10 * np.log10(10 ** (band_db(y, 4000, 8000) / 10) + 10 ** (band_db(y, 8000, 20000) / 10))
        ratios[preset] = low_mid - presence_air
    assert ratios["warm"] - ratios["bright"] >= 2.0


def test_gentle_changes_the_input_least(music: np.ndarray) -> None:
    x = at_lufs(music, -17.0)
    x64 = x.astype(np.float64)
    change = {}
    for preset in PRESET_NAMES:
        y, _, _ = master(x, preset)
        change[preset] = float(np.sqrt(np.mean((y - x64) ** 2)) / np.sqrt(np.mean(x64**2)))
    assert min(change, key=change.get) == "gentle", change


def test_intensity_zero_is_identity_below_ceiling(music: np.ndarray) -> None:
    war = loudness_war(music)
    inputs = [(m * 10 ** ((-1.3 - true_peak_8x(m)) / 20)).astype(np.float32) for m in (music, war)]  # -1.3 dBTP
    for preset in PRESET_NAMES:
        for fp_input in inputs:
            y, stats, _ = master(fp_input, preset, 0.0)
            np.testing.assert_allclose(y, fp_input, atol=1e-6, rtol=0)
            assert stats["limiter_gr_db"] == 0.0


def test_intensity_zero_on_hot_input_only_touches_peaks(music: np.ndarray) -> None:
    x = (music * 10 ** (3.0 / 20)).astype(np.float32)  # float input peaking at +2 dBFS
    y, stats, _ = master(x, "adaptive", 0.0)
    assert true_peak_8x(y) <= CEILING_DBTP
    assert stats["limiter_gr_db"] > 2.0
    touched = np.abs(y - x).max(axis=1) > 1e-6
    assert 0.0 < touched.mean() < 0.5  # only around the peaks
    quiet_frames = ~touched
    np.testing.assert_allclose(y[quiet_frames], x[quiet_frames], atol=1e-6, rtol=0)


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_true_peak_ceiling_holds_everywhere(preset: str) -> None:
    music = make_music(6.0, SR, bpm=132, seed=5)
    inputs = {
        "quiet": at_lufs(music, -25.0),
        "crushed": loudness_war(music),
        "hot-float": (music * 10 ** (6.0 / 20)).astype(np.float32),
        "crushed-hot-float": loudness_war(music) * np.float32(10 ** (4.0 / 20)),
    }
    for name, x in inputs.items():
        fp = fingerprint(x)
        for intensity in (0.0, 0.5, 1.0):
            y, _ = render_samples(x, SR, plan_mastering(fp, preset, intensity))
            assert np.isfinite(y).all()
            assert true_peak_8x(y) <= CEILING_DBTP, (name, intensity)


def test_neutral_plan_is_safe(music: np.ndarray) -> None:
    x = (music * 10 ** (5.0 / 20)).astype(np.float32)
    y, _, plan = master(x, "punchy")  # planned normally ...
    neutral = plan_mastering(None, "punchy", 1.0)
    z, _ = render_samples(x, SR, neutral)
    assert true_peak_8x(z) <= CEILING_DBTP
    # neutral output keeps the level where it was not limited (no gain, no EQ)
    assert integrated_loudness(z, SR) == pytest.approx(integrated_loudness(x, SR), abs=1.5)
    assert plan.cache_key() != neutral.cache_key()


def test_silence_stays_silence_and_nothing_is_nan() -> None:
    x = np.zeros((SR * 3, 2), dtype=np.float32)
    for preset in PRESET_NAMES:
        y, _, plan = master(x, preset)
        assert plan.gain_db == 0.0 and not plan.bound_hit  # -70 LUFS: no loudness to aim a gain from
        assert np.isfinite(y).all() and np.max(np.abs(y)) == 0.0
    # near-silence plus a single click: finite, under the ceiling
    x[SR, :] = 1.5
    y, _, _ = master(x, "adaptive")
    assert np.isfinite(y).all() and true_peak_8x(y) <= CEILING_DBTP


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_a_sound_shorter_than_one_loudness_block_plays_at_its_own_level(preset: str, tmp_path) -> None:
    """A 0.3 s sound effect has no BS.1770 loudness (no 400 ms block): it keeps its level.

    Before, its -70 LUFS reading made it "quiet": +56 dB towards the target, cut back to the
    limiter's 6 dB, so a -10 dBFS blip played about 9 dB louder, squashed by the limiter.
    """
    from auralis.audio import write_audio
    from auralis.fingerprint import compute_plan_inputs

    t = np.arange(int(0.3 * SR)) / SR
    x = np.repeat((0.3 * np.sin(2 * np.pi * 330.0 * t))[:, None], 2, axis=1).astype(np.float32)
    write_audio(tmp_path / "blip.flac", x, SR)
    plan = plan_mastering(compute_plan_inputs(str(tmp_path / "blip.flac")), preset, 1.0)
    assert (plan.gain_db, plan.eq_gains_db, plan.comp_ratio, plan.expander_factor) == (0.0, (0.0,) * 4, 1.0, 0.0)
    assert "loudness not measurable" in plan.decision, plan.decision
    y, stats = render_samples(x, SR, plan)
    core = slice(int(0.05 * SR), int(0.25 * SR))  # away from the edges
    rms_in, rms_out = (float(np.sqrt(np.mean(a[core] ** 2))) for a in (x, y))
    assert 20 * np.log10(rms_out / rms_in) == pytest.approx(0.0, abs=0.5)
    assert stats["limiter_gr_db"] <= 0.1 and true_peak_8x(y) <= CEILING_DBTP


def test_dc_offset_is_removed_not_amplified(music: np.ndarray) -> None:
    x = (at_lufs(music, -25.0) + np.float32(0.05)).astype(np.float32)  # quiet track on a DC offset
    y, _, plan = master(x, "adaptive")
    assert plan.gain_db > 5.0
    core = slice(SR, -SR)  # away from the track edges
    assert abs(float(np.mean(y[core]))) < 0.05 * 0.05  # far below the input offset, despite the gain
    measure = measure_loudness(y, SR)
    assert np.isfinite(measure.integrated_lufs)


def test_mono_is_mastered_as_dual_mono(music: np.ndarray) -> None:
    mono = at_lufs(music, -22.0).mean(axis=1, keepdims=True)
    dual = np.repeat(mono, 2, axis=1)
    for preset in ("adaptive", "bright"):
        y_dual, _, plan = master(dual, preset)
        assert np.array_equal(y_dual[:, 0], y_dual[:, 1])
        y_mono, _ = render_samples(mono, SR, plan)  # same plan, one channel in
        assert y_mono.shape == dual.shape  # stereo out: what a listener hears
        np.testing.assert_array_equal(y_mono, y_dual)
