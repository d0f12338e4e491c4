"""Audio input and output: decode to ``(frames, channels)`` float32 with the sample rate beside it.

Every decoder failure becomes one typed :class:`~auralis.errors.AudioError` that names the
file and the reason; callers never see a raw libsndfile traceback. Long files are read in
blocks through :class:`AudioReader` (seek + read), so whole-track analysis and chunked
rendering keep bounded memory.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from typing import Final

import numpy as np
import soundfile as sf

from .errors import (
    AudioError,
    AudioNotFoundError,
    AudioUnreadableError,
    CorruptAudioError,
    EmptyAudioError,
    UnsupportedAudioError,
)

MIN_SAMPLE_RATE: Final = 8_000  # Hz
MAX_SAMPLE_RATE: Final = 192_000  # Hz
AUDIO_EXTENSIONS: Final = frozenset({".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff", ".aifc"})
# libsndfile subtypes that can hold NaN/Inf; integer PCM always decodes finite.
_FLOAT_SUBTYPES: Final = frozenset({"FLOAT", "DOUBLE"})


@dataclass(frozen=True)
class AudioInfo:
    """What a file holds, read from its header."""

    path: str
    num_frames: int
    sample_rate: int  # Hz
    channels: int
    format: str  # libsndfile major format, e.g. "FLAC"
    subtype: str  # e.g. "PCM_24"

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.sample_rate


def _open(path: str | os.PathLike[str]) -> sf.SoundFile:
    """Open ``path`` for reading, turning every failure into a typed AudioError."""
    path = os.fspath(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise AudioNotFoundError(path, "no such file") from None
    except PermissionError:
        raise AudioUnreadableError(path, "permission denied") from None
    except OSError as exc:
        raise AudioUnreadableError(path, exc.strerror or str(exc)) from None
    if os.path.isdir(path):
        raise AudioUnreadableError(path, "is a directory")
    if st.st_size == 0:
        raise EmptyAudioError(path, "file is empty (0 bytes)")
    if not os.access(path, os.R_OK):
        raise AudioUnreadableError(path, "permission denied")
    try:
        return sf.SoundFile(path)
    except sf.LibsndfileError as exc:
        msg = str(exc.error_string if hasattr(exc, "error_string") else exc)
        lowered = msg.lower()
        # The path was checked to be a regular file above, so libsndfile's "not a regular file"
        # means it found no format it knows in the data (e.g. random bytes named .flac).
        if "recogni" in lowered or "unknown format" in lowered or "not a regular file" in lowered:
            raise UnsupportedAudioError(path, "not a supported audio file (format not recognised)") from None
        raise CorruptAudioError(path, f"cannot decode: {msg}") from None
    except (RuntimeError, TypeError, ValueError) as exc:
        raise CorruptAudioError(path, f"cannot decode: {exc}") from None
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise AudioUnreadableError(path, "permission denied") from None
        raise AudioUnreadableError(path, exc.strerror or str(exc)) from None


def _check_info(handle: sf.SoundFile, path: str) -> AudioInfo:
    info = AudioInfo(
        path=path,
        num_frames=int(handle.frames),
        sample_rate=int(handle.samplerate),
        channels=int(handle.channels),
        format=str(handle.format),
        subtype=str(handle.subtype),
    )
    if not MIN_SAMPLE_RATE <= info.sample_rate <= MAX_SAMPLE_RATE:
        raise UnsupportedAudioError(
            path, f"sample rate {info.sample_rate} Hz is outside {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz"
        )
    if info.channels < 1:
        raise CorruptAudioError(path, "no channels")
    if info.num_frames <= 0:
        raise EmptyAudioError(path, "holds no audio frames")
    return info


def probe(path: str | os.PathLike[str]) -> AudioInfo:
    """Read a file's header. Raises AudioError (typed) if it is not usable audio."""
    path = os.fspath(path)
    with _open(path) as handle:
        return _check_info(handle, path)


