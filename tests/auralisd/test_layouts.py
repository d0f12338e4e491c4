"""The daemon's render jobs hold the promise for every channel layout, in both wire formats.

``/stream`` and ``/session`` play what ``jobs.render_chunk_stereo`` renders at the output rate:
with a plan, the master; without one, the A/B original, which the session then gains by the
plan's ``original_gain_db``; both framed by ``auralisd.protocol.audio_frames``. Here the jobs run
as the worker pool runs them (same functions, same arguments, plan inputs from the segment jobs):
the chunks, concatenated and encoded as f32 and as dithered s16, must reach the target loudness
and stay at or below -1 dBTP at 8x oversampling, for mono, stereo, 4.0, 5.1 and 7.1 files of the
same music, at the files' rate and resampled to 48 kHz.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from auralis.audio import probe, write_audio
from auralis.loudness import measure_loudness
from auralis.plan import ORIGINAL_PEAK_MARGIN_DB, plan_mastering
from auralis.presets import get_preset
from auralis.render import chunk_frames
from auralis.resample import ChunkGrid
from auralis.synth import in_layout, loudness_war, make_music
from auralisd import jobs
from auralisd.playback.mixer import db_gain, scale
from auralisd.protocol.audio_frames import decode_audio_frame, encode_audio_frame
from tests.helpers import true_peak_8x

SR = 44_100
CEILING_DBTP = -1.0
LAYOUTS = {"mono": 1, "stereo": 2, "4.0": 4, "5.1": 6, "7.1": 8}
TARGET_LUFS = get_preset("adaptive").target_lufs



def on_the_wire(x: np.ndarray, fmt: str, rate: int = SR) -> np.ndarray:
    """``x`` as a client decodes it from 50 ms binary frames in ``fmt``."""
    rng = np.random.default_rng(0)
    step = rate // 20
    frames = [
        decode_audio_frame(encode_audio_frame(0, i, i * step, x[i * step : (i + 1) * step], fmt, rng=rng), 2, fmt)
        for i in range(-(-x.shape[0] // step))
    ]
    return np.concatenate([f.samples for f in frames])


def all_chunks(path: str, plan, out_rate: int) -> np.ndarray:
    """Every output chunk of ``path`` as the player gets them (``plan`` None: the original)."""
    info = probe(path)
    grid = ChunkGrid(info.sample_rate, out_rate, info.num_frames, chunk_frames(info.sample_rate))
    chunks = [jobs.render_chunk_stereo(path, plan, k, None, out_rate) for k in range(grid.count)]
    assert all(c.dtype == np.float32 and c.shape[1] == 2 for c in chunks)
    out = np.concatenate(chunks)
    assert out.shape == (grid.out_frames, 2)
    return out


def plan_like_the_daemon(path: str):
    results = [jobs.analyze_segment(path, i) for i in range(jobs.segment_count(path))]
    return plan_mastering(jobs.merge_results(path, results), "adaptive", 1.0)


@pytest.fixture(scope="module")
def layout_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    programme = make_music(16.0, SR, seed=7, peak_dbfs=-0.5)
    folder = tmp_path_factory.mktemp("layouts")
    files = {}
    for name, channels in LAYOUTS.items():
        path = str(folder / f"{name}.flac")
        write_audio(path, in_layout(programme, channels, SR), SR)
        files[name] = path
    return files


def test_mastered_chunks_hold_the_promise_for_every_layout_in_f32_and_s16(layout_files: dict[str, str]) -> None:
    loudness: dict[tuple[str, int, str], float] = {}
    for name, path in layout_files.items():
        plan = plan_like_the_daemon(path)
        for rate in (SR, 48_000):
            mastered = all_chunks(path, plan, rate)
            for fmt in ("f32", "s16"):
                heard = on_the_wire(mastered, fmt, rate)
                loudness[name, rate, fmt] = measure_loudness(heard, rate).integrated_lufs
                assert true_peak_8x(heard) <= CEILING_DBTP, (name, rate, fmt)
    values = list(loudness.values())
    assert all(math.isfinite(v) for v in values)
    assert max(values) - min(values) <= 0.5, loudness
    assert all(abs(v - TARGET_LUFS) <= 0.5 for v in values), loudness


def test_the_ab_original_is_level_matched_but_never_above_the_ceiling(
    layout_files: dict[str, str], tmp_path: Path
) -> None:
    crushed = str(tmp_path / "crushed-5.1.flac")  # turned down: the ceiling does not bind, the match is exact
    write_audio(crushed, in_layout(loudness_war(make_music(12.0, SR, seed=2)), 6, SR), SR)
    matched = 0
    for name, path in [*layout_files.items(), ("crushed 5.1", crushed)]:
        plan = plan_like_the_daemon(path)
        original = scale(all_chunks(path, None, SR), db_gain(plan.original_gain_db))  # as the session gains it
        for fmt in ("f32", "s16"):
            assert true_peak_8x(on_the_wire(original, fmt)) <= CEILING_DBTP, (name, fmt)
        # As loud as the master where the ceiling allows it; never louder.
        level = measure_loudness(original, SR).integrated_lufs
        assert level <= plan.target_lufs + 0.05
        headroom = plan.true_peak_ceiling_dbtp - ORIGINAL_PEAK_MARGIN_DB - plan.input_true_peak_dbtp
        if plan.target_lufs - plan.input_lufs <= headroom:
            assert level == pytest.approx(plan.target_lufs, abs=0.05), name
            matched += 1
        else:
            assert plan.original_gain_db == pytest.approx(headroom, abs=1e-3), name
    assert matched >= 1


def test_original_gain_is_capped_by_the_input_true_peak(tmp_path: Path) -> None:
    # A quiet track with high peaks: raising it to the target would put it far over -1 dBTP.
    path = str(tmp_path / "peaky.flac")
    x = make_music(8.0, SR, seed=3, peak_dbfs=-0.2) * np.float32(0.5)
    write_audio(path, x, SR)
    plan = plan_like_the_daemon(path)
    assert plan.target_lufs - plan.input_lufs > plan.true_peak_ceiling_dbtp - plan.input_true_peak_dbtp
    assert plan.original_gain_db == pytest.approx(-1.3 - plan.input_true_peak_dbtp, abs=1e-3)
    original = scale(all_chunks(path, None, SR), db_gain(plan.original_gain_db))
    assert true_peak_8x(original) <= CEILING_DBTP
