"""Typed errors of the DSP library.

Every expected failure carries a short machine-readable ``code`` (the daemon puts it
on the wire unchanged) and a human sentence that names the file and the reason.
"""

from __future__ import annotations

import os


class AuralisError(Exception):
    """Base class of every error Auralis raises on purpose."""

    code: str = "error"


class AudioError(AuralisError):
    """An audio file could not be used. ``path`` and ``reason`` say which and why."""

    code = "bad_audio"

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = os.fspath(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class AudioNotFoundError(AudioError):
    """The path does not exist (or vanished)."""

    code = "not_found"


class AudioUnreadableError(AudioError):
    """The path exists but cannot be opened (permissions, a directory, ...)."""

    code = "unreadable"


class UnsupportedAudioError(AudioError):
    """The file is not audio in a format we decode (e.g. a text file named .flac)."""

    code = "unsupported_format"


class CorruptAudioError(AudioError):
    """The file claims to be audio but its data cannot be decoded, or is truncated."""

    code = "corrupt_audio"


class EmptyAudioError(AudioError):
    """The file is empty or holds zero frames of audio."""

    code = "empty_audio"


class UnknownPresetError(AuralisError, ValueError):
    """A preset name that is not one of the built-in presets."""

    code = "unknown_preset"


class AlbumMismatchError(AuralisError, ValueError):
    """The tracks of an album cannot be played as one file: no tracks, different sample rates or
    channel counts, or a track whose audio no longer matches the album's layout (re-analyse it)."""

    code = "album_mismatch"
