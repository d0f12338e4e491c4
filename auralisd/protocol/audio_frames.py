"""WebSocket audio wire format, sans-IO: binary audio frames and JSON event messages.

Bytes in, messages out; no trio, no sockets (like wsproto). Used by ``auralisd.transport.sessions``
on the server and mirrored by ``clients/web/player.js`` in the browser; documented in
``docs/protocol.md`` ("WebSocket audio").

Binary audio frame::

    offset  size  field
    0       4     stream_epoch   uint32 LE  changes at every seek, track change, preset change
    4       4     sequence       uint32 LE  0, 1, 2, ... within one epoch
    8       8     offset_frames  uint64 LE  position of the first frame, counted from the track start
    16      ...   samples        interleaved LE: float32 (``f32``) or int16 with TPDF dither (``s16``)

With ``?format=opus`` each binary message carries Opus packets instead (layout version 1, see
:class:`OpusFramer`)::

    offset  size  field
    0       4     stream_epoch   uint32 LE  as above
    4       4     sequence       uint32 LE  as above
    8       8     offset_frames  uint64 LE  48 kHz position (from the track start) of the first sample kept
    16      1     version        = 1        the Opus layout's version (PCM frames have no such byte)
    17      1     flags          bit 0 RESET: a new Opus stream starts here; reset the decoder first
    18      2     skip           uint16 LE  decoded samples to drop before the first kept one (pre-skip)
    20      4     keep           uint32 LE  decoded samples to keep after those (the rest is end padding)
    24      1     packets        n, 1-255
    25      ...   n x (uint16 LE length, Opus packet of 20 ms)

Text frames are JSON objects with a ``type`` key. On ``/stream`` an epoch's ``audio_stream_start`` names the
epoch it follows (``follows_epoch``) when its first frame follows that epoch's last one with nothing skipped
(a gapless track change, a preset crossfade): a client keeps what it queued instead of flushing.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import numpy as np

HEADER: Final = struct.Struct("<IIQ")  # stream_epoch, sequence, offset_frames (issue 5 wire format)
HEADER_BYTES: Final = HEADER.size  # 16
FORMATS: Final = ("f32", "s16", "opus")
PCM_FORMATS: Final = ("f32", "s16")
BYTES_PER_SAMPLE: Final = {"f32": 4, "s16": 2}
OPUS_HEADER: Final = struct.Struct("<IIQBBHIB")  # epoch, sequence, offset_frames, version, flags, skip, keep, packets
OPUS_HEADER_BYTES: Final = OPUS_HEADER.size  # 25
OPUS_LAYOUT_VERSION: Final = 1
OPUS_FLAG_RESET: Final = 0x01
OPUS_SAMPLE_RATE: Final = 48_000  # Hz: Opus frames count 48 kHz samples whatever the daemon's output rate
OPUS_FRAME_SAMPLES: Final = 960  # 20 ms packets
MAX_OPUS_PACKETS: Final = 255  # per message (one byte); a 100 ms message holds 5 or 6
MAX_OPUS_PACKET_BYTES: Final = 1275 * 3  # RFC 6716 3.2.1: at most 1275 bytes per frame, 3 frames in 20 ms
VARIANTS: Final = ("mastered", "original")
# 50 ms per binary message: inside issue 5's 20-100 ms window; at 20 messages/s per listener, 50 listeners
# are ~1000 messages/s, far below trio-websocket's ~25k messages/s on loopback (NOTES.md).
FRAME_DURATION_S: Final = 0.05
MIN_FRAME_DURATION_S: Final = 0.02  # issue 5: 20-100 ms per frame
MAX_FRAME_DURATION_S: Final = 0.1
S16_SCALE: Final = 32768.0  # int16 full scale; the browser decodes with x / 32768
MAX_EPOCH: Final = 2**32 - 1
MAX_CLIENT_TEXT_BYTES: Final = 4096  # a /session command is a few dozen bytes; larger closes the socket
MAX_TRACK_ID: Final = 2**63 - 1  # SQLite's INTEGER is signed 64-bit; a larger id cannot exist
MAX_POSITION_S: Final = 1e9  # seconds (~31 years): past any track, small enough for frame arithmetic

# Server -> client event types (JSON text frames).
EVENT_TYPES: Final = (
    "fingerprint_progress",  # {track_id, status: analyzing|complete|failed, reason?}
    "mastering_status",  # {status: preparing|ready}
    "audio_stream_start",  # {sample_rate, channels, format, variant, track, preset, intensity, plan, stream_epoch, offset_frames, ...}
    "lwrp_decision",  # {decision, region, input_lufs, input_crest_db, target_lufs, output_lufs, gain_db, ...}
    "audio_stream_end",  # {reason, stream_epoch}
    "audio_stream_error",  # {code, message}
    "player_event",  # /stream only: the daemon's player/volume events forwarded, {event, data}
)

# Client -> server commands on /session (JSON text frames).
SESSION_COMMANDS: Final = ("play_enhanced", "pause", "resume", "seek", "stop", "set_preset", "set_intensity")
PACES: Final = ("realtime", "burst")


class FrameError(ValueError):
    """A malformed binary audio frame or client message; ``code`` is the wire error code."""

    def __init__(self, message: str, code: str = "bad_request") -> None:
        super().__init__(message)
        self.code = code


def frames_per_message(sample_rate: int, duration_s: float = FRAME_DURATION_S) -> int:
    """Frames carried by one binary message at ``sample_rate`` (``duration_s``, default 50 ms, rounded)."""
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    if not MIN_FRAME_DURATION_S <= duration_s <= MAX_FRAME_DURATION_S:
        raise ValueError(f"frames must be {MIN_FRAME_DURATION_S * 1000:.0f}-{MAX_FRAME_DURATION_S * 1000:.0f} ms")
    return max(1, round(sample_rate * duration_s))


def check_format(fmt: str) -> str:
    """Return ``fmt`` when it is a PCM wire sample format, else raise :class:`FrameError`."""
    if fmt not in PCM_FORMATS:
        raise FrameError(f"unknown format {fmt!r}; expected one of {', '.join(PCM_FORMATS)}", "invalid_params")
    return fmt


def tpdf_quantize_s16(samples: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Quantise float audio to int16 with triangular (TPDF, 2 LSB peak-to-peak) dither.

    Args:
        samples: float array in [-1, 1), any shape.
        rng: dither source (one per stream, so streams are independent).

    Returns:
        int16 array of the same shape; ``x * 32768`` rounded after adding the sum of two independent
        uniform [-0.5, 0.5) LSB values, clipped to the int16 range (never wrapped). A NaN becomes
        silence, not the full-scale sample a NaN-to-int cast gives.
    """
    x = np.nan_to_num(np.asarray(samples, dtype=np.float64) * S16_SCALE, nan=0.0)
    dither = rng.random(x.shape) - rng.random(x.shape)  # triangular on (-1, 1) LSB
    return np.clip(np.rint(x + dither), -32768, 32767).astype("<i2")


