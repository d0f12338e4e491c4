"""Benchmark decoding per format: Auralis's reader against ``ffmpeg -f null -`` on the same file.

Builds a 3-minute 44.1 kHz stereo track (``auralis.synth.make_music``) under ``bench/out/``,
encodes it with ffmpeg into every format the decoder layer reads (docs/formats.md), pins this
process (and its children) to one CPU core, and times in the same run, per file:

* ``probe`` (header, exact length, tail check), milliseconds;
* ``read_audio`` (open + decode the whole track to float32), as x real time;
* ``ffmpeg -v error -i FILE -f null -`` (a fresh process: decode, no output), as x real time;
* random access: 20 reads of 15 s at random offsets through one ``AudioReader`` (each a seek
  with the codec's pre-roll), milliseconds per read.

``bench_decode.py NAME...`` runs only those rows (names as in ``FORMATS``). Each timing is the best of 3 runs in CPU seconds (user + system of this process and its
children; the steadier figure on a shared machine). Prints a table and writes
``bench/out/decode.json``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import json  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from auralis import avdecode  # noqa: E402
from auralis.audio import AudioReader, probe, read_audio, write_audio  # noqa: E402
from auralis.synth import make_music  # noqa: E402
from bench.procstat import best_cpu  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"
DURATION_S = 180.0
SAMPLE_RATE = 44_100
REPEATS = 3
RANDOM_READS = 20
READ_S = 15.0

# file name -> ffmpeg codec arguments (the source WAV is encoded by ffmpeg; FLAC by libsndfile too)
FORMATS = {
    "wav": None,
    "flac": None,
    "vbr.mp3": ["-c:a", "libmp3lame", "-q:a", "2"],
    "cbr.mp3": ["-c:a", "libmp3lame", "-b:a", "320k"],
    "noxing.mp3": ["-c:a", "libmp3lame", "-b:a", "192k", "-write_xing", "0"],
    "aac.m4a": ["-c:a", "aac", "-b:a", "256k"],
    "alac.m4a": ["-c:a", "alac"],
    "ogg": ["-c:a", "libvorbis", "-q:a", "6"],
    "opus": ["-c:a", "libopus", "-b:a", "160k"],
    "wv": ["-c:a", "wavpack"],
    "wma": ["-c:a", "wmav2", "-b:a", "192k"],
}


def build(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / "decode_source.wav"
    if not source.exists():
        write_audio(source, make_music(DURATION_S, SAMPLE_RATE, bpm=118, seed=11), SAMPLE_RATE)
    paths = {}
    for name, codec in FORMATS.items():
        path = folder / f"decode_3min.{name}"
        if not path.exists():
            if name == "wav":
                subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(source), "-c:a", "pcm_s16le", str(path)], check=True)
            elif name == "flac":
                subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(source), "-c:a", "flac", str(path)], check=True)
            else:
                subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(source), *codec, str(path)], check=True)
        paths[name] = path
    return paths


def random_reads(path: Path, num_frames: int, rate: int) -> None:
    rng = np.random.default_rng(1)
    span = int(READ_S * rate)
    with AudioReader(path) as reader:
        for _ in range(RANDOM_READS):
            start = int(rng.integers(0, max(1, num_frames - span)))
            reader.read(start, start + span)


def main() -> int:
    if shutil.which("ffmpeg") is None:
        print("ffmpeg is required", file=sys.stderr)
        return 1
    try:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    except (AttributeError, OSError):
        pass
    paths = build(OUT)
    only = set(sys.argv[1:])  # e.g. `bench_decode.py wma noxing.mp3`; all formats by default
    rows = []
    for name, path in paths.items():
        if only and name not in only:
            continue
        info = probe(path)
        duration = info.num_frames / info.sample_rate
        # Cold: the memo of scanned lengths (MP3 without Xing, WMA) is cleared before each run.
        probe_s = best_cpu(lambda p=path: (avdecode._SCANNED_LENGTHS.clear(), probe(p)), REPEATS)
        decode_s = best_cpu(lambda p=path: (avdecode._SCANNED_LENGTHS.clear(), read_audio(p)), REPEATS)
        ffmpeg_s = best_cpu(lambda p=path: subprocess.run(
            ["ffmpeg", "-v", "error", "-nostdin", "-i", str(p), "-f", "null", "-"], check=True), REPEATS)
        random_s = best_cpu(lambda p=path, i=info: random_reads(p, i.num_frames, i.sample_rate), 2)
        rows.append({
            "file": name, "format": info.format, "codec": info.subtype, "duration_s": round(duration, 3),
            "probe_ms": round(probe_s * 1000, 2), "auralis_x_rt": round(duration / decode_s, 1),
            "ffmpeg_x_rt": round(duration / ffmpeg_s, 1), "vs_ffmpeg": round(ffmpeg_s / decode_s, 2),
            "random_read_ms": round(random_s / RANDOM_READS * 1000, 2),
        })
        print(f"{name:<12} {info.format:<8} {info.subtype:<15} probe {probe_s * 1000:7.2f} ms   "
              f"auralis {duration / decode_s:7.1f}x RT   ffmpeg {duration / ffmpeg_s:7.1f}x RT   "
              f"ratio {ffmpeg_s / decode_s:5.2f}   random 15 s read {random_s / RANDOM_READS * 1000:7.1f} ms",
              flush=True)
    OUT.mkdir(exist_ok=True)
    (OUT / "decode.json").write_text(json.dumps({"generated": time.strftime("%Y-%m-%d"), "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
