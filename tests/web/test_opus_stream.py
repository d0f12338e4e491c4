"""``?format=opus`` on ``/session`` and ``/stream`` against a real daemon, decoded as a third-party client would.

The client is the one docs/protocol.md describes (reset the decoder on RESET, drop ``skip``, keep ``keep``)
over PyAV's Opus decoder. The decoded audio must equal the PCM stream resampled to 48 kHz: the same
length, aligned to the sample, loudness within 0.5 LU; a seek resets the stream, a preset change does
not (no click at its crossfade); every ``/stream`` Opus listener gets the same bytes (one shared encoder).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
from scipy.signal import correlate
from websockets.sync.client import connect

from auralis.audio import write_audio
from auralis.loudness import integrated_loudness
from auralis.opus import OpusDecoder
from auralis.synth import make_music
from auralisd.protocol.audio_frames import OpusFrame, decode_opus_frame, to_opus_frames
from tests.helpers import resample_reference
from tests.web.daemon import Capture, Daemon, receive_into, running_daemon, track_ids
from tests.web.test_streaming import offline_master

SAMPLE_RATE = 44_100


class OpusCapture:
    """Events and decoded Opus messages of one connection, in order."""

    def __init__(self) -> None:
        self.events: list[dict] = []
        self.frames: list[OpusFrame] = []
        self.audio: list[np.ndarray] = []
        self.raw: list[bytes] = []
        self.order: list[tuple[str, int]] = []  # ("event", i) / ("frame", i): what arrived, in order
        self._decoder: OpusDecoder | None = None

    def add(self, message: str | bytes) -> None:
        if isinstance(message, str):
            self.events.append(json.loads(message))
            self.order.append(("event", len(self.events) - 1))
            return
        frame = decode_opus_frame(message)
        if frame.reset or self._decoder is None:
            self._decoder = OpusDecoder(pre_skip=0)
        decoded = np.concatenate([self._decoder.decode(p) for p in frame.packets])
        self.frames.append(frame)
        self.raw.append(bytes(message))
        self.audio.append(decoded[frame.skip : frame.skip + frame.keep])
        self.order.append(("frame", len(self.frames) - 1))

    def epochs_out_of_order(self) -> list[str]:
        """Messages that break the order of one stream: audio of an epoch after a later epoch's
        ``audio_stream_start``, or audio of an epoch before its own ``audio_stream_start``."""
        announced: list[int] = []
        wrong = []
        for kind, i in self.order:
            if kind == "event":
                if self.events[i]["type"] == "audio_stream_start":
                    announced.append(self.events[i]["stream_epoch"])
                continue
            epoch = self.frames[i].stream_epoch
            if not announced or announced[-1] != epoch:
                wrong.append(f"message {i} of epoch {epoch} (offset {self.frames[i].offset_frames}) after the "
                             f"start of epoch {announced[-1] if announced else None}")
        return wrong

    def receive(self, ws, until, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not until(self):
            self.add(ws.recv(timeout=max(0.01, deadline - time.monotonic())))

    def epoch_audio(self, epoch: int) -> tuple[int, np.ndarray]:
        pairs = [(f, a) for f, a in zip(self.frames, self.audio, strict=True) if f.stream_epoch == epoch]
        return pairs[0][0].offset_frames, np.concatenate([a for _, a in pairs])

    def ended(self) -> bool:
        return bool(self.events) and self.events[-1]["type"] in ("audio_stream_end", "audio_stream_error")


def to_48k(x: np.ndarray) -> np.ndarray:
    return resample_reference(x, 44_100, 48_000)


def lag_of(a: np.ndarray, b: np.ndarray) -> int:
    n = min(a.shape[0], b.shape[0])
    return int(np.argmax(correlate(a[:n, 0], b[:n, 0], mode="full", method="fft"))) - (n - 1)


def test_burst_opus_session_decodes_to_the_master(daemon: Daemon, tmp_path: Path) -> None:
    ids = track_ids(daemon)
    capture = OpusCapture()
    with connect(daemon.ws + "/session?format=opus", proxy=None, max_size=None) as ws:
        ws.send(json.dumps({"type": "play_enhanced", "track_id": ids["dynamic.wav"], "preset": "warm",
                            "intensity": 0.7, "pace": "burst"}))
        capture.receive(ws, OpusCapture.ended, timeout_s=120)
    start = next(e for e in capture.events if e["type"] == "audio_stream_start")
    assert (start["format"], start["sample_rate"], start["source_sample_rate"]) == ("opus", 48_000, SAMPLE_RATE)
    assert start["bitrate_bps"] == 160_000  # the default opus_bitrate_kbps
    assert capture.events[-1]["reason"] == "end"
    reference = offline_master(tmp_path, daemon.music_dir / "dynamic.wav", "warm", 0.7)
    assert start["num_frames"] == to_opus_frames(reference.shape[0], SAMPLE_RATE)
    assert capture.frames[0].reset and capture.frames[0].skip == 312 and capture.frames[0].offset_frames == 0
    assert sum(f.reset for f in capture.frames) == 1
    offset, audio = capture.epoch_audio(capture.frames[0].stream_epoch)
    ref48 = to_48k(reference)
    assert audio.shape == ref48.shape  # every sample once: pre-skip dropped, end padding trimmed
    assert lag_of(audio, ref48) == 0
    assert abs(integrated_loudness(audio, 48_000) - integrated_loudness(reference, SAMPLE_RATE)) < 0.5
    bytes_per_s = sum(len(r) for r in capture.raw) / (reference.shape[0] / SAMPLE_RATE)
    assert bytes_per_s * 8 < 200_000  # goal: <= 200 kbit/s (f32 is 2822 kbit/s)


def test_opus_session_seek_resets_and_preset_change_continues(daemon: Daemon, tmp_path: Path) -> None:
    ids = track_ids(daemon)
    capture = OpusCapture()

    def epoch_messages(n: int):
        return lambda c: bool(c.frames) and sum(f.stream_epoch == c.frames[-1].stream_epoch for f in c.frames) >= n

    with connect(daemon.ws + "/session?format=opus", proxy=None, max_size=None) as ws:
        ws.send(json.dumps({"type": "play_enhanced", "track_id": ids["crushed.wav"], "preset": "warm"}))
        capture.receive(ws, epoch_messages(8))
        first = capture.frames[-1].stream_epoch
        ws.send(json.dumps({"type": "seek", "position_s": 6.0}))
        capture.receive(ws, lambda c: c.frames[-1].stream_epoch != first and epoch_messages(8)(c))
        seek = capture.frames[-1].stream_epoch
        ws.send(json.dumps({"type": "set_preset", "preset": "bright"}))
        capture.receive(ws, lambda c: c.frames[-1].stream_epoch != seek and epoch_messages(12)(c))
        preset = capture.frames[-1].stream_epoch
        ws.send(json.dumps({"type": "stop"}))
        capture.receive(ws, lambda c: c.events[-1]["type"] == "audio_stream_end")
    first_of = {e: next(f for f in capture.frames if f.stream_epoch == e) for e in (first, seek, preset)}
    assert first_of[seek].reset and first_of[seek].offset_frames == to_opus_frames(6 * SAMPLE_RATE, SAMPLE_RATE)
    assert not first_of[preset].reset  # the same Opus stream goes on through the crossfade
    starts = {e["stream_epoch"]: e for e in capture.events if e["type"] == "audio_stream_start"}
    assert 0 <= first_of[preset].offset_frames - starts[preset]["offset_frames"] < 960

    # From the seek to the stop, one continuous decoded stream: warm, the 50 ms crossfade, bright.
    pairs = [(f, a) for f, a in zip(capture.frames, capture.audio, strict=True) if f.stream_epoch in (seek, preset)]
    for (a, _), (b, _) in zip(pairs, pairs[1:], strict=False):
        assert b.offset_frames == a.offset_frames + a.keep  # no gap, no repeat across the epoch change
    audio = np.concatenate([x for _, x in pairs])
    origin = pairs[0][0].offset_frames
    warm = to_48k(offline_master(tmp_path, daemon.music_dir / "crushed.wav", "warm", 1.0))
    bright = to_48k(offline_master(tmp_path, daemon.music_dir / "crushed.wav", "bright", 1.0))
    switch = starts[preset]["offset_frames"] - origin
    fade = round(0.05 * 48_000)
    expected = np.concatenate([warm[origin : origin + switch], np.zeros((fade, 2)),
                               bright[origin + switch + fade : origin + audio.shape[0]]])
    ramp = np.linspace(0, 1, fade, endpoint=False)[:, None]
    expected[switch : switch + fade] = (warm[origin + switch : origin + switch + fade] * (1 - ramp)
                                        + bright[origin + switch : origin + switch + fade] * ramp)
    around = slice(max(0, switch - 4800), switch + fade + 4800)  # 100 ms either side of the crossfade
    err = audio[around] - expected[around]
    snr_db = 10 * np.log10(np.mean(expected[around] ** 2) / np.mean(err**2))
    assert snr_db > 15, f"the Opus stream is not the crossfaded master around the preset change ({snr_db:.1f} dB)"
    worst = float(np.max(np.abs(err)))
    assert worst < 0.25, f"a click at the preset change: {worst:.3f}"


def test_opus_session_sends_the_old_epochs_last_packet_before_a_preset_changes_start(daemon: Daemon) -> None:
    """A preset change mid-play continues the Opus stream, and the packet that holds the boundary belongs to the
    old epoch: it must reach the client before the new epoch's ``audio_stream_start`` (a client that takes the
    event's epoch as the current one would otherwise drop it as stale, or file it under the new epoch)."""
    ids = track_ids(daemon)
    capture = OpusCapture()

    def new_epoch_playing(before: set[int]):
        """A start of an epoch not in ``before``, and 4 messages of the epoch now playing, itself new."""
        def done(c: OpusCapture) -> bool:
            last = c.frames[-1].stream_epoch
            return (last not in before and sum(f.stream_epoch == last for f in c.frames) >= 4
                    and any(e["type"] == "audio_stream_start" and e["stream_epoch"] == last for e in c.events))
        return done

    with connect(daemon.ws + "/session?format=opus", proxy=None, max_size=None) as ws:
        ws.send(json.dumps({"type": "play_enhanced", "track_id": ids["dynamic.wav"], "preset": "warm"}))
        capture.receive(ws, lambda c: len(c.frames) >= 6)
        first = capture.frames[0].stream_epoch
        for preset in ("bright", "punchy"):  # two changes: each one's boundary packet
            ws.send(json.dumps({"type": "set_preset", "preset": preset}))
            before = {e["stream_epoch"] for e in capture.events if e["type"] == "audio_stream_start"}
            capture.receive(ws, new_epoch_playing(before))
        ws.send(json.dumps({"type": "stop"}))
        capture.receive(ws, lambda c: c.events[-1]["type"] == "audio_stream_end")
    starts = [e["stream_epoch"] for e in capture.events if e["type"] == "audio_stream_start"]
    assert len(starts) == 3 and starts[0] == first
    assert not any(f.reset for f in capture.frames[1:])  # one Opus stream throughout: the changes continue it
    assert capture.epochs_out_of_order() == []
    for a, b in zip(capture.frames, capture.frames[1:], strict=False):
        assert b.offset_frames == a.offset_frames + a.keep  # nothing lost or repeated across the changes


