"""The mastering plan: 2D LWRP regions and formulas, presets, intensity, neutral plan, JSON, cache keys."""

from __future__ import annotations

import json
import logging
import math
import pickle
import re

import numpy as np
import pytest

from auralis.errors import UnknownPresetError
from auralis.plan import (
    BAND_KEYS,
    DYNAMIC_LOUD_PEAK_DBTP,
    GAIN_CAP_DB,
    REFERENCE_BAND_BALANCE,
    MasteringPlan,
    adaptive_correction_db,
    eq_loudness_change_db,
    plan_mastering,
)
from auralis.presets import PRESET_NAMES, PRESETS, get_preset

BALANCED = dict(zip(BAND_KEYS, REFERENCE_BAND_BALANCE, strict=True))


def inputs(lufs: float, crest_db: float, true_peak_dbtp: float | None = None, **bands: float) -> dict:
    d = {"lufs": lufs, "crest_db": crest_db, **BALANCED, **bands}
    if true_peak_dbtp is not None:
        d["true_peak_dbtp"] = true_peak_dbtp
    return d


def test_compressed_loud_expansion_and_turn_down_only() -> None:
    plan = plan_mastering(inputs(-8.2, 8.5, -0.3), "adaptive", 1.0)
    assert plan.region == "compressed_loud"
    assert plan.expansion_factor == pytest.approx(0.45)
    assert plan.expander_factor == pytest.approx(0.45)
    assert plan.gain_db <= 0.0
    assert plan.target_lufs == pytest.approx(-14.0, abs=0.01)
    assert plan.comp_ratio == 1.0  # no downward compression of a crushed master
    line = plan.decisions[0]
    assert re.fullmatch(
        r"\[2D LWRP\] compressed loud \(LUFS -8\.2, crest 8\.5 dB\) -> expansion 0\.45, gain -\d+\.\d dB, "
        r"target -14\.0 LUFS",
        line,
    ), line
    assert plan.decision == line


@pytest.mark.parametrize(("crest", "factor"), [(12.9, 0.1), (11.0, 0.2), (8.5, 0.45), (3.0, 0.5), (-5.0, 0.5)])
def test_expansion_factor_is_clamped_formula(crest: float, factor: float) -> None:
    plan = plan_mastering(inputs(-9.0, crest, -0.5), "gentle", 1.0)
    assert plan.region == "compressed_loud"
    assert plan.expansion_factor == pytest.approx(factor, abs=1e-9)


def test_compressed_loud_never_turns_up() -> None:
    # Just above the loud threshold with a loud preset target: T - L would be positive.
    plan = plan_mastering(inputs(-11.9, 9.0, -1.0), "bright", 1.0)
    assert plan.region == "compressed_loud"
    assert plan.gain_db <= 0.0


def test_dynamic_loud_gain_formula_keeps_peak_margin() -> None:
    plan = plan_mastering(inputs(-10.0, 15.0, 3.0), "adaptive", 1.0)
    assert plan.region == "dynamic_loud"
    assert plan.comp_ratio == 1.0 and plan.expander_factor == 0.0  # no dynamics
    # adaptive: flat EQ in dynamic_loud, so gain = min(T - L, -1.5 - TP) exactly
    assert plan.eq_gains_db == (0.0, 0.0, 0.0, 0.0)
    assert plan.gain_db == pytest.approx(min(-14.0 - -10.0, DYNAMIC_LOUD_PEAK_DBTP - 3.0), abs=1e-3)
    plan2 = plan_mastering(inputs(-11.0, 14.0, -4.0), "adaptive", 1.0)
    assert plan2.gain_db == pytest.approx(-14.0 - -11.0, abs=1e-3)
    assert plan2.target_lufs == pytest.approx(-14.0, abs=0.01)
    for name in PRESET_NAMES:
        p = plan_mastering(inputs(-10.0, 15.0, 3.0), name, 1.0)
        assert p.gain_db <= DYNAMIC_LOUD_PEAK_DBTP - 3.0 + 1e-9  # peak after EQ and gain <= -1.5 dBTP


@pytest.mark.parametrize("name", PRESET_NAMES)
def test_quiet_gain_reaches_target_and_cap_sets_bound_hit(name: str) -> None:
    target = PRESETS[name].target_lufs
    plan = plan_mastering(inputs(-25.0, 14.0, -9.5), name, 1.0)
    assert plan.region == "quiet"
    assert plan.bound_hit is False
    assert plan.target_lufs == pytest.approx(target, abs=0.01)
    assert plan.comp_ratio == pytest.approx(PRESETS[name].comp_ratio)
    very_quiet = plan_mastering(inputs(-50.0, 14.0, -35.0), name, 1.0)
    assert very_quiet.bound_hit is True
    assert very_quiet.gain_db == pytest.approx(GAIN_CAP_DB)
    assert very_quiet.target_lufs < target - 5
    assert any(line.startswith("[bound]") for line in very_quiet.decisions)


