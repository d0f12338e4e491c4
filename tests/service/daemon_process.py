"""A real ``auralisd`` process for the auralisctl and service tests (not a test module)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import msgpack

from auralis.audio import write_audio
from auralis.synth import loudness_war, make_music

START_TIMEOUT_S = 60.0  # a generous bound for a loaded 2-core machine; start-up takes ~2 s
SAMPLE_RATE = 44_100


def write_library(folder: Path) -> dict[str, Path]:
    """Three short tracks: two in an album folder (one crushed), one loose."""
    album = folder / "Album"
    album.mkdir(parents=True, exist_ok=True)
    tracks = {
        "one": album / "01 one.flac",
        "two": album / "02 two.flac",
        "three": folder / "three.wav",
    }
    write_audio(str(tracks["one"]), make_music(8.0, SAMPLE_RATE, bpm=120, seed=1), SAMPLE_RATE)
    write_audio(str(tracks["two"]), loudness_war(make_music(7.0, SAMPLE_RATE, bpm=128, seed=2)), SAMPLE_RATE)
    write_audio(str(tracks["three"]), make_music(6.0, SAMPLE_RATE, bpm=100, seed=3), SAMPLE_RATE)
    return tracks


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rpc(path: str, method: str, params: dict | None = None, *, timeout_s: float = 120.0):
    """One request on the control socket, independent of auralisctl (used to set up and check state)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        sock.connect(path)
        sock.sendall(msgpack.packb([0, 1, method, params or {}]))
        unpacker = msgpack.Unpacker(raw=False)
        while True:
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("daemon closed the connection")
            unpacker.feed(data)
            for message in unpacker:
                if message[0] == 1 and message[1] == 1:
                    if message[2] is not None:
                        raise RuntimeError(f"{method}: {message[2]}")
                    return message[3]


@dataclass
class DaemonProcess:
    process: subprocess.Popen
    socket_path: str
    http_port: int
    log_path: Path
    state_dir: Path
    cache_dir: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def call(self, method: str, params: dict | None = None):
        return rpc(self.socket_path, method, params)

    def stop(self) -> int:
        """SIGTERM, then wait (kill after the bound); returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def daemon_args(tmp: Path, music_dir: Path, http_port: int, *extra: str) -> list[str]:
    return [
        "--music-dir", str(music_dir),
        "--state-dir", str(tmp / "state"),
        "--runtime-dir", str(tmp / "run"),
        "--cache-dir", str(tmp / "cache"),
        "--http-port", str(http_port),
        "--workers", "1",
        "--log-level", "info",
        *extra,
    ]  # fmt: skip


def start_daemon(tmp: Path, music_dir: Path, *, prefix: Sequence[str] = (), env: dict | None = None,
                 extra: Sequence[str] = (), wait: bool = True, http_port: int | None = None) -> DaemonProcess:
    """Start ``auralisd`` (after ``prefix``, e.g. systemd-socket-activate); optionally wait until scanned.

    ``http_port``: a fixed port (a restart on the same address), else a free one."""
    http_port = http_port or free_port()
    log_path = tmp / "auralisd.log"
    auralisd = str(Path(sys.executable).parent / "auralisd")
    command = [*prefix, auralisd, *daemon_args(tmp, music_dir, http_port, *extra)]
    full_env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID")}
    full_env.update({"XDG_CONFIG_HOME": str(tmp / "config"), **(env or {})})
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT, env=full_env)
    daemon = DaemonProcess(process, str(tmp / "run" / "control.sock"), http_port, log_path, tmp / "state", tmp / "cache")
    if wait:
        wait_scanned(daemon)
    return daemon


def wait_scanned(daemon: DaemonProcess) -> dict:
    """Wait until the daemon answers and its first scan finished; returns the status."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if daemon.process.poll() is not None:
            raise RuntimeError(f"auralisd exited with {daemon.process.returncode}:\n{daemon.log()}")
        try:
            status = daemon.call("status")
            if not status["scan"]["running"] and status["scan"].get("tracks", 0) > 0:
                return status
        except (OSError, ConnectionError):
            pass
        if time.monotonic() > deadline:
            daemon.stop()
            raise RuntimeError(f"auralisd did not serve within {START_TIMEOUT_S} s:\n{daemon.log()}")
        time.sleep(0.05)
