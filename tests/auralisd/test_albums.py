"""Album identity, album order and the ``auto`` rule (pure parts of auralisd/actors/albums.py)."""

from __future__ import annotations

import pytest

from auralisd.actors.albums import Album, album_key_of, album_order, album_scope
from auralisd.actors.database import Track


def _track(track_id: int, path: str, *, album: str | None = None, number: int | None = None, rate: int = 44_100,
           **extra: object) -> Track:
    return Track(
        track_id=track_id, path=path, music_dir="/m", rel_dir="", size=1000 + track_id, mtime_ns=track_id,
        title=None, artist=extra.pop("artist", None), album=album, track_number=number, duration_s=10.0,  # type: ignore[arg-type]
        num_frames=441_000, sample_rate=rate, channels=2, format="FLAC", fingerprint_status="none",
        fingerprint_error=None, scanned_at=0.0, **extra,  # type: ignore[arg-type]
    )


def _album(*tracks: Track) -> Album:
    return Album(key=album_key_of(tracks[0]), name="A", tracks=tuple(album_order(tracks)))


def test_untagged_files_form_an_album_by_folder_in_path_order() -> None:
    a, b, c = _track(1, "/m/live/02.flac"), _track(2, "/m/live/01.flac"), _track(3, "/m/other/01.flac")
    assert album_key_of(a) == album_key_of(b) != album_key_of(c)
    assert [t.track_id for t in album_order([a, b])] == [2, 1]


def test_tagged_tracks_order_by_track_number_not_name() -> None:
    x = _track(1, "/m/x/b.flac", album="Live", number=2, artist="Band")
    y = _track(2, "/m/y/a.flac", album="live", number=1, artist="BAND")  # another folder, same album
    assert album_key_of(x) == album_key_of(y)
    assert [t.track_id for t in album_order([x, y])] == [2, 1]


A1, A2, A3 = (_track(i, f"/m/a/{i:02d}.flac") for i in (1, 2, 3))
ALBUM = _album(A1, A2, A3)


@pytest.mark.parametrize(
    ("mode", "random", "track", "previous", "following", "album_plan", "reason"),
    [
        # album order, random off: the album plan (from either side of a boundary)
        ("auto", False, 2, 1, 3, True, "in order"),
        ("auto", False, 1, None, 2, True, "in order"),
        ("auto", False, 3, 2, None, True, "in order"),
        # random on: track plans
        ("auto", True, 2, 1, 3, False, "random"),
        # a queue mixing albums: neighbours from other albums -> track plan
        ("auto", False, 2, 99, 98, False, "without its album neighbours"),
        # the album's tracks out of order (3 then 1): neither is the other's neighbour
        ("auto", False, 1, 3, None, False, "without its album neighbours"),
        # a single track of the album played alone
        ("auto", False, 2, None, None, False, "without its album neighbours"),
        # explicit modes
        ("album", True, 2, None, None, True, "album mode"),
        ("track", False, 2, 1, 3, False, "track mode"),
        ("off", False, 2, 1, 3, False, "off"),
    ],
)
def test_auto_rule(mode: str, random: bool, track: int, previous: int | None, following: int | None,
                   album_plan: bool, reason: str) -> None:
    scope = album_scope(mode, random=random, album=ALBUM, track_id=track, previous_id=previous, next_id=following)
    assert scope.album_plan is album_plan
    assert reason in scope.reason


def test_no_album_plan_without_an_album_or_with_mixed_formats() -> None:
    single = _album(_track(7, "/m/solo/01.flac"))
    assert not album_scope("album", random=False, album=single, track_id=7, previous_id=None, next_id=None).album_plan
    mixed = _album(_track(1, "/m/x/01.flac"), _track(2, "/m/x/02.flac", rate=48_000))
    scope = album_scope("album", random=False, album=mixed, track_id=1, previous_id=None, next_id=2)
    assert not scope.album_plan and "track by track" in scope.reason


def test_album_identity_changes_when_a_member_changes() -> None:
    before = ALBUM.identity
    changed = Album(ALBUM.key, ALBUM.name, (A1, _track(2, "/m/a/02.flac", number=None), A3))
    assert changed.identity == before  # same rows, same identity
    touched = Album(ALBUM.key, ALBUM.name, (A1, _track(20, "/m/a/02.flac"), A3))
    assert touched.identity != before  # a new size/mtime
    assert Album(ALBUM.key, ALBUM.name, (A1, A2)).identity != before  # a removed track
    assert Album(ALBUM.key, ALBUM.name, (A2, A1, A3)).identity != before  # reordered


# -- the album actor with a real database, worker pool and library scan -----------------------


async def _albums_rig(tmp_path, music, body) -> None:
    import trio

    from auralisd.actors.albums import AlbumPlans
    from auralisd.actors.database import Database
    from auralisd.actors.events import EventHub
    from auralisd.actors.library import Library
    from auralisd.actors.pool import open_mastering_pool

    db = Database(str(tmp_path / "state.sqlite3"))
    hub = EventHub()
    async with trio.open_nursery() as outer:
        await outer.start(db.run)
        async with open_mastering_pool(2) as pool, trio.open_nursery() as nursery:
            library = Library(db, hub, [str(music)])
            await nursery.start(library.run)
            albums = AlbumPlans(db, pool, hub)
            await nursery.start(albums.run)
            library.scan()
            await library.wait_scan()
            await body(library, albums)
            nursery.cancel_scope.cancel()
        outer.cancel_scope.cancel()


