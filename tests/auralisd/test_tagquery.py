"""Library tag queries (protocol/query.py compiled by actors/tagquery.py) on a real SQLite file."""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trio

from auralisd.actors import tagquery
from auralisd.actors.database import Database, TrackFile, fold
from auralisd.protocol.query import And, Base, ModifiedSince, Not, QueryError, TagMatch

MUSIC = "/music"


def _file(rel: str, **tags: object) -> TrackFile:
    rel_dir = rel.rsplit("/", 1)[0] if "/" in rel else ""
    values: dict[str, object] = dict(
        path=f"{MUSIC}/{rel}", music_dir=MUSIC, rel_dir=rel_dir, size=100, mtime_ns=int(tags.pop("mtime_s", 1) * 1e9),
        title=None, artist=None, album=None, track_number=None, duration_s=60.0, num_frames=2_646_000,
        sample_rate=44_100, channels=2, format="FLAC",
    )  # fmt: skip
    values.update(tags)
    return TrackFile(**values)  # type: ignore[arg-type]


LIBRARY = [
    _file("Björk/Homogenic/01.flac", title="Hunter", artist="Björk", album="Homogenic", track_number=1,
          genre="Electronic", date="1997", composer="Björk", mtime_s=100),
    _file("Björk/Homogenic/02.flac", title="Jóga", artist="Björk", album="Homogenic", track_number=2,
          genre="Electronic", date="1997", duration_s=300.0, mtime_s=200),
    _file("Various/Mix/01.flac", title="Song A", artist="Alpha", album_artist="Various", album="Mix",
          track_number=1, genre="Pop", comment="remastered"),
    _file("Various/Mix/02.flac", title="Song B", artist="Beta", album_artist="Various", album="Mix", track_number=2,
          genre="Pop"),
    _file("loose/untagged.flac"),
    _file("loose/100%_sure.flac", title="100%_sure", artist="Beta"),
]  # fmt: skip


@pytest.fixture(params=["trigram index", "scans"])
async def db(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Database]:
    """Every query test runs twice: with the FTS5 trigram pre-filter, and as on an SQLite without it."""
    database = Database(str(tmp_path / "auralis.sqlite3"))
    async with trio.open_nursery() as nursery:
        await nursery.start(database.run)
        assert database._fts  # Debian's SQLite has FTS5 with the trigram tokenizer
        database._fts = request.param == "trigram index"
        await database.upsert_tracks(LIBRARY)
        yield database
        nursery.cancel_scope.cancel()


async def _titles(db: Database, query: object) -> set[str | None]:
    tracks, total = await db.find_tracks(query)  # type: ignore[arg-type]
    assert total == len(tracks)
    return {t.title for t in tracks}


async def test_exact_match_is_case_sensitive_and_search_folds_case_and_accents(db: Database) -> None:
    assert await _titles(db, TagMatch("artist", "==", "Björk")) == {"Hunter", "Jóga"}
    assert await _titles(db, TagMatch("artist", "==", "björk")) == set()
    assert await _titles(db, TagMatch("artist", "==", "BJORK", fold_case=True)) == {"Hunter", "Jóga"}
    assert await _titles(db, TagMatch("title", "contains", "OGA", fold_case=True)) == {"Jóga"}
    assert await _titles(db, TagMatch("title", "contains", "og")) == set()  # "óg" is not "og" case-sensitively
    assert await _titles(db, TagMatch("title", "starts_with", "Song")) == {"Song A", "Song B"}
    # LIKE wildcards in a value are literal characters
    assert await _titles(db, TagMatch("title", "contains", "%_s", fold_case=True)) == {"100%_sure"}


async def test_negations_match_tracks_without_the_tag(db: Database) -> None:
    assert await _titles(db, TagMatch("genre", "!=", "Pop")) == {"Hunter", "Jóga", None, "100%_sure"}
    assert await _titles(db, Not(TagMatch("genre", "==", "Pop"))) == {"Hunter", "Jóga", None, "100%_sure"}
    assert await _titles(db, TagMatch("title", "!~", "^Song")) == {"Hunter", "Jóga", None, "100%_sure"}


async def test_albumartist_falls_back_to_artist_and_numbers_compare_as_text(db: Database) -> None:
    assert await _titles(db, TagMatch("albumartist", "==", "Various")) == {"Song A", "Song B"}
    assert await _titles(db, TagMatch("albumartist", "==", "Björk")) == {"Hunter", "Jóga"}
    assert await _titles(db, And((TagMatch("album", "==", "Mix"), TagMatch("track", "==", "2")))) == {"Song B"}


