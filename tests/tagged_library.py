"""A generated music library with tags (not a test module): short FLAC files tagged with mutagen.

Used by the stored-playlist and query tests, the MPD tests (the same files for Auralis and the
real MPD) and ``bench/bench_mpd_db.py``. Audio is a short tone per file (the tags are what
these tests read); each file gets its own frequency so no two files are identical.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

SAMPLE_RATE = 44_100


@dataclass(frozen=True)
class Song:
    rel_path: str
    title: str
    artist: str
    album: str
    track: int
    date: str
    genre: str
    album_artist: str | None = None
    composer: str | None = None
    seconds: float = 1.0


SONGS: tuple[Song, ...] = (
    Song("Björk/Homogenic/01 Hunter.flac", "Hunter", "Björk", "Homogenic", 1, "1997", "Electronic", composer="Björk"),
    Song("Björk/Homogenic/02 Jóga.flac", "Jóga", "Björk", "Homogenic", 2, "1997", "Electronic", seconds=1.5),
    Song("Various/Mix/01 Alpha.flac", "Song A", "Alpha", "Mix", 1, "2001", "Pop", album_artist="Various"),
    Song("Various/Mix/02 Beta.flac", "Song B", "Beta", "Mix", 2, "2001", "Pop", album_artist="Various"),
    Song("Beta/Solo/01 Gamma.flac", "Gamma Ray", "Beta", "Solo", 1, "2005", "Rock"),
)


def write_song(folder: Path, song: Song, index: int) -> Path:
    from mutagen.flac import FLAC

    path = folder / song.rel_path
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(song.seconds * SAMPLE_RATE)) / SAMPLE_RATE
    tone = 0.1 * np.sin(2 * np.pi * (220.0 + 10.0 * index) * t)
    sf.write(str(path), np.stack([tone, tone], axis=1).astype(np.float32), SAMPLE_RATE, subtype="PCM_16")
    meta = FLAC(str(path))
    meta["title"] = song.title
    meta["artist"] = song.artist
    meta["album"] = song.album
    meta["tracknumber"] = str(song.track)
    meta["date"] = song.date
    meta["genre"] = song.genre
    if song.album_artist:
        meta["albumartist"] = song.album_artist
    if song.composer:
        meta["composer"] = song.composer
    meta.save()
    return path


def write_tagged_library(folder: Path, songs: tuple[Song, ...] = SONGS) -> dict[str, Path]:
    """Write ``songs`` under ``folder``; returns ``{title: path}``."""
    return {song.title: write_song(folder, song, i) for i, song in enumerate(songs)}
