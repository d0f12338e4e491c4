"""Snapcast end to end: auralisd -> snapserver (tcp source) -> snapclient (file player), with the control script.

The reference is what a /stream listener receives at the same time (``auralisctl listen``, float32 at
44.1 kHz), resampled to 48 kHz. The room's audio must equal it, sample-continuous within each stretch
of sound, at the same level, across a seek, a track change, a pause and resume, and a snapserver
restart; the control script's metadata and commands go through snapserver's JSON-RPC.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import soundfile as sf

from tests.helpers import resample_reference

from .conftest import REPO, free_port, write_tracks
from .outputs_helpers import (
    RecordingProxy,
    SnapClient,
    SnapServer,
    control_script_wrapper,
    match_runs,
    stop_process,
    wait_for,
)

TRACK_S = 8.0
RATE = 48_000


def output_state(client, name: str) -> dict:
    return next(o for o in client.call("outputs")["outputs"] if o["name"] == name)


def test_a_room_hears_the_stream_across_seek_track_change_pause_and_a_server_restart(
    daemon_factory, tmp_path: Path
) -> None:
    music = tmp_path / "music"
    write_tracks(music, [("01 first.flac", TRACK_S, 44_100, 11, False), ("02 second.flac", TRACK_S, 44_100, 12, False),
                         ("03 third.flac", TRACK_S, 44_100, 13, False)])
    http_port = free_port()
    script = control_script_wrapper(tmp_path, f"http://127.0.0.1:{http_port}")
    server = SnapServer(tmp_path / "snap", controlscript=script)
    proxy = RecordingProxy(server.source_port)  # keeps what auralisd sent snapserver
    daemon = daemon_factory(music, ["--http-port", str(http_port),
                                    "--snapcast", f"room=tcp://127.0.0.1:{proxy.port}?sampleformat=48000:16:2"])
    room = SnapClient(tmp_path / "snap", server)
    listen: subprocess.Popen | None = None
    try:
        daemon.start()
        server.env = {"AURALIS_SOCKET": daemon.socket_path}
        server.start()
        room.start()
        with daemon.client() as client:
            daemon.wait_scan(client, 3)
            client.wait_status(lambda s: s["outputs"][1]["state"] == "connected")
            ref_path = tmp_path / "reference.wav"
            listen = subprocess.Popen([sys.executable, "-m", "clients.auralisctl", "--socket", daemon.socket_path,
                                       "listen", "--http", f"127.0.0.1:{http_port}", "--out", str(ref_path)], cwd=REPO, stderr=subprocess.DEVNULL)
            client.call("queue.add", paths=[str(music / n) for n in ("01 first.flac", "02 second.flac",
                                                                      "03 third.flac")])
            client.call("play")
            wait_for(lambda: server.stream_properties().get("metadata", {}).get("title") == "01 first", 20,
                     "the control script's metadata in snapserver")
            props = server.stream_properties()
            assert props["playbackStatus"] == "playing" and props["canSeek"] and props["canGoNext"]
            assert props["metadata"]["artUrl"] == f"http://127.0.0.1:{http_port}/cover/{props['metadata']['trackId']}"
            assert abs(props["metadata"]["duration"] - TRACK_S) < 0.1

            client.wait_status(lambda s: s["elapsed_s"] > 2.5)
            # forward, so no stretch of the stream repeats an earlier one (the alignment stays unambiguous)
            server.rpc("Stream.Control", {"id": "Auralis", "command": "setPosition", "params": {"position": 4.0}})
            client.wait_status(lambda s: s["elapsed_s"] >= 4.0)  # the seek went through the control script
            client.wait_status(lambda s: s["queue_pos"] == 1 and s["elapsed_s"] > 1.5, timeout_s=20)
            wait_for(lambda: server.stream_properties().get("metadata", {}).get("title") == "02 second", 10,
                     "the next title in snapserver")
            server.rpc("Stream.Control", {"id": "Auralis", "command": "pause"})
            client.wait_status(lambda s: s["state"] == "pause")
            wait_for(lambda: server.stream_properties().get("playbackStatus") == "paused", 10, "paused in snapserver")
            time.sleep(1.5)
            server.rpc("Stream.Control", {"id": "Auralis", "command": "playPause"})
            client.wait_status(lambda s: s["state"] == "play")
            server.rpc("Stream.SetProperty", {"id": "Auralis", "property": "loopStatus", "value": "track"})
            client.wait_status(lambda s: s["repeat"] and s["single"])
            server.rpc("Stream.SetProperty", {"id": "Auralis", "property": "loopStatus", "value": "none"})
            client.wait_status(lambda s: not s["repeat"] and not s["single"])
            time.sleep(1.0)

            server.stop()  # snapserver restarts: the output says so and reconnects, playback goes on
            client.wait_status(lambda s: s["outputs"][1]["state"] == "reconnecting")
            assert output_state(client, "room")["message"] in (
                "snapserver closed the connection",
                f"cannot connect to snapserver at 127.0.0.1:{proxy.port} (connection refused): is it running "
                "with a tcp source in server mode there?")
            time.sleep(1.0)
            server.start()
            client.wait_status(lambda s: s["outputs"][1]["state"] == "connected", timeout_s=40)
            wait_for(lambda: server.stream_properties().get("playbackStatus") == "playing", 20,
                     "the control script back after the restart")
            time.sleep(1.0)
            server.rpc("Stream.Control", {"id": "Auralis", "command": "next"})
            client.wait_status(lambda s: s["queue_pos"] == 2)
            wait_for(lambda: server.stream_properties().get("metadata", {}).get("title") == "03 third", 10,
                     "the third title in snapserver")
            time.sleep(2.0)
            listen.send_signal(signal.SIGINT)
            listen.wait(10)
            client.call("stop")
            time.sleep(1.5)  # the room plays out its buffer
    finally:
        stop_process(listen)
        room.stop()
        server.stop()
        proxy.close()
    log = daemon.log()
    assert "Traceback" not in log
    assert "reconnecting: snapserver closed the connection; retrying in 1 s" in log  # one line said the restart

    reference, ref_rate = sf.read(ref_path, dtype="float64")
    assert ref_rate == 44_100
    reference = resample_reference(reference, 44_100, 48_000)

    # 1. What auralisd sent snapserver is the stream: the same samples (dither aside), the same level, no gap
    #    anywhere (a pause adds a short silence, a stall adds silence, nothing is lost) but the restart.
    sent_audio = proxy.audio()
    (tmp_path / "sent.pcm").write_bytes(bytes(proxy.sent))  # for a look after a failure
    sent = match_runs(sent_audio, reference, RATE)
    sent_summary = [(round(r.ref_start / RATE, 3), round(r.ref_stop / RATE, 3), r.max_step, round(r.level_db, 3),
                     round(r.residual_db, 1)) for r in sent]
    for run in sent:
        assert run.max_step == 0 and abs(run.level_db) < 0.1 and run.residual_db < -40, sent_summary
    sent_gaps = [(b.ref_start - a.ref_stop) / RATE for a, b in zip(sent, sent[1:], strict=False)]
    # (edges are found on 10 ms windows, and a pause's silence blurs its edge by the resampler's and the
    # dither's few samples: a join shows as at most 25 ms either way; a lost block would be 50 ms)
    assert all(abs(g) <= 0.025 for g in sent_gaps if g != max(sent_gaps)), (sent_gaps, sent_summary)
    assert 0.5 < max(sent_gaps) < 6.0, (sent_gaps, sent_summary)  # the restart
    assert sent[0].ref_start < 0.05 * RATE and reference.shape[0] - sent[-1].ref_stop < 0.05 * RATE, sent_summary

    # 2. What the room played is that: every stretch sample-exact and at the same level. snapserver reads its
    #    source on a timer; when the machine starves it of CPU it logs "onResync" and snapclient drops a
    #    period (~30 ms): the only losses allowed beside the restart, each matched by such a log line.
    heard = match_runs(room.audio(), reference, RATE)
    summary = [(round(r.ref_start / RATE, 3), round(r.ref_stop / RATE, 3), r.max_step, round(r.level_db, 3),
                round(r.residual_db, 1)) for r in heard]
    for run in heard:
        assert run.max_step <= 3, summary  # snapclient may nudge a sample or two to stay in sync
        assert abs(run.level_db) < 0.1, summary
        assert run.residual_db < -40, summary  # the same samples (FLAC between server and client is lossless)
    gaps = [(b.ref_start - a.ref_stop) / RATE for a, b in zip(heard, heard[1:], strict=False)]
    assert all(g > -0.025 for g in gaps), (gaps, summary)  # in order: nothing heard twice
    assert 0.5 < max(gaps) < 6.0, (gaps, summary)
    resyncs = sum(1 for line in server.log().splitlines() if "onResync" in line and _resync_ms(line) > 20)
    lossy = [g for g in gaps if g != max(gaps) and g > 0.025]
    assert len(lossy) <= resyncs, (lossy, resyncs, summary)
    heard_s = sum(r.ref_stop - r.ref_start for r in heard) / RATE
    assert heard_s > 0.6 * reference.shape[0] / RATE, (heard_s, summary)  # a starved snapserver aside, it all played
    assert heard[0].ref_start < 0.5 * RATE and reference.shape[0] - heard[-1].ref_stop < 0.1 * RATE, summary


def _resync_ms(line: str) -> float:
    try:
        return float(line.rsplit(":", 1)[1].split()[0])
    except (IndexError, ValueError):
        return 0.0


def test_24_bit_samples_travel_in_four_bytes_as_snapserver_expects(tmp_path: Path) -> None:
    """The encoder's 24-bit packing (low-aligned in 4 bytes) is what snapserver and snapclient read."""
    import socket

    import numpy as np

    from auralis.pcm import PcmEncoder

    server = SnapServer(tmp_path / "snap", sampleformat="48000:24:2").start()
    room = SnapClient(tmp_path / "snap", server).start()
    try:
        encoder = PcmEncoder(RATE, RATE, 24)
        t = np.arange(3 * RATE) / RATE
        tone = (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        with socket.create_connection(("127.0.0.1", server.source_port)) as sock:
            started = time.monotonic()
            for i in range(0, tone.size, 2400):  # in real time, as the daemon sends
                block = tone[i : i + 2400]
                sock.sendall(encoder.encode(np.stack([block, block], axis=1)))
                time.sleep(max(0.0, started + (i + 2400) / RATE - time.monotonic()))
            wait_for(lambda: room.path.exists() and np.abs(np.fromfile(room.path, "<i4")).max() > 0, 10, "audio")
            time.sleep(1.5)  # snapclient's buffer
    finally:
        room.stop()
        server.stop()
    played = np.fromfile(room.path, dtype="<i4").reshape(-1, 2)
    peak = np.abs(played).max() / 2**23
    assert abs(20 * np.log10(peak / 0.5)) < 0.1  # full scale 2^23: the level went through unchanged
    assert np.abs(played[:, 0] - played[:, 1]).max() <= 2  # the same tone; only each channel's dither differs
