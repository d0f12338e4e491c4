"""A real ``auralisd`` process for the web tests, and small clients that are not trio-websocket.

The daemon runs as a subprocess on a generated music folder with private state/runtime folders and a
free HTTP port; clients use the ``websockets`` package (sync API, in threads) and msgpack.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import numpy as np
from websockets.sync.client import ClientConnection, connect

from auralisd.protocol.audio_frames import AudioFrame, decode_audio_frame

START_TIMEOUT_S = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Daemon:
    port: int
    process: subprocess.Popen
    state_dir: Path
    log_path: Path
    music_dir: Path | None = None

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def control(self) -> Control:
        return Control(self.ws + "/control")


class Control:
    """Blocking msgpack-RPC client over the ``/control`` WebSocket."""

    def __init__(self, url: str) -> None:
        self._ws = connect(url, proxy=None, open_timeout=10, max_size=None).__enter__()
        self._ids = itertools.count(1)
        self._unpacker = msgpack.Unpacker(raw=False)
        self.notifications: list[tuple[str, Any]] = []

    def close(self) -> None:
        self._ws.close()

    def __enter__(self) -> Control:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, method: str, params: dict[str, Any] | None = None, timeout_s: float = 30.0) -> Any:
        msgid = next(self._ids)
        self._ws.send(msgpack.packb([0, msgid, method, params or {}], use_bin_type=True))
        deadline = time.monotonic() + timeout_s
        while True:
            data = self._ws.recv(timeout=max(0.01, deadline - time.monotonic()))
            self._unpacker.feed(data)
            for message in self._unpacker:
                if message[0] == 2:
                    self.notifications.append((message[1], message[2]))
                elif message[0] == 1 and message[1] == msgid:
                    if message[2] is not None:
                        raise RpcFailure(message[2]["code"], message[2]["message"])
                    return message[3]

    def wait_notification(self, name: str, predicate: Any = lambda payload: True, timeout_s: float = 60.0,
                          since: int = 0) -> Any:
        """The first ``name`` notification (from ``notifications[since]`` on, received so far or next) that
        ``predicate`` accepts. Blocks on the socket (an event wait); the deadline is a safety bound."""
        deadline = time.monotonic() + timeout_s
        seen = since
        while True:
            for event, payload in self.notifications[seen:]:
                if event == name and predicate(payload):
                    return payload
            seen = len(self.notifications)
            try:
                data = self._ws.recv(timeout=max(0.01, deadline - time.monotonic()))
            except TimeoutError:
                raise TimeoutError(f"no {name} notification within {timeout_s} s: {self.notifications}") from None
            self._unpacker.feed(data)
            for message in self._unpacker:
                if message[0] == 2:
                    self.notifications.append((message[1], message[2]))


class RpcFailure(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code


@contextmanager
def running_daemon(tmp_path: Path, music_dir: Path, *extra: str, workers: int = 2) -> Iterator[Daemon]:
    """Start ``auralisd`` on ``music_dir``; wait until it serves HTTP and has scanned; stop it after."""
    port = free_port()
    state = tmp_path / "state"
    runtime = tmp_path / "runtime"
    log_path = tmp_path / "auralisd.log"
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "config"), XDG_CACHE_HOME=str(tmp_path / "cache"),
               XDG_STATE_HOME=str(tmp_path / "xstate"), XDG_RUNTIME_DIR=str(tmp_path / "xrun"))
    env.pop("NOTIFY_SOCKET", None)
    args = [sys.executable, "-m", "auralisd.main", "--music-dir", str(music_dir), "--state-dir", str(state),
            "--runtime-dir", str(runtime), "--http-port", str(port), "--workers", str(workers), *extra]
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(args, stdout=log_file, stderr=subprocess.STDOUT, env=env)
    daemon = Daemon(port, process, state, log_path)
    try:
        _wait_ready(daemon)
        yield daemon
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _wait_ready(daemon: Daemon) -> None:
    """Until the daemon serves HTTP and finished its first scan. A poll of another process: the deadline is a
    safety bound that fails the test, never one that paces it."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        if daemon.process.poll() is not None:
            raise RuntimeError(f"auralisd exited with {daemon.process.returncode}:\n{daemon.log()}")
        try:
            with urllib.request.urlopen(daemon.http + "/", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"auralisd did not serve HTTP within {START_TIMEOUT_S} s:\n{daemon.log()}")
        time.sleep(0.1)
    with daemon.control() as control:  # the scan's last scan_progress event (running: false) ends the wait
        control.call("subscribe", {"events": ["scan_progress"]})
        while True:
            mark = len(control.notifications)
            status = control.call("status")
            scan = status.get("scan", {})
            if not scan.get("running") and scan.get("tracks", scan.get("total", 0)):
                return
            try:
                control.wait_notification("scan_progress", lambda p: not p.get("running"),
                                          timeout_s=max(0.01, deadline - time.monotonic()), since=mark)
            except TimeoutError:
                raise RuntimeError(f"auralisd did not finish its scan:\n{daemon.log()}") from None


