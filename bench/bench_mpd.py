"""The MPD frontend against the real MPD, in the same run (issue 12).

Starts Debian's ``mpd`` (null output, its own temporary config and database) and ``auralisd``
(its MPD port) on the same generated library, then measures on each, over loopback TCP with a
plain line client:

* round trip of ``status`` and of ``currentsong`` (median of ``--rounds``, default 300),
* idle wake-up: client A waits in ``idle mixer``, client B sends ``setvol``; the time from B's
  send to A's ``changed: mixer`` (median of 100),
* ``playlistinfo`` of a 10,000-entry queue (median of 5; goal: within 2x MPD).

Prints the ratios Auralis / MPD and writes ``bench/out/mpd.json``. ``listallinfo`` and
``search`` are the database side's (their own bench). Run: ``.venv/bin/python bench/bench_mpd.py``.
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
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "out"
sys.path.insert(0, str(ROOT))

from auralis.audio import write_audio  # noqa: E402
from auralis.synth import make_music  # noqa: E402

TRACKS = 100
QUEUE_ENTRIES = 10_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Conn:
    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.file = self.sock.makefile("rb")
        self.file.readline()

    def send(self, line: str) -> None:
        self.sock.sendall(line.encode() + b"\n")

    def read(self) -> list[bytes]:
        lines = []
        while True:
            line = self.file.readline()
            if not line:
                raise ConnectionError("closed")
            if line == b"OK\n":
                return lines
            if line.startswith(b"ACK "):
                raise RuntimeError(line.decode())
            lines.append(line)

    def command(self, line: str) -> list[bytes]:
        self.send(line)
        return self.read()


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            Conn(port).sock.close()
            return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {port}")


def wait_songs(conn: Conn, songs: int, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        stats = dict(line.decode().rstrip("\n").split(": ", 1) for line in conn.command("stats"))
        status = dict(line.decode().rstrip("\n").split(": ", 1) for line in conn.command("status"))
        if int(stats.get("songs", 0)) >= songs and "updating_db" not in status:
            return
        time.sleep(0.1)
    raise TimeoutError("library never complete")


def wait_daemon_idle(socket_path: Path, timeout_s: float = 600) -> None:
    """Wait until auralisd's background analysis is done (no pool job for 2 s), so it does not
    compete with the measurements."""
    import msgpack

    deadline = time.monotonic() + timeout_s
    quiet_since = None
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.connect(str(socket_path))
            sock.sendall(msgpack.packb([0, 1, "status", {}]))
            unpacker = msgpack.Unpacker(raw=False)
            while True:
                unpacker.feed(sock.recv(65536))
                reply = next(iter(unpacker), None)
                if reply is not None:
                    break
        pool = reply[3]["pool"]
        busy = pool["running"] or pool["waiting"] or reply[3]["analysis"].get("queued")
        now = time.monotonic()
        if busy:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = now
        elif now - quiet_since >= 2.0:
            return
        time.sleep(0.2)
    raise TimeoutError("auralisd never went idle")


def median_s(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def idle_wakeup_s(port: int, rounds: int) -> float:
    waiter, poker = Conn(port), Conn(port)
    times = []
    woken: list[float] = []

    def read() -> None:
        waiter.read()
        woken.append(time.perf_counter())

    for i in range(rounds):
        waiter.send("idle mixer")
        time.sleep(0.002)  # let the server register the idle before the change
        reader = threading.Thread(target=read)
        reader.start()
        t0 = time.perf_counter()
        poker.command(f"setvol {50 + i % 2}")
        reader.join(10)
        times.append(woken[-1] - t0)
    return statistics.median(times)


def measure(port: int, rounds: int) -> dict[str, float]:
    conn = Conn(port)
    conn.command("clear")
    conn.command("add Album/t000.flac")
    conn.command("play 0")
    conn.command("pause 1")
    out = {
        "status_ms": median_s(lambda: conn.command("status"), rounds) * 1e3,
        "currentsong_ms": median_s(lambda: conn.command("currentsong"), rounds) * 1e3,
        "idle_wakeup_ms": idle_wakeup_s(port, 100) * 1e3,
    }
    conn.command("stop")
    conn.command("clear")
    t0 = time.perf_counter()
    batch = QUEUE_ENTRIES // TRACKS
    for _ in range(batch):
        conn.command("add Album")
    out["fill_queue_s"] = time.perf_counter() - t0
    assert len(conn.command("playlistinfo")) > QUEUE_ENTRIES
    out["playlistinfo_10k_ms"] = median_s(lambda: conn.command("playlistinfo"), 5) * 1e3
    conn.command("clear")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
    mpd = shutil.which("mpd")
    if mpd is None:
        print("mpd is not installed (apt-get install mpd): nothing to compare against")
        return 1
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-mpd-") as tmp_text:
        tmp = Path(tmp_text)
        music = tmp / "music" / "Album"
        music.mkdir(parents=True)
        for i in range(TRACKS):
            write_audio(str(music / f"t{i:03d}.flac"), make_music(1.0, 44_100, seed=i), 44_100)
        mpd_port, auralis_port = free_port(), free_port()
        (tmp / "mpd").mkdir()
        conf = tmp / "mpd" / "mpd.conf"
        conf.write_text(
            f'music_directory "{tmp / "music"}"\ndb_file "{tmp / "mpd" / "db"}"\n'
            f'state_file "{tmp / "mpd" / "state"}"\nbind_to_address "127.0.0.1"\nport "{mpd_port}"\n'
            'audio_output {\n  type "null"\n  name "null"\n  mixer_type "software"\n}\n'
        )
        env = dict(os.environ, XDG_CONFIG_HOME=str(tmp / "config"))
        procs = [
            subprocess.Popen([mpd, "--no-daemon", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL),
            subprocess.Popen(
                [sys.executable, "-m", "auralisd", "--music-dir", str(tmp / "music"), "--state-dir", str(tmp / "state"),
                 "--runtime-dir", str(tmp / "run"), "--cache-dir", str(tmp / "cache"), "--http-port", "0",
                 "--workers", "1", "--mpd-port", str(auralis_port), "--log-level", "warning"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=ROOT,
            ),
        ]  # fmt: skip
        try:
            wait_port(mpd_port, procs[0])
            wait_port(auralis_port, procs[1])
            Conn(mpd_port).command("update")
            wait_songs(Conn(mpd_port), TRACKS)
            wait_songs(Conn(auralis_port), TRACKS)
            wait_daemon_idle(tmp / "run" / "control.sock")
            results = {"mpd": measure(mpd_port, args.rounds), "auralis": measure(auralis_port, args.rounds)}
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
    print(f"{'measure':<22}{'MPD':>12}{'Auralis':>12}{'ratio':>8}")
    for key in results["mpd"]:
        a, b = results["mpd"][key], results["auralis"][key]
        print(f"{key:<22}{a:>12.3f}{b:>12.3f}{b / a:>8.2f}")
    (OUT / "mpd.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
