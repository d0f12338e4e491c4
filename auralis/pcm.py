"""Continuous streams for outputs: rate conversion without seams and float -> integer PCM with TPDF dither.

An output (a Snapcast source, an Icecast encoder) receives the mastered stream as consecutive float32
``(frames, 2)`` blocks of any length at the player's rate, and needs another rate or integer samples.
:class:`StreamResampler` carries the filter history from block to block, so its output is exactly one
pass of ``scipy.signal.resample_poly`` over the whole stream (the same Kaiser FIR as
:mod:`auralis.resample`), whatever the block sizes; :class:`PcmEncoder` adds TPDF dither and packs
little-endian integers the way Snapcast's ``sampleformat`` declares them.
"""

from __future__ import annotations

from typing import Final

import numpy as np

from .resample import BlockResampler

TPDF_LSB: Final = 1.0  # triangular dither spanning +-1 LSB (the sum of two uniform +-0.5 LSB): no noise modulation
CONTAINER_BYTES: Final = {16: 2, 24: 4, 32: 4}  # bytes per sample; 24-bit samples sit in 4 bytes (Snapcast, ALSA S24_LE)


class StreamResampler:
    """``in_rate`` -> ``out_rate`` over a stream of float32 ``(frames, channels)`` blocks, seamless.

    :meth:`process` returns every output frame whose input is complete so far; the rest (about
    ``taps / 2`` input frames, 0.2 ms at 44.1 -> 48 kHz) comes with the next block. The output frames
    concatenated equal ``resample_poly(whole_input, up, down)`` to float32 rounding (~1e-6).
    """

    def __init__(self, in_rate: int, out_rate: int, channels: int = 2) -> None:
        self._r = BlockResampler(int(in_rate), int(out_rate))
        self.in_rate = int(in_rate)
        self.out_rate = int(out_rate)
        self.channels = int(channels)
        self._buffer = np.zeros((0, self.channels), dtype=np.float32)
        self._buffer_start = 0  # absolute input frame of self._buffer[0]
        self._in_total = 0  # input frames received
        self._out_next = 0  # next output frame to produce

    @property
    def identity(self) -> bool:
        return self._r.identity

    def process(self, block: np.ndarray) -> np.ndarray:
        """The output frames that ``block`` (float32 ``(frames, channels)``) completes, float32."""
        block = np.asarray(block, dtype=np.float32).reshape(-1, self.channels)
        if self._r.identity:
            self._in_total += block.shape[0]
            return block
        self._buffer = np.concatenate([self._buffer, block]) if self._buffer.shape[0] else block
        self._in_total += block.shape[0]
        r = self._r
        # the last output frame whose taps all lie inside the input received: (n * down + half_len) // up < in_total
        limit = self._in_total * r.up - r._half_len - 1
        out_stop = limit // r.down + 1 if limit >= 0 else 0
        if out_stop <= self._out_next:
            return np.zeros((0, self.channels), dtype=np.float32)
        lo, hi = r.input_span(self._out_next, out_stop)
        span = self._slice(lo, hi)
        out = r.process(span, self._out_next, out_stop)
        self._out_next = out_stop
        keep_from = r.input_span(out_stop, out_stop + 1)[0]  # the first input frame the next output needs
        drop = max(0, min(keep_from - self._buffer_start, self._buffer.shape[0]))
        if drop:
            self._buffer = self._buffer[drop:]
            self._buffer_start += drop
        return out

    def _slice(self, lo: int, hi: int) -> np.ndarray:
        """Input frames ``[lo, hi)``; frames before the stream's start are zeros (as resample_poly pads)."""
        if lo >= self._buffer_start:
            return self._buffer[lo - self._buffer_start : hi - self._buffer_start]
        span = np.zeros((hi - lo, self.channels), dtype=np.float32)
        a = self._buffer_start - lo
        body = self._buffer[: hi - self._buffer_start]
        span[a : a + body.shape[0]] = body
        return span


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
        self._resampler = StreamResampler(in_rate, out_rate, channels)
        self._rng = np.random.default_rng(seed)

    def encode(self, block: np.ndarray) -> bytes:
        out = self._resampler.process(block)
        if out.shape[0] == 0:
            return b""
        ints = quantize(out, self.bits, self._rng)
        return ints.astype(ints.dtype.newbyteorder("<"), copy=False).tobytes()
