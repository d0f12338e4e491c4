"""Block-rate envelope helpers shared by the stages (finite memory, vectorised).

Envelopes and gains are computed on blocks of ``BLOCK_FRAMES`` frames whose grid is aligned to
absolute frame 0 of the track (the renderer guarantees it), then interpolated back to the
sample rate. Every helper is a finite window: equal input windows give equal outputs, which is
what makes chunked rendering seamless.
"""

from __future__ import annotations

from typing import Final

import numpy as np

from .. import kernels

BLOCK_FRAMES: Final = 16  # frames per envelope block (0.36 ms at 44.1 kHz)


def moving_average(v: np.ndarray, half_width: int) -> np.ndarray:
    """Centred moving average over ``2 * half_width + 1`` values (edge values repeated), via a running sum."""
    if half_width <= 0:
        return v.astype(np.float64, copy=True)
    padded = np.pad(v.astype(np.float64, copy=False), half_width, mode="edge")
    c = np.empty(padded.size + 1)
    c[0] = 0.0
    np.cumsum(padded, out=c[1:])
    width = 2 * half_width + 1
    return (c[width:] - c[:-width]) / width


def sliding_min(v: np.ndarray, back: int, ahead: int) -> np.ndarray:
    """``out[b] = min(v[b - back : b + ahead + 1])`` (edges repeat the nearest value)."""
    return kernels.sliding_min(v, back, ahead)


def sliding_max(v: np.ndarray, back: int, ahead: int) -> np.ndarray:
    """``out[b] = max(v[b - back : b + ahead + 1])`` (edges repeat the nearest value)."""
    return kernels.sliding_max(v, back, ahead)


_RAMP: Final = np.arange(BLOCK_FRAMES) / BLOCK_FRAMES


def upsample_blocks(values: np.ndarray) -> np.ndarray:
    """Per-block values to every frame by linear interpolation: ``(blocks * BLOCK_FRAMES,)``.

    Block b's value sits at its first frame; frame ``b * BLOCK_FRAMES + j`` gets
    ``v[b] + (v[b + 1] - v[b]) * j / BLOCK_FRAMES`` (the last block holds its value). Each frame
    is a convex combination of its own block's value and the next block's.
    """
    v = values.astype(np.float64, copy=False)
    nb = v.size
    out = np.empty((nb, BLOCK_FRAMES))
    if nb == 0:
        return out.reshape(-1)
    step = np.empty(nb)
    np.subtract(v[1:], v[:-1], out=step[:-1])
    step[-1] = 0.0
    np.multiply(step[:, None], _RAMP[None, :], out=out)
    out += v[:, None]
    return out.reshape(-1)


def block_power(x: np.ndarray) -> np.ndarray:
    """Mean power over channels of each block: ``x`` float64 ``(channels, frames)`` -> ``(frames // BLOCK_FRAMES,)``."""
    channels, frames = x.shape
    sq = np.einsum("cf,cf->f", x, x) if channels > 1 else np.square(x[0])
    return sq.reshape(-1, BLOCK_FRAMES).sum(axis=1) * (1.0 / (BLOCK_FRAMES * channels))


def ms_to_blocks(ms: float, sample_rate: int) -> int:
    """Whole blocks (at least 1) covering ``ms`` milliseconds."""
    return max(1, int(round(ms * 1e-3 * sample_rate / BLOCK_FRAMES)))
