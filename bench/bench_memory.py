"""Resident memory and start-up of the real daemon, beside MPD on the same library (issue 15).

Starts the installed ``auralisd`` (real worker processes, real SQLite file, real sockets) on
generated libraries, drives it over the control socket, and reads each process's memory from
``/proc/PID/smaps_rollup`` (RSS and PSS, summed over the daemon's process tree: the daemon
and its workers). In the same run it starts Debian's ``mpd`` (null output, free loopback
port, temporary folders, a generated config) on the same library and reads its memory the
same way. Prints every budget beside its measurement:

* start-up: process start to the first ``pong`` on the control socket, median of ``--starts``
  (budget 0.3 s; workers may come up after), the daemon's CPU seconds until then, and the time
  to the first answered ``status`` (the daemon serves),
* playing a 5-minute FLAC with the defaults (here two workers, the cache's machine-sized
  default): daemon + workers <= 250 MiB (PSS and RSS, peak over ``--play-s`` seconds of
  playing), once cold (nothing known: the track is analysed while it plays) and once with its
  ``.25d`` sidecar present (a fresh daemon, nothing cached),
* the same for the low-memory profile ``--workers 1 --cache-mib 32``: <= 120 MiB,
* first audio (``play`` to the first ``elapsed_s`` > 0 as a client sees it) for both profiles,
  cold and known, median of ``--audio-runs`` daemon lives,
* library size: the daemon's own memory after scanning 100, 10,000 and (``--big``) 100,000
  tracks from an empty database (tiny generated files: hard links of one FLAC, in album
  folders of 100), and what it adds per track beyond the 100-track baseline (which already
  holds every library the scanner loads), beside MPD's after ``update`` of the same folder.

Run: ``.venv/bin/python bench/bench_memory.py [--play-s 20] [--starts 5] [--big]``.
Writes ``bench/out/memory.json``. CPU-frugal by design (one scan per library size; the
library daemons run with one worker, stopped two seconds after their scan, so background
fingerprinting stays short and on one core).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.service.daemon_process import free_port, rpc  # noqa: E402

OUT = ROOT / "bench" / "out"
MIB = 1024 * 1024
TRACK_S = 300.0
SAMPLE_RATE = 44_100
BUDGET_DEFAULT_MIB = 250.0
BUDGET_LOW_MIB = 120.0
BUDGET_START_S = 0.3
LOW_MEMORY_FLAGS = ("--workers", "1", "--cache-mib", "32")


# ---------------------------------------------------------------------------------- memory
@dataclass(frozen=True)
class ProcMemory:
    pid: int
    name: str
    rss_bytes: int
    pss_bytes: int


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as handle:
                out += [int(p) for p in handle.read().split()]
    except OSError:
        pass
    return out


def process_tree(pid: int) -> list[int]:
    """``pid`` and every descendant (the daemon, its worker processes and their helpers)."""
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        todo += _children(p)
    return pids


def proc_memory(pid: int) -> ProcMemory | None:
    """RSS and PSS of one process from ``/proc/PID/smaps_rollup`` (None once it is gone)."""
    try:
        fields = {}
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                parts = line.split()
                if len(parts) >= 3 and parts[-1] == "kB":
                    fields[parts[0].rstrip(":")] = int(parts[1]) * 1024
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            argv = handle.read().split(b"\0")
    except OSError:
        return None
    name = os.path.basename(argv[0].decode(errors="replace")) if argv and argv[0] else "?"
    if any(b"multiprocessing" in a or b"trio_parallel" in a for a in argv):
        name = "worker"
    elif any(a.endswith(b"auralisd") for a in argv[:2]):
        name = "auralisd"
    return ProcMemory(pid, name, fields.get("Rss", 0), fields.get("Pss", 0))


def tree_memory(pid: int) -> list[ProcMemory]:
    return [m for m in (proc_memory(p) for p in process_tree(pid)) if m is not None]


@dataclass
class Peak:
    """Largest sums seen over a sampling window, and the processes at the largest PSS sample."""

    rss_bytes: int = 0
    pss_bytes: int = 0
    processes: tuple[ProcMemory, ...] = ()

    def sample(self, pid: int) -> None:
        procs = tree_memory(pid)
        rss = sum(p.rss_bytes for p in procs)
        pss = sum(p.pss_bytes for p in procs)
        self.rss_bytes = max(self.rss_bytes, rss)
        if pss >= self.pss_bytes:
            self.pss_bytes = pss
            self.processes = tuple(procs)

    def to_json(self) -> dict:
        return {
            "rss_mib": self.rss_bytes / MIB,
            "pss_mib": self.pss_bytes / MIB,
            "processes": [
                {"pid": p.pid, "name": p.name, "rss_mib": p.rss_bytes / MIB, "pss_mib": p.pss_bytes / MIB}
                for p in self.processes
            ],
        }

    def describe(self) -> str:
        parts = ", ".join(f"{p.name} {p.pss_bytes / MIB:.0f}" for p in self.processes)
        return f"PSS {self.pss_bytes / MIB:.0f} MiB, RSS {self.rss_bytes / MIB:.0f} MiB ({parts})"


# ---------------------------------------------------------------------------------- the daemon
class Daemon:
    """One ``auralisd`` process in its own temporary folders."""

    def __init__(self, work: Path, music: Path, flags: Sequence[str] = (), *, fresh_state: bool = True) -> None:
        self.work = work
        work.mkdir(parents=True, exist_ok=True)
        if fresh_state:
            shutil.rmtree(work / "state", ignore_errors=True)
        self.socket_path = str(work / "run" / "control.sock")
        command = [
            str(Path(sys.executable).parent / "auralisd"),
            "--music-dir", str(music), "--state-dir", str(work / "state"), "--runtime-dir", str(work / "run"),
            "--cache-dir", str(work / "cache"), "--http-port", str(free_port()), "--log-level", "warning", *flags,
        ]  # fmt: skip
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_SOCKET", "LISTEN_"))}
        env["XDG_CONFIG_HOME"] = str(work / "config")
        self.log = open(work / "auralisd.log", "ab")  # noqa: SIM115 (closed in stop)
        self.started = time.perf_counter()
        self.process = subprocess.Popen(command, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self.ping_s = self._wait_ping()

    def _wait_ping(self) -> float:
        deadline = time.monotonic() + 60.0
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"auralisd exited with {self.process.returncode}; see {self.work}/auralisd.log")
            try:
                if rpc(self.socket_path, "ping", timeout_s=10.0) == "pong":
                    return time.perf_counter() - self.started
            except OSError:
                pass
            time.sleep(0.002)
        raise RuntimeError("auralisd never answered ping")

    def call(self, method: str, params: dict | None = None):
        return rpc(self.socket_path, method, params)

    def wait_scanned(self, timeout_s: float = 3600.0) -> dict:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            status = self.call("status")
            if not status["scan"]["running"] and status["scan"]["scans"] >= 1:
                return status
            time.sleep(0.2)
        raise RuntimeError("the scan did not finish")

    def wait_workers(self, timeout_s: float = 120.0) -> None:
        """Until every worker has started and warmed up (the daemon starts them once it serves)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            pool = self.call("status")["pool"]
            if pool["jobs_done"] >= pool["workers"] and pool["running"] == 0:
                return
            time.sleep(0.05)
        raise RuntimeError("the workers did not come up")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def play_and_measure(daemon: Daemon, track: Path, play_s: float) -> tuple[Peak, float]:
    """Queue ``track``, play it, and sample the tree's memory for ``play_s`` s of playing.

    Returns the peak and the first-audio time as a client sees it (``play`` to ``elapsed_s`` > 0).
    """
    daemon.call("queue.clear")
    daemon.call("queue.add", {"paths": [str(track)]})
    started = time.perf_counter()
    daemon.call("play", {"pos": 0})
    first_audio_s = float("nan")
    while time.perf_counter() - started < 60.0:
        status = daemon.call("status")
        if status["state"] == "play" and status["elapsed_s"] > 0:
            first_audio_s = time.perf_counter() - started
            break
        time.sleep(0.005)
    peak = Peak()
    end = time.monotonic() + play_s
    while time.monotonic() < end:
        peak.sample(daemon.process.pid)
        time.sleep(0.5)
    status = daemon.call("status")
    if status["state"] != "play":
        raise RuntimeError(f"not playing after {play_s} s: {status['state']}")
    return peak, first_audio_s


