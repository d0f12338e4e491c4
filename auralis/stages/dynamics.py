"""Envelope-based dynamics: a look-ahead compressor and an upward transient expander.

Both read a stereo-linked level (mean power over channels, so the image does not move and
mono stays mono) computed per envelope block (:data:`~auralis.stages.blocks.BLOCK_FRAMES`)
with finite windows only (running sums, sliding max/min), and produce a per-block gain in dB
that the renderer interpolates to the frame rate. Nothing here is per-sample waveshaping:
the gain moves over milliseconds.
"""

from __future__ import annotations

from typing import Final

import numpy as np

from .blocks import BLOCK_FRAMES, block_power, moving_average, ms_to_blocks, sliding_min, upsample_blocks

COMP_RMS_WINDOW_MS: Final = 30.0  # compressor level detector: centred RMS window
COMP_KNEE_DB: Final = 6.0  # soft knee width
EXP_FAST_WINDOW_MS: Final = 3.0  # transient detector: fast centred RMS window
EXP_SLOW_WINDOW_MS: Final = 120.0  # transient detector: slow centred RMS window (the "body")
EXP_SMOOTH_MS: Final = 2.0  # smoothing of the expander gain
EXP_SCALE: Final = 2.0  # boost dB per dB of (fast - slow) level, per unit of expansion factor
EXP_MAX_BOOST_DB: Final = 9.0  # cap of the transient boost
EXP_GATE_DBFS: Final = -60.0  # full transient boost above this body level, fading to none 10 dB below
_POWER_FLOOR: Final = 1e-20  # -200 dB, keeps log10 finite on digital silence


def _comp_blocks(sample_rate: int, attack_ms: float, release_ms: float) -> tuple[int, int, int, int]:
    rms_half = ms_to_blocks(COMP_RMS_WINDOW_MS / 2, sample_rate)
    attack = ms_to_blocks(attack_ms, sample_rate)
    release = ms_to_blocks(release_ms, sample_rate)
    return rms_half, attack, release, max(attack // 2, 1)


def compressor_support_frames(sample_rate: int, attack_ms: float, release_ms: float) -> tuple[int, int]:
    """Frames ``(back, ahead)`` one output frame of the compressor depends on."""
    rms_half, attack, release, smooth = _comp_blocks(sample_rate, attack_ms, release_ms)
    return (rms_half + release + smooth + 2) * BLOCK_FRAMES, (rms_half + attack + smooth + 2) * BLOCK_FRAMES


def compressor_gain_db(
    power: np.ndarray,
    sample_rate: int,
    *,
    threshold_dbfs: float,
    ratio: float,
    attack_ms: float,
    release_ms: float,
) -> np.ndarray:
    """Per-block gain (dB, <= 0) of a soft-knee compressor with look-ahead attack and held release.

    Args:
        power: per-block mean power (:func:`~auralis.stages.blocks.block_power`).
        threshold_dbfs: threshold on the 30 ms RMS level (dB relative to full-scale power).
        ratio: compression ratio (> 1).
        attack_ms: the gain ramps down over about this time *before* the level rises (look-ahead).
        release_ms: the gain holds this long after the level falls, then ramps back.
    """
    rms_half, attack, release, smooth = _comp_blocks(sample_rate, attack_ms, release_ms)
    level_db = 10.0 * np.log10(np.maximum(moving_average(power, rms_half), _POWER_FLOOR))
    over = level_db - threshold_dbfs
    slope = 1.0 / ratio - 1.0  # negative
    knee = COMP_KNEE_DB
    gr_db = np.where(
        over <= -knee / 2,
        0.0,
        np.where(over >= knee / 2, slope * over, slope * np.square(over + knee / 2) / (2 * knee)),
    )
    return moving_average(sliding_min(gr_db, release, attack), smooth)


def _exp_blocks(sample_rate: int) -> tuple[int, int, int]:
    return (
        ms_to_blocks(EXP_FAST_WINDOW_MS / 2, sample_rate),
        ms_to_blocks(EXP_SLOW_WINDOW_MS / 2, sample_rate),
        ms_to_blocks(EXP_SMOOTH_MS / 2, sample_rate),
    )


def expander_support_frames(sample_rate: int) -> tuple[int, int]:
    """Frames ``(back, ahead)`` one output frame of the transient expander depends on."""
    fast, slow, smooth = _exp_blocks(sample_rate)
    frames = (max(fast, slow) + smooth + 2) * BLOCK_FRAMES
    return frames, frames


def expander_gain_db(power: np.ndarray, sample_rate: int, factor: float) -> np.ndarray:
    """Per-block boost (dB, >= 0) of the upward transient expander.

    The boost is ``EXP_SCALE * factor * max(0, fast_db - slow_db)`` (capped at
    ``EXP_MAX_BOOST_DB``), where ``fast_db`` and ``slow_db`` are centred 3 ms and 120 ms RMS
    levels: onsets rise above the body of the sound, sustained parts are left alone. It fades
    out below ``EXP_GATE_DBFS`` so noise floors are not pumped.
    """
    fast_half, slow_half, smooth_half = _exp_blocks(sample_rate)
    fast_db = 10.0 * np.log10(np.maximum(moving_average(power, fast_half), _POWER_FLOOR))
    slow_db = 10.0 * np.log10(np.maximum(moving_average(power, slow_half), _POWER_FLOOR))
    boost_db = np.clip(EXP_SCALE * factor * (fast_db - slow_db), 0.0, EXP_MAX_BOOST_DB)
    boost_db *= np.clip((slow_db - EXP_GATE_DBFS) / 10.0 + 1.0, 0.0, 1.0)
    return moving_average(boost_db, smooth_half)


def apply_block_gain_db(x: np.ndarray, gain_db: np.ndarray) -> np.ndarray:
    """``x`` (``(channels, frames)``) times the per-block gain in dB, interpolated to the frame rate (in place)."""
    x *= upsample_blocks(10.0 ** (gain_db / 20.0))[None, :]
    return x


def compress(x: np.ndarray, sample_rate: int, **params: float) -> tuple[np.ndarray, float]:
    """Compress ``x`` (float64 ``(channels, frames)``); returns ``(y, max_gain_reduction_db)``. See :func:`compressor_gain_db`."""
    if params["ratio"] <= 1.0:
        return x, 0.0
    gain_db = compressor_gain_db(block_power(x), sample_rate, **params)
    return apply_block_gain_db(x.copy(), gain_db), float(-np.min(gain_db, initial=0.0))


def expand_transients(x: np.ndarray, sample_rate: int, factor: float) -> tuple[np.ndarray, float]:
    """Expand the transients of ``x`` (float64 ``(channels, frames)``); returns ``(y, max_boost_db)``."""
    if factor <= 0.0:
        return x, 0.0
    gain_db = expander_gain_db(block_power(x), sample_rate, factor)
    return apply_block_gain_db(x.copy(), gain_db), float(np.max(gain_db, initial=0.0))
