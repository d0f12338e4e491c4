"""MPD database commands over a 10,000-track library: Auralis's MPD port against the real MPD.

Generates (once, under ``bench/out/mpd_db_library``) 10,000 short tagged FLAC files: 500
artists x 2 albums x 10 tracks. Starts ``auralisd --mpd-port`` and Debian's ``mpd`` on the same
folder, waits until both have scanned it, then times, over one TCP connection each, the
round trip of (median of ``--runs``; each run of a varying command asks another value):

* the first ``listallinfo`` (Auralis then makes and stores the song block of every track),
* ``listallinfo`` again (repeated, ~2.3 MB of text), and ``listallinfo "Artist NNN"`` (20 songs),
* ``search title "song N"`` (a case-insensitive substring: ~1,111 matches),
* ``search any "artist 1NN"`` (every tag of every track),
* ``find artist "Artist NNN"`` (an exact match: 20 songs),
* ``list album group albumartist`` (1,000 distinct pairs), ``count group genre``.

The goal (issue 12) is within 2x MPD's time for ``listallinfo`` and ``search``. The daemon's
pool workers are paused (SIGSTOP) while timing, so the idle fingerprinting of the freshly
scanned library does not share the two cores with the measurement; they are resumed after.
Writes ``bench/out/mpd_db.json``. Run: ``.venv/bin/python bench/bench_mpd_db.py [--runs N]``.
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
import time
from pathlib import Path

import numpy as np
import soundfile as sf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.procstat import child_pids  # noqa: E402

OUT = ROOT / "bench" / "out"
LIBRARY = OUT / "mpd_db_library"
ARTISTS, ALBUMS, TRACKS = 500, 2, 10
GENRES = ("Rock", "Jazz", "Pop", "Folk", "Electronic", "Classical", "Blues", "Soul")
RATE = 8_000


def write_library(folder: Path) -> int:
    from mutagen.flac import FLAC

    marker = folder / ".complete"
    count = ARTISTS * ALBUMS * TRACKS
    if marker.exists():
        return count
    shutil.rmtree(folder, ignore_errors=True)
    t = np.arange(RATE // 4) / RATE
    n = 0
    for a in range(ARTISTS):
        for b in range(ALBUMS):
            album_dir = folder / f"Artist {a:03d}" / f"Album {b}"
            album_dir.mkdir(parents=True)
            for k in range(TRACKS):
                path = album_dir / f"{k + 1:02d} song {n}.flac"
                tone = (0.1 * np.sin(2 * np.pi * (100 + n % 700) * t)).astype(np.float32)
                sf.write(str(path), tone, RATE, subtype="PCM_16")
                meta = FLAC(str(path))
                meta.update({"title": f"Song {n}", "artist": f"Artist {a:03d}", "album": f"Album {a:03d}-{b}",
                             "albumartist": f"Artist {a:03d}", "tracknumber": str(k + 1), "date": str(1960 + a % 60),
                             "genre": GENRES[(a + b) % len(GENRES)]})  # fmt: skip
                meta.save()
                n += 1
    marker.write_text("ok")
    return count


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Mpd:
    """A raw MPD protocol connection that reads one whole response."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=120)
        self.file = self.sock.makefile("rb")
        self.greeting = self.file.readline()

    def command(self, line: str) -> bytes:
        self.sock.sendall(line.encode() + b"\n")
        chunks = []
        while True:
            raw = self.file.readline()
            if not raw:
                raise ConnectionError("closed")
            if raw == b"OK\n" or raw.startswith(b"ACK "):
                if raw.startswith(b"ACK "):
                    raise RuntimeError(f"{line}: {raw!r}")
                return b"".join(chunks)
            chunks.append(raw)

    def value(self, line: str, key: str) -> str | None:
        for raw in self.command(line).decode().splitlines():
            k, _, v = raw.partition(": ")
            if k == key:
                return v
        return None

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def connect(port: int, timeout_s: float = 60.0) -> Mpd:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            return Mpd(port)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def wait_songs(conn: Mpd, songs: int, timeout_s: float) -> float:
    started = time.monotonic()
    while True:
        if conn.value("status", "updating_db") is None and conn.value("stats", "songs") == str(songs):
            return time.monotonic() - started
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(f"only {conn.value('stats', 'songs')} of {songs} songs after {timeout_s} s")
        time.sleep(0.5)


# name -> the command of each run. Varying values make every run of Auralis miss its answer cache
# (Database.track_blocks keeps the last four listings until the library changes); "listallinfo
# (repeated)" is the same command every time, as a client reconnecting gets it.
QUERIES: dict[str, list[str]] = {
    "listallinfo (repeated)": ["listallinfo"],
    "listallinfo Artist NNN": [f'listallinfo "Artist {n:03d}"' for n in range(100, 500, 37)],
    "search title \"song N\"": [f'search title "song {n}"' for n in range(1, 10)],
    "search any \"artist 1NN\"": [f'search any "artist {n}"' for n in range(110, 200, 9)],
    "find artist": [f'find artist "Artist {n:03d}"' for n in range(3, 500, 47)],
    "list album group albumartist": ["list album group albumartist"],
    "count group genre": ["count group genre"],
}


