"""Benchmark sample-rate conversion: Auralis's resampler against scipy, soxr and ffmpeg, speed and quality.

Builds 60 s of stereo music (``auralis.synth.make_music``) at each input rate, pins this process
(and its children) to one CPU core, and times in the same run, per rate pair (best of 3, CPU seconds
of this process and its children, reported as x real time of the input):

* ``auralis``: :class:`auralis.resample.BlockResampler` over the whole track in one call;
* ``auralis stream``: :class:`auralis.resample.StreamResampler` fed 20 ms blocks (the Snapcast and
  Opus paths), flushed at the end;
* with ``--before REV``: the same two with ``auralis/resample.py`` as it was at git revision ``REV``
  (loaded from ``git show``), so before and after are measured in the same run;
* ``scipy default``: ``scipy.signal.resample_poly`` with its default filter (Kaiser beta 5,
  10 zero crossings a side: what Auralis used before; 6 dB at the output Nyquist);
* ``scipy same filter``: ``resample_poly`` with Auralis's filter (``window=design_filter(...)``);
* ``soxr VHQ`` / ``soxr HQ``: python-soxr's ``soxr.resample`` (libsoxr), when installed;
* ``ffmpeg swr`` / ``ffmpeg soxr``: ``ffmpeg -af aresample`` (default swr; soxr at 28 bits) on a
  float WAV to ``-f null``, when ffmpeg is on PATH, minus the same command without resampling
  (decode and process start are not the resampler's).

Quality in the same run, for 48 -> 44.1 kHz (a 0 dBFS sine in, the middle half of the output measured):
the gain at 20 kHz (droop), and everything a 23.5 kHz tone leaves behind (it must not come out: it
is above the output Nyquist and would alias to 20.6 kHz). Prints two tables and writes
``bench/out/resample.json``. ``--seconds S`` shortens the track (60 s by default).
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import sys  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import argparse  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import types  # noqa: E402
from collections.abc import Callable  # noqa: E402
from functools import partial  # noqa: E402
from math import gcd  # noqa: E402

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402
from scipy import signal  # noqa: E402

from auralis.resample import BlockResampler, StreamResampler, design_filter  # noqa: E402
from auralis.synth import make_music  # noqa: E402
from bench.procstat import best_cpu  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"
DURATION_S = 60.0
REPEATS = 3
PAIRS = [(48_000, 44_100), (44_100, 48_000), (96_000, 44_100), (88_200, 44_100), (96_000, 48_000),
         (192_000, 48_000), (22_050, 44_100), (44_056, 44_100), (44_100, 44_056)]  # the last two: nearly coprime
STREAM_BLOCK_S = 0.02

try:
    import soxr  # type: ignore[import-untyped,import-not-found,unused-ignore]
except ImportError:  # the bench extra installs it; without it the soxr rows are skipped
    soxr = None


def load_before(rev: str) -> types.ModuleType:
    """``auralis/resample.py`` as it was at git revision ``rev``, as a module of its own."""
    root = Path(__file__).resolve().parents[1]
    source = subprocess.run(["git", "-C", str(root), "show", f"{rev}:auralis/resample.py"],
                            check=True, capture_output=True, text=True).stdout
    module = types.ModuleType("resample_before")
    exec(compile(source, f"{rev}:auralis/resample.py", "exec"), module.__dict__)  # noqa: S102 (our own history)
    return module


def auralis_whole(x: np.ndarray, in_rate: int, out_rate: int, cls: type = BlockResampler) -> np.ndarray:
    r = cls(in_rate, out_rate)
    n = r.output_frames(x.shape[0])
    lo, hi = r.input_span(0, n)
    span = np.zeros((hi - lo, x.shape[1]), dtype=np.float32)
    span[-lo : -lo + x.shape[0]] = x
    return r.process(span, 0, n)


def auralis_stream(x: np.ndarray, in_rate: int, out_rate: int, cls: type = StreamResampler) -> np.ndarray:
    r = cls(in_rate, out_rate)
    step = int(STREAM_BLOCK_S * in_rate)
    parts = [r.process(x[i : i + step]) for i in range(0, x.shape[0], step)]
    return np.concatenate([*parts, r.flush(x.shape[1])])


def scipy_default(x: np.ndarray, in_rate: int, out_rate: int) -> np.ndarray:
    g = gcd(in_rate, out_rate)
    return signal.resample_poly(x, out_rate // g, in_rate // g, axis=0)


def scipy_same_filter(x: np.ndarray, in_rate: int, out_rate: int) -> np.ndarray:
    g = gcd(in_rate, out_rate)
    return signal.resample_poly(x, out_rate // g, in_rate // g, axis=0, window=design_filter(in_rate, out_rate))


def soxr_quality(quality: str) -> Callable[[np.ndarray, int, int], np.ndarray]:
    def run(x: np.ndarray, in_rate: int, out_rate: int) -> np.ndarray:
        assert soxr is not None
        return soxr.resample(x, in_rate, out_rate, quality=quality)

    return run


FFMPEG_FILTERS = {"ffmpeg swr": "aresample={rate}", "ffmpeg soxr": "aresample={rate}:resampler=soxr:precision=28"}


def ffmpeg_run(wav: Path, af: str | None, out: str | None = None) -> None:
    cmd = ["ffmpeg", "-v", "error", "-nostdin", "-y", "-i", str(wav)]
    if af:
        cmd += ["-af", af]
    cmd += ["-c:a", "pcm_f32le", out] if out else ["-f", "null", "-"]
    subprocess.run(cmd, check=True)


def ffmpeg_method(name: str, folder: Path) -> Callable[[np.ndarray, int, int], np.ndarray]:
    def run(x: np.ndarray, in_rate: int, out_rate: int) -> np.ndarray:
        src, dst = folder / "in.wav", folder / "out.wav"
        sf.write(src, x, in_rate, subtype="FLOAT")
        ffmpeg_run(src, FFMPEG_FILTERS[name].format(rate=out_rate), str(dst))
        y, _ = sf.read(dst, dtype="float32", always_2d=True)
        return y

    return run


def tone_quality(method: Callable[[np.ndarray, int, int], np.ndarray]) -> tuple[float, float]:
    """48 -> 44.1 kHz: (gain at 20 kHz in dB, what a 23.5 kHz tone leaves in dB re the tone)."""
    in_rate, out_rate = 48_000, 44_100
    t = np.arange(in_rate) / in_rate

    def through(freq: float) -> np.ndarray:
        x = np.repeat(np.sin(2 * np.pi * freq * t).astype(np.float32)[:, None], 2, axis=1)
        y = np.asarray(method(x, in_rate, out_rate), dtype=np.float64)[:, 0]
        return y[y.size // 4 : 3 * y.size // 4]

    y = through(20_000.0)
    k = np.arange(y.size)
    basis = np.stack([np.sin(2 * np.pi * 20_000.0 * k / out_rate), np.cos(2 * np.pi * 20_000.0 * k / out_rate)], 1)
    gain_db = 20 * np.log10(np.hypot(*np.linalg.lstsq(basis, y, rcond=None)[0]))
    alias = through(23_500.0)
    return float(gain_db), float(10 * np.log10(np.mean(alias * alias) / 0.5 + 1e-30))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", metavar="REV", help="also time auralis/resample.py as of this git revision")
    parser.add_argument("--seconds", type=float, default=DURATION_S, help="track length (s)")
    args = parser.parse_args()
    duration_s = args.seconds
    try:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    except (AttributeError, OSError):
        pass
    has_ffmpeg = shutil.which("ffmpeg") is not None
    methods: dict[str, Callable[[np.ndarray, int, int], np.ndarray]] = {
        "auralis": auralis_whole,
        "auralis stream": auralis_stream,
    }
    if args.before:
        old = load_before(args.before)
        print(f"before = auralis/resample.py at {args.before}")
        methods["before"] = partial(auralis_whole, cls=old.BlockResampler)
        methods["stream before"] = partial(auralis_stream, cls=old.StreamResampler)
    methods |= {
        "scipy default": scipy_default,
        "scipy same filter": scipy_same_filter,
    }
    if soxr is not None:
        methods["soxr VHQ"] = soxr_quality("VHQ")
        methods["soxr HQ"] = soxr_quality("HQ")
    else:
        print("soxr not installed (pip install soxr, or the bench extra): its rows are skipped")
    if not has_ffmpeg:
        print("ffmpeg not on PATH: its rows are skipped")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        print(f"speed (x real time of the input, one core, {duration_s:.0f} s stereo, best of {REPEATS}):")
        print(f"{'in -> out (Hz)':<18}" + "".join(f"{m:>19}" for m in [*methods, *(FFMPEG_FILTERS if has_ffmpeg else [])]))
        for in_rate, out_rate in PAIRS:
            x = make_music(duration_s, in_rate, bpm=118, seed=5).astype(np.float32)
            BlockResampler(in_rate, out_rate)  # the filter design is cached per process: not timed
            row: dict[str, object] = {"in_rate": in_rate, "out_rate": out_rate, "x_rt": {}}
            speeds: dict[str, float] = {}
            for name, method in methods.items():
                speeds[name] = duration_s / best_cpu(partial(method, x, in_rate, out_rate), REPEATS)
            if has_ffmpeg:
                wav = folder / f"in_{in_rate}.wav"
                sf.write(wav, x, in_rate, subtype="FLOAT")
                base = best_cpu(partial(ffmpeg_run, wav, None), REPEATS)
                for name, template in FFMPEG_FILTERS.items():
                    af = template.format(rate=out_rate)
                    total = best_cpu(partial(ffmpeg_run, wav, af), REPEATS)
                    speeds[name] = duration_s / max(total - base, 1e-3)
            row["x_rt"] = {k: round(v, 1) for k, v in speeds.items()}
            rows.append(row)
            print(f"{f'{in_rate} -> {out_rate}':<18}" + "".join(f"{v:>18.1f}x" for v in speeds.values()), flush=True)
        quality = {}
        print("\nquality, 48 -> 44.1 kHz: gain at 20 kHz (dB); a 23.5 kHz tone's alias (dB re the tone)")
        all_methods = dict(methods)
        if has_ffmpeg:
            all_methods.update({name: ffmpeg_method(name, folder) for name in FFMPEG_FILTERS})
        for name, method in all_methods.items():
            gain_db, alias_db = tone_quality(method)
            quality[name] = {"gain_20k_db": round(gain_db, 5), "alias_23k5_db": round(alias_db, 1)}
            print(f"{name:<18} {gain_db:>10.5f} dB {alias_db:>10.1f} dB", flush=True)
    OUT.mkdir(exist_ok=True)
    (OUT / "resample.json").write_text(json.dumps(
        {"generated": time.strftime("%Y-%m-%d"), "duration_s": duration_s, "speed": rows, "quality": quality},
        indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
