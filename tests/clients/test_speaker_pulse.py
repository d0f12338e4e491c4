"""``auralisctl listen --play`` end to end: a real daemon, ``paplay`` and a private PulseAudio null sink.

The sink's monitor, recorded with ``parec``, must be the stream (found by cross-correlation, same level);
a pause closes the playback stream (no underrun noise) and play reopens it; a 10 s stall of the sound
server (SIGSTOP, SIGCONT) and a daemon restart are survived without touching the speaker; Ctrl-C ends
it with status 0 and no traceback.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from helpers import require_tool
from scipy.signal import correlate
from websockets.sync.client import connect

from auralisd.protocol.audio_frames import decode_audio_frame
from clients import auralisctl
from tests.clients.pulse import SINK, PulseServer, pulse_server
from tests.service.daemon_process import start_daemon, write_library

SCRIPT = Path(auralisctl.__file__)
RATE = 44_100
STALL_S = 10.0  # issue 13: a 10 s stall of the sound server is survived


def record(pulse: PulseServer, seconds: float) -> np.ndarray:
    """``seconds`` of the null sink's monitor, float32 (frames, 2)."""
    proc = subprocess.Popen(["parec", "-d", f"{SINK}.monitor", "--raw", "--format=float32le", f"--rate={RATE}",
                             "--channels=2", "--latency-msec=50"], env=pulse.env, stdout=subprocess.PIPE)
    try:
        want = int(seconds * RATE) * 8
        data = b""
        assert proc.stdout is not None
        while len(data) < want:
            chunk = proc.stdout.read(want - len(data))
            if not chunk:
                break
            data += chunk
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    return np.frombuffer(data[: len(data) // 8 * 8], dtype="<f4").reshape(-1, 2)


def capture_stream(port: int, seconds: float, out: list[np.ndarray]) -> None:
    """The shared stream as a PCM listener hears it, ``seconds`` of it (runs in a thread)."""
    with connect(f"ws://127.0.0.1:{port}/stream", proxy=None, max_size=None) as ws:
        got = 0
        while got < seconds * RATE:
            message = ws.recv(timeout=30)
            if isinstance(message, bytes):
                frame = decode_audio_frame(message, 2)
                out.append(frame.samples)
                got += frame.num_frames


def rms_db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.asarray(x, np.float64) ** 2) + 1e-20))


