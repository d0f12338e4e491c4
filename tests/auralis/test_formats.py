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


# a FLAC cut short is a shorter track with its intact frames (test_a_flac_cut_short_...), as a cut Ogg or WAV is
@pytest.mark.parametrize("name", sorted(set(FORMATS) - {"noxing.mp3", "x.flac"}) + ["source.wav"])
def test_damaged_file_is_corrupt(library: dict[str, str], tmp_path, name: str) -> None:
    damaged = str(tmp_path / f"damaged-{name}")
    _damage(library[name], damaged, name)
    with pytest.raises(CorruptAudioError):  # at probe (header, tail check)
        probe(damaged)
        read_audio(damaged)


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


# -- headers that lie, absurd samples -------------------------------------------------------------


def _patch_flac_total(src: str, dst: str, total: int) -> None:
    """Copy a FLAC file with STREAMINFO's 36-bit total sample count replaced by ``total``."""
    with open(src, "rb") as handle:
        data = bytearray(handle.read())
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0  # STREAMINFO first, as FLAC requires
    field = int.from_bytes(data[18:26], "big")
    data[18:26] = ((field & ~((1 << 36) - 1)) | total).to_bytes(8, "big")
    with open(dst, "wb") as handle:
        handle.write(data)


@pytest.mark.parametrize("claimed", [(1 << 36) - 1, 0, N * 50])
def test_flac_lying_header_reports_real_length(library: dict[str, str], tmp_path, claimed: int) -> None:
    """2^36-1 samples (433 h at 44.1 kHz), 0 ("unknown") or 50x: the length comes from the frames."""
    from auralis.fingerprint import segment_count

    path = str(tmp_path / "liar.flac")
    _patch_flac_total(library["x.flac"], path, claimed)
    info = probe(path)
    assert info.num_frames == N
    assert segment_count(path) == 1  # the daemon's job count follows the real audio
    honest, _ = read_audio(library["x.flac"])
    with AudioReader(path) as reader:
        np.testing.assert_array_equal(reader.read(0, N), honest)
        for start in (150_000, 20_000, N - 100):
            np.testing.assert_array_equal(reader.read(start, start + 1000)[: max(0, N - start)], honest[start : start + 1000])


