"""auralisctl on its own: the dependency rule, argument parsing, formatting, the WAV writer,
connection failures, and `listen` against a server speaking the documented audio wire format.

The commands against a real daemon are in test_auralisctl_daemon.py.
"""

from __future__ import annotations

import ast
import io
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import wave
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import trio
from trio_websocket import ConnectionClosed, serve_websocket

from clients import auralisctl
from clients.auralisctl import UsageError, WavWriter

SCRIPT = Path(auralisctl.__file__)


# ---------------------------------------------------------------- the dependency rule


# Optional features import their extras inside the one function that needs them, never at module level:
# `listen --format opus` PyAV, `listen --play` trio and clients/speaker.py (which brings trio-websocket).
LAZY_EXTRAS = {"cmd_listen_play": {"trio", "clients", "speaker"}, "__init__": {"av"}}


def test_imports_only_msgpack_and_the_standard_library_by_ast():
    tree = ast.parse(SCRIPT.read_text())
    names = set()
    lazy: dict[str, set[str]] = {}

    def imported(node: ast.AST) -> set[str]:
        if isinstance(node, ast.Import):
            return {alias.name.partition(".")[0] for alias in node.names}
        if isinstance(node, ast.ImportFrom):
            assert node.level == 0, "no relative imports: the file must work alone"
            return {node.module.partition(".")[0]}
        return set()

    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            for inner in ast.walk(node):
                extra = imported(inner) - set(sys.stdlib_module_names)
                if extra:
                    lazy.setdefault(node.name, set()).update(extra)
        names |= imported(node)
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "__import__":
            pytest.fail("no dynamic imports")
    extras = set().union(*LAZY_EXTRAS.values())
    assert names - set(sys.stdlib_module_names) - extras == {"msgpack"}
    assert lazy == LAZY_EXTRAS, "third-party imports beyond msgpack only inside the functions of optional features"


GUARD = textwrap.dedent(
    """
    import importlib.abc, importlib.util, sys
    ALLOWED = set(sys.stdlib_module_names) | {"msgpack"}

    class Guard(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.partition(".")[0] not in ALLOWED:
                raise ImportError(f"auralisctl imported the third-party module {name!r}")
            return None

    sys.meta_path.insert(0, Guard())
    spec = importlib.util.spec_from_file_location("auralisctl", sys.argv[1])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    codes = [module.main(args.split()) for args in sys.argv[2:]]
    print("exit codes", codes)
    """
)


def test_a_copy_of_the_single_file_runs_with_third_party_imports_forbidden(tmp_path):
    copy = tmp_path / "auralisctl.py"
    shutil.copy(SCRIPT, copy)
    missing = tmp_path / "nobody-home.sock"
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            GUARD,
            str(copy),
            f"--socket {missing} status",
            f"--socket {missing} queue --json",
            "listen --out x.wav --http 127.0.0.1:9 --session 3 --preset warm --intensity 0.5",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "exit codes [3, 3, 3]" in result.stdout
    assert f"cannot connect to auralisd at {missing} (--socket)" in result.stderr
    # Run as a script too, the way a copied file is used.
    direct = subprocess.run([sys.executable, str(copy), "--socket", str(missing)], capture_output=True, text=True, timeout=60)
    assert direct.returncode == 3 and "hint:" in direct.stderr


# ---------------------------------------------------------------- finding the daemon