async def test_regex_file_base_any_and_modified_since(db: Database) -> None:
    assert await _titles(db, TagMatch("title", "=~", "^S.ng [AB]$")) == {"Song A", "Song B"}
    assert await _titles(db, TagMatch("title", "=~", "^song a$", fold_case=True)) == {"Song A"}
    assert await _titles(db, TagMatch("file", "==", "Various/Mix/02.flac")) == {"Song B"}
    assert await _titles(db, Base("Björk")) == {"Hunter", "Jóga"}
    assert await _titles(db, Base("Björk/Homogenic/")) == {"Hunter", "Jóga"}
    assert await _titles(db, Base("Bjö")) == set()  # a folder, not a name prefix
    assert await _titles(db, TagMatch("any", "contains", "remaster")) == {"Song A"}  # the comment
    assert await _titles(db, TagMatch("any", "contains", "untagged")) == {None}  # the file name
    assert await _titles(db, ModifiedSince(150.0)) == {"Jóga"}
    with pytest.raises(QueryError, match="regular expression"):
        await db.find_tracks(TagMatch("title", "=~", "(unclosed"))


async def test_find_pages_and_totals(db: Database) -> None:
    everything, total = await db.find_tracks(None)
    assert total == len(LIBRARY) and [t.path for t in everything] == sorted(t.path for t in everything)
    page, total = await db.find_tracks(None, limit=2, offset=1)
    assert total == len(LIBRARY) and page == everything[1:3]


async def test_list_with_groups_and_count(db: Database) -> None:
    assert await db.tag_values("album") == [(None,), ("Homogenic",), ("Mix",)]
    assert await db.tag_values("album", ("albumartist",), TagMatch("genre", "==", "Pop")) == [("Various", "Mix")]
    assert await db.tag_values("date", query=TagMatch("artist", "==", "Björk")) == [("1997",)]
    assert await db.count_matches(TagMatch("artist", "==", "Björk")) == [(None, 2, 360.0)]
    assert await db.count_matches(None, "genre") == [(None, 2, 120.0), ("Electronic", 2, 360.0), ("Pop", 2, 120.0)]
    totals = await db.library_totals()
    assert (totals.artists, totals.albums, totals.songs, totals.playtime_s) == (3, 2, 6, 600.0)


async def test_queries_use_indexes_and_no_python_filter_for_exact_matches(db: Database) -> None:
    """An exact artist match is an index search, not a scan of every row (the plan says so)."""
    from auralisd.actors import tagquery
    from auralisd.actors.database import fold

    where, args = tagquery.compile_where(TagMatch("artist", "==", "Björk"), fold, fts=db._fts)
    conn = sqlite3.connect(db.path)
    plan = " ".join(str(r[-1]) for r in conn.execute(f"EXPLAIN QUERY PLAN SELECT * FROM tracks WHERE {where}", args))
    conn.close()
    assert "USING INDEX tracks_by_artist" in plan, plan
    assert "auralis_" not in where
    if db._fts:  # a folded substring: the trigram index narrows the rows before any comparison
        where, args = tagquery.compile_where(TagMatch("title", "contains", "hun", fold_case=True), fold, fts=True)
        conn = sqlite3.connect(db.path)
        tagquery.install(conn, fold)
        plan = " ".join(str(r[-1]) for r in conn.execute(f"EXPLAIN QUERY PLAN SELECT * FROM tracks WHERE {where}", args))
        conn.close()
        assert "track_search VIRTUAL TABLE INDEX" in plan, plan
    where, args = tagquery.compile_where(Base("Björk"), fold, fts=db._fts)
    conn = sqlite3.connect(db.path)
    plan = " ".join(str(r[-1]) for r in conn.execute(f"EXPLAIN QUERY PLAN SELECT * FROM tracks WHERE {where}", args))
    conn.close()
    assert "tracks_by_rel_dir" in plan, plan  # a folder and what lies below it: two index ranges, no scan


def test_the_scanner_reads_composer_performer_and_comment(tmp_path: Path) -> None:
    """Vorbis comments (FLAC) and ID3 (here in a WAV): the plain comment, never iTunes' iTunNORM data."""
    import numpy as np
    import soundfile as sf
    from mutagen import id3
    from mutagen.flac import FLAC
    from mutagen.wave import WAVE

    from auralisd.tags import read_tags

    tone = np.zeros((4410, 2), dtype=np.float32)
    sf.write(str(tmp_path / "a.flac"), tone, 44_100)
    flac = FLAC(str(tmp_path / "a.flac"))
    flac.update({"composer": "Bach", "performer": "Gould", "comment": "1981 recording"})
    flac.save()
    assert (read_tags(str(tmp_path / "a.flac")).composer, read_tags(str(tmp_path / "a.flac")).performer,
            read_tags(str(tmp_path / "a.flac")).comment) == ("Bach", "Gould", "1981 recording")  # fmt: skip
    sf.write(str(tmp_path / "b.wav"), tone, 44_100)
    wav = WAVE(str(tmp_path / "b.wav"))
    wav.add_tags()
    assert wav.tags is not None
    wav.tags.add(id3.COMM(encoding=3, lang="eng", desc="iTunNORM", text=" 00000A 00000B"))
    wav.tags.add(id3.COMM(encoding=3, lang="eng", desc="", text="liner notes"))
    wav.tags.add(id3.TCOM(encoding=3, text="Bach"))
    wav.save()
    tags = read_tags(str(tmp_path / "b.wav"))
    assert (tags.composer, tags.comment) == ("Bach", "liner notes")


