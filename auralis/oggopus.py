"""Ogg Opus for live streaming (RFC 3533 pages, RFC 7845 mapping), chained at track changes.

The Opus packets come from :class:`auralis.opus.OpusEncoder`; this module only wraps them in Ogg pages.
A *chain* is one logical Ogg stream (its own serial number): a page with ``OpusHead`` (beginning of
stream), a page with ``OpusTags`` (the track's title, artist and album), audio pages, and a last page
with the end-of-stream flag whose granule position trims the encoder's padding. A new chain starts at
each track change: players (ffmpeg, VLC, browsers) then show the new comments, which is how an Ogg
stream carries its title in-band. Audio pages are cut every :data:`PAGE_PACKETS` packets (100 ms) so a
listener's latency stays low.

Everything here is blocking (the Opus encoder): the daemon runs it on a thread.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from typing import Final

import numpy as np

from .opus import OPUS_SAMPLE_RATE, OpusEncoder, OpusPacket, opus_head
from .resample import StreamResampler

PAGE_PACKETS: Final = 5  # 20 ms packets per audio page: 100 ms of audio, one HTTP write per page
MAX_SEGMENTS: Final = 255  # RFC 3533: a page's segment table holds at most 255 lacing values
VENDOR: Final = b"Auralis"
_FLAG_CONTINUED: Final = 0x01
_FLAG_BOS: Final = 0x02
_FLAG_EOS: Final = 0x04


def _crc_table() -> tuple[int, ...]:
    """CRC-32 as Ogg defines it (RFC 3533 6): polynomial 0x04C11DB7, not reflected, initial value 0."""
    table = []
    for i in range(256):
        r = i << 24
        for _ in range(8):
            r = ((r << 1) ^ 0x04C11DB7) if r & 0x80000000 else (r << 1)
        table.append(r & 0xFFFFFFFF)
    return tuple(table)


_CRC: Final = _crc_table()


def ogg_crc(data: bytes) -> int:
    crc = 0
    table = _CRC
    for byte in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ table[(crc >> 24) ^ byte]
    return crc


def ogg_page(packets: Iterable[bytes], *, serial: int, sequence: int, granule_position: int, bos: bool = False,
             eos: bool = False) -> bytes:
    """One Ogg page holding whole ``packets`` (their lacing must fit in 255 segments)."""
    lacing = bytearray()
    body = bytearray()
    for packet in packets:
        n = len(packet)
        lacing += b"\xff" * (n // 255) + bytes([n % 255])
        body += packet
    if len(lacing) > MAX_SEGMENTS:
        raise ValueError(f"{len(lacing)} lacing values do not fit in one Ogg page")
    flags = (_FLAG_BOS if bos else 0) | (_FLAG_EOS if eos else 0)
    header = struct.pack("<4sBBqIIIB", b"OggS", 0, flags, granule_position, serial, sequence, 0, len(lacing))
    page = bytearray(header + lacing + body)
    struct.pack_into("<I", page, 22, ogg_crc(bytes(page)))
    return bytes(page)


def opus_tags(comments: Mapping[str, str], vendor: bytes = VENDOR) -> bytes:
    """The ``OpusTags`` header (RFC 7845 5.2): vendor string and ``KEY=value`` user comments (UTF-8)."""
    items = [f"{key.upper()}={value}".encode() for key, value in comments.items() if value]
    out = bytearray(b"OpusTags" + struct.pack("<I", len(vendor)) + vendor + struct.pack("<I", len(items)))
    for item in items:
        out += struct.pack("<I", len(item)) + item
    return bytes(out)


class OggOpusStream:
    """A live Ogg Opus byte stream: :meth:`encode` mastered blocks, :meth:`new_chain` at a track change.

    Args:
        sample_rate: rate of the blocks (Hz); one resampler to 48 kHz runs across chains, so a track
            change adds no resampling seam.
        bitrate_bps: the Opus bit rate (constrained VBR).
        first_serial: serial number of the first chain (the next chains count up from it).

    :meth:`encode` returns the bytes ready to send (whole pages; often empty): the first call starts a
    chain with the comments given to the constructor or to the last :meth:`new_chain`.
    """

    def __init__(self, sample_rate: int, *, bitrate_bps: int, comments: Mapping[str, str] | None = None,
                 first_serial: int = 1) -> None:
        self._resampler = StreamResampler(int(sample_rate), OPUS_SAMPLE_RATE)
        self.bitrate_bps = int(bitrate_bps)
        self._serial = int(first_serial) - 1
        self._comments = dict(comments or {})
        self._encoder: OpusEncoder | None = None
        self._sequence = 0
        self._queued: list[OpusPacket] = []
        self.chains = 0

    def new_chain(self, comments: Mapping[str, str]) -> bytes:
        """End the current chain (its last page, with end-of-stream) and use ``comments`` for the next one."""
        out = self._end_chain()
        self._comments = dict(comments)
        return out

    def encode(self, samples: np.ndarray) -> bytes:
        """The next block, float32 ``(frames, 2)`` at ``sample_rate``; the complete pages it yields."""
        audio = self._resampler.process(np.asarray(samples, dtype=np.float32))
        out = bytearray()
        if self._encoder is None:
            out += self._begin_chain()
        assert self._encoder is not None
        self._queued += self._encoder.encode(audio)
        while len(self._queued) >= PAGE_PACKETS:
            page, self._queued = self._queued[:PAGE_PACKETS], self._queued[PAGE_PACKETS:]
            out += self._page(page)
        return bytes(out)

    def _begin_chain(self) -> bytes:
        self._encoder = OpusEncoder(OPUS_SAMPLE_RATE, 2, bitrate_bps=self.bitrate_bps)
        self._serial = (self._serial + 1) & 0xFFFFFFFF
        self._sequence = 0
        self.chains += 1
        head = ogg_page([opus_head(2, self._encoder.pre_skip)], serial=self._serial, sequence=0, granule_position=0,
                        bos=True)
        tags = ogg_page([opus_tags(self._comments)], serial=self._serial, sequence=1, granule_position=0)
        self._sequence = 2
        return head + tags

    def _end_chain(self) -> bytes:
        if self._encoder is None:
            return b""
        packets = self._queued + self._encoder.flush()
        self._queued = []
        self._encoder = None
        out = bytearray()
        while packets:
            page, packets = packets[:PAGE_PACKETS], packets[PAGE_PACKETS:]
            out += self._page(page, eos=not packets)
        return bytes(out)

    def _page(self, packets: list[OpusPacket], *, eos: bool = False) -> bytes:
        page = ogg_page([p.data for p in packets], serial=self._serial, sequence=self._sequence,
                        granule_position=packets[-1].granule_position, eos=eos)
        self._sequence += 1
        return page
