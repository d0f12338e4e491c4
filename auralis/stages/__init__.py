"""The mastering chain's stages, in signal order: DC removal, EQ, dynamics, limiter.

Each stage is a pure function of a block-aligned window of audio (``(channels, frames)``
float64) and its parameters, with finite memory (or, for the IIR DC blocker and EQ, a settling time
within the renderer's pre-roll), and reports how far back and ahead it looks
(``*_support_frames``) so the renderer can prove its pre-roll and look-ahead suffice.
"""

from .dc import dc_blocker_sos
from .dynamics import (
    apply_block_gain_db,
    compress,
    compressor_gain_db,
    compressor_support_frames,
    expand_transients,
    expander_gain_db,
    expander_support_frames,
)
from .eq import EQ_BANDS, apply_eq, chain_sos, eq_response_db, eq_settling_frames, eq_sos
from .limiter import limit_true_peak, limiter_gain, limiter_support_frames

__all__ = [
    "EQ_BANDS",
    "apply_block_gain_db",
    "apply_eq",
    "compress",
    "compressor_gain_db",
    "compressor_support_frames",
    "chain_sos",
    "dc_blocker_sos",
    "eq_response_db",
    "eq_settling_frames",
    "eq_sos",
    "expand_transients",
    "expander_gain_db",
    "expander_support_frames",
    "limit_true_peak",
    "limiter_gain",
    "limiter_support_frames",
]
