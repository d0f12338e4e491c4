"""Auralis DSP library: audio I/O, BS.1770 loudness, the 25D fingerprint, adaptive mastering.

Laid out as the pipeline reads: audio -> downmix -> loudness -> fingerprint (+ sidecar) -> presets ->
plan -> stages -> render. This package never imports trio: worker processes import it alone
and start light.

The public names below are imported on first use (PEP 562 module ``__getattr__``), not when
the package is: ``import auralis.sidecar`` or ``from auralis import probe`` loads only the
modules that name needs, so the daemon (which plans and probes but never filters) never loads
the DSP kernels, and a worker process starts with what its job needs. Type checkers see the
ordinary imports (``TYPE_CHECKING``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
    from .sidecar import (
        SIDECAR_FORMAT_VERSION,
        SIDECAR_SUFFIX,
        FileIdentity,
        file_identity,
        read_sidecar,
        write_sidecar,
    )

# public name -> the module of this package that defines it
_LAZY: dict[str, str] = {
    # album
    "AlbumLayout": "album",
    "AlbumReader": "album",
    "album_key": "album",
    "analyze_album_segment": "album",
    "compute_album_plan_inputs": "album",
    "merge_album_segments": "album",
    "plan_album": "album",
    "render_album_chunk": "album",
    # audio
    "ArrayReader": "audio",
    "AudioInfo": "audio",
    "AudioReader": "audio",
    "open_reader": "audio",
    "probe": "audio",
    "read_audio": "audio",
    "read_frames": "audio",
    "write_audio": "audio",
    # downmix
    "ChannelLayout": "downmix",
    "channel_layout": "downmix",
    "mono_downmix": "downmix",
    "stereo_downmix": "downmix",
    # errors
    "AlbumMismatchError": "errors",
    "AudioError": "errors",
    "AuralisError": "errors",
    # fingerprint
    "ALGORITHM_VERSION": "fingerprint",
    "DIMENSIONS": "fingerprint",
    "Fingerprint": "fingerprint",
    "PLAN_INPUT_KEYS": "fingerprint",
    "PlanInputs": "fingerprint",
    "SEGMENT_S": "fingerprint",
    "SegmentResult": "fingerprint",
    "analyze_segment": "fingerprint",
    "compute_detail_dimensions": "fingerprint",
    "compute_fingerprint": "fingerprint",
    "compute_plan_inputs": "fingerprint",
    "fingerprint_from_samples": "fingerprint",
    "merge_segments": "fingerprint",
    "plan_inputs_from_reader": "fingerprint",
    "segment_count": "fingerprint",
    # loudness
    "ABSOLUTE_GATE_LUFS": "loudness",
    "LoudnessMeasurements": "loudness",
    "LoudnessSegment": "loudness",
    "analyze_loudness_segment": "loudness",
    "channel_weights": "loudness",
    "integrated_loudness": "loudness",
    "k_weighting_sos": "loudness",
    "loudness_segment_geometry": "loudness",
    "measure_loudness": "loudness",
    "merge_loudness_segments": "loudness",
    "momentary_loudness": "loudness",
    "short_term_loudness": "loudness",
    "true_peak_dbtp": "loudness",
    # plan
    "ENGINE_VERSION": "plan",
    "MasteringPlan": "plan",
    "plan_mastering": "plan",
    # presets
    "PRESET_NAMES": "presets",
    "Preset": "presets",
    "get_preset": "presets",
    # render
    "CHUNK_S": "render",
    "chunk_count": "render",
    "chunk_frames": "render",
    "output_format": "render",
    "render_chunk": "render",
    "render_file": "render",
    "render_reader": "render",
    # sidecar
    "FileIdentity": "sidecar",
    "SIDECAR_FORMAT_VERSION": "sidecar",
    "SIDECAR_SUFFIX": "sidecar",
    "file_identity": "sidecar",
    "read_sidecar": "sidecar",
    "write_sidecar": "sidecar",
}


def __getattr__(name: str) -> Any:
    """Import the module that defines ``name`` (a public name or a submodule) on first use."""
    module_name = _LAZY.get(name)
    if module_name is None:
        if name.startswith("__"):  # pickle, inspect, doctest probing dunders: never a submodule
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        try:
            return importlib.import_module(f"{__name__}.{name}")  # ``auralis.render`` after ``import auralis``
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(importlib.import_module(f"{__name__}.{module_name}"), name)
    globals()[name] = value  # the next lookup is an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


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