async def test_stored_song_blocks_follow_every_change(db: Database) -> None:
    """Listings read a block stored per track; a tag refresh, a rescan or a move makes it again."""
    from auralisd.actors.database import TrackTags
    from auralisd.actors.tagquery import STORED_BLOCK_LINES

    query = TagMatch("title", "==", "Hunter")
    made = await db.track_blocks(query, STORED_BLOCK_LINES)
    assert made == await db.track_blocks(query, STORED_BLOCK_LINES)  # now read from the stored column
    text = made[0][2]
    assert text.startswith("file: Björk/Homogenic/01.flac\nLast-Modified: 1970-01-01T00:01:40Z\nArtist: Björk\n")
    assert text.endswith("Time: 60\nduration: 60.000\n") and "AlbumArtist" not in text  # no such tag: no line
    (hunter,), _ = await db.find_tracks(query)
    await db.update_tags([TrackTags(hunter.track_id, hunter.path, "Hunter", "Bjork", "Homogenic", None, 1, None,
                                    "1997", "Electronic", None)])  # fmt: skip
    assert "Artist: Bjork\n" in (await db.track_blocks(query, STORED_BLOCK_LINES))[0][2]
    # the search index follows tag changes and deletions too
    assert await _titles(db, TagMatch("artist", "contains", "JORK", fold_case=True)) == {"Hunter", "Jóga"}
    await db.update_tags([TrackTags(hunter.track_id, hunter.path, "Hunter", "Zyxwv", "Homogenic", None, 1, None,
                                    "1997", "Electronic", None)])  # fmt: skip
    assert await _titles(db, TagMatch("any", "contains", "YXW", fold_case=True)) == {"Hunter"}
    assert await _titles(db, TagMatch("artist", "contains", "JORK", fold_case=True)) == {"Jóga"}
    await db.move_tracks([(hunter.track_id, "/music/New/01.flac", MUSIC, "New", "/music/New/01.flac")])
    assert (await db.track_blocks(query, STORED_BLOCK_LINES))[0][2].startswith("file: New/01.flac\n")
    assert await _titles(db, TagMatch("file", "contains", "NEW/01", fold_case=True)) == {"Hunter"}
    await db.delete_tracks([hunter.track_id])
    assert await _titles(db, TagMatch("any", "contains", "YXW", fold_case=True)) == set()
    await db.upsert_tracks([_file("New/01.flac", title="Hunter", artist="Zyxwv")])
    # another layout (a client's own tag types) is made on the fly, never stored
    assert (await db.track_blocks(query, [("file", "uri"), ("Title", "title")]))[0][2] == (
        "file: New/01.flac\nTitle: Hunter\n"
    )


async def test_a_catastrophic_regular_expression_is_refused_in_time_and_the_database_goes_on(
    tmp_path: Path,
) -> None:
    """``(a|a)+$`` against 'aaa...a!' backtracks 2^n ways: with Python's re one such title holds the
    database thread (every queue save, every client) for hours. Each regular expression of a query
    gets REGEX_BUDGET_S over the library; past it the client gets a QueryError and the next query runs."""
    from auralisd.actors import tagquery

    database = Database(str(tmp_path / "auralis.sqlite3"))
    async with trio.open_nursery() as nursery:
        await nursery.start(database.run)
        await database.upsert_tracks([*LIBRARY, _file("evil/a.flac", title="a" * 40 + "!", artist="Evil")])
        with trio.fail_after(30):  # a safety bound: the budget is 0.5 s; without it this never returns
            with pytest.raises(QueryError, match="took more than"):
                await database.find_tracks(TagMatch("title", "=~", "(a|a)+$"))
            with pytest.raises(QueryError, match="took more than"):
                await database.count_matches(TagMatch("title", "=~", "(a|a)+$"))
        assert await _titles(database, TagMatch("artist", "=~", "^Evi")) == {"a" * 40 + "!"}  # served on
        assert await _titles(database, TagMatch("title", "=~", "(a|a)+!$")) == {"a" * 40 + "!"}  # a match is quick
        assert tagquery.REGEX_BUDGET_S <= 1.0
        nursery.cancel_scope.cancel()


