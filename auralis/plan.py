"""The mastering plan: a pure, deterministic, explainable function of fingerprint, preset and intensity.

``plan_mastering`` places the track on the 2D LWRP plane (loudness-war restraint: BS.1770
integrated loudness L against crest factor C, thresholds -12.0 LUFS and 13.0 dB), picks the
region's strategy, derives the tonal correction from the seven band fractions, combines it
with the preset's character and scales every parameter by the intensity. The result is a
frozen :class:`MasteringPlan`: all a worker needs, with the audio, to render any chunk.

Regions (T = preset target loudness, TP = true peak after EQ):

* ``compressed_loud`` (L > -12, C < 13): upward transient expansion with factor
  ``clamp((13 - C) / 10, 0.1, 0.5)``, then a static gain <= 0 dB towards T (turn down, never up).
* ``dynamic_loud`` (L > -12, C >= 13): no dynamics, tonal shaping only, static gain
  ``min(T - L_eq, -1.5 - TP)`` so the limiter stays idle and the PLR is kept.
* ``quiet`` (L <= -12 and L < T - 1) and ``normal`` (every other case): gain ``T - L_eq``
  capped at +20 dB (``bound_hit``), the preset's gentle compression, at most 6 dB of limiter
  gain reduction.

A track whose loudness cannot be measured (L at the -70 LUFS absolute gate: no 400 ms block above
it, because the track is silent or shorter than one block) gets no gain, EQ or dynamics, only the
safety limiter: without a loudness there is nothing to aim the gain from (a 0.3 s sound effect at
-10 dBTP would otherwise read as "quiet" and be pushed into the limiter).

``L_eq`` is the loudness after EQ, predicted from the band fractions (K-weighted).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Final

import numpy as np

from . import kernels
from .presets import PRESET_NAMES, get_preset
from .stages.eq import eq_response_db

log = logging.getLogger("auralis.plan")

ENGINE_VERSION: Final = "1.1"  # bump whenever the rendered audio of a plan changes (1.1: stereo downmix first)

LWRP_LOUD_LUFS: Final = -12.0  # 2D LWRP loudness threshold (issue 3)
LWRP_CREST_DB: Final = 13.0  # 2D LWRP crest threshold (issue 3)
EXPANSION_MIN: Final = 0.1
EXPANSION_MAX: Final = 0.5
GAIN_CAP_DB: Final = 20.0  # largest static gain in the quiet / normal regions
LIMITER_MAX_GR_DB: Final = 6.0  # largest planned limiter gain reduction (quiet / normal)
TRUE_PEAK_CEILING_DBTP: Final = -1.0  # every streaming platform's ceiling
DYNAMIC_LOUD_PEAK_DBTP: Final = -1.5  # dynamic_loud keeps its true peak at or below this
QUIET_MARGIN_LU: Final = 1.0  # "quiet" means more than this below the target
UNMEASURED_LUFS: Final = -70.0  # a fingerprint's `lufs` when no block passes the absolute gate (ITU-R BS.1770-4)
DYNAMIC_LOUD_EQ_SCALE: Final = 0.5  # dynamic_loud applies half the preset's character (respect the master)
# The input true peak is a BS.1770 4x reading, which under-reads an 8x one by up to ~0.3 dB (EBU
# Tech 3341 case 17): the A/B original keeps this much more headroom below the ceiling.
ORIGINAL_PEAK_MARGIN_DB: Final = 0.3

BAND_KEYS: Final = ("sub_bass_pct", "bass_pct", "low_mid_pct", "mid_pct", "upper_mid_pct", "presence_pct", "air_pct")
BAND_EDGES_HZ: Final = (20.0, 60.0, 250.0, 500.0, 2000.0, 4000.0, 8000.0, 20000.0)  # fingerprint bands (issue 2)
BAND_CENTRES_HZ: Final = tuple(math.sqrt(lo * hi) for lo, hi in itertools.pairwise(BAND_EDGES_HZ))
# Reference tonal balance: approximate long-term energy fractions of balanced pop/rock masters
# (about -4.5 dB/octave above 250 Hz). The adaptive EQ moves a track part of the way towards it.
REFERENCE_BAND_BALANCE: Final = (0.08, 0.32, 0.15, 0.25, 0.09, 0.07, 0.04)
ADAPTIVE_STRENGTH: Final = 0.5  # fraction of the deviation from the reference that is corrected
ADAPTIVE_MAX_DB: Final = 3.0  # largest adaptive correction per EQ band
# Which fingerprint bands each EQ band (low shelf, low-mid bell, presence bell, high shelf) answers for.
_EQ_BAND_SOURCES: Final = ((0, 1), (2,), (4, 5), (6,))
_MID_BAND: Final = 3

# Loudness predictions for gain staging (calibrated on synthesised music, see docs/mastering.md).
EXPANDER_LOUDNESS_DB_PER_FACTOR: Final = 2.4  # loudness added by the transient expander per unit factor
COMP_LOSS_DB_PER_LU: Final = 0.12  # loudness lost to compression per dB the 30 ms level exceeds threshold
LIMITER_LOSS_DB_PER_DB: Final = 0.12  # loudness lost per dB of limiter gain reduction at the peaks

# BS.1770-4 K-weighting at 48 kHz (two biquads), for the loudness-change prediction.
_K_SOS: Final = np.array(
    [
        [1.53512485958697, -2.69169618940638, 1.19839281085285, 1.0, -1.69065929318241, 0.73248077421585],
        [1.0, -2.0, 1.0, 1.0, -1.99004745483398, 0.99007225036621],
    ]
)


@dataclass(frozen=True)
class MasteringPlan:
    """Every decision of one track's mastering, with units. Frozen, hashable, picklable.

    Parameters marked *applied* are already scaled by ``intensity``.
    """

    preset: str
    intensity: float
    region: str  # compressed_loud | dynamic_loud | quiet | normal
    neutral: bool  # True when planned without a fingerprint
    input_lufs: float  # L (nan when neutral)
    input_crest_db: float  # C (nan when neutral)
    input_true_peak_dbtp: float  # nan when neutral or unknown
    preset_target_lufs: float  # T
    target_lufs: float  # predicted output loudness: the loudness the plan aims for (nan when neutral)
    gain_db: float  # applied static gain
    expansion_factor: float  # region's expansion factor at full intensity (0 outside compressed_loud)
    bound_hit: bool  # the +20 dB gain cap applied
    true_peak_ceiling_dbtp: float
    dc_depth: float  # applied: fraction of the DC estimate removed
    eq_gains_db: tuple[float, float, float, float]  # applied: low shelf, low-mid, presence, high shelf
    comp_ratio: float  # applied (1 = off)
    comp_threshold_dbfs: float
    comp_attack_ms: float
    comp_release_ms: float
    expander_factor: float  # applied: expansion_factor * intensity
    decisions: tuple[str, ...] = field(default=(), compare=False)

    @property
    def decision(self) -> str:
        """The 2D LWRP line (first decision)."""
        return self.decisions[0] if self.decisions else ""

    @property
    def original_gain_db(self) -> float:
        """Gain for the unprocessed A/B original: level-matched to the master, never above the ceiling.

        ``target_lufs - input_lufs`` (the original plays as loud as the master), lowered where that
        would lift the input's true peak above ``true_peak_ceiling_dbtp - ORIGINAL_PEAK_MARGIN_DB``:
        the original has no limiter, so a quiet track with high peaks plays quieter than its master
        rather than above -1 dBTP. 0 dB for a neutral plan or a silent track.
        """
        out, inp = float(self.target_lufs), float(self.input_lufs)
        if not (math.isfinite(out) and math.isfinite(inp)):
            return 0.0
        gain = out - inp
        peak = float(self.input_true_peak_dbtp)
        if math.isfinite(peak):
            gain = min(gain, self.true_peak_ceiling_dbtp - ORIGINAL_PEAK_MARGIN_DB - peak)
        return _round(gain, 4)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary: every field, non-finite numbers as ``None``, tuples as lists."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple):
                value = [_json_number(v) for v in value]
            else:
                value = _json_number(value)
            out[f.name] = value
        out["decision"] = self.decision
        out["original_gain_db"] = self.original_gain_db
        out["engine_version"] = ENGINE_VERSION
        return out

    def render_parameters(self) -> dict[str, Any]:
        """The fields that change the rendered audio (what :meth:`cache_key` hashes)."""
        keys = ("gain_db", "true_peak_ceiling_dbtp", "dc_depth", "eq_gains_db", "comp_ratio",
                "comp_threshold_dbfs", "comp_attack_ms", "comp_release_ms", "expander_factor")
        return {k: getattr(self, k) for k in keys}

    def cache_key(self) -> str:
        """Stable hex hash of the engine version and every parameter that changes the rendered audio."""
        payload = json.dumps({"engine": ENGINE_VERSION, **self.render_parameters()}, sort_keys=True, allow_nan=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:32]


def _json_number(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


@dataclass(frozen=True)
class _PlanNumbers:
    """The numbers a plan is made from."""

    lufs: float
    crest_db: float
    true_peak_dbtp: float  # NaN when unknown
    bands: np.ndarray  # band energy shares, summing to 1


def _inputs(fingerprint: Any) -> _PlanNumbers:
    """Normalise a Fingerprint, PlanInputs or mapping to the plan-input numbers."""
    if hasattr(fingerprint, "dimensions"):
        dims: Mapping[str, Any] = fingerprint.dimensions
        meas: Mapping[str, Any] = getattr(fingerprint, "measurements", {}) or {}
    elif isinstance(fingerprint, Mapping):
        dims = fingerprint.get("fingerprint", fingerprint) if isinstance(fingerprint.get("fingerprint"), Mapping) else fingerprint
        meas = fingerprint.get("measurements", fingerprint) if isinstance(fingerprint.get("measurements"), Mapping) else fingerprint
    else:
        raise TypeError(f"plan_mastering needs a Fingerprint, PlanInputs, mapping or None, not {type(fingerprint).__name__}")
    try:
        lufs, crest_db = float(dims["lufs"]), float(dims["crest_db"])
        bands = np.array([max(float(dims[k]), 0.0) for k in BAND_KEYS])
    except KeyError as exc:
        raise ValueError(f"fingerprint lacks plan input {exc.args[0]!r}") from None
    tp = meas.get("true_peak_dbtp")
    total = bands.sum()
    return _PlanNumbers(
        lufs=lufs if math.isfinite(lufs) else -70.0,
        crest_db=crest_db if math.isfinite(crest_db) else 0.0,
        true_peak_dbtp=float(tp) if tp is not None else math.nan,
        bands=bands / total if total > 0 else np.full(len(BAND_KEYS), 1.0 / len(BAND_KEYS)),
    )


def _k_weight_power(freqs_hz: np.ndarray) -> np.ndarray:
    h = kernels.freqz_sos(_K_SOS, np.asarray(freqs_hz), 48_000)
    return np.abs(h) ** 2


_K_AT_BANDS: Final = _k_weight_power(np.array(BAND_CENTRES_HZ))


def adaptive_correction_db(bands: np.ndarray) -> tuple[float, float, float, float]:
    """Tonal correction for the four EQ bands from the seven band fractions (each within +/-3 dB).

    Each band's shortfall against ``REFERENCE_BAND_BALANCE`` in dB is taken relative to the mid
    band's (so the correction is a shape, not a level), halved, mapped to the EQ band that covers
    it (energy-weighted where an EQ band covers two) and clamped.
    """
    ref = np.array(REFERENCE_BAND_BALANCE)
    deviation = 10.0 * np.log10(ref / np.maximum(bands, 1e-6))
    deviation -= deviation[_MID_BAND]
    gains = []
    for sources in _EQ_BAND_SOURCES:
        w = ref[list(sources)]
        g = ADAPTIVE_STRENGTH * float(np.sum(w * deviation[list(sources)]) / np.sum(w))
        gains.append(float(np.clip(g, -ADAPTIVE_MAX_DB, ADAPTIVE_MAX_DB)))
    return tuple(gains)  # type: ignore[return-value]


def eq_loudness_change_db(bands: np.ndarray, eq_gains_db: tuple[float, ...]) -> float:
    """Predicted change of K-weighted loudness when the EQ is applied to a track with these band fractions."""
    response = 10.0 ** (eq_response_db(eq_gains_db, np.array(BAND_CENTRES_HZ)) / 10.0)
    weights = bands * _K_AT_BANDS
    return float(10.0 * np.log10(np.sum(weights * response) / max(np.sum(weights), 1e-30)))


def _round(x: float, nd: int = 4) -> float:
    return float(round(float(x), nd)) if math.isfinite(x) else float(x)


def plan_mastering(fingerprint: Any, preset: str, intensity: float) -> MasteringPlan:
    """Plan the mastering of one track.

    Args:
        fingerprint: a ``Fingerprint``, a ``PlanInputs``, a mapping with the plan-input keys
            (``lufs``, ``crest_db``, the seven ``*_pct`` band fractions, optionally
            ``true_peak_dbtp``), or ``None`` for the neutral plan.
        preset: one of ``PRESET_NAMES``.
        intensity: 0 (bypass, only the safety limiter) to 1 (the full plan).

    Returns:
        The frozen plan; its ``decisions`` are also logged at INFO on ``auralis.plan``.

    Raises:
        UnknownPresetError: unknown preset name.
        ValueError: intensity outside [0, 1] or not finite; a mapping missing a plan input.
    """
    p = get_preset(preset)
    intensity = float(intensity)
    if not (math.isfinite(intensity) and 0.0 <= intensity <= 1.0):
        raise ValueError(f"intensity must be within [0, 1], got {intensity}")
    intensity = _round(intensity, 6)
    comp_threshold = p.target_lufs + p.comp_threshold_lu
    common: dict[str, Any] = dict(
        preset=p.name,
        intensity=intensity,
        preset_target_lufs=p.target_lufs,
        true_peak_ceiling_dbtp=TRUE_PEAK_CEILING_DBTP,
        dc_depth=intensity,
        comp_attack_ms=p.comp_attack_ms,
        comp_release_ms=p.comp_release_ms,
        comp_threshold_dbfs=comp_threshold,
    )
    if fingerprint is None:
        decisions = (
            "[2D LWRP] no fingerprint -> neutral plan: gain 0.0 dB, no EQ, no dynamics; "
            f"DC removal and the {TRUE_PEAK_CEILING_DBTP:.1f} dBTP safety limiter only",
            f"[preset] {p.name} at intensity {intensity:.2f} (character not applied without a fingerprint)",
        )
        plan = MasteringPlan(
            region="normal", neutral=True, input_lufs=math.nan, input_crest_db=math.nan,
            input_true_peak_dbtp=math.nan, target_lufs=math.nan, gain_db=0.0, expansion_factor=0.0,
            bound_hit=False, eq_gains_db=(0.0, 0.0, 0.0, 0.0), comp_ratio=1.0, expander_factor=0.0,
            decisions=decisions, **common,
        )
        _log(plan)
        return plan

    inputs = _inputs(fingerprint)
    lufs, crest, bands = inputs.lufs, inputs.crest_db, inputs.bands
    tp_in = inputs.true_peak_dbtp
    tp_known = math.isfinite(tp_in) or tp_in == -math.inf
    if lufs <= UNMEASURED_LUFS:
        decisions = (
            f"[2D LWRP] loudness not measurable (LUFS {lufs:.1f}: silent, or shorter than one 400 ms block) "
            f"-> gain 0.0 dB, no EQ, no dynamics; DC removal and the {TRUE_PEAK_CEILING_DBTP:.1f} dBTP "
            "safety limiter only",
            f"[preset] {p.name} at intensity {intensity:.2f} (character not applied without a loudness)",
        )
        plan = MasteringPlan(
            region="quiet", neutral=False, input_lufs=_round(lufs), input_crest_db=_round(crest),
            input_true_peak_dbtp=_round(tp_in) if tp_known else math.nan, target_lufs=math.nan, gain_db=0.0,
            expansion_factor=0.0, bound_hit=False, eq_gains_db=(0.0, 0.0, 0.0, 0.0), comp_ratio=1.0,
            expander_factor=0.0, decisions=decisions, **common,
        )
        _log(plan)
        return plan
    # Without a measured true peak, estimate it from loudness and crest (sample peak + 0.5 dB).
    tp = tp_in if tp_known else lufs + crest + 0.5
    target = p.target_lufs

    dynamic_loud = lufs > LWRP_LOUD_LUFS and crest >= LWRP_CREST_DB
    character: tuple[float, ...] = (p.low_shelf_db, p.low_mid_db, p.presence_db, p.high_shelf_db)
    if dynamic_loud:
        character = tuple(DYNAMIC_LOUD_EQ_SCALE * g for g in character)
    # dynamic_loud respects the original master: the preset's character only, no adaptive correction.
    adaptive = (0.0, 0.0, 0.0, 0.0) if dynamic_loud else adaptive_correction_db(bands)
    eq_full = tuple(_round(p.adaptive_eq_weight * a + c, 3) for a, c in zip(adaptive, character, strict=True))
    eq_applied = tuple(_round(g * intensity, 4) for g in eq_full)
    d_eq_full = eq_loudness_change_db(bands, eq_full)
    d_eq = eq_loudness_change_db(bands, eq_applied)
    # Conservative true peak after EQ: the largest boost of the curve applies to the peak.
    tp_eq_full = tp + max(0.0, max(eq_full))
    lufs_eq_full = lufs + d_eq_full

    expansion = 0.0
    comp_ratio_full = 1.0
    bound_hit = False
    notes: list[str] = []
    if lufs > LWRP_LOUD_LUFS and crest < LWRP_CREST_DB:
        region = "compressed_loud"
        expansion = float(np.clip((LWRP_CREST_DB - crest) / 10.0, EXPANSION_MIN, EXPANSION_MAX))
        predicted = lufs_eq_full + EXPANDER_LOUDNESS_DB_PER_FACTOR * expansion
        gain_full = min(0.0, target - predicted)
        loss_full = 0.0
        line = f"expansion {expansion:.2f}, gain {gain_full * intensity:+.1f} dB"
    elif dynamic_loud:
        region = "dynamic_loud"
        gain_full = min(target - lufs_eq_full, DYNAMIC_LOUD_PEAK_DBTP - tp_eq_full)
        loss_full = 0.0
        line = (f"no dynamics, gain {gain_full * intensity:+.1f} dB "
                f"(true peak <= {DYNAMIC_LOUD_PEAK_DBTP:.1f} dBTP, PLR kept)")
    else:
        region = "quiet" if lufs < target - QUIET_MARGIN_LU else "normal"
        comp_ratio_full = p.comp_ratio
        gain_full = target - lufs_eq_full
        loss_full = 0.0
        tp_eq_typical = tp + d_eq_full  # peaks move with the loudness (the conservative bound is for dynamic_loud)
        for _ in range(3):  # fixed point: losses depend on the gain
            peak_after = tp_eq_typical + gain_full
            level_peak = lufs_eq_full + gain_full + crest * 0.5  # typical loud-passage 30 ms level
            comp_over = max(0.0, level_peak - comp_threshold)
            comp_loss = COMP_LOSS_DB_PER_LU * comp_over * (1.0 - 1.0 / comp_ratio_full)
            limiter_gr = max(0.0, peak_after - comp_loss - TRUE_PEAK_CEILING_DBTP)
            loss_full = comp_loss + LIMITER_LOSS_DB_PER_DB * limiter_gr
            gain_full = target - lufs_eq_full + loss_full
        limiter_gr = tp_eq_typical + gain_full - TRUE_PEAK_CEILING_DBTP
        if limiter_gr > LIMITER_MAX_GR_DB:
            cut = limiter_gr - LIMITER_MAX_GR_DB
            gain_full -= cut
            notes.append(f"[limiter] gain lowered by {cut:.1f} dB to keep limiter gain reduction <= "
                         f"{LIMITER_MAX_GR_DB:.0f} dB")
        if gain_full > GAIN_CAP_DB:
            gain_full = GAIN_CAP_DB
            bound_hit = True
            notes.append(f"[bound] gain capped at +{GAIN_CAP_DB:.0f} dB: output stays below the target")
        line = f"gain {gain_full * intensity:+.1f} dB, compression {1 + (comp_ratio_full - 1) * intensity:.2f}:1"

    gain = _round(gain_full * intensity, 4)
    expander = _round(expansion * intensity, 4)
    predicted_out = lufs + d_eq + gain + EXPANDER_LOUDNESS_DB_PER_FACTOR * expander
    if region in ("quiet", "normal"):
        predicted_out -= loss_full * intensity
    names = {"compressed_loud": "compressed loud", "dynamic_loud": "dynamic loud", "quiet": "quiet", "normal": "normal"}
    lines = [
        f"[2D LWRP] {names[region]} (LUFS {lufs:.1f}, crest {crest:.1f} dB) -> {line}, "
        f"target {predicted_out:.1f} LUFS",
        f"[EQ] adaptive correction {_fmt_bands(adaptive)} x {p.adaptive_eq_weight:.1f} + {p.name} character "
        f"{_fmt_bands(character)} -> {_fmt_bands(eq_applied)} at intensity {intensity:.2f}",
        f"[limiter] true-peak ceiling {TRUE_PEAK_CEILING_DBTP:.1f} dBTP"
        + ("" if tp_known else f" (input true peak unknown, estimated {tp:.1f} dBTP)"),
        *notes,
    ]
    plan = MasteringPlan(
        region=region,
        neutral=False,
        input_lufs=_round(lufs),
        input_crest_db=_round(crest),
        input_true_peak_dbtp=_round(tp_in) if tp_known else math.nan,
        target_lufs=_round(predicted_out, 2),
        gain_db=gain,
        expansion_factor=_round(expansion),
        bound_hit=bound_hit,
        eq_gains_db=eq_applied,  # type: ignore[arg-type]
        comp_ratio=_round(1.0 + (comp_ratio_full - 1.0) * intensity, 4),
        expander_factor=expander,
        decisions=tuple(lines),
        **common,
    )
    _log(plan)
    return plan


def _fmt_bands(gains: tuple[float, ...]) -> str:
    return "[" + " ".join(f"{g:+.1f}" for g in gains) + "] dB"


def _log(plan: MasteringPlan) -> None:
    for line in plan.decisions:
        log.info("%s", line)


__all__ = [
    "ENGINE_VERSION",
    "MasteringPlan",
    "PRESET_NAMES",
    "adaptive_correction_db",
    "eq_loudness_change_db",
    "plan_mastering",
]
