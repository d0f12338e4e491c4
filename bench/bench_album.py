"""Benchmark the album analysis: a 45-minute album analysed cold, as one file, against its peers.

Builds a 45-minute album under ``bench/out/album/`` (nine 5-minute 44.1 kHz stereo FLAC tracks of
``auralis.synth.make_music`` at different levels) and times, in the same run:

* ``compute_album_plan_inputs``: the album read as one file (exact album loudness, LRA, true
  peak, crest, bands), one core, in-process;
* the same work split into 30 s album segments over two worker processes
  (``analyze_album_segment`` + ``merge_album_segments``), as the daemon runs it (wall clock);
* track mode's analysis: ``compute_plan_inputs`` of each track, one core (what the album costs
  compared with analysing its tracks alone);
* the peer: ffmpeg's ``ebur128`` filter (integrated loudness, LRA, true peak) over the album's
  tracks joined with the concat demuxer, one thread: what an album-gain tool reads.

Each row is the best of ``REPEATS`` runs: wall seconds, and CPU seconds of this process and its
children (the steadier figure on a shared machine). Prints a table with real-time factors and
ratios against ffmpeg; writes ``bench/out/album.json``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import json  # noqa: E402
import multiprocessing  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from auralis.album import (  # noqa: E402
    AlbumLayout,
    album_segment_count,
    analyze_album_segment,
    compute_album_plan_inputs,
    merge_album_segments,
)
from auralis.audio import write_audio  # noqa: E402
from auralis.fingerprint import compute_plan_inputs  # noqa: E402
from auralis.loudness import integrated_loudness  # noqa: E402
from auralis.synth import make_music  # noqa: E402
from bench.procstat import own_and_children_cpu_s  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"
TRACKS = 9
TRACK_S = 300.0
SAMPLE_RATE = 44_100
LEVELS_LUFS = (-24.0, -16.0, -20.0, -12.0, -18.0, -26.0, -14.0, -22.0, -17.0)
REPEATS = 2


def best_of(fn, repeats: int = REPEATS) -> tuple[float, float, object]:
    best_wall, best_cpu, value = float("inf"), float("inf"), None
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), own_and_children_cpu_s()
        value = fn()
        best_wall = min(best_wall, time.perf_counter() - w0)
        best_cpu = min(best_cpu, own_and_children_cpu_s() - c0)
    return best_wall, best_cpu, value


def build_album() -> list[str]:
    folder = OUT / "album"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(TRACKS):
        path = folder / f"{i + 1:02d}.flac"
        if not path.exists():
            music = make_music(TRACK_S, SAMPLE_RATE, bpm=96 + 6 * i, seed=100 + i)
            gain_db = LEVELS_LUFS[i] - integrated_loudness(music, SAMPLE_RATE)
            write_audio(str(path), np.clip(music * 10 ** (gain_db / 20), -1.0, 1.0).astype(np.float32), SAMPLE_RATE)
        paths.append(str(path))
    return paths


def parallel(layout: AlbumLayout, workers: int = 2):
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        pool.submit(int, 0).result()  # the workers are up (the daemon keeps them warm)
        w0 = time.perf_counter()
        count = album_segment_count(layout)
        results = list(pool.map(analyze_album_segment, [layout] * count, range(count)))
        value = merge_album_segments(layout, results)
        return time.perf_counter() - w0, value


def ffmpeg_ebur128(paths: list[str]) -> float:
    listing = OUT / "album" / "concat.txt"
    listing.write_text("".join(f"file '{p}'\n" for p in paths))
    proc = subprocess.run(
        ["ffmpeg", "-hide_banner", "-nostats", "-threads", "1", "-f", "concat", "-safe", "0", "-i", str(listing),
         "-af", "ebur128=peak=true", "-f", "null", "-"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    for line in reversed(proc.stderr.splitlines()):
        if line.strip().startswith("I:"):
            return float(line.split()[1])
    raise RuntimeError("ffmpeg printed no integrated loudness")


def main() -> None:
    try:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    except (AttributeError, OSError):
        pass
    paths = build_album()
    layout = AlbumLayout.of_paths(paths)
    duration_s = layout.total_frames / SAMPLE_RATE
    rows = {}
    wall, cpu, album = best_of(lambda: compute_album_plan_inputs(layout))
    rows["album as one file, one core"] = (wall, cpu)
    wall, cpu, _ = best_of(lambda: [compute_plan_inputs(p) for p in paths])
    rows["each track alone (track mode), one core"] = (wall, cpu)
    wall, cpu, ff_lufs = best_of(lambda: ffmpeg_ebur128(paths))
    rows["ffmpeg ebur128 over the joined album, one thread"] = (wall, cpu)
    try:
        os.sched_setaffinity(0, set(range(os.cpu_count() or 1)))
    except (AttributeError, OSError):
        pass
    wall_par, value = min((parallel(layout) for _ in range(REPEATS)), key=lambda r: r[0])
    rows["album as one file, 2 worker processes (wall)"] = (wall_par, float("nan"))
    lufs = album.measurements["integrated_lufs"]  # type: ignore[attr-defined]
    ref_wall = rows["ffmpeg ebur128 over the joined album, one thread"][0]
    print(f"album: {TRACKS} tracks, {duration_s / 60:.1f} min, {lufs:.2f} LUFS (ffmpeg {ff_lufs:.1f}), "
          f"LRA {album.measurements['loudness_range_lu']:.1f} LU")  # type: ignore[attr-defined]
    print(f"{'measurement':<52} {'wall s':>8} {'CPU s':>8} {'x RT':>7} {'vs ffmpeg':>9}")
    for name, (wall, cpu) in rows.items():
        print(f"{name:<52} {wall:8.2f} {cpu:8.2f} {duration_s / wall:7.0f} {ref_wall / wall:8.2f}x")
    assert abs(value.measurements["integrated_lufs"] - lufs) < 1e-9  # type: ignore[attr-defined]
    OUT.mkdir(exist_ok=True)
    (OUT / "album.json").write_text(json.dumps({
        "tracks": TRACKS, "duration_s": duration_s, "album_lufs": lufs, "ffmpeg_lufs": ff_lufs,
        "rows": {name: {"wall_s": w, "cpu_s": None if c != c else c} for name, (w, c) in rows.items()},
    }, indent=1))  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