# ---------------------------------------------------------------------------------- MPD
class Mpd:
    """Debian's ``mpd`` on a generated config: null output, free loopback port, temporary folders."""

    def __init__(self, work: Path, music: Path) -> None:
        self.binary = shutil.which("mpd") or "/usr/bin/mpd"
        self.port = free_port()
        work.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(work / "db", ignore_errors=True)
        (work / "db").mkdir()
        config = work / "mpd.conf"
        config.write_text(
            f'music_directory "{music}"\n'
            f'db_file "{work}/db/database"\n'
            f'state_file "{work}/db/state"\n'
            f'log_file "{work}/mpd.log"\n'
            f'bind_to_address "127.0.0.1"\n'
            f"port \"{self.port}\"\n"
            'auto_update "no"\n'
            'audio_output {\n  type "null"\n  name "null"\n  mixer_type "none"\n}\n'
        )
        self.process = subprocess.Popen([self.binary, "--no-daemon", "--stderr", str(config)],
                                        stdout=subprocess.DEVNULL, stderr=open(work / "stderr.log", "wb"))  # noqa: SIM115
        deadline = time.monotonic() + 30.0
        while True:
            try:
                self.command("ping")
                break
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"mpd did not start; see {work}") from None
                time.sleep(0.05)

    def command(self, *lines: str, timeout_s: float = 3600.0) -> str:
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout_s) as sock:
            reader = sock.makefile("rb")
            reader.readline()  # greeting
            sock.sendall(("command_list_begin\n" + "\n".join(lines) + "\ncommand_list_end\n").encode())
            out = []
            while True:
                line = reader.readline().decode(errors="replace")
                if not line or line.startswith("OK\n") or line == "OK\n" or line.startswith("ACK"):
                    if line.startswith("ACK"):
                        raise RuntimeError(line.strip())
                    return "".join(out)
                out.append(line)

    def update(self) -> None:
        self.command("update")
        while "updating_db" in self.command("status"):
            time.sleep(0.2)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def mpd_play_and_measure(mpd: Mpd, relative: str, play_s: float) -> Peak:
    mpd.command("clear", f'add "{relative}"', "play 0")
    peak = Peak()
    end = time.monotonic() + play_s
    while time.monotonic() < end:
        peak.sample(mpd.process.pid)
        time.sleep(0.5)
    if "state: play" not in mpd.command("status"):
        raise RuntimeError("mpd is not playing")
    return peak


