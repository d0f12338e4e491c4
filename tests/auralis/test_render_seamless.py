"""Seamless chunked rendering: chunks rendered in shuffled order in other processes equal one pass.

Every preset at intensities 0.5 and 1, on quiet material (gain, EQ, compressor, limiter all
active) and on a loudness-war master (transient expander active), with N = 1 s, 5 s and an
odd frame count. The control renders the same chunks with no pre-roll (P = 0) and must show
a seam, which proves the comparison would catch clicks.
"""

from __future__ import annotations

import multiprocessing
import random
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest

from auralis.audio import probe, read_audio, write_audio
from auralis.fingerprint import compute_plan_inputs
from auralis.loudness import integrated_loudness
from auralis.plan import plan_mastering
from auralis.presets import PRESET_NAMES
from auralis.render import (
    LOOKAHEAD_S,
    PREROLL_S,
    chain_reach_frames,
    chunk_count,
    chunk_frames,
    render_chunk,
    render_file,
)
from auralis.synth import loudness_war, make_music

SAMPLE_RATE = 44_100
DURATION_S = 12.0
CHUNK_SIZES = {"1s": SAMPLE_RATE, "5s": 5 * SAMPLE_RATE, "odd": 32_771}
INTENSITIES = (0.5, 1.0)
SEAM_LIMIT_DBFS = -90.0


def _peak_dbfs(diff: np.ndarray) -> float:
    peak = float(np.max(np.abs(diff))) if diff.size else 0.0
    return 20 * np.log10(peak) if peak > 0 else -np.inf


