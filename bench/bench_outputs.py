"""Benchmark the Icecast output: the daemon's CPU with 1 and 100 Icecast listeners (the fan-out is Icecast's).

Starts Debian's ``icecast2`` (generated config, loopback, temp folder) and a real ``auralisd`` (1 worker)
with an ``icecast`` output, plays a generated 40 s track on repeat, lets its chunks reach the cache, then
for each case connects N HTTP listeners to the mount (threads in this process that read and count the
bytes) and measures over :data:`WINDOW_S` seconds the CPU time of the daemon's own process (every
thread: the trio loop and the Opus encoder thread; not the worker processes) and of Icecast. The goal
(issue 13): the daemon's CPU with 100 listeners within 10% of that with one.

Prints a table and writes ``bench/out/outputs.json``. ``--quick`` shortens the windows.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from auralis.audio import write_audio  # noqa: E402
from auralis.synth import make_music  # noqa: E402
from bench.procstat import process_cpu_s  # noqa: E402
from tests.auralisd.outputs_helpers import IcecastServer  # noqa: E402
from tests.web.daemon import running_daemon  # noqa: E402

OUT = ROOT / "bench" / "out"
SAMPLE_RATE = 44_100
WINDOW_S = 15.0
MANY = 100
MOUNT = "/auralis.opus"


def listener(port: int, stop: threading.Event, counts: list[int]) -> None:
    total = 0
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(f"GET {MOUNT} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
            while not stop.is_set():
                chunk = sock.recv(65536)
                if not chunk:
                    break
                total += len(chunk)
    except OSError:
        pass
    counts.append(total)


def measure(daemon_pid: int, ice: IcecastServer, listeners: int, seconds: float) -> dict:
    stop = threading.Event()
    counts: list[int] = []
    threads = [threading.Thread(target=listener, args=(ice.port, stop, counts), daemon=True) for _ in range(listeners)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60.0  # Icecast takes every listener in within seconds, not at once
    while int((ice.source(MOUNT) or {}).get("listeners", 0)) < listeners and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)  # streaming
    started = time.monotonic()
    counted = int((ice.source(MOUNT) or {}).get("listeners", 0))
    assert ice.proc is not None
    cpu0, ice0, wall0 = process_cpu_s(daemon_pid), process_cpu_s(ice.proc.pid), time.monotonic()
    time.sleep(seconds)
    wall = time.monotonic() - wall0
    cpu = (process_cpu_s(daemon_pid) - cpu0) / wall
    ice_cpu = (process_cpu_s(ice.proc.pid) - ice0) / wall
    stop.set()
    for thread in threads:
        thread.join(15)
    kbit_s = [8 * c / (time.monotonic() - started + 1.0) / 1000 for c in counts]
    return {"listeners": listeners, "icecast_counted": counted, "daemon_cpu_s_per_s": round(cpu, 4),
            "icecast_cpu_s_per_s": round(ice_cpu, 4),
            "kbit_s_per_listener": round(sum(kbit_s) / len(kbit_s), 1) if kbit_s else 0.0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 s windows")
    args = parser.parse_args()
    seconds = 5.0 if args.quick else WINDOW_S
    work = OUT / "outputs"
    music = work / "music"
    music.mkdir(parents=True, exist_ok=True)
    track = music / "song.wav"
    if not track.exists():
        write_audio(track, make_music(40.0, SAMPLE_RATE, seed=7), SAMPLE_RATE)
    state = work / "daemon"
    state.mkdir(exist_ok=True)
    ice = IcecastServer(work / "icecast")
    password_file = work / "icecast.pass"
    password_file.write_text(ice.password + "\n")
    ice.start()
    try:
        output = f"radio=http://127.0.0.1:{ice.port}{MOUNT}?password_file={password_file}"
        with running_daemon(state, music, "--icecast", output, workers=1) as daemon, daemon.control() as control:
            control.call("queue.clear")
            control.call("queue.add", {"paths": [str(track)]})
            control.call("options.set", {"repeat": True})
            control.call("play", {"pos": 0})
            time.sleep(3.0)  # first chunks rendered, the output connected
            pid = daemon.process.pid
            rows = [measure(pid, ice, n, seconds) for n in (0, 1, MANY)]
            control.call("stop")
    finally:
        ice.remove()
    print(f"{'listeners':>9} {'counted':>8} {'daemon CPU s/s':>15} {'icecast CPU s/s':>16} {'kbit/s each':>12}")
    for row in rows:
        print(f"{row['listeners']:>9} {row['icecast_counted']:>8} {row['daemon_cpu_s_per_s']:>15.3f} "
              f"{row['icecast_cpu_s_per_s']:>16.3f} {row['kbit_s_per_listener']:>12.1f}")
    one, many = rows[1]["daemon_cpu_s_per_s"], rows[2]["daemon_cpu_s_per_s"]
    print(f"daemon CPU with {MANY} listeners / with 1: {many / one if one > 0 else float('nan'):.3f} (goal: within 10%)")
    (OUT / "outputs.json").write_text(json.dumps({"window_s": seconds, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
