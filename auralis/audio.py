"""Audio input and output: decode to ``(frames, channels)`` float32 with the sample rate beside it.

Two decoders sit behind one interface, chosen per file by content (never by extension), as
measured in docs/formats.md: libsndfile for PCM containers (WAV, AIFF, ...) and FLAC (faster,
exact), FFmpeg through PyAV (:mod:`auralis.avdecode`) for MP3, AAC and ALAC (MP4/M4A), Ogg
Vorbis, Opus, WavPack, Monkey's Audio and WMA, with gapless metadata honoured and decoder
pre-roll after seeks, so every format reads sample-exact: ``read(start, stop)`` returns the
frames a linear decode returns (AAC with perceptual noise substitution aside, see avdecode).

Every failure becomes one typed :class:`~auralis.errors.AudioError` that names the file and
the reason; callers never see a raw decoder traceback. The contract a library scanner relies
on (:func:`probe`): :class:`~auralis.errors.UnsupportedAudioError` for anything that is not
audio we decode (an image, text, a sidecar, random bytes, whatever its name),
:class:`~auralis.errors.CorruptAudioError` for a file of a format we know whose data is
broken (truncated, damaged header). Paths may be any bytes the OS allows (Python gives a
non-UTF-8 name as ``str`` with surrogate escapes); every open goes through
``os.fsencode``. Lengths come from data, never only from a header that can lie: a FLAC whose
STREAMINFO disagrees with its frames is measured from its last frame (:mod:`auralis.flacinfo`).
Long files are read in blocks through :class:`AudioReader`, so analysis and chunked rendering
keep bounded memory.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from typing import Final, NamedTuple, Protocol

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
from .flacinfo import flac_frames_before_damage, flac_frames_from_data, streaminfo

MIN_SAMPLE_RATE: Final = 8_000  # Hz
MAX_SAMPLE_RATE: Final = 192_000  # Hz
AUDIO_EXTENSIONS: Final = frozenset({
    ".wav", ".flac", ".ogg", ".oga", ".mp3", ".aif", ".aiff", ".aifc", ".opus", ".m4a", ".m4b", ".mp4",
    ".wv", ".ape", ".wma",
})  # fmt: skip
# libsndfile subtypes that can hold NaN/Inf; integer PCM always decodes finite.
_FLOAT_SUBTYPES: Final = frozenset({"FLOAT", "DOUBLE"})
# libsndfile major formats handed to FFmpeg instead (measured: libsndfile's Vorbis seeks land
# up to 0.22 FS wrong, its MP3 seeks corrupt frames in VBR files and trust an estimated length
# when there is no Xing header; FFmpeg decodes Opus faster). See docs/formats.md.
_SNDFILE_TO_FFMPEG: Final = frozenset({"MP3", "MPEG", "OGG"})  # if one slips through the magic check
# Float samples beyond this magnitude (+60 dBFS) are not plausible audio: clipped to it, so
# energies stay finite downstream (a float WAV of 1e30 would square to inf in float32).
MAX_SAMPLE_MAGNITUDE: Final = 1000.0
_SNDFILE_MAGIC: Final = frozenset({b"RIFF", b"RF64", b"FORM", b"fLaC", b"caff", b"riff", b".snd"})
# Leading bytes of the formats we decode: a file that starts so but fails is corrupt, not "not audio".
_MAGIC: Final = (
    (0, b"RIFF"), (0, b"RF64"), (0, b"FORM"), (0, b"fLaC"), (0, b"OggS"), (0, b"ID3"), (4, b"ftyp"),
    (0, b"wvpk"), (0, b"MAC "), (0, bytes.fromhex("3026b2758e66cf11a6d900aa0062ce6c")), (0, b"caff"),
)  # fmt: skip


@dataclass(frozen=True)
class AudioInfo:
    """What a file holds, read from its header (lengths checked against the data where headers can lie)."""

    path: str
    num_frames: int
    sample_rate: int  # Hz
    channels: int
    format: str  # container, e.g. "FLAC", "MP4", "OGG" (libsndfile's major format names where it decodes)
    subtype: str  # e.g. "PCM_24", "AAC", "OPUS"
    damage: str = ""  # what is wrong with a file that still plays (a FLAC cut short: only its intact frames)

    @property
    def duration_s(self) -> float:
        return self.num_frames / self.sample_rate


class _Source(Protocol):
    """One open decoder: stream description plus ``read_into`` of in-range frames."""

    num_frames: int
    sample_rate: int
    channels: int
    format: str
    subtype: str

    def read_into(self, out: np.ndarray, lo: int, hi: int) -> None: ...

    def close(self) -> None: ...


class _SndfileSource:
    """libsndfile behind the source interface (WAV, AIFF, FLAC and the other PCM containers)."""

    def __init__(self, path: str, handle: sf.SoundFile, num_frames: int) -> None:
        self.path = path
        self._handle = handle
        self.num_frames = num_frames
        self.sample_rate = int(handle.samplerate)
        self.channels = int(handle.channels)
        self.format = str(handle.format)
        self.subtype = str(handle.subtype)

    def read_into(self, out: np.ndarray, lo: int, hi: int) -> None:
        try:
            self._handle.seek(lo)
            # Decoded straight into place (a row slice of a C-ordered array is contiguous): no copy.
            data = self._handle.read(hi - lo, dtype="float32", always_2d=True, out=out)
        except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
            raise CorruptAudioError(self.path, f"decode failed near frame {lo}: {exc}") from None
        if data.shape[0] < hi - lo:
            raise CorruptAudioError(
                self.path,
                f"truncated: header promises {self.num_frames} frames, data ends at frame {lo + data.shape[0]}",
            )

    def close(self) -> None:
        self._handle.close()


def _check_path(path: str) -> None:
    """Typed errors for a path that is missing, unreadable, a directory or empty."""
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


def _read_head(path: str) -> bytes:
    try:
        with open(os.fsencode(path), "rb") as handle:
            return handle.read(64)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise AudioUnreadableError(path, "permission denied") from None
        raise AudioUnreadableError(path, exc.strerror or str(exc)) from None


def _known_magic(head: bytes) -> bool:
    """True when ``head`` starts like a format we decode (an MPEG audio frame sync included)."""
    if any(head[at : at + len(magic)] == magic for at, magic in _MAGIC):
        return True
    return len(head) >= 4 and head[0] == 0xFF and head[1] & 0xE6 == 0xE2 and head[2] & 0xF0 != 0xF0


class _SkipSndfile(Exception):
    """Internal: the file goes to FFmpeg without asking libsndfile."""


def _ffmpeg_first(head: bytes) -> bool:
    """False only for content libsndfile decodes best (WAV, AIFF, FLAC, CAF, W64, AU): the rest goes to FFmpeg.

    Unknown bytes go to FFmpeg too (which rejects them): libsndfile's MP3 probing would print
    libmpg123's resync notes on stderr for random data.
    """
    return head[:4] not in _SNDFILE_MAGIC


class _FlacLength(NamedTuple):
    frames: int
    handle_ok: bool  # libsndfile's handle is still usable (its check seek succeeded)
    header_lies: bool  # STREAMINFO disagrees with the frames: decode with FFmpeg, which can seek in it
    damage: str = ""  # the file is cut short or damaged at its end: ``frames`` are its intact frames


class _TrustedLengths:
    """FLAC lengths already checked in this process, by file identity (path, size, mtime): bounded LRU.

    A worker opens the same file for every chunk and piece it renders. The check's seek to the last
    frame is a millisecond for most files, but libsndfile finds a frame by bisecting the file, and
    for some files (two of the benchmark's sixteen 40 s FLACs) it took 65-75 ms, every open: a 1 s
    piece cost 75-103 ms instead of 10-13 ms. A file whose size or mtime changed is checked again
    (the chunk cache trusts the same identity).
    """

    def __init__(self, entries: int) -> None:
        self._entries = entries
        self._lengths: dict[tuple[str, int, int, int], None] = {}

    def key(self, path: str, claimed: int) -> tuple[str, int, int, int] | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        return path, int(st.st_size), int(st.st_mtime_ns), int(claimed)

    def __contains__(self, key: tuple[str, int, int, int] | None) -> bool:
        if key is None or key not in self._lengths:
            return False
        self._lengths[key] = self._lengths.pop(key)  # most recently used last
        return True

    def add(self, key: tuple[str, int, int, int] | None) -> None:
        if key is None:
            return
        self._lengths[key] = None
        while len(self._lengths) > self._entries:
            del self._lengths[next(iter(self._lengths))]


_TRUSTED_FLAC_LENGTHS: Final = _TrustedLengths(1024)  # per process: ~150 B per file


def _flac_length(path: str, head: bytes, handle: sf.SoundFile) -> _FlacLength:
    """A FLAC file's length, checked against its data.

    STREAMINFO's count is trusted when libsndfile can seek to its last frame and read it
    (one seek: about a millisecond for most files, tens of ms for some), once per file identity
    in a process (:class:`_TrustedLengths`). Otherwise the header lies (or says 0, "unknown") or the
    file is damaged at its end; :func:`~auralis.flacinfo.flac_frames_from_data` tells which: a
    complete last frame gives the real length. A file cut short (an interrupted copy or download)
    is as long as its intact frames (:func:`~auralis.flacinfo.flac_frames_before_damage`), decoded
    by FFmpeg (libsndfile fails on the last intact frame, looking for the next one): it plays to
    where the damage starts and ends there, with its real duration, instead of promising the
    header's length and failing a whole chunk before the damage. Only without any intact frame
    near the end is the header's count kept (the decode then fails where the data does).

    Raises:
        CorruptAudioError: the header says 0 ("unknown") and no intact frame ends the data.
    """
    info = streaminfo(head)
    claimed = info[2] if info is not None else 0
    if claimed > 0:
        key = _TRUSTED_FLAC_LENGTHS.key(path, claimed)
        if key in _TRUSTED_FLAC_LENGTHS:
            return _FlacLength(claimed, handle_ok=True, header_lies=False)  # a fresh handle, at frame 0
        try:
            handle.seek(claimed - 1)
            if handle.read(1, dtype="float32").shape[0] == 1:
                handle.seek(0)
                _TRUSTED_FLAC_LENGTHS.add(key)
                return _FlacLength(claimed, handle_ok=True, header_lies=False)
        except (sf.LibsndfileError, RuntimeError, ValueError):
            pass  # libsndfile's handle is unusable after a failed seek
    real = flac_frames_from_data(path)
    if real is None:
        intact = flac_frames_before_damage(path)
        if intact:
            promised = f"the header promises {claimed} frames" if claimed > 0 else "the header gives no length"
            damage = f"cut short or damaged at its end: {promised}, the intact frames end at frame {intact}"
            return _FlacLength(intact, handle_ok=False, header_lies=True, damage=damage)
        if claimed > 0:
            return _FlacLength(claimed, handle_ok=False, header_lies=False)
        raise CorruptAudioError(path, "no length in the header (0) and the last frame is incomplete")
    return _FlacLength(real, handle_ok=False, header_lies=real != claimed)


def _open_source(path: str) -> _Source:
    """Open ``path`` with the decoder that suits its content; every failure is a typed AudioError."""
    _check_path(path)
    head = _read_head(path)
    known = _known_magic(head)
    frames_override: int | None = None
    damage = ""
    try:
        if _ffmpeg_first(head):
            raise _SkipSndfile
        handle = sf.SoundFile(os.fsencode(path))
    except _SkipSndfile:
        pass
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError):
        pass  # not for libsndfile: FFmpeg's turn, which also says why if it fails
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise AudioUnreadableError(path, "permission denied") from None
        raise AudioUnreadableError(path, exc.strerror or str(exc)) from None
    else:
        if str(handle.format) in _SNDFILE_TO_FFMPEG:
            handle.close()
        else:
            try:
                frames = int(handle.frames)
                if str(handle.format) == "FLAC":
                    length = _flac_length(path, head, handle)
                    frames = length.frames
                    if length.header_lies:  # libsndfile cannot seek in it, FFmpeg can
                        handle.close()
                        frames_override, damage = length.frames, length.damage
                    elif not length.handle_ok:
                        handle.close()
                        handle = sf.SoundFile(os.fsencode(path))
                if frames_override is None:
                    return _SndfileSource(path, handle, frames)
            except BaseException:
                handle.close()
                raise
    # PyAV (FFmpeg's libraries, ~15 MiB resident) only for what libsndfile does not read: a
    # scan of a FLAC/WAV library, or a worker rendering one, never loads it
    from .avdecode import AvSource

    try:
        source = AvSource(path, num_frames=frames_override)
        source.damage = damage
        return source
    except UnsupportedAudioError as exc:
        if known:
            detail = exc.reason.removeprefix("not a supported audio file (").removesuffix(")")
            raise CorruptAudioError(path, f"cannot decode: {detail}") from None
        raise
    except CorruptAudioError as exc:
        if not known:  # FFmpeg guessed a format from bytes that start like none we know
            raise UnsupportedAudioError(path, f"not a supported audio file ({exc.reason})") from None
        raise


def _check_info(source: _Source, path: str) -> AudioInfo:
    info = AudioInfo(
        path=path,
        num_frames=int(source.num_frames),
        sample_rate=int(source.sample_rate),
        channels=int(source.channels),
        format=source.format,
        subtype=source.subtype,
        damage=getattr(source, "damage", ""),
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
    """Read a file's header: what it holds and its exact length, without decoding the audio.

    Decides by content, whatever the extension. Fast for every format (header and container
    only), with two exceptions that cost more to stay exact: an MP3 without a Xing/Info/VBRI
    header is counted by demuxing its packets (about 10 ms per minute of audio, no decoding),
    and WMA (whose timestamps are in milliseconds) is decoded once to count its frames. A
    FLAC file costs one seek to its last frame (and, if STREAMINFO disagrees, a CRC-checked
    look at the last frame header).

    Raises:
        UnsupportedAudioError: not audio we decode (image, text, sidecar, random bytes...), or
            a sample rate outside 8-192 kHz. A scanner records these as "not audio".
        CorruptAudioError: a format we know whose data is broken (truncated, damaged header,
            undecodable stream). A scanner records these as "damaged".
        EmptyAudioError: a 0-byte file or one holding no frames.
        AudioNotFoundError, AudioUnreadableError: the path is missing or cannot be read.
    """
    path = os.fspath(path)
    source = _open_source(path)
    try:
        info = _check_info(source, path)
        verify_end = getattr(source, "verify_end", None)
        if verify_end is not None:
            verify_end()
        return info
    finally:
        source.close()


def _sanitize(data: np.ndarray) -> None:
    """NaN/Inf -> 0 and magnitudes clipped to MAX_SAMPLE_MAGNITUDE, in place (float decoders only)."""
    if not np.isfinite(data).all():
        data[~np.isfinite(data)] = 0.0
    np.clip(data, -MAX_SAMPLE_MAGNITUDE, MAX_SAMPLE_MAGNITUDE, out=data)


class AudioReader:
    """Random access to one file in blocks: ``read(start, stop)`` returns exactly ``stop - start`` frames.

    Frames outside ``[0, num_frames)`` read as zeros, which is what pre-roll before the
    start of a track and look-ahead past its end need. Any range returns the frames a
    linear decode of the whole file returns. Use as a context manager.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._source = _open_source(self.path)
        try:
            self.info = _check_info(self._source, self.path)
        except AudioError:
            self._source.close()
            raise
        # Integer PCM always decodes finite and within +-1; float data (float WAV, lossy codecs) may not.
        self._sanitize = not isinstance(self._source, _SndfileSource) or self.info.subtype in _FLOAT_SUBTYPES

    def __enter__(self) -> AudioReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._source.close()

    def read(self, start_frame: int, stop_frame: int) -> np.ndarray:
        """Frames ``[start_frame, stop_frame)`` as float32 ``(frames, channels)``, zero-padded outside the file.

        Non-finite samples read as 0 and absurd ones (beyond +-1000) are clipped.

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
        into = out[lo - start_frame : hi - start_frame]
        self._source.read_into(into, lo, hi)
        if self._sanitize:
            _sanitize(into)
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

    def __enter__(self) -> ArrayReader:
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
        sf.write(os.fsencode(tmp), np.asarray(samples, dtype=np.float32), int(sample_rate), format=fmt, subtype=subtype)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def is_audio_path(path: str | os.PathLike[str]) -> bool:
    """True when the extension is one we decode (a cheap filter for library scans)."""
    return os.path.splitext(os.fspath(path))[1].lower() in AUDIO_EXTENSIONS
