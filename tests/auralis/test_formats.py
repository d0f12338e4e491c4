"""A messy library's formats through the decoder layer: exact lengths, random access, content, errors.

Every file is generated here by ffmpeg from one known signal (4 s, 48 kHz stereo), so the
expected frame count is known: gapless formats must give exactly the source's frames.
Skipped only when ffmpeg is missing outside CI; in CI (``CI`` set) a missing ffmpeg fails.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from scipy import signal

from auralis.audio import AudioReader, probe, read_audio
from auralis.errors import CorruptAudioError, UnsupportedAudioError

SR = 48_000
N = 4 * SR + 321  # not a multiple of any codec's frame size

if shutil.which("ffmpeg") is None:
    if os.environ.get("CI"):
        pytest.fail("ffmpeg is required in CI", pytrace=False)
    pytest.skip("ffmpeg not installed", allow_module_level=True)

# name -> (ffmpeg codec arguments, gapless: decodes to exactly N frames)
FORMATS = {
    "vbr.mp3": (["-c:a", "libmp3lame", "-q:a", "4"], True),
    "cbr.mp3": (["-c:a", "libmp3lame", "-b:a", "192k"], True),
    "noxing.mp3": (["-c:a", "libmp3lame", "-b:a", "160k", "-write_xing", "0"], False),
    "aac.m4a": (["-c:a", "aac", "-b:a", "160k"], True),
    "aac-nopns.m4a": (["-c:a", "aac", "-b:a", "160k", "-aac_pns", "0"], True),
    "alac.m4a": (["-c:a", "alac"], True),
    "x.opus": (["-c:a", "libopus", "-b:a", "128k"], True),
    "x.ogg": (["-c:a", "libvorbis", "-q:a", "5"], True),
    "x.wv": (["-c:a", "wavpack"], True),
    "x.wma": (["-c:a", "wmav2", "-b:a", "160k"], False),
    "x.flac": (["-c:a", "flac"], True),
}
LOSSLESS = {"alac.m4a", "x.wv", "x.flac"}
# Formats whose decoder is deterministic from a seek point: random access == linear decode exactly.
DETERMINISTIC = sorted(set(FORMATS) - {"aac.m4a"})


def _ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", *args], check=True)


def _source() -> np.ndarray:
    """Music-like: two tones, a glide, noise (PNS bands for AAC), a fade-in; float32 (N, 2)."""
    t = np.arange(N) / SR
    rng = np.random.default_rng(9)
    left = 0.3 * np.sin(2 * np.pi * 440 * t) + 0.1 * np.sin(2 * np.pi * (100 + 300 * t) * t)
    right = 0.3 * np.sin(2 * np.pi * 660 * t + 1.0)
    x = np.stack([left, right], axis=1) + 0.05 * rng.standard_normal((N, 2))
    x *= np.minimum(1.0, t * 4)[:, None]
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("messy")
    src = str(folder / "source.wav")
    sf.write(src, _source(), SR, subtype="PCM_16")
    paths = {"source.wav": src}
    for name, (codec, _) in FORMATS.items():
        paths[name] = str(folder / name)
        _ffmpeg("-i", src, *codec, paths[name])
    return paths


@pytest.fixture(scope="module")
def source(library: dict[str, str]) -> np.ndarray:
    return sf.read(library["source.wav"], dtype="float32", always_2d=True)[0]


def _ffmpeg_frame_count(path: str) -> int:
    """Frames the ffmpeg command line decodes (the reference for formats without gapless data)."""
    pcm = subprocess.run(["ffmpeg", "-v", "error", "-i", path, "-f", "f32le", "-ac", "2", "-"],
                         check=True, capture_output=True).stdout
    return len(pcm) // 8


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_exact_frame_count(library: dict[str, str], name: str) -> None:
    info = probe(library[name])
    assert info.sample_rate == SR and info.channels == 2
    if FORMATS[name][1]:
        assert info.num_frames == N  # encoder delay and padding removed (LAME tag, edit list, pre-skip)
    else:
        # No gapless data: the encoder's delay (MP3) or frame rounding (WMA) stays; ffmpeg agrees.
        assert info.num_frames == _ffmpeg_frame_count(library[name])
        assert abs(info.num_frames - N) < 4096
    samples, rate = read_audio(library[name])
    assert rate == SR and samples.shape == (info.num_frames, 2)


def test_mp3_without_xing_decodes_whole(library: dict[str, str]) -> None:
    """libsndfile estimated this length from the bitrate and failed on the last chunks."""
    path = library["noxing.mp3"]
    info = probe(path)
    with AudioReader(path) as reader:
        tail = reader.read(info.num_frames - 50_000, info.num_frames)
    assert np.abs(tail[-60_000 + 50_000 + 10_000 :]).max() > 0.01  # real audio up to the end


def _random_spans(total: int, count: int, seed: int) -> list[tuple[int, int]]:
    rng = np.random.default_rng(seed)
    spans = [(-1000, 500), (total - 700, total + 300), (0, total)]
    for _ in range(count):
        start = int(rng.integers(-2000, total))
        spans.append((start, start + int(rng.integers(1, 40_000))))
    return spans


@pytest.mark.parametrize("name", DETERMINISTIC)
def test_random_access_equals_linear_decode(library: dict[str, str], name: str) -> None:
    path = library[name]
    linear, _ = read_audio(path)
    total = linear.shape[0]
    padded = np.concatenate([np.zeros((3000, 2), np.float32), linear, np.zeros((50_000, 2), np.float32)])
    with AudioReader(path) as reader:  # one reader: seeks back and forth, overlapping and sequential reads
        for start, stop in _random_spans(total, 30, seed=len(name)):
            got = reader.read(start, stop)
            np.testing.assert_array_equal(got, padded[start + 3000 : stop + 3000], err_msg=f"{name} [{start}, {stop})")
    for start, stop in _random_spans(total, 4, seed=7):  # fresh readers: the daemon opens one per chunk
        with AudioReader(path) as reader:
            np.testing.assert_array_equal(reader.read(start, stop), padded[start + 3000 : stop + 3000])


def test_random_access_without_preroll_control(library: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The control: without decoder pre-roll, seeks in a VBR MP3 return wrong frames (the test above can fail)."""
    from auralis import avdecode

    monkeypatch.setitem(avdecode.PREROLL_FRAMES, "MPEG_LAYER_III", 0)
    path = library["vbr.mp3"]
    linear, _ = read_audio(path)
    wrong = 0
    for start in range(20_000, linear.shape[0] - 5000, 17_919):
        with AudioReader(path) as reader:
            wrong += not np.array_equal(reader.read(start, start + 2048), linear[start : start + 2048])
    assert wrong > 0


