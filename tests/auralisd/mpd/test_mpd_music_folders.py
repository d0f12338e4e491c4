"""Several music folders through the MPD port: each folder's name leads its URIs, and every command
that takes or matches a URI (``lsinfo``, ``listall``, ``add``, ``find``/``search``/``count``/``list``
with ``file``/``base``/``any`` filters, ``findadd``, ``searchadd``) honours that prefix exactly as
Debian's MPD does for one music directory holding the same folders. (MPD 0.23 has no ``file
starts_with`` and matches no URI with ``any``: tests/auralisd/test_tagquery.py covers those.)

The folders are named so that one is a prefix of another (``Music``, ``Music2``) and one holds a
space (``Old Songs``); Auralis is given them out of name order, and MPD lists them in name order.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import mpd  # python-mpd2
import pytest

from tests.helpers import require_tool

from ..conftest import DaemonProcess
from .conftest import LIBRARY, AuralisMpd, MpdConnection, RealMpd, free_port, greets, mpd_env, wait_until, write_library
from .test_mpd_database import entries

FOLDERS = ("Old Songs", "Music2", "Music")  # Auralis's order; MPD's is by name
SONGS = len(FOLDERS) * len(LIBRARY)

COMMANDS = [
    # folders
    "lsinfo", "lsinfo /", "lsinfo Music", "lsinfo Music2", "lsinfo \"Old Songs\"", "lsinfo Music2/Alpha",
    "lsinfo \"Old Songs/Beta/02 sky.flac\"", "lsinfo Mus", "lsinfo Music2/nosuch", "lsinfo Alpha",
    "listall", "listall Music", "listall Music2", "listall \"Old Songs/Beta\"", "listall Music/loose.flac",
    "listall Alpha", "listallinfo", "listallinfo Music2", "listallinfo \"Old Songs\"",
    # base
    "find base Music", "find base Music2", "find base Music2/Alpha", "find base \"Old Songs/Beta\"",
    "find \"(base 'Music/Alpha')\"", "find base Mus", "find base Alpha", "find base \"Old\"",
    "find \"((base 'Music2') AND (artist == 'Bo Carter'))\"", "find \"(!(base 'Music'))\"",
    "count base Music2", "count \"(base 'Old Songs')\" group artist", "list album \"(base 'Music2/Beta')\"",
    "find \"(base 'Music2')\" sort Title window 1:4", "search \"(base 'Music')\" window 2:5",
    # file
    "find \"(file == 'Music2/loose.flac')\"", "find file \"Music/Alpha/01 dawn.flac\"",
    "find file \"Old Songs/Beta/01 sea.flac\"", "find \"(file == 'loose.flac')\"",
    "find \"(file == 'Alpha/01 dawn.flac')\"", "find \"(file != 'Music/loose.flac')\"",
    "find \"(file contains 'c2/Al')\"", "find \"(file contains 'Songs/')\"", "find \"(file contains 'Music')\"",
    "find \"(file =~ '^Music2?/loose')\"", "find \"(file !~ '^Music/')\"", "find \"(file =~ '^Alpha/')\"",
    "search file \"music2/alpha\"", "search \"(file contains 'MUSIC/L')\"", "search file \"old songs/\"",
    "search \"(file =~ '^old')\"", "count \"(file =~ '^Music2/')\"", "count file \"Music/loose.flac\"",
    "list title \"(file contains 'Old Songs/')\"", "list file", "list file \"(base 'Music2')\"",
    "find any loose.flac", "search any loose",
]  # fmt: skip


@pytest.fixture(scope="module")
def music_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder holding the music folders, each with the same generated songs (MPD's music directory)."""
    root = tmp_path_factory.mktemp("roots")
    for name in FOLDERS:
        write_library(root / name)
    return root


