"""Every auralisctl command against a real auralisd process: text and --json output, exit codes.

One daemon (one worker process) serves the whole module; each test sets up the queue and
player state it needs through auralisctl itself or a direct control request.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from clients import auralisctl
from tests.helpers import resample_reference
from tests.service.daemon_process import free_port, start_daemon, write_library

SCRIPT = Path(auralisctl.__file__)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ctl")
    music = tmp / "music"
    tracks = write_library(music)
    token_file = tmp / "token"
    token_file.write_text("correct-horse-battery-staple\n")
    tcp_port = free_port()
    process = start_daemon(tmp, music, extra=["--control-tcp", f"127.0.0.1:{tcp_port}", "--token-file", str(token_file)])
    process.tracks = tracks  # type: ignore[attr-defined]
    process.tcp = (f"127.0.0.1:{tcp_port}", token_file)  # type: ignore[attr-defined]
    yield process
    assert process.stop() == 0, process.log()


@pytest.fixture
def ctl(daemon, capsys):
    """Run auralisctl in-process against the daemon: returns (exit code, stdout, stderr)."""

    def run(*args: str) -> tuple[int, str, str]:
        code = auralisctl.main(["--socket", daemon.socket_path, *args])
        out, err = capsys.readouterr()
        return code, out, err

    return run


def ctl_json(ctl, *args: str):
    code, out, err = ctl(*args, "--json")
    assert code == 0, err
    return json.loads(out)


@pytest.fixture
def queue3(daemon, ctl):
    """A stopped player with the three tracks queued: one, two, three."""
    daemon.call("stop")
    daemon.call("queue.clear")
    daemon.call("options.set", {"repeat": False, "random": False, "single": False, "consume": False})
    tracks = daemon.tracks
    daemon.call("queue.add", {"paths": [str(tracks[name]) for name in ("one", "two", "three")]})
    return tracks


# ---------------------------------------------------------------- status, ping, exit codes


def test_bare_status_and_json_status(daemon, ctl, queue3):
    code, out, err = ctl()
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "volume: " + f"{daemon.call('status')['volume']:>3}%   repeat: off   random: off   single: off   consume: off",
        f"preset: {daemon.call('status')['preset']}   intensity: {daemon.call('status')['intensity']:.2f}",
        f"album mode: {daemon.call('status')['album_mode']}",
    ]
    assert ctl("status")[1] == out
    status = ctl_json(ctl, "status")
    assert status["state"] == "stop" and status["queue_length"] == 3
    assert {"cache", "fingerprints", "scan", "uptime_s", "plan", "decision"} <= set(status)


def test_ping(ctl):
    assert ctl("ping") == (0, "pong\n", "")
    assert ctl("ping", "--json") == (0, '"pong"\n', "")


def test_daemon_errors_exit_1_with_the_message_on_stderr(ctl, queue3):
    code, out, err = ctl("play", "9")
    assert (code, out) == (1, "")
    assert err.startswith("auralisctl: ") and "(not_found)" in err
    code, _, err = ctl("play", "99")  # positions on the command line count from 1, and so do the messages
    assert code == 1 and "no queue position 99 " in err and "98" not in err
    code, _, err = ctl("move", "7", "1")
    assert code == 1 and "no queue position 7 " in err
    code, _, err = ctl("add", "/etc/passwd")
    assert code == 1 and "outside_music_dirs" in err
    code, _, err = ctl("intensity", "7")
    assert code == 1 and "invalid_params" in err


def test_usage_errors_exit_2(ctl):
    for args in (("frobnicate",), ("move", "1"), ("listen", "--format", "mp3")):
        with pytest.raises(SystemExit) as exc:
            ctl(*args)
        assert exc.value.code == 2


def test_usage_errors_found_after_parsing_exit_2(ctl):
    code, _, err = ctl("volume", "loud")
    assert code == 2 and "bad volume" in err
    code, _, err = ctl("seek", "1:75")
    assert code == 2 and "bad time" in err
    code, _, err = ctl("del", "x")
    assert code == 2 and "bad queue position" in err


def test_missing_daemon_hint_exit_3_as_a_console_script(tmp_path):
    script = Path(sys.executable).parent / "auralisctl"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AURALIS_")}
    env["XDG_RUNTIME_DIR"] = str(tmp_path)
    result = subprocess.run([str(script), "status"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 3
    assert f"cannot connect to auralisd at {tmp_path}/auralis/control.sock" in result.stderr
    assert "hint:" in result.stderr and result.stdout == ""


def test_tcp_sends_auth_first_with_the_token(daemon, capsys):
    address, token_file = daemon.tcp

    def run(*args: str) -> tuple[int, str, str]:
        code = auralisctl.main(["--host", address, *args])
        out, err = capsys.readouterr()
        return code, out, err

    code, out, err = run("--token-file", str(token_file), "ping")
    assert (code, out, err) == (0, "pong\n", "")
    assert json.loads(run("--token", "correct-horse-battery-staple", "status", "--json")[1])["queue_length"] >= 0
    code, out, err = run("--token", "wrong-token-wrong-token", "ping")
    assert (code, out) == (1, "") and "(unauthorized)" in err
    code, _, err = run("ping")
    assert code == 2 and "TCP needs a token" in err
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    code = auralisctl.main(["--host", f"127.0.0.1:{closed}", "--token", "x", "ping"])
    err = capsys.readouterr().err
    assert code == 3 and f"127.0.0.1:{closed} (--host)" in err and "--control-tcp" in err


# ---------------------------------------------------------------- the queue


def test_add_queue_insert_move_del_clear(daemon, ctl, queue3):
    tracks = daemon.tracks
    daemon.call("queue.clear")
    code, out, _ = ctl("add", str(tracks["one"]), str(tracks["two"]))
    assert (code, out) == (0, "added 2 tracks at #1-#2\n")
    added = ctl_json(ctl, "add", str(tracks["three"]))
    assert [item["pos"] for item in added["added"]] == [2]
    code, out, _ = ctl("queue")
    # each track shows its album: untagged files by folder (docs/mastering.md)
    assert out.splitlines() == ["    1  01 one  [Album]  0:08", "    2  02 two  [Album]  0:07", "    3  three  [music]  0:06"]
    assert ctl("playlist")[1] == out
    listing = ctl_json(ctl, "queue")
    assert [i["title"] for i in listing["items"]] == ["01 one", "02 two", "three"] and listing["current"] is None

    # insert goes after the current track (mpc), or at --pos
    daemon.call("play", {"pos": 0})
    daemon.call("pause")
    assert ctl("insert", str(tracks["three"]))[1] == "added 1 track at #2\n"
    assert ctl("insert", "--pos", "1", "--id", str(listing["items"][1]["track_id"]))[1] == "added 1 track at #1\n"
    titles = [i["title"] for i in daemon.call("queue.list")["items"]]
    assert titles == ["02 two", "01 one", "three", "02 two", "three"]
    assert ctl("queue")[1].splitlines()[1].startswith(">   2  01 one")

    assert ctl("move", "5", "1") == (0, "", "")
    assert ctl("del", "2", "4-5") == (0, "", "")
    assert [i["title"] for i in daemon.call("queue.list")["items"]] == ["three", "01 one"]
    assert ctl("del", "0")[0] == 0, "0 is the current track"
    assert [i["title"] for i in daemon.call("queue.list")["items"]] == ["three"]
    assert ctl_json(ctl, "clear") is not None
    assert ctl("clear") == (0, "", "")
    assert ctl("queue") == (0, "", "")
    assert ctl_json(ctl, "queue") == {"items": [], "current": None}


def test_add_reads_paths_from_stdin_and_relative_paths(daemon, queue3, monkeypatch, ctl):
    import io

    daemon.call("queue.clear")
    monkeypatch.chdir(daemon.tracks["one"].parent)
    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{daemon.tracks['three']}\n\n"))
    assert ctl("add", "01 one.flac", "-")[1] == "added 2 tracks at #1-#2\n"
    assert [i["title"] for i in daemon.call("queue.list")["items"]] == ["01 one", "three"]


# ---------------------------------------------------------------- transport


def test_play_pause_toggle_stop_next_prev(daemon, ctl, queue3):
    code, out, _ = ctl("play", "2")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "02 two" and lines[1].startswith("[playing] #2/3   0:0")
    assert ctl_json(ctl, "pause")["state"] == "pause"
    assert ctl("toggle")[1].splitlines()[1].startswith("[playing] #2/3")
    assert ctl("next")[1].splitlines()[:2][0] == "three"
    assert ctl("prev")[1].splitlines()[0] == "02 two"
    assert ctl("previous", "-q") == (0, "", "")
    assert daemon.call("status")["queue_pos"] == 0
    code, out, _ = ctl("stop")
    assert code == 0 and not out.startswith("[") and out.startswith("volume:")
    assert daemon.call("status")["state"] == "stop"


def test_seek_absolute_relative_and_percent(daemon, ctl, queue3):
    daemon.call("play", {"pos": 0})
    daemon.call("pause")
    elapsed = lambda: daemon.call("status")["elapsed_s"]  # noqa: E731
    code, out, _ = ctl("seek", "50%")
    assert code == 0 and "[paused] #1/3   0:04/0:08 (50%)" in out
    assert elapsed() == pytest.approx(4.0, abs=0.05)
    ctl("seek", "+1.5")
    assert elapsed() == pytest.approx(5.5, abs=0.05)
    ctl("seek", "-0:02")
    assert elapsed() == pytest.approx(3.5, abs=0.05)
    ctl("seek", "0:01")
    assert elapsed() == pytest.approx(1.0, abs=0.05)
    assert ctl_json(ctl, "seek", "-25%")["elapsed_s"] == pytest.approx(0.0, abs=0.05)
    daemon.call("stop")
    daemon.call("queue.clear")
    code, _, err = ctl("seek", "10")
    assert code == 1 and "no current track" in err


def test_volume_absolute_relative_and_read(daemon, ctl, queue3):
    assert "volume:  70%" in ctl("volume", "70")[1]
    assert "volume:  75%" in ctl("volume", "+5")[1]
    assert "volume:  65%" in ctl("volume", "-10")[1]
    assert ctl("volume") == (0, "volume: 65%\n", "")
    assert ctl_json(ctl, "volume") == {"volume": 65}
    assert "volume: 100%" in ctl("volume", "+50")[1], "clamped to 100"
    assert daemon.call("status")["volume"] == 100


@pytest.mark.parametrize("flag", ["repeat", "random", "single", "consume"])
def test_option_flags_on_off_and_toggle(daemon, ctl, queue3, flag):
    assert f"{flag}: on" in ctl(flag, "on")[1]
    assert daemon.call("status")[flag] is True
    assert ctl_json(ctl, flag)[flag] is False, "no argument toggles"
    assert ctl(flag, "off", "-q") == (0, "", "")
    assert daemon.call("status")[flag] is False
    assert ctl(flag, "maybe")[0] == 2


# ---------------------------------------------------------------- library


def test_search_and_ls(daemon, ctl):
    tracks = daemon.tracks
    assert ctl("search", "two") == (0, f"{tracks['two']}\n", "")
    long_line = ctl("search", "two", "-l")[1]
    assert "0:07" in long_line and "02 two" in long_line and str(tracks["two"]) in long_line
    found = ctl_json(ctl, "search", "o", "--limit", "1")["tracks"]
    assert len(found) == 1
    music = tracks["three"].parent
    code, out, _ = ctl("ls", str(music))
    assert out.splitlines() == [f"{music / 'Album'}/", str(tracks["three"])]
    assert ctl("ls") == (0, out, ""), "one music folder: ls lists it"
    listing = ctl_json(ctl, "ls", str(music / "Album"))
    assert [t["path"] for t in listing["tracks"]] == [str(tracks["one"]), str(tracks["two"])]


def test_scan_and_scan_wait(daemon, ctl):
    code, out, _ = ctl("scan")
    assert code == 0 and out in ("scan started\n", "scan queued: it starts when the running one ends\n")
    code, out, _ = ctl("scan", "--wait")
    assert code == 0 and out.splitlines()[-2] == "scan complete: 3/3 files"
    # N files: ... S skipped (the .25d sidecars written so far): N - S are the three tracks, unchanged
    counts = re.fullmatch(r"(\d+) files: 0 added, 0 updated, 3 unchanged, 0 unsupported, 0 damaged, (\d+) skipped;"
                          r" 0 removed", out.splitlines()[-1])  # fmt: skip
    assert counts is not None and int(counts[1]) - int(counts[2]) == 3, out
    code, out, _ = ctl("scan", "--wait", "--json")
    lines = [json.loads(line) for line in out.splitlines()]
    counts = lines[-1].pop("counts")
    assert lines[-1] == {"done": 3, "total": 3, "complete": True, "error": None}
    assert (counts["files"] - counts["skipped"], counts["unchanged"], counts["removed"]) == (3, 3, 0)
    assert not daemon.call("status")["scan"]["running"]


def test_analysis_and_analysis_wait(daemon, ctl):
    """Background library analysis: totals now, and --wait until it is done (on the local pool here)."""
    code, out, _ = ctl("analysis", "--wait")
    assert code == 0
    last = re.fullmatch(r"analysis complete: (\d+) done, 0 failed, 0 queued, [\d.]+ tracks/s \(local\)", out.splitlines()[-1])
    assert last is not None, out
    analysis = ctl_json(ctl, "analysis")
    assert set(analysis) == {"running", "done", "failed", "queued", "elapsed_s", "rate", "eta_s", "where"}
    assert (analysis["running"], analysis["queued"], analysis["where"]) == (False, 0, "local")
    assert daemon.call("status")["analysis"] == analysis


# ---------------------------------------------------------------- mastering settings


def test_preset_list_and_set(daemon, ctl):
    code, out, _ = ctl("preset")
    names = [line[2:].split()[0] for line in out.splitlines()]
    assert names == ["adaptive", "gentle", "warm", "bright", "punchy"]
    current = daemon.call("status")["preset"]
    assert [line for line in out.splitlines() if line.startswith("*")][0].split()[1] == current
    listing = ctl_json(ctl, "preset")
    assert listing["current"] == current and listing["presets"][2]["name"] == "warm"
    assert ctl("preset", "warm") == (0, "preset: warm\n", "")
    assert daemon.call("status")["preset"] == "warm"
    assert ctl_json(ctl, "preset", "adaptive") == {"preset": "adaptive"}
    code, out, err = ctl("preset", "loudest")
    assert (code, out) == (1, "") and "unknown_preset" in err and "adaptive" in err
    assert daemon.call("status")["preset"] == "adaptive"


def test_album_mode_read_set_and_each_track_shows_its_album(daemon, ctl, queue3):
    assert ctl("album-mode") == (0, "album mode: auto\n", "")  # the default
    assert ctl("album-mode", "album") == (0, "album mode: album\n", "")
    assert daemon.call("status")["album_mode"] == "album"
    assert ctl_json(ctl, "album-mode", "auto") == {"album_mode": "auto"}
    code, out, err = ctl("album-mode", "loudest")
    assert code == 2 and "off, track, album, auto" in err
    code, out, _ = ctl("queue")
    lines = out.splitlines()
    # one and two share the folder "Album" (untagged: the folder rule); three is alone in the music folder
    assert "[Album]" in lines[0] and "[Album]" in lines[1] and "[music]" in lines[2]
    items = ctl_json(ctl, "queue")["items"]
    assert items[0]["album_key"] == items[1]["album_key"] != items[2]["album_key"]
    assert "album mode: auto" in ctl("status")[1]


def test_intensity_read_and_set(daemon, ctl):
    assert ctl("intensity", "0.35") == (0, "intensity: 0.35\n", "")
    assert daemon.call("status")["intensity"] == pytest.approx(0.35)
    assert ctl("intensity") == (0, "intensity: 0.35\n", "")
    assert ctl_json(ctl, "intensity", "1") == {"intensity": 1.0}
    assert ctl("intensity", "lots")[0] == 2


def test_fingerprint_of_the_current_track_an_id_and_a_path(daemon, ctl, queue3):
    tracks = daemon.tracks
    daemon.call("play", {"pos": 1})
    daemon.call("pause")
    code, out, _ = ctl("fingerprint")
    lines = out.splitlines()
    assert code == 0 and lines[0].startswith("track ") and "source:" in lines[0]
    assert "fingerprint:" in lines and "measurements:" in lines
    assert any(line.split()[0] == "lufs" for line in lines[2:])
    by_path = ctl_json(ctl, "fingerprint", str(tracks["two"]))
    assert len(by_path["fingerprint"]) == 25
    assert by_path["measurements"]["integrated_lufs"] > -10, "the crushed track is loud"
    by_id = ctl_json(ctl, "fingerprint", str(by_path["track_id"]))
    assert by_id["fingerprint"] == by_path["fingerprint"]
    daemon.call("stop")
    daemon.call("queue.clear")
    code, _, err = ctl("fingerprint")
    assert code == 1 and "no current track" in err


# ---------------------------------------------------------------- events


def run_until_exit(args: list[str], poke, timeout_s: float = 30.0) -> subprocess.CompletedProcess:
    """Run auralisctl as a process, calling ``poke()`` every 0.2 s until it exits.

    The pokes make the events auralisctl waits for; they repeat because its subscription races the first
    ones (no event says when another process subscribed). ``timeout_s`` is a safety bound only."""
    process = subprocess.Popen([sys.executable, str(SCRIPT), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout_s
    try:
        while process.poll() is None:
            assert time.monotonic() < deadline, "auralisctl did not exit"
            poke()
            time.sleep(0.2)
        out, err = process.communicate()
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    return subprocess.CompletedProcess(args, process.returncode, out, err)


def test_idle_and_watch_print_events(daemon, queue3):
    volumes = iter(range(40, 100))
    poke = lambda: daemon.call("volume.set", {"percent": next(volumes)})  # noqa: E731
    idle = run_until_exit(["--socket", daemon.socket_path, "idle", "volume"], poke)
    assert idle.returncode == 0 and idle.stdout.startswith("volume: volume=")
    assert len(idle.stdout.splitlines()) == 1
    # only the volume events: the daemon's own background work (album analysis of the new library)
    # publishes events of its own at any time, and an unfiltered watch rightly prints those too
    watch = run_until_exit(["--socket", daemon.socket_path, "watch", "volume", "--count", "3", "--json"], poke)
    events = [json.loads(line) for line in watch.stdout.splitlines()]
    assert len(events) == 3 and all(e["event"] == "volume" for e in events)
    assert [e["data"]["volume"] for e in events] == sorted(e["data"]["volume"] for e in events)
    bad = subprocess.run([sys.executable, str(SCRIPT), "--socket", daemon.socket_path, "watch", "nonsense"],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert bad.returncode == 2


# ---------------------------------------------------------------- listen


def test_listen_to_the_shared_stream_and_a_private_session(daemon, ctl, queue3, tmp_path):
    tracks = daemon.tracks
    daemon.call("options.set", {"repeat": True})
    daemon.call("volume.set", {"percent": 100})
    daemon.call("play", {"pos": 0})
    out = tmp_path / "stream.wav"
    http = f"127.0.0.1:{daemon.http_port}"
    code, _, err = ctl("listen", "--http", http, "--seconds", "0.5", "--out", str(out))
    assert code == 0, err
    audio, sample_rate = sf.read(out, dtype="float32", always_2d=True)
    assert sample_rate == 44100 and audio.shape == (22050, 2)
    assert sf.info(out).subtype == "FLOAT"
    daemon.call("stop")

    session = tmp_path / "session.wav"
    code, _, err = ctl("listen", "--http", http, "--session", str(tracks["three"]), "--preset", "gentle",
                       "--intensity", "0.5", "--burst", "--format", "s16", "--out", str(session))  # fmt: skip
    assert code == 0, err
    rendered, sample_rate = sf.read(session, dtype="int16", always_2d=True)
    assert rendered.shape == (6 * 44100, 2), "the whole 6 s track"
    assert np.abs(rendered).max() > 1000, "mastered music, not silence"

    raw = subprocess.run(
        [sys.executable, str(SCRIPT), "--socket", daemon.socket_path, "listen", "--http", http, "--session",
         str(tracks["three"]), "--preset", "gentle", "--intensity", "0.5", "--burst", "--format", "s16", "--out", "-"],
        capture_output=True, timeout=60,
    )  # fmt: skip
    assert raw.returncode == 0, raw.stderr
    # s16 carries TPDF dither, so two renders differ in the last bit: compare the length and the level.
    raw_pcm = np.frombuffer(raw.stdout, dtype="<i2").reshape(-1, 2)
    assert raw_pcm.shape == rendered.shape and raw.stdout[:4] != b"RIFF", "raw PCM, no WAV header"
    assert np.abs(raw_pcm.astype(np.int32) - rendered).max() <= 4

    code, _, err = ctl("listen", "--http", http, "--session", "99999", "--out", str(tmp_path / "none.wav"))
    assert code == 1 and "not_found" in err


def test_listen_format_opus_decodes_the_stream_with_pyav(daemon, ctl, queue3, tmp_path):
    """``listen --format opus``: the Opus frames decoded to a 48 kHz float WAV equal to the f32 render."""
    from scipy.signal import correlate

    from auralis.loudness import integrated_loudness

    tracks = daemon.tracks
    http = f"127.0.0.1:{daemon.http_port}"
    common = ["listen", "--http", http, "--session", str(tracks["three"]), "--preset", "gentle", "--burst"]
    code, _, err = ctl(*common, "--format", "opus", "--out", str(tmp_path / "opus.wav"))
    assert code == 0, err
    code, _, err = ctl(*common, "--out", str(tmp_path / "f32.wav"))
    assert code == 0, err
    opus, opus_rate = sf.read(tmp_path / "opus.wav", dtype="float32", always_2d=True)
    pcm, pcm_rate = sf.read(tmp_path / "f32.wav", dtype="float32", always_2d=True)
    assert (opus_rate, pcm_rate) == (48_000, 44_100) and sf.info(tmp_path / "opus.wav").subtype == "FLOAT"
    pcm48 = resample_reference(pcm, 44_100, 48_000)
    assert opus.shape == pcm48.shape  # the whole 6 s track, every sample once
    lag = int(np.argmax(correlate(opus[:, 0], pcm48[:, 0], mode="full", method="fft"))) - (pcm48.shape[0] - 1)
    assert lag == 0
    assert abs(integrated_loudness(opus, 48_000) - integrated_loudness(pcm, 44_100)) < 0.5


def test_shuffle_swap_crop(daemon, ctl, queue3):
    daemon.call("queue.clear")
    daemon.call("queue.add", {"paths": [str(daemon.tracks[n]) for n in ("one", "two", "three")] * 4})
    before = [i["title"] for i in daemon.call("queue.list")["items"]]
    daemon.call("play", {"pos": 5})
    daemon.call("pause")
    playing = daemon.call("status")["track"]["title"]
    assert ctl("shuffle") == (0, "", "")
    after = daemon.call("queue.list")
    assert sorted(i["title"] for i in after["items"]) == sorted(before)
    assert after["current"] == 0 and after["items"][0]["title"] == playing  # the playing track first, still playing
    assert ctl("swap", "1", "3") == (0, "", "")
    swapped = daemon.call("queue.list")
    assert swapped["current"] == 2 and swapped["items"][2]["title"] == playing
    assert [i["title"] for i in swapped["items"]][:2] == [after["items"][2]["title"], after["items"][1]["title"]]
    assert ctl("crop") == (0, "", "")
    assert [i["title"] for i in daemon.call("queue.list")["items"]] == [playing]
    assert daemon.call("status")["state"] == "pause"
    daemon.call("queue.clear")