def encode_audio_frame(
    stream_epoch: int,
    sequence: int,
    offset_frames: int,
    samples: np.ndarray,
    fmt: str = "f32",
    *,
    rng: np.random.Generator | None = None,
) -> bytes:
    """One binary WebSocket message: the 16-byte header then interleaved samples.

    Args:
        stream_epoch: uint32 epoch.
        sequence: uint32 sequence number within the epoch.
        offset_frames: first frame's position from the track start.
        samples: float array ``(frames, channels)``.
        fmt: ``"f32"`` (little-endian float32) or ``"s16"`` (int16, TPDF dither; needs ``rng``).
        rng: dither generator, required for ``s16``.
    """
    check_format(fmt)
    if samples.ndim != 2:
        raise ValueError(f"samples must be (frames, channels), got shape {samples.shape}")
    header = HEADER.pack(stream_epoch & MAX_EPOCH, sequence & MAX_EPOCH, offset_frames)
    if fmt == "f32":
        body = np.ascontiguousarray(samples, dtype="<f4").tobytes()
    else:
        if rng is None:
            raise ValueError("s16 needs a dither rng")
        body = tpdf_quantize_s16(samples, rng).tobytes()
    return header + body


@dataclass(frozen=True)
class AudioFrame:
    """A decoded binary audio frame."""

    stream_epoch: int
    sequence: int
    offset_frames: int
    samples: np.ndarray  # float32 (frames, channels)

    @property
    def num_frames(self) -> int:
        return int(self.samples.shape[0])


