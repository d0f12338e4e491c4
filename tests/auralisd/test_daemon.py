"""End-to-end tests of a real ``auralisd`` process: real sockets, worker processes and SQLite file.

The tests wait on what the daemon says (events, replies, its log, its exit). Where only a status
poll can tell (``Client.wait_status``: the daemon is another process), the poll's deadline is a
generous safety bound that fails the test; it never paces it.
"""

from __future__ import annotations

import os
import signal
import sqlite3
from pathlib import Path

import msgpack
import pytest

from auralis.fingerprint import compute_fingerprint
from auralis.sidecar import SIDECAR_SUFFIX, write_sidecar

from .conftest import TRACK_S, free_port, write_tracks
from .rpc import Client, RpcError


def _play_until(client: Client, elapsed_s: float, timeout_s: float = 20.0) -> dict:
    return client.wait_status(lambda s: s["state"] == "play" and s["elapsed_s"] >= elapsed_s, timeout_s=timeout_s)


@pytest.fixture(scope="module")
def tiers(module_daemon_factory, tmp_path_factory):
    """One daemon on an (initially empty) music folder; each test adds its own files."""
    music = tmp_path_factory.mktemp("tiers-music")
    daemon = module_daemon_factory(music, name="tiers").start()
    return daemon, music


def _counters(c: Client) -> dict:
    return c.call("status")["fingerprints"]


def test_cold_play_computes_once_and_stores_everywhere(tiers) -> None:
    daemon, music = tiers
    (path,) = write_tracks(music / "Album", [("01 first.flac", TRACK_S, 44_100, 1, False)])
    track = str(path)
    with daemon.client() as c:
        before = _counters(c)
        c.call("subscribe", events=["fingerprint_progress", "mastering"])
        added = c.call("queue.add", paths=[track])["added"]
        c.call("play", pos=added[0]["pos"])
        mastering = c.wait_event("mastering")
        assert mastering["decision"].startswith("[2D LWRP]")
        assert mastering["plan"]["neutral"] is False
        c.wait_event("fingerprint_progress", lambda d: d["status"] == "complete")
        status = _play_until(c, 0.3)
        fps = status["fingerprints"]
        assert fps["plan_inputs_computed"] - before["plan_inputs_computed"] == 1
        assert fps["computed"] - before["computed"] == 1
        assert fps["failures"] == before["failures"]
        assert Path(track + SIDECAR_SUFFIX).exists()
        assert status["decision"] == mastering["decision"]
        assert status["track"]["path"] == track
        # playing the same track again computes nothing
        again = c.call("queue.add", paths=[track])["added"][0]["pos"]
        c.call("play", pos=again)
        status = _play_until(c, 0.2)
        assert status["fingerprints"]["computed"] == fps["computed"]
        assert status["fingerprints"]["plan_inputs_computed"] == fps["plan_inputs_computed"]
        assert status["fingerprints"]["memory_hits"] > fps["memory_hits"]
        got = c.call("fingerprint.get", path=track)
        assert len(got["fingerprint"]) == 25 and got["source"] == "memory"
        c.call("queue.clear")
    db = sqlite3.connect(daemon.state_dir / "auralis.sqlite3")
    row = db.execute(
        "SELECT f.complete, f.source, t.fingerprint_status FROM fingerprints f JOIN tracks t USING (track_id)"
        " WHERE t.path = ?",
        (track,),
    ).fetchone()
    db.close()
    assert row == (1, "computed", "complete")


def test_sidecar_present_database_empty_means_no_computation(tiers, tmp_path: Path) -> None:
    daemon, music = tiers
    (src,) = write_tracks(tmp_path, [("song.flac", TRACK_S, 44_100, 7, False)])
    target = music / "song.flac"
    os.replace(src, target)
    write_sidecar(str(target), compute_fingerprint(str(target)))
    with daemon.client() as c:
        before = _counters(c)
        pos = c.call("queue.add", paths=[str(target)])["added"][0]["pos"]
        c.call("play", pos=pos)
        status = _play_until(c, 0.3)
        fps = status["fingerprints"]
        assert fps["sidecar_hits"] - before["sidecar_hits"] == 1
        assert (fps["computed"], fps["plan_inputs_computed"]) == (before["computed"], before["plan_inputs_computed"])
        assert status["plan_source"] == "sidecar"
        assert c.call("library.track", path=str(target))["fingerprint_status"] == "complete"
        c.call("queue.clear")


