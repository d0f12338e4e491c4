"""Fixtures for the MPD frontend tests: a tagged library, Auralis with its MPD port, the real MPD.

Reusable by every MPD test (the query side's too):

- ``mpd_library``: a generated, tagged music folder (two albums, a loose track).
- ``auralis_mpd``: a real ``auralisd`` process serving that library, its MPD port at ``.mpd_port``.
- ``real_mpd``: Debian's ``mpd`` on the same library (a generated ``mpd.conf`` in a temporary
  folder, null output, a free loopback port), its database updated.
- ``MpdConnection``: a raw line client: ``command(line)`` returns ``Reply(pairs, error)``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from mutagen.flac import FLAC

from auralis.audio import write_audio
from auralis.synth import make_music
from tests.helpers import require_tool

from ..conftest import DaemonProcess

# (relative path, title, artist, album, track, date, genre, seconds)
LIBRARY = [
    ("Alpha/01 dawn.flac", "Dawn", "Ann Arbor", "Alpha", 1, "2001", "Rock", 2.0),
    ("Alpha/02 noon.flac", "Noon", "Ann Arbor", "Alpha", 2, "2001", "Rock", 2.5),
    ("Alpha/03 dusk.flac", "Dusk", "Ann Arbor", "Alpha", 3, "2001", "Rock", 3.0),
    ("Beta/01 sea.flac", "Sea", "Bo Carter", "Beta", 1, "1999", "Jazz", 2.0),
    ("Beta/02 sky.flac", "Sky \"quoted\"", "Bo Carter", "Beta", 2, "1999", "Jazz", 2.2),
    ("loose.flac", "Loose", "Cy Dee", "Gamma", 7, "2020", "Pop", 1.5),
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_library(folder: Path) -> Path:
    for i, (rel, title, artist, album, track, date, genre, seconds) in enumerate(LIBRARY):
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        write_audio(str(path), make_music(seconds, 44_100, seed=i + 1), 44_100)
        tags = FLAC(str(path))
        tags.update({"title": title, "artist": artist, "album": album, "tracknumber": str(track),
                     "date": date, "genre": genre})  # fmt: skip
        tags.save()
    return folder


@pytest.fixture(scope="module")
def mpd_library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_library(tmp_path_factory.mktemp("mpdlib") / "music")


@dataclass
class Reply:
    pairs: list[tuple[str, str]]
    error: str | None  # the ACK line, or None for OK

    def get(self, key: str) -> str | None:
        return next((v for k, v in self.pairs if k == key), None)

    def all(self, key: str) -> list[str]:
        return [v for k, v in self.pairs if k == key]


class MpdConnection:
    """A blocking line client for tests (what every MPD client does, without a library)."""

    def __init__(self, port: int, timeout_s: float = 20.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
        self.file = self.sock.makefile("rb")
        self.greeting = self.file.readline().decode()

    def send(self, line: str) -> None:
        self.sock.sendall(line.encode() + b"\n")

    def read_reply(self) -> Reply:
        pairs = []
        while True:
            raw = self.file.readline()
            if not raw:
                raise ConnectionError("closed")
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if line == "OK":
                return Reply(pairs, None)
            if line.startswith("ACK "):
                return Reply(pairs, line)
            if line.startswith("binary: "):
                size = int(line.split(": ", 1)[1])
                data = self.file.read(size)
                self.file.read(1)
                pairs.append(("binary", data.hex()))
                continue
            key, _, value = line.partition(": ")
            pairs.append((key, value))

    def command(self, line: str) -> Reply:
        self.send(line)
        return self.read_reply()

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def wait_until(predicate, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition never held")
        time.sleep(0.05)


def greets(port: int) -> bool:
    """True once an MPD server greets on ``port``."""
    try:
        conn = MpdConnection(port)
    except OSError:
        return False
    ok = conn.greeting.startswith("OK MPD ")
    conn.close()
    return ok


class AuralisMpd:
    def __init__(self, daemon: DaemonProcess, port: int) -> None:
        self.daemon = daemon
        self.mpd_port = port

    def connect(self) -> MpdConnection:
        return MpdConnection(self.mpd_port)


@pytest.fixture(scope="module")
def auralis_mpd(mpd_library: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuralisMpd]:
    port = free_port()
    daemon = DaemonProcess(tmp_path_factory.mktemp("auralis-mpd"), mpd_library, ["--mpd-port", str(port)])
    try:
        daemon.start()
        wait_until(lambda: greets(port))  # the control socket answers first; the MPD port opens last
        with daemon.client() as client:
            daemon.wait_scan(client, len(LIBRARY))
        yield AuralisMpd(daemon, port)
    finally:
        daemon.stop()


class RealMpd:
    """Debian's mpd on a generated config: null output, its own state, a free loopback port."""

    def __init__(self, root: Path, music: Path, *, extra_conf: str = "", songs: int = len(LIBRARY)) -> None:
        self.root = root
        self.music = music
        self.extra_conf = extra_conf  # more mpd.conf lines (e.g. playlist_directory)
        self.songs = songs  # how many songs its first update finds
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> RealMpd:
        mpd = require_tool("mpd")
        self.root.mkdir(parents=True, exist_ok=True)
        conf = self.root / "mpd.conf"
        conf.write_text(
            f'music_directory "{self.music}"\n'
            f'db_file "{self.root / "db"}"\n'
            f'state_file "{self.root / "state"}"\n'
            f'log_file "{self.root / "log"}"\n'
            f'bind_to_address "127.0.0.1"\n'
            f'port "{self.port}"\n'
            'audio_output {\n  type "null"\n  name "null"\n  mixer_type "software"\n}\n' + self.extra_conf
        )
        self.proc = subprocess.Popen([mpd, "--no-daemon", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)  # fmt: skip
        deadline = time.monotonic() + 20
        while True:
            try:
                conn = MpdConnection(self.port)
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"mpd did not start: {(self.root / 'log').read_text(errors='replace')}") from None
                time.sleep(0.05)
        try:
            conn.command("update")
            wait_until(lambda: conn.command("status").get("updating_db") is None
                       and conn.command("stats").get("songs") == str(self.songs))  # fmt: skip
        finally:
            conn.close()
        return self

    def connect(self) -> MpdConnection:
        return MpdConnection(self.port)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


@pytest.fixture(scope="module")
def real_mpd(mpd_library: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealMpd]:
    mpd = RealMpd(tmp_path_factory.mktemp("real-mpd"), mpd_library)
    try:
        yield mpd.start()
    finally:
        mpd.stop()


def mpd_env(port: int) -> dict[str, str]:
    """Environment for mpc: its host and port, nothing from the user's."""
    env = dict(os.environ)
    env["MPD_HOST"] = "127.0.0.1"
    env["MPD_PORT"] = str(port)
    return env