def wait_for(predicate, what: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def sound_arrives(pulse: PulseServer, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if rms_db(record(pulse, 1.0)) > -40:
            return
    raise AssertionError("no sound reached the sink")


def test_listen_play_on_a_pulseaudio_null_sink(tmp_path: Path) -> None:
    for tool in ("pulseaudio", "pactl", "parec", "paplay"):
        require_tool(tool)
    music = tmp_path / "music"
    write_library(music)
    daemon = start_daemon(tmp_path, music)
    speaker: subprocess.Popen | None = None
    try:
        with pulse_server(tmp_path) as pulse:
            daemon.call("queue.add", {"paths": [str(music)]})
            daemon.call("options.set", {"repeat": True})
            daemon.call("play", {"pos": 0})
            stderr_path = tmp_path / "speaker.err"
            with open(stderr_path, "wb") as err:
                speaker = subprocess.Popen(
                    [sys.executable, str(SCRIPT), "--socket", daemon.socket_path, "listen", "--play", "--player",
                     "paplay", "--http", f"127.0.0.1:{daemon.http_port}"],
                    env=pulse.env, stdout=subprocess.DEVNULL, stderr=err)
            wait_for(lambda: len(pulse.sink_inputs()) == 1, "the speaker's playback stream")
            sound_arrives(pulse)

            # What the sink plays is the stream: aligned by cross-correlation, same level, same waveform.
            heard: list[np.ndarray] = []
            listener = threading.Thread(target=capture_stream, args=(daemon.http_port, 9.0, heard))
            listener.start()
            time.sleep(2.0)  # the capture starts before the recording: the speaker lags by its buffers (~0.3 s)
            recording = record(pulse, 4.0)
            listener.join(timeout=60)
            stream = np.concatenate(heard)
            s, r = stream.mean(axis=1), recording.mean(axis=1)
            c = correlate(s, r, mode="valid", method="fft")
            lag = int(np.argmax(c))
            aligned = stream[lag : lag + recording.shape[0]]
            corr = float(np.corrcoef(aligned.ravel(), recording.ravel())[0, 1])
            assert corr > 0.999, f"the sink did not play the stream (correlation {corr:.4f})"
            assert abs(rms_db(recording) - rms_db(aligned)) < 0.1

            # Pause: the playback stream is closed (no underrun noise); play: it comes back.
            daemon.call("pause")
            wait_for(lambda: pulse.sink_inputs() == [], "the sink closed on pause", timeout_s=10)
            assert rms_db(record(pulse, 0.5)) < -90
            daemon.call("play")
            wait_for(lambda: len(pulse.sink_inputs()) == 1, "the sink reopened on play", timeout_s=10)
            sound_arrives(pulse)

            # A 10 s stall of the sound server.
            pulse.stop_signal(signal.SIGSTOP)
            time.sleep(STALL_S)
            pulse.stop_signal(signal.SIGCONT)
            sound_arrives(pulse)
            assert speaker.poll() is None

            # A daemon restart on the same address: the speaker reconnects by itself.
            port = daemon.http_port
            assert daemon.stop() == 0
            daemon = start_daemon(tmp_path, music, http_port=port)
            if daemon.call("status")["state"] != "play":
                daemon.call("play")
            sound_arrives(pulse, timeout_s=45)
            assert speaker.poll() is None

            # Ctrl-C: exit 0, no traceback, the player program gone.
            speaker.send_signal(signal.SIGINT)
            assert speaker.wait(timeout=15) == 0
            errors = stderr_path.read_text(errors="replace")
            assert "Traceback" not in errors, errors
            wait_for(lambda: pulse.sink_inputs() == [], "paplay gone after Ctrl-C", timeout_s=10)
    finally:
        if speaker is not None and speaker.poll() is None:
            speaker.kill()
            speaker.wait()
        daemon.stop()


def test_listen_play_format_opus_plays_48_khz(tmp_path: Path) -> None:
    """``--play --format opus``: the Opus frames decoded with PyAV and played at 48 kHz."""
    for tool in ("pulseaudio", "pactl", "parec", "paplay"):
        require_tool(tool)
    music = tmp_path / "music"
    write_library(music)
    daemon = start_daemon(tmp_path, music)
    speaker: subprocess.Popen | None = None
    try:
        with pulse_server(tmp_path) as pulse:
            daemon.call("queue.add", {"paths": [str(music)]})
            daemon.call("options.set", {"repeat": True})
            daemon.call("play", {"pos": 0})
            stderr_path = tmp_path / "speaker.err"
            with open(stderr_path, "wb") as err:
                speaker = subprocess.Popen(
                    [sys.executable, str(SCRIPT), "--socket", daemon.socket_path, "listen", "--play", "--player",
                     "paplay", "--format", "opus", "--http", f"127.0.0.1:{daemon.http_port}"],
                    env=pulse.env, stdout=subprocess.DEVNULL, stderr=err)
            wait_for(lambda: len(pulse.sink_inputs()) == 1, "the speaker's playback stream")
            assert "48000Hz" in pulse.pactl("list", "sink-inputs")
            sound_arrives(pulse)
            speaker.send_signal(signal.SIGINT)
            assert speaker.wait(timeout=15) == 0
            assert "Traceback" not in stderr_path.read_text(errors="replace")
    finally:
        if speaker is not None and speaker.poll() is None:
            speaker.kill()
            speaker.wait()
        daemon.stop()
