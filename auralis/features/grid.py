"""Frames on a global grid: frame ``k`` starts at absolute sample ``k * step``.

A block that covers samples ``[block_start, block_stop)`` owns exactly the frames whose
*start* lies in that range, and reads the samples past ``block_stop`` that its last
frames span (post-roll). Every frame therefore belongs to exactly one block and sees
the same samples whatever the split, so per-block results merge exactly.
"""

from __future__ import annotations

import numpy as np


def owned_frames(block_start: int, block_stop: int, step: int) -> tuple[int, int]:
    """Indices ``[k0, k1)`` of the grid frames whose start lies in ``[block_start, block_stop)``."""
    k0 = -(-block_start // step)
    k1 = -(-block_stop // step)
    return k0, max(k0, k1)


def frame_view(
    samples: np.ndarray, samples_start: int, k0: int, k1: int, step: int, length: int
) -> np.ndarray:
    """Strided, read-only view ``(k1 - k0, length)`` of frames ``k0..k1-1`` of a 1-D array.

    Args:
        samples: 1-D array holding absolute samples ``[samples_start, samples_start + len)``.
        samples_start: absolute position of ``samples[0]``.
        k0, k1: frame indices (from :func:`owned_frames`).
        step: grid step in samples.
        length: frame length in samples.

    Raises:
        ValueError: the array does not cover the frames (a missing post-roll).
    """
    count = k1 - k0
    if count <= 0:
        return np.zeros((0, length), dtype=samples.dtype)
    first = k0 * step - samples_start
    last_stop = first + (count - 1) * step + length
    if first < 0 or last_stop > samples.shape[0]:
        raise ValueError("block does not cover its frames: read more context")
    base = samples[first:last_stop]
    return np.lib.stride_tricks.as_strided(
        base, shape=(count, length), strides=(step * base.strides[0], base.strides[0]), writeable=False
    )


def valid_counts(k0: int, k1: int, step: int, length: int, num_frames: int) -> np.ndarray:
    """How many samples of each frame ``k0..k1-1`` lie inside the track ``[0, num_frames)``."""
    starts = np.arange(k0, k1, dtype=np.int64) * step
    return np.clip(num_frames - starts, 0, length)
