"""The MPD frontend against the real MPD, in the same run (issue 12).

Starts Debian's ``mpd`` (null output, its own temporary config and database) and ``auralisd``
(its MPD port) on the same generated library, then measures on each, over loopback TCP with a
plain line client:

* round trip of ``status`` and of ``currentsong`` (median of ``--rounds``, default 300),
* idle wake-up: client A waits in ``idle mixer``, client B sends ``setvol``; the time from B's
  send to A's ``changed: mixer`` (median of 100),
* ``playlistinfo`` of a 10,000-entry queue (median of 5; goal: within 2x MPD).

The round trips and wake-ups are taken in alternating blocks of 25 (MPD, Auralis, then the other
way round), so a change in the machine's load weighs on both alike. A third peer, ``trio floor``,
is a minimal trio server (``trio.serve_tcp``, one ``receive_some`` and one ``send_all`` per
line) answering fixed ``status``/``currentsong`` blocks: what any trio server costs here.

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


def idle_wakeups_s(port: int, rounds: int) -> list[float]:
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
    return times


BLOCK = 25  # round trips per server before switching to the other

# A minimal trio server: what one receive_some and one send_all per request line cost here.
FLOOR_SERVER = """
import sys, trio
STATUS = (b"volume: 50\\nrepeat: 0\\nrandom: 0\\nsingle: 0\\nconsume: 0\\npartition: default\\nplaylist: 3\\n"
          b"playlistlength: 1\\nmixrampdb: 0\\nstate: pause\\nsong: 0\\nsongid: 1\\ntime: 0:1\\nelapsed: 0.000\\n"
          b"bitrate: 0\\nduration: 1.000\\naudio: 44100:f:2\\nOK\\n")
SONG = (b"file: Album/t000.flac\\nLast-Modified: 2026-12-03T00:00:00Z\\nFormat: 44100:16:2\\nTime: 1\\n"
        b"duration: 1.000\\nPos: 0\\nId: 1\\nOK\\n")
async def handle(stream):
    await stream.send_all(b"OK MPD 0.23.0\\n")
    buf = b""
    while data := await stream.receive_some(16384):
        buf += data
        while b"\\n" in buf:
            line, buf = buf.split(b"\\n", 1)
            await stream.send_all(STATUS if line == b"status" else SONG)
trio.run(lambda: trio.serve_tcp(handle, int(sys.argv[1]), host="127.0.0.1"))
"""


def prepare(port: int) -> Conn:
    conn = Conn(port)
    conn.command("clear")
    conn.command("add Album/t000.flac")
    conn.command("play 0")
    conn.command("pause 1")
    return conn


def round_trips(ports: dict[str, int], rounds: int, *, idle: set[str]) -> dict[str, dict[str, float]]:
    """``status`` and ``currentsong`` round trips on every server (and the idle wake-up on those
    in ``idle``), in alternating blocks of :data:`BLOCK`; medians in ms."""
    conns = {name: Conn(port) if name not in idle else prepare(port) for name, port in ports.items()}
    times: dict[str, dict[str, list[float]]] = {name: {} for name in ports}
    order = list(ports)
    for block in range(max(1, rounds // BLOCK)):
        for name in order if block % 2 == 0 else order[::-1]:
            for command in ("status", "currentsong"):
                conn = conns[name]
                for _ in range(BLOCK):
                    t0 = time.perf_counter()
                    conn.command(command)
                    times[name].setdefault(f"{command}_ms", []).append(time.perf_counter() - t0)
    idle_order = [name for name in order if name in idle]
    for block in range(100 // BLOCK):
        for name in idle_order if block % 2 == 0 else idle_order[::-1]:
            times[name].setdefault("idle_wakeup_ms", []).extend(idle_wakeups_s(ports[name], BLOCK))
    return {name: {key: statistics.median(values) * 1e3 for key, values in kinds.items()}
            for name, kinds in times.items()}  # fmt: skip


def measure(port: int, rounds: int) -> dict[str, float]:
    conn = prepare(port)
    out: dict[str, float] = {}
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
        mpd_port, auralis_port, floor_port = free_port(), free_port(), free_port()
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
            subprocess.Popen([sys.executable, "-c", FLOOR_SERVER, str(floor_port)]),
        ]  # fmt: skip
        try:
            wait_port(mpd_port, procs[0])
            wait_port(auralis_port, procs[1])
            Conn(mpd_port).command("update")
            wait_songs(Conn(mpd_port), TRACKS)
            wait_songs(Conn(auralis_port), TRACKS)
            wait_daemon_idle(tmp / "run" / "control.sock")
            wait_port(floor_port, procs[2])
            ports = {"mpd": mpd_port, "auralis": auralis_port, "trio floor": floor_port}
            results = round_trips(ports, args.rounds, idle={"mpd", "auralis"})
            results["mpd"].update(measure(mpd_port, args.rounds))
            results["auralis"].update(measure(auralis_port, args.rounds))
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
    print(f"{'measure':<22}{'MPD':>12}{'Auralis':>12}{'ratio':>8}{'trio floor':>12}")
    for key in results["mpd"]:
        a, b = results["mpd"][key], results["auralis"][key]
        floor = results["trio floor"].get(key)
        print(f"{key:<22}{a:>12.3f}{b:>12.3f}{b / a:>8.2f}" + ("" if floor is None else f"{floor:>12.3f}"))
    (OUT / "mpd.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
