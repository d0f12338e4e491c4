"""auralis.oggopus: a chained Ogg Opus stream that ffmpeg decodes back to the input, with each chain's tags."""

from __future__ import annotations

import struct
import subprocess

import numpy as np

from auralis.oggopus import OggOpusStream, ogg_crc
from tests.helpers import require_tool


def pages(data: bytes) -> list[tuple[int, int, int, bytes]]:
    """``(flags, granule, serial, page bytes)`` for every page; checks each CRC."""
    out, at = [], 0
    while at < len(data):
        assert data[at : at + 4] == b"OggS"
        flags, granule, serial, _seq, crc, count = struct.unpack_from("<xBqIIIB", data, at + 4)
        lacing = data[at + 27 : at + 27 + count]
        size = 27 + count + sum(lacing)
        page = bytearray(data[at : at + size])
        page[22:26] = b"\0\0\0\0"
        assert ogg_crc(bytes(page)) == crc
        out.append((flags, granule, serial, data[at : at + size]))
        at += size
    return out


def test_two_chains_decode_to_the_input_with_their_own_titles() -> None:
    ffmpeg = require_tool("ffmpeg")
    rate = 44_100
    t = np.arange(4 * rate) / rate
    x = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    x = np.stack([x, 0.5 * x], axis=1)
    stream = OggOpusStream(rate, bitrate_bps=160_000, comments={"title": "One", "artist": "A"})
    out = bytearray()
    for i in range(0, 2 * rate, 2205):
        out += stream.encode(x[i : min(i + 2205, 2 * rate)])
    out += stream.new_chain({"title": "Two"})
    for i in range(2 * rate, 4 * rate, 2205):
        out += stream.encode(x[i : i + 2205])
    out += stream.new_chain({})
    found = pages(bytes(out))
    serials = sorted({serial for _, _, serial, _ in found})
    assert len(serials) == 2 and stream.chains == 2
    assert [flags & 0x02 for flags, *_ in found].count(0x02) == 2  # a beginning of stream per chain
    assert [flags & 0x04 for flags, *_ in found].count(0x04) == 2  # ... and an end
    assert b"TITLE=One" in out and b"TITLE=Two" in out and out.index(b"TITLE=One") < out.index(b"TITLE=Two")
    decoded = subprocess.run([ffmpeg, "-v", "error", "-i", "-", "-f", "f32le", "-ar", str(rate), "-ac", "2", "-"],
                             input=bytes(out), capture_output=True, check=True).stdout
    y = np.frombuffer(decoded, dtype=np.float32).reshape(-1, 2)
    assert abs(y.shape[0] - x.shape[0]) < 0.002 * rate  # both chains, each trimmed to its input (a few frames)
    level_db = 10 * np.log10(np.mean(y[rate // 10 : -rate // 10] ** 2, axis=0) / np.mean(x**2, axis=0))
    assert np.all(np.abs(level_db) < 0.1)