def _high_pass_free(x: np.ndarray) -> np.ndarray:
    sos = signal.butter(8, 2000, fs=SR, output="sos")  # below AAC's noise-substituted bands
    return np.asarray(signal.sosfiltfilt(sos, x, axis=0))


def test_aac_random_access_within_noise_substitution_bound(library: dict[str, str]) -> None:
    """AAC's PNS draws decoder-side noise: after a seek, only those (high) bands may differ, at noise level."""
    path = library["aac.m4a"]
    linear, _ = read_audio(path)
    with AudioReader(path) as reader:
        for start in range(30_000, linear.shape[0] - 20_000, 23_456):
            got = reader.read(start, start + 16_384)
            want = linear[start : start + 16_384]
            diff = got - want
            rms = float(np.sqrt(np.mean(want**2)))
            # The difference is two draws of the substituted noise: below the signal by >= 6 dB ...
            assert float(np.sqrt(np.mean(diff**2))) < 0.5 * rms
            # ... and the bands below 2 kHz (tones, glide) are the linear decode's.
            low = _high_pass_free(diff)[2000:-2000]
            assert float(np.sqrt(np.mean(low**2))) < 0.01 * rms


def _best_lag(x: np.ndarray, ref: np.ndarray, max_lag: int = 4096) -> int:
    """The delay of ``x`` against ``ref`` (-max_lag..max_lag frames), from one second in the middle."""
    a = x[SR - max_lag : 2 * SR + max_lag, 0]
    b = ref[SR : 2 * SR, 0]
    corr = signal.correlate(a, b, mode="valid", method="fft")
    return int(np.argmax(corr)) - max_lag


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_content_matches_source(library: dict[str, str], source: np.ndarray, name: str) -> None:
    decoded, _ = read_audio(library[name])
    if name in LOSSLESS:
        np.testing.assert_array_equal(decoded[:N], source)
        return
    lag = 0 if FORMATS[name][1] else _best_lag(decoded, source)
    if name == "noxing.mp3":
        assert lag == 1105  # no LAME tag: LAME's 576 + the decoder's 529 frames of delay stay in front
    part = decoded[SR // 2 + lag : N - SR // 2 + lag]
    ref = source[SR // 2 : N - SR // 2]
    for ch in range(2):
        r = np.corrcoef(part[:, ch], ref[: len(part), ch])[0, 1]
        assert r > 0.97, (name, ch, r)
    level_db = 20 * np.log10(np.sqrt(np.mean(part**2)) / np.sqrt(np.mean(ref**2)))
    assert abs(level_db) < 0.5


def _damage(src: str, dst: str, name: str) -> None:
    with open(src, "rb") as handle:
        data = bytearray(handle.read())
    if name.endswith((".ogg", ".opus")):
        data[40:400] = bytes(360)  # the codec header page (the length comes from the last page)
    elif name.endswith(".wav"):
        data[20:36] = bytes(16)  # the fmt chunk
    else:
        data = data[: len(data) * 6 // 10]  # cut: the header promises more than the data holds
    with open(dst, "wb") as handle:
        handle.write(data)


@pytest.mark.parametrize("name", sorted(set(FORMATS) - {"noxing.mp3"}) + ["source.wav"])
def test_damaged_file_is_corrupt(library: dict[str, str], tmp_path, name: str) -> None:
    damaged = str(tmp_path / f"damaged-{name}")
    _damage(library[name], damaged, name)
    with pytest.raises(CorruptAudioError):
        probe(damaged)


def test_not_audio_is_unsupported(tmp_path) -> None:
    jpg = tmp_path / "cover.jpg"
    _ffmpeg("-f", "lavfi", "-i", "testsrc=size=64x64", "-frames:v", "1", str(jpg))
    (tmp_path / "notes.txt").write_text("liner notes\n")
    (tmp_path / "album.cue").write_text('FILE "album.flac" WAVE\n  TRACK 01 AUDIO\n    INDEX 01 00:00:00\n')
    (tmp_path / "x.flac.25d").write_text('{"format_version": 1}\n')
    rng = np.random.default_rng(3)
    for name in ("random.flac", "random.mp3", "random.m4a", "random.opus"):
        (tmp_path / name).write_bytes(rng.integers(0, 256, 40_000, dtype=np.uint8).tobytes())
    for path in sorted(tmp_path.iterdir()):
        with pytest.raises(UnsupportedAudioError):
            probe(path)


def test_analyze_and_master_every_format(library: dict[str, str], tmp_path) -> None:
    """The command line reads each format (whole track analysis and a mastered output)."""
    paths = [library[name] for name in ("vbr.mp3", "aac.m4a", "alac.m4a", "x.opus", "x.wv", "x.wma")]
    run = subprocess.run([sys.executable, "-m", "auralis.cli", "analyze", "--json", "--no-sidecar", *paths],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    assert run.stdout.count('"fingerprint"') == len(paths)
    out = str(tmp_path / "mastered.flac")
    run = subprocess.run([sys.executable, "-m", "auralis.cli", "master", library["aac.m4a"], out],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    assert sf.info(out).frames == N