@pytest.fixture(scope="module")
def auralis(music_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AuralisMpd]:
    port = free_port()
    folders = [arg for name in FOLDERS for arg in ("--music-dir", str(music_root / name))]
    daemon = DaemonProcess(tmp_path_factory.mktemp("auralis-roots"), None, [*folders, "--mpd-port", str(port)])
    try:
        daemon.start()
        wait_until(lambda: greets(port))
        with daemon.client() as client:
            daemon.wait_scan(client, SONGS)
        yield AuralisMpd(daemon, port)
    finally:
        daemon.stop()


@pytest.fixture(scope="module")
def reference(music_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RealMpd]:
    real = RealMpd(tmp_path_factory.mktemp("real-mpd-roots"), music_root, songs=SONGS)
    try:
        yield real.start()
    finally:
        real.stop()


@pytest.fixture(scope="module")
def both(auralis: AuralisMpd, reference: RealMpd) -> Iterator[tuple[MpdConnection, MpdConnection]]:
    ours, theirs = auralis.connect(), reference.connect()
    yield ours, theirs
    ours.close()
    theirs.close()


@pytest.mark.parametrize("command", COMMANDS)
def test_uris_carry_the_folder_name_as_in_mpd(both: tuple[MpdConnection, MpdConnection], command: str) -> None:
    ours, theirs = both
    mine, reference = ours.command(command), theirs.command(command)
    assert (mine.error or "")[:12] == (reference.error or "")[:12], (mine.error, reference.error)
    assert entries(mine) == entries(reference)


def _queue_files(client: mpd.MPDClient) -> list[str]:
    return [song["file"] for song in client.playlistinfo()]


def _queue_steps(client: mpd.MPDClient) -> list[list[str]]:
    """The same queue edits on either server (python-mpd2): the queue's files after each."""
    client.clear()
    steps = []
    for command, *args in [
        ("add", "Music2/Alpha"), ("add", "Music/loose.flac"), ("add", "Old Songs/Beta"),
        ("findadd", "base", "Music"), ("findadd", "(file == 'Music2/Beta/01 sea.flac')"),
        ("searchadd", "(file contains 'SONGS/ALPHA/0')"), ("searchadd", "file", "music2/loose"),
        ("findadd", "(base 'Old Songs/Alpha')", "position", "1"), ("addid", "Music2/Beta/02 sky.flac", "0"),
        ("add", "/"),
    ]:  # fmt: skip
        getattr(client, command)(*args)
        steps.append(_queue_files(client))
    for command, *args in [("add", "Alpha"), ("add", "Mus"), ("findadd", "base", "Alpha")]:
        with pytest.raises(mpd.CommandError, match="No such"):
            getattr(client, command)(*args)
    client.clear()
    return steps


def test_add_findadd_searchadd_take_prefixed_uris_as_mpd(auralis: AuralisMpd, reference: RealMpd) -> None:
    results = []
    for port in (auralis.mpd_port, reference.port):
        client = mpd.MPDClient()
        client.connect("127.0.0.1", port)
        try:
            results.append(_queue_steps(client))
        finally:
            client.disconnect()
    mine, theirs = results
    assert theirs[0][0] == "Music2/Alpha/01 dawn.flac"  # the reference really takes prefixed URIs
    assert mine == theirs


def test_mpc_browses_and_searches_by_folder(auralis: AuralisMpd, reference: RealMpd) -> None:
    binary = require_tool("mpc")

    def mpc(port: int, *args: str) -> str:
        done = subprocess.run([binary, *args], env=mpd_env(port), capture_output=True, text=True, timeout=20)
        assert done.returncode == 0, done.stderr
        return done.stdout

    for args in [("ls",), ("ls", "Music2"), ("listall", "Old Songs"), ("search", "filename", "music2/b"),
                 ("find", "base", "Music/Beta"), ("search", "filename", "old songs/alpha/0")]:  # fmt: skip
        assert mpc(auralis.mpd_port, *args) == mpc(reference.port, *args), args
    assert mpc(auralis.mpd_port, "ls").splitlines() == ["Music", "Music2", "Old Songs"]
