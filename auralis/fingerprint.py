"""The 25D mastering fingerprint: 25 named dimensions plus a block of BS.1770 measurements.

A track is read in fixed segments of :data:`SEGMENT_S` seconds (each with the pre-roll
the K-weighting filters need and the post-roll its last frames span). Per segment we keep
only additive quantities: the loudness meter's segment (:mod:`auralis.loudness`) of the stereo
downmix (:mod:`auralis.downmix`: what a listener hears, so mono as dual mono), the
energy of the seven bands, the downmix energy and frame count over the loudness meter's
gated ~2 ms granules, and the downmix peak. Merging
them gives exactly the values a single pass would (see ``docs/fingerprint.md``), so the
daemon can spread one track over all cores with :func:`analyze_segment` and
:func:`merge_segments`. These are the *plan inputs* (:class:`PlanInputs`): everything
the mastering plan needs, available before the other 16 dimensions.

The other 16 dimensions (:func:`compute_detail_dimensions`) are built in the same
segment loop from small per-frame arrays (an onset envelope, per-frame spectral and tonal
values, 1 s window levels, stereo sums), so memory stays bounded by one segment.
:func:`compute_fingerprint` without plan inputs does both in a single decode pass.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from . import loudness
from .audio import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, AudioReader
from .downmix import stereo_downmix
from .features import dynamics, rhythm, spectral, stereo, tonal
from .features.grid import owned_frames, valid_counts

ALGORITHM_VERSION: Final[str] = "2026.12.1"  # bump whenever any number changes
DIMENSIONS: Final[tuple[str, ...]] = (
    "sub_bass_pct", "bass_pct", "low_mid_pct", "mid_pct", "upper_mid_pct", "presence_pct", "air_pct",
    "lufs", "crest_db", "bass_mid_ratio", "tempo_bpm", "rhythm_stability", "transient_density",
    "silence_ratio", "spectral_centroid", "spectral_rolloff", "spectral_flatness", "harmonic_ratio",
    "pitch_stability", "chroma_energy", "dynamic_range_variation", "loudness_variation_std",
    "peak_consistency", "stereo_width", "phase_correlation",
)  # issue 2's order
DIMENSION_UNITS: Final[dict[str, str]] = {
    **{name: "fraction" for name in spectral.BAND_NAMES},
    "lufs": "LUFS", "crest_db": "dB", "bass_mid_ratio": "dB", "tempo_bpm": "BPM", "rhythm_stability": "0-1",
    "transient_density": "onsets/s", "silence_ratio": "fraction", "spectral_centroid": "Hz",
    "spectral_rolloff": "Hz", "spectral_flatness": "0-1", "harmonic_ratio": "0-1", "pitch_stability": "0-1",
    "chroma_energy": "0-1", "dynamic_range_variation": "dB", "loudness_variation_std": "dB",
    "peak_consistency": "0-1", "stereo_width": "0-1", "phase_correlation": "-1..1",
}
PLAN_INPUT_KEYS: Final[tuple[str, ...]] = ("lufs", "crest_db", *spectral.BAND_NAMES)
DETAIL_KEYS: Final[tuple[str, ...]] = tuple(name for name in DIMENSIONS if name not in PLAN_INPUT_KEYS)
MEASUREMENT_KEYS: Final[tuple[str, ...]] = (
    "integrated_lufs", "true_peak_dbtp", "sample_peak_dbfs", "loudness_range_lu", "max_momentary_lufs",
    "max_short_term_lufs", "plr_db", "duration_s", "sample_rate", "channels",
)
# Measurements that are -inf for silence (null in JSON).
NULLABLE_MEASUREMENTS: Final = frozenset(
    {"integrated_lufs", "true_peak_dbtp", "sample_peak_dbfs", "max_momentary_lufs", "max_short_term_lufs", "plr_db"}
)
SEGMENT_S: Final = 30.0  # segment length in seconds (rounded to whole 100 ms gating hops)
SILENT_LUFS: Final = -70.0  # `lufs` of silence: the BS.1770 absolute gate (ITU-R BS.1770-4)
GATING_HOP_S: Final = 0.1  # BS.1770 gating blocks start every 100 ms
# The -70 LUFS absolute gate as a mean K-weighted energy (ITU-R BS.1770-4 eq. 2 inverted).
_GATE_ENERGY: Final = 10.0 ** ((loudness.ABSOLUTE_GATE_LUFS - loudness.LOUDNESS_OFFSET_DB) / 10.0)


def _finite_dims(dims: dict[str, float], keys: Sequence[str]) -> dict[str, float]:
    out = {}
    for key in keys:
        value = float(dims[key])
        if not math.isfinite(value):
            raise ValueError(f"dimension {key} is not finite: {value}")
        out[key] = value
    return out


@dataclass(frozen=True)
class Fingerprint:
    """The 25 dimensions (always finite), the measurements (-inf for silence) and the algorithm version."""

    dimensions: dict[str, float]
    measurements: dict[str, float | int]
    algorithm_version: str = ALGORITHM_VERSION

    def to_json_dict(self) -> dict[str, Any]:
        """JSON-safe form: ``{"algorithm_version", "fingerprint": {25}, "measurements": {...}}``; -inf -> None."""
        return {
            "algorithm_version": self.algorithm_version,
            "fingerprint": {key: float(self.dimensions[key]) for key in DIMENSIONS},
            "measurements": measurements_to_json(self.measurements),
        }

    @classmethod
    def from_json_dict(cls, d: dict[str, Any]) -> Fingerprint:
        """Inverse of :meth:`to_json_dict`. Raises ValueError (or KeyError/TypeError) on anything malformed."""
        if not isinstance(d, dict):
            raise ValueError("not an object")
        version = d["algorithm_version"]
        if not isinstance(version, str):
            raise ValueError("algorithm_version is not a string")
        dims = d["fingerprint"]
        if not isinstance(dims, dict) or set(dims) != set(DIMENSIONS):
            raise ValueError("fingerprint must hold exactly the 25 dimensions")
        for key, value in dims.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"dimension {key} is not a finite number")
        return cls(
            dimensions={key: float(dims[key]) for key in DIMENSIONS},
            measurements=measurements_from_json(d["measurements"]),
            algorithm_version=version,
        )


def measurements_to_json(measurements: dict[str, float | int]) -> dict[str, float | int | None]:
    """Measurements with -inf (silence) as None, ready for ``json.dumps(..., allow_nan=False)``."""
    out: dict[str, float | int | None] = {}
    for key in MEASUREMENT_KEYS:
        value = measurements[key]
        if key in ("sample_rate", "channels"):
            out[key] = int(value)
        else:
            out[key] = float(value) if math.isfinite(value) else None
    return out


def measurements_from_json(d: Any) -> dict[str, float | int]:
    """Inverse of :func:`measurements_to_json`; raises ValueError on a missing, wrong or non-finite value."""
    if not isinstance(d, dict) or set(d) != set(MEASUREMENT_KEYS):
        raise ValueError("measurements must hold exactly the documented keys")
    out: dict[str, float | int] = {}
    for key in MEASUREMENT_KEYS:
        value = d[key]
        if key in ("sample_rate", "channels"):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{key} must be a positive integer")
            out[key] = value
        elif value is None and key in NULLABLE_MEASUREMENTS:
            out[key] = -math.inf
        elif isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"measurement {key} is not a finite number")
        else:
            out[key] = float(value)
    return out


@dataclass(frozen=True)
class PlanInputs:
    """What the mastering plan needs, computable first: ``lufs``, ``crest_db``, the 7 band fractions, measurements."""

    dimensions: dict[str, float]
    measurements: dict[str, float | int]


@dataclass(frozen=True, eq=False)
class SegmentResult:
    """Additive quantities of one segment (picklable, a few kB): what :func:`merge_segments` combines."""

    index: int
    num_frames: int  # of the whole track
    sample_rate: int
    channels: int
    loudness: Any  # auralis.loudness.LoudnessSegment
    band_energy: tuple[float, ...]  # the seven bands, summed power spectra (arbitrary common unit)
    gated_energy: float  # sum of m^2 over the segment's loudness granules that pass the gate
    gated_frames: int  # frames in those granules
    mono_peak: float  # largest |m| over the segment's own samples


@dataclass(frozen=True, eq=False)
class _DetailPart:
    """Per-frame arrays and sums of one segment for the 16 detail dimensions."""

    ltas: np.ndarray
    frame_ms: np.ndarray
    flatness: np.ndarray
    harmonicity: np.ndarray
    pitch: np.ndarray
    chroma: np.ndarray
    hop_broadband: np.ndarray
    hop_emphasis: np.ndarray
    hop_count: np.ndarray
    window_peak: np.ndarray
    window_ms: np.ndarray
    stereo_sums: tuple[float, float, float]


@dataclass(frozen=True)
class _Geometry:
    """Where segments and the feature grids lie for one track."""

    num_frames: int
    sample_rate: int
    channels: int
    loudness_granule_frames: int  # the loudness meter's granule (~2 ms): the crest factor's gate
    gating_hop_frames: int  # the 100 ms BS.1770 gating hop; segments are whole hops
    preroll_frames: int
    postroll_frames: int
    segment_frames: int
    spectral_frames: int
    hop_frames: int
    window_frames: int

    @classmethod
    def of(cls, num_frames: int, sample_rate: int, channels: int) -> _Geometry:
        granule, preroll, postroll = loudness.loudness_segment_geometry(sample_rate)
        gating_hop = loudness.gating_hop_frames(sample_rate)
        if gating_hop % granule:
            raise ValueError(f"loudness granule {granule} does not divide the 100 ms hop {gating_hop}")
        segment = gating_hop * max(1, int(round(SEGMENT_S / GATING_HOP_S)))
        return cls(
            num_frames=num_frames,
            sample_rate=sample_rate,
            channels=channels,
            loudness_granule_frames=granule,
            gating_hop_frames=gating_hop,
            preroll_frames=preroll,
            postroll_frames=postroll,
            segment_frames=segment,
            spectral_frames=spectral.spectral_frame_length(sample_rate),
            hop_frames=rhythm.hop_length(sample_rate),
            window_frames=max(1, int(round(dynamics.WINDOW_S * sample_rate))),
        )

    @property
    def count(self) -> int:
        return max(1, -(-self.num_frames // self.segment_frames))

    def bounds(self, index: int) -> tuple[int, int]:
        if not 0 <= index < self.count:
            raise IndexError(f"segment {index} out of range 0..{self.count - 1}")
        start = index * self.segment_frames
        return start, min(start + self.segment_frames, self.num_frames)


class _ArraySource:
    """In-memory samples behind the :class:`~auralis.audio.AudioReader` ``read`` interface."""

    def __init__(self, samples: np.ndarray) -> None:
        self._samples = samples

    def read(self, start_frame: int, stop_frame: int) -> np.ndarray:
        total = self._samples.shape[0]
        out = np.zeros((stop_frame - start_frame, self._samples.shape[1]), dtype=np.float32)
        lo, hi = max(start_frame, 0), min(stop_frame, total)
        if hi > lo:
            out[lo - start_frame : hi - start_frame] = self._samples[lo:hi]
        return out


@dataclass(frozen=True, eq=False)
class _Block:
    """One segment read once with its context, and what both halves of the analysis share."""

    start: int  # the segment's own frames are [start, stop)
    stop: int
    read_start: int  # absolute frame of down[0]
    down: np.ndarray  # float32 (frames, 2) stereo downmix of the frames read: what the listener hears
    mono: np.ndarray  # float32 (frames,) m = (L' + R') / 2
    squares: np.ndarray  # m^2
    frames: dict[str, tuple[int, int]]  # owned frame indices per grid
    power: np.ndarray  # power spectra of the owned spectral frames
    ltas: np.ndarray  # their sum over frames (float64)

    @property
    def own(self) -> slice:
        return slice(self.start - self.read_start, self.stop - self.read_start)


def _read_block(source: Any, geo: _Geometry, index: int, *, plan: bool) -> _Block:
    """Read segment ``index`` with the pre-roll and post-roll its quantities need."""
    start, stop = geo.bounds(index)
    grids = {
        "spectral": geo.spectral_frames,
        "hop": geo.hop_frames,
        "window": geo.window_frames,
    }
    frames = {name: owned_frames(start, stop, step) for name, step in grids.items()}
    # One sample before the segment at least: the onset envelope's first difference needs it.
    read_start = start - max(1, geo.preroll_frames if plan else 1)
    read_stop = stop + (geo.postroll_frames if plan else 0)
    for name, step in grids.items():  # every grid's frames have length == step
        k0, k1 = frames[name]
        if k1 > k0:
            read_stop = max(read_stop, k1 * step)
    down = stereo_downmix(source.read(read_start, read_stop))
    mono = down[:, 0] + down[:, 1]
    mono *= np.float32(0.5)
    k0, k1 = frames["spectral"]
    power = spectral.frame_power(mono, read_start, k0, k1, geo.spectral_frames)
    return _Block(
        start=start,
        stop=stop,
        read_start=read_start,
        down=down,
        mono=mono,
        squares=mono * mono,
        frames=frames,
        power=power,
        ltas=power.sum(axis=0, dtype=np.float64),
    )


def _peak(x: np.ndarray) -> float:
    """``max |x|`` without a temporary array; 0.0 for an empty array."""
    return float(max(x.max(), -x.min())) if x.size else 0.0


def _plan_part(b: _Block, geo: _Geometry, index: int) -> SegmentResult:
    """The additive plan quantities of one block.

    Loudness and true peak are measured on the stereo downmix, not on the source channels: the
    plan sets the gain for what is heard (a mono file as dual mono, 5.1 as its BS.775 downmix).
    """
    lo = b.start - b.read_start - geo.preroll_frames
    context = b.down[lo : b.stop - b.read_start + geo.postroll_frames]
    loud = loudness.analyze_loudness_segment(
        context, geo.sample_rate, preroll_frames=geo.preroll_frames, segment_frames=b.stop - b.start
    )
    gated_energy, gated_frames = _gated_downmix(b, geo, loud.granule_energies)
    return SegmentResult(
        index=index,
        num_frames=geo.num_frames,
        sample_rate=geo.sample_rate,
        channels=geo.channels,
        loudness=loud,
        band_energy=tuple(float(e) for e in spectral.band_energies(b.ltas, geo.spectral_frames, geo.sample_rate)),
        gated_energy=gated_energy,
        gated_frames=gated_frames,
        mono_peak=_peak(b.mono[b.own]),
    )


def _gated_downmix(b: _Block, geo: _Geometry, loudness_energies: np.ndarray) -> tuple[float, int]:
    """``sum m^2`` and frame count over the block's loudness granules that pass the crest gate.

    The loudness meter's granules tile ``[start, start + n g)`` (``n`` = its granule count; the
    track's final partial granule, under ~2 ms, is dropped by the meter and here alike). Segment
    starts are whole gating hops, so these granules lie on one global grid whatever the split.
    """
    granule = geo.loudness_granule_frames
    k0 = b.start // granule
    downmix = dynamics.frame_sums(b.squares, b.read_start, k0, k0 + loudness_energies.size, granule)
    return dynamics.gated_sums(downmix, loudness_energies, granule, _GATE_ENERGY)


def _detail_part(b: _Block, geo: _Geometry) -> _DetailPart:
    """The per-frame arrays and sums of one block for the 16 detail dimensions."""
    sr = geo.sample_rate
    harmonicity, pitch, chroma = tonal.frame_tonal(b.power, geo.spectral_frames, sr)
    h0, h1 = b.frames["hop"]
    counts = valid_counts(h0, h1, geo.hop_frames, geo.hop_frames, geo.num_frames)
    safe_counts = np.maximum(counts, 1)
    # First difference m[n] - m[n-1]; the block starts at least one sample before its own samples.
    emphasis = np.empty_like(b.mono)
    emphasis[0] = 0.0
    np.subtract(b.mono[1:], b.mono[:-1], out=emphasis[1:])
    emphasis *= emphasis
    w0, w1 = b.frames["window"]
    window_counts = np.maximum(valid_counts(w0, w1, geo.window_frames, geo.window_frames, geo.num_frames), 1)
    return _DetailPart(
        ltas=b.ltas,
        frame_ms=spectral.frame_mean_square(b.power, geo.spectral_frames),
        flatness=spectral.frame_flatness(b.power, geo.spectral_frames, sr),
        harmonicity=harmonicity,
        pitch=pitch,
        chroma=chroma,
        hop_broadband=dynamics.frame_sums(b.squares, b.read_start, h0, h1, geo.hop_frames) / safe_counts,
        hop_emphasis=dynamics.frame_sums(emphasis, b.read_start, h0, h1, geo.hop_frames) / safe_counts,
        hop_count=counts,
        window_peak=dynamics.frame_peaks(b.mono, b.read_start, w0, w1, geo.window_frames),
        window_ms=dynamics.frame_sums(b.squares, b.read_start, w0, w1, geo.window_frames) / window_counts,
        stereo_sums=stereo.stereo_sums(b.down[b.own]),
    )


def _geometry_of_reader(reader: Any) -> _Geometry:
    info = reader.info
    return _Geometry.of(info.num_frames, info.sample_rate, info.channels)


def segment_count(path: str | os.PathLike[str]) -> int:
    """How many segments :func:`analyze_segment` splits ``path`` into. Raises AudioError."""
    with AudioReader(path) as reader:
        return _geometry_of_reader(reader).count


def analyze_segment(path: str | os.PathLike[str], index: int) -> SegmentResult:
    """The additive plan quantities of segment ``index`` of ``path`` (runs in a worker process).

    Raises:
        AudioError: the file cannot be decoded.
        IndexError: ``index`` is not in ``range(segment_count(path))``.
    """
    with AudioReader(path) as reader:
        return analyze_reader_segment(reader, index)


def reader_segment_count(reader: Any) -> int:
    """How many segments :func:`analyze_reader_segment` splits the audio behind ``reader`` into."""
    return _geometry_of_reader(reader).count


def analyze_reader_segment(reader: Any, index: int) -> SegmentResult:
    """:func:`analyze_segment` for any reader (``info`` + zero-padded ``read``), e.g. an album read as one file.

    Raises:
        AudioError: the audio cannot be decoded.
        IndexError: ``index`` is not in ``range(reader_segment_count(reader))``.
    """
    block, geo = _segment_block(reader, index)
    return _plan_part(block, geo, index)


def _segment_block(reader: Any, index: int) -> tuple[_Block, _Geometry]:
    """Segment ``index`` of ``reader`` read once for both halves. Raises IndexError out of range."""
    geo = _geometry_of_reader(reader)
    if not 0 <= index < geo.count:
        raise IndexError(f"{reader.path}: segment {index} out of range 0..{geo.count - 1}")
    return _read_block(reader, geo, index, plan=True), geo


def _merge(results: Sequence[SegmentResult]) -> PlanInputs:
    if not results:
        raise ValueError("no segments to merge")
    ordered = sorted(results, key=lambda r: r.index)
    first = ordered[0]
    geo = _Geometry.of(first.num_frames, first.sample_rate, first.channels)
    if any((r.num_frames, r.sample_rate, r.channels) != (first.num_frames, first.sample_rate, first.channels)
           for r in ordered):
        raise ValueError("segments come from different audio (frame count, rate or channels differ)")
    if [r.index for r in ordered] != list(range(geo.count)):
        raise ValueError(f"segments {[r.index for r in ordered]} do not cover 0..{geo.count - 1} exactly once")
    measured = loudness.merge_loudness_segments([r.loudness for r in ordered])
    integrated = float(measured.integrated_lufs)
    true_peak = float(measured.true_peak_dbtp)
    plr = true_peak - integrated if math.isfinite(true_peak) and math.isfinite(integrated) else -math.inf
    measurements: dict[str, float | int] = {
        "integrated_lufs": integrated,
        "true_peak_dbtp": true_peak,
        "sample_peak_dbfs": float(measured.sample_peak_dbfs),
        "loudness_range_lu": float(measured.loudness_range_lu),
        "max_momentary_lufs": float(measured.max_momentary_lufs),
        "max_short_term_lufs": float(measured.max_short_term_lufs),
        "plr_db": plr,
        "duration_s": first.num_frames / first.sample_rate,
        "sample_rate": int(first.sample_rate),
        "channels": int(first.channels),
    }
    gated_energy = math.fsum(r.gated_energy for r in ordered)
    gated_frames = sum(r.gated_frames for r in ordered)
    dims = {
        "lufs": max(integrated, SILENT_LUFS) if math.isfinite(integrated) else SILENT_LUFS,
        "crest_db": dynamics.crest_db(max(r.mono_peak for r in ordered), gated_energy, gated_frames),
        **spectral.band_fractions(np.sum([r.band_energy for r in ordered], axis=0)),
    }
    return PlanInputs(dimensions=dims, measurements=measurements)


def merge_segments(path: str | os.PathLike[str], results: Sequence[SegmentResult]) -> PlanInputs:
    """Combine the :func:`analyze_segment` results of every segment of ``path`` (any order) into plan inputs.

    Raises:
        ValueError: the results do not cover each segment exactly once.
    """
    try:
        return _merge(results)
    except ValueError as exc:  # the same complaint, now saying which file
        raise ValueError(f"{os.fspath(path)}: {exc}") from None


@dataclass(frozen=True, eq=False)
class FingerprintSegment:
    """Everything one segment contributes to the *full* fingerprint: the plan half and the detail half.

    Picklable, about 330 kB per 30 s segment at 44.1 kHz (mostly the per-hop onset arrays and the
    loudness meter's 2 ms granule energies). :func:`merge_fingerprint_segments` combines the
    segments of one file, computed anywhere and in any order, into exactly the fingerprint
    :func:`compute_fingerprint` computes in one process (the same arrays, merged by the same code).
    """

    plan: SegmentResult
    detail: _DetailPart

    @property
    def index(self) -> int:
        return self.plan.index


def analyze_fingerprint_segment(path: str | os.PathLike[str], index: int) -> FingerprintSegment:
    """Both halves of segment ``index`` of ``path`` (one decode of the segment; runs on any worker).

    Raises:
        AudioError: the file cannot be decoded.
        IndexError: ``index`` is not in ``range(segment_count(path))``.
    """
    with AudioReader(path) as reader:
        return analyze_reader_fingerprint_segment(reader, index)


def analyze_reader_fingerprint_segment(reader: Any, index: int) -> FingerprintSegment:
    """:func:`analyze_fingerprint_segment` for any reader (``info`` + zero-padded ``read``).

    Raises:
        AudioError: the audio cannot be decoded.
        IndexError: ``index`` is not in ``range(reader_segment_count(reader))``.
    """
    block, geo = _segment_block(reader, index)
    return FingerprintSegment(plan=_plan_part(block, geo, index), detail=_detail_part(block, geo))


def merge_fingerprint_segments(path: str | os.PathLike[str], parts: Sequence[FingerprintSegment]) -> Fingerprint:
    """The full fingerprint of ``path`` from the :func:`analyze_fingerprint_segment` results of every segment.

    Any order; bit-for-bit the value of :func:`compute_fingerprint` (which runs the same segment
    code in one loop) as long as the decoder reads the same samples.

    Raises:
        ValueError: the parts do not cover each segment of one file exactly once.
    """
    ordered = sorted(parts, key=lambda p: p.plan.index)
    plan = merge_segments(path, [p.plan for p in ordered])
    first = ordered[0].plan
    geo = _Geometry.of(first.num_frames, first.sample_rate, first.channels)
    return _assemble(plan, _detail_dimensions([p.detail for p in ordered], geo))


def _run(source: Any, geo: _Geometry, *, plan: bool, detail: bool) -> tuple[list[SegmentResult], list[_DetailPart]]:
    """One decode pass over every segment, in order; memory is bounded by one segment."""
    segments: list[SegmentResult] = []
    parts: list[_DetailPart] = []
    for index in range(geo.count):
        block = _read_block(source, geo, index, plan=plan)
        if plan:
            segments.append(_plan_part(block, geo, index))
        if detail:
            parts.append(_detail_part(block, geo))
    return segments, parts


def _detail_dimensions(parts: Sequence[_DetailPart], geo: _Geometry) -> dict[str, float]:
    def cat(name: str) -> np.ndarray:
        return np.concatenate([getattr(p, name) for p in parts])

    frame_ms = cat("frame_ms")
    ltas = np.sum([p.ltas for p in parts], axis=0)
    sums = np.sum([p.stereo_sums for p in parts], axis=0)
    strength = rhythm.onset_strength(cat("hop_broadband"), cat("hop_emphasis"))
    dims = {
        **spectral.spectral_dimensions(ltas, cat("flatness"), frame_ms, geo.spectral_frames, geo.sample_rate),
        **rhythm.rhythm_dimensions(strength, geo.hop_frames / geo.sample_rate, geo.num_frames / geo.sample_rate),
        **tonal.tonal_dimensions(cat("harmonicity"), cat("pitch"), cat("chroma"), frame_ms),
        **dynamics.dynamics_dimensions(cat("window_peak"), cat("window_ms"), cat("hop_broadband"), cat("hop_count")),
        **stereo.stereo_dimensions(*(float(s) for s in sums)),
    }
    return _finite_dims(dims, DETAIL_KEYS)


def compute_plan_inputs(path: str | os.PathLike[str]) -> PlanInputs:
    """Plan inputs of ``path``, all segments in this process (same values as the full fingerprint's).

    Raises:
        AudioError: the file is missing, unreadable, not audio, corrupt or empty.
    """
    with AudioReader(path) as reader:
        return plan_inputs_from_reader(reader)


def plan_inputs_from_reader(reader: Any) -> PlanInputs:
    """:func:`compute_plan_inputs` from an open reader (e.g. a track decoded once to analyse and render it).

    Raises:
        AudioError: the file cannot be decoded.
    """
    segments, _ = _run(reader, _geometry_of_reader(reader), plan=True, detail=False)
    return _merge(segments)


def compute_detail_dimensions(path: str | os.PathLike[str]) -> dict[str, float]:
    """The 16 dimensions that are not plan inputs, for the whole track, with memory bounded by one segment.

    Raises:
        AudioError: the file is missing, unreadable, not audio, corrupt or empty.
    """
    with AudioReader(path) as reader:
        geo = _geometry_of_reader(reader)
        _, parts = _run(reader, geo, plan=False, detail=True)
    return _detail_dimensions(parts, geo)


def _assemble(plan: PlanInputs, detail: dict[str, float]) -> Fingerprint:
    dims = _finite_dims({**plan.dimensions, **detail}, DIMENSIONS)
    return Fingerprint(dimensions=dims, measurements=dict(plan.measurements), algorithm_version=ALGORITHM_VERSION)


def compute_fingerprint(path: str | os.PathLike[str], plan_inputs: PlanInputs | None = None) -> Fingerprint:
    """The full fingerprint of an audio file, in one decode pass.

    Args:
        path: the audio file.
        plan_inputs: plan inputs already computed for this file (e.g. by the worker pool); then
            only the 16 detail dimensions are computed and the rest is taken from them.

    Raises:
        AudioError: the file is missing, unreadable, not audio, corrupt or empty.
    """
    with AudioReader(path) as reader:
        geo = _geometry_of_reader(reader)
        segments, parts = _run(reader, geo, plan=plan_inputs is None, detail=True)
    return _assemble(plan_inputs if plan_inputs is not None else _merge(segments), _detail_dimensions(parts, geo))


def fingerprint_from_samples(samples: np.ndarray, sample_rate: int) -> Fingerprint:
    """The fingerprint of in-memory audio: float ``(frames, channels)`` (or ``(frames,)`` mono) at ``sample_rate`` Hz.

    Gives the same numbers as :func:`compute_fingerprint` on a float32 WAV of the same samples.
    Non-finite samples are read as 0, as :class:`~auralis.audio.AudioReader` does.

    Raises:
        ValueError: no frames, a bad shape, or a sample rate outside 8-192 kHz.
    """
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[1] < 1 or x.shape[0] < 1:
        raise ValueError(f"samples must be (frames, channels) with at least one frame, got shape {np.shape(samples)}")
    if not MIN_SAMPLE_RATE <= int(sample_rate) <= MAX_SAMPLE_RATE:
        raise ValueError(f"sample rate {sample_rate} Hz is outside {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz")
    x = np.where(np.isfinite(x), x, np.float32(0.0))
    geo = _Geometry.of(x.shape[0], int(sample_rate), x.shape[1])
    segments, parts = _run(_ArraySource(x), geo, plan=True, detail=True)
    return _assemble(_merge(segments), _detail_dimensions(parts, geo))
