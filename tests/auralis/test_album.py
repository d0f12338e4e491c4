"""Album mode in the library: the exact album fingerprint, one album plan, and no step at a track boundary.

* The album's plan inputs equal the fingerprint of the concatenated tracks (the meter on the
  concatenation) to ~1e-9, whatever the track lengths (a track shorter than the pre-roll
  included) and however the 30 s album segments fall across track boundaries.
* A continuous piece split at an arbitrary frame into two tracks of one album, each rendered in
  shuffled chunks with the album plan, concatenates to the one-file render within the seam test's
  -90 dBFS, with no level step at the boundary. Two controls show the test would catch both
  failures: per-track plans (a level step of several dB) and the album plan rendered track by
  track without the album's context (a seam).
* A quiet and a loud song keep their relative loudness in album mode (exactly what the one-file
  render gives them) while track mode flattens them.
"""

from __future__ import annotations

import math
import pickle
import random

import numpy as np
import pytest

from auralis.album import (
    AlbumLayout,
    AlbumReader,
    album_key,
    album_segment_count,
    analyze_album_segment,
    compute_album_plan_inputs,
    merge_album_segments,
    plan_album,
    render_album_chunk,
    render_album_frames,
)
from auralis.audio import read_audio, write_audio
from auralis.errors import AlbumMismatchError, AudioError
from auralis.fingerprint import compute_plan_inputs, fingerprint_from_samples
from auralis.loudness import integrated_loudness, measure_loudness
from auralis.plan import plan_mastering
from auralis.presets import PRESET_NAMES
from auralis.render import chunk_count, render_chunk
from auralis.synth import make_music

SAMPLE_RATE = 44_100
SEAM_LIMIT_DBFS = -90.0  # tests/auralis/test_render_seamless.py
GAIN_WINDOW_S = 0.05  # applied gain is compared over 50 ms on either side of the boundary


def _peak_dbfs(diff: np.ndarray) -> float:
    peak = float(np.max(np.abs(diff))) if diff.size else 0.0
    return 20 * math.log10(peak) if peak > 0 else -math.inf


def _at_lufs(x: np.ndarray, lufs: float) -> np.ndarray:
    return (x * 10 ** ((lufs - integrated_loudness(x, SAMPLE_RATE)) / 20)).astype(np.float32)


