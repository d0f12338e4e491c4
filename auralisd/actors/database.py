"""The database actor: one stdlib ``sqlite3`` connection, every call on a worker thread.

aiosqlite cannot run under trio (it awaits asyncio futures), so each transaction is one
plain function run by ``trio.to_thread.run_sync`` under a ``CapacityLimiter(1)``: calls
are serialised, the trio loop never blocks on disk, and only the thread that holds the
limiter touches the connection (a test on trio's MockClock may inject a runner that runs each
transaction inline instead, see :class:`Database`). WAL journal, ``synchronous=NORMAL`` (durable across
process crashes; a power cut may lose the last transactions, never corrupt the file),
``busy_timeout`` 5 s, and ``BEGIN IMMEDIATE`` for every transaction that writes (a read
transaction upgraded to a write can fail with "database is locked" despite the timeout).
The schema is versioned through ``PRAGMA user_version`` and :data:`MIGRATIONS`.

Cancellation: a call that is cancelled still runs its transaction to the end on the
thread (``abandon_on_cancel=False``), so a transaction is never cut in half.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Final, TypeVar

import trio

from ..config import ConfigError
from ..protocol.paths import path_from_wire, path_to_wire, text_to_wire
from ..protocol.query import Query, QueryError
from . import tagquery

T = TypeVar("T")

BUSY_TIMEOUT_MS: Final = 5_000
BLOCK_ANSWERS: Final = 4  # track_blocks answers kept (each a list the caller must not change)
# The 25 fingerprint dimensions in the order of issue 2 (columns of `fingerprints`).
DIMENSION_COLUMNS: Final = (
    "sub_bass_pct", "bass_pct", "low_mid_pct", "mid_pct", "upper_mid_pct", "presence_pct", "air_pct",
    "lufs", "crest_db", "bass_mid_ratio", "tempo_bpm", "rhythm_stability", "transient_density",
    "silence_ratio", "spectral_centroid", "spectral_rolloff", "spectral_flatness", "harmonic_ratio",
    "pitch_stability", "chroma_energy", "dynamic_range_variation", "loudness_variation_std",
    "peak_consistency", "stereo_width", "phase_correlation",
)  # fmt: skip

_DIMENSION_DDL = ",\n    ".join(f"{name} REAL" for name in DIMENSION_COLUMNS)

# Each entry upgrades the schema by one version; never edit a released entry, append a new one.
MIGRATIONS: Final[tuple[str, ...]] = (
    # 1: tracks, fingerprints, queue, player state, settings
    f"""
    CREATE TABLE tracks (
        track_id INTEGER PRIMARY KEY,
        path TEXT NOT NULL UNIQUE,
        music_dir TEXT NOT NULL,
        rel_dir TEXT NOT NULL,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        title TEXT, artist TEXT, album TEXT, track_number INTEGER,
        duration_s REAL NOT NULL,
        num_frames INTEGER NOT NULL,
        sample_rate INTEGER NOT NULL,
        channels INTEGER NOT NULL,
        format TEXT NOT NULL,
        fingerprint_status TEXT NOT NULL DEFAULT 'none',
        fingerprint_error TEXT,
        scanned_at REAL NOT NULL
    );
    CREATE INDEX tracks_by_dir ON tracks(music_dir, rel_dir);
    CREATE TABLE fingerprints (
        track_id INTEGER PRIMARY KEY REFERENCES tracks(track_id) ON DELETE CASCADE,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        algorithm_version TEXT NOT NULL,
        source TEXT NOT NULL,
        complete INTEGER NOT NULL,
        {_DIMENSION_DDL},
        measurements TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE TABLE queue (
        pos INTEGER PRIMARY KEY,
        track_id INTEGER NOT NULL REFERENCES tracks(track_id) ON DELETE CASCADE
    );
    CREATE TABLE player_state (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
    # 2: a track's real path (symlinks resolved: one row per real file), and files a scan
    # rejected, by size and mtime (an unchanged bad file is not probed again)
    """
    ALTER TABLE tracks ADD COLUMN real_path TEXT;
    CREATE INDEX tracks_by_real_path ON tracks(real_path);
    CREATE TABLE rejected_files (
        path TEXT PRIMARY KEY,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        reason TEXT NOT NULL,
        rejected_at REAL NOT NULL
    );
    """,
    # album plan inputs (auralisd/actors/albums.py): the album analysed as one file, keyed by the album
    # key and by the identity of its members (a changed, added or removed track makes the row stale)
    """
    CREATE TABLE album_plans (
        album_key TEXT PRIMARY KEY,
        identity TEXT NOT NULL,
        inputs TEXT NOT NULL,
        created_at REAL NOT NULL
    );
    CREATE INDEX tracks_by_album ON tracks(album COLLATE NOCASE);
    """,
    # 4: every file name (paths stored in the wire escaping of protocol/paths.py: non-UTF-8 bytes as
    # \xHH, backslash doubled; SQLite TEXT cannot hold the lone surrogates Python uses for them);
    # tags from every container, a folded search text, and why a file was rejected. Rows of older
    # versions get their tags (and search text) read again at the next scan (tags_version 0), without
    # losing their fingerprints; rejected files are tried once more to learn their kind.
    r"""
    ALTER TABLE tracks ADD COLUMN album_artist TEXT;
    ALTER TABLE tracks ADD COLUMN disc_number INTEGER;
    ALTER TABLE tracks ADD COLUMN date TEXT;
    ALTER TABLE tracks ADD COLUMN genre TEXT;
    ALTER TABLE tracks ADD COLUMN mb_album_id TEXT;
    ALTER TABLE tracks ADD COLUMN search_text TEXT NOT NULL DEFAULT '';
    ALTER TABLE tracks ADD COLUMN tags_version INTEGER NOT NULL DEFAULT 0;
    UPDATE tracks SET path = char(1) || replace(path, '\', '\\'), music_dir = replace(music_dir, '\', '\\'),
        rel_dir = replace(rel_dir, '\', '\\'), real_path = replace(real_path, '\', '\\')
        WHERE instr(path, '\') > 0 OR instr(music_dir, '\') > 0 OR instr(COALESCE(real_path, ''), '\') > 0;
    UPDATE tracks SET path = substr(path, 2) WHERE substr(path, 1, 1) = char(1);
    DELETE FROM rejected_files;
    ALTER TABLE rejected_files ADD COLUMN kind TEXT NOT NULL DEFAULT 'damaged';
    """,
    # 5: composer, performer and comment (read at the next scan: TAGS_VERSION 2), and indexes for the
    # tag queries of find/list/count (protocol/query.py, actors/tagquery.py): the tags a client lists
    # or finds by (artist, album artist, genre, date, title, composer) and MusicBrainz album ids
    # (album_candidates looked them up by a full scan)
    """
    ALTER TABLE tracks ADD COLUMN composer TEXT;
    ALTER TABLE tracks ADD COLUMN performer TEXT;
    ALTER TABLE tracks ADD COLUMN comment TEXT;
    CREATE INDEX tracks_by_artist ON tracks(artist);
    CREATE INDEX tracks_by_album_artist ON tracks(album_artist);
    CREATE INDEX tracks_by_album_exact ON tracks(album);
    CREATE INDEX tracks_by_title ON tracks(title);
    CREATE INDEX tracks_by_genre ON tracks(genre);
    CREATE INDEX tracks_by_date ON tracks(date);
    CREATE INDEX tracks_by_composer ON tracks(composer);
    CREATE INDEX tracks_by_mb_album_id ON tracks(mb_album_id COLLATE NOCASE);
    CREATE INDEX tracks_by_mtime ON tracks(mtime_ns);
    """,
    # 6: listings in folder and name order without a sort (listallinfo of 10,000 songs); the search
    # text now holds every tag (TAGS_VERSION 3 computes it again at the next scan)
    """
    CREATE INDEX tracks_in_order ON tracks(music_dir, rel_dir, path);
    """,
    # 7: each track's song block as listings print it (tagquery.STORED_BLOCK_LINES), made by SQL when
    # written (NULL until then; a listing makes missing ones), so listallinfo of 10,000 songs reads stored text
    """
    ALTER TABLE tracks ADD COLUMN song_block TEXT;
    CREATE INDEX tracks_without_block ON tracks(track_id) WHERE song_block IS NULL;
    """,
    # 8: a folder and everything below it (MPD's base filter, listallinfo FOLDER) by a range of rel_dir
    """
    CREATE INDEX tracks_by_rel_dir ON tracks(rel_dir);
    """,
    # 9: the queue written entry by entry (docs/architecture.md, "Persistence"): a row per entry with its
    # song id, an order key with gaps (an insertion writes one row, not the queue) and its priority (it
    # follows its song; the priorities were a map by position in player_state, wrong once a track
    # vanished). The old queue is copied in order (song ids 1.., keys 2**32 apart) with its priorities;
    # the current entry is named by its song id too.
    """
    CREATE TABLE queue_entries (
        song_id INTEGER PRIMARY KEY,
        sort_key INTEGER NOT NULL,
        track_id INTEGER NOT NULL REFERENCES tracks(track_id) ON DELETE CASCADE,
        prio INTEGER NOT NULL DEFAULT 0 CHECK (prio BETWEEN 0 AND 255)
    );
    CREATE INDEX queue_entries_in_order ON queue_entries(sort_key);
    CREATE INDEX queue_entries_by_track ON queue_entries(track_id);
    INSERT INTO queue_entries (song_id, sort_key, track_id, prio)
        SELECT n, n * 4294967296, track_id, COALESCE((
            SELECT CASE WHEN j.type = 'integer' AND j.value BETWEEN 0 AND 255 THEN j.value ELSE 0 END
            FROM player_state s, json_each(CASE WHEN json_valid(s.value) AND json_type(s.value) = 'object'
                                                THEN s.value ELSE '{}' END) j
            WHERE s.key = 'prios' AND j.key = CAST(n - 1 AS TEXT)), 0)
        FROM (SELECT ROW_NUMBER() OVER (ORDER BY pos) AS n, track_id FROM queue);
    INSERT OR REPLACE INTO player_state (key, value)
        SELECT 'current_song_id', CAST(value AS INTEGER) + 1 FROM player_state
        WHERE key = 'queue_pos' AND json_valid(value) AND json_type(value) = 'integer';
    INSERT OR REPLACE INTO player_state (key, value) SELECT 'next_song_id', COUNT(*) + 1 FROM queue;
    DELETE FROM player_state WHERE key = 'prios';
    DROP TABLE queue;
    """,
)
TAGS_VERSION: Final = 3  # rows with an older tags_version get their tags read again at the next scan
REJECTED_KINDS: Final = ("unsupported", "damaged")


@dataclass(frozen=True)
class Track:
    """One audio file the library found (a row of ``tracks``)."""

    track_id: int
    path: str
    music_dir: str
    rel_dir: str
    size: int
    mtime_ns: int
    title: str | None
    artist: str | None
    album: str | None
    track_number: int | None
    duration_s: float
    num_frames: int
    sample_rate: int
    channels: int
    format: str
    fingerprint_status: str  # none | partial | complete | failed
    fingerprint_error: str | None
    scanned_at: float
    album_artist: str | None = None
    disc_number: int | None = None
    date: str | None = None
    genre: str | None = None
    mb_album_id: str | None = None
    composer: str | None = None
    performer: str | None = None
    comment: str | None = None

    def to_wire(self) -> dict[str, Any]:
        """The track map of the control protocol (``path`` in the wire escaping of protocol/paths.py)."""
        return {
            "track_id": self.track_id,
            "path": path_to_wire(self.path),
            "title": self.title or text_to_wire(os.path.splitext(os.path.basename(self.path))[0]),
            "artist": self.artist,
            "album": self.album,
            "album_artist": self.album_artist,
            "track_number": self.track_number,
            "disc_number": self.disc_number,
            "date": self.date,
            "genre": self.genre,
            "mb_album_id": self.mb_album_id,
            "composer": self.composer,
            "performer": self.performer,
            "comment": self.comment,
            "duration_s": self.duration_s,
            "sample_rate": self.sample_rate,
            "channels": self.channels,
            "format": self.format,
            "fingerprint_status": self.fingerprint_status,
        }


_TRACK_COLUMNS: Final = tuple(f.name for f in fields(Track))


@dataclass(frozen=True)
class TrackFile:
    """What a scan learned about one file, before it has a ``track_id``."""

    path: str
    music_dir: str
    rel_dir: str
    size: int
    mtime_ns: int
    title: str | None
    artist: str | None
    album: str | None
    track_number: int | None
    duration_s: float
    num_frames: int
    sample_rate: int
    channels: int
    format: str
    real_path: str | None = None  # symlinks resolved; None: same as ``path``
    album_artist: str | None = None
    disc_number: int | None = None
    date: str | None = None
    genre: str | None = None
    mb_album_id: str | None = None
    composer: str | None = None
    performer: str | None = None
    comment: str | None = None


@dataclass(frozen=True)
class KnownTrack:
    """What a rescan compares: one row of ``tracks`` reduced to its identity."""

    track_id: int
    path: str
    music_dir: str
    size: int
    mtime_ns: int
    real_path: str | None
    tags_version: int = TAGS_VERSION


@dataclass(frozen=True)
class TrackTags:
    """New tags for a known, unchanged file (a tags refresh; the fingerprint stays)."""

    track_id: int
    path: str
    title: str | None
    artist: str | None
    album: str | None
    album_artist: str | None
    track_number: int | None
    disc_number: int | None
    date: str | None
    genre: str | None
    mb_album_id: str | None
    composer: str | None = None
    performer: str | None = None
    comment: str | None = None


@dataclass(frozen=True)
class RejectedFile:
    """A file a scan could not use, and why."""

    path: str
    kind: str  # unsupported | damaged
    reason: str
    size: int
    mtime_ns: int
    rejected_at: float

    def to_wire(self) -> dict[str, Any]:
        return {"path": path_to_wire(self.path), "kind": self.kind, "reason": text_to_wire(self.reason),
                "size": self.size, "rejected_at": self.rejected_at}  # fmt: skip


@dataclass(frozen=True)
class LibraryTotals:
    """What ``stats`` reports of the library (MPD's artists, albums, songs, db_playtime)."""

    artists: int
    albums: int
    songs: int
    playtime_s: float  # every track's duration added up
    last_scanned_at: float | None  # Unix time a track was last (re)read; None for an empty library


@dataclass(frozen=True)
class StoredFingerprint:
    """A fingerprint row: the 25 dimensions (None until complete for the detail ones) and measurements."""

    track_id: int
    size: int
    mtime_ns: int
    algorithm_version: str
    source: str  # "computed" | "sidecar"
    complete: bool  # False: only the plan inputs are filled
    dimensions: dict[str, float | None]
    measurements: dict[str, Any]


@dataclass(frozen=True)
class QueueRow:
    """One queue entry as stored (``queue_entries``): MPD's song id, its order key (the queue is the rows
    in ascending key order; keys have gaps, see ``playback/queue.py``), its priority (0-255) and track."""

    song_id: int
    sort_key: int
    prio: int
    track_id: int


@dataclass(frozen=True)
class QueueWrite:
    """The queue's changes since the last commit: with ``clear`` every stored row goes first, then the
    song ids ``removed`` are deleted and ``rows`` written (inserted, or replaced by song id)."""

    clear: bool = False
    rows: Sequence[QueueRow] = ()
    removed: Sequence[int] = ()


_PATH_COLUMNS: Final = frozenset({"path", "music_dir", "rel_dir"})


def _row_to_track(row: sqlite3.Row) -> Track:
    values: dict[str, Any] = {name: row[name] for name in _TRACK_COLUMNS}
    for name in _PATH_COLUMNS:
        values[name] = path_from_wire(values[name])
    return Track(**values)


def fold(text: str) -> str:
    """Text for matching: Unicode case folded (``str.casefold``) and accents removed (NFKD, no marks).

    ``fold("BJÖRK") == fold("björk") == "bjork"``; ``fold("Straße") == "strasse"``.
    """
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


# the tag columns of the search text, in the order _search_text takes them after the path
_SEARCH_COLUMNS: Final = (
    "title", "artist", "album", "album_artist", "genre", "track_number", "disc_number", "date", "composer",
    "performer", "comment", "mb_album_id",
)  # fmt: skip


def _search_text(path: str, *values: object) -> str:
    """Every tag and the path, folded (:func:`fold`): what ``library.search`` matches words in, and
    the pre-filter of case-insensitive tag matches (actors/tagquery.py)."""
    return fold(" ".join([*(str(v) for v in values if v is not None and v != ""), path_to_wire(path)]))


def _json_dumps(value: Any) -> str:
    def clean(v: Any) -> Any:
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        return v

    return json.dumps(clean(value), allow_nan=False, sort_keys=True)


class Database:
    """Owner of the SQLite connection. Start with ``await nursery.start(db.run)``.

    Every public method is one transaction on the database thread.
    """

    def __init__(self, path: str, *, run_sync: Callable[..., Awaitable[Any]] | None = None) -> None:
        """``run_sync(job, limiter=...)`` runs each transaction: on a thread by default
        (``trio.to_thread.run_sync``). Timing tests on trio's MockClock pass one that runs it inline
        on the trio thread (the same real SQLite file), so virtual time never jumps ahead while a
        real thread works."""
        self.path = path
        self._run_sync: Callable[..., Awaitable[Any]] = trio.to_thread.run_sync if run_sync is None else run_sync
        self._limiter = trio.CapacityLimiter(1)
        self._conn: sqlite3.Connection | None = None
        self._tracks_generation = 0  # bumped by every change of the tracks table
        self._fts = False  # the trigram index of search_text exists (tagquery.install_search_index)
        # recent track_blocks answers by (generation, query, lines, limit, offset): MPD clients list the
        # whole library at every connection; 4 answers of 10,000 songs are ~10 MB
        self._blocks: OrderedDict[tuple[Any, ...], list[tuple[str, str, str]]] = OrderedDict()

    # ----------------------------------------------------------------- lifecycle
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Open and migrate the database, then serve until cancelled; closes the connection on exit."""
        await self._run_sync(self._open, limiter=self._limiter)
        try:
            task_status.started()
            await trio.sleep_forever()
        finally:
            with trio.CancelScope(shield=True):
                await self._run_sync(self._close, limiter=self._limiter)

    def _open(self) -> None:
        os.makedirs(os.path.dirname(self.path) or ".", mode=0o700, exist_ok=True)
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA foreign_keys=ON")
            tagquery.install(conn, fold)
            migrate(conn)
            _check_block_layout(conn)
            self._fts = tagquery.install_search_index(conn)
        except sqlite3.DatabaseError as exc:
            conn.close()
            if _is_damage(exc):
                # Refuse rather than replace: the file holds the queue, state and fingerprints,
                # and only the user can tell a damaged file from a wrong or half-restored one.
                raise DatabaseDamaged(
                    f"the database {self.path} is damaged ({exc}); nothing was changed. Move it aside"
                    f" (mv {self.path} {self.path}.corrupt, with any -wal and -shm files beside it) or restore"
                    " a backup, then start auralisd again: it creates a fresh database"
                ) from None
            raise
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    def _close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.execute("PRAGMA optimize")
            finally:
                self._conn.close()
                self._conn = None

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def job() -> T:
            conn = self._require()
            conn.execute("BEGIN")
            try:
                return fn(conn)
            finally:
                conn.execute("COMMIT")

        return await self._run_sync(job, limiter=self._limiter)

    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def job() -> T:
            conn = self._require()
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result

        return await self._run_sync(job, limiter=self._limiter)

    def _require(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("database is not open")
        return self._conn

    # ----------------------------------------------------------------- tracks
    async def known_tracks(self) -> list[KnownTrack]:
        """Every known track's identity (what a rescan compares)."""
        return await self._read(
            lambda c: [
                KnownTrack(
                    r[0], path_from_wire(r[1]), path_from_wire(r[2]), r[3], r[4],
                    None if r[5] is None else path_from_wire(r[5]), r[6],
                )  # fmt: skip
                for r in c.execute(
                    "SELECT track_id, path, music_dir, size, mtime_ns, real_path, tags_version FROM tracks"
                )
            ]
        )

    async def move_tracks(self, moves: Sequence[tuple[int, str, str, str, str]]) -> None:
        """``(track_id, path, music_dir, rel_dir, real_path)``: a known file now has another library
        path (or its real path changed). The row, its fingerprint and its queue entries stay."""

        def job(c: sqlite3.Connection) -> None:
            for track_id, path, music_dir, rel_dir, real in moves:
                row = c.execute(f"SELECT {', '.join(_SEARCH_COLUMNS)} FROM tracks WHERE track_id = ?",
                                (int(track_id),)).fetchone()  # fmt: skip
                if row is None:
                    continue
                c.execute(
                    "UPDATE tracks SET path = ?, music_dir = ?, rel_dir = ?, real_path = ?, song_block = NULL,"
                    " search_text = ? WHERE track_id = ?",
                    (path_to_wire(path), path_to_wire(music_dir), path_to_wire(rel_dir), path_to_wire(real),
                     _search_text(path, *row), int(track_id)),  # the search text holds the path too
                )  # fmt: skip
            _fill_blocks(c)

        self._tracks_changed()
        await self._write(job)
        self._tracks_changed()

    async def rejected_files(self) -> dict[str, tuple[int, int]]:
        """``{path: (size, mtime_ns)}`` of files a scan could not use."""
        return await self._read(
            lambda c: {
                path_from_wire(r[0]): (r[1], r[2]) for r in c.execute("SELECT path, size, mtime_ns FROM rejected_files")
            }
        )

    async def rejected_list(self) -> list[RejectedFile]:
        """Every rejected file with its kind and reason, in path order."""
        return await self._read(
            lambda c: [
                RejectedFile(path_from_wire(r[0]), r[1], r[2], r[3], r[4], r[5])
                for r in c.execute(
                    "SELECT path, kind, reason, size, mtime_ns, rejected_at FROM rejected_files ORDER BY path"
                )
            ]
        )

    async def rejected_counts(self) -> dict[str, int]:
        """``{kind: number of rejected files}`` for every kind."""

        def job(c: sqlite3.Connection) -> dict[str, int]:
            out = dict.fromkeys(REJECTED_KINDS, 0)
            for kind, count in c.execute("SELECT kind, COUNT(*) FROM rejected_files GROUP BY kind"):
                out[kind] = int(count)
            return out

        return await self._read(job)

    async def set_rejected(
        self, rejected: Sequence[tuple[str, int, int, str, str]], forget: Sequence[str] = ()
    ) -> None:
        """Record ``(path, size, mtime_ns, kind, reason)`` as unusable; forget the ``forget`` paths."""

        def job(c: sqlite3.Connection) -> None:
            c.executemany("DELETE FROM rejected_files WHERE path = ?", [(path_to_wire(p),) for p in forget])
            c.executemany(
                "INSERT OR REPLACE INTO rejected_files (path, size, mtime_ns, kind, reason, rejected_at)"
                " VALUES (?,?,?,?,?,?)",
                [(path_to_wire(p), int(s), int(m), k, text_to_wire(r), time.time()) for p, s, m, k, r in rejected],
            )

        await self._write(job)

    async def get_track_by_real_path(self, real_path: str, music_dirs: Sequence[str]) -> Track | None:
        """The track that is the file ``real_path`` (symlinks resolved), in one of ``music_dirs``."""

        def job(c: sqlite3.Connection) -> Track | None:
            rows = c.execute(
                "SELECT * FROM tracks WHERE real_path = ? OR (real_path IS NULL AND path = ?) ORDER BY track_id",
                (path_to_wire(real_path), path_to_wire(real_path)),
            )
            for row in rows:
                if row["music_dir"] in music_dirs:
                    return _row_to_track(row)
            return None

        return await self._read(job)

    async def upsert_tracks(self, files: Sequence[TrackFile]) -> list[int]:
        """Insert or update tracks by path; returns their ids. A changed file loses its fingerprint."""

        def job(c: sqlite3.Connection) -> list[int]:
            ids = []
            now = time.time()
            for f in files:
                path = path_to_wire(f.path)
                row = c.execute("SELECT track_id, size, mtime_ns FROM tracks WHERE path = ?", (path,)).fetchone()
                values = (
                    path_to_wire(f.music_dir), path_to_wire(f.rel_dir), f.size, f.mtime_ns, f.title, f.artist,
                    f.album, f.track_number, f.duration_s, f.num_frames, f.sample_rate, f.channels, f.format, now,
                    path_to_wire(f.real_path or f.path), f.album_artist, f.disc_number, f.date, f.genre,
                    f.mb_album_id, _search_text(f.path, f.title, f.artist, f.album, f.album_artist, f.genre, f.track_number,
                                                f.disc_number, f.date, f.composer, f.performer, f.comment,
                                                f.mb_album_id),
                    TAGS_VERSION, f.composer, f.performer, f.comment,
                )  # fmt: skip
                c.execute("DELETE FROM rejected_files WHERE path = ?", (path,))
                if row is None:
                    cur = c.execute(
                        "INSERT INTO tracks (music_dir, rel_dir, size, mtime_ns, title, artist, album, track_number,"
                        " duration_s, num_frames, sample_rate, channels, format, scanned_at, real_path, album_artist,"
                        " disc_number, date, genre, mb_album_id, search_text, tags_version, composer, performer, comment, path)"
                        " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                        (*values, path),
                    )
                    ids.append(int(cur.lastrowid))  # type: ignore[arg-type]
                else:
                    c.execute(
                        "UPDATE tracks SET music_dir=?, rel_dir=?, size=?, mtime_ns=?, title=?, artist=?, album=?,"
                        " track_number=?, duration_s=?, num_frames=?, sample_rate=?, channels=?, format=?,"
                        " scanned_at=?, real_path=?, album_artist=?, disc_number=?, date=?, genre=?, mb_album_id=?,"
                        " search_text=?, tags_version=?, composer=?, performer=?, comment=?, fingerprint_status='none',"
                        " fingerprint_error=NULL, song_block=NULL"
                        " WHERE path=?",
                        (*values, path),
                    )
                    c.execute("DELETE FROM fingerprints WHERE track_id = ?", (row[0],))
                    ids.append(int(row[0]))
            _fill_blocks(c)
            return ids

        self._tracks_changed()
        ids = await self._write(job)
        self._tracks_changed()  # also after: an answer read while the write waited is not kept
        return ids

    async def update_tags(self, rows: Sequence[TrackTags]) -> None:
        """New tags (and search text) for known files whose audio did not change; fingerprints stay."""

        def job(c: sqlite3.Connection) -> None:
            c.executemany(
                "UPDATE tracks SET title=?, artist=?, album=?, album_artist=?, track_number=?, disc_number=?, date=?,"
                " genre=?, mb_album_id=?, search_text=?, tags_version=?, composer=?, performer=?, comment=?,"
                " song_block=NULL WHERE track_id=?",
                [
                    (
                        t.title, t.artist, t.album, t.album_artist, t.track_number, t.disc_number, t.date, t.genre,
                        t.mb_album_id, _search_text(t.path, t.title, t.artist, t.album, t.album_artist, t.genre, t.track_number,
                                                t.disc_number, t.date, t.composer, t.performer, t.comment,
                                                t.mb_album_id),
                        TAGS_VERSION, t.composer, t.performer, t.comment, int(t.track_id),
                    )  # fmt: skip
                    for t in rows
                ],
            )
            _fill_blocks(c)

        self._tracks_changed()
        await self._write(job)
        self._tracks_changed()

    async def delete_tracks(self, track_ids: Iterable[int]) -> None:
        """Forget tracks whose files are really gone (their fingerprints and queue entries go with them).

        The library calls this only for files whose own folder listed fine without them, never
        for files under a folder that is missing, empty or unreadable (see ``library.py``).
        """
        ids = [(int(i),) for i in track_ids]

        def job(c: sqlite3.Connection) -> None:
            c.executemany("DELETE FROM tracks WHERE track_id = ?", ids)  # their queue entries go too (cascade)

        self._tracks_changed()
        await self._write(job)
        self._tracks_changed()

    async def get_track(self, track_id: int) -> Track | None:
        def job(c: sqlite3.Connection) -> Track | None:
            row = c.execute("SELECT * FROM tracks WHERE track_id = ?", (int(track_id),)).fetchone()
            return None if row is None else _row_to_track(row)

        return await self._read(job)

    async def tracks_by_paths(self, paths: Sequence[str]) -> dict[str, Track]:
        """``{path: track}`` for the paths (OS form) the library holds, in one transaction."""
        wire = [path_to_wire(p) for p in paths]

        def job(c: sqlite3.Connection) -> dict[str, Track]:
            out = {}
            for start in range(0, len(wire), 500):  # SQLite's bound-parameter limit
                chunk = wire[start : start + 500]
                marks = ",".join("?" for _ in chunk)
                for row in c.execute(f"SELECT * FROM tracks WHERE path IN ({marks})", chunk):
                    track = _row_to_track(row)
                    out[track.path] = track
            return out

        return await self._read(job)

    async def get_track_by_path(self, path: str) -> Track | None:
        def job(c: sqlite3.Connection) -> Track | None:
            row = c.execute("SELECT * FROM tracks WHERE path = ?", (path_to_wire(path),)).fetchone()
            return None if row is None else _row_to_track(row)

        return await self._read(job)

    async def tracks_under(self, music_dir: str, rel_dir: str, *, recursive: bool) -> list[Track]:
        """Tracks in ``rel_dir`` of ``music_dir`` ("" is the top): folder by folder, each in album order
        (disc, then track number, then name; untagged numbers after tagged ones)."""
        music_dir, rel_dir = path_to_wire(music_dir), path_to_wire(rel_dir)

        def job(c: sqlite3.Connection) -> list[Track]:
            if recursive and rel_dir:
                rows = c.execute(
                    "SELECT * FROM tracks WHERE music_dir = ? AND (rel_dir = ? OR rel_dir LIKE ? ESCAPE '\\')"
                    f" ORDER BY {_ALBUM_ORDER}",
                    (music_dir, rel_dir, _like_prefix(rel_dir + "/")),
                )
            elif recursive:
                rows = c.execute(f"SELECT * FROM tracks WHERE music_dir = ? ORDER BY {_ALBUM_ORDER}", (music_dir,))
            else:
                rows = c.execute(
                    f"SELECT * FROM tracks WHERE music_dir = ? AND rel_dir = ? ORDER BY {_ALBUM_ORDER}",
                    (music_dir, rel_dir),
                )
            return [_row_to_track(r) for r in rows]

        return await self._read(job)

    async def subdirs(self, music_dir: str, rel_dir: str) -> list[str]:
        """Immediate child folders of ``rel_dir`` that hold tracks (relative names)."""

        def job(c: sqlite3.Connection) -> list[str]:
            prefix = path_to_wire(rel_dir) + "/" if rel_dir else ""
            rows = c.execute(
                "SELECT DISTINCT rel_dir FROM tracks WHERE music_dir = ? AND rel_dir LIKE ? ESCAPE '\\'",
                (path_to_wire(music_dir), _like_prefix(prefix)),
            )
            out = set()
            for (d,) in rows:
                rest = d[len(prefix) :]
                if rest:
                    out.add(prefix + rest.split("/", 1)[0])
            return [path_from_wire(d) for d in sorted(out)]

        return await self._read(job)

    async def search_tracks(self, query: str, limit: int, offset: int = 0) -> tuple[list[Track], int]:
        """``(tracks, total)``: the tracks whose tags (title, artist, album, album artist, genre, date,
        track and disc numbers, composer, performer, comment, MusicBrainz id) or path
        (in wire form) contains every word of ``query``, compared folded (:func:`fold`: case and
        accents); ``limit`` of them from ``offset``, and how many match in all."""
        words = [fold(w) for w in query.split() if w][:8]

        def job(c: sqlite3.Connection) -> tuple[list[Track], int]:
            where = ""
            args: list[Any] = []
            if words:
                where = " WHERE " + " AND ".join("search_text LIKE ? ESCAPE '\\'" for _ in words)
                args = [_like_contains(w) for w in words]
            total = int(c.execute("SELECT COUNT(*) FROM tracks" + where, args).fetchone()[0])
            sql = f"SELECT * FROM tracks{where} ORDER BY artist, album, disc_number, track_number, path LIMIT ? OFFSET ?"
            rows = c.execute(sql, [*args, int(limit), int(offset)])
            return [_row_to_track(r) for r in rows], total

        return await self._read(job)

    # ----------------------------------------------------------------- tag queries (protocol/query.py)
    async def _query(self, job: Callable[[sqlite3.Connection], T]) -> T:
        """:meth:`_read` for a library query: a regular expression out of its time budget is the
        client's error (QueryError), not the database's (tagquery.REGEX_BUDGET_S)."""
        try:
            return await self._read(job)
        except sqlite3.OperationalError as exc:
            if tagquery.is_regex_timeout(exc):
                raise QueryError(tagquery.REGEX_TOO_SLOW) from None
            raise

    async def find_tracks(
        self, query: Query | None, *, limit: int | None = None, offset: int = 0, uri_roots: tagquery.UriRoots = ()
    ) -> tuple[list[Track], int]:
        """``(tracks, total)``: the tracks ``query`` matches (all when None), folder by folder in path
        order; ``limit`` of them (all when None) from ``offset``, and how many match in all.
        ``uri_roots``: several music folders seen as folders of one (MPD's URIs, ``tagquery.UriRoots``).

        Raises:
            QueryError: a regular expression that does not compile, or a query over the limits.
        """
        where, args = tagquery.compile_where(query, fold, fts=self._fts, uri_roots=uri_roots)
        order = tagquery.list_order(uri_roots)

        def job(c: sqlite3.Connection) -> tuple[list[Track], int]:
            sql = f"SELECT * FROM tracks WHERE {where} ORDER BY {order} LIMIT ? OFFSET ?"
            rows = c.execute(sql, [*args, -1 if limit is None else int(limit), int(offset)])
            tracks = [_row_to_track(r) for r in rows]
            if limit is None and offset == 0:
                return tracks, len(tracks)
            return tracks, int(c.execute(f"SELECT COUNT(*) FROM tracks WHERE {where}", args).fetchone()[0])

        return await self._query(job)

    def _tracks_changed(self) -> None:
        self._tracks_generation += 1
        self._blocks.clear()

    async def track_blocks(
        self,
        query: Query | None,
        lines: Sequence[tuple[str, str]],
        *,
        limit: int | None = None,
        offset: int = 0,
        uri_roots: tagquery.UriRoots = (),
    ) -> list[tuple[str, str, str]]:
        """``(music_dir, rel_dir, text)`` of each track ``query`` matches, in ``find_tracks`` order, its
        text made in SQL from ``lines`` (``tagquery.block_expr``): a listing of 10,000 songs costs one
        string per row instead of a ``Track`` and a formatting pass in Python. Paths in wire form.
        ``uri_roots`` as :meth:`find_tracks` (the ``uri`` field stays the path inside its music folder).

        Raises:
            QueryError: as :meth:`find_tracks`.
        """
        key = (self._tracks_generation, query, tuple(tuple(x) for x in lines), limit, offset, uri_roots)
        if key in self._blocks:
            self._blocks.move_to_end(key)
            return self._blocks[key]
        where, args = tagquery.compile_where(query, fold, fts=self._fts, uri_roots=uri_roots)
        order = tagquery.list_order(uri_roots)
        text = tagquery.block_expr(lines)
        stored = [tuple(x) for x in lines] == [tuple(x) for x in tagquery.STORED_BLOCK_LINES]

        # the stored layout reads the stored block (made here where it is missing)
        column = f"COALESCE(song_block, {text})" if stored else text
        missing = False

        def job(c: sqlite3.Connection) -> list[tuple[str, str, str]]:
            nonlocal missing
            cur = c.cursor()
            cur.row_factory = None
            sql = f"SELECT music_dir, rel_dir, {column} FROM tracks WHERE {where} ORDER BY {order} LIMIT ? OFFSET ?"
            rows = cur.execute(sql, [*args, -1 if limit is None else int(limit), int(offset)]).fetchall()
            if stored:  # a partial index answers this at once
                missing = cur.execute("SELECT EXISTS (SELECT 1 FROM tracks WHERE song_block IS NULL)").fetchone()[0]
            return rows

        rows = await self._query(job)
        if missing:  # store the blocks made in passing (after a change of layout; writes make their own)
            await self._write(lambda c: c.execute(f"UPDATE tracks SET song_block = {text} WHERE song_block IS NULL"))
        if key[0] == self._tracks_generation:  # nothing changed meanwhile
            self._blocks[key] = rows
            while len(self._blocks) > BLOCK_ANSWERS:
                self._blocks.popitem(last=False)
        return rows

    async def tag_values(
        self, tag: str, group: Sequence[str] = (), query: Query | None = None, *, uri_roots: tagquery.UriRoots = ()
    ) -> list[tuple[str | None, ...]]:
        """The distinct ``(group values..., tag value)`` rows of the tracks ``query`` matches, sorted
        (MPD's ``list TAG group G...``); None where a track has no such tag. ``tag`` may be ``file``.
        ``uri_roots`` as :meth:`find_tracks`."""
        by_tag = tagquery.columns(uri_roots)
        columns = [by_tag[name] for name in (*group, tag)]
        where, args = tagquery.compile_where(query, fold, fts=self._fts, uri_roots=uri_roots)
        select = ", ".join(columns)
        order = ", ".join(f"{c} IS NOT NULL, {c}" for c in columns)

        def job(c: sqlite3.Connection) -> list[tuple[str | None, ...]]:
            rows = c.execute(f"SELECT DISTINCT {select} FROM tracks WHERE {where} ORDER BY {order}", args)
            return [tuple(None if v is None else str(v) for v in r) for r in rows]

        return await self._query(job)

    async def count_matches(
        self, query: Query | None, group: str | None = None, *, uri_roots: tagquery.UriRoots = ()
    ) -> list[tuple[str | None, int, float]]:
        """``[(group value, songs, playtime_s)]`` of the tracks ``query`` matches: one row (value None)
        without ``group``, else one per value of the tag ``group`` (None: tracks without it).
        ``uri_roots`` as :meth:`find_tracks`."""
        where, args = tagquery.compile_where(query, fold, fts=self._fts, uri_roots=uri_roots)

        def job(c: sqlite3.Connection) -> list[tuple[str | None, int, float]]:
            if group is None:
                row = c.execute(f"SELECT COUNT(*), COALESCE(SUM(duration_s), 0) FROM tracks WHERE {where}", args)
                songs, playtime = row.fetchone()
                return [(None, int(songs), float(playtime))]
            column = tagquery.columns(uri_roots)[group]
            rows = c.execute(
                f"SELECT {column} AS g, COUNT(*), COALESCE(SUM(duration_s), 0) FROM tracks WHERE {where}"
                " GROUP BY g ORDER BY g IS NOT NULL, g",
                args,
            )
            return [(None if g is None else str(g), int(n), float(t)) for g, n, t in rows]

        return await self._query(job)

    async def library_totals(self) -> LibraryTotals:
        """Distinct artists and albums, tracks, their total duration and the last time a track was scanned."""

        def job(c: sqlite3.Connection) -> LibraryTotals:
            row = c.execute(
                "SELECT COUNT(DISTINCT artist), COUNT(DISTINCT album), COUNT(*), COALESCE(SUM(duration_s), 0),"
                " MAX(scanned_at) FROM tracks"
            ).fetchone()
            return LibraryTotals(int(row[0]), int(row[1]), int(row[2]), float(row[3]), row[4])

        return await self._read(job)

    async def track_ids_without_fingerprint(self, limit: int) -> list[int]:
        return await self._read(
            lambda c: [
                r[0]
                for r in c.execute(
                    "SELECT track_id FROM tracks WHERE fingerprint_status IN ('none', 'partial') ORDER BY track_id"
                    " LIMIT ?",
                    (int(limit),),
                )
            ]
        )

    async def count_tracks_without_fingerprint(self) -> int:
        """Tracks the idle-time analysis still has to do (no fingerprint, or plan inputs only)."""
        return await self._read(
            lambda c: int(
                c.execute("SELECT COUNT(*) FROM tracks WHERE fingerprint_status IN ('none', 'partial')").fetchone()[0]
            )
        )

    async def count_tracks(self) -> int:
        return await self._read(lambda c: int(c.execute("SELECT COUNT(*) FROM tracks").fetchone()[0]))

    async def set_fingerprint_status(self, track_id: int, status: str, error: str | None = None) -> None:
        await self._write(
            lambda c: c.execute(
                "UPDATE tracks SET fingerprint_status = ?, fingerprint_error = ? WHERE track_id = ?",
                (status, error, int(track_id)),
            )
        )

    # ----------------------------------------------------------------- fingerprints
    async def get_fingerprint(self, track_id: int) -> StoredFingerprint | None:
        def job(c: sqlite3.Connection) -> StoredFingerprint | None:
            row = c.execute("SELECT * FROM fingerprints WHERE track_id = ?", (int(track_id),)).fetchone()
            if row is None:
                return None
            return StoredFingerprint(
                track_id=row["track_id"],
                size=row["size"],
                mtime_ns=row["mtime_ns"],
                algorithm_version=row["algorithm_version"],
                source=row["source"],
                complete=bool(row["complete"]),
                dimensions={name: row[name] for name in DIMENSION_COLUMNS},
                measurements=json.loads(row["measurements"]),
            )

        return await self._read(job)

    async def put_fingerprint(self, fp: StoredFingerprint) -> None:
        """Store (replace) a track's fingerprint and set its status to complete or partial."""
        columns = ", ".join(DIMENSION_COLUMNS)
        marks = ", ".join("?" for _ in DIMENSION_COLUMNS)

        def job(c: sqlite3.Connection) -> None:
            c.execute(
                f"INSERT OR REPLACE INTO fingerprints (track_id, size, mtime_ns, algorithm_version, source, complete,"
                f" {columns}, measurements, created_at) VALUES (?, ?, ?, ?, ?, ?, {marks}, ?, ?)",
                (
                    fp.track_id, fp.size, fp.mtime_ns, fp.algorithm_version, fp.source, int(fp.complete),
                    *[_finite_or_none(fp.dimensions.get(name)) for name in DIMENSION_COLUMNS],
                    _json_dumps(fp.measurements), time.time(),
                ),  # fmt: skip
            )
            c.execute(
                "UPDATE tracks SET fingerprint_status = ?, fingerprint_error = NULL WHERE track_id = ?",
                ("complete" if fp.complete else "partial", fp.track_id),
            )

        await self._write(job)

    # ----------------------------------------------------------------- queue and player state
    async def load_queue(self) -> list[int]:
        """The queued track ids in queue order."""
        return await self._read(
            lambda c: [r[0] for r in c.execute("SELECT track_id FROM queue_entries ORDER BY sort_key, song_id")]
        )

    async def load_queue_entries(self) -> list[tuple[QueueRow, Track]]:
        """The queue's rows in queue order, each with its track (one query; an entry's track is never gone:
        the rows of a forgotten track go with it)."""

        def job(c: sqlite3.Connection) -> list[tuple[QueueRow, Track]]:
            rows = c.execute(
                "SELECT q.song_id AS q_song_id, q.sort_key AS q_sort_key, q.prio AS q_prio, t.*"
                " FROM queue_entries q JOIN tracks t ON t.track_id = q.track_id ORDER BY q.sort_key, q.song_id"
            )
            return [
                (QueueRow(r["q_song_id"], r["q_sort_key"], r["q_prio"], r["track_id"]), _row_to_track(r)) for r in rows
            ]

        return await self._read(job)

    async def save_player(self, queue: QueueWrite | None, state: Mapping[str, Any]) -> int:
        """Commit the queue's changes (when given) and these keys of the player state map in one
        transaction; returns the number of rows written (what a test of "only what changed" counts).

        A row whose track is gone (forgotten by a scan meanwhile) is not written: the entry is gone
        with its track, as :meth:`delete_tracks` removed the ones that were stored.
        """

        def job(c: sqlite3.Connection) -> int:
            before = c.total_changes
            if queue is not None:
                if queue.clear:
                    c.execute("DELETE FROM queue_entries")
                c.executemany("DELETE FROM queue_entries WHERE song_id = ?", [(int(i),) for i in queue.removed])
                c.executemany(
                    "INSERT OR REPLACE INTO queue_entries (song_id, sort_key, prio, track_id)"
                    " SELECT ?, ?, ?, track_id FROM tracks WHERE track_id = ?",
                    [(int(r.song_id), int(r.sort_key), int(r.prio), int(r.track_id)) for r in queue.rows],
                )
            c.executemany(
                "INSERT OR REPLACE INTO player_state (key, value) VALUES (?, ?)",
                [(k, json.dumps(v)) for k, v in state.items()],
            )
            return int(c.total_changes - before)

        return await self._write(job)

    async def load_player_state(self) -> dict[str, Any]:
        return await self._read(
            lambda c: {r[0]: json.loads(r[1]) for r in c.execute("SELECT key, value FROM player_state")}
        )

    # ----------------------------------------------------------------- settings (key -> JSON value)
    async def load_setting(self, key: str) -> Any:
        """The value saved under ``key`` in the ``settings`` table (JSON), or None."""

        def job(c: sqlite3.Connection) -> Any:
            row = c.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
            return None if row is None else json.loads(row[0])

        return await self._read(job)

    async def save_setting(self, key: str, value: Any) -> None:
        """Save ``value`` (JSON) under ``key``, committed before this returns."""
        await self._write(
            lambda c: c.execute("INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)", (key, json.dumps(value)))
        )

    # ----------------------------------------------------------------- albums
    async def album_candidates(self, track: Track) -> list[Track]:
        """Tracks that may share ``track``'s album: same MusicBrainz album id, else same album tag (any case),
        else (untagged) same folder.

        The caller keeps those whose album key (auralis.album.album_key) equals the track's.
        """

        def job(c: sqlite3.Connection) -> list[Track]:
            if track.mb_album_id:  # the release id decides alone, whatever the album tag says
                rows = c.execute("SELECT * FROM tracks WHERE mb_album_id = ? COLLATE NOCASE", (track.mb_album_id,))
            elif track.album:
                rows = c.execute("SELECT * FROM tracks WHERE album = ? COLLATE NOCASE", (track.album,))
            else:
                rows = c.execute(
                    "SELECT * FROM tracks WHERE music_dir = ? AND rel_dir = ? AND (album IS NULL OR album = '')",
                    (path_to_wire(track.music_dir), path_to_wire(track.rel_dir)),  # stored in wire form
                )
            return [_row_to_track(r) for r in rows]

        return await self._read(job)

    async def get_album_plan(self, album_key: str) -> tuple[str, str] | None:
        """``(identity, inputs JSON)`` stored for an album, or None."""

        def job(c: sqlite3.Connection) -> tuple[str, str] | None:
            row = c.execute(
                "SELECT identity, inputs FROM album_plans WHERE album_key = ?", (path_to_wire(album_key),)
            ).fetchone()
            return None if row is None else (str(row["identity"]), str(row["inputs"]))

        return await self._read(job)

    async def put_album_plan(self, album_key: str, identity: str, inputs_json: str) -> None:
        """Store (replace) an album's plan inputs for the identity of its members."""
        await self._write(
            lambda c: c.execute(
                "INSERT OR REPLACE INTO album_plans (album_key, identity, inputs, created_at) VALUES (?, ?, ?, ?)",
                (path_to_wire(album_key), identity, inputs_json, time.time()),  # "dir:<folder>" may not be UTF-8
            )
        )

    async def integrity_check(self) -> str:
        """``PRAGMA integrity_check`` result ("ok" when the file is sound)."""
        return await self._read(lambda c: str(c.execute("PRAGMA integrity_check").fetchone()[0]))


class DatabaseDamaged(ConfigError):
    """The database file is not a usable auralis database: the daemon refuses to start (exit 2)."""


def _is_damage(exc: sqlite3.DatabaseError) -> bool:
    """SQLITE_NOTADB / SQLITE_CORRUPT: the file itself is bad (not a lock, a full disk or a permission)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_NOTADB, sqlite3.SQLITE_CORRUPT)
    return "not a database" in str(exc) or "malformed" in str(exc)


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema to ``len(MIGRATIONS)``; each step in its own IMMEDIATE transaction. Returns the version."""
    version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    if version > len(MIGRATIONS):
        raise DatabaseDamaged(
            f"database schema version {version} is newer than this auralisd ({len(MIGRATIONS)}): run the newer"
            " auralisd, or move the database aside to start afresh"
        )
    for target in range(version + 1, len(MIGRATIONS) + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _split_sql(MIGRATIONS[target - 1]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {target}")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    return len(MIGRATIONS)


def _fill_blocks(c: sqlite3.Connection) -> None:
    """Make the stored song blocks of the rows a write just changed (found by the partial index), so
    that listings after a scan read stored text."""
    c.execute(f"UPDATE tracks SET song_block = {tagquery.block_expr(tagquery.STORED_BLOCK_LINES)}"
              " WHERE song_block IS NULL")  # fmt: skip


def _check_block_layout(conn: sqlite3.Connection) -> None:
    """Stored song blocks were made with one layout (``tagquery.STORED_BLOCK_LINES`` and the SQL that
    formats them); another one (a newer auralisd) forgets them: they are made again when next listed."""
    layout = json.dumps([tagquery.STORED_BLOCK_LINES, tagquery.block_expr(tagquery.STORED_BLOCK_LINES)])
    row = conn.execute("SELECT value FROM settings WHERE key = 'song_block_layout'").fetchone()
    if row is not None and row[0] == layout:
        return
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("UPDATE tracks SET song_block = NULL WHERE song_block IS NOT NULL")
    conn.execute("INSERT OR REPLACE INTO settings (key, value) VALUES ('song_block_layout', ?)", (layout,))
    conn.execute("COMMIT")


def _split_sql(script: str) -> list[str]:
    return [s.strip() for s in script.split(";") if s.strip()]


def _finite_or_none(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


# folder by folder, then album order: disc, track number (untagged after tagged), name
_ALBUM_ORDER: Final = (
    "rel_dir, disc_number IS NULL, disc_number, track_number IS NULL, track_number, path"
)


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _like_contains(word: str) -> str:
    return "%" + word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