def test_fingerprint_failure_plays_on_the_neutral_plan(tiers, tmp_path: Path) -> None:
    daemon, music = tiers
    with daemon.client() as c:
        before = _counters(c)
        c.call("subscribe", events=["fingerprint_progress", "mastering", "error"])
        # a FLAC whose end is garbage: the start decodes, a whole-track analysis cannot
        (path,) = write_tracks(tmp_path, [("broken.flac", 12.0, 44_100, 5, False)])
        data = bytearray(path.read_bytes())
        cut = int(len(data) * 0.7)
        data[cut:] = os.urandom(len(data) - cut)
        target = music / "broken.flac"
        target.write_bytes(bytes(data))
        pos = c.call("queue.add", paths=[str(target)])["added"][0]["pos"]
        c.call("play", pos=pos)
        failed = c.wait_event("fingerprint_progress", lambda d: d["status"] == "failed")
        # the reason is the decoder's, not an internal error or an exception-group wrapper
        assert failed["reason"] and "internal" not in failed["reason"] and "Group" not in failed["reason"]
        error = c.wait_event("error")
        assert error["code"] == "bad_audio" and "broken.flac" in error["message"]
        mastering = c.wait_event("mastering")
        assert mastering["plan"]["neutral"] is True
        status = _play_until(c, 0.5)
        assert status["plan"]["neutral"] is True and status["plan_source"] == "neutral"
        assert status["fingerprints"]["failures"] - before["failures"] == 1
        assert c.call("library.track", path=str(target))["fingerprint_status"] == "failed"
        c.call("queue.clear")


def test_killed_worker_mid_render_is_retried(tmp_path: Path, daemon_factory) -> None:
    music = tmp_path / "music"
    (path,) = write_tracks(music, [("long.flac", 30.0, 44_100, 9, False)])
    daemon = daemon_factory(music, ["--render-ahead", "1", "--cache-mib", "4"]).start()
    with daemon.client() as c:
        daemon.wait_scan(c, 1)
        c.call("queue.add", paths=[str(path)])
        c.call("play")
        _play_until(c, 0.1, timeout_s=60)
        deaths = 0
        for attempt in range(40):  # seek to uncached chunks and kill the workers while one renders
            position_s = float((attempt * 7) % 25)
            c.call("seek", position_s=position_s)
            # a render runs, or the seek landed on cached audio that plays on (nothing to kill this round)
            rendering = c.wait_status(
                lambda s, p=position_s: s["pool"]["running"] > 0 or s["elapsed_s"] >= p + 0.3, timeout_s=60,
                interval_s=0.005,
            )["pool"]["running"] > 0
            if rendering:
                for pid in daemon.worker_pids():
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            # the retry rendered what the playhead needs: playback goes on past the seek
            deaths = _play_until(c, position_s + 0.3, timeout_s=60)["pool"]["worker_deaths"]
            if deaths:
                break
        assert deaths >= 1
        status = c.call("status")
        assert status["pool"]["retries"] >= 1
        start = status["elapsed_s"]
        status = _play_until(c, start + 1.0, timeout_s=30)  # the stream goes on
        assert status["queue_pos"] == 0 and status["state"] == "play"


TOKEN = "s3cret-token-0123456789"


