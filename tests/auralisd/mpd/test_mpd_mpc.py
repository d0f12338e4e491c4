"""Debian's mpc, unmodified, against Auralis's MPD port: each subcommand that maps to something Auralis has."""

from __future__ import annotations

import subprocess

import pytest

from tests.helpers import require_tool

from .conftest import AuralisMpd, mpd_env, wait_until


@pytest.fixture
def mpc(auralis_mpd: AuralisMpd):
    binary = require_tool("mpc")
    env = mpd_env(auralis_mpd.mpd_port)

    def run(*args: str, check: bool = True, timeout_s: float = 20) -> str:
        done = subprocess.run([binary, *args], env=env, capture_output=True, text=True, timeout=timeout_s)
        if check and done.returncode != 0:
            raise AssertionError(f"mpc {' '.join(args)} failed: {done.stderr}")
        return done.stdout + done.stderr

    run("clear")
    run("stop")
    for flag in ("random", "repeat", "single", "consume"):
        run(flag, "off")
    yield run
    run("volume", "100")
    run("clear")


def test_add_playlist_play_current_format(mpc) -> None:
    mpc("add", "Alpha")
    mpc("add", "loose.flac")
    assert mpc("playlist").splitlines() == ["Ann Arbor - Dawn", "Ann Arbor - Noon", "Ann Arbor - Dusk", "Cy Dee - Loose"]
    assert mpc("playlist", "-f", "%position% %file%").splitlines()[3] == "4 loose.flac"
    out = mpc("play", "2")
    assert "[playing] #2/4" in out
    assert mpc("current", "--format", "%title% by %artist% on %album% (%time%)").strip() == "Noon by Ann Arbor on Alpha (0:03)"
    assert mpc("current", "-f", "[%track%] %file%").strip() == "2 Alpha/02 noon.flac"


def test_pause_toggle_stop_next_prev_seek(mpc) -> None:
    mpc("add", "Alpha")
    mpc("play")
    assert "[paused]" in mpc("pause")
    assert "[playing]" in mpc("toggle")
    assert "#2/3" in mpc("next")
    assert "#1/3" in mpc("prev")
    out = mpc("seek", "0:01")
    assert "0:01/0:02" in out
    assert "[playing]" in mpc("seek", "50%")
    mpc("stop")
    assert "[playing]" not in mpc("status") and "[paused]" not in mpc("status")


def test_volume_and_options(mpc) -> None:
    assert "volume: 35%" in mpc("volume", "35")
    assert "volume: 45%" in mpc("volume", "+10")
    assert "volume: 40%" in mpc("volume", "-5")
    out = mpc("random", "on")
    assert "random: on" in out
    out = mpc("repeat", "on")
    assert "repeat: on" in out
    assert "single: on" in mpc("single", "on")
    assert "consume: on" in mpc("consume", "on")
    assert "random: off" in mpc("random")  # toggles
    assert "Crossfade: 4" in mpc("crossfade", "4") or mpc("crossfade").strip().endswith("4")
    mpc("crossfade", "0")


def test_queue_edits_del_move_shuffle_crop_insert(mpc) -> None:
    mpc("add", "Alpha")
    mpc("add", "Beta")
    mpc("move", "1", "5")
    files = mpc("playlist", "-f", "%file%").splitlines()
    assert files[4] == "Alpha/01 dawn.flac" and files[0] == "Alpha/02 noon.flac"
    mpc("del", "5")
    assert len(mpc("playlist").splitlines()) == 4
    before = mpc("playlist", "-f", "%file%").splitlines()
    mpc("shuffle")
    after = mpc("playlist", "-f", "%file%").splitlines()
    assert sorted(after) == sorted(before)
    mpc("play", "2")
    playing = mpc("current", "-f", "%file%").strip()
    mpc("insert", "loose.flac")  # right after the current song
    files = mpc("playlist", "-f", "%file%").splitlines()
    assert files[2] == "loose.flac"
    mpc("crop")
    assert mpc("playlist", "-f", "%file%").splitlines() == [playing]
    mpc("clear")
    assert mpc("playlist").strip() == ""


def test_outputs_stats_version_and_misc(mpc) -> None:
    assert "Output 1 (stream) is enabled" in mpc("outputs")
    assert "Output 1 (stream) is disabled" in mpc("disable", "1")
    assert "Output 1 (stream) is enabled" in mpc("toggleoutput", "1")
    assert "Songs:        6" in mpc("stats")
    assert "mpd version: 0.23.0" in mpc("version")
    assert "auralis" not in mpc("channels")  # only channels with subscribers are listed
    assert "replay gain mode: album" in mpc("replaygain", "album").lower() or "album" in mpc("replaygain")
    mpc("replaygain", "auto")
    assert "Artist" in mpc("tagtypes") if "tagtypes" in mpc("help", check=False) else True


def test_sendmessage_waitmessage_and_idle(mpc, auralis_mpd: AuralisMpd) -> None:
    binary = require_tool("mpc")
    env = mpd_env(auralis_mpd.mpd_port)
    waiter = subprocess.Popen([binary, "waitmessage", "chat"], env=env, stdout=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: "chat" in mpc("channels"))
        mpc("sendmessage", "chat", "hello")
        out, _ = waiter.communicate(timeout=10)
        assert out.strip() == "hello"
    finally:
        waiter.kill()
        waiter.wait()
    idler = subprocess.Popen([binary, "idle", "playlist"], env=env, stdout=subprocess.PIPE, text=True)
    try:
        mpc("add", "loose.flac")
        out, _ = idler.communicate(timeout=10)
        assert out.strip() == "playlist"
    finally:
        idler.kill()
        idler.wait()
    decisions = subprocess.Popen([binary, "waitmessage", "auralis"], env=env, stdout=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: "auralis" in mpc("channels"))
        mpc("sendmessage", "auralis", "preset warm")
        out, _ = decisions.communicate(timeout=10)
        assert out.strip() == "preset warm"
    finally:
        decisions.kill()
        decisions.wait()
    mpc("sendmessage", "auralis", "preset adaptive")
    assert "unknown preset" in mpc("sendmessage", "auralis", "preset nope", check=False)
