"""Icecast end to end: auralisd -> icecast2 (a generated config on loopback) -> many HTTP listeners.

100 listeners read the mount over HTTP at once (the fan-out is Icecast's); 4 of them decode it fully
with ffmpeg, and their loudness must match the stream's (what a /stream listener got meanwhile) within
0.5 LU. The title changes at a track change (a new Ogg chain with new OpusTags, what players show);
Icecast's restart is survived; a wrong password is a clear ``error`` and playback goes on. Keeping CI
time reasonable: 96 listeners only read the bytes (all of them must receive the stream), 4 decode.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from auralis.loudness import integrated_loudness
from tests.helpers import require_tool

from .conftest import REPO, free_port, write_tracks
from .outputs_helpers import IcecastServer, locate, sound_runs, stop_process, wait_for

TRACK_S = 8.0
LISTENERS = 100
DECODERS = 4
MOUNT = "/auralis.opus"


class RawListener(threading.Thread):
    """An HTTP listener that keeps every byte of the mount it receives."""

    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.data = bytearray()
        self.stop = threading.Event()
        self.error: str | None = None

    def run(self) -> None:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
                sock.sendall(f"GET {MOUNT} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
                while not self.stop.is_set():
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    self.data += chunk
        except OSError as exc:
            self.error = str(exc)


def opus_titles(data: bytes) -> list[str]:
    """The TITLE comment of every OpusTags header in an Ogg stream, in order (one per chain)."""
    titles = []
    at = data.find(b"OpusTags")
    while at >= 0:
        pos = at + 8
        vendor = int.from_bytes(data[pos : pos + 4], "little")
        pos += 4 + vendor
        count = int.from_bytes(data[pos : pos + 4], "little")
        pos += 4
        for _ in range(count):
            n = int.from_bytes(data[pos : pos + 4], "little")
            item = data[pos + 4 : pos + 4 + n].decode("utf-8", "replace")
            pos += 4 + n
            if item.upper().startswith("TITLE="):
                titles.append(item[6:])
        at = data.find(b"OpusTags", pos)
    return titles


def test_icecast_listeners_hear_the_stream_titles_change_and_a_restart_and_a_wrong_password_are_survived(
    daemon_factory, tmp_path: Path
) -> None:
    require_tool("ffmpeg")
    music = tmp_path / "music"
    write_tracks(music, [("01 first.flac", TRACK_S, 44_100, 21, False), ("02 second.flac", TRACK_S, 44_100, 22, True)])
    ice = IcecastServer(tmp_path / "icecast")
    (tmp_path / "source.pass").write_text(ice.password + "\n")
    (tmp_path / "wrong.pass").write_text("not-the-password\n")
    http_port = free_port()
    daemon = daemon_factory(music, [
        "--http-port", str(http_port),
        "--icecast", f"radio=http://127.0.0.1:{ice.port}{MOUNT}?password_file={tmp_path / 'source.pass'}",
        "--icecast", f"wrong=http://127.0.0.1:{ice.port}/wrong.opus?password_file={tmp_path / 'wrong.pass'}",
    ])
    listeners: list[RawListener] = []
    decoders: list[subprocess.Popen] = []
    listen: subprocess.Popen | None = None
    try:
        ice.start()
        daemon.start()
        with daemon.client() as client:
            daemon.wait_scan(client, 2)
            client.wait_status(lambda s: [o["state"] for o in s["outputs"][1:]] == ["connected", "error"])
            wrong = client.call("outputs")["outputs"][2]
            assert wrong["message"] == (f"Icecast at 127.0.0.1:{ice.port} refused the source password for "
                                        f"/wrong.opus (401): check {tmp_path / 'wrong.pass'}")
            ref_path = tmp_path / "reference.wav"
            listen = subprocess.Popen([sys.executable, "-m", "clients.auralisctl", "--socket", daemon.socket_path,
                                       "listen", "--http", f"127.0.0.1:{http_port}", "--out", str(ref_path)],
                                      cwd=REPO, stderr=subprocess.DEVNULL)
            client.call("queue.add", paths=[str(music / "01 first.flac"), str(music / "02 second.flac")])
            client.call("play")
            client.wait_status(lambda s: s["state"] == "play" and s["elapsed_s"] > 0.5)
            listeners = [RawListener(ice.port) for _ in range(LISTENERS - DECODERS)]
            for listener in listeners:
                listener.start()
            decoded = [tmp_path / f"decoded{i}.wav" for i in range(DECODERS)]
            decoders = [subprocess.Popen(["ffmpeg", "-v", "error", "-nostdin", "-y", "-i",
                                          f"http://127.0.0.1:{ice.port}{MOUNT}", "-t", "9", "-ar", "44100",
                                          "-c:a", "pcm_f32le", str(path)]) for path in decoded]
            peak = 0

            def all_listening() -> bool:
                nonlocal peak
                peak = max(peak, int((ice.source(MOUNT) or {}).get("listeners", 0)))
                return peak >= LISTENERS

            try:
                wait_for(all_listening, 30, "100 listeners")
            except TimeoutError:
                raise AssertionError(f"Icecast counted at most {peak} listeners; errors: "
                                     f"{[x.error for x in listeners if x.error][:3]}") from None
            client.wait_status(lambda s: s["queue_pos"] == 1 and s["elapsed_s"] > 1.0, timeout_s=30)  # a track change
            for proc in decoders:
                assert proc.wait(60) == 0
            time.sleep(0.5)
            for listener in listeners:
                listener.stop.set()
            received = [len(listener.data) for listener in listeners]
            titles = opus_titles(bytes(listeners[0].data))

            ice.stop()  # Icecast restarts: the output says so, reconnects, and a new listener hears it again
            client.wait_status(lambda s: s["outputs"][1]["state"] != "connected")
            time.sleep(0.5)
            ice.start()
            client.wait_status(lambda s: s["outputs"][1]["state"] == "connected", timeout_s=40)
            after = tmp_path / "after_restart.wav"
            subprocess.run(["ffmpeg", "-v", "error", "-nostdin", "-y", "-i", f"http://127.0.0.1:{ice.port}{MOUNT}",
                            "-t", "2", "-c:a", "pcm_f32le", str(after)], check=True, timeout=60)
            status = client.call("status")
            assert status["state"] == "play"  # playback went on through all of it
            listen.send_signal(signal.SIGINT)
            listen.wait(10)
    finally:
        for listener in listeners:
            listener.stop.set()
        for proc in decoders:
            stop_process(proc)
        stop_process(listen)
        ice.remove()
    log = daemon.log()
    assert "Traceback" not in log
    said = [line.split(": ", 2)[-1].split("; retrying")[0] for line in log.splitlines() if "output wrong (icecast" in line]
    assert said and all(a != b for a, b in zip(said, said[1:], strict=False)), said  # a failure is said once, not per retry

    assert all(n > 60_000 for n in received), sorted(received)[:5]  # every listener got the stream (>3 s at 160k)
    assert titles[:2] == ["01 first", "02 second"], titles  # each track's chain names it
    reference, rate = sf.read(ref_path, dtype="float64")
    mono_ref = reference.mean(axis=1)
    for path in decoded:
        heard, heard_rate = sf.read(path, dtype="float64")
        assert heard_rate == rate and heard.shape[0] > 7 * rate
        # Each stretch of sound (silence keeps the mount alive while the player prepares a track) is aligned
        # with the reference on its own; the stretches together must be as loud as the same music there.
        ours, theirs = [], []
        for a, b in sound_runs(heard, rate, min_s=1.0):
            a += int(0.1 * rate)  # Opus's first frames after silence, and Icecast's burst edge
            at = locate(heard[a : a + rate // 2].mean(axis=1), mono_ref)
            n = min(b - a, reference.shape[0] - at)
            ours.append(heard[a : a + n])
            theirs.append(reference[at : at + n])
        assert sum(x.shape[0] for x in ours) > 5 * rate
        heard_lufs = integrated_loudness(np.concatenate(ours), rate)
        ref_lufs = integrated_loudness(np.concatenate(theirs), rate)
        assert abs(heard_lufs - ref_lufs) < 0.5, (heard_lufs, ref_lufs)
    restarted, _ = sf.read(after, dtype="float64")
    assert restarted.shape[0] > 1.5 * 48_000 and np.sqrt(np.mean(restarted**2)) > 1e-3  # music again