@pytest.fixture(scope="module")
def edge(module_daemon_factory, tmp_path_factory):
    """A daemon with TCP control, a symlink out of the music folder and a symlink loop in it."""
    base = tmp_path_factory.mktemp("edge")
    music = base / "music"
    write_tracks(music / "Album", [("01 first.flac", 1.0, 44_100, 1, False), ("02 second.wav", 1.0, 44_100, 2, True)])
    write_tracks(music, [("03 third.flac", 1.0, 48_000, 3, False)])
    outside = base / "outside"
    write_tracks(outside, [("secret.flac", 1.0, 44_100, 4, False)])
    (music / "linked").symlink_to(outside)  # a symlink the library follows: allowed
    (music / "loop").symlink_to(music)  # a symlink loop: the scan must end
    (music / ".hidden.flac").write_bytes(b"not even audio")
    token_file = base / "token"
    token_file.write_text(TOKEN + "\n")
    port = free_port()
    extra = ["--control-tcp", f"127.0.0.1:{port}", "--token-file", str(token_file)]
    daemon = module_daemon_factory(music, extra, name="edge").start()
    return daemon, music, port


def test_hostile_clients_get_errors_and_the_daemon_serves_on(edge) -> None:
    daemon, music, _ = edge
    good = daemon.client()
    daemon.wait_scan(good, 4)
    assert good.call("status")["scan"]["tracks"] == 4

    def code_of(method: str, **params) -> str:
        with pytest.raises(RpcError) as info:
            good.call(method, **params)
        return info.value.code

    assert code_of("no.such.method") == "unknown_method"
    assert code_of("seek", position_s="soon") == "invalid_params"
    assert code_of("volume.set", percent=101) == "invalid_params"
    assert code_of("play", pos=True) == "invalid_params"
    assert code_of("queue.add", paths=["/etc/passwd"]) == "outside_music_dirs"
    assert code_of("queue.add", paths=[str(music / ".." / "outside" / "secret.flac")]) == "outside_music_dirs"
    assert code_of("queue.add", paths=["../../../../etc/hostname"]) == "outside_music_dirs"
    assert code_of("library.list", path="/etc") == "outside_music_dirs"
    assert code_of("preset.set", name="loudest") == "unknown_preset"
    assert code_of("fingerprint.get", track_id=99999) == "not_found"
    added = good.call("queue.add", paths=[str(music / "linked" / "secret.flac")])["added"]
    assert len(added) == 1

    # a shape error is answered and the connection stays usable
    _, _, error, _ = good.call_raw("status", {"x": 1})
    assert error["code"] == "invalid_params"
    good.send_raw(msgpack.packb([0, 77, "ping"]))
    reply = good.read_message()
    assert reply[0] == 1 and reply[1] == 77 and reply[2]["code"] == "bad_request"

    # garbage bytes and an oversized frame close only that connection
    for payload in (b"\xc1\xc1\xc1garbage", msgpack.packb([0, 1, "ping", {"x": "a" * (2 << 20)}])):
        with daemon.client() as bad:
            try:
                bad.send_raw(payload)
            except OSError:
                pass
            with pytest.raises((ConnectionError, OSError)):
                for _ in range(3):
                    message = bad.read_message()
                    assert message[0] == 2 and message[2]["code"] == "bad_request"
    # many concurrent clients keep working
    clients = [daemon.client() for _ in range(8)]
    for i, client in enumerate(clients):
        client.send_raw(msgpack.packb([0, i, "ping", {}]))
    assert [client.read_message()[3] for client in clients] == ["pong"] * 8
    for client in clients:
        client.close()
    assert good.call("ping") == "pong"
    good.close()


def test_tcp_requires_the_token_first(edge) -> None:
    daemon, _, port = edge
    with Client.tcp("127.0.0.1", port) as c:
        _, _, error, _ = c.call_raw("status")
        assert error["code"] == "unauthorized"
        with pytest.raises((ConnectionError, OSError)):
            c.call("ping")
    with Client.tcp("127.0.0.1", port) as c:
        with pytest.raises(RpcError) as info:
            c.call("auth", token="wrong-token-xxxxxxxx")
        assert info.value.code == "unauthorized"
    with Client.tcp("127.0.0.1", port) as c:
        assert c.call("auth", token=TOKEN) is True
        assert c.call("status")["queue_length"] >= 0
    with daemon.client() as c:  # the Unix socket needs no token
        assert c.call("ping") == "pong"
    mode = os.stat(daemon.socket_path).st_mode & 0o777
    assert mode == 0o600 and os.stat(daemon.runtime_dir).st_mode & 0o777 == 0o700