def run_ctl(*args: str, env: dict | None = None, stdin: str | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("AURALIS_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], env=full_env, capture_output=True, text=True, input=stdin, timeout=60
    )


def test_missing_daemon_exit_3_names_the_default_socket_it_tried(tmp_path):
    result = run_ctl("status", env={"XDG_RUNTIME_DIR": str(tmp_path)})
    assert result.returncode == 3
    assert f"{tmp_path}/auralis/control.sock" in result.stderr
    assert "systemctl --user start auralisd" in result.stderr and "--socket" in result.stderr
    assert result.stdout == ""
    from_env = run_ctl("status", env={"AURALIS_SOCKET": str(tmp_path / "env.sock")})
    assert from_env.returncode == 3 and f"{tmp_path}/env.sock ($AURALIS_SOCKET)" in from_env.stderr


def test_usage_errors_exit_2():
    assert run_ctl("frobnicate").returncode == 2
    assert run_ctl("play", "first").returncode == 2  # not a position: parsed before connecting
    assert run_ctl("--socket", "a", "--host", "b:1", "status").returncode == 2
    bad_seek = run_ctl("--socket", "/nonexistent/x.sock", "seek", "1:99")
    assert bad_seek.returncode == 2, "the time is checked before connecting"


def test_default_socket_path_matches_the_daemon(monkeypatch):
    from auralisd.config import Settings, default_runtime_dir

    for runtime_dir in ("/run/user/1000", None):
        if runtime_dir is None:
            monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
        else:
            monkeypatch.setenv("XDG_RUNTIME_DIR", runtime_dir)
        daemon = Settings(runtime_dir=default_runtime_dir()).control_socket_path
        assert auralisctl.default_socket_path() == daemon


# ---------------------------------------------------------------- parsing and formatting


@pytest.mark.parametrize(
    ("spec", "expected_s"),
    [("83", 83.0), ("1:23", 83.0), ("1:02:03", 200.0), ("+10", 70.0), ("-0:30", 30.0), ("-5:00", 0.0),
     ("50%", 100.0), ("+10%", 80.0), ("-100%", 0.0), ("9:59", 200.0), ("12.5", 12.5)],
)
def test_seek_targets_are_clamped_to_the_track(spec, expected_s):
    assert auralisctl.seek_target_s(spec, elapsed_s=60.0, duration_s=200.0) == pytest.approx(expected_s)


def test_times_parse_like_mpc():
    assert [auralisctl.parse_time_s(t) for t in ("7", "1:02:03", "0:00.5")] == [7.0, 3723.0, 0.5]


@pytest.mark.parametrize("spec", ["1:60", "abc", "1:2:3:4", "x%", "-", ""])
def test_bad_seek_specs_are_usage_errors(spec):
    with pytest.raises(UsageError):
        auralisctl.seek_target_s(spec, 0.0, 100.0)


def test_positions_are_one_based_with_ranges_and_zero_for_current():
    assert auralisctl.parse_positions(["3", "5-7", "1"], current=None) == [0, 2, 4, 5, 6]
    assert auralisctl.parse_positions(["0", "2"], current=3) == [1, 3]
    for bad in (["0"], ["4-2"], ["x"], ["-1"]):
        with pytest.raises(UsageError):
            auralisctl.parse_positions(bad, current=None)


def test_negative_values_reach_seek_and_volume():
    parser = auralisctl.build_parser()
    args = parser.parse_args(auralisctl._protect_negative_values(["seek", "-0:30", "--json"]))
    assert (args.time, args.json) == ("-0:30", True)
    args = parser.parse_args(auralisctl._protect_negative_values(["--socket", "s", "volume", "-5"]))
    assert (args.change, args.socket) == ("-5", "s")


def test_status_text_reads_like_mpc():
    status = {
        "state": "play", "queue_pos": 1, "queue_length": 10, "elapsed_s": 83.4, "duration_s": 296.0,
        "track": {"track_id": 7, "path": "/m/x.flac", "title": "Song", "artist": "Band", "duration_s": 296.0},
        "volume": 80, "repeat": True, "random": False, "single": False, "consume": False,
        "preset": "adaptive", "intensity": 0.5, "decision": "[2D LWRP] dynamic quiet -> +4.1 dB",
        "scan": {"running": True, "done": 3, "total": 9},
    }
    assert auralisctl.format_status(status).splitlines() == [
        "Band - Song",
        "[playing] #2/10   1:23/4:56 (28%)",
        "volume:  80%   repeat: on   random: off   single: off   consume: off",
        "preset: adaptive   intensity: 0.50",
        "mastering: [2D LWRP] dynamic quiet -> +4.1 dB",
        "scanning: 3/9",
    ]
    stopped = {**status, "state": "stop", "track": None, "queue_pos": None, "scan": {"running": False}}
    assert auralisctl.format_status(stopped).splitlines() == [
        "volume:  80%   repeat: on   random: off   single: off   consume: off",
        "preset: adaptive   intensity: 0.50",
    ]
    outputs = [{"name": "stream", "enabled": True, "state": "connected", "message": ""},
               {"name": "house", "enabled": True, "state": "reconnecting", "message": "snapserver closed the connection"},
               {"name": "radio", "enabled": False, "state": "disabled", "message": ""}]
    assert auralisctl.format_status({**stopped, "outputs": outputs}).splitlines()[-1] == (
        "output house: reconnecting: snapserver closed the connection")  # only what needs a look


def test_json_output_is_strict_json():
    value = {"true_peak_dbtp": float("-inf"), "x": [1.5, float("nan")], "b": b"\x01"}
    assert auralisctl.json_safe(value) == {"true_peak_dbtp": None, "x": [1.5, None], "b": "01"}


# ---------------------------------------------------------------- WAV output


@pytest.mark.parametrize("sample_format", ["f32", "s16"])
def test_wav_writer_round_trips_through_libsndfile(tmp_path, sample_format):
    rng = np.random.default_rng(1)
    samples = (rng.uniform(-0.9, 0.9, size=(4410, 2))).astype(np.float32)
    if sample_format == "s16":
        samples = (samples * 32767).astype("<i2")
    path = tmp_path / "out.wav"
    with open(path, "wb") as handle:
        writer = WavWriter(handle, sample_rate=44100, channels=2, sample_format=sample_format)
        writer.write(samples[:1000].tobytes())
        writer.write(samples[1000:].tobytes())
        writer.close()
    assert writer.num_frames == 4410
    read, sample_rate = sf.read(path, dtype="float32" if sample_format == "f32" else "int16", always_2d=True)
    assert sample_rate == 44100 and np.array_equal(read, samples)
    info = sf.info(path)
    assert info.subtype == ("FLOAT" if sample_format == "f32" else "PCM_16")
    if sample_format == "s16":
        with wave.open(str(path)) as w:  # the stdlib reader is strict about PCM headers
            assert (w.getnchannels(), w.getframerate(), w.getnframes()) == (2, 44100, 4410)


def test_wav_on_an_unseekable_pipe_keeps_streaming_sizes():
    class Pipe(io.BytesIO):
        def seekable(self):
            return False

    pipe = Pipe()
    writer = WavWriter(pipe, sample_rate=48000, channels=2, sample_format="f32")
    writer.write(b"\0" * 8 * 10)
    writer.close()
    data = pipe.getvalue()
    assert data[:4] == b"RIFF" and data[8:12] == b"WAVE"
    assert struct.unpack("<I", data[data.index(b"data") + 4 :][:4])[0] > 1 << 31


# ---------------------------------------------------------------- listen (documented wire format)


def audio_frame(epoch: int, sequence: int, offset: int, samples: np.ndarray) -> bytes:
    return struct.pack("<IIQ", epoch, sequence, offset) + samples.astype("<f4").tobytes()


async def test_listen_session_writes_the_current_epoch_to_wav(tmp_path):
    rng = np.random.default_rng(2)
    blocks = [rng.uniform(-0.5, 0.5, size=(2205, 2)).astype(np.float32) for _ in range(6)]
    received: dict = {}

    async def handler(request):
        received["path"] = request.path
        ws = await request.accept()
        received["play"] = json.loads(await ws.get_message())
        start = {"type": "audio_stream_start", "sample_rate": 44100, "channels": 2, "format": "f32", "stream_epoch": 1}
        await ws.send_message(json.dumps({"type": "mastering_status", "status": "preparing"}))
        await ws.send_message(json.dumps(start))
        await ws.send_message(audio_frame(1, 0, 0, blocks[0]))
        await ws.send_message(audio_frame(1, 1, 2205, blocks[1]))
        await ws.send_message(json.dumps({**start, "stream_epoch": 2}))  # a seek
        await ws.send_message(audio_frame(1, 2, 4410, blocks[5]))  # stale: from before the seek
        await ws.send_message(audio_frame(2, 0, 44100, blocks[2]))
        await ws.send_message(audio_frame(2, 1, 46305, blocks[3]))
        await ws.send_message(json.dumps({"type": "audio_stream_end", "reason": "finished", "stream_epoch": 2}))
        try:
            await ws.get_message()
        except ConnectionClosed:
            pass

    out = tmp_path / "session.wav"
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_websocket, handler, "127.0.0.1", 0, None)
        args = ["listen", "--session", "5", "--preset", "warm", "--intensity", "0.25", "--burst", "--out", str(out),
                "--http", f"127.0.0.1:{server.port}", "-q"]
        code = await trio.to_thread.run_sync(auralisctl.main, args)
        nursery.cancel_scope.cancel()
    assert code == 0
    assert received["path"] == "/session?format=f32"
    assert received["play"] == {"type": "play_enhanced", "track_id": 5, "preset": "warm", "intensity": 0.25, "pace": "burst"}
    audio, sample_rate = sf.read(out, dtype="float32", always_2d=True)
    assert sample_rate == 44100
    assert np.array_equal(audio, np.concatenate([blocks[0], blocks[1], blocks[2], blocks[3]]))