def test_normal_region_is_everything_else() -> None:
    # Not loud, but within 1 LU of the target (or above it).
    assert plan_mastering(inputs(-14.5, 12.0, -3.0), "adaptive", 1.0).region == "normal"
    assert plan_mastering(inputs(-12.0, 10.0, -2.0), "adaptive", 1.0).region == "normal"  # L == -12 is not loud
    assert plan_mastering(inputs(-15.5, 12.0, -3.0), "adaptive", 1.0).region == "quiet"
    normal = plan_mastering(inputs(-13.0, 16.0, 2.0), "adaptive", 1.0)
    assert normal.region == "normal" and normal.gain_db < 0  # turned down to the target


def test_limiter_reduction_is_planned_at_most_6_db() -> None:
    # Crest so high that reaching the target would need > 6 dB of limiting: the gain is lowered.
    plan = plan_mastering(inputs(-30.0, 26.0, -3.0), "bright", 1.0)
    assert plan.region == "quiet"
    assert -3.0 + eq_loudness_change_db(np.array(REFERENCE_BAND_BALANCE), plan.eq_gains_db) + plan.gain_db <= -1.0 + 6.0 + 1e-3
    assert plan.bound_hit is False
    assert any(line.startswith("[limiter] gain lowered") for line in plan.decisions)


def test_intensity_scales_parameters_and_zero_is_bypass() -> None:
    full = plan_mastering(inputs(-25.0, 14.0, -9.5, air_pct=0.01), "warm", 1.0)
    half = plan_mastering(inputs(-25.0, 14.0, -9.5, air_pct=0.01), "warm", 0.5)
    zero = plan_mastering(inputs(-25.0, 14.0, -9.5, air_pct=0.01), "warm", 0.0)
    assert half.gain_db == pytest.approx(full.gain_db / 2, abs=1e-3)
    assert half.eq_gains_db == pytest.approx(tuple(g / 2 for g in full.eq_gains_db), abs=1e-3)
    assert half.comp_ratio == pytest.approx(1 + (full.comp_ratio - 1) / 2)
    assert half.dc_depth == 0.5
    assert zero.gain_db == 0.0 and zero.eq_gains_db == (0.0, 0.0, 0.0, 0.0)
    assert zero.comp_ratio == 1.0 and zero.expander_factor == 0.0 and zero.dc_depth == 0.0
    assert zero.true_peak_ceiling_dbtp == -1.0  # the safety limiter stays
    war = plan_mastering(inputs(-7.0, 9.0, -0.2), "punchy", 0.5)
    assert war.expander_factor == pytest.approx(war.expansion_factor / 2)


def test_neutral_plan_without_fingerprint() -> None:
    plan = plan_mastering(None, "bright", 1.0)
    assert plan.neutral is True
    assert plan.gain_db == 0.0 and plan.eq_gains_db == (0.0, 0.0, 0.0, 0.0)
    assert plan.comp_ratio == 1.0 and plan.expander_factor == 0.0
    assert plan.true_peak_ceiling_dbtp == -1.0
    d = plan.to_dict()
    json.dumps(d, allow_nan=False)
    assert d["target_lufs"] is None and d["region"] == "normal"
    assert "neutral" in plan.decisions[0]


def test_to_dict_is_json_safe_with_required_keys() -> None:
    plan = plan_mastering(inputs(-8.2, 8.5, float("-inf")), "adaptive", 1.0)
    d = plan.to_dict()
    text = json.dumps(d, allow_nan=False)
    back = json.loads(text)
    for key in ("region", "expansion_factor", "gain_db", "target_lufs", "bound_hit", "preset", "intensity",
                "true_peak_ceiling_dbtp", "eq_gains_db", "decisions"):
        assert key in back
    assert back["region"] == "compressed_loud"
    assert back["input_true_peak_dbtp"] is None


def test_accepts_fingerprint_plan_inputs_and_mapping() -> None:
    from auralis.fingerprint import PlanInputs, fingerprint_from_samples
    from auralis.synth import make_music

    fp = fingerprint_from_samples(make_music(6.0, 44_100, seed=4), 44_100)
    mapping = {k: fp.dimensions[k] for k in ("lufs", "crest_db", *BAND_KEYS)}
    mapping["true_peak_dbtp"] = fp.measurements["true_peak_dbtp"]
    pi = PlanInputs(dimensions={k: fp.dimensions[k] for k in ("lufs", "crest_db", *BAND_KEYS)},
                    measurements=dict(fp.measurements))
    a, b, c = (plan_mastering(x, "adaptive", 0.7) for x in (fp, pi, mapping))
    assert a == b == c
    assert a.cache_key() == b.cache_key() == c.cache_key()
    assert a.input_true_peak_dbtp == pytest.approx(fp.measurements["true_peak_dbtp"], abs=1e-3)