def _render_track(layout: AlbumLayout, index: int, plan, n: int, rng: random.Random) -> np.ndarray:
    """Track ``index`` rendered from the album in chunks of ``n`` frames, computed in shuffled order."""
    count = -(-layout.num_frames[index] // n)
    order = list(range(count))
    rng.shuffle(order)
    parts = {k: render_album_chunk(layout, index, plan, k, chunk_frames=n) for k in order}
    return np.concatenate([parts[k] for k in range(count)])


def _render_standalone(path: str, plan, n: int) -> np.ndarray:
    """A track rendered alone (today's track mode): chunks of its own file, silence around it."""
    count = -(-read_audio(path)[0].shape[0] // n)
    return np.concatenate([render_chunk(path, plan, k, chunk_frames=n) for k in range(count)])


def _applied_gain_db(x: np.ndarray, y: np.ndarray, start: int, stop: int) -> float:
    """Output over input energy of frames [start, stop): the gain the chain applied there."""
    num = float(np.sum(np.square(y[start:stop], dtype=np.float64)))
    den = float(np.sum(np.square(x[start:stop], dtype=np.float64)))
    return 10 * math.log10(num / den)


# -- the exact album fingerprint --------------------------------------------------------------


@pytest.fixture(scope="module")
def three_tracks(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], np.ndarray]:
    """Three tracks at different levels: 21.37 s, 0.33 s (shorter than any pre-roll), 13.9 s; odd frame counts."""
    folder = tmp_path_factory.mktemp("album3")
    lengths = [int(21.37 * SAMPLE_RATE) + 13, int(0.33 * SAMPLE_RATE) + 7, int(13.9 * SAMPLE_RATE) + 29]
    levels = [-20.0, -9.0, -31.0]
    tracks = []
    for i, (n, lufs) in enumerate(zip(lengths, levels, strict=True)):
        music = make_music(n / SAMPLE_RATE + 0.1, SAMPLE_RATE, bpm=100 + 10 * i, seed=40 + i)[:n]
        tracks.append(_at_lufs(music, lufs) if n > SAMPLE_RATE else music * np.float32(0.8))
    paths = []
    for i, t in enumerate(tracks):
        paths.append(str(folder / f"{i + 1:02d}.wav"))
        write_audio(paths[-1], t, SAMPLE_RATE)
    return paths, np.concatenate(tracks)


def test_album_fingerprint_equals_the_meter_on_the_concatenation(three_tracks) -> None:
    paths, concatenated = three_tracks
    layout = AlbumLayout.of_paths(paths)
    assert layout.total_frames == concatenated.shape[0]
    album = compute_album_plan_inputs(layout)
    one_file = fingerprint_from_samples(concatenated, SAMPLE_RATE)
    meter = measure_loudness(concatenated, SAMPLE_RATE)
    # Loudness gated over the whole album, as the meter on the concatenation gates it.
    assert abs(album.measurements["integrated_lufs"] - meter.integrated_lufs) < 1e-9
    assert abs(album.measurements["loudness_range_lu"] - meter.loudness_range_lu) < 1e-9
    assert abs(album.measurements["true_peak_dbtp"] - meter.true_peak_dbtp) < 1e-9
    assert abs(album.measurements["max_momentary_lufs"] - meter.max_momentary_lufs) < 1e-9
    assert abs(album.measurements["max_short_term_lufs"] - meter.max_short_term_lufs) < 1e-9
    for key, value in album.dimensions.items():  # lufs, crest_db, the seven bands
        assert value == pytest.approx(one_file.dimensions[key], rel=1e-9, abs=1e-12), key
    for key in ("plr_db", "sample_peak_dbfs", "duration_s", "sample_rate", "channels"):
        assert album.measurements[key] == pytest.approx(one_file.measurements[key], rel=1e-12), key
    # Not the same as merging the tracks' own measurements naively: the loud short track and the
    # quiet one are gated together, so the album's loudness is neither track's nor their mean.
    own = [compute_plan_inputs(p).measurements["integrated_lufs"] for p in paths]
    assert all(abs(album.measurements["integrated_lufs"] - v) > 1.0 for v in own)


def test_album_segments_merge_in_any_order_across_track_boundaries(three_tracks) -> None:
    paths, concatenated = three_tracks
    layout = pickle.loads(pickle.dumps(AlbumLayout.of_paths(paths)))  # what a worker process receives
    count = album_segment_count(layout)
    assert count == 2  # 35.6 s: segment 0 ends inside track 3, past the 0.33 s track
    order = list(range(count))[::-1]
    results = [pickle.loads(pickle.dumps(analyze_album_segment(layout, i))) for i in order]
    merged = merge_album_segments(layout, results)
    whole = compute_album_plan_inputs(layout)
    assert merged.measurements == whole.measurements
    assert merged.dimensions == pytest.approx(whole.dimensions, rel=1e-12)
    with pytest.raises(ValueError, match="do not cover"):
        merge_album_segments(layout, results[:1])
    with pytest.raises(IndexError):
        analyze_album_segment(layout, count)


def test_album_reader_reads_the_tracks_as_one_file(three_tracks) -> None:
    paths, concatenated = three_tracks
    layout = AlbumLayout.of_paths(paths)
    with AlbumReader(layout) as reader:
        assert reader.info.num_frames == concatenated.shape[0]
        # A read spanning all three tracks and past both ends, zero-padded like AudioReader.
        start, stop = -100, concatenated.shape[0] + 50
        got = reader.read(start, stop)
        assert np.array_equal(got[100:-50], concatenated)
        assert not got[:100].any() and not got[-50:].any()
        b = layout.offsets[2]
        assert np.array_equal(reader.read(b - 5, b + 5), concatenated[b - 5 : b + 5])


def test_album_layout_refuses_mixed_formats_and_changed_tracks(three_tracks, tmp_path) -> None:
    paths, _ = three_tracks
    other = str(tmp_path / "48k.wav")
    write_audio(other, make_music(1.0, 48_000, seed=1), 48_000)
    with pytest.raises(AlbumMismatchError, match="played track by track"):
        AlbumLayout.of_paths([paths[0], other])
    mono = str(tmp_path / "mono.wav")
    write_audio(mono, make_music(1.0, SAMPLE_RATE, seed=1, channels=1), SAMPLE_RATE)
    with pytest.raises(AlbumMismatchError):
        AlbumLayout.of_paths([paths[0], mono])
    with pytest.raises(AlbumMismatchError):
        AlbumLayout.of_paths([])
    with pytest.raises(AudioError):
        AlbumLayout.of_paths([paths[0], str(tmp_path / "missing.flac")])
    # A track replaced after the layout was taken: a typed error, never audio from the wrong layout.
    changed = str(tmp_path / "changed.wav")
    write_audio(changed, make_music(2.0, SAMPLE_RATE, seed=2), SAMPLE_RATE)
    layout = AlbumLayout.of_paths([paths[1], changed])
    write_audio(changed, make_music(3.0, SAMPLE_RATE, seed=2), SAMPLE_RATE)
    with pytest.raises(AlbumMismatchError, match="changed|now"):
        compute_album_plan_inputs(layout)
    assert AlbumMismatchError.code == "album_mismatch"


# -- a continuous piece split into two tracks -------------------------------------------------


@pytest.fixture(scope="module")
def split_piece(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A 24 s piece swelling from quiet to loud, split at an arbitrary frame (not on any grid)."""
    folder = tmp_path_factory.mktemp("split")
    music = make_music(24.0, SAMPLE_RATE, bpm=110, seed=5)
    t = np.arange(music.shape[0]) / SAMPLE_RATE
    swell_db = np.interp(t, [0.0, 8.0, 16.0, 24.0], [-16.0, -16.0, 0.0, 0.0])
    piece = (music * 10 ** (swell_db / 20)[:, None]).astype(np.float32)
    split = int(11.3 * SAMPLE_RATE) + 37  # inside the swell, off the 16-frame and granule grids
    paths = {name: str(folder / f"{name}.wav") for name in ("a", "b", "whole")}
    write_audio(paths["a"], piece[:split], SAMPLE_RATE)
    write_audio(paths["b"], piece[split:], SAMPLE_RATE)
    write_audio(paths["whole"], piece, SAMPLE_RATE)
    return {"paths": paths, "piece": piece, "split": split, "layout": AlbumLayout.of_paths([paths["a"], paths["b"]])}


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_split_piece_in_album_mode_equals_the_one_file_render(split_piece, preset: str) -> None:
    layout, paths = split_piece["layout"], split_piece["paths"]
    plan = plan_album(compute_album_plan_inputs(layout), preset, 1.0, tracks=2)
    # The album plan is the plan of the album as one file: same decision, gain, dynamics, EQ.
    assert plan == plan_mastering(compute_plan_inputs(paths["whole"]), preset, 1.0)
    assert plan.cache_key() == plan_mastering(compute_plan_inputs(paths["whole"]), preset, 1.0).cache_key()
    assert plan.decisions[-1].startswith("[album] one plan for the 2 tracks")
    total = layout.total_frames
    reference = render_chunk(paths["whole"], plan, 0, chunk_frames=total)
    rng = random.Random(preset)
    for n in (SAMPLE_RATE, 5 * SAMPLE_RATE, 32_771):
        stitched = np.concatenate([_render_track(layout, i, plan, n, rng) for i in range(2)])
        assert stitched.shape == reference.shape
        assert _peak_dbfs(stitched.astype(np.float64) - reference) <= SEAM_LIMIT_DBFS, (preset, n)


def test_no_level_step_at_the_boundary_in_album_mode_and_the_controls_show_one(split_piece) -> None:
    layout, paths, split, piece = split_piece["layout"], split_piece["paths"], split_piece["split"], split_piece["piece"]
    n = 5 * SAMPLE_RATE
    w = int(GAIN_WINDOW_S * SAMPLE_RATE)
    rng = random.Random(7)
    plan = plan_album(compute_album_plan_inputs(layout), "adaptive", 1.0, tracks=2)
    album = np.concatenate([_render_track(layout, i, plan, n, rng) for i in range(2)])
    album_step = _applied_gain_db(piece, album, split, split + w) - _applied_gain_db(piece, album, split - w, split)

    # Control 1: today's track mode, each track with its own plan (the 3.6 dB jump).
    plans = [plan_mastering(compute_plan_inputs(paths[name]), "adaptive", 1.0) for name in ("a", "b")]
    track_mode = np.concatenate([_render_standalone(paths[name], p, n) for name, p in zip(("a", "b"), plans, strict=True)])
    before = _applied_gain_db(piece, track_mode, split - w, split)
    after = _applied_gain_db(piece, track_mode, split, split + w)

    # Control 2: the album plan, but each track rendered alone (no pre-roll or look-ahead across).
    alone = np.concatenate([_render_standalone(paths[name], plan, n) for name in ("a", "b")])
    reference = render_chunk(paths["whole"], plan, 0, chunk_frames=layout.total_frames)

    assert abs(plans[0].gain_db - plans[1].gain_db) > 3.0  # the per-track plans disagree by dB
    assert abs(after - before) > 3.0, f"control shows no step ({before:+.2f} dB -> {after:+.2f} dB)"
    assert abs(album_step) < 0.2, f"album mode steps by {album_step:+.3f} dB at the boundary"
    assert _peak_dbfs(alone.astype(np.float64) - reference) > -60.0  # without the context: a seam
    assert _peak_dbfs(album.astype(np.float64) - reference) <= SEAM_LIMIT_DBFS


@pytest.mark.parametrize("parts", [5, 12])
def test_piece_split_into_many_tracks_equals_the_one_file_render(split_piece, tmp_path, parts: int) -> None:
    """5 and 12 tracks at random frames (some far shorter than the 1 s pre-roll): every boundary is seamless."""
    piece, paths = split_piece["piece"], split_piece["paths"]
    rng = np.random.default_rng(parts)
    cuts = np.sort(rng.choice(np.arange(1000, piece.shape[0] - 1000), size=parts - 1, replace=False))
    cuts[1] = cuts[0] + int(0.13 * SAMPLE_RATE) + 3  # a 0.13 s track: its neighbours' context reaches across it
    bounds = [0, *cuts.tolist(), piece.shape[0]]
    files = []
    for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        files.append(str(tmp_path / f"{i:02d}.wav"))
        write_audio(files[-1], piece[a:b], SAMPLE_RATE)
    layout = AlbumLayout.of_paths(files)
    plan = plan_album(compute_album_plan_inputs(layout), "adaptive", 1.0, tracks=parts)
    assert plan == plan_mastering(compute_plan_inputs(paths["whole"]), "adaptive", 1.0)
    reference = render_chunk(paths["whole"], plan, 0, chunk_frames=layout.total_frames)
    order = random.Random(parts)
    album = np.concatenate([_render_track(layout, i, plan, 2 * SAMPLE_RATE, order) for i in range(parts)])
    assert _peak_dbfs(album.astype(np.float64) - reference) <= SEAM_LIMIT_DBFS
    # Control: each track with its own plan steps at the boundaries, where the one-file render (and so
    # album mode, equal to it above) moves only as the music and its dynamics do.
    alone = [plan_mastering(compute_plan_inputs(f), "adaptive", 1.0) for f in files]
    track_mode = np.concatenate([_render_standalone(f, p, 2 * SAMPLE_RATE) for f, p in zip(files, alone, strict=True)])
    w = int(GAIN_WINDOW_S * SAMPLE_RATE)

    def step(y: np.ndarray, c: int) -> float:
        return _applied_gain_db(piece, y, c, c + w) - _applied_gain_db(piece, y, c - w, c)

    assert max(abs(step(track_mode, c) - step(reference, c)) for c in cuts) > 1.0
    assert _peak_dbfs(track_mode.astype(np.float64) - reference) > -40.0


def test_album_frames_reach_across_the_boundary(split_piece) -> None:
    layout, paths = split_piece["layout"], split_piece["paths"]
    plan = plan_album(compute_album_plan_inputs(layout), "gentle", 1.0, tracks=2)
    total = layout.total_frames
    reference = render_chunk(paths["whole"], plan, 0, chunk_frames=total)
    n_a = layout.num_frames[0]
    # Track 2's frames from 100 before its start (the end of track 1) to 50 past the album's end.
    got = render_album_frames(layout, 1, plan, -100, layout.num_frames[1] + 50)
    assert np.array_equal(got[:-50], reference[n_a - 100 :])
    assert not got[-50:].any()
    with pytest.raises(IndexError):
        render_album_frames(layout, 2, plan, 0, 10)


def test_a_mono_album_renders_its_stereo_master_across_the_boundary(tmp_path) -> None:
    mono = make_music(4.0, SAMPLE_RATE, seed=3, channels=1)
    split = int(1.7 * SAMPLE_RATE) + 5
    files = [str(tmp_path / "1.wav"), str(tmp_path / "2.wav"), str(tmp_path / "all.wav")]
    write_audio(files[0], mono[:split], SAMPLE_RATE)
    write_audio(files[1], mono[split:], SAMPLE_RATE)
    write_audio(files[2], mono, SAMPLE_RATE)
    layout = AlbumLayout.of_paths(files[:2])
    plan = plan_album(compute_album_plan_inputs(layout), "warm", 1.0, tracks=2)
    reference = render_chunk(files[2], plan, 0, chunk_frames=mono.shape[0])
    got = np.concatenate([render_album_frames(layout, i, plan, 0, n) for i, n in enumerate(layout.num_frames)])
    assert got.shape == reference.shape == (mono.shape[0], 2)
    assert _peak_dbfs(got.astype(np.float64) - reference) <= SEAM_LIMIT_DBFS


# -- a quiet and a loud song ------------------------------------------------------------------


@pytest.fixture(scope="module")
def quiet_and_loud(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A quiet song (-26 LUFS) then a loud one (-16 LUFS): 10 LU of intended contrast."""
    folder = tmp_path_factory.mktemp("contrast")
    quiet = _at_lufs(make_music(12.0, SAMPLE_RATE, bpm=90, seed=1), -26.0)
    loud = _at_lufs(make_music(10.0, SAMPLE_RATE, bpm=128, seed=2), -16.0)
    paths = [str(folder / "01 quiet.wav"), str(folder / "02 loud.wav"), str(folder / "album.wav")]
    write_audio(paths[0], quiet, SAMPLE_RATE)
    write_audio(paths[1], loud, SAMPLE_RATE)
    write_audio(paths[2], np.concatenate([quiet, loud]), SAMPLE_RATE)
    return {"paths": paths, "layout": AlbumLayout.of_paths(paths[:2]), "split": quiet.shape[0]}


def _album_contrast(case: dict, preset: str, intensity: float) -> tuple[float, float, float]:
    """(album mode, one-file render, track mode) loudness of the loud song minus the quiet one, in LU."""
    layout, paths, split = case["layout"], case["paths"], case["split"]
    plan = plan_album(compute_album_plan_inputs(layout), preset, intensity, tracks=2)
    album = [
        np.concatenate([render_album_chunk(layout, i, plan, k) for k in range(chunk_count(n, SAMPLE_RATE))])
        for i, n in enumerate(layout.num_frames)
    ]
    whole = render_chunk(paths[2], plan, 0, chunk_frames=layout.total_frames)
    tracks = [
        render_chunk(p, plan_mastering(compute_plan_inputs(p), preset, intensity), 0, chunk_frames=10**9)
        for p in paths[:2]
    ]

    def contrast(pair: list[np.ndarray]) -> float:
        return integrated_loudness(pair[1], SAMPLE_RATE) - integrated_loudness(pair[0], SAMPLE_RATE)

    return contrast(album), contrast([whole[:split], whole[split:]]), contrast(tracks)


@pytest.mark.parametrize("preset", PRESET_NAMES)
def test_album_mode_keeps_relative_levels_track_mode_flattens_them(quiet_and_loud, preset: str) -> None:
    album, one_file, track = _album_contrast(quiet_and_loud, preset, 1.0)
    assert abs(album - one_file) < 0.1, (album, one_file)  # the criterion: as the one-file render
    # The album's one compressor takes a little off the loud song (up to ~1.5 LU at full intensity);
    # the 10 LU contrast survives, where track mode brings both songs to the target.
    assert 8.5 < album < 10.0, album
    assert abs(track) < 0.5, track


def test_album_mode_at_half_intensity_keeps_the_contrast_within_half_a_lu(quiet_and_loud) -> None:
    album, one_file, track = _album_contrast(quiet_and_loud, "adaptive", 0.5)
    assert abs(album - 10.0) < 0.5, album
    assert abs(album - one_file) < 0.1
    assert track < album - 4.0


# -- album identity ---------------------------------------------------------------------------


def test_album_key_rule() -> None:
    # A MusicBrainz album id decides alone.
    assert album_key(folder="/m/x", album="A", musicbrainz_album_id="ABC-1") == album_key(
        folder="/m/y", album="B", musicbrainz_album_id="abc-1"
    )
    # Album tag + album artist, case- and space-insensitive; the artist stands in for a missing album artist.
    assert album_key(folder="/m/1", album="Kind of  Blue", album_artist="Miles Davis") == album_key(
        folder="/m/2", album="kind of blue", artist="MILES DAVIS"
    )
    # Same title by different album artists: two albums. A compilation's artists: one album.
    assert album_key(folder="/m", album="Greatest Hits", album_artist="Queen") != album_key(
        folder="/m", album="Greatest Hits", album_artist="ABBA"
    )
    assert album_key(folder="/a", album="Now 1", album_artist="VA", artist="X") == album_key(
        folder="/b", album="Now 1", album_artist="VA", artist="Y"
    )
    # Untagged: by folder.
    assert album_key(folder="/m/rips/live") == album_key(folder="/m/rips/live/")
    assert album_key(folder="/m/rips/live") != album_key(folder="/m/rips/other")
    assert album_key(folder="/m/rips/live").startswith("dir:")
