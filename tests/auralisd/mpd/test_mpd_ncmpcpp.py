"""ncmpcpp 0.9 (Debian), unmodified, in tmux against Auralis's MPD port; the screen is read back
with ``tmux capture-pane``: the queue, play, seek, volume, pause (and, with the database side's
commands, browse and search)."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import require_tool

from .conftest import AuralisMpd, MpdConnection

SCREEN_TIMEOUT_S = 20.0


class Tmux:
    def __init__(self, name: str) -> None:
        self.name = name
        self.tmux = require_tool("tmux")

    def run(self, *args: str) -> str:
        return subprocess.run([self.tmux, *args], capture_output=True, text=True, check=True, timeout=10).stdout

    def keys(self, *keys: str) -> None:
        self.run("send-keys", "-t", self.name, *keys)

    def screen(self) -> str:
        return self.run("capture-pane", "-p", "-t", self.name)

    def wait_screen(self, predicate: Callable[[str], bool], what: str) -> str:
        deadline = time.monotonic() + SCREEN_TIMEOUT_S
        screen = self.screen()
        while not predicate(screen):
            if time.monotonic() > deadline:
                raise AssertionError(f"the screen never showed {what}:\n{screen}")
            time.sleep(0.1)  # a terminal has no event to wait on: poll the screen, bounded
            screen = self.screen()
        return screen


@pytest.fixture
def ncmpcpp(auralis_mpd: AuralisMpd, tmp_path: Path) -> Iterator[Tmux]:
    binary = require_tool("ncmpcpp")
    tmux = Tmux(f"auralis-ncmpcpp-{uuid.uuid4().hex[:8]}")
    config = tmp_path / "config"
    config.write_text(f"mpd_host = 127.0.0.1\nmpd_port = {auralis_mpd.mpd_port}\nuser_interface = classic\n"
                      "mpd_connection_timeout = 10\n")  # fmt: skip
    tmux.run("new-session", "-d", "-s", tmux.name, "-x", "160", "-y", "40",
             f"{binary} --config {config} 2>{tmp_path / 'stderr'}")  # fmt: skip
    try:
        tmux.run("resize-window", "-t", tmux.name, "-x", "160", "-y", "40")  # without a client tmux may keep 80x24
        tmux.wait_screen(lambda s: "Playlist" in s, "ncmpcpp's playlist screen")
        yield tmux
    finally:
        tmux.run("kill-session", "-t", tmux.name)


def status(conn: MpdConnection) -> dict[str, str]:
    return dict(conn.command("status").pairs)


def wait_status(conn: MpdConnection, predicate: Callable[[dict[str, str]], bool], what: str) -> dict[str, str]:
    deadline = time.monotonic() + SCREEN_TIMEOUT_S
    current = status(conn)
    while not predicate(current):
        if time.monotonic() > deadline:
            raise AssertionError(f"never {what}: {current}")
        time.sleep(0.05)
        current = status(conn)
    return current


def press_until(tmux: Tmux, key: str, conn: MpdConnection, predicate: Callable[[dict[str, str]], bool],
                what: str) -> dict[str, str]:
    """Press ``key`` until the daemon's status satisfies ``predicate`` (a press every 0.5 s, bounded)."""
    deadline = time.monotonic() + SCREEN_TIMEOUT_S
    while True:
        tmux.keys(key)
        press_deadline = time.monotonic() + 0.5
        while time.monotonic() < press_deadline:
            current = status(conn)
            if predicate(current):
                return current
            time.sleep(0.05)
        if time.monotonic() > deadline:
            raise AssertionError(f"never {what}: {current}")


def test_browse_add_search_play_seek_volume(auralis_mpd: AuralisMpd, ncmpcpp: Tmux) -> None:
    tmux = ncmpcpp
    conn = auralis_mpd.connect()
    try:
        conn.command("clear")
        conn.command("setvol 50")
        conn.command("repeat 1")  # with single: the song plays on until paused (the tracks are 2-3 s long)
        conn.command("single 1")
        # browse the library (lsinfo) and add an album: Space on the folder
        tmux.keys("2")
        tmux.wait_screen(lambda s: "Browse: /" in s and "[Alpha]" in s and "[Beta]" in s, "the library's top folders")
        tmux.keys("Space")
        tmux.wait_screen(lambda s: 'Directory "Alpha" added' in s, "the album added")
        assert [v for k, v in conn.command("playlistinfo").pairs if k == "file"] == [
            "Alpha/01 dawn.flac", "Alpha/02 noon.flac", "Alpha/03 dusk.flac"]
        tmux.keys("Up")  # (adding moved the cursor to the next entry)
        tmux.keys("Enter")  # into the folder
        tmux.wait_screen(lambda s: "Browse: Alpha" in s and "Dusk" in s, "the album's songs")
        # search the database (search any "Sky")
        tmux.keys("3")
        tmux.wait_screen(lambda s: "Search engine" in s and "Search mode" in s, "the search engine")
        tmux.keys("Enter")
        tmux.keys("-l", "Sky")
        tmux.keys("Enter")
        tmux.wait_screen(lambda s: "Any          : Sky" in s, "the search phrase")
        tmux.keys(*["Down"] * 13)  # to the "Search" button
        tmux.keys("Enter")
        # the count shows in the status line before the result list is drawn
        tmux.wait_screen(lambda s: "Found 1 song" in s and 'Sky "quoted"' in s, "one search result")
        # the queue screen: play the second song, pause, seek, volume, stop
        tmux.keys("1")
        screen = tmux.wait_screen(lambda s: "Playlist (3 items" in s and "Dusk" in s, "the queue")
        assert "Ann Arb" in screen and "Noon" in screen and "Dawn" in screen
        tmux.keys("Down")  # the second entry
        tmux.keys("Enter")  # plays it
        wait_status(conn, lambda s: s.get("state") == "play" and s.get("song") == "1", "playing #2")
        # ncmpcpp's `p` acts on the state ncmpcpp knows (its idle may not have arrived yet when the
        # daemon already plays: then `p` is ignored and the song never pauses), so wait for its screen
        tmux.wait_screen(lambda s: "Noon" in "".join(s.rstrip().splitlines()[-2:]), "the playing song in the status bar")
        tmux.keys("p")
        wait_status(conn, lambda s: s.get("state") == "pause" and s.get("song") == "1", "paused on #2")
        tmux.wait_screen(lambda s: "Noon" in "".join(s.rstrip().splitlines()[-2:]), "the paused song in the status bar")
        tmux.keys("f")  # seek forward
        wait_status(conn, lambda s: float(s.get("elapsed", "0")) >= 0.9, "seeked forward")
        # ncmpcpp stays in its seek loop a moment after `f`, and the key that ends the loop is swallowed,
        # whatever it is; the screen shows no sign of the loop, so `+` is pressed again until it counts
        press_until(tmux, "+", conn, lambda s: int(s.get("volume", "0")) > 50, "louder")
        # a press that was only slow may still land: the screen must show the volume as it is now
        tmux.wait_screen(lambda s: f"Volume: {status(conn)['volume']}%" in s.splitlines()[0]
                         and status(conn)["volume"] != "50", "the new volume")
        tmux.keys("s")
        wait_status(conn, lambda s: s.get("state") == "stop", "stopped")
    finally:
        conn.command("setvol 100")
        conn.command("repeat 0")
        conn.command("single 0")
        conn.command("clear")
        conn.close()