def track_ids(daemon: Daemon) -> dict[str, int]:
    """File name -> track id, from the library."""
    with daemon.control() as control:
        tracks = control.call("library.search", {"query": "", "limit": 1000})["tracks"]
    return {Path(t["path"]).name: t["track_id"] for t in tracks}


@dataclass
class Capture:
    """What a ``/session`` or ``/stream`` client received, in order."""

    events: list[dict[str, Any]] = field(default_factory=list)
    frames: list[AudioFrame] = field(default_factory=list)
    arrivals_s: list[float] = field(default_factory=list)
    order: list[tuple[str, int]] = field(default_factory=list)  # ("event", i) / ("frame", i)

    def event_types(self) -> list[str]:
        return [e["type"] for e in self.events]

    def by_epoch(self) -> dict[int, list[AudioFrame]]:
        out: dict[int, list[AudioFrame]] = {}
        for frame in self.frames:
            out.setdefault(frame.stream_epoch, []).append(frame)
        return out

    def audio(self, epoch: int | None = None) -> np.ndarray:
        frames = [f for f in self.frames if epoch is None or f.stream_epoch == epoch]
        return np.concatenate([f.samples for f in frames]) if frames else np.zeros((0, 2), np.float32)


def receive_into(ws: ClientConnection, capture: Capture, *, channels: int = 2, fmt: str = "f32",
                 until: Any = None, timeout_s: float = 60.0) -> None:
    """Receive until ``until(capture)`` is true (checked after every message) or the socket closes."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            message = ws.recv(timeout=max(0.01, deadline - time.monotonic()))
        except TimeoutError:
            last = capture.frames[-1] if capture.frames else None
            raise TimeoutError(f"no end condition after {timeout_s} s: events {capture.event_types()}, "
                               f"{len(capture.frames)} frames, last epoch/offset "
                               f"{(last.stream_epoch, last.offset_frames) if last else None}") from None
        now = time.monotonic()
        if isinstance(message, str):
            capture.events.append(json.loads(message))
            capture.order.append(("event", len(capture.events) - 1))
        else:
            capture.frames.append(decode_audio_frame(message, channels, fmt))
            capture.arrivals_s.append(now)
            capture.order.append(("frame", len(capture.frames) - 1))
        if until is not None and until(capture):
            return


def assert_continuous(frames: list[AudioFrame]) -> None:
    """Within an epoch: sequence 0, 1, 2, ... and each frame starts where the previous one ended."""
    assert frames, "no frames"
    for i, (a, b) in enumerate(itertools.pairwise(frames)):
        assert b.sequence == a.sequence + 1, f"sequence gap after frame {i}: {a.sequence} -> {b.sequence}"
        assert b.offset_frames == a.offset_frames + a.num_frames, (
            f"offset gap after frame {i}: {a.offset_frames}+{a.num_frames} -> {b.offset_frames}")
