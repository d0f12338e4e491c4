"""Chunks rendered at the output rate in the worker job: seamless, equal to one pass of resample_poly.

The event loop only slices these chunks, so any seam at a chunk border would be heard. The control
resamples each chunk on its own (no neighbouring frames): it must show a seam the real path does not.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import signal

from auralis.audio import write_audio
from auralis.plan import plan_mastering
from auralis.render import chunk_count, chunk_frames, render_chunk
from auralis.resample import ChunkGrid, lowpass_fir
from auralis.synth import make_music
from auralisd import jobs

IN_RATE = 48_000
OUT_RATE = 44_100  # 147 / 160


def test_the_numpy_filter_design_is_scipy_firwin() -> None:
    for taps, cutoff in ((3201, 1 / 160), (961, 1 / 48), (21, 0.5)):
        reference = signal.firwin(taps, cutoff, window=("kaiser", 5.0))
        assert np.max(np.abs(lowpass_fir(taps, cutoff) - reference)) < 1e-15


@pytest.fixture(scope="module")
def track(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("music") / "long.flac"
    write_audio(str(path), make_music(11.0, IN_RATE, seed=4), IN_RATE)  # 3 chunks of 5 s
    return path


def test_output_rate_chunks_tile_the_track_and_equal_one_pass_resample_poly(track: Path) -> None:
    plan = plan_mastering(None, "bright", 1.0)
    frames = 11 * IN_RATE
    n = chunk_frames(IN_RATE)
    count = chunk_count(frames, IN_RATE)
    mastered = np.concatenate([render_chunk(str(track), plan, k) for k in range(count)])
    reference = signal.resample_poly(mastered.astype(np.float64), 147, 160, axis=0)
    grid = ChunkGrid(IN_RATE, OUT_RATE, frames, n)
    chunks = [jobs.render_chunk_stereo(str(track), plan, k, None, OUT_RATE) for k in range(count)]
    assert [c.shape[0] for c in chunks] == [grid.span(k)[1] - grid.span(k)[0] for k in range(count)]
    got = np.concatenate(chunks)
    assert got.shape == reference.shape and got.dtype == np.float32
    assert np.max(np.abs(got - reference)) < 1e-5
    # fast-start pieces sit on the same output grid: a piece equals the same frames of its chunk
    piece = jobs.render_chunk_stereo(str(track), plan, 6, n // 5, OUT_RATE)
    pieces = ChunkGrid(IN_RATE, OUT_RATE, frames, n // 5)
    a, b = pieces.span(6)
    assert np.max(np.abs(piece - got[a:b])) < 1e-5
    # the control: each chunk resampled on its own misses its neighbours' frames and steps at the border
    alone = np.concatenate([signal.resample_poly(render_chunk(str(track), plan, k), 147, 160, axis=0)
                            for k in range(count)])
    border = grid.start(1)
    window = slice(border - 8, border + 8)
    assert np.max(np.abs(alone[window] - reference[window])) > 100 * np.max(np.abs(got[window] - reference[window]))
    assert np.max(np.abs(alone[window] - reference[window])) > 1e-3


def test_the_original_side_is_the_file_resampled_on_the_same_grid(track: Path) -> None:
    import soundfile as sf

    source, _ = sf.read(str(track), dtype="float32", always_2d=True)
    reference = signal.resample_poly(source.astype(np.float64), 147, 160, axis=0)
    got = np.concatenate([jobs.render_chunk_stereo(str(track), None, k, None, OUT_RATE) for k in range(3)])
    assert got.shape == reference.shape and np.max(np.abs(got - reference)) < 1e-5
    same_rate = jobs.render_chunk_stereo(str(track), None, 1, None, None)  # no resampling: the file's frames
    assert np.array_equal(same_rate, source[chunk_frames(IN_RATE) : 2 * chunk_frames(IN_RATE)])