def decode_audio_frame(data: bytes, channels: int, fmt: str = "f32") -> AudioFrame:
    """Parse one binary message (the inverse of :func:`encode_audio_frame`; s16 scaled by 1/32768)."""
    check_format(fmt)
    if len(data) < HEADER_BYTES:
        raise FrameError(f"audio frame shorter than its {HEADER_BYTES}-byte header ({len(data)} bytes)")
    epoch, sequence, offset = HEADER.unpack_from(data)
    body = memoryview(data)[HEADER_BYTES:]
    frame_bytes = BYTES_PER_SAMPLE[fmt] * channels
    if len(body) % frame_bytes:
        raise FrameError(f"audio payload of {len(body)} bytes is not whole {channels}-channel {fmt} frames")
    if fmt == "f32":
        samples = np.frombuffer(body, dtype="<f4").astype(np.float32)
    else:
        samples = np.frombuffer(body, dtype="<i2").astype(np.float32) / np.float32(S16_SCALE)
    return AudioFrame(epoch, sequence, offset, samples.reshape(-1, channels))


@dataclass
class AudioFramer:
    """Cuts PCM blocks of any length into wire frames with per-epoch sequence numbers.

    Blocks of one epoch must arrive contiguous (each starting where the previous one ended); a block
    with a new epoch restarts the sequence at 0. The framer holds no audio between calls: a block's
    tail shorter than a message goes out as a short frame, so the latency added is zero.
    """

    sample_rate: int
    fmt: str = "f32"
    seed: int | None = None
    frame_duration_s: float = FRAME_DURATION_S
    max_frames: int = field(init=False)
    _epoch: int | None = field(default=None, init=False)
    _sequence: int = field(default=0, init=False)
    _rng: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        check_format(self.fmt)
        self._rng = np.random.default_rng(self.seed)
        self.max_frames = frames_per_message(self.sample_rate, self.frame_duration_s)

    def frames(self, stream_epoch: int, offset_frames: int, samples: np.ndarray) -> Iterator[bytes]:
        """Encoded frames for one PCM block ``(frames, channels)`` starting at ``offset_frames``."""
        if stream_epoch != self._epoch:
            self._epoch = stream_epoch
            self._sequence = 0
        for start in range(0, samples.shape[0], self.max_frames):
            part = samples[start : start + self.max_frames]
            yield encode_audio_frame(stream_epoch, self._sequence, offset_frames + start, part, self.fmt, rng=self._rng)
            self._sequence += 1


# ----------------------------------------------------------------------------------------------------------
# Opus frames (``?format=opus``)


class EncodedPacket(Protocol):
    """What an Opus encoder hands out (``auralis.opus.OpusPacket``): bytes and the RFC 7845 granule."""

    @property
    def data(self) -> bytes: ...

    @property
    def granule_position(self) -> int: ...


class PacketEncoder(Protocol):
    """A live Opus encoder (``auralis.opus.OpusEncoder``), injected: this module imports no codec."""

    pre_skip: int

    def encode(self, samples: np.ndarray) -> Sequence[EncodedPacket]: ...

    def flush(self) -> Sequence[EncodedPacket]: ...


@dataclass(frozen=True)
class OpusFrame:
    """A decoded Opus binary message (:func:`decode_opus_frame`)."""

    stream_epoch: int
    sequence: int
    offset_frames: int  # 48 kHz
    reset: bool
    skip: int
    keep: int
    packets: tuple[bytes, ...]

    @property
    def num_frames(self) -> int:
        """48 kHz frames this message adds to the stream (after ``skip``, trimmed to ``keep``)."""
        return self.keep


def encode_opus_frame(stream_epoch: int, sequence: int, offset_frames: int, packets: Sequence[bytes], *,
                      reset: bool, skip: int, keep: int) -> bytes:
    """One Opus binary message: the 25-byte header then ``n x (uint16 length, packet)``."""
    if not 1 <= len(packets) <= MAX_OPUS_PACKETS:
        raise ValueError(f"an Opus message carries 1 to {MAX_OPUS_PACKETS} packets, got {len(packets)}")
    header = OPUS_HEADER.pack(stream_epoch & MAX_EPOCH, sequence & MAX_EPOCH, offset_frames, OPUS_LAYOUT_VERSION,
                              OPUS_FLAG_RESET if reset else 0, skip, keep, len(packets))
    body = b"".join(struct.pack("<H", len(p)) + bytes(p) for p in packets)
    return header + body