def first_listing(conn: Mpd) -> dict[str, float]:
    """The very first listallinfo (Auralis makes and stores the song blocks of every track)."""
    started = time.perf_counter()
    size = len(conn.command("listallinfo"))
    return {"median_s": time.perf_counter() - started, "min_s": 0.0, "max_s": 0.0, "bytes": size}


def time_queries(conn: Mpd, runs: int) -> dict[str, dict[str, float]]:
    out = {"listallinfo (first)": first_listing(conn)}
    for name, lines in QUERIES.items():
        conn.command(lines[0] if len(lines) == 1 else "ping")  # warm: repeated commands start from the cache
        times = []
        size = 0
        for i in range(runs):
            started = time.perf_counter()
            size = len(conn.command(lines[i % len(lines)]))
            times.append(time.perf_counter() - started)
        out[name] = {"median_s": statistics.median(times), "min_s": min(times), "max_s": max(times), "bytes": size}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    mpd_bin = shutil.which("mpd") or "/usr/bin/mpd"
    if not os.path.exists(mpd_bin):
        print("mpd is not installed (apt-get install mpd)", file=sys.stderr)
        return 1
    OUT.mkdir(exist_ok=True)
    started = time.monotonic()
    songs = write_library(LIBRARY)
    print(f"library: {songs} tracks in {LIBRARY} ({time.monotonic() - started:.1f} s to make or find)", flush=True)

    work = OUT / "mpd_db_run"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    # Auralis first, then the real MPD: each scan timed alone (from start-up to every song listed)
    auralis_port, mpd_port = free_port(), free_port()
    auralisd = str(Path(sys.executable).parent / "auralisd")
    env = {**os.environ, "XDG_CONFIG_HOME": str(work / "config")}
    conf = work / "mpd.conf"
    conf.write_text(
        f'music_directory "{LIBRARY}"\ndb_file "{work / "mpd.db"}"\nlog_file "{work / "mpd.log"}"\n'
        f'state_file "{work / "mpd.state"}"\nbind_to_address "127.0.0.1"\nport "{mpd_port}"\n'
        'audio_output {\n  type "null"\n  name "null"\n}\n'
    )
    processes: list[subprocess.Popen[bytes]] = []
    paused: list[int] = []
    with open(work / "auralisd.log", "wb") as log:
        try:
            scan_started = time.monotonic()
            processes.append(subprocess.Popen(
                [auralisd, "--music-dir", str(LIBRARY), "--state-dir", str(work / "state"), "--runtime-dir",
                 str(work / "run"), "--cache-dir", str(work / "cache"), "--http-port", "0", "--workers", "1",
                 "--log-level", "warning", "--mpd-port", str(auralis_port)],
                stdout=log, stderr=subprocess.STDOUT, env=env,
            ))  # fmt: skip
            ours_conn = connect(auralis_port, 120)
            wait_songs(ours_conn, songs, 1800)
            auralis_scan_s = time.monotonic() - scan_started
            paused = child_pids(processes[0].pid)  # the pool workers (idle fingerprinting of the new library)
            for pid in paused:
                os.kill(pid, signal.SIGSTOP)
            scan_started = time.monotonic()
            processes.append(subprocess.Popen([mpd_bin, "--no-daemon", str(conf)], stdout=subprocess.DEVNULL,
                                              stderr=subprocess.DEVNULL))  # fmt: skip
            theirs_conn = connect(mpd_port)
            theirs_conn.command("update")
            wait_songs(theirs_conn, songs, 900)
            mpd_scan_s = time.monotonic() - scan_started
            print(f"scan of {songs} new files, from start-up: MPD {mpd_scan_s:.1f} s, Auralis {auralis_scan_s:.1f} s"
                  f" (load average {os.getloadavg()[0]:.1f})", flush=True)  # fmt: skip
            results = {"MPD": time_queries(theirs_conn, args.runs), "Auralis": time_queries(ours_conn, args.runs)}
            print(f"\n{'command':<32} {'MPD ms':>9} {'Auralis ms':>11} {'ratio':>7} {'bytes (A/M)':>21}")
            for name in results["MPD"]:
                a, m = results["Auralis"][name], results["MPD"][name]
                print(f"{name:<32} {m['median_s'] * 1e3:>9.1f} {a['median_s'] * 1e3:>11.1f} "
                      f"{a['median_s'] / m['median_s']:>6.2f}x {a['bytes']:>10}/{m['bytes']:<10}")  # fmt: skip
            (OUT / "mpd_db.json").write_text(json.dumps({
                "songs": songs, "runs": args.runs, "scan_s": {"MPD": mpd_scan_s, "Auralis": auralis_scan_s},
                "load_average": os.getloadavg()[0], "results": results,
            }, indent=2))  # fmt: skip
            ours_conn.close()
            theirs_conn.close()
        finally:
            for pid in paused:
                try:
                    os.kill(pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
            for proc in processes:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
