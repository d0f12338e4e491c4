"""Auralis DSP library: audio I/O, BS.1770 loudness, the 25D fingerprint, adaptive mastering.

Laid out as the pipeline reads: audio -> downmix -> loudness -> fingerprint (+ sidecar) -> presets ->
plan -> stages -> render. This package never imports trio: worker processes import it alone
and start light.
"""

from .album import (
    AlbumLayout,
    AlbumReader,
    album_key,
    analyze_album_segment,
    compute_album_plan_inputs,
    merge_album_segments,
    plan_album,
    render_album_chunk,
)
from .audio import ArrayReader, AudioInfo, AudioReader, open_reader, probe, read_audio, read_frames, write_audio
from .downmix import ChannelLayout, channel_layout, mono_downmix, stereo_downmix
from .errors import AlbumMismatchError, AudioError, AuralisError
from .fingerprint import (
    ALGORITHM_VERSION,
    DIMENSIONS,
    PLAN_INPUT_KEYS,
    SEGMENT_S,
    Fingerprint,
    PlanInputs,
    SegmentResult,
    analyze_segment,
    compute_detail_dimensions,
    compute_fingerprint,
    compute_plan_inputs,
    fingerprint_from_samples,
    merge_segments,
    plan_inputs_from_reader,
    segment_count,
)
from .loudness import (
    ABSOLUTE_GATE_LUFS,
    LoudnessMeasurements,
    LoudnessSegment,
    analyze_loudness_segment,
    channel_weights,
    integrated_loudness,
    k_weighting_sos,
    loudness_segment_geometry,
    measure_loudness,
    merge_loudness_segments,
    momentary_loudness,
    short_term_loudness,
    true_peak_dbtp,
)
from .plan import ENGINE_VERSION, MasteringPlan, plan_mastering
from .presets import PRESET_NAMES, Preset, get_preset
from .render import CHUNK_S, chunk_count, chunk_frames, output_format, render_chunk, render_file, render_reader
from .sidecar import SIDECAR_FORMAT_VERSION, SIDECAR_SUFFIX, FileIdentity, file_identity, read_sidecar, write_sidecar

__all__ = [
    # audio
    "ArrayReader", "AudioError", "AudioInfo", "AudioReader", "AuralisError",
    "open_reader", "probe", "read_audio", "read_frames", "write_audio",
    # channel layouts
    "ChannelLayout", "channel_layout", "mono_downmix", "stereo_downmix",
    # loudness
    "ABSOLUTE_GATE_LUFS", "LoudnessMeasurements", "LoudnessSegment", "analyze_loudness_segment",
    "channel_weights", "integrated_loudness", "k_weighting_sos", "loudness_segment_geometry",
    "measure_loudness", "merge_loudness_segments", "momentary_loudness", "short_term_loudness", "true_peak_dbtp",
    # fingerprint and sidecars
    "ALGORITHM_VERSION", "DIMENSIONS", "PLAN_INPUT_KEYS", "SEGMENT_S", "Fingerprint", "PlanInputs",
    "SegmentResult", "analyze_segment", "compute_detail_dimensions", "compute_fingerprint",
    "compute_plan_inputs", "fingerprint_from_samples", "merge_segments", "plan_inputs_from_reader", "segment_count",
    "SIDECAR_FORMAT_VERSION", "SIDECAR_SUFFIX", "FileIdentity", "file_identity", "read_sidecar", "write_sidecar",
    # mastering
    "ENGINE_VERSION", "MasteringPlan", "plan_mastering", "PRESET_NAMES", "Preset", "get_preset",
    "CHUNK_S", "chunk_count", "chunk_frames", "output_format", "render_chunk", "render_file", "render_reader",
    # albums
    "AlbumLayout", "AlbumMismatchError", "AlbumReader", "album_key", "analyze_album_segment",
    "compute_album_plan_inputs", "merge_album_segments", "plan_album", "render_album_chunk",
]  # fmt: skip
