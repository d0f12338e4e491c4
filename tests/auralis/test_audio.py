"""Audio input: formats, rates, channel layouts, block reads, and typed errors for bad files."""

from __future__ import annotations

import os
import tracemalloc

import numpy as np
import pytest
import soundfile as sf

from auralis import errors
from auralis.audio import (
    AudioReader,
    is_audio_path,
    probe,
    read_audio,
    read_frames,
    write_audio,
)


def test_signal(frames: int, channels: int, sample_rate: int) -> np.ndarray:
    """A distinct tone per channel at -6 dBFS: layout mistakes show up as wrong channels."""
    t = np.arange(frames) / sample_rate
    freqs = 220.0 * (1 + np.arange(channels))
    return (0.5 * np.sin(2 * np.pi * t[:, None] * freqs[None, :])).astype(np.float32)


test_signal.__test__ = False  # a helper, not a test


@pytest.mark.parametrize(
    ("ext", "tolerance"),
    [(".wav", 0.0), (".flac", 2e-7), (".aiff", 2e-7), (".ogg", None)],
)
def test_write_then_read_round_trip(tmp_path, ext, tolerance):
    sr = 44_100
    x = test_signal(sr, 2, sr)
    path = tmp_path / f"tone{ext}"
    write_audio(path, x, sr)
    y, rate = read_audio(path)
    info = probe(path)
    assert rate == sr and info.sample_rate == sr and info.channels == 2
    assert y.dtype == np.float32 and y.ndim == 2 and y.shape[1] == 2
    if tolerance is None:  # lossy Vorbis: same length, same level
        assert abs(y.shape[0] - sr) < 2048
        assert np.sqrt(np.mean(y**2)) == pytest.approx(np.sqrt(np.mean(x**2)), rel=0.05)
    else:
        assert y.shape == x.shape
        np.testing.assert_allclose(y, x, atol=tolerance)
        assert info.num_frames == sr and info.duration_s == pytest.approx(1.0)


def test_mp3_decodes(tmp_path):
    sr = 44_100
    x = test_signal(sr, 2, sr)
    path = tmp_path / "tone.mp3"
    try:
        sf.write(path, x, sr, format="MP3")
    except (sf.LibsndfileError, TypeError, ValueError) as exc:  # libsndfile built without MPEG encoding
        pytest.skip(f"this libsndfile cannot write MP3: {exc}")
    y, rate = read_audio(path)
    assert rate == sr and y.shape[1] == 2 and y.dtype == np.float32
    assert abs(y.shape[0] - sr) < 4096  # encoder delay/padding
    assert np.sqrt(np.mean(y**2)) == pytest.approx(np.sqrt(np.mean(x**2)), rel=0.1)
    assert probe(path).format == "MP3"


