"""Benchmark `auralis master` against Matchering and ffmpeg `loudnorm` on the same 5-minute track.

Builds under ``bench/out/`` a 5-minute 44.1 kHz stereo FLAC of ``auralis.synth.make_music``
(a dynamic master around -17 LUFS: the ``quiet`` region, so gain, EQ, compression and the
true-peak limiter all work) and a second generated track, a loud master, as Matchering's
reference. Pins itself and its children to one CPU core and times, each end to end in a fresh
process (interpreter start-up, decode, analysis, processing, encode):

* ``auralis master IN OUT.flac`` with no sidecar (the fingerprint's plan inputs computed),
  and again with a valid ``.25d`` sidecar (plan inputs read, not computed);
* Matchering 2.0.6 (``pip install matchering``; the ``bench`` extra): ``mg.process`` to 24-bit WAV;
* ffmpeg ``loudnorm`` one-pass with music targets passed explicitly (I=-14:TP=-1:LRA=11),
  output resampled back to 44.1 kHz (``loudnorm`` works at 192 kHz); skipped with a message if
  ffmpeg is absent.

Wall-clock and CPU seconds (user + system of the child), best of N; on a shared machine the
CPU figures are the steadier ones. Then measures every output (BS.1770 integrated loudness with
``auralis.loudness``, true peak at 8x with ``scipy.signal.resample_poly``). Prints a table with
real-time factors and ratios, writes ``bench/out/master.json``.
"""

from __future__ import annotations

import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one core: no BLAS threads either
os.environ.setdefault("OMP_NUM_THREADS", "1")

import json  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from scipy import signal  # noqa: E402

from auralis.audio import read_audio, write_audio  # noqa: E402
from auralis.loudness import integrated_loudness  # noqa: E402
from auralis.synth import loudness_war, make_music  # noqa: E402

OUT = Path(__file__).resolve().parent / "out"
DURATION_S = 300.0
SAMPLE_RATE = 44_100
REPEATS = 3
PEER_REPEATS = 2


def _child_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed(command: list[str], repeats: int, before=None) -> dict:
    """Best wall and CPU seconds of running ``command`` ``repeats`` times (``before()`` runs untimed first)."""
    walls, cpus = [], []
    for _ in range(repeats):
        if before is not None:
            before()
        cpu0, t0 = _child_cpu_s(), time.perf_counter()
        proc = subprocess.run(command, capture_output=True, text=True, check=False)
        wall, cpu = time.perf_counter() - t0, _child_cpu_s() - cpu0
        if proc.returncode != 0:
            raise RuntimeError(f"{command[0]} failed ({proc.returncode}): {proc.stderr[-2000:]}")
        walls.append(wall)
        cpus.append(cpu)
    return {"wall_s": min(walls), "cpu_s": min(cpus), "runs": repeats}


def build_tracks() -> tuple[Path, Path]:
    OUT.mkdir(parents=True, exist_ok=True)
    target = OUT / "master_input_5min.flac"
    reference = OUT / "master_reference_5min.wav"
    if not target.exists():
        write_audio(str(target), make_music(DURATION_S, SAMPLE_RATE, bpm=118, seed=7), SAMPLE_RATE)
    if not reference.exists():
        loud = loudness_war(make_music(DURATION_S, SAMPLE_RATE, bpm=126, seed=8), drive_db=8.0, ceiling_dbfs=-1.0)
        write_audio(str(reference), loud, SAMPLE_RATE)
    return target, reference


def measure(path: Path) -> dict:
    x, sr = read_audio(str(path))
    up = signal.resample_poly(x.astype(np.float64), 8, 1, axis=0)
    return {
        "integrated_lufs": round(float(integrated_loudness(x, sr)), 2),
        "true_peak_dbtp_8x": round(float(20 * np.log10(max(np.max(np.abs(up)), 1e-20))), 2),
        "frames": int(x.shape[0]),
        "sample_rate": int(sr),
    }


