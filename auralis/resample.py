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
signal (to float32 rounding, about 1e-6; the two-stage path below agrees with it within -105 dB on
signals inside the passband). The design is numpy only, so a worker process does not pay
for ``import scipy.signal``.

How (polyphase as a matrix product): with ``up/down`` in lowest terms, output frame ``up * m + j``
reads the same ``T = ceil(len(h) / up)`` taps of phase ``(j * down + half_len) % up`` from input
frames that start at ``m * down`` plus a fixed offset. So ``up`` consecutive outputs (one *period*)
are one row of input frames (``L = down + T - 1`` or so wide) times one precomputed ``(L, up)``
matrix whose column ``j`` holds phase ``j``'s taps at their offsets. Only the wanted output frames
are computed (never the zero-stuffed signal at the intermediate rate). The period's columns are
split into sub-blocks of about :data:`SUB_BLOCK_COLUMNS` (two for 48 <-> 44.1 kHz), each reading
only the rows its phases touch: ``T + 80 * down / up`` multiply-adds per output frame instead of
``L`` (246 instead of 326 at 48 -> 44.1 kHz, where a direct tap loop would do 167), still as BLAS
``sgemm`` calls that read the strided windows in place. A period spans as many cycles of the ratio
as make it at least :data:`MIN_PERIOD_FRAMES` output frames (2:1 ratios would otherwise be
matrix-vector products, ~30x slower). Periods are grouped in blocks of :data:`PERIODS_PER_BLOCK` on
the *absolute* output grid and every block is the same products of the same shapes, so an output
frame is computed by the same operations in the same order whatever span it is computed in: chunks
are bit-identical to one pass of this resampler. The windows are read from the interleaved
``(frames, channels)`` input and the output written one channel at a time (numpy's transposing
copies cost as much as a third of the time before).

