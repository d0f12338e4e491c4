"""Channel layouts: every file is heard, measured and mastered as the stereo pair a listener hears.

:func:`stereo_downmix` turns ``(frames, channels)`` into ``(frames, 2)`` with a fixed matrix per
channel count (:data:`LAYOUTS`). Mono becomes dual mono (the same signal on both sides, as a
stereo system plays it); multichannel follows ITU-R BS.775 (Table 2, the 3/2 -> 2/0 downmix):
``L' = L + 0.7071 C + 0.7071 Ls``, ``R' = R + 0.7071 C + 0.7071 Rs``, LFE dropped. Layouts that
BS.775 does not table follow the same rule: every surround (back or side) enters its own side at
-3 dB; a back centre is a surround shared by both sides, so it enters each at -3 dB - 3 dB
(power-preserving split).

Channel orders are those of WAVE (``WAVE_FORMAT_EXTENSIBLE`` default masks), FLAC (the
"channel assignment" of the FLAC format for 1-8 channels), SMPTE ST 2036-2 / ITU-R BS.2051 and
FFmpeg's native layouts, which agree for these counts:

=====  =======  ===================================
count  layout   order
=====  =======  ===================================
1      mono     C
2      stereo   FL FR
3      3.0      FL FR FC
4      4.0      FL FR BL BR (quad)
5      5.0      FL FR FC BL BR
6      5.1      FL FR FC LFE BL BR
7      6.1      FL FR FC LFE BC SL SR
8      7.1      FL FR FC LFE BL BR SL SR
=====  =======  ===================================

A file carries only its channel count here (libsndfile does not report the WAVE channel mask),
so a 3-channel 2.1 file (FL FR LFE) is read as 3.0 and its LFE heard at -3 dB in both sides.
More than 8 channels have no standard order: the first two are taken as FL FR and the rest
dropped.

No normalisation: the coefficients are unity-gain for each source channel, so a downmix keeps
the programme's loudness (a 5.1 mix whose downmix equals a stereo mix measures as that stereo
mix) but its sum can exceed full scale on loud multichannel content (up to +7.7 dB for 5.1,
all channels at full scale in phase). That is safe because everything downstream is float and
the downmix comes *before* measurement and mastering: the plan's gain is set from the downmix's
own loudness and true peak, and the true-peak limiter runs on the downmix. Normalising by the
worst case (-7.7 dB) would only move typical programme 7.7 dB away from its stereo version and
make the plan add it back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np

SURROUND_COEFF: Final = 0.7071067811865476  # -3 dB: ITU-R BS.775 Table 2, centre and surrounds into L/R
SHARED_SURROUND_COEFF: Final = 0.5  # -6 dB: a back centre split power-preserving over both sides at -3 dB


@dataclass(frozen=True)
class ChannelLayout:
    """One channel count's assumed layout and its stereo downmix.

    Attributes:
        name: e.g. ``"5.1"``.
        channels: channel labels in file order, e.g. ``("FL", "FR", "FC", "LFE", "BL", "BR")``.
        left: coefficient of each channel in ``L'`` (same order).
        right: coefficient of each channel in ``R'``.
    """

    name: str
    channels: tuple[str, ...]
    left: tuple[float, ...]
    right: tuple[float, ...]

    def matrix(self) -> np.ndarray:
        """float32 ``(channels, 2)``: ``stereo = samples @ matrix``."""
        return np.array([self.left, self.right], dtype=np.float32).T.copy()


# Coefficient of each channel label into (L', R').
_INTO: Final[dict[str, tuple[float, float]]] = {
    "FL": (1.0, 0.0),
    "FR": (0.0, 1.0),
    "FC": (SURROUND_COEFF, SURROUND_COEFF),
    "LFE": (0.0, 0.0),
    "BL": (SURROUND_COEFF, 0.0),
    "BR": (0.0, SURROUND_COEFF),
    "SL": (SURROUND_COEFF, 0.0),
    "SR": (0.0, SURROUND_COEFF),
    "BC": (SHARED_SURROUND_COEFF, SHARED_SURROUND_COEFF),
}


def _layout(name: str, *labels: str) -> ChannelLayout:
    return ChannelLayout(
        name=name,
        channels=labels,
        left=tuple(_INTO[label][0] for label in labels),
        right=tuple(_INTO[label][1] for label in labels),
    )


LAYOUTS: Final[dict[int, ChannelLayout]] = {
    1: ChannelLayout(name="mono", channels=("C",), left=(1.0,), right=(1.0,)),  # dual mono
    2: _layout("stereo", "FL", "FR"),
    3: _layout("3.0", "FL", "FR", "FC"),
    4: _layout("4.0", "FL", "FR", "BL", "BR"),
    5: _layout("5.0", "FL", "FR", "FC", "BL", "BR"),
    6: _layout("5.1", "FL", "FR", "FC", "LFE", "BL", "BR"),
    7: _layout("6.1", "FL", "FR", "FC", "LFE", "BC", "SL", "SR"),
    8: _layout("7.1", "FL", "FR", "FC", "LFE", "BL", "BR", "SL", "SR"),
}


def channel_layout(channels: int) -> ChannelLayout:
    """The layout assumed for ``channels`` channels (more than 8: the first two as FL FR, the rest dropped).

    Raises:
        ValueError: ``channels`` < 1.
    """
    if channels < 1:
        raise ValueError(f"a layout needs at least one channel, got {channels}")
    if channels in LAYOUTS:
        return LAYOUTS[channels]
    rest = channels - 2
    return ChannelLayout(
        name=f"{channels} channels",
        channels=("FL", "FR", *(f"ch{i}" for i in range(2, channels))),
        left=(1.0, 0.0, *([0.0] * rest)),
        right=(0.0, 1.0, *([0.0] * rest)),
    )


def stereo_downmix(samples: np.ndarray) -> np.ndarray:
    """What a stereo listener hears: ``(frames, channels)`` -> float32 ``(frames, 2)``.

    Stereo float32 comes back as the same array (no copy); mono is duplicated (dual mono);
    3-8 channels are downmixed with :func:`channel_layout`'s BS.775 coefficients, LFE dropped.
    Memoryless (each output frame depends on the same input frame only), so a chunk's downmix
    is the chunk of the track's downmix.

    Raises:
        ValueError: ``samples`` is not 2-D or has no channels.
    """
    if samples.ndim != 2 or samples.shape[1] < 1:
        raise ValueError(f"samples must be (frames, channels), got shape {samples.shape}")
    channels = samples.shape[1]
    if channels == 2:
        return samples if samples.dtype == np.float32 else samples.astype(np.float32)
    if channels == 1:
        return np.repeat(np.asarray(samples, dtype=np.float32), 2, axis=1)
    if channels > 8:
        return np.array(samples[:, :2], dtype=np.float32)
    x = np.asarray(samples, dtype=np.float32)
    out: np.ndarray = x @ channel_layout(channels).matrix()
    return out


def mono_downmix(samples: np.ndarray) -> np.ndarray:
    """``(L' + R') / 2`` of the stereo downmix: float32 ``(frames,)``."""
    stereo = stereo_downmix(samples)
    return np.float32(0.5) * (stereo[:, 0] + stereo[:, 1])