def test_sighup_reloads_and_rescans(edge) -> None:
    daemon, music, _ = edge
    with daemon.client() as c:
        tracks = c.call("status")["scan"]["tracks"]
        write_tracks(music / "Album", [("04 new.flac", 1.0, 44_100, 8, False)])
        daemon.signal(signal.SIGHUP)
        c.wait_status(lambda s: s["scan"]["tracks"] == tracks + 1 and not s["scan"]["running"])
    assert "configuration reloaded" in daemon.log()


def _prepare_session(c: Client, music: Path) -> dict:
    c.call("queue.add", paths=[str(music)])
    c.call("preset.set", name="warm")
    c.call("intensity.set", value=0.6)
    c.call("volume.set", percent=70)
    c.call("options.set", repeat=True, consume=False, single=False, random=False)
    c.call("play", pos=1)
    return _play_until(c, 0.3)  # SIGTERM saves the state (position included) on the way out


def _check_restored(daemon, before: dict, *, state: str) -> dict:
    """The state after a restart: ``play`` (resumed, the default) or ``pause`` (``--restore-paused``)."""
    with daemon.client() as c:
        status = c.call("status")
        assert status["state"] == state
        assert status["queue_pos"] == 1 and status["queue_length"] == 3
        assert status["track"]["track_id"] == before["track"]["track_id"]
        assert status["elapsed_s"] >= before["elapsed_s"] - 1.0
        if state == "pause":
            assert abs(status["elapsed_s"] - before["elapsed_s"]) < 1.0
        assert (status["preset"], status["intensity"], status["volume"]) == ("warm", 0.6, 70)
        assert status["repeat"] is True and status["consume"] is False
        if state == "pause":
            c.call("play")
        after = _play_until(c, status["elapsed_s"] + 0.2)
        assert after["queue_pos"] == 1
        c.call("seek", position_s=0.3)  # committed (the position too) before it is answered
        return c.call("status")  # the caller kills the daemon right after: the position is about this


def _integrity(daemon) -> str:
    db = sqlite3.connect(daemon.state_dir / "auralis.sqlite3")
    try:
        return db.execute("PRAGMA integrity_check").fetchone()[0]
    finally:
        db.close()


def test_restart_after_sigterm_and_kill9_restores_state(music: Path, daemon_factory, tmp_path: Path) -> None:
    root = tmp_path / "d"
    daemon = daemon_factory(music, root=root).start()
    with daemon.client() as c:
        daemon.wait_scan(c, 3)
        before = _prepare_session(c, music)
    # SIGTERM: every actor stops by itself within the daemon's own grace (SHUTDOWN_GRACE_S: it says which
    # one did not), the state is saved, the exit is clean. (No stopwatch here: under load the process's
    # exit takes what the machine gives it; the daemon's own deadline is what a user relies on.)
    daemon.signal(signal.SIGTERM)
    assert daemon.wait(60) == 0  # a safety bound only
    assert "stopped" in daemon.log()
    assert "did not stop in time" not in daemon.log()
    assert _integrity(daemon) == "ok"
    daemon.stop()
    again = daemon_factory(music, root=root).start()  # the default: what was playing plays on
    before = _check_restored(again, before, state="play")
    # kill -9 while playing: the database is intact and the position at most 0.5 s old
    again.signal(signal.SIGKILL)
    again.wait(5)
    again.stop()
    assert _integrity(again) == "ok"
    third = daemon_factory(music, ["--restore-paused"], root=root).start()
    _check_restored(third, before, state="pause")
