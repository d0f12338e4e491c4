"""The five mastering presets as data: intent in words, numbers with units.

A preset is the *character* layer of a plan. :func:`auralis.plan.plan_mastering` combines it
with the track's fingerprint (2D LWRP region, adaptive tonal correction) and the intensity.
Every preset applies the fingerprint-derived tonal correction (scaled by
``adaptive_eq_weight``) and adds its own EQ character on top. Targets follow the delivery
platforms (see docs/mastering.md): Spotify/YouTube/Tidal -14 LUFS, Apple Music -16 LUFS,
all with a -1 dBTP ceiling.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Final

from .errors import UnknownPresetError

PRESET_NAMES: Final = ("adaptive", "gentle", "warm", "bright", "punchy")


@dataclass(frozen=True)
class Preset:
    """One preset. EQ gains are in dB at full intensity; the four EQ bands are fixed filters.

    Attributes:
        name: preset name (one of ``PRESET_NAMES``).
        description: one sentence of intent.
        target_lufs: integrated loudness the preset aims for (BS.1770).
        adaptive_eq_weight: fraction (0-1) of the fingerprint-derived tonal correction applied.
        low_shelf_db: character gain of the low shelf (100 Hz, sub-bass and bass).
        low_mid_db: character gain of the low-mid bell (350 Hz, the 250-500 Hz band).
        presence_db: character gain of the presence bell (4 kHz, 2-8 kHz).
        high_shelf_db: character gain of the high shelf (10 kHz, air).
        comp_ratio: compressor ratio in the ``quiet`` / ``normal`` regions (1 = off).
        comp_threshold_lu: compressor threshold relative to the target loudness, in dB of
            short-term (30 ms) RMS above ``target_lufs``.
        comp_attack_ms: compressor attack (look-ahead ramp) in ms.
        comp_release_ms: compressor release (hold) in ms.
    """

    name: str
    description: str
    target_lufs: float
    adaptive_eq_weight: float
    low_shelf_db: float
    low_mid_db: float
    presence_db: float
    high_shelf_db: float
    comp_ratio: float
    comp_threshold_lu: float
    comp_attack_ms: float
    comp_release_ms: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict of every field."""
        return asdict(self)


PRESETS: Final[dict[str, Preset]] = {
    "adaptive": Preset(
        name="adaptive",
        description="Streaming-ready balance: corrects the track's tonal balance toward a reference and "
        "lands at -14 LUFS.",
        target_lufs=-14.0,  # Spotify / YouTube / Tidal normalisation level
        adaptive_eq_weight=1.0,
        low_shelf_db=0.0,
        low_mid_db=0.0,
        presence_db=0.0,
        high_shelf_db=0.0,
        comp_ratio=2.0,
        comp_threshold_lu=6.0,
        comp_attack_ms=10.0,
        comp_release_ms=120.0,
    ),
    "gentle": Preset(
        name="gentle",
        description="Least intervention: a light touch of tonal correction, barely any compression, "
        "-16 LUFS (Apple Music).",
        target_lufs=-16.0,  # Apple Music Sound Check level
        adaptive_eq_weight=0.3,
        low_shelf_db=0.0,
        low_mid_db=0.0,
        presence_db=0.0,
        high_shelf_db=0.0,
        comp_ratio=1.25,
        comp_threshold_lu=8.0,
        comp_attack_ms=20.0,
        comp_release_ms=200.0,
    ),
    "warm": Preset(
        name="warm",
        description="Thicker low end and body, softened presence and air; -13 LUFS.",
        target_lufs=-13.0,
        adaptive_eq_weight=0.5,
        low_shelf_db=1.5,
        low_mid_db=2.0,
        presence_db=-1.5,
        high_shelf_db=-2.0,
        comp_ratio=2.0,
        comp_threshold_lu=6.0,
        comp_attack_ms=15.0,
        comp_release_ms=150.0,
    ),
    "bright": Preset(
        name="bright",
        description="Open and forward: lifted presence and air, leaner low mids; -12 LUFS.",
        target_lufs=-12.0,
        adaptive_eq_weight=0.5,
        low_shelf_db=0.0,
        low_mid_db=-1.5,
        presence_db=2.0,
        high_shelf_db=2.5,
        comp_ratio=2.0,
        comp_threshold_lu=6.0,
        comp_attack_ms=10.0,
        comp_release_ms=120.0,
    ),
    "punchy": Preset(
        name="punchy",
        description="Kick and snare forward: more low end and bite, firmer compression with a slow "
        "attack that lets transients through; -14 LUFS.",
        target_lufs=-14.0,
        adaptive_eq_weight=0.5,
        low_shelf_db=2.0,
        low_mid_db=-1.0,
        presence_db=1.0,
        high_shelf_db=0.5,
        comp_ratio=3.0,
        comp_threshold_lu=5.0,
        comp_attack_ms=25.0,
        comp_release_ms=100.0,
    ),
}


def get_preset(name: str) -> Preset:
    """The preset called ``name``.

    Raises:
        UnknownPresetError: ``name`` is not a preset; the message lists the valid names.
    """
    try:
        return PRESETS[name]
    except (KeyError, TypeError):
        raise UnknownPresetError(
            f"unknown preset {name!r}; valid presets: {', '.join(PRESET_NAMES)}"
        ) from None