def decode_opus_frame(data: bytes) -> OpusFrame:
    """Parse one Opus binary message; :class:`FrameError` for a truncated or inconsistent one."""
    if len(data) < OPUS_HEADER_BYTES:
        raise FrameError(f"Opus frame shorter than its {OPUS_HEADER_BYTES}-byte header ({len(data)} bytes)")
    epoch, sequence, offset, version, flags, skip, keep, count = OPUS_HEADER.unpack_from(data)
    if version != OPUS_LAYOUT_VERSION:
        raise FrameError(f"Opus frame layout version {version}; this client reads version {OPUS_LAYOUT_VERSION}")
    packets: list[bytes] = []
    pos = OPUS_HEADER_BYTES
    for _ in range(count):
        if pos + 2 > len(data):
            raise FrameError("Opus frame cut inside a packet length")
        (length,) = struct.unpack_from("<H", data, pos)
        pos += 2
        if length == 0 or pos + length > len(data):
            raise FrameError("Opus frame cut inside a packet (or an empty packet)")
        packets.append(bytes(data[pos : pos + length]))
        pos += length
    if pos != len(data) or not packets:
        raise FrameError("Opus frame: bytes after its last packet, or no packet at all")
    if skip + keep > OPUS_FRAME_SAMPLES * count:
        raise FrameError(f"Opus frame keeps {skip}+{keep} samples of {count} packets")
    return OpusFrame(epoch, sequence, offset, bool(flags & OPUS_FLAG_RESET), skip, keep, tuple(packets))


def to_opus_frames(offset_frames: int, sample_rate: int) -> int:
    """An output-rate frame position as a 48 kHz one (rounded): how Opus streams count offsets."""
    rate = int(sample_rate)
    return (2 * int(offset_frames) * OPUS_SAMPLE_RATE + rate) // (2 * rate)  # round half up, exact integers


@dataclass
class _EpochMark:
    first_sample: int  # 48 kHz sample index in the Opus stream where this epoch starts
    epoch: int
    offset: int  # 48 kHz track position of that sample (a gapless track change restarts it at the new track's)