async def test_album_plan_is_exact_stored_survives_restart_and_is_rebuilt_when_a_track_changes(tmp_path) -> None:
    import numpy as np
    import trio

    from auralis.album import AlbumLayout, compute_album_plan_inputs
    from auralis.audio import write_audio
    from auralis.synth import make_music

    music = tmp_path / "music"
    (music / "Live").mkdir(parents=True)
    (music / "Other").mkdir()
    for name, seed, gain in (("02.wav", 2, 0.3), ("01.wav", 1, 1.0)):
        write_audio(str(music / "Live" / name), make_music(2.3 + seed / 10, 44_100, seed=seed) * np.float32(gain), 44_100)
    write_audio(str(music / "Other" / "01.wav"), make_music(1.0, 44_100, seed=5), 44_100)
    paths = [str(music / "Live" / "01.wav"), str(music / "Live" / "02.wav")]
    seen: dict[str, object] = {}

    async def first(library, albums) -> None:
        tracks = await library.resolve_paths([paths[1]])
        album = await albums.album_of(tracks[0])
        assert [t.path for t in album.tracks] == paths  # the folder's tracks, in album order
        with trio.fail_after(60):
            inputs = await albums.plan_inputs(album)
        expected = compute_album_plan_inputs(AlbumLayout.of_paths(paths))
        assert inputs.measurements["integrated_lufs"] == expected.measurements["integrated_lufs"]
        assert inputs.dimensions == expected.dimensions
        assert albums.statistics().computed == 1
        assert await albums.plan_inputs(album) is inputs  # memory
        seen["lufs"] = expected.measurements["integrated_lufs"]

    await _albums_rig(tmp_path, music, first)

    async def restarted(library, albums) -> None:
        tracks = await library.resolve_paths([paths[0]])
        album = await albums.album_of(tracks[0])
        inputs = await albums.plan_inputs(album)
        assert inputs.measurements["integrated_lufs"] == seen["lufs"]
        stats = albums.statistics()
        assert (stats.db_hits, stats.computed) == (1, 0)  # from the database: nothing analysed again
        # A track of the album changes: its stored plan is stale and the album is analysed again.
        write_audio(paths[1], make_music(2.5, 44_100, seed=9) * np.float32(0.1), 44_100)
        library.scan()
        await library.wait_scan()
        tracks = await library.resolve_paths([paths[0]])
        album = await albums.album_of(tracks[0])
        with trio.fail_after(60):
            changed = await albums.plan_inputs(album)
        assert albums.statistics().computed == 1
        expected = compute_album_plan_inputs(AlbumLayout.of_paths(paths))
        assert changed.measurements["integrated_lufs"] == expected.measurements["integrated_lufs"] != seen["lufs"]

    await _albums_rig(tmp_path, music, restarted)


async def test_album_identity_from_tags_through_a_real_scan(tmp_path) -> None:
    """Album tag + album artist across folders, in track-number order; same title by another artist apart;
    a MusicBrainz album id joins tracks whose album tags differ; untagged files by folder."""
    import subprocess

    from auralis.audio import write_audio
    from auralis.synth import make_music

    music = tmp_path / "music"
    src = tmp_path / "src.wav"
    write_audio(str(src), make_music(1.0, 44_100, seed=1), 44_100)

    def tagged(rel: str, **tags: str) -> str:
        out = music / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        meta = [x for k, v in tags.items() for x in ("-metadata", f"{k}={v}")]
        subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(src), *meta, str(out)], check=True)
        return str(out)

    second = tagged("cd2/a.flac", album="Live at Leeds", album_artist="The Who", artist="The Who", track="2")
    first = tagged("cd1/z.flac", album="LIVE AT LEEDS", album_artist="The Who", artist="Daltrey", track="1")
    other = tagged("other/b.flac", album="Live at Leeds", album_artist="Someone Else", track="1")
    deluxe = tagged("mb/1.flac", album="Foo (Deluxe)", MUSICBRAINZ_ALBUMID="ABCD-1", track="1")
    plain = tagged("mb/2.flac", album="Foo", MUSICBRAINZ_ALBUMID="abcd-1", track="2")
    loose = [str(music / "rips" / n) for n in ("b.wav", "a.wav")]
    for path in loose:
        (music / "rips").mkdir(exist_ok=True)
        write_audio(path, make_music(1.0, 44_100, seed=2), 44_100)
    seen: dict[str, list[str]] = {}

    async def body(library, albums) -> None:
        for path in (second, other, deluxe, loose[0]):
            (track,) = await library.resolve_paths([path])
            album = await albums.album_of(track)
            seen[path] = [t.path for t in album.tracks]

    await _albums_rig(tmp_path, music, body)
    assert seen[second] == [first, second]  # across folders, in track-number order, case-insensitive
    assert seen[other] == [other]  # same title, another album artist: another album
    assert seen[deluxe] == [deluxe, plain]  # the release id decides, not the album tag
    assert seen[loose[0]] == sorted(loose)  # untagged: the folder, by file name