def test_stream_opus_listeners_share_one_encoder_and_match_pcm(daemon: Daemon) -> None:
    ids = track_ids(daemon)
    with daemon.control() as control:
        control.call("queue.clear")
        control.call("queue.add", {"track_ids": [ids["dynamic.wav"]]})
        control.call("options.set", {"repeat": True})
        control.call("play", {"pos": 0})
    listeners = [OpusCapture() for _ in range(3)]
    pcm = Capture()
    errors: list[BaseException] = []

    def run_opus(capture: OpusCapture) -> None:
        try:
            with connect(daemon.ws + "/stream?format=opus", proxy=None, max_size=None) as ws:
                capture.receive(ws, lambda c: sum(f.keep for f in c.frames) >= 6 * 48_000, timeout_s=90)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    try:
        threads = [threading.Thread(target=run_opus, args=(c,)) for c in listeners]
        for t in threads:
            t.start()
        with connect(daemon.ws + "/stream?format=f32", proxy=None, max_size=None) as ws:
            receive_into(ws, pcm, until=lambda c: sum(f.num_frames for f in c.frames) >= 7 * SAMPLE_RATE, timeout_s=90)
        for t in threads:
            t.join(timeout=120)
    finally:
        with daemon.control() as control:
            control.call("stop")
            control.call("options.set", {"repeat": False})
    assert not errors, errors
    # One shared encoder: the same (epoch, sequence) is the same bytes for every listener.
    by_key = [{(f.stream_epoch, f.sequence): r for f, r in zip(c.frames, c.raw, strict=True)} for c in listeners]
    common = set(by_key[0]) & set(by_key[1]) & set(by_key[2])
    assert len(common) > 20
    assert all(by_key[0][k] == by_key[1][k] == by_key[2][k] for k in common)

    # Against the PCM listener: the same audio at the same (48 kHz) offsets, loudness within 0.5 LU.
    capture = listeners[0]
    epoch = capture.frames[-1].stream_epoch
    pcm_frames = [f for f in pcm.frames if f.stream_epoch == epoch]
    assert pcm_frames, "the PCM and Opus listeners heard different epochs"
    pcm_audio = np.concatenate([f.samples for f in pcm_frames])
    pcm48 = to_48k(pcm_audio)
    pcm_origin = to_opus_frames(pcm_frames[0].offset_frames, SAMPLE_RATE)
    origin, audio = capture.epoch_audio(epoch)
    lo = max(origin, pcm_origin) + 4800  # away from the resampling edges of the PCM excerpt
    hi = min(origin + audio.shape[0], pcm_origin + pcm48.shape[0]) - 4800
    assert hi - lo > 2 * 48_000
    a = audio[lo - origin : hi - origin]
    b = pcm48[lo - pcm_origin : hi - pcm_origin]
    assert lag_of(a, b) == 0
    assert abs(integrated_loudness(a, 48_000) - integrated_loudness(b, 48_000)) < 0.5


def test_opus_bitrate_setting_reaches_the_encoder(tmp_path: Path) -> None:
    """``--opus-bitrate-kbps 64``: announced in ``audio_stream_start`` and what the wire carries."""
    music = tmp_path / "music"
    music.mkdir()
    write_audio(music / "song.wav", make_music(8.0, SAMPLE_RATE, seed=4), SAMPLE_RATE)
    with running_daemon(tmp_path, music, "--opus-bitrate-kbps", "64", workers=1) as daemon:
        capture = OpusCapture()
        with connect(daemon.ws + "/session?format=opus", proxy=None, max_size=None) as ws:
            ws.send(json.dumps({"type": "play_enhanced", "track_id": track_ids(daemon)["song.wav"], "pace": "burst"}))
            capture.receive(ws, OpusCapture.ended, timeout_s=120)
    start = next(e for e in capture.events if e["type"] == "audio_stream_start")
    assert start["bitrate_bps"] == 64_000
    kbit_s = 8 * sum(len(r) for r in capture.raw) / 8.0 / 1000
    assert 50 < kbit_s < 80
