"""The daemon's chunk jobs on FFmpeg-decoded formats: every chunk start is the linear decode's frame.

The A/B original side has no pre-roll of its own: before the decoder layer seeked with codec
pre-roll, 7 of 11 chunk starts of a VBR MP3 were wrong by up to 0.85 of full scale (clicks).
Chunks are rendered in shuffled order, each job opening its own reader as a worker does; the
control takes the MP3 pre-roll away and must see wrong chunk starts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from auralis.audio import read_audio, write_audio
from auralis.downmix import stereo_downmix
from auralis.plan import plan_mastering
from auralis.synth import make_music
from auralisd import jobs

RATE = 44_100
CHUNK = 20_011  # many chunk starts, none on a codec frame boundary

if shutil.which("ffmpeg") is None:
    if os.environ.get("CI"):
        pytest.fail("ffmpeg is required in CI", pytrace=False)
    pytest.skip("ffmpeg not installed", allow_module_level=True)


@pytest.fixture(scope="module")
def tracks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    import soundfile as sf

    folder = tmp_path_factory.mktemp("decoded")
    src = folder / "src.wav"
    sf.write(src, make_music(8.0, RATE, seed=5), RATE, subtype="PCM_16")
    out = {}
    for name, codec in {"vbr.mp3": ["-c:a", "libmp3lame", "-q:a", "5"], "x.opus": ["-c:a", "libopus"],
                        "alac.m4a": ["-c:a", "alac"]}.items():
        out[name] = folder / name
        subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-i", str(src), *codec, str(out[name])], check=True)
    return out


def _chunks(path: Path, plan: object) -> np.ndarray:
    count = -(-read_audio(path)[0].shape[0] // CHUNK)
    order = np.random.default_rng(1).permutation(count)
    pieces = {int(k): jobs.render_chunk_stereo(str(path), plan, int(k), CHUNK) for k in order}
    return np.concatenate([pieces[k] for k in range(count)])


@pytest.mark.parametrize("name", ["vbr.mp3", "x.opus", "alac.m4a"])
def test_original_chunks_equal_the_linear_decode(tracks: dict[str, Path], name: str) -> None:
    linear = stereo_downmix(read_audio(tracks[name])[0])
    np.testing.assert_array_equal(_chunks(tracks[name], None), linear)


def test_mastered_chunks_equal_in_any_order(tracks: dict[str, Path]) -> None:
    plan = plan_mastering(None, "warm", 1.0)
    first = _chunks(tracks["vbr.mp3"], plan)
    count = first.shape[0] // CHUNK
    again = np.concatenate([jobs.render_chunk_stereo(str(tracks["vbr.mp3"]), plan, k, CHUNK) for k in range(count + 1)])
    np.testing.assert_array_equal(first, again)


def test_control_without_preroll_the_chunk_starts_are_wrong(tracks: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    from auralis import avdecode

    linear = stereo_downmix(read_audio(tracks["vbr.mp3"])[0])
    monkeypatch.setitem(avdecode.PREROLL_FRAMES, "MPEG_LAYER_III", 0)
    chunks = _chunks(tracks["vbr.mp3"], None)
    wrong = [k for k in range(1, linear.shape[0] // CHUNK) if not np.array_equal(
        chunks[k * CHUNK : k * CHUNK + 2000], linear[k * CHUNK : k * CHUNK + 2000])]
    assert len(wrong) >= 3


def test_a_chunk_past_the_end_of_a_file_that_got_shorter_says_so(tmp_path: Path) -> None:
    """The player counts chunks from the library's length; a file rewritten shorter since the scan gets
    a ``bad_audio`` error naming the file and why. It was ``internal``: "IndexError: chunk 5 is outside ...",
    which the player passed on to every listener as the reason the track stopped."""
    path = tmp_path / "rewritten.flac"
    write_audio(path, np.full((RATE, 2), 0.1, dtype=np.float32), RATE)
    assert jobs.render_chunk_stereo(str(path), None, 0).shape[1] == 2
    with pytest.raises(jobs.JobFailed) as info:
        jobs.render_chunk_stereo(str(path), None, 5)
    assert info.value.code == "bad_audio", info.value.message
    assert info.value.message.startswith(f"{path}: its audio ends at 1.00 s, shorter than"), info.value.message
    assert "\n" not in info.value.message  # one sentence, no traceback