# Several music folders, seen by MPD clients as folders of one music directory: one folder's name is a
# prefix of another's, one holds a space and a quote (a literal in the compiled SQL)
ROOTS = (("/m/Music", "Music"), ("/m/Music2", "Music2"), ("/m/Old 'Songs", "Old 'Songs"))


def _in(music_dir: str, rel: str, title: str) -> TrackFile:
    return dataclasses.replace(_file(rel, title=title), path=f"{music_dir}/{rel}", music_dir=music_dir)


async def test_file_and_base_see_the_folder_name_that_leads_each_uri(db: Database) -> None:
    """``uri_roots``: ``file``, ``base`` and ``any`` match ``Music2/Alpha/01.flac``, as MPD does for a
    music directory holding ``Music`` and ``Music2``; without roots a path inside its folder."""
    await db.upsert_tracks([
        _in("/m/Music2", "Alpha/01.flac", "M2 one"), _in("/m/Music", "Alpha/01.flac", "M1 one"),
        _in("/m/Music", "Music2/01.flac", "M1 in a folder named Music2"), _in("/m/Old 'Songs", "x.flac", "Old x"),
    ])  # fmt: skip
    m = [t for _, t in ROOTS]

    async def titles(query: object, **kwargs: object) -> set[str | None]:
        tracks, _ = await db.find_tracks(query, uri_roots=ROOTS, **kwargs)  # type: ignore[arg-type]
        return {t.title for t in tracks}

    assert await titles(TagMatch("file", "==", "Music2/Alpha/01.flac")) == {"M2 one"}
    assert await titles(TagMatch("file", "==", "Alpha/01.flac")) == set()
    assert await _titles(db, TagMatch("file", "==", "Alpha/01.flac")) == {"M2 one", "M1 one"}  # no roots
    assert await titles(TagMatch("file", "==", "Music/Music2/01.flac")) == {"M1 in a folder named Music2"}
    assert await titles(TagMatch("file", "starts_with", "Music/")) == {"M1 one", "M1 in a folder named Music2"}
    assert await titles(TagMatch("file", "starts_with", "Music2")) == {"M2 one"}
    assert await titles(TagMatch("file", "=~", "^Old 'Songs/")) == {"Old x"}
    assert await titles(TagMatch("file", "contains", "SIC2/AL", fold_case=True)) == {"M2 one"}
    assert await titles(TagMatch("any", "contains", "old 'songs/x", fold_case=True)) == {"Old x"}
    assert await titles(TagMatch("file", "!=", "Music2/Alpha/01.flac")) >= {"M1 one", "Old x"}
    assert "M2 one" not in await titles(TagMatch("file", "!=", "Music2/Alpha/01.flac"))
    # base: the first name picks the music folder, exactly ("Music" is not "Music2")
    assert await titles(Base("Music2")) == {"M2 one"}
    assert await titles(Base("Music2/Alpha/")) == {"M2 one"}
    assert await titles(Base("Music")) == {"M1 one", "M1 in a folder named Music2"}
    assert await titles(Base("Music/Music2")) == {"M1 in a folder named Music2"}
    assert await titles(Base("Alpha")) == set() and await titles(Base("Mus")) == set()
    assert await titles(Base("Old 'Songs")) == {"Old x"}
    assert await titles(Not(Base("Music"))) >= {"M2 one", "Old x"}
    assert await titles(And((Base("Music"), TagMatch("title", "contains", "one")))) == {"M1 one"}
    # listings: the music folders in name order, whatever order the rows came in
    tracks, _ = await db.find_tracks(Base("Music2"), uri_roots=ROOTS)
    everything, _ = await db.find_tracks(TagMatch("title", "=~", "^(M|Old)"), uri_roots=ROOTS)
    assert [t.title for t in everything] == ["M1 one", "M1 in a folder named Music2", "M2 one", "Old x"]
    blocks = await db.track_blocks(Base("Music2"), [("file", "uri")], uri_roots=ROOTS)
    assert [(d, text) for d, _, text in blocks] == [("/m/Music2", "file: Alpha/01.flac\n")]
    assert await db.count_matches(TagMatch("file", "starts_with", "Music/"), uri_roots=ROOTS) == [(None, 2, 120.0)]
    assert await db.tag_values("title", query=Base(m[2]), uri_roots=ROOTS) == [("Old x",)]
    where, args = tagquery.compile_where(Base("Music2/Alpha"), fold, uri_roots=ROOTS)
    conn = sqlite3.connect(db.path)
    plan = " ".join(str(r[-1]) for r in conn.execute(f"EXPLAIN QUERY PLAN SELECT * FROM tracks WHERE {where}", args))
    conn.close()
    assert "INDEX" in plan and "SCAN tracks" not in plan, plan  # still index ranges
