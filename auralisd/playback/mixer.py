"""The mixer: the one block, crossfade and volume-ramp implementation of every player.

Pure numpy on ``(frames, 2)`` float32 blocks at the output rate (no resampling here: chunks
arrive at the output rate from the render jobs). The shared player and every private session
mix through these functions, so a preset change sounds the same everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np

BLOCK_S: Final = 0.05  # s of audio per clock tick (issue 5 wants 20-100 ms frames)
CROSSFADE_S: Final = 0.05  # s: preset/intensity change crossfade (old plan -> new plan), every player


def block_frames(sample_rate: int, block_s: float = BLOCK_S) -> int:
    return max(1, int(round(block_s * sample_rate)))


def crossfade_frames(sample_rate: int) -> int:
    return max(1, int(round(CROSSFADE_S * sample_rate)))


def volume_gain(percent: int) -> float:
    """Linear gain for a volume percentage: ``(p / 100) ** 2`` (about -12 dB at 50 %), never above 1."""
    return min(1.0, (max(0, percent) / 100.0) ** 2)


def db_gain(gain_db: float) -> float:
    return float(10.0 ** (gain_db / 20.0))


@dataclass
class Crossfade:
    """A linear crossfade of ``length`` frames; :meth:`mix` advances it by one block.

    Frame ``i`` of the fade (counted from its start) weighs the new side ``i / length``, so the
    first frame is all old and the fade ends after exactly ``length`` frames.
    """

    length: int
    position: int = 0

    @property
    def done(self) -> bool:
        return self.position >= self.length

    def mix(self, old: np.ndarray, new: np.ndarray) -> np.ndarray:
        pos = self.position + np.arange(new.shape[0])
        weight = np.clip(pos / self.length, 0.0, 1.0).astype(np.float32)[:, None]
        self.position += new.shape[0]
        return (old * (1.0 - weight) + new * weight).astype(np.float32, copy=False)


def track_crossfade_span(end_frame: int, next_frames: int, crossfade_s: float, sample_rate: int) -> tuple[int, int] | None:
    """MPD's ``crossfade N`` between two tracks: ``(start, length)`` in the ending track's output frames.

    The last ``length`` frames of the ending track (from ``start`` to ``end_frame``) play over the
    first ``length`` frames of the next one. ``length`` is ``crossfade_s`` at most, and at most half
    of either track (a short track is never swallowed whole). None: no crossfade.
    """
    length = min(int(round(crossfade_s * sample_rate)), end_frame // 2, next_frames // 2)
    return None if length <= 0 else (end_frame - length, length)


def track_crossfade_mix(old: np.ndarray, new: np.ndarray, offset: int, length: int) -> np.ndarray:
    """Mix ``old`` (the ending track) into ``new`` (the next): frame ``i`` of the block is frame
    ``offset + i`` of a linear fade of ``length`` frames (0: all old; ``length``: all new)."""
    weight = np.clip((offset + np.arange(new.shape[0])) / length, 0.0, 1.0).astype(np.float32)[:, None]
    return (old * (1.0 - weight) + new * weight).astype(np.float32, copy=False)


@dataclass
class VolumeRamp:
    """Gain that moves linearly to a new target over one block (no zipper noise on volume changes)."""

    gain: float = 1.0

    def apply(self, samples: np.ndarray, target: float) -> np.ndarray:
        if target == 1.0 and self.gain == 1.0:
            return samples
        if target == self.gain:
            out = samples * np.float32(target)
        else:
            ramp = np.linspace(self.gain, target, samples.shape[0], endpoint=False, dtype=np.float32)[:, None]
            out = samples * ramp
        self.gain = target
        return out.astype(np.float32, copy=False)


def scale(samples: np.ndarray, gain: float) -> np.ndarray:
    """``samples * gain`` as float32 (a copy only when the gain is not 1)."""
    return samples if gain == 1.0 else (samples * np.float32(gain)).astype(np.float32, copy=False)
