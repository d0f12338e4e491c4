"""DC removal: a first-order DC blocker, run as one more section of the EQ's ``sosfilt`` cascade.

``H(z) = ((1 - depth * (1 - a)) - a z^-1) / (1 - a z^-1)`` with ``a = exp(-2 pi DC_CUTOFF_HZ / fs)``
equals ``1 - depth * LP(z)``, where ``LP`` is the one-pole low-pass whose output is the local
mean. At ``depth`` 1 it is the classic DC blocker (a zero at DC, -3 dB at 5 Hz, -0.26 dB at
20 Hz, -0.07 dB at 40 Hz); at ``depth`` d it removes the fraction d of any DC offset; at 0 it
is left out (exact bypass). The intensity scales ``depth``. Its pole is the slowest of the chain:
its zero-state start transient decays by 100 dB (with 40 dB of headroom) in about 0.51 s at
any sample rate, which the renderer's pre-roll covers (``eq_settling_frames``).
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np

DC_CUTOFF_HZ: Final = 5.0  # Hz, corner of the DC blocker


def dc_blocker_sos(depth: float, sample_rate: int) -> np.ndarray:
    """One second-order section ``(1, 6)`` removing ``depth`` (0-1) of the DC; ``(0, 6)`` when depth is 0."""
    if depth <= 0.0:
        return np.zeros((0, 6))
    a = math.exp(-2.0 * math.pi * DC_CUTOFF_HZ / sample_rate)
    return np.array([[1.0 - depth * (1.0 - a), -a, 0.0, 1.0, -a, 0.0]])