class OpusFramer:
    """Epoch-labelled PCM blocks in, Opus binary messages out, with the encoder's bookkeeping on the wire.

    The encoder (``new_encoder()``, e.g. ``auralis.opus.OpusEncoder(sample_rate)``) runs on one continuous
    *Opus stream* for as long as the audio is continuous: an epoch that starts exactly where the previous
    one ended (a preset or intensity change, crossfaded by the server), or that *follows* the previous one
    (``follows_epoch``: a gapless track change, whose offsets restart at the new track's), goes on in the
    same stream, so the decoder carries on and nothing clicks. A discontinuity (a seek, a skip to another
    track, a resume after a pause) or :meth:`end` flushes the stream (its last packets carry the encoder's look-ahead, trimmed by
    ``keep``); the next audio opens a new stream whose first message has the RESET flag and ``skip`` =
    the encoder's pre-skip. Each message is labelled with the epoch and 48 kHz offset of its first kept
    sample, so within an epoch ``offset + keep`` is the next message's offset; the first message of a
    continuing epoch may start up to 20 ms after that epoch's ``offset_frames`` (the packet that held the
    boundary went out with the previous epoch).

    Blocking (it runs the encoder): the daemon calls it on a thread, one call at a time per framer.
    """

    def __init__(self, sample_rate: int, new_encoder: Callable[[], PacketEncoder]) -> None:
        self.sample_rate = int(sample_rate)
        self._new_encoder = new_encoder
        self._encoder: PacketEncoder | None = None
        self._granule = 0  # decoded samples covered by the packets sent in this Opus stream
        self._next_offset: int | None = None  # output-rate frame the next block must start at to continue
        self._marks: list[_EpochMark] = []
        self._reset_pending = False
        self._sequences: dict[int, int] = {}
        self.streams_opened = 0  # Opus streams started (a statistic for tests and logs)

    def start_epoch(self, stream_epoch: int, offset_frames: int, follows_epoch: int | None = None) -> list[bytes]:
        """An epoch starts at ``offset_frames`` (output rate): ends the Opus stream first unless it continues.

        It continues when it starts where the last epoch ended, or when ``follows_epoch`` names the epoch this
        stream is on (the server says its first frame follows that epoch's last one: a gapless track change).
        """
        out: list[bytes] = []
        follows = (self._encoder is not None and follows_epoch is not None and self._next_offset is not None
                   and self._marks[-1].epoch == follows_epoch)
        if self._encoder is not None and offset_frames != self._next_offset and not follows:
            out = self.end()
        offset = to_opus_frames(offset_frames, self.sample_rate)
        if self._encoder is None:
            self._encoder = self._new_encoder()
            self._granule = 0
            self._marks = [_EpochMark(0, stream_epoch, offset)]
            self._reset_pending = True
            self.streams_opened += 1
        elif self._marks[-1].epoch != stream_epoch:
            last = self._marks[-1]
            assert self._next_offset is not None  # set with the encoder
            # where the audio sent so far ends, in the stream: this epoch's first sample goes there
            first = last.first_sample + to_opus_frames(self._next_offset, self.sample_rate) - last.offset
            self._marks.append(_EpochMark(first, stream_epoch, offset))
        self._sequences.setdefault(stream_epoch, 0)
        self._next_offset = offset_frames
        return out

    def feed(self, stream_epoch: int, offset_frames: int, samples: np.ndarray) -> list[bytes]:
        """Encode one block ``(frames, channels)`` of ``stream_epoch`` at ``offset_frames`` (output rate)."""
        out: list[bytes] = []
        if self._encoder is None or self._marks[-1].epoch != stream_epoch or offset_frames != self._next_offset:
            out += self.start_epoch(stream_epoch, offset_frames)
        assert self._encoder is not None
        self._next_offset = offset_frames + samples.shape[0]
        out += self._messages(self._encoder.encode(samples), self._encoder.pre_skip)
        return out

    def end(self) -> list[bytes]:
        """End the Opus stream (pause, stop, a discontinuity): its last packets, trimmed. Idempotent."""
        if self._encoder is None:
            return []
        encoder, self._encoder = self._encoder, None
        out = self._messages(encoder.flush(), encoder.pre_skip)
        self._next_offset = None
        return out

    def _messages(self, packets: Sequence[EncodedPacket], pre_skip: int) -> list[bytes]:
        groups: list[tuple[int, int, int, list[bytes], int]] = []  # epoch, offset (48 kHz), skip, packets, keep
        for packet in packets:
            start, stop = self._granule, max(self._granule, packet.granule_position)
            self._granule = stop
            kept_from = max(start, min(stop, pre_skip))
            first_sample = kept_from - pre_skip
            skip, keep = kept_from - start, stop - kept_from
            mark = self._mark_of(first_sample)
            if groups and groups[-1][0] == mark.epoch and len(groups[-1][3]) < MAX_OPUS_PACKETS and skip == 0:
                e, f, s, ps, k = groups[-1]
                groups[-1] = (e, f, s, [*ps, packet.data], k + keep)
            else:
                groups.append((mark.epoch, mark.offset + first_sample - mark.first_sample, skip, [packet.data], keep))
        out: list[bytes] = []
        for epoch, offset, skip, data, keep in groups:
            sequence = self._sequences.get(epoch, 0)
            self._sequences[epoch] = sequence + 1
            reset = self._reset_pending
            self._reset_pending = False
            out.append(encode_opus_frame(epoch, sequence, offset, data, reset=reset, skip=skip, keep=keep))
        if len(self._sequences) > 64:  # only recent epochs matter; bounded
            for old in list(self._sequences)[:-8]:
                del self._sequences[old]
        return out

    def _mark_of(self, first_sample: int) -> _EpochMark:
        """The epoch a message starting at stream sample ``first_sample`` belongs to (its label)."""
        while len(self._marks) > 1 and self._marks[1].first_sample <= first_sample:
            del self._marks[0]  # samples only move forward: older marks are done with (bounded)
        for mark in reversed(self._marks):
            if mark.first_sample <= first_sample:
                return mark
        return self._marks[0]