# ---------------------------------------------------------------------------------- libraries
def make_play_library(folder: Path) -> Path:
    from auralis.audio import write_audio
    from auralis.synth import make_music

    folder.mkdir(parents=True, exist_ok=True)
    track = folder / "five-minutes.flac"
    if not track.exists():
        write_audio(str(track), make_music(TRACK_S, SAMPLE_RATE, seed=11), SAMPLE_RATE)
    return track


def forget_sidecars(folder: Path) -> None:
    for sidecar in folder.rglob("*.25d"):
        sidecar.unlink()


def make_big_library(folder: Path, tracks: int) -> None:
    """``tracks`` tiny FLAC files (hard links of one 0.5 s file) in album folders of 100."""
    import numpy as np

    from auralis.audio import write_audio

    marker = folder / f".complete-{tracks}"
    if marker.exists():
        return
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    t = np.arange(SAMPLE_RATE // 2) / SAMPLE_RATE
    tone = (0.1 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)
    seed = folder / ".seed.flac"
    for i in range(tracks):
        album = folder / f"Artist {i // 1000:03d}" / f"Album {i // 100:04d}"
        if i % 100 == 0:
            album.mkdir(parents=True)
        if i % 10_000 == 0:  # a new seed now and then: a file has at most 65,000 links (ext4)
            seed = folder / f".seed-{i // 10_000}.flac"
            write_audio(str(seed), np.stack([tone, tone], axis=1), SAMPLE_RATE)
        os.link(seed, album / f"{i % 100:02d} Track {i}.flac")
    marker.touch()


def library_memory(work: Path, tracks: int, settle_s: float) -> dict:
    """Scan a ``tracks``-track library from an empty database; the daemon's own memory after it."""
    music = work / f"library-{tracks}"
    if tracks:
        make_big_library(music, tracks)
    else:
        music.mkdir(parents=True, exist_ok=True)
    state = work / f"state-{tracks}"
    daemon = Daemon(state, music, ("--workers", "1"))
    try:
        started = time.monotonic()
        status = daemon.wait_scanned()
        scan_s = time.monotonic() - started
        time.sleep(settle_s)
        own = proc_memory(daemon.process.pid)
        tree = tree_memory(daemon.process.pid)
        assert own is not None
        db_bytes = sum(f.stat().st_size for f in (state / "state").glob("*.sqlite3*"))
    finally:
        daemon.stop()
    return {
        "tracks": status["scan"]["tracks"],
        "scan_s": scan_s,
        "daemon_rss_mib": own.rss_bytes / MIB,
        "daemon_pss_mib": own.pss_bytes / MIB,
        "tree_pss_mib": sum(p.pss_bytes for p in tree) / MIB,
        "database_mib": db_bytes / MIB,
    }


def mpd_library_memory(work: Path, tracks: int) -> dict:
    music = work / f"library-{tracks}"
    mpd = Mpd(work / f"mpd-{tracks}", music)
    try:
        started = time.monotonic()
        mpd.update()
        scan_s = time.monotonic() - started
        own = proc_memory(mpd.process.pid)
        assert own is not None
    finally:
        mpd.stop()
    return {"tracks": tracks, "scan_s": scan_s, "rss_mib": own.rss_bytes / MIB, "pss_mib": own.pss_bytes / MIB}


# ---------------------------------------------------------------------------------- main
def start_times(work: Path, music: Path, flags: Sequence[str], starts: int) -> dict[str, list[float]]:
    """Per start: process start to ``pong``, CPU seconds the daemon used until then, and to ``status``."""
    out: dict[str, list[float]] = {"pong_s": [], "pong_cpu_s": [], "status_s": []}
    for _ in range(starts):
        daemon = Daemon(work, music, flags, fresh_state=False)
        with open(f"/proc/{daemon.process.pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
        out["pong_cpu_s"].append((int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))
        out["pong_s"].append(daemon.ping_s)
        daemon.call("status")  # held until the daemon serves
        out["status_s"].append(time.perf_counter() - daemon.started)
        daemon.stop()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--play-s", type=float, default=20.0, help="seconds of playing sampled per profile")
    parser.add_argument("--starts", type=int, default=5, help="daemon starts for the start-up median")
    parser.add_argument("--audio-runs", type=int, default=3, help="daemon lives per first-audio median and profile")
    parser.add_argument("--libraries", default="100,10000", help="library sizes to scan (comma-separated; the first is the baseline)")
    parser.add_argument("--big", action="store_true", help="also scan a 100,000-track library (minutes of CPU)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (bench/out/memory)")
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    work = OUT / "memory"
    work.mkdir(parents=True, exist_ok=True)
    music = work / "music"
    track = make_play_library(music)
    results: dict = {"cpu_count": os.cpu_count(), "play_s": args.play_s}
    rows: list[tuple[str, str, str]] = []

    # ---- start-up (an existing database, as every start but the first)
    first = Daemon(work / "startup", music)
    first.wait_scanned()
    first.stop()
    starts = start_times(work / "startup", music, (), args.starts)
    results["start"] = starts
    start_s = statistics.median(starts["pong_s"])
    rows.append(("start to first pong on the control socket (median)", f"{start_s:.3f} s",
                 f"budget <= {BUDGET_START_S} s  ({'met' if start_s <= BUDGET_START_S else 'NOT met'}; runs "
                 f"{min(starts['pong_s']):.3f}-{max(starts['pong_s']):.3f}; daemon CPU to pong "
                 f"{statistics.median(starts['pong_cpu_s']):.2f} s)"))
    rows.append(("  start to the first answered status (serving)", f"{statistics.median(starts['status_s']):.3f} s",
                 "median; workers come up after"))

    # ---- playing: defaults, then the low-memory profile
    for key, flags, budget in (("defaults", (), BUDGET_DEFAULT_MIB), ("low_memory", LOW_MEMORY_FLAGS, BUDGET_LOW_MIB)):
        cold: list[float] = []
        known: list[float] = []
        peaks = {"cold": Peak(), "known": Peak()}
        for life in range(args.audio_runs):
            play_s = args.play_s if life == 0 else 0.0  # memory is sampled in the first lives only
            # cold: nothing known about the track, the workers warm. The track joins the library
            # only then (a scan just before `play`), or the idle pass would analyse it first.
            forget_sidecars(music)
            hidden = music.parent / f".{track.name}"
            track.rename(hidden)
            daemon = Daemon(work / key, music, flags)
            try:
                daemon.wait_scanned()
                daemon.wait_workers()
                hidden.rename(track)
                scans = daemon.call("status")["scan"]["scans"]
                daemon.call("library.scan")
                while daemon.call("status")["scan"]["scans"] <= scans or daemon.call("status")["scan"]["running"]:
                    time.sleep(0.01)
                life_peak, first_audio_s = play_and_measure(daemon, track, play_s)
                peaks["cold"] = life_peak if life == 0 else peaks["cold"]
                cold.append(first_audio_s)
            finally:
                if hidden.exists():
                    hidden.rename(track)
                daemon.stop()
            # known: its sidecar is there (written by `auralis analyze`, as docs/usage.md advises
            # for small boards), a fresh daemon, nothing cached
            if not any(music.glob("*.25d")):
                subprocess.run([str(Path(sys.executable).parent / "auralis"), "analyze", str(track)],
                               check=True, stdout=subprocess.DEVNULL)
            daemon = Daemon(work / key, music, flags)
            try:
                daemon.wait_scanned()
                daemon.wait_workers()
                life_peak, first_audio_s = play_and_measure(daemon, track, play_s)
                peaks["known"] = life_peak if life == 0 else peaks["known"]
                known.append(first_audio_s)
            finally:
                daemon.stop()
        results[key] = {"flags": list(flags), "first_audio_cold_s": cold, "first_audio_known_s": known,
                        "cold": peaks["cold"].to_json(), "known": peaks["known"].to_json()}
        for which, what in (("cold", "analysed while it plays"), ("known", "sidecar present")):
            peak = peaks[which]
            worst = max(peak.pss_bytes, peak.rss_bytes) / MIB
            verdict = "met" if worst <= budget else (
                f"PSS met, RSS NOT met by {worst - budget:.0f} MiB" if peak.pss_bytes / MIB <= budget
                else f"NOT met by {worst - budget:.0f} MiB")
            rows.append((f"playing, {' '.join(flags) or 'defaults'}, track {what}",
                         f"{peak.pss_bytes / MIB:.0f} / {peak.rss_bytes / MIB:.0f} MiB",
                         f"PSS / RSS peak, daemon + workers; budget <= {budget:.0f} MiB ({verdict})"))
            rows.append(("  by process at the PSS peak (PSS MiB)", "",
                         ", ".join(f"{p.name} {p.pss_bytes / MIB:.0f}" for p in peak.processes)))
        rows.append((f"  first audio, cold / track known ({key})",
                     f"{statistics.median(cold):.3f} / {statistics.median(known):.3f} s",
                     f"median of {len(cold)}, play -> elapsed_s > 0 as a client sees it"))

    # ---- MPD, same track, same run
    mpd = Mpd(work / "mpd", music)
    try:
        mpd.update()
        mpd_peak = mpd_play_and_measure(mpd, track.name, args.play_s)
    finally:
        mpd.stop()
    results["mpd_playing"] = mpd_peak.to_json()
    rows.append(("MPD 0.23 playing the same track (null output)", f"{mpd_peak.pss_bytes / MIB:.0f} / {mpd_peak.rss_bytes / MIB:.0f} MiB",
                 f"PSS / RSS; auralisd with defaults (track known) holds {results['defaults']['known']['pss_mib'] / max(mpd_peak.pss_bytes / MIB, 1e-9):.1f}x MPD's PSS"))

    # ---- library size
    sizes = [int(s) for s in args.libraries.split(",") if s.strip()]
    if args.big and 100_000 not in sizes:
        sizes.append(100_000)
    libraries = []
    for tracks in sizes:
        ours = library_memory(work, tracks, settle_s=2.0)
        peer = mpd_library_memory(work, tracks) if tracks else None
        libraries.append({"auralisd": ours, "mpd": peer})
        rows.append((f"library of {tracks:,} tracks: daemon after the scan", f"{ours['daemon_pss_mib']:.0f} / {ours['daemon_rss_mib']:.0f} MiB",
                     f"PSS / RSS; database file {ours['database_mib']:.1f} MiB; scan {ours['scan_s']:.0f} s"
                     + (f"; MPD {peer['pss_mib']:.0f} / {peer['rss_mib']:.0f} MiB (update {peer['scan_s']:.0f} s)" if peer else "")))
    results["libraries"] = libraries
    if len(libraries) >= 2:
        base = libraries[0]["auralisd"]
        for entry in libraries[1:]:
            ours = entry["auralisd"]
            grown = ours["daemon_pss_mib"] - base["daemon_pss_mib"]
            per_track = grown * MIB / max(1, ours["tracks"] - base["tracks"])
            rows.append((f"  growth per track ({ours['tracks']:,} vs {base['tracks']:,})", f"{per_track:.0f} B/track",
                         f"{grown:+.1f} MiB PSS; the database file adds {ours['database_mib'] - base['database_mib']:.1f} MiB on disk"))

    width = max(len(r[0]) for r in rows)
    print(f"auralisd memory and start-up ({os.cpu_count()} cores; playing sampled for {args.play_s:.0f} s, peaks)")
    for name, value, note in rows:
        print(f"  {name:<{width}}  {value:>16}  {note}")
    (OUT / "memory.json").write_text(json.dumps(results, indent=2))
    if not args.keep:
        for sub in ("startup", "defaults", "low_memory"):
            shutil.rmtree(work / sub, ignore_errors=True)
    return 0


if __name__ == "__main__":
    tempfile.tempdir = None
    sys.exit(main())
