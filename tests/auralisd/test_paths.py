"""The one wire escaping of file paths (auralisd/protocol/paths.py) and auralisctl's copy of it,
and the database that stores paths in it (migration 3 keeps older rows)."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import trio
from hypothesis import given
from hypothesis import strategies as st

from auralisd.actors.database import MIGRATIONS, Database, TrackFile, fold
from auralisd.protocol.paths import path_from_wire, path_to_line, path_to_wire, text_to_wire
from clients import auralisctl

# file names as Linux has them: any bytes but NUL, read the way Python reads them (surrogateescape)
os_names = st.binary(min_size=1, max_size=40).filter(lambda b: b"\x00" not in b).map(os.fsdecode)


@given(os_names)
def test_every_os_path_round_trips_through_its_wire_form(name: str) -> None:
    path = "/music/" + name
    text = path_to_wire(path)
    text.encode("utf-8")  # valid Unicode: msgpack, JSON and SQLite TEXT can carry it
    assert path_from_wire(text) == path
    assert auralisctl.path_to_wire(path) == text  # the client's copy agrees
    assert auralisctl.arg_to_wire(text) == text  # a printed path goes back unchanged
    printed = auralisctl.shown(text)  # as a text listing prints it: one line, no control characters
    assert "\n" not in printed and not any(ord(c) < 0x20 for c in printed)
    assert path_from_wire(auralisctl.arg_to_wire(printed)) == path  # and given back, it names the file
    assert "\n" not in path_to_line(text) and path_from_wire(path_to_line(text)) == path  # MPD's file: lines


def test_the_documented_examples() -> None:
    assert path_to_wire(os.fsdecode(b"/m/caf\xe9.flac")) == "/m/caf\\xE9.flac"
    assert path_to_wire("/m/a\\b.flac") == "/m/a\\\\b.flac"
    assert path_to_wire("/m/Björk/Jóga.flac") == "/m/Björk/Jóga.flac"  # valid UTF-8 is left alone
    assert path_from_wire("/m/caf\\xe9.flac") == os.fsdecode(b"/m/caf\xe9.flac")  # either case
    assert path_from_wire("/m/a\\b.flac") == "/m/a\\b.flac"  # a lone backslash stands for itself
    assert path_from_wire("/m/\\x41.flac") == "/m/\\x41.flac"  # printable ASCII is never escaped
    assert path_from_wire("/m/new\\x0Aline.flac") == "/m/new\nline.flac"  # a control character is
    assert path_from_wire("/m/\\x00.flac") == "/m/\\x00.flac"  # never a NUL
    assert auralisctl.shown("/m/new\nline\t.flac") == "/m/new\\x0Aline\\x09.flac"
    assert auralisctl.arg_to_wire(os.fsdecode(b"/m/caf\xe9.flac")) == "/m/caf\\xE9.flac"  # tab-completed
    assert text_to_wire(os.fsdecode(b"caf\xe9: a\\b")) == "caf\\xE9: a\\b"


def test_fold_matches_case_and_accents() -> None:
    assert fold("BJÖRK") == fold("Björk") == fold("bjork") == "bjork"
    assert fold("Straße") == "strasse"


async def test_non_utf8_paths_are_stored_and_found_and_older_rows_survive_migration_3(tmp_path: Path) -> None:
    db_path = tmp_path / "db.sqlite3"
    conn = sqlite3.connect(db_path, isolation_level=None)
    for step in MIGRATIONS[:2]:
        for statement in step.split(";"):
            if statement.strip():
                conn.execute(statement)
    conn.execute("PRAGMA user_version = 2")
    conn.execute(
        "INSERT INTO tracks (path, music_dir, rel_dir, size, mtime_ns, title, duration_s, num_frames, sample_rate,"
        " channels, format, scanned_at, real_path) VALUES (?, '/m', 'A\\B', 1, 2, 'old', 1.0, 44100, 44100, 2, 'FLAC',"
        " 0, ?)",
        ("/m/A\\B/x.flac", "/m/A\\B/x.flac"),
    )
    conn.execute("INSERT INTO rejected_files VALUES ('/m/bad.flac', 1, 2, 'bad', 0)")
    conn.close()
    latin = os.fsdecode(b"/m/Bj\xf6rk/caf\xe9.flac")
    db = Database(str(db_path))
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            await nursery.start(db.run)
            old = await db.get_track_by_path("/m/A\\B/x.flac")
            assert old is not None and old.title == "old" and old.rel_dir == "A\\B"
            assert await db.rejected_files() == {}  # tried again once, to learn its kind
            new = TrackFile(latin, "/m", os.fsdecode(b"Bj\xf6rk"), 3, 4, "Café", None, None, 1, 1.0, 44100,
                            44100, 2, "FLAC", disc_number=1)  # fmt: skip
            await db.upsert_tracks([new])
            await db.set_rejected([(os.fsdecode(b"/m/x\xff.txt"), 1, 2, "unsupported", "not audio")])
            track = await db.get_track_by_path(latin)
            assert track is not None and track.path == latin and track.to_wire()["path"] == "/m/Bj\\xF6rk/caf\\xE9.flac"
            assert [t.path for t in await db.tracks_under("/m", os.fsdecode(b"Bj\xf6rk"), recursive=True)] == [latin]
            assert await db.subdirs("/m", "") == sorted(["A\\B", os.fsdecode(b"Bj\xf6rk")], key=path_to_wire)
            found, total = await db.search_tracks("CAFÉ", 10)
            assert [t.path for t in found] == [latin] and total == 1
            (rejected,) = await db.rejected_list()
            assert rejected.to_wire()["path"] == "/m/x\\xFF.txt" and rejected.kind == "unsupported"
            nursery.cancel_scope.cancel()


def test_a_reply_holding_free_text_that_is_not_utf8_still_encodes() -> None:
    """An album folder's name in status, say: never an encoding failure on the wire."""
    import msgpack

    from auralisd.protocol.codec import encode_response

    album = {"key": "dir:" + os.fsdecode(b"/m/Bj\xf6rk"), "name": os.fsdecode(b"Bj\xf6rk")}
    message = msgpack.unpackb(encode_response(1, None, {"album": album, "n": 1.5}), raw=False)
    assert message[3] == {"album": {"key": "dir:/m/Bj\\xF6rk", "name": "Bj\\xF6rk"}, "n": 1.5}