def _json_safe(value: Any) -> Any:
    """Replace non-finite floats (e.g. -inf LUFS of silence) by None, recursively; numpy to Python."""
    if isinstance(value, (float, np.floating)):
        f = float(value)
        return f if math.isfinite(f) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, Mapping):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def event_message(event_type: str, **fields: Any) -> str:
    """A server event as a JSON text frame: ``{"type": event_type, **fields}`` (never NaN/Infinity)."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type!r}")
    return json.dumps({"type": event_type, **_json_safe(fields)}, allow_nan=False, separators=(",", ":"))


@dataclass(frozen=True)
class SessionCommand:
    """A validated client command on ``/session``."""

    type: str
    track_id: int | None = None
    preset: str | None = None
    intensity: float | None = None
    pace: str = "realtime"
    position_s: float | None = None


def _number(msg: Mapping[str, Any], key: str, *, required: bool) -> float | None:
    value = msg.get(key)
    if value is None:
        if required:
            raise FrameError(f"{msg.get('type')}: missing {key!r}", "invalid_params")
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise FrameError(f"{msg.get('type')}: {key!r} must be a finite number", "invalid_params")
    return float(value)


def _position(msg: Mapping[str, Any], *, required: bool) -> float | None:
    """``position_s`` from 0 to :data:`MAX_POSITION_S` (past the end, the session clamps to the end)."""
    position_s = _number(msg, "position_s", required=required)
    if position_s is not None and not 0 <= position_s <= MAX_POSITION_S:
        raise FrameError(f"{msg.get('type')}: 'position_s' must be between 0 and {MAX_POSITION_S:.0f}", "invalid_params")
    return position_s


def parse_session_command(text: str | bytes) -> SessionCommand:
    """Validate one ``/session`` text frame.

    Raises:
        FrameError: ``bad_request`` for non-JSON / non-object / unknown type, ``invalid_params`` for wrong fields.
    """
    if len(text) > MAX_CLIENT_TEXT_BYTES:
        raise FrameError(f"command larger than {MAX_CLIENT_TEXT_BYTES} bytes")
    try:
        msg = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FrameError(f"not JSON: {exc}") from None
    except RecursionError:  # e.g. 4 KiB of "[": refused like any other garbage (close 1008)
        raise FrameError("not JSON: nested too deeply") from None
    if not isinstance(msg, dict) or not isinstance(msg.get("type"), str):
        raise FrameError('a command is a JSON object with a "type" string')
    kind = msg["type"]
    if kind not in SESSION_COMMANDS:
        raise FrameError(f"unknown command {kind!r}; expected one of {', '.join(SESSION_COMMANDS)}", "unknown_method")
    if kind == "play_enhanced":
        track_id = msg.get("track_id")
        if isinstance(track_id, bool) or not isinstance(track_id, int) or not 0 <= track_id <= MAX_TRACK_ID:
            raise FrameError(f"play_enhanced: 'track_id' must be an integer from 0 to {MAX_TRACK_ID}", "invalid_params")
        pace = msg.get("pace", "realtime")
        if pace not in PACES:
            raise FrameError(f"play_enhanced: 'pace' must be one of {', '.join(PACES)}", "invalid_params")
        preset = msg.get("preset")
        if preset is not None and not isinstance(preset, str):
            raise FrameError("play_enhanced: 'preset' must be a string", "invalid_params")
        intensity = _number(msg, "intensity", required=False)
        position_s = _position(msg, required=False)
        return SessionCommand(kind, track_id=track_id, preset=preset, intensity=intensity, pace=pace, position_s=position_s)
    if kind == "seek":
        return SessionCommand(kind, position_s=_position(msg, required=True))
    if kind == "set_preset":
        preset = msg.get("preset")
        if not isinstance(preset, str):
            raise FrameError("set_preset: 'preset' must be a string", "invalid_params")
        return SessionCommand(kind, preset=preset)
    if kind == "set_intensity":
        return SessionCommand(kind, intensity=_number(msg, "intensity", required=True))
    return SessionCommand(kind)
