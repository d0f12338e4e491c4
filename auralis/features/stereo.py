"""Stereo image: width (side share of energy) and phase correlation, from additive sums."""

from __future__ import annotations

import numpy as np


def stereo_sums(stereo: np.ndarray) -> tuple[float, float, float]:
    """``(sum L^2, sum R^2, sum L*R)`` of a float32 ``(frames, 2)`` block.

    numpy's pairwise reductions (float32, relative error ~1e-6), not BLAS dot products: their
    order, hence the last bits, does not depend on how many threads BLAS uses, so numbers repeat.
    """
    left, right = stereo[:, 0], stereo[:, 1]
    return (
        float(np.add.reduce(left * left)),
        float(np.add.reduce(right * right)),
        float(np.add.reduce(left * right)),
    )


def stereo_dimensions(ll: float, rr: float, lr: float) -> dict[str, float]:
    """``stereo_width`` and ``phase_correlation`` of a whole track from its summed products.

    ``stereo_width = E_S / (E_M + E_S)`` with ``M = (L+R)/2``, ``S = (L-R)/2`` (0 mono, 0.5
    uncorrelated, 1 anti-phase); ``phase_correlation = sum(LR) / sqrt(sum(L^2) sum(R^2))``
    (+1 mono, -1 anti-phase). Silence reads width 0 and correlation 1; one silent channel
    reads correlation 0.
    """
    mid = 0.25 * (ll + rr + 2.0 * lr)
    side = 0.25 * (ll + rr - 2.0 * lr)
    total = mid + side
    width = float(np.clip(side / total, 0.0, 1.0)) if total > 0.0 else 0.0
    if ll > 0.0 and rr > 0.0:
        correlation = float(np.clip(lr / np.sqrt(ll * rr), -1.0, 1.0))
    elif ll == 0.0 and rr == 0.0:
        correlation = 1.0
    else:
        correlation = 0.0
    return {"stereo_width": width, "phase_correlation": correlation}
