"""A FLAC file's real length from its last frame header, not from what STREAMINFO claims.

STREAMINFO's total sample count is 36 bits, may be 0 ("unknown"), and may simply be wrong; an
encoder or a tool that patched the file can write anything there. The frames themselves are
numbered: the header of the last frame (found from the end of the file and checked by its
CRC-8, the whole frame by its CRC-16) gives the first sample it holds and its block size,
so ``first + block size`` is the stream's length, derived from data actually present. Cost:
reading at most :data:`TAIL_BYTES` from the end and a CRC over one frame (a few ms). A file that
does not end with a complete frame (cut short) is as long as its intact frames:
:func:`flac_frames_before_damage` finds where they end.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Final

TAIL_BYTES: Final = 1 << 20  # the last frame starts within this many bytes of the end
ID3V1_BYTES: Final = 128  # an ID3v1 tag ("TAG...") some tools append after the last frame


def _crc_table(poly: int, width: int) -> list[int]:
    top, mask = 1 << (width - 1), (1 << width) - 1
    table = []
    for byte in range(256):
        crc = byte << (width - 8)
        for _ in range(8):
            crc = ((crc << 1) ^ poly) & mask if crc & top else (crc << 1) & mask
        table.append(crc)
    return table


_CRC8: Final = _crc_table(0x07, 8)  # FLAC frame header CRC (x^8 + x^2 + x + 1)
_CRC16: Final = _crc_table(0x8005, 16)  # FLAC frame CRC (x^16 + x^15 + x^2 + 1)


def _crc8(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc = _CRC8[crc ^ byte]
    return crc


def _crc16(data: bytes) -> int:
    crc = 0
    table = _CRC16
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ table[(crc >> 8) ^ byte]
    return crc


def streaminfo(head: bytes) -> tuple[int, int, int] | None:
    """``(min_blocksize, max_framesize, total_samples)`` from a file's first 42 bytes, None if not FLAC."""
    if len(head) < 42 or head[:4] != b"fLaC" or head[4] & 0x7F != 0:
        return None
    min_block = int.from_bytes(head[8:10], "big")
    max_frame = int.from_bytes(head[15:18], "big")
    total = int.from_bytes(head[18:26], "big") & ((1 << 36) - 1)
    return min_block, max_frame, total


def _frame_start(data: bytes, pos: int, fixed_blocksize: int) -> tuple[int, int] | None:
    """``(first_sample, blocksize)`` of a frame header at ``pos`` whose CRC-8 is right, else None."""
    if data[pos] != 0xFF or data[pos + 1] & 0xFE != 0xF8 or pos + 16 > len(data):
        return None
    variable = data[pos + 1] & 1
    bs_code, sr_code = data[pos + 2] >> 4, data[pos + 2] & 0x0F
    if bs_code == 0 or sr_code == 0x0F or data[pos + 3] >> 4 >= 11 or data[pos + 3] & 1:
        return None
    # The UTF-8-like coded frame or sample number.
    first = data[pos + 4]
    if first < 0x80:
        number, extra = first, 0
    elif first & 0xE0 == 0xC0:
        number, extra = first & 0x1F, 1
    elif first & 0xF0 == 0xE0:
        number, extra = first & 0x0F, 2
    elif first & 0xF8 == 0xF0:
        number, extra = first & 0x07, 3
    elif first & 0xFC == 0xF8:
        number, extra = first & 0x03, 4
    elif first & 0xFE == 0xFC:
        number, extra = first & 0x01, 5
    elif first == 0xFE and variable:
        number, extra = 0, 6
    else:
        return None
    at = pos + 5
    for byte in data[at : at + extra]:
        if byte & 0xC0 != 0x80:
            return None
        number = (number << 6) | (byte & 0x3F)
    at += extra
    if bs_code == 1:
        blocksize = 192
    elif bs_code <= 5:
        blocksize = 576 << (bs_code - 2)
    elif bs_code == 6:
        blocksize, at = data[at] + 1, at + 1
    elif bs_code == 7:
        blocksize, at = int.from_bytes(data[at : at + 2], "big") + 1, at + 2
    else:
        blocksize = 256 << (bs_code - 8)
    at += {12: 1, 13: 2, 14: 2}.get(sr_code, 0)
    if at >= len(data) or _crc8(data[pos:at]) != data[at]:
        return None
    first_sample = number if variable else number * fixed_blocksize
    return first_sample, blocksize


def _tail(path: str) -> tuple[bytes, int] | None:
    """The last bytes of a FLAC file (enough for two frames) and its fixed block size; None if not FLAC."""
    with open(os.fsencode(path), "rb") as handle:
        info = streaminfo(handle.read(42))
        if info is None:
            return None
        min_block, max_frame, _ = info
        size = handle.seek(0, os.SEEK_END)
        window = min(size, (max(2 * max_frame, 65536) if max_frame else TAIL_BYTES) + ID3V1_BYTES)
        handle.seek(size - window)
        return handle.read(window), min_block


def _headers_from_end(data: bytes, min_block: int) -> Iterator[tuple[int, tuple[int, int]]]:
    """``(pos, (first_sample, blocksize))`` of every CRC-8-valid frame header in ``data``, last first."""
    pos = len(data) - 16
    while pos >= 0:
        pos = data.rfind(b"\xff", 0, pos + 1)
        if pos < 0:
            break
        header = _frame_start(data, pos, min_block) if pos + 1 < len(data) and data[pos + 1] & 0xFE == 0xF8 else None
        if header is not None:
            yield pos, header
        pos -= 1


def flac_frames_before_damage(path: str) -> int | None:
    """Where the intact frames of a FLAC file that does not end with a complete frame end (cut short
    while copying or downloading, or damaged at its end): the end of the last frame whose CRC-16
    checks and that the next frame header follows directly, in sample order. None if there is none
    in the file's last :data:`TAIL_BYTES` (or two frames' worth), or the file is not FLAC.
    """
    tail = _tail(path)
    if tail is None:
        return None
    data, min_block = tail
    later: tuple[int, tuple[int, int]] | None = None  # the header found just after the current one
    for pos, header in _headers_from_end(data, min_block):
        if later is not None:
            end = later[0]
            intact = end - pos > 2 and _crc16(data[pos : end - 2]) == int.from_bytes(data[end - 2 : end], "big")
            if intact and header[0] + header[1] == later[1][0]:
                return header[0] + header[1]
        later = (pos, header)
    return None


def flac_frames_from_data(path: str) -> int | None:
    """The number of frames (samples per channel) a FLAC file really holds, from its last frame.

    Returns None when the file does not end with a complete frame (truncated or damaged; an
    ID3v1 tag after the last frame is allowed) or is not FLAC.
    """
    tail = _tail(path)
    if tail is None:
        return None
    data, min_block = tail
    ends = [len(data)]
    if len(data) > ID3V1_BYTES and data[-ID3V1_BYTES : -ID3V1_BYTES + 3] == b"TAG":
        ends.append(len(data) - ID3V1_BYTES)
    for pos, header in _headers_from_end(data, min_block):
        for end in ends:
            if end - pos > 2 and _crc16(data[pos : end - 2]) == int.from_bytes(data[end - 2 : end], "big"):
                return header[0] + header[1]
    return None
