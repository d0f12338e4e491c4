"""Auralis DSP library: audio I/O, BS.1770 loudness, the 25D fingerprint, adaptive mastering.

This package never imports trio: worker processes import it alone and start light.
"""

from .audio import AudioInfo, AudioReader, probe, read_audio, read_frames, write_audio
from .errors import AudioError, AuralisError

__all__ = ["AudioError", "AudioInfo", "AudioReader", "AuralisError", "probe", "read_audio", "read_frames", "write_audio"]
