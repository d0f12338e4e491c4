"""Fixtures for the daemon tests: generated music folders and a real daemon process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from auralis.audio import write_audio
from auralis.synth import loudness_war, make_music

from .rpc import Client

REPO = Path(__file__).resolve().parents[2]
TRACK_S = 3.0  # short generated tracks keep the suite fast


def write_tracks(folder: Path, specs: list[tuple[str, float, int, int, bool]]) -> list[Path]:
    """``(name, seconds, sample_rate, seed, crushed)`` -> files written in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, seconds, rate, seed, crushed in specs:
        audio = make_music(seconds, rate, seed=seed)
        if crushed:
            audio = loudness_war(audio)
        path = folder / name
        write_audio(str(path), audio, rate)
        out.append(path)
    return out


@pytest.fixture
def music(tmp_path: Path) -> Path:
    """A music folder: two 44.1 kHz tracks (one crushed) and a 48 kHz one, in an album folder."""
    folder = tmp_path / "music"
    write_tracks(
        folder / "Album",
        [
            ("01 first.flac", TRACK_S, 44_100, 1, False),
            ("02 second.wav", TRACK_S, 44_100, 2, True),
        ],
    )
    write_tracks(folder, [("03 third.flac", TRACK_S, 48_000, 3, False)])
    return folder


class DaemonProcess:
    """``python -m auralisd`` in a subprocess with its own state, runtime and cache folders."""

    def __init__(self, root: Path, music: Path | None, extra: list[str] | None = None) -> None:
        self.root = root
        self.music = music
        self.extra = extra or []
        self.state_dir = root / "state"
        self.runtime_dir = root / "run"
        self.cache_dir = root / "cache"
        self.log_path = root / "daemon.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def socket_path(self) -> str:
        return str(self.runtime_dir / "control.sock")

    def args(self) -> list[str]:
        args = [
            sys.executable, "-m", "auralisd",
            "--state-dir", str(self.state_dir),
            "--runtime-dir", str(self.runtime_dir),
            "--cache-dir", str(self.cache_dir),
            "--http-port", "0",
            "--mpd-port", "0",
            "--workers", "2",
            "--log-level", "debug",
        ]  # fmt: skip
        if self.music is not None:
            args += ["--music-dir", str(self.music)]
        return args + self.extra

    def start(self, timeout_s: float = 60.0) -> DaemonProcess:
        env = dict(os.environ)
        for key in ("JOURNAL_STREAM", "NOTIFY_SOCKET", "LISTEN_FDS", "LISTEN_PID"):
            env.pop(key, None)
        env["XDG_CONFIG_HOME"] = str(self.root / "config")  # no user config file leaks in
        self.root.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args(), stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        # A poll of another process (it answers ping once it serves): the deadline is a safety bound that
        # fails the test, never one that paces it.
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"auralisd exited with {self.proc.returncode}:\n{self.log()}")
            try:
                # not `ping`: that is answered from the first instant of start-up (transport/early.py),
                # `status` once the daemon serves (or the connection closes if start-up fails)
                with Client.unix(self.socket_path, timeout_s=30) as client:
                    client.call("status")
                    return self
            except (OSError, ConnectionError):
                time.sleep(0.05)
        raise TimeoutError(f"auralisd did not start:\n{self.log()}")

    def client(self) -> Client:
        return Client.unix(self.socket_path)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_scan(self, client: Client, tracks: int, timeout_s: float = 20.0) -> None:
        """Until a scan finished with at least ``tracks`` tracks: waits for the scan's last ``scan_progress``
        event (``running: false``) on a connection of its own (``client``'s subscription is left alone);
        the deadline is a safety bound only."""
        deadline = time.monotonic() + timeout_s
        with self.client() as watcher:
            watcher.call("subscribe", events=["scan_progress"])
            while True:
                scan = watcher.call("status")["scan"]
                if not scan["running"] and scan["tracks"] >= tracks:
                    return
                watcher.wait_event("scan_progress", lambda d: not d["running"],
                                   timeout_s=max(0.01, deadline - time.monotonic()))

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def wait(self, timeout_s: float = 10.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout_s)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc is not None:
            _reap_workers(self.proc.pid)
            self._log.close()

    def kill9(self) -> None:
        """``kill -9`` the daemon (no clean-up of its own), then its worker processes."""
        assert self.proc is not None
        children = children_of(self.proc.pid, workers_only=False)
        self.proc.kill()
        self.proc.wait(10)
        for child in children:
            try:
                os.kill(child, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._log.close()

    def worker_pids(self) -> list[int]:
        assert self.proc is not None
        return children_of(self.proc.pid)


def children_of(pid: int, *, workers_only: bool = True) -> list[int]:
    """Direct child processes of ``pid`` from /proc; by default only pool workers (spawned by
    multiprocessing), not its resource tracker."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) != pid:
            continue
        if workers_only:
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as handle:
                    if b"spawn_main" not in handle.read():
                        continue
            except OSError:
                continue
        out.append(int(entry))
    return out


def _reap_workers(pid: int) -> None:
    for child in children_of(pid, workers_only=False):
        try:
            os.kill(child, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.fixture(scope="module")
def module_daemon_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator:
    """Like ``daemon_factory`` but shared by the tests of one module (fewer daemon starts)."""
    started: list[DaemonProcess] = []
    base = tmp_path_factory.mktemp("shared")

    def make(music: Path | None, extra: list[str] | None = None, name: str = "daemon") -> DaemonProcess:
        d = DaemonProcess(base / name, music, extra)
        started.append(d)
        return d

    yield make
    for d in started:
        d.stop()


@pytest.fixture
def daemon_factory(tmp_path: Path) -> Iterator:
    started: list[DaemonProcess] = []

    def make(music: Path | None, extra: list[str] | None = None, root: Path | None = None) -> DaemonProcess:
        d = DaemonProcess(root or tmp_path / "daemon", music, extra)
        started.append(d)
        return d

    yield make
    for d in started:
        d.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