def test_a_flac_length_is_checked_once_per_file_and_again_when_the_file_changes(
    library: dict[str, str], tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A worker opens the same file for every chunk and piece it renders: the seek to the last frame that
    checks STREAMINFO (65-75 ms for some files) happens once per file identity (path, size, mtime)."""
    path = str(tmp_path / "again.flac")
    shutil.copyfile(library["x.flac"], path)
    seeks: list[int] = []
    real_seek = sf.SoundFile.seek

    def spy(self: sf.SoundFile, frames: int, whence: int = sf.SEEK_SET) -> int:
        seeks.append(frames)
        return real_seek(self, frames, whence)

    monkeypatch.setattr(sf.SoundFile, "seek", spy)
    assert probe(path).num_frames == N
    assert N - 1 in seeks  # checked against the data
    seeks.clear()
    with AudioReader(path) as reader:
        opening = list(seeks)
        assert reader.info.num_frames == N
        np.testing.assert_array_equal(reader.read(N - 1000, N), read_audio(library["x.flac"])[0][N - 1000 :])
    assert N - 1 not in opening  # trusted: opening it again does not seek to the last frame
    # the same path now holds a cut file whose header still claims N frames: checked again, and caught
    with open(library["x.flac"], "rb") as handle:
        cut = handle.read()[:300_000]
    with open(path, "wb") as handle:
        handle.write(cut)
    seeks.clear()
    with AudioReader(path) as reader:
        assert N - 1 in seeks  # not trusted: a new identity (size, mtime)
        assert reader.info.num_frames < N and reader.info.damage  # the data ends early: its intact frames


def test_a_flac_cut_short_is_as_long_as_its_intact_frames_and_reads_them_exactly(
    library: dict[str, str], tmp_path
) -> None:
    """An interrupted copy: before, it kept its header's length, so the player promised 4 s, failed the
    whole chunk that held the cut (seconds of good audio lost) and reported a decode error there."""
    path = tmp_path / "cut.flac"
    with open(library["x.flac"], "rb") as handle:
        path.write_bytes(handle.read()[:300_000])
    whole, _ = read_audio(library["x.flac"])
    info = probe(path)
    kept = 300_000 / os.path.getsize(library["x.flac"])  # the share of the data left
    assert abs(info.num_frames / N - kept) < 0.05, info  # the frames before the cut, not the header's N
    assert "cut short" in info.damage and str(N) in info.damage, info.damage
    with AudioReader(path) as reader:
        np.testing.assert_array_equal(reader.read(0, info.num_frames), whole[: info.num_frames])
        end = info.num_frames
        np.testing.assert_array_equal(reader.read(end - 1000, end), whole[end - 1000 : end])  # after a seek
    assert probe(library["x.flac"]).damage == ""  # an intact file says nothing
    _patch_flac_total(str(path), str(tmp_path / "cut-unknown.flac"), 0)
    assert probe(tmp_path / "cut-unknown.flac").num_frames == info.num_frames  # no length in the header
    garbage = tmp_path / "cut-garbage.flac"  # cut, then something else written after the cut
    garbage.write_bytes(path.read_bytes() + np.random.default_rng(3).bytes(5000))
    assert probe(garbage).num_frames == info.num_frames


def _float_wav(path: str, samples: np.ndarray) -> None:
    sf.write(path, samples.astype(np.float32), SR, subtype="FLOAT")


def test_absurd_and_non_finite_float_samples_are_sanitised(tmp_path) -> None:
    t = np.arange(SR * 3) / SR
    tone = np.stack([0.5 * np.sin(2 * np.pi * 220 * t)] * 2, axis=1)
    _float_wav(str(tmp_path / "huge.wav"), tone * 1e30)
    bad = tone.copy()
    bad[1000:2000] = np.nan
    bad[5000:6000, 1] = np.inf
    _float_wav(str(tmp_path / "nan.wav"), bad)
    huge, _ = read_audio(tmp_path / "huge.wav")
    assert np.isfinite(huge).all() and np.abs(huge).max() <= 1000.0
    clean, _ = read_audio(tmp_path / "nan.wav")
    assert np.isfinite(clean).all() and not clean[1000:2000].any()


def test_analyze_goes_on_past_bad_files(library: dict[str, str], tmp_path) -> None:
    """A bad file gets its error line; the files after it on the command line are still analysed."""
    import json

    t = np.arange(SR * 3) / SR
    _float_wav(str(tmp_path / "huge.wav"), np.stack([np.sin(2 * np.pi * 220 * t)] * 2, axis=1) * 1e30)
    (tmp_path / "notes.txt").write_text("not audio\n")
    files = [str(tmp_path / "huge.wav"), str(tmp_path / "notes.txt"), str(tmp_path / "missing.flac"), library["x.flac"]]
    run = subprocess.run([sys.executable, "-m", "auralis.cli", "analyze", "--json", "--no-sidecar", *files],
                         capture_output=True, text=True, check=False)
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert [line.get("code") for line in lines] == [None, "unsupported_format", "not_found", None]
    assert "fingerprint" in lines[0] and "fingerprint" in lines[3]


# -- any file name ----------------------------------------------------------------------------------


def test_non_utf8_names_analyse_and_master(library: dict[str, str], tmp_path) -> None:
    """Latin-1 folder and file names (bytes that are not UTF-8): decoded, analysed, mastered, sidecars beside."""
    folder = os.path.join(os.fsencode(tmp_path), b"d\xe9j\xe0 vu")
    os.mkdir(folder)
    names = {}
    for name in ("x.flac", "vbr.mp3", "aac.m4a", "x.opus"):
        target = os.path.join(folder, b"caf\xe9 " + name.encode())
        shutil.copyfile(library[name], target)
        names[name] = os.fsdecode(target)  # str with surrogate escapes, as os.listdir gives it
    for name, path in names.items():
        assert probe(path).num_frames == N
        np.testing.assert_array_equal(read_audio(path)[0], read_audio(library[name])[0])
    run = subprocess.run([sys.executable, "-m", "auralis.cli", "analyze", *[os.fsencode(p) for p in names.values()]],
                         capture_output=True, check=False, env={**os.environ, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"})
    assert run.returncode == 0, run.stderr
    assert b"caf\\xe9 x.flac" in run.stdout  # shown escaped, never a UnicodeEncodeError
    assert os.path.exists(os.fsencode(names["x.flac"]) + b".25d")  # the sidecar beside the file
    out = os.path.join(folder, b"ma\xeetris\xe9.flac")
    run = subprocess.run([sys.executable, "-m", "auralis.cli", "master", os.fsencode(names["aac.m4a"]), out],
                         capture_output=True, check=False, env={**os.environ, "LANG": "en_US.UTF-8"})
    assert run.returncode == 0, run.stderr
    assert probe(os.fsdecode(out)).num_frames == N


def test_content_decides_not_the_extension(library: dict[str, str], tmp_path) -> None:
    """A FLAC named .mp3, an MP3 named .flac and a FLAC with an ID3v2 tag in front (taggers do that)."""
    with open(library["x.flac"], "rb") as handle:
        flac = handle.read()
    with open(library["vbr.mp3"], "rb") as handle:
        mp3 = handle.read()
    (tmp_path / "really-flac.mp3").write_bytes(flac)
    (tmp_path / "really-mp3.flac").write_bytes(mp3)
    (tmp_path / "id3.flac").write_bytes(b"ID3\x04\x00\x00\x00\x00\x02\x00" + bytes(256) + flac)
    assert probe(tmp_path / "really-flac.mp3").format == "FLAC"
    assert probe(tmp_path / "really-mp3.flac").format == "MP3"
    np.testing.assert_array_equal(read_audio(tmp_path / "id3.flac")[0], read_audio(library["x.flac"])[0])
    np.testing.assert_array_equal(read_audio(tmp_path / "really-mp3.flac")[0], read_audio(library["vbr.mp3"])[0])