class AudioReader:
    """Random access to one file in blocks: ``read(start, stop)`` returns exactly ``stop - start`` frames.

    Frames outside ``[0, num_frames)`` read as zeros, which is what pre-roll before the
    start of a track and look-ahead past its end need. Use as a context manager.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._handle = _open(self.path)
        try:
            self.info = _check_info(self._handle, self.path)
        except AudioError:
            self._handle.close()
            raise
        self._sanitize = self.info.subtype in _FLOAT_SUBTYPES

    def __enter__(self) -> "AudioReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._handle.close()

    def read(self, start_frame: int, stop_frame: int) -> np.ndarray:
        """Frames ``[start_frame, stop_frame)`` as float32 ``(frames, channels)``, zero-padded outside the file.

        Raises:
            CorruptAudioError: the data cannot be decoded or ends before the header says.
        """
        if stop_frame < start_frame:
            raise ValueError("stop_frame < start_frame")
        total = self.info.num_frames
        lo, hi = max(start_frame, 0), min(stop_frame, total)
        if hi <= lo:
            return np.zeros((stop_frame - start_frame, self.info.channels), dtype=np.float32)
        out = np.empty((stop_frame - start_frame, self.info.channels), dtype=np.float32)
        out[: lo - start_frame] = 0.0  # only the padding: the decoder writes the rest
        out[hi - start_frame :] = 0.0
        try:
            self._handle.seek(lo)
            # Decoded straight into place (a row slice of a C-ordered array is contiguous): no copy.
            into = out[lo - start_frame : hi - start_frame]
            data = self._handle.read(hi - lo, dtype="float32", always_2d=True, out=into)
        except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
            raise CorruptAudioError(self.path, f"decode failed near frame {lo}: {exc}") from None
        if data.shape[0] < hi - lo:
            raise CorruptAudioError(
                self.path,
                f"truncated: header promises {total} frames, data ends at frame {lo + data.shape[0]}",
            )
        if self._sanitize and not np.isfinite(data).all():
            # A float file may hold NaN/Inf; they would poison every filter downstream.
            data[~np.isfinite(data)] = 0.0
        return out


class ArrayReader:
    """A decoded track behind :class:`AudioReader`'s interface (``info``, ``read``, context manager).

    ``read(start, stop)`` returns the same frames an :class:`AudioReader` of the same file would
    (zero-padded outside the track), so code written against a reader (the fingerprint's segment
    loop, the chunk renderer) gives identical results from memory. Used to decode a file once,
    then both analyse and render it.
    """

    def __init__(self, samples: np.ndarray, info: AudioInfo) -> None:
        if samples.dtype != np.float32 or samples.shape != (info.num_frames, info.channels):
            raise ValueError(
                f"samples must be float32 {(info.num_frames, info.channels)}, got {samples.dtype} {samples.shape}"
            )
        self.path = info.path
        self.info = info
        self._samples = samples

    def __enter__(self) -> "ArrayReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to release (kept for the reader interface)."""

    def read(self, start_frame: int, stop_frame: int) -> np.ndarray:
        """Frames ``[start_frame, stop_frame)`` as float32 ``(frames, channels)``, zero-padded outside the track.

        A range inside the track comes back as a read-only view of the samples (no copy); one
        that reaches outside, as a new array.
        """
        if stop_frame < start_frame:
            raise ValueError("stop_frame < start_frame")
        if 0 <= start_frame and stop_frame <= self.info.num_frames:
            view = self._samples[start_frame:stop_frame]
            view.flags.writeable = False
            return view
        out = np.zeros((stop_frame - start_frame, self.info.channels), dtype=np.float32)
        lo, hi = max(start_frame, 0), min(stop_frame, self.info.num_frames)
        if hi > lo:
            out[lo - start_frame : hi - start_frame] = self._samples[lo:hi]
        return out


WHOLE_FILE_MAX_BYTES: Final = 512 * 2**20  # open_reader decodes a file whole only if its float32 samples fit


def open_reader(path: str | os.PathLike[str], *, max_bytes: int = WHOLE_FILE_MAX_BYTES) -> AudioReader | ArrayReader:
    """A reader of ``path`` for several passes over the track.

    When the decoded float32 samples take at most ``max_bytes`` (512 MiB: about 25 minutes of
    44.1 kHz stereo, 11 minutes of 96 kHz stereo), the file is decoded once, whole, into an
    :class:`ArrayReader`; otherwise an :class:`AudioReader` decodes block by block (bounded
    memory, one decode per pass). Use as a context manager.

    Raises:
        AudioError: the file cannot be opened or decoded.
    """
    reader = AudioReader(path)
    info = reader.info
    if info.num_frames * info.channels * 4 > max_bytes:
        return reader
    with reader:
        return ArrayReader(reader.read(0, info.num_frames), info)


def read_audio(path: str | os.PathLike[str]) -> tuple[np.ndarray, int]:
    """Decode a whole file: ``(samples float32 (frames, channels), sample_rate Hz)``."""
    with AudioReader(path) as reader:
        return reader.read(0, reader.info.num_frames), reader.info.sample_rate


def read_frames(path: str | os.PathLike[str], start_frame: int, stop_frame: int) -> tuple[np.ndarray, int]:
    """Decode frames ``[start_frame, stop_frame)`` (zero-padded outside the file) and the sample rate."""
    with AudioReader(path) as reader:
        return reader.read(start_frame, stop_frame), reader.info.sample_rate


def write_audio(path: str | os.PathLike[str], samples: np.ndarray, sample_rate: int) -> None:
    """Write ``(frames, channels)`` float audio; the format follows the extension.

    ``.wav`` is float32; ``.flac`` and ``.aiff`` are 24-bit PCM; ``.ogg`` is Vorbis.
    Writes to a temporary name and renames, so a half-written file never appears.
    """
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    fmt, subtype = {
        ".wav": ("WAV", "FLOAT"),
        ".flac": ("FLAC", "PCM_24"),
        ".aif": ("AIFF", "PCM_24"),
        ".aiff": ("AIFF", "PCM_24"),
        ".ogg": ("OGG", "VORBIS"),
    }.get(ext, (None, None))
    if fmt is None:
        raise UnsupportedAudioError(path, f"cannot write '{ext or 'no extension'}' (use .wav, .flac, .aiff or .ogg)")
    tmp = f"{path}.tmp-{os.getpid()}{ext}"
    try:
        sf.write(tmp, np.asarray(samples, dtype=np.float32), int(sample_rate), format=fmt, subtype=subtype)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def is_audio_path(path: str | os.PathLike[str]) -> bool:
    """True when the extension is one we decode (a cheap filter for library scans)."""
    return os.path.splitext(os.fspath(path))[1].lower() in AUDIO_EXTENSIONS
