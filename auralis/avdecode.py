"""The FFmpeg decoder (through PyAV) behind :class:`auralis.audio.AudioReader`, sample-exact.

libsndfile stays the decoder of PCM containers and FLAC (faster, exact); FFmpeg decodes the
lossy and the other lossless formats of music libraries: MP3, AAC and ALAC (MP4/M4A), Ogg
Vorbis, Opus, WavPack, Monkey's Audio and WMA. docs/formats.md has the measured table.

What "sample-exact" takes here:

* **Frame positions from timestamps, in integer arithmetic.** A decoded frame's first sample is
  ``pts`` converted to samples minus the stream's origin (``start_time``: the encoder delay that
  FFmpeg's gapless handling hides: LAME/Xing delay, MP4 edit list priming, Opus pre-skip).
  This holds only when one sample is a whole number of time-base ticks; when it is not
  (ASF/WMA counts milliseconds), the file is decoded linearly only (a backward seek restarts
  from the start) and its length is counted by decoding it once.
* **Exact length.** Xing/Info/VBRI MP3, Ogg, WavPack and APE carry it in their headers; MP4
  gives it as the end of its last packet (edit lists trim the padding there, not in the
  decoder); an MP3 without such a header is counted by demuxing its packets (no decoding:
  about 10 ms per minute of audio here); non-exact-timestamp formats are decoded once.
* **Decoder pre-roll after a seek.** MDCT codecs overlap frames and MP3 borrows bits from
  earlier frames, so a decoder started at a seek point emits wrong samples at first. A seek
  lands :data:`PREROLL_FRAMES` (per codec) before the wanted frame and the surplus is decoded
  and discarded, so random access returns what a linear decode returns, frame for frame. The
  exception is AAC with perceptual noise substitution: the decoder draws that noise from a
  generator whose state depends on where decoding began, so those bands differ (at the
  level of the substituted noise) from a linear decode. Nothing else does.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable
from typing import Any, BinaryIO, Final

import av
import numpy as np

from .errors import CorruptAudioError, UnsupportedAudioError

# Demuxers (FFmpeg names) we accept; anything else (images, text, video-only files) is "not audio".
AV_CONTAINERS: Final = frozenset({"mp3", "mov,mp4,m4a,3gp,3g2,mj2", "ogg", "wv", "ape", "asf", "flac", "wav", "aiff"})
# Codecs we decode, and the name shown as AudioInfo.subtype.
AV_CODECS: Final = {
    "mp3": "MPEG_LAYER_III", "mp3float": "MPEG_LAYER_III", "mp2": "MPEG_LAYER_II", "mp2float": "MPEG_LAYER_II",
    "aac": "AAC", "alac": "ALAC", "vorbis": "VORBIS", "opus": "OPUS", "libopus": "OPUS", "wavpack": "WAVPACK",
    "ape": "APE", "wmav1": "WMAV1", "wmav2": "WMAV2", "wmapro": "WMAPRO", "wmalossless": "WMALOSSLESS",
    "flac": "FLAC",
}  # fmt: skip
_CONTAINER_NAMES: Final = {
    "mp3": "MP3", "mov,mp4,m4a,3gp,3g2,mj2": "MP4", "ogg": "OGG", "wv": "WAVPACK", "ape": "APE", "asf": "ASF",
    "flac": "FLAC", "wav": "WAV", "aiff": "AIFF",
}  # fmt: skip
# Frames decoded and thrown away before a seek target, per codec (at the stream's rate). Measured:
# MP3 needs its bit reservoir (up to 511 bytes back: a few frames at low bitrates) -> 10 frames;
# AAC and Vorbis converge after one overlapped block; the Opus decoder's state converges to the
# linear decode's bit for bit after about 1 s (0.4 s leaves errors around 4e-7), so 2 s.
# FLAC, ALAC, WavPack and APE frames are independent.
PREROLL_FRAMES: Final = {
    "MPEG_LAYER_III": 11_520, "MPEG_LAYER_II": 4_608, "AAC": 4_096, "VORBIS": 8_192, "OPUS": 96_000,
    "WMAV1": 8_192, "WMAV2": 8_192, "WMAPRO": 8_192,
}  # fmt: skip
HISTORY_FRAMES: Final = 65_536  # decoded frames kept behind the read position (overlapping block reads)
END_CHECK_FRAMES: Final = 4096  # frames decoded at the end of a file by probe (truncation check)
FORWARD_DECODE_FRAMES: Final = 262_144  # a read this far ahead decodes forward; further, it seeks
SCANNED_LENGTHS_KEPT: Final = 256  # lengths that took a scan, remembered per process (~100 bytes each)
# The one piece of process state here: a bounded memo of a pure function of the file's content
# identity (path, size, mtime_ns), so a changed file is scanned again.
_SCANNED_LENGTHS: dict[tuple[str, int, int], int] = {}
_SCANNED_LOCK: Final = threading.Lock()
MP3_HEADER_SCAN_BYTES: Final = 4096  # where a Xing/Info/VBRI tag must start after the ID3v2 tag


def open_container(path: str) -> tuple[Any, BinaryIO | None]:
    """``av.open`` on any path, and the file object it reads when the name is not UTF-8.

    FFmpeg takes names as UTF-8 text; a non-UTF-8 name (``str`` with surrogate escapes) is
    opened by Python and handed over as a file object, which the caller closes after the
    container (PyAV does not).
    """
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        handle = open(os.fsencode(path), "rb")  # noqa: SIM115 - closed by the caller, after the container
        try:
            return av.open(handle), handle
        except BaseException:
            handle.close()
            raise
    return av.open(path), None


def _mp3_has_length_tag(path: str) -> bool:
    """True when the first MPEG frame carries a Xing, Info or VBRI tag (an exact frame count)."""
    with open(os.fsencode(path), "rb") as handle:
        head = handle.read(10)
        skip = 0
        if head[:3] == b"ID3" and len(head) == 10:
            skip = 10 + ((head[6] & 0x7F) << 21 | (head[7] & 0x7F) << 14 | (head[8] & 0x7F) << 7 | (head[9] & 0x7F))
        handle.seek(skip)
        data = handle.read(MP3_HEADER_SCAN_BYTES)
    raw = np.frombuffer(data, dtype=np.uint8)
    syncs = np.flatnonzero((raw[:-1] == 0xFF) & ((raw[1:] & 0xE0) == 0xE0))  # the first frame sync
    if syncs.size == 0:
        return False
    sync = int(syncs[0])
    first = data[sync : sync + 200]
    return b"Xing" in first or b"Info" in first or first[36:40] == b"VBRI"


class AvSource:
    """One audio stream decoded by FFmpeg, read by frame ranges with exact positions.

    ``num_frames`` overrides the length the container gives (a FLAC whose header lies).

    Attributes ``num_frames``, ``sample_rate``, ``channels``, ``format`` and ``subtype`` describe
    the stream; :meth:`read_into` fills ``out`` with frames ``[lo, hi)`` (``0 <= lo < hi <=
    num_frames``). Not thread-safe; one reader per thread.

    Raises:
        UnsupportedAudioError: no audio stream, or a container or codec we do not decode.
        CorruptAudioError: a known format whose data cannot be decoded.
    """

    def __init__(self, path: str, *, num_frames: int | None = None) -> None:
        self.path = path
        self._known_frames = num_frames
        self._history: deque[tuple[int, np.ndarray]] = deque()  # decoded blocks behind/at the position
        try:
            self._container, self._file = open_container(path)
        except av.error.FFmpegError as exc:
            raise UnsupportedAudioError(path, f"not a supported audio file ({exc.strerror or exc})") from None
        try:
            self._setup()
        except BaseException:
            self.close()
            raise

    def _setup(self) -> None:
        container, path = self._container, self.path
        if container.format.name not in AV_CONTAINERS:
            raise UnsupportedAudioError(path, f"not a supported audio file (found {container.format.long_name})")
        if not container.streams.audio:
            raise UnsupportedAudioError(path, "not a supported audio file (no audio stream)")
        stream = container.streams.audio[0]
        ctx = stream.codec_context
        codec = ctx.codec.name if ctx.codec is not None else ""
        if codec not in AV_CODECS:
            raise UnsupportedAudioError(path, f"audio codec '{codec or 'unknown'}' is not supported")
        self._stream = stream
        self.sample_rate = int(ctx.sample_rate or 0)
        self.channels = int(ctx.channels or 0)
        if self.sample_rate <= 0 or self.channels <= 0:
            raise CorruptAudioError(path, "no sample rate or channel count in the stream header")
        self.format = _CONTAINER_NAMES[container.format.name]
        self.subtype = AV_CODECS[codec]
        self.damage = ""  # set by the opener for a file that plays only in part (auralis.audio)
        self._preroll = PREROLL_FRAMES.get(self.subtype, 0)
        tb = stream.time_base
        self._tb_num, self._tb_den = int(tb.numerator), int(tb.denominator)
        # Exact positions need a whole number of ticks per sample.
        self._exact_pts = self._tb_den % (self._tb_num * self.sample_rate) == 0
        self._ticks_per_frame = self._tb_den // (self._tb_num * self.sample_rate) if self._exact_pts else 0
        self._origin = self._to_frames(stream.start_time) if self._exact_pts and stream.start_time else 0
        self._frames: Any = None  # the decode iterator
        self._next = 0  # frame index of the next decoded sample (when the iterator is live)
        self.num_frames = self._known_frames if self._known_frames is not None else self._exact_length()

    # -- positions --------------------------------------------------------------------------------

    def _to_frames(self, pts: int) -> int:
        return int(pts) // self._ticks_per_frame

    def _to_ticks(self, frame: int) -> int:
        return (frame + self._origin) * self._ticks_per_frame

    def _exact_length(self) -> int:
        stream, name = self._stream, self._container.format.name
        if not self._exact_pts:
            return self._scanned(self._count_by_decoding)
        if name == "mp3":
            if stream.duration and _mp3_has_length_tag(self.path):
                return self._to_frames(stream.duration)
            return self._scanned(self._count_packets)
        if name.startswith("mov"):
            return self._mp4_end()
        if not stream.duration:
            return self._count_packets()
        total = self._to_frames(stream.duration)
        if self.subtype == "OPUS":
            total -= int(stream.codec_context.delay or 0)  # Ogg's duration includes the pre-skip
        return total

    def _scanned(self, count: Callable[[], int]) -> int:
        """``count()``, remembered per file identity (path, size, mtime): the daemon opens a
        reader per chunk, and a scan per open would cost a decode of the file each time."""
        st = os.stat(os.fsencode(self.path))
        key = (self.path, st.st_size, st.st_mtime_ns)
        with _SCANNED_LOCK:
            frames = _SCANNED_LENGTHS.get(key)
        if frames is None:
            frames = count()
            with _SCANNED_LOCK:  # readers run on several threads in the daemon
                _SCANNED_LENGTHS[key] = frames
                while len(_SCANNED_LENGTHS) > SCANNED_LENGTHS_KEPT:
                    _SCANNED_LENGTHS.pop(next(iter(_SCANNED_LENGTHS)))
        return frames

    def _count_packets(self) -> int:
        """Length from packet durations (demux only; MP3 without a length tag)."""
        ticks = 0
        try:
            for packet in self._container.demux(self._stream):
                if packet.size and packet.duration:
                    ticks += int(packet.duration)
        except av.error.FFmpegError as exc:
            raise CorruptAudioError(self.path, f"cannot demux: {exc.strerror or exc}") from None
        self._container.seek(0)
        return ticks // self._ticks_per_frame - self._origin

    def _mp4_end(self) -> int:
        """End of the last packet: MP4 edit lists trim the encoder padding in packet durations."""
        entries = self._stream.index_entries
        if len(entries) == 0:
            raise CorruptAudioError(self.path, "MP4 without a sample table")
        size = os.stat(os.fsencode(self.path)).st_size
        last = entries[len(entries) - 1]
        if last.pos + last.size > size:
            raise CorruptAudioError(self.path, f"truncated: the sample table points to byte {last.pos + last.size} of {size}")
        end = 0
        try:
            self._container.seek(int(last.timestamp), stream=self._stream)
            for packet in self._container.demux(self._stream):
                if packet.pts is not None and packet.duration:
                    end = max(end, int(packet.pts) + int(packet.duration))
            self._container.seek(0)
        except av.error.FFmpegError as exc:
            raise CorruptAudioError(self.path, f"cannot demux: {exc.strerror or exc}") from None
        return self._to_frames(end) - self._origin

    def _count_by_decoding(self) -> int:
        """Decode once, count (formats whose timestamps are not sample-exact, e.g. WMA)."""
        total = 0
        try:
            for frame in self._container.decode(self._stream):
                total += frame.samples
        except av.error.FFmpegError as exc:
            raise CorruptAudioError(self.path, f"cannot decode: {exc.strerror or exc}") from None
        self._container.seek(0)
        return total

    # -- decoding ---------------------------------------------------------------------------------

    def _restart(self, frame: int) -> None:
        """Position the decoder to deliver frames from at most ``frame`` on (seek with pre-roll)."""
        self._history.clear()
        target = max(frame - self._preroll, 0)
        try:
            if target == 0 or not self._exact_pts:
                # From the start: a fresh container, so the decoder sees exactly what a linear decode
                # saw (a seek to 0 skips MP4's priming packet and the lapped first frame differs).
                self.close()
                self._container, self._file = open_container(self.path)
                self._stream = self._container.streams.audio[0]
                self._next = 0
            else:
                self._container.seek(self._to_ticks(target), stream=self._stream)
                self._next = -1  # known from the first frame's timestamp
        except av.error.FFmpegError as exc:
            raise CorruptAudioError(self.path, f"cannot seek to frame {frame}: {exc.strerror or exc}") from None
        self._frames = self._container.decode(self._stream)

    def _decode_next(self) -> tuple[int, np.ndarray] | None:
        try:
            frame = next(self._frames)
        except StopIteration:
            return None
        except av.error.FFmpegError as exc:
            raise CorruptAudioError(self.path, f"decode failed near frame {self._next}: {exc.strerror or exc}") from None
        if self._exact_pts and frame.pts is not None:
            start = self._to_frames(frame.pts) - self._origin
        else:
            start = self._next
        self._next = start + frame.samples
        return start, _frame_samples(frame)

    def _can_continue(self, lo: int) -> bool:
        """True when frames from ``lo`` on come from the history or by decoding forward a little."""
        if self._frames is None or self._next < 0:
            return False
        first = self._history[0][0] if self._history else self._next
        return first <= lo <= self._next + FORWARD_DECODE_FRAMES

    def read_into(self, out: np.ndarray, lo: int, hi: int) -> None:
        """Decode frames ``[lo, hi)`` into ``out`` (shape ``(hi - lo, channels)``, zeroed by the caller).

        Raises:
            CorruptAudioError: undecodable data, or the data ends before ``hi``.
        """
        out[...] = 0.0  # a frame the decoder skips (damaged packet) reads as silence, never as garbage
        if not self._can_continue(lo):
            self._restart(lo)
        for start, block in self._history:
            _copy(out, lo, hi, start, block)
        while self._next < hi:
            after_seek = self._next < 0
            item = self._decode_next()
            if item is None:
                raise CorruptAudioError(
                    self.path, f"truncated: header promises {self.num_frames} frames, data ends at frame {max(self._next, 0)}"
                )
            start, block = item
            if after_seek and start > lo:  # the seek landed past the target: decode from the start
                self._restart(0)
                continue
            self._history.append((start, block))
            _copy(out, lo, hi, start, block)
            # Trimmed as it goes: a whole-file read holds the output, not a second copy in history.
            while self._history[0][0] + len(self._history[0][1]) < self._next - HISTORY_FRAMES:
                self._history.popleft()

    def verify_end(self) -> None:
        """Decode the last frames (a seek near the end): a truncated file fails here, at probe time.

        Raises:
            CorruptAudioError: the data ends before the length the header gives.
        """
        if not self._exact_pts or self.num_frames <= 0:
            return  # counted by decoding the whole file already
        lo = max(self.num_frames - END_CHECK_FRAMES, 0)
        self.read_into(np.empty((self.num_frames - lo, self.channels), dtype=np.float32), lo, self.num_frames)

    def close(self) -> None:
        self._history.clear()
        self._container.close()
        if self._file is not None:
            self._file.close()
            self._file = None


def _copy(out: np.ndarray, lo: int, hi: int, start: int, block: np.ndarray) -> None:
    a, b = max(lo, start), min(hi, start + len(block))
    if b > a:
        out[a - lo : b - lo] = block[a - start : b - start]


_INT_SCALE: Final = {
    np.dtype(np.int16): 1.0 / 32768.0, np.dtype(np.int32): 1.0 / 2147483648.0, np.dtype(np.int64): 1.0 / 2.0**63,
}


# FFmpeg sample formats (planar and packed) -> numpy dtype of one sample.
_SAMPLE_DTYPES: Final[dict[str, np.dtype[Any]]] = {
    "u8": np.dtype(np.uint8), "s16": np.dtype(np.int16), "s32": np.dtype(np.int32),
    "flt": np.dtype(np.float32), "dbl": np.dtype(np.float64), "s64": np.dtype(np.int64),
}


def _frame_samples(frame: Any) -> np.ndarray:
    """A decoded frame as float32 ``(samples, channels)``.

    Planar frames are read plane by plane, one plane per channel and ``frame.samples`` values
    each: PyAV 18's ``to_ndarray`` miscounts the planes of an 8-channel frame (it reports 9)
    and reads past the buffer, which crashed the process.
    """
    channels = len(frame.layout.channels)
    name = frame.format.name
    dtype = _SAMPLE_DTYPES.get(name.rstrip("p") if frame.format.is_planar else name)
    if dtype is None:
        raise ValueError(f"unsupported sample format {name!r}")
    count = frame.samples
    if frame.format.is_planar:
        data = np.stack([np.frombuffer(plane, dtype=dtype, count=count) for plane in frame.planes[:channels]])
    else:
        data = np.frombuffer(frame.planes[0], dtype=dtype, count=count * channels).reshape(count, channels).T
    if data.dtype == np.uint8:
        return ((data.T.astype(np.float32) - 128.0) / 128.0).copy()
    scale = _INT_SCALE.get(data.dtype)
    samples = data.T.astype(np.float32)
    if scale is not None:
        samples *= np.float32(scale)
    return samples
