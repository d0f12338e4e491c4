"""Outputs: where the shared player's mastered stream goes (``/stream``, Snapcast, Icecast); docs/outputs.md."""

from collections.abc import Sequence

from ...config import OutputSpec
from .icecast import IcecastOutput
from .registry import (
    BACKOFF_MAX_S,
    BACKOFF_START_S,
    OUTPUT_EVENT,
    OutputFailure,
    OutputInfo,
    OutputKind,
    OutputLink,
    Outputs,
    pcm_feed,
)
from .snapcast import SnapcastOutput


def make_outputs(specs: Sequence[OutputSpec], in_rate: int) -> list[OutputKind]:
    """One output object per configured :class:`~auralisd.config.OutputSpec`, in order."""
    out: list[OutputKind] = []
    for spec in specs:
        if spec.kind == "snapcast":
            out.append(SnapcastOutput(spec, in_rate))
        elif spec.kind == "icecast":
            out.append(IcecastOutput(spec, in_rate))
        else:
            raise ValueError(f"unknown output kind {spec.kind!r}")
    return out


__all__ = [
    "BACKOFF_MAX_S", "BACKOFF_START_S", "OUTPUT_EVENT", "OutputFailure", "OutputInfo", "OutputKind", "OutputLink",
    "IcecastOutput", "Outputs", "SnapcastOutput", "make_outputs", "pcm_feed",
]