async def test_listen_raw_pcm_to_stdout_stops_after_the_requested_seconds(tmp_path):
    samples = (np.arange(44100 * 2, dtype=np.float32).reshape(-1, 2) % 1000) / 1000

    async def handler(request):
        ws = await request.accept()
        await ws.send_message(json.dumps(
            {"type": "audio_stream_start", "sample_rate": 44100, "channels": 2, "format": "s16", "stream_epoch": 9}))
        pcm = (samples * 32767).astype("<i2")
        try:
            for k in range(0, 44100, 2205):
                await ws.send_message(struct.pack("<IIQ", 9, k // 2205, k) + pcm[k : k + 2205].tobytes())
            await ws.get_message()
        except ConnectionClosed:
            pass

    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_websocket, handler, "127.0.0.1", 0, None)
        result = await trio.run_process(
            [sys.executable, str(SCRIPT), "listen", "--out", "-", "--seconds", "0.3", "--format", "s16",
             "--http", f"127.0.0.1:{server.port}"],
            capture_stdout=True, capture_stderr=True,
        )
        nursery.cancel_scope.cancel()
    pcm = np.frombuffer(result.stdout, dtype="<i2").reshape(-1, 2)
    assert pcm.shape == (13230, 2), "exactly 0.3 s at 44.1 kHz, the last block cut"
    assert np.array_equal(pcm, (samples[:13230] * 32767).astype("<i2"))


# ---------------------------------------------------------------- the control connection, byte by byte


def test_control_client_matches_replies_keeps_events_and_reassembles_frames(tmp_path):
    """Events before a reply are kept in order, a stale reply is skipped, frames arrive byte by byte."""
    import socket
    import threading

    import msgpack

    script = {  # what the server sends after each request, by method
        "status": [[2, "player", {"state": "play"}], [1, 99, None, "stale"], [1, 0, None, {"ok": 1}]],
        "fingerprint.get": [[2, "volume", {"volume": 5}], [1, 1, {"code": "not_found", "message": "no track 9"}, None]],
    }
    path = str(tmp_path / "c.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen()
    requests = []

    def serve():
        conn, _ = listener.accept()
        with conn:
            unpacker = msgpack.Unpacker(raw=False)
            while len(requests) < len(script):
                data = conn.recv(4096)
                if not data:
                    return
                unpacker.feed(data)
                for request in unpacker:
                    requests.append(request)
                    reply = b"".join(msgpack.packb(m) for m in script[request[2]])
                    for i in range(len(reply)):
                        conn.sendall(reply[i : i + 1])
            while conn.recv(4096):  # stay connected until the client hangs up
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with auralisctl.ControlClient.connect(auralisctl.Target(path=path, source="test"), timeout_s=10) as client:
            assert client.call("status") == {"ok": 1}
            with pytest.raises(auralisctl.DaemonError) as error:
                client.call("fingerprint.get", {"track_id": 9})
            assert (error.value.code, error.value.message) == ("not_found", "no track 9")
            assert client.next_event(timeout_s=0) == ("player", {"state": "play"})
            assert client.next_event(timeout_s=0) == ("volume", {"volume": 5})
            assert client.next_event(timeout_s=0.05) is None
    finally:
        thread.join(timeout=10)
        listener.close()
    assert requests == [[0, 0, "status", {}], [0, 1, "fingerprint.get", {"track_id": 9}]]


# ---------------------------------------------------------------- listen: a dropped listener (issue 11)
def _raw_ws_server(script) -> tuple[socket.socket, threading.Thread]:
    """A one-connection WebSocket server on raw sockets: handshake, then ``script(conn)``."""
    import base64
    import hashlib

    listener = socket.create_server(("127.0.0.1", 0))

    def run() -> None:
        conn, _ = listener.accept()
        with conn:
            head = b""
            while b"\r\n\r\n" not in head:
                head += conn.recv(4096)
            key = next(line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")
                       if line.lower().startswith(b"sec-websocket-key"))
            accept = base64.b64encode(hashlib.sha1(key + b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest())
            conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                         b"Sec-WebSocket-Accept: " + accept + b"\r\n\r\n")
            script(conn)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return listener, thread


def _server_frame(opcode: int, payload: bytes) -> bytes:
    n = len(payload)
    length = bytes([n]) if n < 126 else bytes([126]) + n.to_bytes(2, "big")
    return bytes([0x80 | opcode]) + length + payload


START_S16 = json.dumps({"type": "audio_stream_start", "sample_rate": 44100, "channels": 2, "format": "s16",
                        "stream_epoch": 1}).encode()


def _listen_to(port: int, out: Path, capsys) -> tuple[int, str]:
    code = auralisctl.main(["listen", "--format", "s16", "--out", str(out), "--http", f"127.0.0.1:{port}", "-q"])
    return code, capsys.readouterr().err


@pytest.mark.parametrize("how", ["cut mid-frame", "closed with 4008"])
def test_a_dropped_listener_says_what_happened_and_keeps_the_audio_it_got(tmp_path, capsys, how):
    block = struct.pack("<IIQ", 1, 0, 0) + b"\x01\x00" * 2 * 441

    def script(conn: socket.socket) -> None:
        conn.sendall(_server_frame(0x1, START_S16) + _server_frame(0x2, block))
        if how == "cut mid-frame":  # what a daemon does when a listener stopped reading: it gives up mid-send
            conn.sendall(_server_frame(0x2, block * 4)[:700])
        else:
            conn.sendall(_server_frame(0x8, (4008).to_bytes(2, "big") + b"listener fell behind the stream"))
        conn.shutdown(socket.SHUT_WR)
        while conn.recv(4096):
            pass

    listener, thread = _raw_ws_server(script)
    with listener:
        code, err = _listen_to(listener.getsockname()[1], tmp_path / "x.wav", capsys)
    thread.join(10)
    assert code == auralisctl.EXIT_DAEMON_ERROR
    assert "middle of a frame" not in err
    assert "the daemon dropped this listener" in err and "fell behind" in err, err
    audio, rate = sf.read(tmp_path / "x.wav", dtype="int16", always_2d=True)  # the file is complete and valid
    assert rate == 44100 and audio.shape == (441, 2)