Long periods (``up * L`` above :data:`MAX_MATRIX_ELEMENTS`: nearly coprime rates such as
44,056 -> 44,100 Hz) take a two-stage path instead of one huge filter: an exact polyphase stage by
``2 / d`` (the same period machinery, this pair's passband and stopband: nothing above the lower
Nyquist survives it), then a short interpolator: each output frame is a 16-tap dot product with
weights read from a table of :data:`TABLE_PHASES` fractional positions of a Kaiser-windowed sinc
and linearly interpolated between neighbouring rows. That second filter's transition band is at
least half its input rate wide (its input holds nothing between the stopband edge and the first
image), hence 16 taps; linear interpolation between 512 phases puts its error images about
-130 dB down (the images of the table sit at multiples of 512 x the stage-1 rate, attenuated by
the interpolator's sinc^2 response: (f / (512 R1))^2 with f <= R1 / 4). Measured through the
resampler: passband within 2e-5 dB, aliases and images -106 to -156 dB, ~200x real time against
~10x for the direct tap loop it replaces. Every output frame is again a function of its position
alone (integer positions, a fixed sum order), so chunks are bit-identical to one pass here too.

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
SUB_BLOCK_COLUMNS: Final = 80  # output frames of a period per matrix product (a period splits into round(P / 80))
MAX_MATRIX_ELEMENTS: Final = 1 << 20  # float32 (L, up) period matrix at most 4 MiB, else the two-stage path
TABLE_PHASES: Final = 512  # two-stage path: kernel rows per stage-1 frame, linearly interpolated between
STAGE2_FRAMES: Final = 4096  # two-stage path: output frames per pass (bounds its (taps, frames, channels) gather)


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
    return _design_lowpass(int(in_rate), up, passband_edge_hz(in_rate, out_rate), stopband_edge_hz(in_rate, out_rate))


def _filter_length(in_rate: int, up: int, passband_hz: float, stopband_hz: float) -> int:
    """Taps of :func:`_design_lowpass` (Kaiser's formula for the transition width), odd."""
    width = 2 * pi * (stopband_hz - passband_hz) / (float(in_rate) * up)  # transition width, rad/sample
    num_taps = int(ceil((STOPBAND_DESIGN_DB - 7.95) / (2.285 * width))) + 1
    return num_taps + 1 - num_taps % 2  # odd: a whole-sample delay, so output time equals input time


@lru_cache(maxsize=16)
def _design_lowpass(in_rate: int, up: int, passband_hz: float, stopband_hz: float) -> np.ndarray:
    """:func:`design_filter` for explicit band edges (Hz) at the intermediate rate ``in_rate * up``."""
    fp, fs = passband_hz, stopband_hz
    rate = float(in_rate) * up  # the intermediate rate the prototype runs at
    num_taps = _filter_length(in_rate, up, fp, fs)
    h = lowpass_fir(num_taps, (fp + fs) / rate, kaiser_beta(STOPBAND_DESIGN_DB))
    padded = np.zeros(-(-num_taps // up) * up)
    padded[:num_taps] = h
    sums = padded.reshape(-1, up).sum(axis=0)  # sums[p] = sum of h[p::up]
    h = h / (up * np.resize(sums, num_taps))
    h = 0.5 * (h + h[::-1])  # exactly symmetric (the scaling is, up to rounding): linear phase
    h.flags.writeable = False
    return h


def interpolation_kernel(stage1_rate: float, stopband_hz: float, phases: int = TABLE_PHASES) -> np.ndarray:
    """The two-stage path's second filter as a table: float32 ``(phases + 1, 2K)``, rows summing to 1.

    A Kaiser-windowed sinc cut at the stage-1 Nyquist (``stage1_rate / 2``): the signal it reads holds
    nothing above ``stopband_hz`` (stage 1 removed it), so its transition runs from ``stopband_hz``
    to the first image at ``stage1_rate - stopband_hz`` (at least half the rate wide: 16 taps for
    110 dB). Row ``p`` holds the weights of stage-1 frames ``base - K + 1 ... base + K`` for an
    output at ``base + p / phases``.
    """
    width = 2 * pi * (stage1_rate - 2 * stopband_hz) / stage1_rate  # transition, rad/sample
    half = 0.5 * (STOPBAND_DESIGN_DB - 7.95) / (2.285 * width)  # Kaiser's (N - 1) / 2, in stage-1 frames
    k = int(ceil(half))
    tau = np.arange(-k + 1, k + 1, dtype=np.float64)[None, :] - np.arange(phases + 1)[:, None] / phases
    window = np.i0(kaiser_beta(STOPBAND_DESIGN_DB) * np.sqrt(np.clip(1.0 - (tau / half) ** 2, 0.0, None)))
    table = np.where(np.abs(tau) <= half, np.sinc(tau) * window, 0.0)
    return (table / table.sum(axis=1, keepdims=True)).astype(np.float32)


class BlockResampler:
    """``in_rate`` -> ``out_rate`` for ``(frames, channels)`` float32 spans; identity when equal.

    ``ratio`` and ``band_hz`` (keyword-only, for the two-stage path's first stage) override the
    rate ratio ``(up, down)`` and the filter's ``(passband, stopband)`` edges in Hz.
    """

    def __init__(
        self, in_rate: int, out_rate: int, *, ratio: tuple[int, int] | None = None,
        band_hz: tuple[float, float] | None = None,
    ) -> None:
        g = gcd(int(in_rate), int(out_rate))
        self.up, self.down = (int(out_rate) // g, int(in_rate) // g) if ratio is None else ratio
        self.in_rate = int(in_rate)
        self.out_rate = int(out_rate)
        self.identity = self.up == self.down and band_hz is None  # 1:1 with a band: a plain low-pass
        self._matrix: np.ndarray | None = None
        self._stage1: BlockResampler | None = None
        if self.identity:
            self.taps = 1
            self._half_len = 0
            self.latency_input_frames = 0
            return
        fp, fs = band_hz or (passband_edge_hz(in_rate, out_rate), stopband_edge_hz(in_rate, out_rate))
        num_taps = _filter_length(self.in_rate, self.up, fp, fs)
        self._half_len = (num_taps - 1) // 2
        self.taps = -(-num_taps // self.up)
        # input frames an output frame waits for beyond its own time: half the filter
        self.latency_input_frames = -(-self._half_len // self.up)
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
        if self._window_frames * self._period_out > MAX_MATRIX_ELEMENTS:
            self._init_two_stage(fp, fs)  # (the long filter is never designed)
            return
        h = _design_lowpass(self.in_rate, self.up, fp, fs) * self.up
        padded = np.zeros(self.taps * self.up)
        padded[: h.size] = h
        # bank[r, t] = h[r + t * up]
        self._bank32 = padded.reshape(self.taps, self.up).T.astype(np.float32)  # accumulated in float32
        matrix = np.zeros((self._window_frames, self._period_out), dtype=np.float32)
        for t in range(self.taps):
            matrix[centre - t - self._window_offset, j] = self._bank32[phase, t]
        self._matrix = matrix
        # Sub-blocks: columns [j0, j1) of the period only read window rows [w0, w1) (the taps of their
        # phases): ~T + (j1 - j0) * down / up multiply-adds per output frame instead of the whole width.
        count = max(1, round(self._period_out / SUB_BLOCK_COLUMNS))
        bounds = [round(i * self._period_out / count) for i in range(count + 1)]
        self._sub_blocks: list[tuple[int, int, int, int, np.ndarray]] = []
        for j0, j1 in zip(bounds[:-1], bounds[1:], strict=True):
            w0 = int(centre[j0]) - self.taps + 1 - self._window_offset
            w1 = int(centre[j1 - 1]) + 1 - self._window_offset
            self._sub_blocks.append((j0, j1, w0, w1, np.ascontiguousarray(matrix[w0:w1, j0:j1])))

    def _init_two_stage(self, passband_hz: float, stopband_hz: float) -> None:
        """Long periods (nearly coprime rates): an exact 2/d polyphase stage, then a short interpolator.

        Stage 1 resamples by ``2 / d`` (``d = max(1, in_rate // out_rate)``; 2 / 2 is a plain low-pass; so its rate ``R1 = 2 *
        in_rate / d`` is at least twice the output's) with this pair's sharp filter: it leaves nothing
        above ``stopband_hz`` (-110 dB by design). Stage 2 computes each output frame from the
        ``2K`` stage-1 frames around it with a Kaiser-windowed sinc whose transition band runs from
        ``stopband_hz`` to ``R1 - stopband_hz`` (>= half of R1 wide: 16 taps), read from a table of
        :data:`TABLE_PHASES` + 1 fractional positions, linearly interpolated between neighbours.
        """
        d = max(1, self.in_rate // self.out_rate)
        g1 = gcd(2, d)
        up1, down1 = 2 // g1, d // g1
        self._stage1 = BlockResampler(
            self.in_rate, self.in_rate * up1 // down1, ratio=(up1, down1), band_hz=(passband_hz, stopband_hz)
        )
        # output frame n sits at stage-1 frame n * a / b
        g2 = gcd(self.in_rate * up1, self.out_rate * down1)
        self._a, self._b = self.in_rate * up1 // g2, self.out_rate * down1 // g2
        self._table = interpolation_kernel(self.in_rate * up1 / down1, stopband_hz)
        self._diff = np.diff(self._table, axis=0)  # (phases, 2K): row p + 1 - row p
        self._kernel_half = self._table.shape[1] // 2  # K
        self.taps = self._stage1.taps  # input frames per stage-1 frame
        self.latency_input_frames = self.input_span(0, 1)[1] - 1  # input frames read past output frame 0's time

    def _stage1_span(self, out_start: int, out_stop: int) -> tuple[int, int]:
        """Stage-1 frames ``[lo, hi)`` that output frames ``[out_start, out_stop)`` read (two-stage path)."""
        return (out_start * self._a) // self._b - self._kernel_half + 1, ((out_stop - 1) * self._a) // self._b + (
            self._kernel_half + 1)

    def output_frames(self, input_frames: int) -> int:
        """Length of the resampled signal (as ``resample_poly``: ceil(n * up / down))."""
        return -(-int(input_frames) * self.up // self.down)

    def input_span(self, out_start: int, out_stop: int) -> tuple[int, int]:
        """Input frames ``[lo, hi)`` that output frames ``[out_start, out_stop)`` depend on."""
        if self.identity:
            return out_start, out_stop
        if self._stage1 is not None:
            return self._stage1.input_span(*self._stage1_span(out_start, out_stop))
        base_lo = (out_start * self.down + self._half_len) // self.up
        base_hi = ((out_stop - 1) * self.down + self._half_len) // self.up
        return base_lo - self.taps + 1, base_hi + 1

    def ready_frames(self, input_frames: int) -> int:
        """How many output frames are complete once input frames ``[0, input_frames)`` are known."""
        if self.identity:
            return int(input_frames)
        if self._stage1 is None:
            # output frame m reads input up to (m * down + half_len) // up
            return max(0, -(-(int(input_frames) * self.up - self._half_len) // self.down))
        # output frame m reads stage-1 frames up to z = (m * a) // b + K, which read input up to
        # (z * down1 + half_len1) // up1: ready while that is below input_frames
        s1 = self._stage1
        z_max = (int(input_frames) * s1.up - 1 - s1._half_len) // s1.down
        return max(0, ((z_max - self._kernel_half + 1) * self._b - 1) // self._a + 1)

    def process(self, span: np.ndarray, out_start: int, out_stop: int) -> np.ndarray:
        """Output frames ``[out_start, out_stop)`` from ``span`` = input frames ``input_span(...)``."""
        if self.identity:
            return span
        if self._stage1 is not None:
            return self._process_two_stage(span, out_start, out_stop)
        planar = self._process_periods(np.asarray(span, dtype=np.float32), out_start, out_stop)
        out = np.empty((out_stop - out_start, planar.shape[0]), dtype=np.float32)
        for c in range(planar.shape[0]):  # one channel at a time: numpy's transposing copy is ~7x slower
            out[:, c] = planar[c]
        return out

    def _process_periods(self, span: np.ndarray, out_start: int, out_stop: int) -> np.ndarray:
        """:meth:`process` as batched matrix products over whole blocks of periods (see the module doc).

        Returns the output frames channels first, ``(channels, out_stop - out_start)`` (a view).
        """
        up, down, width = self._period_out, self._period_in, self._window_frames
        lo, _ = self.input_span(out_start, out_stop)
        block = PERIODS_PER_BLOCK * up  # output frames per block
        first_block, end_block = out_start // block, -(-out_stop // block)
        m0 = first_block * PERIODS_PER_BLOCK  # first period computed
        blocks = end_block - first_block
        periods = blocks * PERIODS_PER_BLOCK
        # Input frames [m0*down + offset, (m0 + periods - 1)*down + offset + width), relative to the span.
        first = m0 * down + self._window_offset - lo
        last = (m0 + periods - 1) * down + self._window_offset + width - lo
        frames, channels = span.shape
        before, after = max(0, -first), max(0, last - frames)
        if before or after:  # whole blocks reach past the span: frames no kept output depends on (zeros)
            x = np.zeros((before + frames + after, channels), dtype=np.float32)
            x[before : before + frames] = span
            first += before
        else:
            x = np.ascontiguousarray(span)
        frame_stride, channel_stride = x.strides  # the windows read the interleaved frames: no transpose
        windows = np.lib.stride_tricks.as_strided(
            x[first:], shape=(channels, blocks, PERIODS_PER_BLOCK, width),
            strides=(channel_stride, PERIODS_PER_BLOCK * down * frame_stride, down * frame_stride, frame_stride),
        )
        # A copy, (channels * blocks, periods per block, width): every product has the same shape.
        stacked = np.ascontiguousarray(windows).reshape(channels * blocks, PERIODS_PER_BLOCK, width)
        y = np.empty((channels * blocks, PERIODS_PER_BLOCK, up), dtype=np.float32)
        for j0, j1, w0, w1, matrix in self._sub_blocks:  # strided operands, BLAS reads them in place
            np.matmul(stacked[:, :, w0:w1], matrix, out=y[:, :, j0:j1])
        a = out_start - m0 * up
        return y.reshape(channels, periods * up)[:, a : a + out_stop - out_start]

    def _process_two_stage(self, span: np.ndarray, out_start: int, out_stop: int) -> np.ndarray:
        """:meth:`process` for long periods: stage-1 frames, then 2K interpolated taps per output frame."""
        assert self._stage1 is not None
        z_lo, z_hi = self._stage1_span(out_start, out_stop)
        z = self._stage1._process_periods(np.asarray(span, dtype=np.float32), z_lo, z_hi)  # (channels, frames)
        channels = z.shape[0]
        out = np.empty((out_stop - out_start, channels), dtype=np.float32)
        taps = np.arange(2 * self._kernel_half) - (z_lo + self._kernel_half - 1)  # tap t of frame base: z[base + ...]
        for start in range(out_start, out_stop, STAGE2_FRAMES):
            stop = min(out_stop, start + STAGE2_FRAMES)
            base, rem = np.divmod(np.arange(start, stop, dtype=np.int64) * self._a, self._b)  # time: base + rem / b
            row, sub = np.divmod(rem * TABLE_PHASES, self._b)  # between table rows row and row + 1
            frac = (sub / self._b).astype(np.float32)[:, None]
            coeffs = np.take(self._table, row, axis=0)  # (frames, 2K): row + frac * (next row - row)
            coeffs += frac * np.take(self._diff, row, axis=0)
            index = base[:, None] + taps
            for c in range(channels):  # each frame: one dot product of 2K contiguous values, in a fixed order
                out[start - out_start : stop - out_start, c] = np.einsum("ft,ft->f", np.take(z[c], index), coeffs)
        return out


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
        self.latency_input_frames = self._r.latency_input_frames

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
        # an output frame is released once every input frame it reads has arrived
        return self._release(min(r.ready_frames(self.input_frames), r.output_frames(self.input_frames)))

    def flush(self, channels: int = 2) -> np.ndarray:
        """The last output frames (the input ends here: zeros after it); the resampler is done afterwards."""
        self._flushed = True
        if self._r.identity:
            return np.zeros((0, channels), dtype=np.float32)
        if self._held is None:
            self._held = np.zeros((0, channels), dtype=np.float32)
        return self._release(self._r.output_frames(self.input_frames))
