"""Stateless polyphase sample-rate conversion with one anti-aliasing / anti-imaging filter, block by block.

The filter (:func:`design_filter`, one per rate pair, cached) is a linear-phase Kaiser-windowed sinc
designed from its targets (see "Sample-rate conversion" in docs/mastering.md):

* passband flat within +-0.001 dB up to :func:`passband_edge_hz`: the larger of 0.9 x the lower of
  the two Nyquist frequencies and min(20 kHz, that Nyquist - 1 kHz) (20 kHz when the lower rate is
  44.1 kHz, 21.6 kHz for 48 kHz, 15 kHz for 32 kHz);
* stopband from the lower Nyquist frequency on (the output's when downsampling: nothing aliases
  into the audio band; the input's when upsampling: no image of it), attenuated by
  :data:`STOPBAND_DESIGN_DB` by design (>= 100 dB measured through the resampler, in the tests);
* the Kaiser window's ``beta`` and the length follow from that attenuation and the transition width
  (Kaiser's formulas, as ``scipy.signal.kaiserord``), so 48 <-> 44.1 kHz takes ~24,500 taps at the
  intermediate rate, ~165 per output frame; each of the ``up`` phases is scaled to sum to exactly 1,
  so DC passes with unit gain on every output frame.

Output frame ``n`` is computed directly from the input frames around ``n * in_rate / out_rate``
(the filter is centred: an odd length, its delay compensated, output time equals input time), so
any span of output frames can be computed on its own (a chunk rendered in a worker, a seek, a
crossfade need no history), and consecutive spans equal one pass of
``scipy.signal.resample_poly(x, up, down, window=design_filter(in_rate, out_rate))`` over the whole
signal (to float32 rounding, about 1e-6). The design is numpy only, so a worker process does not pay
for ``import scipy.signal``.

How (polyphase as a matrix product): with ``up/down`` in lowest terms, output frame ``up * m + j``
reads the same ``T = ceil(len(h) / up)`` taps of phase ``(j * down + half_len) % up`` from input
frames that start at ``m * down`` plus a fixed offset. So ``up`` consecutive outputs (one *period*)
are one row of input frames (``L = down + T - 1`` or so wide) times one precomputed ``(L, up)``
matrix whose column ``j`` holds phase ``j``'s taps at their offsets: the whole span is a single
BLAS ``sgemm`` over overlapping windows of the input. Only the wanted output frames are computed
(never the zero-stuffed signal at the intermediate rate): ``L`` multiply-adds per output frame
against the ``T`` a direct tap loop needs (about 2x for 48 <-> 44.1 kHz, where ``T`` ~ ``down``),
yet much faster (one compiled call instead of ``T`` passes over the span). A period spans as many
cycles of the ratio as make it at least :data:`MIN_PERIOD_FRAMES` output frames (2:1 ratios would
otherwise be matrix-vector products, ~30x slower). Periods are grouped in
blocks of :data:`PERIODS_PER_BLOCK` on the *absolute* output grid and every block is one product of
the same shape, so an output frame is computed by the same operations in the same order whatever
span it is computed in: chunks are bit-identical to one pass of this resampler. Rate pairs whose
matrix would be large (``up * L`` above :data:`MAX_MATRIX_ELEMENTS`: nearly coprime rates such as
44,056 -> 44,100 Hz) use the direct tap loop instead (also position-pure, but slow with this
filter: ~10x real time, against ~700x for the matrix path).

The daemon resamples inside the render job (:func:`resample_span`), at the output rate, so its
event loop only slices chunks; :class:`ChunkGrid` maps the renderer's chunk grid onto the output.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from math import ceil, gcd, pi
from typing import Final

import numpy as np

STOPBAND_DESIGN_DB: Final = 110.0  # Kaiser design attenuation; >= 100 dB is the tested target
AUDIO_BAND_HZ: Final = 20_000.0  # the passband reaches this when the Nyquist leaves room ...
MIN_TRANSITION_HZ: Final = 1_000.0  # ... for at least this much transition band
MIN_PASSBAND_FRACTION: Final = 0.9  # never less passband than 0.9 x the lower Nyquist
PERIODS_PER_BLOCK: Final = 8  # periods per matrix product, on the absolute output grid
MIN_PERIOD_FRAMES: Final = 64  # output frames per period at least (a period is 1 or more cycles of up/down)
MAX_MATRIX_ELEMENTS: Final = 1 << 20  # float32 (L, up) period matrix at most 4 MiB, else the tap loop
TAP_LOOP_FRAMES: Final = 8192  # output frames per pass of the tap loop (bounds its (frames, taps) coefficients)


def lowpass_fir(num_taps: int, cutoff: float, beta: float) -> np.ndarray:
    """``scipy.signal.firwin(num_taps, cutoff, window=('kaiser', beta))``: windowed sinc, unit DC gain.

    ``cutoff`` is relative to Nyquist (0 < cutoff < 1); float64 ``(num_taps,)``.
    """
    alpha = 0.5 * (num_taps - 1)
    m = np.arange(num_taps, dtype=np.float64) - alpha
    h = cutoff * np.sinc(cutoff * m) * np.kaiser(num_taps, beta)
    return h / np.sum(h)


def kaiser_beta(attenuation_db: float) -> float:
    """Kaiser's window parameter for a stopband ``attenuation_db`` down (``scipy.signal.kaiser_beta``)."""
    a = float(attenuation_db)
    if a > 50.0:
        return 0.1102 * (a - 8.7)
    if a > 21.0:
        return 0.5842 * (a - 21.0) ** 0.4 + 0.07886 * (a - 21.0)
    return 0.0


