"""Stateless polyphase resampling equal to one pass of ``scipy.signal.resample_poly``, block by block.

Output frame ``n`` is computed directly from the input frames around ``n * in_rate / out_rate``
with the same Kaiser-windowed FIR that ``resample_poly`` designs (built here with numpy, so a
worker process does not pay for ``import scipy.signal``), so any span of output frames can be
computed on its own (a chunk rendered in a worker, a seek, a crossfade need no history) and
consecutive spans equal one pass of ``resample_poly`` over the whole signal (to float32 rounding,
about 1e-6).

How (polyphase as a matrix product): with ``up/down`` in lowest terms, output frame ``up * m + j``
reads the same ``T = ceil(len(h) / up)`` taps of phase ``(j * down + half_len) % up`` (21 taps for
44.1 <-> 48 kHz) from input frames that start at ``m * down`` plus a fixed offset. So ``up``
consecutive outputs (one *period*) are one row of input frames (``L = down + T - 1`` or so wide)
times one precomputed ``(L, up)`` matrix whose column ``j`` holds phase ``j``'s taps at their
offsets: the whole span is a single BLAS ``sgemm`` over overlapping windows of the input. It does
about 8x the multiply-adds of a direct tap loop (the matrix is mostly zeros) yet runs ~10x faster
(one compiled call instead of ``T`` passes of gather, multiply and add over the span). Periods are
grouped in blocks of :data:`PERIODS_PER_BLOCK` on the *absolute* output grid and every block is one
product of the same shape, so an output frame is computed by the same operations in the same
order whatever span it is computed in: chunks are bit-identical to one pass of this resampler.
Rate pairs whose matrix would be large (``up * L`` above :data:`MAX_MATRIX_ELEMENTS`: nearly
coprime rates such as 44,056 -> 44,100 Hz) use the direct tap loop instead (also position-pure).

The daemon resamples inside the render job (:func:`resample_span`), at the output rate, so its
event loop only slices chunks; :class:`ChunkGrid` maps the renderer's chunk grid onto the output.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from math import gcd
from typing import Final

import numpy as np

KAISER_BETA: Final = 5.0  # scipy.signal.resample_poly's default window ('kaiser', 5.0)
HALF_LEN_FACTOR: Final = 10  # resample_poly: half_len = 10 * max(up, down)
PERIODS_PER_BLOCK: Final = 32  # periods (``up`` output frames each) per matrix product, on the absolute grid
MAX_MATRIX_ELEMENTS: Final = 1 << 20  # float32 (L, up) period matrix at most 4 MiB, else the tap loop


def lowpass_fir(num_taps: int, cutoff: float, beta: float = KAISER_BETA) -> np.ndarray:
    """``scipy.signal.firwin(num_taps, cutoff, window=('kaiser', beta))``: windowed sinc, unit DC gain.

    ``cutoff`` is relative to Nyquist (0 < cutoff < 1); float64 ``(num_taps,)``.
    """
    alpha = 0.5 * (num_taps - 1)
    m = np.arange(num_taps, dtype=np.float64) - alpha
    h = cutoff * np.sinc(cutoff * m) * np.kaiser(num_taps, beta)
    return h / np.sum(h)


class BlockResampler:
    """``in_rate`` -> ``out_rate`` for ``(frames, channels)`` float32 spans; identity when equal."""

    def __init__(self, in_rate: int, out_rate: int) -> None:
        g = gcd(int(in_rate), int(out_rate))
        self.up = int(out_rate) // g
        self.down = int(in_rate) // g
        self.in_rate = int(in_rate)
        self.out_rate = int(out_rate)
        self.identity = self.up == self.down
        if self.identity:
            self.taps = 1
            self._half_len = 0
            return
        max_rate = max(self.up, self.down)
        self._half_len = HALF_LEN_FACTOR * max_rate
        h = lowpass_fir(2 * self._half_len + 1, 1.0 / max_rate) * self.up
        self.taps = -(-h.size // self.up)
        padded = np.zeros(self.taps * self.up)
        padded[: h.size] = h
        # bank[r, t] = h[r + t * up]
        self._bank = padded.reshape(self.taps, self.up).T.astype(np.float64)
        self._bank32 = self._bank.astype(np.float32)  # accumulated in float32: ~1e-6 from float64, 2x faster
        # The period matrix: output up*m + j = row m of input windows (frames m*down + offset ...) @ column j.
        j = np.arange(self.up)
        centre = (j * self.down + self._half_len) // self.up  # input frame of tap 0, relative to m*down
        phase = (j * self.down + self._half_len) % self.up
        self._window_offset = int(centre[0]) - self.taps + 1
        self._window_frames = int(centre[-1]) - self._window_offset + 1
        self._matrix: np.ndarray | None = None
        if self._window_frames * self.up <= MAX_MATRIX_ELEMENTS:
            matrix = np.zeros((self._window_frames, self.up), dtype=np.float32)
            for t in range(self.taps):
                matrix[centre - t - self._window_offset, j] = self._bank32[phase, t]
            self._matrix = matrix

    def output_frames(self, input_frames: int) -> int:
        """Length of the resampled signal (as ``resample_poly``: ceil(n * up / down))."""
        return -(-int(input_frames) * self.up // self.down)

    def input_span(self, out_start: int, out_stop: int) -> tuple[int, int]:
        """Input frames ``[lo, hi)`` that output frames ``[out_start, out_stop)`` depend on."""
        if self.identity:
            return out_start, out_stop
        base_lo = (out_start * self.down + self._half_len) // self.up
        base_hi = ((out_stop - 1) * self.down + self._half_len) // self.up
        return base_lo - self.taps + 1, base_hi + 1

    def process(self, span: np.ndarray, out_start: int, out_stop: int) -> np.ndarray:
        """Output frames ``[out_start, out_stop)`` from ``span`` = input frames ``input_span(...)``."""
        if self.identity:
            return span
        if self._matrix is not None:
            return self._process_periods(np.asarray(span, dtype=np.float32), out_start, out_stop)
        lo, _ = self.input_span(out_start, out_stop)
        n = np.arange(out_start, out_stop, dtype=np.int64) * self.down + self._half_len
        base = n // self.up - lo
        phase = n % self.up
        coeffs = self._bank32[phase]  # (frames, taps)
        span = np.asarray(span, dtype=np.float32)
        out = np.zeros((out_stop - out_start, span.shape[1]), dtype=np.float32)
        tap = np.empty_like(out)
        for t in range(self.taps):  # one gather and one multiply-add per tap: ~6x a (frames, taps, ch) einsum
            np.take(span, base - t, axis=0, out=tap)
            tap *= coeffs[:, t, None]
            out += tap
        return out

    def _process_periods(self, span: np.ndarray, out_start: int, out_stop: int) -> np.ndarray:
        """:meth:`process` as one batched matrix product over whole blocks of periods (see the module doc)."""
        assert self._matrix is not None
        up, down, width = self.up, self.down, self._window_frames
        lo, _ = self.input_span(out_start, out_stop)
        block = PERIODS_PER_BLOCK * up  # output frames per block
        first_block, end_block = out_start // block, -(-out_stop // block)
        m0 = first_block * PERIODS_PER_BLOCK  # first period computed
        periods = (end_block - first_block) * PERIODS_PER_BLOCK
        # Input frames [m0*down + offset, (m0 + periods - 1)*down + offset + width), relative to the span.
        first = m0 * down + self._window_offset - lo
        last = (m0 + periods - 1) * down + self._window_offset + width - lo
        x = np.ascontiguousarray(span.T)  # (channels, frames)
        before, after = max(0, -first), max(0, last - x.shape[1])
        if before or after:  # whole blocks reach past the span: frames no kept output depends on
            x = np.pad(x, ((0, 0), (before, after)))
            first += before
        channels = x.shape[0]
        windows = np.lib.stride_tricks.as_strided(
            x[:, first:], shape=(channels, periods, width), strides=(x.strides[0], down * x.strides[1], x.strides[1])
        )
        # A copy, (channels * blocks, periods per block, width): every product has the same shape.
        stacked = windows.reshape(channels * (end_block - first_block), PERIODS_PER_BLOCK, width)
        y = np.matmul(stacked, self._matrix).reshape(channels, periods * up)
        return np.ascontiguousarray(y[:, out_start - m0 * up : out_stop - m0 * up].T)


@lru_cache(maxsize=16)
def resampler(in_rate: int, out_rate: int) -> BlockResampler:
    """A shared resampler per rate pair (its filter bank is built once per process)."""
    return BlockResampler(in_rate, out_rate)


class ChunkGrid:
    """The renderer's chunk grid seen at the output rate.

    Input chunk ``k`` covers input frames ``[k * N, (k + 1) * N)``; output chunk ``k`` covers output
    frames ``[start(k), start(k + 1))`` with ``start(k) = ceil(k * N * up / down)``, clipped to the
    output length, so the output chunks tile the resampled track with no gap and no overlap.
    """

    def __init__(self, in_rate: int, out_rate: int, num_frames: int, chunk_frames: int) -> None:
        if chunk_frames <= 0:
            raise ValueError("chunk_frames must be positive")
        self.resampler = resampler(int(in_rate), int(out_rate))
        self.in_rate = int(in_rate)
        self.out_rate = int(out_rate)
        self.num_frames = int(num_frames)  # input frames
        self.chunk_frames = int(chunk_frames)  # input frames per chunk
        self.out_frames = self.resampler.output_frames(self.num_frames)
        self.count = max(1, -(-self.num_frames // self.chunk_frames))

    def start(self, k: int) -> int:
        """First output frame of output chunk ``k`` (``out_frames`` for ``k >= count``)."""
        r = self.resampler
        return min(-(-int(k) * self.chunk_frames * r.up // r.down), self.out_frames)

    def span(self, k: int) -> tuple[int, int]:
        """Output frames ``[start, stop)`` of output chunk ``k``."""
        return self.start(k), self.start(k + 1)

    def chunk_of(self, out_frame: int) -> int:
        """The output chunk holding output frame ``out_frame`` (clipped to ``[0, count - 1]``)."""
        r = self.resampler
        k = max(0, int(out_frame)) * r.down // (self.chunk_frames * r.up)
        return min(k, self.count - 1)


def resample_span(read: Callable[[int, int], np.ndarray], grid: ChunkGrid, k: int) -> np.ndarray:
    """Output chunk ``k`` of ``grid`` from ``read(lo, hi)`` (input frames, float32 ``(frames, 2)``).

    ``read`` is asked only for frames inside the track; frames outside it are zeros (as
    ``resample_poly`` pads). Returns float32 ``(frames, 2)`` at the output rate.
    """
    out_start, out_stop = grid.span(k)
    if out_stop <= out_start:
        return np.zeros((0, 2), dtype=np.float32)
    r = grid.resampler
    lo, hi = r.input_span(out_start, out_stop)
    a, b = max(lo, 0), min(hi, grid.num_frames)
    body = np.asarray(read(a, b), dtype=np.float32)
    if r.identity:
        return np.ascontiguousarray(body, dtype=np.float32)
    span = np.zeros((hi - lo, body.shape[1] if body.ndim == 2 else 2), dtype=np.float32)
    span[a - lo : a - lo + body.shape[0]] = body
    return np.ascontiguousarray(r.process(span, out_start, out_stop), dtype=np.float32)


class StreamResampler:
    """``in_rate`` -> ``out_rate`` for a stream that arrives block by block (a live, unseekable signal).

    The concatenated output of :meth:`process` calls followed by :meth:`flush` equals one pass of
    ``scipy.signal.resample_poly`` over the concatenated input (the same filter as
    :class:`BlockResampler`, zeros before the first and after the last input frame), to float32
    rounding. Output frames are released as soon as every input frame they read has arrived, so the
    latency is half the filter (about 10 input frames for 44.1 <-> 48 kHz); the state held is that
    many input frames. Identity (no copy beyond the float32 conversion) when the rates are equal.
    """

    def __init__(self, in_rate: int, out_rate: int) -> None:
        self._r = resampler(int(in_rate), int(out_rate))
        self.in_rate = int(in_rate)
        self.out_rate = int(out_rate)
        self.input_frames = 0  # input frames received so far
        self.output_frames = 0  # output frames released so far
        self._held: np.ndarray | None = None  # input frames [_held_start, input_frames)
        self._held_start = 0
        self._flushed = False

    def _release(self, out_stop: int) -> np.ndarray:
        r = self._r
        out_start = self.output_frames
        assert self._held is not None
        if out_stop <= out_start:
            return np.zeros((0, self._held.shape[1]), dtype=np.float32)
        lo, hi = r.input_span(out_start, out_stop)
        have_lo, have_hi = self._held_start, self._held_start + self._held.shape[0]
        span = np.zeros((hi - lo, self._held.shape[1]), dtype=np.float32)  # zeros outside the signal
        a, b = max(lo, have_lo), min(hi, have_hi)
        if b > a:
            span[a - lo : b - lo] = self._held[a - have_lo : b - have_lo]
        out = r.process(span, out_start, out_stop)
        self.output_frames = out_stop
        next_lo, _ = r.input_span(out_stop, out_stop + 1)
        drop = min(max(0, next_lo - have_lo), self._held.shape[0])
        self._held = self._held[drop:]
        self._held_start += drop
        return out

    def process(self, samples: np.ndarray) -> np.ndarray:
        """Resample the next block ``(frames, channels)``; returns the output frames now complete (float32)."""
        if self._flushed:
            raise ValueError("the stream was flushed; start a new StreamResampler")
        block = np.asarray(samples, dtype=np.float32)
        if block.ndim != 2:
            raise ValueError(f"samples must be (frames, channels), got shape {block.shape}")
        if self._r.identity:
            self.input_frames += block.shape[0]
            self.output_frames += block.shape[0]
            return block
        self._held = block.copy() if self._held is None else np.concatenate([self._held, block])
        self.input_frames += block.shape[0]
        r = self._r
        # output frame m reads input up to (m * down + half_len) // up: released once that has arrived
        ready = max(0, -(-(self.input_frames * r.up - r._half_len) // r.down))
        return self._release(min(ready, r.output_frames(self.input_frames)))

    def flush(self, channels: int = 2) -> np.ndarray:
        """The last output frames (the input ends here: zeros after it); the resampler is done afterwards."""
        self._flushed = True
        if self._r.identity:
            return np.zeros((0, channels), dtype=np.float32)
        if self._held is None:
            self._held = np.zeros((0, channels), dtype=np.float32)
        return self._release(self._r.output_frames(self.input_frames))
