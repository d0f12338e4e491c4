"""One real daemon process shared by the web tests (start-up costs seconds on a loaded 2-core machine)."""

from __future__ import annotations

import struct
import zlib

import pytest

from auralis.audio import write_audio
from auralis.synth import loudness_war, make_music
from tests.web.daemon import running_daemon

SAMPLE_RATE = 44_100
TRACK_S = 12.0


def tiny_png(width: int = 8, height: int = 8, rgb: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    """A valid PNG of one colour (the web player's cover art in these tests)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


@pytest.fixture(scope="session")
def daemon(tmp_path_factory: pytest.TempPathFactory):
    """``auralisd`` on two 12 s tracks: a dynamic one and a crushed (loudness-war) one, with a folder picture."""
    tmp = tmp_path_factory.mktemp("web-daemon")
    music = tmp / "music"
    music.mkdir()
    write_audio(music / "dynamic.wav", make_music(TRACK_S, SAMPLE_RATE, bpm=120, seed=1), SAMPLE_RATE)
    write_audio(music / "crushed.wav", loudness_war(make_music(TRACK_S, SAMPLE_RATE, bpm=128, seed=2)), SAMPLE_RATE)
    (music / "cover.png").write_bytes(tiny_png())
    with running_daemon(tmp, music) as d:
        d.music_dir = music
        yield d