def test_missing_true_peak_is_estimated_and_said() -> None:
    plan = plan_mastering(inputs(-10.0, 15.0), "adaptive", 1.0)
    assert math.isnan(plan.input_true_peak_dbtp)
    assert "estimated" in plan.decisions[2]


def test_errors_are_clear() -> None:
    with pytest.raises(UnknownPresetError) as exc:
        plan_mastering(inputs(-14, 12), "loud", 1.0)
    for name in PRESET_NAMES:
        assert name in str(exc.value)
    with pytest.raises(UnknownPresetError):
        get_preset("nope")
    for bad in (-0.1, 1.01, float("nan")):
        with pytest.raises(ValueError):
            plan_mastering(inputs(-14, 12), "adaptive", bad)
    with pytest.raises(ValueError, match="crest_db"):
        plan_mastering({"lufs": -14.0}, "adaptive", 1.0)


def test_cache_key_stable_and_sensitive() -> None:
    a = plan_mastering(inputs(-20.0, 14.0, -5.0), "adaptive", 1.0)
    again = plan_mastering(inputs(-20.0, 14.0, -5.0), "adaptive", 1.0)
    assert a.cache_key() == again.cache_key() and a == again and hash(a) == hash(again)
    keys = {plan_mastering(inputs(-20.0, 14.0, -5.0), name, i).cache_key()
            for name in PRESET_NAMES for i in (0.5, 1.0)}
    assert len(keys) == 2 * len(PRESET_NAMES)
    restored = pickle.loads(pickle.dumps(a))
    assert restored == a and restored.cache_key() == a.cache_key() and restored.decisions == a.decisions


def test_decisions_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="auralis.plan"):
        plan = plan_mastering(inputs(-25.0, 14.0, -9.0), "gentle", 1.0)
    assert plan.decisions[0] in caplog.messages
    assert plan.decisions[0].startswith("[2D LWRP] quiet (LUFS -25.0, crest 14.0 dB) -> gain +")


def test_adaptive_correction_moves_towards_reference() -> None:
    ref = np.array(REFERENCE_BAND_BALANCE)
    assert adaptive_correction_db(ref) == pytest.approx((0.0, 0.0, 0.0, 0.0), abs=1e-9)
    dull = ref.copy()
    dull[6] *= 0.25  # too little air
    dull /= dull.sum()
    assert adaptive_correction_db(dull)[3] > 1.0
    boomy = ref.copy()
    boomy[:2] *= 3.0  # too much bass
    boomy /= boomy.sum()
    low, *_ = adaptive_correction_db(boomy)
    assert low < -1.0
    extreme = np.array([0.9, 0.09, 0.005, 0.002, 0.001, 0.001, 0.001])
    assert all(abs(g) <= 3.0 for g in adaptive_correction_db(extreme))


def test_warm_and_bright_differ_in_the_plan() -> None:
    warm = plan_mastering(inputs(-20.0, 14.0, -5.0), "warm", 1.0)
    bright = plan_mastering(inputs(-20.0, 14.0, -5.0), "bright", 1.0)
    assert warm.eq_gains_db[1] - bright.eq_gains_db[1] >= 3.0  # low-mid
    assert bright.eq_gains_db[3] - warm.eq_gains_db[3] >= 4.0  # air
    assert isinstance(warm, MasteringPlan)


def test_original_gain_matches_the_master_but_keeps_the_original_under_the_ceiling() -> None:
    # Turned down (a crushed master): the level match is exact, the ceiling does not bind.
    loud = plan_mastering(inputs(-8.2, 8.5, -0.3), "adaptive", 1.0)
    assert loud.original_gain_db == pytest.approx(loud.target_lufs - loud.input_lufs, abs=1e-4)
    # Quiet with headroom: raised to the master's loudness.
    roomy = plan_mastering(inputs(-20.0, 12.0, -9.0), "adaptive", 1.0)
    assert roomy.original_gain_db == pytest.approx(roomy.target_lufs - roomy.input_lufs, abs=1e-4)
    # Quiet with high peaks: raised only until its true peak reaches -1 dBTP less the 4x margin.
    peaky = plan_mastering(inputs(-20.0, 18.0, -0.5), "adaptive", 1.0)
    assert peaky.original_gain_db == pytest.approx(-1.0 - 0.3 + 0.5, abs=1e-4)
    assert peaky.original_gain_db < peaky.target_lufs - peaky.input_lufs
    assert peaky.to_dict()["original_gain_db"] == peaky.original_gain_db
    assert plan_mastering(None, "adaptive", 1.0).original_gain_db == 0.0  # neutral: nothing to match
