"""One real daemon process shared by the web tests (start-up costs seconds on a loaded 2-core machine)."""

from __future__ import annotations

import pytest

from auralis.audio import write_audio
from auralis.synth import loudness_war, make_music
from tests.web.daemon import running_daemon

SAMPLE_RATE = 44_100
TRACK_S = 12.0


@pytest.fixture(scope="session")
def daemon(tmp_path_factory: pytest.TempPathFactory):
    """``auralisd`` on two 12 s tracks: a dynamic one and a crushed (loudness-war) one."""
    tmp = tmp_path_factory.mktemp("web-daemon")
    music = tmp / "music"
    music.mkdir()
    write_audio(music / "dynamic.wav", make_music(TRACK_S, SAMPLE_RATE, bpm=120, seed=1), SAMPLE_RATE)
    write_audio(music / "crushed.wav", loudness_war(make_music(TRACK_S, SAMPLE_RATE, bpm=128, seed=2)), SAMPLE_RATE)
    with running_daemon(tmp, music) as d:
        d.music_dir = music
        yield d
