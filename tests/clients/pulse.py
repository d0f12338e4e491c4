"""A private PulseAudio server with a null sink, for tests (not a test module).

Started by the test on a Unix socket in a temporary folder (``-n``: no default configuration; the
native protocol with anonymous auth and one ``module-null-sink``), never the user's or the system's
server; works as root and as a normal user. Clients reach it through ``PULSE_SERVER``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SINK = "auralis_test"
START_TIMEOUT_S = 20.0


@dataclass
class PulseServer:
    process: subprocess.Popen
    env: dict[str, str]  # PULSE_SERVER (+ PULSE_SINK) for clients
    log_path: Path

    def pactl(self, *args: str) -> str:
        return subprocess.run(["pactl", *args], env=self.env, capture_output=True, text=True, timeout=10,
                              check=True).stdout

    def sink_inputs(self) -> list[str]:
        """The playback streams connected to the server now (one line each)."""
        return [line for line in self.pactl("list", "short", "sink-inputs").splitlines() if line.strip()]

    def stop_signal(self, sig: int) -> None:
        os.kill(self.process.pid, sig)


@contextmanager
def pulse_server(tmp: Path) -> Iterator[PulseServer]:
    """Run ``pulseaudio`` with a null sink named :data:`SINK`; stopped (killed if need be) on exit."""
    run = tmp / "pulse-run"
    run.mkdir(mode=0o700, exist_ok=True)
    socket_path = run / "native"
    env = dict(os.environ, HOME=str(tmp), XDG_RUNTIME_DIR=str(run), PULSE_RUNTIME_PATH=str(run / "pulse"),
               PULSE_STATE_PATH=str(tmp / "pulse-state"), PULSE_SERVER=f"unix:{socket_path}", PULSE_SINK=SINK)
    env.pop("PULSE_COOKIE", None)
    log_path = tmp / "pulseaudio.log"
    command = ["pulseaudio", "-n", "--daemonize=no", "--exit-idle-time=-1", "--disallow-exit", "--use-pid-file=no",
               "--disable-shm=yes", f"--load=module-native-protocol-unix auth-anonymous=1 socket={socket_path}",
               f"--load=module-null-sink sink_name={SINK} rate=44100 channels=2 format=float32le"]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    server = PulseServer(process, env, log_path)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"pulseaudio exited with {process.returncode}:\n{log_path.read_text()}")
            if subprocess.run(["pactl", "info"], env=env, capture_output=True, timeout=10).returncode == 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"pulseaudio did not start:\n{log_path.read_text()}")
            time.sleep(0.1)
        yield server
    finally:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGCONT)  # a test that stopped it must not leave it stopped
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