@pytest.mark.parametrize("sample_rate", [8_000, 11_025, 22_050, 44_100, 48_000, 96_000, 192_000])
def test_sample_rates_8k_to_192k(tmp_path, sample_rate):
    x = test_signal(sample_rate // 10, 2, sample_rate)
    path = tmp_path / "rate.flac"
    write_audio(path, x, sample_rate)
    y, rate = read_audio(path)
    assert rate == sample_rate
    np.testing.assert_allclose(y, x, atol=2e-7)


@pytest.mark.parametrize("channels", [1, 2, 6])
def test_channel_layouts(tmp_path, channels):
    sr = 48_000
    x = test_signal(4_800, channels, sr)
    path = tmp_path / "layout.wav"
    write_audio(path, x, sr)
    y, _ = read_audio(path)
    assert y.shape == (4_800, channels)
    np.testing.assert_array_equal(y, x)  # float WAV: bit exact, channel order kept


def test_sample_rate_outside_range_is_unsupported(tmp_path):
    path = tmp_path / "low.wav"
    sf.write(path, np.zeros((100, 1), np.float32), 4_000)
    with pytest.raises(errors.UnsupportedAudioError, match="4000 Hz"):
        probe(path)


def test_is_audio_path():
    assert is_audio_path("a/b/Song.FLAC") and is_audio_path("x.mp3") and is_audio_path("x.aiff")
    assert not is_audio_path("cover.jpg") and not is_audio_path("song.flac.25d")


# --- Block reads ----------------------------------------------------------------------------------


def test_reader_blocks_equal_the_whole_and_zero_pad_outside(tmp_path):
    sr = 44_100
    x = test_signal(sr * 2, 2, sr)
    path = tmp_path / "blocks.flac"
    write_audio(path, x, sr)
    whole, _ = read_audio(path)
    with AudioReader(path) as reader:
        assert reader.info.num_frames == whole.shape[0]
        blocks = [reader.read(start, min(start + 10_000, whole.shape[0])) for start in range(0, whole.shape[0], 10_000)]
        np.testing.assert_array_equal(np.concatenate(blocks), whole)
        # Pre-roll before 0 and look-ahead past the end read as zeros, with exactly the asked length.
        edge = reader.read(-100, 50)
        assert edge.shape == (150, 2)
        assert not edge[:100].any()
        np.testing.assert_array_equal(edge[100:], whole[:50])
        tail = reader.read(whole.shape[0] - 10, whole.shape[0] + 90)
        np.testing.assert_array_equal(tail[:10], whole[-10:])
        assert not tail[10:].any()
        assert reader.read(-500, -400).shape == (100, 2)
        with pytest.raises(ValueError):
            reader.read(10, 5)
    part, rate = read_frames(path, 1000, 1200)
    np.testing.assert_array_equal(part, whole[1000:1200])


def test_reading_a_long_file_in_blocks_uses_bounded_memory(tmp_path):
    """Reading 60 s of 96 kHz stereo (44 MB as float32) block by block must not hold the file in memory."""
    sr = 96_000
    path = tmp_path / "long.wav"
    block = sr  # 1 s
    with sf.SoundFile(path, "w", samplerate=sr, channels=2, subtype="PCM_16") as out:
        chunk = test_signal(block, 2, sr)
        for _ in range(60):
            out.write(chunk)
    file_bytes_as_float32 = 60 * sr * 2 * 4
    tracemalloc.start()
    try:
        total = 0.0
        with AudioReader(path) as reader:
            for start in range(0, reader.info.num_frames, block):
                total += float(np.abs(reader.read(start, start + block)).max())
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total > 0
    assert peak_bytes < file_bytes_as_float32 / 10, peak_bytes  # one 768 kB block (+ temporaries), not 46 MB


# --- Bad input ------------------------------------------------------------------------------------


def assert_names_file(exc: errors.AudioError, path) -> None:
    assert exc.path == os.fspath(path)
    assert os.fspath(path) in str(exc)
    assert exc.reason and exc.reason in str(exc)


@pytest.mark.parametrize("opener", [probe, read_audio, AudioReader])
def test_missing_path(tmp_path, opener):
    path = tmp_path / "nope.flac"
    with pytest.raises(errors.AudioNotFoundError) as info:
        opener(path)
    assert_names_file(info.value, path)
    assert info.value.code == "not_found"


def test_directory(tmp_path):
    path = tmp_path / "album.flac"
    path.mkdir()
    with pytest.raises(errors.AudioUnreadableError) as info:
        read_audio(path)
    assert_names_file(info.value, path)
    assert "directory" in info.value.reason


def test_unreadable_file(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("running as root: permission bits do not stop root from reading")
    path = tmp_path / "locked.wav"
    write_audio(path, test_signal(100, 1, 8_000), 8_000)
    path.chmod(0)
    try:
        with pytest.raises(errors.AudioUnreadableError) as info:
            read_audio(path)
        assert_names_file(info.value, path)
    finally:
        path.chmod(0o644)


def test_empty_file(tmp_path):
    path = tmp_path / "empty.flac"
    path.write_bytes(b"")
    with pytest.raises(errors.EmptyAudioError) as info:
        read_audio(path)
    assert_names_file(info.value, path)
    assert info.value.code == "empty_audio"


@pytest.mark.parametrize("ext", [".wav", ".flac"])
def test_zero_frames(tmp_path, ext):
    path = tmp_path / f"zero{ext}"
    sf.write(path, np.zeros((0, 2), np.float32), 44_100, subtype="PCM_16")
    with pytest.raises(errors.EmptyAudioError) as info:
        probe(path)
    assert_names_file(info.value, path)


def test_truncated_flac(tmp_path):
    good = tmp_path / "good.flac"
    write_audio(good, test_signal(44_100 * 3, 2, 44_100) + np.float32(0.01), 44_100)
    path = tmp_path / "truncated.flac"
    path.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    samples, _ = read_audio(path)  # the header promises 3 s; the data ends half way: that half plays
    whole, _ = read_audio(good)
    assert 0.4 * len(whole) < len(samples) < 0.5 * len(whole)
    np.testing.assert_array_equal(samples, whole[: len(samples)])
    assert "cut short" in probe(path).damage
    path.write_bytes(good.read_bytes()[:200])  # cut inside the first frame: nothing intact to play
    with pytest.raises(errors.CorruptAudioError) as info:
        read_audio(path)
    assert_names_file(info.value, path)
    assert info.value.code == "corrupt_audio"


def test_random_bytes_named_flac(tmp_path):
    path = tmp_path / "noise.flac"
    path.write_bytes(np.random.default_rng(1).bytes(5_000))
    with pytest.raises(errors.UnsupportedAudioError) as info:
        read_audio(path)
    assert_names_file(info.value, path)
    assert "not a supported audio file" in info.value.reason


def test_text_named_wav(tmp_path):
    path = tmp_path / "notes.wav"
    path.write_text("these are liner notes, not audio\n" * 50)
    with pytest.raises(errors.UnsupportedAudioError) as info:
        probe(path)
    assert_names_file(info.value, path)


def test_every_audio_error_is_an_auralis_error_with_a_code():
    for cls in (
        errors.AudioNotFoundError,
        errors.AudioUnreadableError,
        errors.UnsupportedAudioError,
        errors.CorruptAudioError,
        errors.EmptyAudioError,
    ):
        exc = cls("/music/x.flac", "why")
        assert isinstance(exc, errors.AuralisError) and exc.code and str(exc) == "/music/x.flac: why"


def test_write_refuses_unknown_extension_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "out.xyz"
    with pytest.raises(errors.UnsupportedAudioError):
        write_audio(path, np.zeros((10, 2), np.float32), 44_100)
    assert list(tmp_path.iterdir()) == []