@pytest.fixture(scope="module")
def tracks(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("seamless")
    music = make_music(DURATION_S, SAMPLE_RATE, bpm=124, seed=11)
    quiet = music * 10 ** ((-22.0 - integrated_loudness(music, SAMPLE_RATE)) / 20)
    paths = {"quiet": str(folder / "quiet.wav"), "crushed": str(folder / "crushed.wav")}
    write_audio(paths["quiet"], quiet.astype(np.float32), SAMPLE_RATE)
    write_audio(paths["crushed"], loudness_war(music), SAMPLE_RATE)
    return paths


@pytest.fixture(scope="module")
def seam_results(tracks: dict[str, str]) -> dict[tuple[str, str, float, str], float]:
    """Max |chunked - one pass| in dBFS per (material, preset, intensity, chunk size), plus the P=0 controls."""
    total = probe(tracks["quiet"]).num_frames
    jobs = []  # (case, k, chunk_frames, preroll_s)
    plans = {}
    for material, path in tracks.items():
        fp = compute_plan_inputs(path)
        for preset in PRESET_NAMES:
            for intensity in INTENSITIES:
                plan = plan_mastering(fp, preset, intensity)
                plans[(material, preset, intensity)] = plan
                for size_name, n in CHUNK_SIZES.items():
                    case = (material, preset, intensity, size_name)
                    jobs += [(case, k, n, PREROLL_S) for k in range(-(-total // n))]
    control = ("quiet", "adaptive", 1.0, "control-P0")
    jobs += [(control, k, SAMPLE_RATE, 0.0) for k in range(-(-total // SAMPLE_RATE))]
    plans[control[:3]] = plans[("quiet", "adaptive", 1.0)]
    random.Random(1234).shuffle(jobs)

    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=2, mp_context=ctx) as pool:
        futures = [
            pool.submit(render_chunk, tracks[case[0]], plans[case[:3]], k, chunk_frames=n, preroll_s=pre)
            for case, k, n, pre in jobs
        ]
        chunks: dict[tuple, dict[int, np.ndarray]] = {}
        for (case, k, _n, _), fut in zip(jobs, futures, strict=True):
            chunks.setdefault(case, {})[k] = fut.result()

    results = {}
    one_pass_cache: dict[tuple, np.ndarray] = {}
    for case, parts in chunks.items():
        key = case[:3]
        if key not in one_pass_cache:
            one_pass_cache[key] = render_chunk(tracks[case[0]], plans[key], 0, chunk_frames=total)
        reference = one_pass_cache[key]
        stitched = np.concatenate([parts[k] for k in sorted(parts)])
        assert stitched.shape == reference.shape, case
        results[case] = _peak_dbfs(stitched.astype(np.float64) - reference)
    return results


CASES = [
    (material, preset, intensity, size)
    for material in ("quiet", "crushed")
    for preset in PRESET_NAMES
    for intensity in INTENSITIES
    for size in CHUNK_SIZES
]


@pytest.mark.parametrize("case", CASES, ids=["-".join(map(str, c)) for c in CASES])
def test_chunks_equal_one_pass(case: tuple, seam_results: dict) -> None:
    assert seam_results[case] <= SEAM_LIMIT_DBFS, f"{case}: seam of {seam_results[case]:.1f} dBFS"


def test_control_without_preroll_shows_seams(seam_results: dict) -> None:
    # Same chunks without pre-roll: filters and envelopes restart at every seam.
    assert seam_results[("quiet", "adaptive", 1.0, "control-P0")] > -50.0


def test_preroll_and_lookahead_cover_the_chain_reach(tracks: dict[str, str]) -> None:
    for material, path in tracks.items():
        fp = compute_plan_inputs(path)
        for preset in PRESET_NAMES:
            for sample_rate in (8_000, 44_100, 48_000, 96_000, 192_000):
                back, ahead = chain_reach_frames(plan_mastering(fp, preset, 1.0), sample_rate)
                assert back <= PREROLL_S * sample_rate - 16, (material, preset, sample_rate)
                assert ahead <= LOOKAHEAD_S * sample_rate - 16, (material, preset, sample_rate)


def test_chunk_geometry_and_file_render(tracks: dict[str, str], tmp_path) -> None:
    path = tracks["quiet"]
    info = probe(path)
    n = chunk_frames(info.sample_rate)
    count = chunk_count(info.num_frames, info.sample_rate)
    assert count == -(-info.num_frames // n) == 3
    plan = plan_mastering(compute_plan_inputs(path), "punchy", 1.0)
    chunks = [render_chunk(path, plan, k) for k in range(count)]
    assert [c.shape[0] for c in chunks] == [n, n, info.num_frames - 2 * n]
    assert all(c.dtype == np.float32 and c.shape[1] == 2 for c in chunks)
    with pytest.raises(IndexError):
        render_chunk(path, plan, count)
    with pytest.raises(IndexError):
        render_chunk(path, plan, -1)
    out = str(tmp_path / "out.wav")
    render_file(path, out, plan, chunk_frames=48_001)
    y, sr = read_audio(out)
    assert sr == info.sample_rate and y.shape == (info.num_frames, info.channels)
    assert _peak_dbfs(y - np.concatenate(chunks)) <= SEAM_LIMIT_DBFS
    flac = str(tmp_path / "out.flac")
    render_file(path, flac, plan)
    out_info = probe(flac)
    assert (out_info.num_frames, out_info.sample_rate, out_info.channels, out_info.subtype) == (
        info.num_frames, info.sample_rate, info.channels, "PCM_24")


def test_mono_file_renders_dual_mono_and_seamless(tmp_path) -> None:
    x = make_music(4.0, 22_050, seed=3, channels=1) * 0.3
    path = str(tmp_path / "mono.flac")
    write_audio(path, x, 22_050)
    plan = plan_mastering(compute_plan_inputs(path), "bright", 1.0)
    one = render_chunk(path, plan, 0, chunk_frames=x.shape[0])
    parts = np.concatenate([render_chunk(path, plan, k, chunk_frames=9_999) for k in range(-(-x.shape[0] // 9_999))])
    assert one.shape == (x.shape[0], 2)  # mono is heard, so mastered, as dual mono
    assert np.array_equal(one[:, 0], one[:, 1]) and np.array_equal(parts[:, 0], parts[:, 1])
    assert _peak_dbfs(parts - one) <= SEAM_LIMIT_DBFS