def passband_edge_hz(in_rate: int, out_rate: int) -> float:
    """Where the passband ends (Hz): max(0.9 x the lower Nyquist, min(20 kHz, that Nyquist - 1 kHz))."""
    nyquist = min(int(in_rate), int(out_rate)) / 2
    return max(MIN_PASSBAND_FRACTION * nyquist, min(AUDIO_BAND_HZ, nyquist - MIN_TRANSITION_HZ))


def stopband_edge_hz(in_rate: int, out_rate: int) -> float:
    """Where the stopband starts (Hz): the lower Nyquist (the output's when downsampling, the input's when upsampling)."""
    return min(int(in_rate), int(out_rate)) / 2


@lru_cache(maxsize=16)
def design_filter(in_rate: int, out_rate: int) -> np.ndarray:
    """The prototype low-pass at the intermediate rate ``in_rate * up`` (float64, odd length, read-only).

    Kaiser-windowed sinc cut at the middle of the transition band, its length and ``beta`` from
    :data:`STOPBAND_DESIGN_DB` and the transition width (Kaiser's formulas); each polyphase
    component ``h[p::up]`` then sums to exactly ``1 / up`` (unit DC gain on every output frame).
    ``scipy.signal.resample_poly(x, up, down, window=h)`` is the one-pass reference.
    """
    g = gcd(int(in_rate), int(out_rate))
    up, down = int(out_rate) // g, int(in_rate) // g
    if up == down:
        return np.ones(1)
    fp, fs = passband_edge_hz(in_rate, out_rate), stopband_edge_hz(in_rate, out_rate)
    rate = float(in_rate) * up  # the intermediate rate the prototype runs at
    width = 2 * pi * (fs - fp) / rate  # transition width, rad/sample
    num_taps = int(ceil((STOPBAND_DESIGN_DB - 7.95) / (2.285 * width))) + 1
    num_taps += 1 - num_taps % 2  # odd: a whole-sample delay, so output time equals input time
    h = lowpass_fir(num_taps, (fp + fs) / rate, kaiser_beta(STOPBAND_DESIGN_DB))
    padded = np.zeros(-(-num_taps // up) * up)
    padded[:num_taps] = h
    sums = padded.reshape(-1, up).sum(axis=0)  # sums[p] = sum of h[p::up]
    h = h / (up * np.resize(sums, num_taps))
    h = 0.5 * (h + h[::-1])  # exactly symmetric (the scaling is, up to rounding): linear phase
    h.flags.writeable = False
    return h


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
        h = design_filter(self.in_rate, self.out_rate) * self.up
        self._half_len = (h.size - 1) // 2
        self.taps = -(-h.size // self.up)
        padded = np.zeros(self.taps * self.up)
        padded[: h.size] = h
        # bank[r, t] = h[r + t * up]
        self._bank = padded.reshape(self.taps, self.up).T.astype(np.float64)
        self._bank32 = self._bank.astype(np.float32)  # accumulated in float32: ~1e-6 from float64, 2x faster
        self._bank32_t = np.ascontiguousarray(self._bank32.T)  # (taps, up): the tap loop reads a tap's row
        # A period is `group` cycles of the rate ratio: at least MIN_PERIOD_FRAMES output frames wide, so
        # small ratios (2:1, 1:2) still make a matrix product rather than a matrix-vector one.
        group = -(-MIN_PERIOD_FRAMES // self.up)
        self._period_out, self._period_in = self.up * group, self.down * group
        # The period matrix: output P*m + j = row m of input windows (frames m*Q + offset ...) @ column j.
        j = np.arange(self._period_out)
        centre = (j * self.down + self._half_len) // self.up  # input frame of tap 0, relative to m*Q
        phase = (j * self.down + self._half_len) % self.up
        self._window_offset = int(centre[0]) - self.taps + 1
        self._window_frames = int(centre[-1]) - self._window_offset + 1
        self._matrix: np.ndarray | None = None
        if self._window_frames * self._period_out <= MAX_MATRIX_ELEMENTS:
            matrix = np.zeros((self._window_frames, self._period_out), dtype=np.float32)
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
        x = np.ascontiguousarray(np.asarray(span, dtype=np.float32).T)  # (channels, frames): contiguous rows
        out = np.zeros((x.shape[0], out_stop - out_start), dtype=np.float32)
        # Pieces of TAP_LOOP_FRAMES bound the (taps, frames) coefficients; every frame's sum is the same.
        for start in range(out_start, out_stop, TAP_LOOP_FRAMES):
            stop = min(out_stop, start + TAP_LOOP_FRAMES)
            n = np.arange(start, stop, dtype=np.int64) * self.down + self._half_len
            base = n // self.up - lo
            coeffs = self._bank32_t[:, n % self.up]  # (taps, frames)
            acc = out[:, start - out_start : stop - out_start]
            tap = np.empty_like(acc)
            for t in range(self.taps):  # one gather and one multiply-add per tap: ~6x a (frames, taps, ch) einsum
                np.take(x, base - t, axis=1, out=tap)
                tap *= coeffs[t]
                acc += tap
        return np.ascontiguousarray(out.T)

    def _process_periods(self, span: np.ndarray, out_start: int, out_stop: int) -> np.ndarray:
        """:meth:`process` as one batched matrix product over whole blocks of periods (see the module doc)."""
        assert self._matrix is not None
        up, down, width = self._period_out, self._period_in, self._window_frames
        lo, _ = self.input_span(out_start, out_stop)
        block = PERIODS_PER_BLOCK * up  # output frames per block
        first_block, end_block = out_start // block, -(-out_stop // block)
        m0 = first_block * PERIODS_PER_BLOCK  # first period computed
        periods = (end_block - first_block) * PERIODS_PER_BLOCK
        # Input frames [m0*down + offset, (m0 + periods - 1)*down + offset + width), relative to the span.
        first = m0 * down + self._window_offset - lo
        last = (m0 + periods - 1) * down + self._window_offset + width - lo
        frames, channels = span.shape
        before, after = max(0, -first), max(0, last - frames)
        if before or after:  # whole blocks reach past the span: frames no kept output depends on (zeros)
            x = np.zeros((channels, before + frames + after), dtype=np.float32)
            x[:, before : before + frames] = span.T
            first += before
        else:
            x = np.ascontiguousarray(span.T)  # (channels, frames)
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
    the same resampler over the concatenated input (the same filter and operations as
    :class:`BlockResampler`, zeros before the first and after the last input frame): bit-identical.
    Output frames are released as soon as every input frame they read has arrived, so the latency is
    half the filter (:attr:`latency_input_frames`: 77 input frames, 1.7 ms, for 44.1 -> 48 kHz);
    the state held is about twice that many input frames. Identity (no copy beyond the float32 conversion) when the rates are equal.
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
        # input frames an output frame waits for beyond its own time: half the filter
        self.latency_input_frames = -(-self._r._half_len // self._r.up)

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
