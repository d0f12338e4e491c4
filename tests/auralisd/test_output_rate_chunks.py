"""Chunks rendered at the output rate in the worker job: seamless, equal to one pass of resample_poly (auralis's filter).

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
from auralis.resample import STOPBAND_DESIGN_DB, ChunkGrid, design_filter, kaiser_beta, lowpass_fir
from auralis.synth import make_music
from auralisd import jobs
from tests.helpers import resample_reference

IN_RATE = 48_000
OUT_RATE = 44_100  # 147 / 160


def test_the_numpy_filter_design_is_scipy_firwin_and_kaiserord() -> None:
    for taps, cutoff, beta in ((3201, 1 / 160, 5.0), (961, 1 / 48, 11.2), (21, 0.5, 0.0)):
        reference = signal.firwin(taps, cutoff, window=("kaiser", beta))
        assert np.max(np.abs(lowpass_fir(taps, cutoff, beta) - reference)) < 1e-15
    for attenuation_db in (30.0, 60.0, STOPBAND_DESIGN_DB):
        assert kaiser_beta(attenuation_db) == pytest.approx(signal.kaiser_beta(attenuation_db), abs=1e-12)
    # the length: kaiserord's for the design attenuation and 48 -> 44.1 kHz's transition (20 to 22.05 kHz)
    rate = 48_000 * 147  # the intermediate rate
    taps, beta = signal.kaiserord(STOPBAND_DESIGN_DB, 2 * 2_050 / rate)
    h = design_filter(48_000, 44_100)
    assert abs(h.size - taps) <= 1 and beta == pytest.approx(kaiser_beta(STOPBAND_DESIGN_DB))


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
    reference = resample_reference(mastered, IN_RATE, OUT_RATE)
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
    alone = np.concatenate([resample_reference(render_chunk(str(track), plan, k), IN_RATE, OUT_RATE)
                            for k in range(count)])
    border = grid.start(1)
    window = slice(border - 8, border + 8)
    assert np.max(np.abs(alone[window] - reference[window])) > 100 * np.max(np.abs(got[window] - reference[window]))
    assert np.max(np.abs(alone[window] - reference[window])) > 1e-3


def test_the_original_side_is_the_file_resampled_on_the_same_grid(track: Path) -> None:
    import soundfile as sf

    source, _ = sf.read(str(track), dtype="float32", always_2d=True)
    reference = resample_reference(source, IN_RATE, OUT_RATE)
    got = np.concatenate([jobs.render_chunk_stereo(str(track), None, k, None, OUT_RATE) for k in range(3)])
    assert got.shape == reference.shape and np.max(np.abs(got - reference)) < 1e-5
    same_rate = jobs.render_chunk_stereo(str(track), None, 1, None, None)  # no resampling: the file's frames
    assert np.array_equal(same_rate, source[chunk_frames(IN_RATE) : 2 * chunk_frames(IN_RATE)])
