"""Opus encoding for live streams: float32 blocks at any rate in, Opus packets with their bookkeeping out.

Opus (RFC 6716) always runs at 48 kHz here: blocks at another rate go through
:class:`~auralis.resample.StreamResampler` first (the same polyphase filter the renderer uses, streamed).
The encoder is FFmpeg's ``libopus`` wrapper from PyAV's wheels (NOTES.md), 20 ms frames, VBR, the
``audio`` application, at a configurable bit rate.

Bookkeeping (RFC 7845, the Ogg encapsulation, whose terms the WebSocket frames reuse):

- ``pre_skip``: the encoder's look-ahead (libopus: 312 samples = 6.5 ms at 48 kHz). The decoder's first
  ``pre_skip`` output samples come before the first input sample and are discarded.
- A packet's ``granule_position`` is the number of 48 kHz samples decoded up to the end of that packet,
  ``pre_skip`` included; the last packet's is ``pre_skip + samples_48k`` (the end trimming), so a
  decoder keeps exactly the input's length.

Everything here is blocking DSP: the daemon runs it on a thread, never on its event loop.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, Final

import av
import numpy as np

from .errors import AuralisError
from .resample import StreamResampler

OPUS_SAMPLE_RATE: Final = 48_000  # Hz; RFC 7845 5.1: Opus decodes at 48 kHz whatever the input rate
FRAME_SAMPLES: Final = 960  # 20 ms at 48 kHz: libopus's default frame, the best quality per bit for music
DEFAULT_BITRATE_BPS: Final = 160_000  # issue 13: 160 kbit/s by default (transparent for most music)
MIN_BITRATE_BPS: Final = 6_000  # libopus's range (RFC 6716 2.1.1 "6 kb/s to 510 kb/s")
MAX_BITRATE_BPS: Final = 510_000
VBR_MODES: Final = ("constrained", "on", "off")  # libopus: constrained VBR keeps each second near the target
LIBOPUS_PRE_SKIP: Final = 312  # libopus look-ahead at 48 kHz, application=audio (2.5 ms + 4 ms), checked at open


class OpusError(AuralisError):
    """The Opus encoder could not be opened or refused the audio."""


@dataclass(frozen=True)
class OpusPacket:
    """One Opus packet (20 ms) and where it sits in the decoded stream.

    ``granule_position``: 48 kHz samples decoded up to the end of this packet, ``pre_skip`` included
    (RFC 7845 4); ``num_samples``: the samples it adds to the stream after end trimming (960, or fewer
    for the last one); ``last``: the end of the stream.
    """

    data: bytes
    granule_position: int
    num_samples: int
    last: bool = False


def opus_head(channels: int = 2, pre_skip: int = LIBOPUS_PRE_SKIP, input_sample_rate: int = OPUS_SAMPLE_RATE) -> bytes:
    """The ``OpusHead`` identification header (RFC 7845 5.1), mapping family 0 (mono or stereo).

    What an Ogg Opus stream starts with, and what WebCodecs' ``AudioDecoder`` takes as ``description``.
    """
    if channels not in (1, 2):
        raise ValueError(f"mapping family 0 carries 1 or 2 channels, got {channels}")
    return b"OpusHead" + struct.pack("<BBHIhB", 1, channels, pre_skip, input_sample_rate, 0, 0)


class OpusEncoder:
    """A live Opus stream: :meth:`encode` float32 blocks as they come, :meth:`flush` at the end.

    Args:
        sample_rate: rate of the blocks (Hz); resampled to 48 kHz inside when it differs.
        channels: 1 or 2.
        bitrate_bps: target bit rate, 6 000 to 510 000 bit/s.
        vbr: ``constrained`` (default: the bandwidth a listener pays stays near the target, measured
            162 kbit/s for 160 on a sine where free VBR spent 206), ``on`` (free VBR) or ``off`` (CBR).

    Blocks are ``(frames, channels)`` float32 (any length, even 0). Packets come out as soon as 20 ms
    of 48 kHz audio is complete; :meth:`flush` pads the last frame and emits the packets that carry
    the encoder's look-ahead, the last one marked ``last`` with the end trimming in its granule
    position. One encoder is one stream: after :meth:`flush` open a new one (a new ``pre_skip``).
    Not thread-safe: one caller at a time (the daemon serialises the calls per stream).
    """

    def __init__(self, sample_rate: int, channels: int = 2, *, bitrate_bps: int = DEFAULT_BITRATE_BPS,
                 vbr: str = "constrained") -> None:
        if channels not in (1, 2):
            raise ValueError(f"channels must be 1 or 2, got {channels}")
        if not MIN_BITRATE_BPS <= int(bitrate_bps) <= MAX_BITRATE_BPS:
            raise ValueError(f"bitrate_bps must be {MIN_BITRATE_BPS} to {MAX_BITRATE_BPS}, got {bitrate_bps}")
        if vbr not in VBR_MODES:
            raise ValueError(f"vbr must be one of {', '.join(VBR_MODES)}, got {vbr!r}")
        self.sample_rate = int(sample_rate)
        self.channels = channels
        self.bitrate_bps = int(bitrate_bps)
        self._layout = "stereo" if channels == 2 else "mono"
        self._resampler = StreamResampler(self.sample_rate, OPUS_SAMPLE_RATE)
        try:
            ctx = av.CodecContext.create("libopus", "w")
            ctx.sample_rate = OPUS_SAMPLE_RATE
            ctx.layout = self._layout
            ctx.format = "flt"
            ctx.bit_rate = self.bitrate_bps
            ctx.options = {"vbr": vbr}
            ctx.open()
        except (av.FFmpegError, ValueError) as exc:
            raise OpusError(f"cannot open the Opus encoder: {exc}") from exc
        self._ctx = ctx
        self.pre_skip = LIBOPUS_PRE_SKIP  # confirmed from the first packet's timestamp (FFmpeg's initial padding)
        self.samples_48k = 0  # 48 kHz samples given to the encoder
        self.granule_position = 0  # of the last packet out
        self._pending = np.zeros((0, channels), dtype=np.float32)  # < 960 samples waiting for a whole frame
        self._flushed = False

    @property
    def input_frames(self) -> int:
        """Frames received at ``sample_rate``."""
        return self._resampler.input_frames

    def encode(self, samples: np.ndarray) -> list[OpusPacket]:
        """Encode the next block; returns the packets completed by it (often none, or a few)."""
        if self._flushed:
            raise OpusError("the Opus stream was flushed; open a new encoder")
        block = np.asarray(samples, dtype=np.float32)
        if block.ndim != 2 or block.shape[1] != self.channels:
            raise ValueError(f"samples must be (frames, {self.channels}), got shape {block.shape}")
        audio = self._resampler.process(np.nan_to_num(block, nan=0.0, posinf=1.0, neginf=-1.0))
        if self._pending.shape[0]:
            audio = np.concatenate([self._pending, audio])
        whole = audio.shape[0] - audio.shape[0] % FRAME_SAMPLES
        self._pending = audio[whole:].copy()
        packets: list[Any] = []
        for start in range(0, whole, FRAME_SAMPLES):
            packets += self._encode_frame(audio[start : start + FRAME_SAMPLES])
        return self._bookkeep(packets, final=False)

    def flush(self) -> list[OpusPacket]:
        """End the stream: the resampler's and encoder's tails, the last packet trimmed by its granule."""
        if self._flushed:
            return []
        self._flushed = True
        audio = self._resampler.flush(self.channels)
        if self._pending.shape[0]:
            audio = np.concatenate([self._pending, audio])
        self._pending = self._pending[:0]
        packets: list[Any] = []
        for start in range(0, audio.shape[0], FRAME_SAMPLES):  # the last frame may be short (libopus pads it)
            packets += self._encode_frame(audio[start : start + FRAME_SAMPLES])
        try:
            packets += self._ctx.encode(None)
        except av.FFmpegError as exc:
            raise OpusError(f"the Opus encoder failed at the end of the stream: {exc}") from exc
        return self._bookkeep(packets, final=True)

    def _encode_frame(self, frame_samples: np.ndarray) -> list[Any]:
        frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(frame_samples).reshape(1, -1), format="flt",
                                           layout=self._layout)
        frame.sample_rate = OPUS_SAMPLE_RATE
        frame.pts = self.samples_48k
        self.samples_48k += frame_samples.shape[0]
        try:
            packets = self._ctx.encode(frame)
        except av.FFmpegError as exc:
            raise OpusError(f"the Opus encoder refused a frame: {exc}") from exc
        if packets and self.granule_position == 0 and packets[0].pts is not None and packets[0].pts < 0:
            self.pre_skip = -int(packets[0].pts)  # FFmpeg shifts the first packet back by its initial padding
        return packets

    def _bookkeep(self, packets: list[Any], *, final: bool) -> list[OpusPacket]:
        out: list[OpusPacket] = []
        end = self.pre_skip + self.samples_48k  # the last sample worth decoding
        for i, packet in enumerate(packets):
            start = self.granule_position
            last = final and i == len(packets) - 1
            granule = end if last else start + FRAME_SAMPLES
            if final:
                granule = max(start, min(granule, end))  # padding beyond the input is trimmed away
            kept_from = max(start, self.pre_skip)
            out.append(OpusPacket(bytes(packet), granule, max(0, granule - kept_from), last))
            self.granule_position = granule
        return out


class OpusDecoder:
    """Opus packets back to 48 kHz float32 ``(frames, channels)`` (FFmpeg's decoder), for checks and clients.

    Honours the bookkeeping of :class:`OpusPacket`: the first ``pre_skip`` samples are dropped and the
    stream ends at the last packet's granule position.
    """

    def __init__(self, channels: int = 2, pre_skip: int = LIBOPUS_PRE_SKIP) -> None:
        self.channels = channels
        self._skip = int(pre_skip)
        self._ctx = av.CodecContext.create("opus", "r")
        self._ctx.sample_rate = OPUS_SAMPLE_RATE
        self._ctx.layout = "stereo" if channels == 2 else "mono"
        self._decoded = 0  # samples decoded so far, pre-skip included

    def decode(self, packet: OpusPacket | bytes, granule_position: int | None = None) -> np.ndarray:
        """Decode one packet; ``granule_position`` (or the packet's) trims the end of the stream."""
        data = packet.data if isinstance(packet, OpusPacket) else packet
        if isinstance(packet, OpusPacket) and granule_position is None and packet.last:
            granule_position = packet.granule_position
        try:
            frames = self._ctx.decode(av.Packet(data))
        except av.FFmpegError as exc:
            raise OpusError(f"an Opus packet did not decode: {exc}") from exc
        parts = [np.asarray(f.to_ndarray(), dtype=np.float32).T for f in frames]  # fltp (channels, n) -> (n, ch)
        audio = np.concatenate(parts) if parts else np.zeros((0, self.channels), dtype=np.float32)
        start = self._decoded
        self._decoded += audio.shape[0]
        lo = max(0, self._skip - start)
        hi = audio.shape[0] if granule_position is None else max(lo, min(audio.shape[0], granule_position - start))
        return np.ascontiguousarray(audio[lo:hi])