def main() -> int:
    try:
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core for us and our children
    except (AttributeError, OSError):
        pass
    target, reference = build_tracks()
    sidecar = Path(str(target) + ".25d")
    results: dict[str, dict] = {}

    auralis_out = OUT / "master_auralis.wav"  # WAV like the peers (float32; .flac would add the FLAC encode)
    cmd = [sys.executable, "-m", "auralis.cli", "master", str(target), str(auralis_out)]
    subprocess.run(cmd, check=True, capture_output=True)  # warm the page cache and imports

    def drop_sidecar() -> None:
        if sidecar.exists():
            sidecar.unlink()

    results["auralis master (cold: fingerprint computed)"] = timed(cmd, REPEATS, before=drop_sidecar)
    subprocess.run([sys.executable, "-m", "auralis.cli", "analyze", str(target), "--json"], check=True,
                   capture_output=True)  # writes the .25d sidecar
    if sidecar.exists():
        results["auralis master (sidecar valid)"] = timed(cmd, REPEATS)
        sidecar.unlink()
    outputs = {"auralis master (cold: fingerprint computed)": auralis_out}

    mg_out = OUT / "master_matchering.wav"
    mg_code = (
        "import matchering as mg, sys; mg.log(lambda *a: None); "
        "mg.process(target=sys.argv[1], reference=sys.argv[2], results=[mg.pcm24(sys.argv[3])])"
    )
    try:
        import matchering  # noqa: F401

        key = "matchering 2.0.6"
        results[key] = timed([sys.executable, "-c", mg_code, str(target), str(reference), str(mg_out)], PEER_REPEATS)
        outputs[key] = mg_out
    except ImportError:
        print("matchering not installed (pip install matchering, or the 'bench' extra): skipped")

    ffmpeg = shutil.which("ffmpeg")
    ff_out = OUT / "master_loudnorm.wav"
    if ffmpeg:
        key = "ffmpeg loudnorm I=-14:TP=-1:LRA=11"
        results[key] = timed(
            [ffmpeg, "-nostdin", "-y", "-hide_banner", "-loglevel", "error", "-i", str(target),
             "-af", "loudnorm=I=-14:TP=-1:LRA=11", "-ar", str(SAMPLE_RATE), "-c:a", "pcm_f32le", str(ff_out)],
            PEER_REPEATS,
        )
        outputs[key] = ff_out
    else:
        print("ffmpeg not installed (apt-get install ffmpeg): loudnorm skipped")

    base = results["auralis master (cold: fingerprint computed)"]
    print(f"\n{DURATION_S:.0f} s stereo {SAMPLE_RATE} Hz, one core; best of {REPEATS} (peers {PEER_REPEATS})")
    print(f"{'tool':46s} {'wall s':>7s} {'cpu s':>6s} {'x RT(wall)':>10s} {'x RT(cpu)':>9s} "
          f"{'auralis is x faster (cpu)':>26s}")
    for name, r in results.items():
        r["x_realtime_wall"] = round(DURATION_S / r["wall_s"], 1)
        r["x_realtime_cpu"] = round(DURATION_S / r["cpu_s"], 1)
        r["auralis_speedup_cpu"] = round(r["cpu_s"] / base["cpu_s"], 2)
        r["auralis_speedup_wall"] = round(r["wall_s"] / base["wall_s"], 2)
        print(f"{name:46s} {r['wall_s']:7.2f} {r['cpu_s']:6.2f} {r['x_realtime_wall']:10.1f} "
              f"{r['x_realtime_cpu']:9.1f} {r['auralis_speedup_cpu']:26.2f}")
    print("\noutputs (BS.1770 integrated loudness; true peak at 8x):")
    quality = {"input": measure(target)}
    for name, path in outputs.items():
        quality[name] = measure(path)
    for name, q in quality.items():
        print(f"  {name:46s} {q['integrated_lufs']:7.2f} LUFS {q['true_peak_dbtp_8x']:+6.2f} dBTP  "
              f"{q['frames']} frames @ {q['sample_rate']} Hz")
    (OUT / "master.json").write_text(json.dumps(
        {"duration_s": DURATION_S, "sample_rate": SAMPLE_RATE, "results": results, "outputs": quality}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
