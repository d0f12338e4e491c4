"""Every channel layout holds the promise end to end, on a real daemon's ``/session`` and ``/stream``.

Mono, stereo, 4.0, 5.1 and 7.1 FLAC files of the same music (``auralis.synth.in_layout``) are
played through a real ``auralisd`` process; what a client decodes, in f32 and in dithered s16,
must be stereo, reach the preset's target loudness (within 0.5 LU, and of each other) and stay
at or below -1 dBTP at 8x oversampling. The A/B original too stays under the ceiling.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import numpy as np
import pytest
from websockets.sync.client import connect

from auralis.audio import write_audio
from auralis.loudness import measure_loudness
from auralis.presets import get_preset
from auralis.synth import in_layout, make_music
from auralisd.protocol.audio_frames import decode_audio_frame
from tests.helpers import true_peak_8x
from tests.web.daemon import Capture, Daemon, assert_continuous, receive_into, running_daemon, track_ids

SAMPLE_RATE = 44_100
TRACK_S = 20.0  # the programme of tests/auralis/test_layouts.py
CEILING_DBTP = -1.0
LAYOUTS = {"mono": 1, "stereo": 2, "4.0": 4, "5.1": 6, "7.1": 8}
TARGET_LUFS = get_preset("adaptive").target_lufs



@pytest.fixture(scope="module")
def layout_daemon(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("layouts-daemon")
    music = tmp / "music"
    music.mkdir()
    programme = make_music(TRACK_S, SAMPLE_RATE, seed=7, peak_dbfs=-0.5)
    for name, channels in LAYOUTS.items():
        write_audio(music / f"{name}.flac", in_layout(programme, channels, SAMPLE_RATE), SAMPLE_RATE)
    with running_daemon(tmp, music) as daemon:
        daemon.music_dir = music
        yield daemon


def _ended(capture: Capture) -> bool:
    return bool(capture.events) and capture.events[-1]["type"] in ("audio_stream_end", "audio_stream_error")


def session_audio(daemon: Daemon, track_id: int, fmt: str, variant: str = "mastered") -> tuple[np.ndarray, Capture]:
    capture = Capture()
    with connect(f"{daemon.ws}/session?format={fmt}&variant={variant}", proxy=None, max_size=None) as ws:
        ws.send(json.dumps({"type": "play_enhanced", "track_id": track_id, "preset": "adaptive", "pace": "burst"}))
        receive_into(ws, capture, fmt=fmt, until=_ended, timeout_s=180)
    assert capture.events[-1]["type"] == "audio_stream_end", capture.events[-1]
    start = next(e for e in capture.events if e["type"] == "audio_stream_start")
    assert (start["channels"], start["format"], start["sample_rate"]) == (2, fmt, SAMPLE_RATE)
    assert_continuous(capture.frames)
    return capture.audio(), capture


def test_session_holds_the_promise_for_every_layout_in_f32_and_s16(layout_daemon: Daemon) -> None:
    ids = track_ids(layout_daemon)
    loudness: dict[tuple[str, str], float] = {}
    for name in LAYOUTS:
        for fmt in ("f32", "s16"):
            audio, _ = session_audio(layout_daemon, ids[f"{name}.flac"], fmt)
            assert audio.shape == (int(TRACK_S * SAMPLE_RATE), 2)
            assert true_peak_8x(audio) <= CEILING_DBTP, (name, fmt)
            loudness[name, fmt] = measure_loudness(audio, SAMPLE_RATE).integrated_lufs
    values = list(loudness.values())
    assert max(values) - min(values) <= 0.5, loudness
    assert all(abs(v - TARGET_LUFS) <= 0.5 for v in values), loudness


def test_session_original_stays_under_the_ceiling(layout_daemon: Daemon) -> None:
    ids = track_ids(layout_daemon)
    for name in ("mono", "5.1", "7.1"):
        for fmt in ("f32", "s16"):
            audio, capture = session_audio(layout_daemon, ids[f"{name}.flac"], fmt, variant="original")
            start = next(e for e in capture.events if e["type"] == "audio_stream_start")
            assert start["variant"] == "original"
            assert true_peak_8x(audio) <= CEILING_DBTP, (name, fmt)


async def _listen_until_end(url: str, fmt: str, timeout_s: float,
                            connected: asyncio.Event | None = None) -> tuple[list[Any], list[dict[str, Any]]]:
    import websockets

    frames: list[Any] = []
    events: list[dict[str, Any]] = []
    async with websockets.connect(url, proxy=None, max_size=None) as ws:
        if connected is not None:
            connected.set()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                message = await asyncio.wait_for(ws.recv(), timeout=deadline - time.monotonic())
            except TimeoutError:
                break
            if isinstance(message, str):
                events.append(json.loads(message))
                if events[-1]["type"] == "audio_stream_end" and events[-1].get("reason") in ("end_of_queue", "stopped"):
                    break
                continue
            frames.append(decode_audio_frame(message, 2, fmt))
    return frames, events


def _wait_subscribers(daemon: Daemon, count: int, timeout_s: float = 60.0) -> None:
    """Until the player counts ``count`` subscribers. A poll of another process: the deadline is a safety
    bound that fails the test, never one that paces it."""
    deadline = time.monotonic() + timeout_s
    with daemon.control() as control:
        while control.call("status")["player"]["subscribers"] < count:
            assert time.monotonic() < deadline, "the listeners never subscribed"


def test_stream_holds_the_promise_for_surround_in_f32_and_s16(layout_daemon: Daemon) -> None:
    ids = track_ids(layout_daemon)
    with layout_daemon.control() as control:
        control.call("queue.clear")
        control.call("queue.add", {"track_ids": [ids["5.1.flac"], ids["7.1.flac"]]})

    async def listeners() -> list[tuple[list[Any], list[dict[str, Any]]]]:
        connected = [asyncio.Event(), asyncio.Event()]
        tasks = [asyncio.create_task(_listen_until_end(f"{layout_daemon.ws}/stream?format={fmt}", fmt, 2 * TRACK_S + 30,
                                                       event))
                 for fmt, event in zip(("f32", "s16"), connected, strict=True)]
        for event in connected:
            await event.wait()
        await asyncio.to_thread(_wait_subscribers, layout_daemon, 2)  # both listen before the music starts
        with layout_daemon.control() as control:
            control.call("play", {"pos": 0})
        return await asyncio.gather(*tasks)

    try:
        results = asyncio.run(listeners())
    finally:
        with layout_daemon.control() as control:
            control.call("stop")
    for fmt, (frames, _events) in zip(("f32", "s16"), results, strict=True):
        heard = np.concatenate([f.samples for f in frames])
        assert heard.shape[0] >= 1.8 * TRACK_S * SAMPLE_RATE, (fmt, heard.shape)  # both tracks, nearly whole
        assert true_peak_8x(heard) <= CEILING_DBTP, fmt
        loud = measure_loudness(heard, SAMPLE_RATE).integrated_lufs
        assert abs(loud - TARGET_LUFS) <= 0.5, (fmt, loud)
