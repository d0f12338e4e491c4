"""Streaming against a real daemon process, with clients that are not trio-websocket (``websockets``).

- ``/session`` in burst mode delivers exactly ``auralis master`` of the same file, preset and intensity.
- Across a seek and a preset change: every epoch is continuous, the seek lands exactly, the preset
  change neither skips nor repeats a frame, and the audio on each side equals the offline master.
- ``/control`` carries the control protocol; garbage closes only that connection.
- 50 ``/stream`` listeners each hear the same 10 s of the shared stream with no gap and none is dropped
  for falling behind; a frozen one is dropped (real-time lateness is measured in ``bench/bench_stream.py``).

Waits are on what the daemon sends (frames, events, the close of a connection); each deadline is a
generous safety bound that fails the test, never one that paces it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from auralisd.playback.mixer import CROSSFADE_S
from auralisd.protocol.audio_frames import decode_audio_frame
from tests.web.daemon import Capture, Daemon, RpcFailure, assert_continuous, receive_into, track_ids

SAMPLE_RATE = 44_100
FLOAT32_TOLERANCE = 1e-6  # a few float32 ULPs at full scale


def offline_master(tmp: Path, source: Path, preset: str, intensity: float) -> np.ndarray:
    """``auralis master`` run as a user would, read back as float32."""
    out = tmp / f"{source.stem}-{preset}-{intensity}.wav"
    subprocess.run([sys.executable, "-m", "auralis.cli", "master", str(source), str(out), "--preset", preset,
                    "--intensity", str(intensity)], check=True, capture_output=True, timeout=300)
    data, rate = sf.read(out, dtype="float32", always_2d=True)
    assert rate == SAMPLE_RATE
    return data


def _ended(capture: Capture) -> bool:
    return bool(capture.events) and capture.events[-1]["type"] in ("audio_stream_end", "audio_stream_error")


def test_burst_session_equals_offline_master(daemon: Daemon, tmp_path: Path) -> None:
    ids = track_ids(daemon)
    source = daemon.music_dir / "dynamic.wav"
    capture = Capture()
    with connect(daemon.ws + "/session", proxy=None, max_size=None) as ws:
        ws.send(json.dumps({"type": "play_enhanced", "track_id": ids["dynamic.wav"], "preset": "warm",
                            "intensity": 0.7, "pace": "burst"}))
        receive_into(ws, capture, until=_ended, timeout_s=120)
    types = capture.event_types()
    assert capture.events[-1] == {"type": "audio_stream_end", "reason": "end", "stream_epoch": 1}
    assert types.index("mastering_status") < types.index("lwrp_decision") < types.index("audio_stream_start")
    start = capture.events[types.index("audio_stream_start")]
    assert (start["sample_rate"], start["channels"], start["format"], start["preset"], start["intensity"]) == \
        (SAMPLE_RATE, 2, "f32", "warm", 0.7)
    first_frame = next(i for kind, i in capture.order if kind == "frame")
    assert capture.order.index(("frame", first_frame)) > capture.order.index(("event", types.index("audio_stream_start")))
    assert_continuous(capture.frames)
    assert capture.frames[0].offset_frames == 0
    assert all(441 <= f.num_frames <= 4410 for f in capture.frames[:-1])  # 10-100 ms per frame
    streamed = capture.audio()
    reference = offline_master(tmp_path, source, "warm", 0.7)
    assert streamed.shape == reference.shape
    error = float(np.max(np.abs(streamed - reference)))
    assert error <= FLOAT32_TOLERANCE, f"stream differs from `auralis master` by {error:.3g}"
    assert float(np.max(np.abs(reference))) > 0.1  # a real signal, not two silences


def test_seek_and_preset_change_neither_skip_nor_repeat(daemon: Daemon, tmp_path: Path) -> None:
    ids = track_ids(daemon)
    source = daemon.music_dir / "crushed.wav"
    capture = Capture()

    def frames_in_epoch_after(n: int):
        def done(c: Capture) -> bool:
            return len(c.frames) > 0 and sum(f.stream_epoch == c.frames[-1].stream_epoch for f in c.frames) >= n
        return done

    with connect(daemon.ws + "/session", proxy=None, max_size=None) as ws:
        ws.send(json.dumps({"type": "play_enhanced", "track_id": ids["crushed.wav"], "preset": "warm",
                            "intensity": 1.0}))  # realtime pace
        receive_into(ws, capture, until=frames_in_epoch_after(8))
        first_epoch = capture.frames[-1].stream_epoch
        ws.send(json.dumps({"type": "seek", "position_s": 6.0}))
        receive_into(ws, capture, until=lambda c: c.frames[-1].stream_epoch != first_epoch
                     and frames_in_epoch_after(8)(c))
        seek_epoch = capture.frames[-1].stream_epoch
        ws.send(json.dumps({"type": "set_preset", "preset": "bright"}))
        receive_into(ws, capture, until=lambda c: c.frames[-1].stream_epoch != seek_epoch
                     and frames_in_epoch_after(8)(c))
        preset_epoch = capture.frames[-1].stream_epoch
        ws.send(json.dumps({"type": "stop"}))
        receive_into(ws, capture, until=lambda c: c.events[-1]["type"] == "audio_stream_end")
    epochs = capture.by_epoch()
    summary = f"events {capture.event_types()}, epochs " + str(
        {e: (f[0].offset_frames, f[-1].offset_frames + f[-1].num_frames, len(f)) for e, f in epochs.items()})
    assert capture.events[-1]["reason"] == "stopped", summary
    assert list(epochs) == [first_epoch, seek_epoch, preset_epoch] and first_epoch < seek_epoch < preset_epoch, summary
    for frames in epochs.values():
        assert_continuous(frames)
    starts = {e["stream_epoch"]: e for e in capture.events if e["type"] == "audio_stream_start"}
    for epoch, frames in epochs.items():
        assert starts[epoch]["offset_frames"] == frames[0].offset_frames  # announced before its audio
    assert epochs[first_epoch][0].offset_frames == 0
    assert epochs[seek_epoch][0].offset_frames == round(6.0 * SAMPLE_RATE)  # the seek lands exactly
    last = epochs[seek_epoch][-1]
    assert epochs[preset_epoch][0].offset_frames == last.offset_frames + last.num_frames  # no gap, no repeat
    assert starts[preset_epoch]["preset"] == "bright"

    warm = offline_master(tmp_path, source, "warm", 1.0)
    bright = offline_master(tmp_path, source, "bright", 1.0)
    for epoch, reference in ((first_epoch, warm), (seek_epoch, warm)):
        a = epochs[epoch][0].offset_frames
        got = capture.audio(epoch)
        assert float(np.max(np.abs(got - reference[a:a + got.shape[0]]))) <= FLOAT32_TOLERANCE
    a = epochs[preset_epoch][0].offset_frames
    got = capture.audio(preset_epoch)
    fade = round(CROSSFADE_S * SAMPLE_RATE)
    assert float(np.max(np.abs(got[fade:] - bright[a + fade:a + got.shape[0]]))) <= FLOAT32_TOLERANCE
    # The crossfade (the one every player uses) starts on the old plan and ends on the new one: no step at the switch.
    assert float(np.max(np.abs(got[0] - warm[a]))) < 0.05 * float(np.max(np.abs(warm[a - 100:a + 100])) + 1e-3)


def test_session_rejects_bad_commands_and_garbage(daemon: Daemon) -> None:
    ids = track_ids(daemon)
    with connect(daemon.ws + "/session", proxy=None) as ws:
        ws.send(json.dumps({"type": "play_enhanced", "track_id": 999_999}))
        assert json.loads(ws.recv(timeout=10))["code"] == "not_found"
        ws.send(json.dumps({"type": "play_enhanced", "track_id": ids["dynamic.wav"], "preset": "loudest"}))
        assert json.loads(ws.recv(timeout=10))["code"] == "unknown_preset"
        ws.send(json.dumps({"type": "seek", "position_s": 1.0}))
        assert json.loads(ws.recv(timeout=10))["code"] == "invalid_params"  # nothing playing yet
        ws.send("{not json")
        with pytest.raises(ConnectionClosed):
            while True:
                ws.recv(timeout=10)
        assert ws.close_code == 1008
    with connect(daemon.ws + "/session", proxy=None) as ws:
        ws.send("x" * 10_000)  # over the /session message limit
        with pytest.raises(ConnectionClosed):
            while True:
                ws.recv(timeout=10)
        assert ws.close_code == 1009
    with connect(daemon.ws + "/session?format=s16", proxy=None, max_size=None) as ws:
        ws.send(json.dumps({"type": "play_enhanced", "track_id": ids["dynamic.wav"], "pace": "burst"}))
        capture = Capture()
        receive_into(ws, capture, fmt="s16", until=lambda c: len(c.frames) >= 5)
        start = next(e for e in capture.events if e["type"] == "audio_stream_start")
        assert start["format"] == "s16"
        assert all(f.samples.dtype == np.float32 and np.max(np.abs(f.samples)) <= 1.0 for f in capture.frames)


def test_control_over_websocket(daemon: Daemon) -> None:
    with daemon.control() as control:
        assert control.call("ping") == "pong"
        presets = {p["name"] for p in control.call("preset.list")["presets"]}
        assert presets == {"adaptive", "gentle", "warm", "bright", "punchy"}
        with pytest.raises(RpcFailure) as info:
            control.call("no.such.method")
        assert info.value.code == "unknown_method"
        with connect(daemon.ws + "/control", proxy=None) as bad:
            bad.send(b"\xc1\xc1\xc1 not msgpack")
            with pytest.raises(ConnectionClosed):
                while True:
                    bad.recv(timeout=10)
        assert control.call("ping") == "pong"  # the other connection is unaffected
    with pytest.raises(Exception) as refused:
        connect(daemon.ws + "/control", proxy=None, origin="http://evil.example")
    assert "403" in str(refused.value)


# ------------------------------------------------------------------------------------------------ listeners
LISTENERS = 50
LISTEN_AUDIO_S = 10.0  # each listener stays until it heard this much audio
LISTEN_DEADLINE_S = 180.0  # safety bound only: a listener that has not heard it by then fails the test


async def _listen(url: str, audio_s: float) -> tuple[list[tuple[int, int, int, int]], list[str]]:
    """Frame headers and event types, until ``audio_s`` seconds of audio arrived (the stream's own pace)."""
    import websockets

    headers: list[tuple[int, int, int, int]] = []
    events: list[str] = []
    heard = 0
    async with websockets.connect(url, proxy=None, max_size=None) as ws:
        while heard < audio_s * SAMPLE_RATE:
            message = await ws.recv()  # a listener the daemon dropped ends here (ConnectionClosed)
            if isinstance(message, str):
                events.append(json.loads(message)["type"])
                continue
            frame = decode_audio_frame(message, 2)
            headers.append((frame.stream_epoch, frame.sequence, frame.offset_frames, frame.num_frames))
            heard += frame.num_frames
    return headers, events


def _frozen_listener(port: int, path: str = "/stream") -> socket.socket:
    """A client that completes the handshake and then never reads (tiny receive buffer)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    sock.connect(("127.0.0.1", port))
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101")
    return sock


def _drained_to_eof(sock: socket.socket, timeout_s: float) -> bool:
    """Read whatever is queued; True when the server closed the connection."""
    sock.settimeout(timeout_s)
    try:
        while sock.recv(1 << 20):
            pass
        return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def _masked_text_frame(text: str) -> bytes:
    """One client-to-server WebSocket text frame (RFC 6455 5.2: clients mask)."""
    payload = text.encode()
    assert len(payload) < 126
    key = b"\x01\x02\x03\x04"
    return bytes([0x81, 0x80 | len(payload)]) + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def test_a_frozen_private_session_is_closed_and_frees_its_slot(daemon: Daemon) -> None:
    """A /session peer that stops reading is closed after the send timeout (it held a slot forever before)."""
    ids = track_ids(daemon)
    sock = _frozen_listener(daemon.port, path="/session")
    try:
        sock.sendall(_masked_text_frame(json.dumps({"type": "play_enhanced", "track_id": ids["dynamic.wav"],
                                                     "pace": "burst"})))
        # The peer must stay frozen (not read) until the daemon gives up on it, so no socket event can say
        # when: a poll of the daemon's log (another process), whose deadline is a safety bound only.
        deadline = time.monotonic() + 30.0
        while "took no message" not in daemon.log():
            assert time.monotonic() < deadline, "the frozen /session peer was never given up on"
            time.sleep(0.1)
        assert _drained_to_eof(sock, timeout_s=10.0), "the frozen /session peer was never closed"
    finally:
        sock.close()


def test_fifty_listeners_hear_one_stream_and_only_a_frozen_one_is_dropped(daemon: Daemon) -> None:
    """50 listeners each hear the same stream with no gap, none falls far enough behind to be dropped
    (the player drops a listener 80 blocks = 4 s behind), and a frozen one is dropped without holding up
    anyone. Event-driven: every listener stays until it heard :data:`LISTEN_AUDIO_S` of audio."""
    ids = track_ids(daemon)
    with daemon.control() as control:
        control.call("queue.clear")
        control.call("queue.add", {"track_ids": [ids["dynamic.wav"], ids["crushed.wav"]]})
        control.call("options.set", {"repeat": True})
        dropped_before = control.call("status")["player"]["dropped_subscribers"]
        control.call("play", {"pos": 0})
    frozen = _frozen_listener(daemon.port)

    async def everyone():
        async with asyncio.timeout(LISTEN_DEADLINE_S):
            return await asyncio.gather(*[_listen(daemon.ws + "/stream", LISTEN_AUDIO_S) for _ in range(LISTENERS)])

    try:
        results = asyncio.run(everyone())
        # dropped once its 4 s buffer and the socket buffers fill; 60 s is a safety bound only
        assert _drained_to_eof(frozen, timeout_s=60.0), "the frozen listener was never dropped"
        with daemon.control() as control:
            dropped = control.call("status")["player"]["dropped_subscribers"] - dropped_before
    finally:
        frozen.close()
        with daemon.control() as control:
            control.call("stop")
            control.call("options.set", {"repeat": False})
    assert dropped == 1, f"{dropped} listeners dropped for falling behind; only the frozen one should be"
    assert "fell behind" in daemon.log()  # the player's note when it dropped the frozen listener
    # Which 50 ms player blocks each listener got (frames pair blocks from wherever a listener joined): in the
    # order of the one stream (epoch, offset), each listener heard every block from its first to its last.
    heard = [{(h[0], o) for h in headers for o in range(h[2], h[2] + h[3], 2205)} for headers, _ in results]
    stream = sorted(set.union(*heard))
    for blocks in heard:
        first, last = stream.index(min(blocks)), stream.index(max(blocks))
        assert blocks == set(stream[first : last + 1]), "a listener missed blocks the others heard"
    for headers, events in results:
        assert "audio_stream_start" in events
        by_epoch: dict[int, list[tuple[int, int, int, int]]] = {}
        for h in headers:
            by_epoch.setdefault(h[0], []).append(h)
        for frames in by_epoch.values():
            for a, b in itertools.pairwise(frames):
                assert (b[1], b[2]) == (a[1] + 1, a[2] + a[3]), "gap or repeat inside an epoch"


def test_session_original_variant_is_level_matched(daemon: Daemon) -> None:
    """``?variant=original``: the unprocessed file at the same offsets, gained to the plan's output loudness."""
    ids = track_ids(daemon)
    capture = Capture()
    with connect(daemon.ws + "/session?variant=original", proxy=None, max_size=None) as ws:
        ws.send(json.dumps({"type": "play_enhanced", "track_id": ids["crushed.wav"], "preset": "gentle",
                            "pace": "burst"}))
        receive_into(ws, capture, until=_ended, timeout_s=120)
    start = next(e for e in capture.events if e["type"] == "audio_stream_start")
    decision = next(e for e in capture.events if e["type"] == "lwrp_decision")
    assert start["variant"] == "original"
    assert start["gain_db"] == pytest.approx(decision["output_lufs"] - decision["input_lufs"], abs=1e-9)
    assert start["gain_db"] < -3.0  # a crushed track is turned down to the gentle target, not left louder
    assert_continuous(capture.frames)
    source, rate = sf.read(daemon.music_dir / "crushed.wav", dtype="float32", always_2d=True)
    assert rate == SAMPLE_RATE
    expected = source * np.float32(10.0 ** (start["gain_db"] / 20.0))
    got = capture.audio()
    assert got.shape == expected.shape
    assert float(np.max(np.abs(got - expected))) <= FLOAT32_TOLERANCE


def test_session_pause_and_resume_continue_where_they_stopped(daemon: Daemon) -> None:
    ids = track_ids(daemon)
    capture = Capture()
    with connect(daemon.ws + "/session", proxy=None, max_size=None) as ws:
        ws.send(json.dumps({"type": "play_enhanced", "track_id": ids["dynamic.wav"], "preset": "punchy"}))
        receive_into(ws, capture, until=lambda c: len(c.frames) >= 6)
        ws.send(json.dumps({"type": "pause"}))
        receive_into(ws, capture, until=lambda c: c.events[-1]["type"] == "audio_stream_end")
        assert capture.events[-1]["reason"] == "paused"
        paused_at = len(capture.frames)
        with pytest.raises(TimeoutError):  # nothing while paused
            receive_into(ws, capture, until=lambda c: len(c.frames) > paused_at, timeout_s=0.7)
        ws.send(json.dumps({"type": "resume"}))
        receive_into(ws, capture, until=lambda c: len(c.frames) >= paused_at + 6)
        ws.send(json.dumps({"type": "stop"}))
        receive_into(ws, capture, until=lambda c: c.events[-1]["type"] == "audio_stream_end")
    assert len(capture.by_epoch()) == 1  # resuming continues the epoch: same sequence, next offset
    assert_continuous(capture.frames)


@pytest.mark.parametrize("path", ["/session", "/session?format=opus", "/stream", "/stream?format=opus"])
def test_peers_that_vanish_mid_send_are_quiet(daemon: Daemon, path: str) -> None:
    """A /session or /stream peer that resets its connection while audio is being sent ends its own
    session and nothing else: no ERROR, no traceback (the peer-gone error arrived wrapped in the
    session's exception group and was logged as a 50-line ERROR per disconnect), and status.streams
    counts it gone."""
    ids = track_ids(daemon)
    shared = path.startswith("/stream")
    counter = "listeners" if shared else "private_sessions"
    if shared:
        with daemon.control() as control:
            control.call("queue.clear")
            control.call("queue.add", {"track_ids": [ids["dynamic.wav"]]})
            control.call("options.set", {"repeat": True})
            control.call("play", {"pos": 0})
    log_before = len(daemon.log())
    try:
        for _ in range(3):
            sock = _frozen_listener(daemon.port, path=path)
            if not shared:
                sock.sendall(_masked_text_frame(json.dumps({"type": "play_enhanced", "track_id": ids["dynamic.wav"],
                                                             "pace": "burst"})))
            received = 0
            while received < 40_000:  # audio is flowing: the daemon is in the middle of sending
                received += len(sock.recv(65536))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close() sends RST
            sock.close()
        with daemon.control() as control:
            # The daemon is another process: poll its own count; the deadline is a safety bound only.
            deadline = time.monotonic() + 30.0
            while control.call("status")["streams"][counter]:
                assert time.monotonic() < deadline, f"the vanished {path} peers were never let go"
                time.sleep(0.05)
    finally:
        if shared:
            with daemon.control() as control:
                control.call("stop")
                control.call("options.set", {"repeat": False})
    new_log = daemon.log()[log_before:]
    assert "ERROR" not in new_log and "Traceback" not in new_log, new_log[:3000]


def test_a_seek_bursts_the_lead_to_a_stream_listener_and_lead_0_gets_each_frame_at_its_play_time(daemon: Daemon) -> None:
    """At a seek the shared player sends its lead (``lead_s`` in ``audio_stream_start``, 0.5 s) of the new
    position at once to a ``/stream`` listener, which holds a pre-buffer at once; a ``/stream?lead=0`` listener
    (a recorder, a speaker) gets the same frames each at its play time, so its buffer never grows, and never the
    audio mixed ahead for the position the seek left. A bad ``lead`` is refused."""
    ids = track_ids(daemon)
    with daemon.control() as control:
        control.call("queue.clear")
        control.call("queue.add", {"track_ids": [ids["dynamic.wav"]]})
        control.call("play", {"pos": 0})
        captures = {"early": Capture(), "on_time": Capture()}
        sought = threading.Event()
        epoch_before: list[int] = []
        errors: list[BaseException] = []

        playing = threading.Event()  # the lead=0 listener heard 1 s: the track's first chunks are rendered

        def seek_heard(c: Capture) -> bool:  # 1.5 s of the new position received (stamped as it arrives)
            if c is captures["on_time"] and sum(f.num_frames for f in c.frames) >= SAMPLE_RATE:
                playing.set()
            return sought.is_set() and sum(f.num_frames for f in c.frames if f.stream_epoch > epoch_before[0]
                                           and f.offset_frames >= 6 * SAMPLE_RATE) >= 1.5 * SAMPLE_RATE

        def run(name: str, path: str) -> None:
            try:
                with connect(daemon.ws + path, proxy=None, max_size=None) as ws:
                    receive_into(ws, captures[name], until=seek_heard)
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=run, args=("early", "/stream")),
                   threading.Thread(target=run, args=("on_time", "/stream?lead=0"))]
        try:
            for t in threads:
                t.start()
            assert playing.wait(timeout=60), f"no audio on /stream?lead=0: {errors}"
            epoch_before.append(captures["on_time"].frames[-1].stream_epoch)
            control.call("seek", {"position_s": 6.0})
            sought.set()
            for t in threads:
                t.join(timeout=60)
        finally:
            control.call("stop")
    assert not errors, errors
    starts = {name: [e for e in c.events if e["type"] == "audio_stream_start"] for name, c in captures.items()}
    assert starts["early"][-1]["lead_s"] == 0.5
    for name, c in captures.items():
        seek_start = next(e for e in starts[name] if e["offset_frames"] == 6 * SAMPLE_RATE)
        new = [(t, f) for t, f in zip(c.arrivals_s, c.frames, strict=True) if f.stream_epoch == seek_start["stream_epoch"]]
        assert new and new[0][1].offset_frames == 6 * SAMPLE_RATE
        t0 = new[0][0]
        # how far the stream ran ahead of real time, over the new position: frames received minus time passed
        ahead_s = max(sum(f.num_frames for _, f in new[: i + 1]) / SAMPLE_RATE - (t - t0) for i, (t, _) in enumerate(new))
        if name == "early":
            assert ahead_s >= 0.45, f"no burst: {ahead_s:.3f} s ahead at most"
        else:
            assert ahead_s <= 0.25, f"a burst reached a lead=0 listener: {ahead_s:.3f} s ahead"
    # lead=0 never got the old position's audio mixed ahead: the early listener's old epoch ran further
    old = {name: max(f.offset_frames + f.num_frames for f in c.frames if f.stream_epoch == epoch_before[0])
           for name, c in captures.items()}
    assert old["early"] - old["on_time"] >= 0.3 * SAMPLE_RATE, old
    with connect(daemon.ws + "/stream?lead=1", proxy=None, max_size=None) as bad:
        error = json.loads(bad.recv(timeout=10))
    assert error["type"] == "audio_stream_error" and error["code"] == "invalid_params"
