"""Continuous streams for outputs: rate conversion without seams and float -> integer PCM with TPDF dither.

An output (a Snapcast source, an Icecast encoder) receives the mastered stream as consecutive float32
``(frames, 2)`` blocks of any length at the player's rate, and needs another rate or integer samples.
:class:`~auralis.resample.StreamResampler` carries the filter history from block to block, so its
output is exactly one pass of the block resampler (the one filter, docs/mastering.md "Sample-rate
conversion") over the whole stream, whatever the block sizes; :class:`PcmEncoder` adds TPDF dither and packs
little-endian integers the way Snapcast's ``sampleformat`` declares them.
"""

from __future__ import annotations

from typing import Final

import numpy as np

from .resample import StreamResampler

TPDF_LSB: Final = 1.0  # triangular dither spanning +-1 LSB (the sum of two uniform +-0.5 LSB): no noise modulation
CONTAINER_BYTES: Final = {16: 2, 24: 4, 32: 4}  # bytes per sample; 24-bit samples sit in 4 bytes (Snapcast, ALSA S24_LE)


def quantize(samples: np.ndarray, bits: int, rng: np.random.Generator | None) -> np.ndarray:
    """float ``(frames, channels)`` in [-1, 1] -> integers at ``bits`` (16, 24 or 32), TPDF-dithered.

    Full scale is ``2 ** (bits - 1)``; values are clipped to the integer range. ``rng`` None: no dither
    (32-bit output gets none either: float32's 24-bit mantissa is already coarser than its LSB).
    Returns int16 for 16 bits, else int32 (24-bit values in the low 24 bits).
    """
    if bits not in CONTAINER_BYTES:
        raise ValueError(f"bits must be 16, 24 or 32, got {bits}")
    scale = float(2 ** (bits - 1))
    x = np.asarray(samples, dtype=np.float64) * scale
    if rng is not None and bits < 32:
        x += (rng.random(x.shape) - rng.random(x.shape)) * TPDF_LSB
    np.rint(x, out=x)
    np.clip(x, -scale, scale - 1, out=x)
    return x.astype(np.int16 if bits == 16 else np.int32)


class PcmEncoder:
    """The mastered stream -> interleaved little-endian integer PCM at another rate, as one continuous stream.

    ``encode(block)`` takes float32 ``(frames, 2)`` at ``in_rate`` and returns bytes at ``out_rate``
    with ``bits`` per sample (Snapcast's ``sampleformat RATE:BITS:2``), resampled seamlessly and
    TPDF-dithered (seeded: the same stream gives the same bytes).
    """

    def __init__(self, in_rate: int, out_rate: int, bits: int, channels: int = 2, seed: int = 0) -> None:
        if bits not in CONTAINER_BYTES:
            raise ValueError(f"bits must be 16, 24 or 32, got {bits}")
        self.bits = int(bits)
        self.channels = int(channels)
        self.frame_bytes = CONTAINER_BYTES[self.bits] * self.channels
        self._resampler = StreamResampler(in_rate, out_rate)
        self._rng = np.random.default_rng(seed)

    def encode(self, block: np.ndarray) -> bytes:
        out = self._resampler.process(block)
        if out.shape[0] == 0:
            return b""
        ints = quantize(out, self.bits, self._rng)
        return ints.astype(ints.dtype.newbyteorder("<"), copy=False).tobytes()
