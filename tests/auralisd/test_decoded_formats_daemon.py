"""A real daemon on the formats FFmpeg decodes: queued with exact durations, fingerprinted, played.

The MP3 without a Xing header used to fail its fingerprint ("header promises N frames, data ends
at frame M") because libsndfile estimated its length from the bitrate.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from auralis.audio import probe, write_audio
from auralis.synth import make_music

from .rpc import Client

RATE = 44_100
FORMATS = {
    "noxing.mp3": ["-c:a", "libmp3lame", "-b:a", "160k", "-write_xing", "0"],
    "vbr.mp3": ["-c:a", "libmp3lame", "-q:a", "4"],
    "aac.m4a": ["-c:a", "aac"],
    "alac.m4a": ["-c:a", "alac"],
    "x.opus": ["-c:a", "libopus"],
    "x.wv": ["-c:a", "wavpack"],
    "x.wma": ["-c:a", "wmav2"],
}

if shutil.which("ffmpeg") is None:
    if os.environ.get("CI"):
        pytest.fail("ffmpeg is required in CI", pytrace=False)
    pytest.skip("ffmpeg not installed", allow_module_level=True)


def test_every_format_queues_with_its_exact_duration_and_fingerprints(tmp_path: Path, daemon_factory) -> None:
    music = tmp_path / "music"
    music.mkdir()
    src = tmp_path / "src.wav"
    write_audio(str(src), make_music(6.0, RATE, seed=3), RATE)
    paths = []
    for name, codec in FORMATS.items():
        paths.append(music / name)
        subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-i", str(src), *codec, str(paths[-1])], check=True)
    daemon = daemon_factory(music).start()
    with daemon.client() as c:
        c.call("subscribe", events=["fingerprint_progress"])
        for path in paths:
            info = probe(path)
            added = c.call("queue.add", paths=[str(path)])["added"]
            track = c.call("library.track", path=str(path))
            assert track["duration_s"] == pytest.approx(info.num_frames / info.sample_rate, abs=1e-9), path.name
            assert abs(track["duration_s"] - 6.0) < 0.05, path.name  # gapless, or one codec frame off
            c.call("play", pos=added[0]["pos"])
            _wait_fingerprinted(c, path)
        status = c.wait_status(lambda s: s["state"] == "play" and s["elapsed_s"] >= 0.2, timeout_s=20.0)
        assert status["fingerprints"]["failures"] == 0
        c.call("queue.clear")


def _wait_fingerprinted(c: Client, path: Path) -> None:
    """Until the track's fingerprint is complete (the daemon may have done it in the background
    before we asked: subscribed first, then the stored status, then the event)."""
    track = c.call("library.track", path=str(path))
    if track["fingerprint_status"] not in ("complete", "failed"):
        c.wait_event("fingerprint_progress",
                     lambda d: d["track_id"] == track["track_id"] and d["status"] in ("complete", "failed"))
        track = c.call("library.track", path=str(path))
    assert track["fingerprint_status"] == "complete", (path.name, track)
