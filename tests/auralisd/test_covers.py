"""Cover art reading for HTTP and MPD (app/covers.py): real files, fake time."""

from __future__ import annotations

from pathlib import Path

import trio
import trio.testing

from auralis.audio import write_audio
from auralis.synth import make_music
from auralisd.actors.database import Track
from auralisd.app.covers import CACHED_COVERS, COVER_FRESH_S, CoverReader

JPEG_A = b"\xff\xd8\xff\xe0" + b"A" * 2000
JPEG_B = b"\xff\xd8\xff\xe0" + b"B" * 3000


def _track(path: Path) -> Track:
    stat = path.stat()
    return Track(track_id=1, path=str(path), music_dir=str(path.parent), rel_dir="", size=stat.st_size,
                 mtime_ns=stat.st_mtime_ns, title=None, artist=None, album=None, track_number=None,
                 duration_s=1.0, num_frames=44_100, sample_rate=44_100, channels=2, format="FLAC",
                 fingerprint_status="none", fingerprint_error=None, scanned_at=0.0)


async def test_a_replaced_folder_cover_is_served_once_the_kept_copy_expires(
    tmp_path: Path, mock_clock: trio.testing.MockClock
) -> None:
    """MPD clients fetch a picture in many small chunks, so it is kept; but replacing cover.jpg beside the
    files (the track itself unchanged) must show the new picture on the next fetch, not until the
    picture falls out of the cache, which with one album playing is never."""
    song = tmp_path / "01.flac"
    write_audio(str(song), make_music(1.0, 44_100, seed=1), 44_100)
    cover = tmp_path / "cover.jpg"
    cover.write_bytes(JPEG_A)
    track, covers = _track(song), CoverReader()

    assert await covers.cover(track, "folder") == (JPEG_A, "image/jpeg")
    cover.write_bytes(JPEG_B)
    mock_clock.jump(COVER_FRESH_S / 2)
    assert await covers.cover(track, "folder") == (JPEG_A, "image/jpeg"), "a fetch in progress keeps its picture"
    mock_clock.jump(COVER_FRESH_S)
    assert await covers.cover(track, "folder") == (JPEG_B, "image/jpeg")
    assert await covers.cover(track, "any") == (JPEG_B, "image/jpeg")


async def test_at_most_a_few_pictures_are_kept(tmp_path: Path, mock_clock: trio.testing.MockClock) -> None:
    covers = CoverReader()
    tracks = []
    for i in range(CACHED_COVERS + 1):
        folder = tmp_path / f"album{i}"
        folder.mkdir()
        write_audio(str(folder / "01.flac"), make_music(1.0, 44_100, seed=i), 44_100)
        (folder / "cover.jpg").write_bytes(JPEG_A)
        tracks.append(_track(folder / "01.flac"))
        assert await covers.cover(tracks[-1], "folder") == (JPEG_A, "image/jpeg")
    (tmp_path / "album0" / "cover.jpg").write_bytes(JPEG_B)
    # the oldest fell out, so it is read again at once; the newest is still kept
    assert await covers.cover(tracks[0], "folder") == (JPEG_B, "image/jpeg")
    (tmp_path / f"album{CACHED_COVERS}" / "cover.jpg").write_bytes(JPEG_B)
    assert await covers.cover(tracks[-1], "folder") == (JPEG_A, "image/jpeg")
