"""The library actor: scans the music folders into the database and answers path questions.

A scan walks every music folder recursively (following symlinks, each real directory
visited once, so symlink loops end) and decides by content, never by extension: every file
is a candidate except hidden ones (leading ``.``) and the daemon's own ``.25d`` sidecars,
which are counted as skipped. It compares each file's size and mtime with the database:
only new or changed files are opened (header probe plus tags, see ``auralisd/tags.py``),
vanished ones are removed. A file that does not decode is recorded with its kind
(``unsupported``: not audio we decode; ``damaged``: audio that cannot be read) and reason,
logged once, and not probed again until it changes. A rescan of an unchanged library
therefore reads no audio at all (``statistics().files_probed`` stays put). Progress goes
out as ``scan_progress`` events; the last one says ``running: false`` and carries the
scan's counts (:class:`ScanCounts`), which add up to the files on disk.

Paths inside the daemon are OS paths (``os.fsdecode`` form: lone surrogates for bytes
that are not UTF-8); paths from and to clients are in the wire form of
``protocol/paths.py``, converted at this actor's public methods.

Paths from clients are checked here: a path must lie under a music folder as written
(``..`` resolved); it is accepted when it is a track the library found (even through a
symlink that leads outside the music folders), or when it resolves, symlinks included, to
a file inside a music folder. A track is one real file: every alias of it (a second link,
a symlink loop) answers the same row, stored under one library path.

Nothing the user saved is lost to a folder that is away: a track is forgotten only when
the listing of its own folder (or of a folder on its way) succeeded and no longer holds
it. A missing, unreadable or empty (unmounted) folder keeps its tracks, their
fingerprints and their queue entries. Files that are not usable audio are remembered by
size and mtime and not probed again until they change.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import trio

from auralis.audio import probe
from auralis.errors import AudioError, AudioNotFoundError, UnsupportedAudioError
from auralis.sidecar import SIDECAR_SUFFIX

from ..errors import BAD_AUDIO, NOT_FOUND, OUTSIDE_MUSIC_DIRS, RpcError
from ..protocol.paths import path_from_wire, path_to_wire
from ..tags import read_tags
from .database import TAGS_VERSION, Database, KnownTrack, Track, TrackFile, TrackTags
from .events import EventHub

log = logging.getLogger("auralisd.library")

PROBE_THREADS: Final = 2  # files probed at once during a scan
UPSERT_BATCH: Final = 200  # files per database transaction
PROGRESS_INTERVAL_S: Final = 0.1  # at most ten scan_progress events per second
MAX_QUEUED_SCANS: Final = 32  # scans waiting behind the running one (MPD's update queue holds 32)


@dataclass(frozen=True)
class ScanCounts:
    """What one scan found. ``files`` (every file on disk under the music folders, hidden folders
    aside; a file reached by two paths counts once) = ``added + updated + unchanged + unsupported +
    damaged + skipped``. ``removed`` counts tracks whose files are gone."""

    files: int = 0
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    removed: int = 0
    unsupported: int = 0  # not audio in a format we decode (a text file, a picture)
    damaged: int = 0  # audio that cannot be read (corrupt, truncated, empty, unreadable)
    skipped: int = 0  # hidden files and the daemon's own .25d sidecars, never opened

    def to_wire(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass(frozen=True)
class LibraryStatistics:
    running: bool
    done: int
    total: int
    files_probed: int  # audio files opened by scans since start (0 growth on an unchanged rescan)
    scans: int
    tracks: int
    counts: ScanCounts | None = None  # of the last finished scan
    error: str | None = None  # why the last scan failed (None: it did not)


@dataclass(frozen=True)
class FoundFile:
    path: str  # the library path: under ``music_dir``, as the walk first reached the file
    music_dir: str
    rel_dir: str
    size: int
    mtime_ns: int
    real_path: str = ""  # symlinks resolved: what identifies the file
    via_link: bool = False  # reached through a symlink inside the music folder


@dataclass(frozen=True)
class Walk:
    """What a walk of one music folder saw.

    ``listed`` maps each folder that was listed successfully *and is not empty* to the names
    it holds. Only a file whose path runs through listed folders, and whose name (or a
    folder on its way) is missing from such a listing, has really vanished: a missing,
    unreadable or empty (unmounted?) folder says nothing about what it used to hold.
    """

    files: list[FoundFile]
    listed: dict[str, frozenset[str]]
    skipped: int = 0  # hidden files and .25d sidecars (hidden folders are not walked)


def walk_music_dir(music_dir: str, start: str = "") -> Walk:
    """Every candidate file under ``music_dir`` (blocking; run on a thread).

    Follows symlinks; a real directory reached twice (a loop, or two links to one folder)
    is walked once, and plain folders are walked before folders reached through a symlink,
    so a file has its symlink-free path whenever it has one. A file reached twice (a
    symlinked file) is reported once. Hidden files and folders (leading ``.``) and ``.25d``
    sidecars are skipped (files counted in ``skipped``). Every other regular file is a candidate:
    whether it is audio is decided by its content, not its name. ``start`` (relative to
    ``music_dir``) walks only that folder and what lies below it.
    """
    found: list[FoundFile] = []
    skipped = 0
    listed: dict[str, frozenset[str]] = {}
    seen_dirs: set[tuple[int, int]] = set()
    seen_files: set[str] = set()
    stack: list[tuple[str, bool]] = [(start, False)]
    linked: list[tuple[str, bool]] = []  # folders reached through a symlink: after the plain ones
    while stack or linked:
        rel, via_link = stack.pop() if stack else linked.pop(0)
        folder = os.path.join(music_dir, rel) if rel else music_dir
        try:
            st = os.stat(folder)
        except OSError:
            continue
        key = (st.st_dev, st.st_ino)
        if key in seen_dirs:
            continue
        seen_dirs.add(key)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            log.warning("cannot list %s: %s; its tracks are kept", folder, exc.strerror)
            continue
        if entries:
            listed[folder] = frozenset(e.name for e in entries)
        real_folder = os.path.realpath(folder)
        subdirs: list[tuple[str, bool]] = []
        for entry in entries:
            if entry.name.startswith("."):
                skipped += 0 if entry.is_dir() else 1
                continue
            child_rel = f"{rel}/{entry.name}" if rel else entry.name
            try:
                is_link = entry.is_symlink()
                est = entry.stat(follow_symlinks=True)
            except OSError:
                continue  # dangling symlink or vanished
            if stat.S_ISDIR(est.st_mode):
                if is_link:
                    linked.append((child_rel, True))
                else:
                    subdirs.append((child_rel, via_link))
            elif stat.S_ISREG(est.st_mode) and entry.name.endswith(SIDECAR_SUFFIX):
                skipped += 1  # our own fingerprint cache, never audio
            elif stat.S_ISREG(est.st_mode):
                real = os.path.realpath(entry.path) if is_link else os.path.join(real_folder, entry.name)
                found.append(
                    FoundFile(entry.path, music_dir, rel, est.st_size, est.st_mtime_ns, real, via_link or is_link)
                )
        stack += reversed(subdirs)  # popped in name order
    # one path per real file: the first reached without a symlink, else the first reached at all
    found.sort(key=lambda f: f.via_link)  # stable: walk order within each kind
    out = []
    for f in found:
        if f.real_path not in seen_files:
            seen_files.add(f.real_path)
            out.append(f)
    return Walk(out, listed, skipped)


def has_vanished(path: str, music_dir: str, listed: dict[str, frozenset[str]]) -> bool:
    """True when a listing of this scan shows that ``path`` is gone (see :class:`Walk`)."""
    rel = os.path.relpath(path, music_dir)
    if rel.startswith("..") or rel == ".":
        return False
    folder = music_dir
    seen_listing = False
    for name in rel.split("/"):
        names = listed.get(folder)
        if names is None and not seen_listing and folder != os.path.dirname(path):
            folder = os.path.join(folder, name)  # above the folder a folder scan started at
            continue
        if names is None:
            return False  # missing, unreadable, empty, or not walked: unknown, so kept
        seen_listing = True
        if name not in names:
            return True
        folder = os.path.join(folder, name)
    return False  # still there (a dangling link, an empty file being written): kept


def _under(path: str, folder: tuple[str, str]) -> bool:
    """Whether ``path`` lies in ``folder`` = ``(music_dir, rel_dir)`` or below it."""
    top = os.path.join(folder[0], folder[1]) if folder[1] else folder[0]
    return path.startswith(top.rstrip("/") + "/")


def _covers(waiting: tuple[str, str] | None, wanted: tuple[str, str] | None) -> bool:
    """Whether a waiting scan of ``waiting`` (None: everything) reads all of ``wanted`` too."""
    if waiting is None or waiting == wanted:
        return True
    if wanted is None or waiting[0] != wanted[0]:
        return False
    return not waiting[1] or wanted[1].startswith(waiting[1].rstrip("/") + "/")


def read_track_file(found: FoundFile) -> TrackFile:
    """Probe the header and read the tags (blocking). Raises AudioError for unusable files."""
    info = probe(found.path)
    if info.damage:  # once per new or changed file: an unchanged one is not probed again
        log.warning("%s: %s; it plays to there (%.2f s)", path_to_wire(found.path), info.damage, info.duration_s)
    tags = read_tags(found.path)
    return TrackFile(
        path=found.path,
        music_dir=found.music_dir,
        rel_dir=found.rel_dir,
        size=found.size,
        mtime_ns=found.mtime_ns,
        title=tags.title,
        artist=tags.artist,
        album=tags.album,
        track_number=tags.track_number,
        album_artist=tags.album_artist,
        disc_number=tags.disc_number,
        date=tags.date,
        genre=tags.genre,
        mb_album_id=tags.mb_album_id,
        composer=tags.composer,
        performer=tags.performer,
        comment=tags.comment,
        duration_s=info.duration_s,
        num_frames=info.num_frames,
        sample_rate=info.sample_rate,
        channels=info.channels,
        format=info.format,
        real_path=found.real_path or os.path.realpath(found.path),
    )


def read_track_tags(track_id: int, path: str) -> TrackTags:
    """The tags of a known file (blocking): a tags refresh that keeps the fingerprint."""
    tags = read_tags(path)
    return TrackTags(
        track_id, path, tags.title, tags.artist, tags.album, tags.album_artist, tags.track_number,
        tags.disc_number, tags.date, tags.genre, tags.mb_album_id, tags.composer, tags.performer, tags.comment,
    )  # fmt: skip


def rejected_kind(exc: AudioError) -> str:
    """``unsupported`` for a file that is not audio we decode, ``damaged`` for everything else."""
    return "unsupported" if isinstance(exc, UnsupportedAudioError) else "damaged"


class Library:
    """Owner of scans. Start with ``await nursery.start(library.run)``."""

    def __init__(self, db: Database, hub: EventHub, music_dirs: Sequence[str]) -> None:
        self._db = db
        self._hub = hub
        self._music_dirs = tuple(os.path.abspath(d) for d in music_dirs)
        self._nursery: trio.Nursery | None = None
        self._running = False
        self._done = 0
        self._total = 0
        self._files_probed = 0
        self._scans = 0
        self._tracks = 0
        self._counts: ScanCounts | None = None
        self._error: str | None = None
        self._scan_finished: trio.Event = trio.Event()
        self._scan_finished.set()
        self._scan_id = 0  # the number of the last scan started (MPD's update job id)
        self._jobs = 0  # the last job id handed out (started or queued)
        self._queued: list[tuple[int, tuple[str, str] | None]] = []  # (job id, folder or None) waiting
        self._scan_only: tuple[str, str] | None = None  # (music_dir, rel_dir): this scan's one folder
        self.finished_at_s: float | None = None  # Unix time the last scan ended (MPD's db_update)
        self.on_scan_complete: list[Callable[[], object]] = []  # callables run (sync) after each scan
        # awaited with the ids of the tracks a scan removed, before that scan counts as finished (the
        # queue forgets them then: a client that saw the scan end never sees a removed track queued)
        self.on_tracks_removed: list[Callable[[list[int]], Awaitable[None]]] = []

    @property
    def music_dirs(self) -> tuple[str, ...]:
        return self._music_dirs

    def set_music_dirs(self, music_dirs: Sequence[str]) -> None:
        """Replace the folders (SIGHUP reload); takes effect at the next scan."""
        self._music_dirs = tuple(os.path.abspath(d) for d in music_dirs)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._tracks = await self._db.count_tracks()
            task_status.started()
            await trio.sleep_forever()

    def statistics(self) -> LibraryStatistics:
        return LibraryStatistics(
            self._running, self._done, self._total, self._files_probed, self._scans, self._tracks, self._counts,
            self._error,
        )  # fmt: skip

    def scan(self) -> bool:
        """Start a scan of everything in the background; False (and nothing queued) when one is running."""
        if self._running or self._nursery is None:
            return False
        return self._request(None)[1]

    def _request(self, folder: tuple[str, str] | None) -> tuple[int, bool]:
        """Start a scan of ``folder`` (None: everything) now, or queue it behind the running one as MPD
        queues ``update``: ``(job id, started now)``. A request a waiting job already covers gets that
        job's id; past :data:`MAX_QUEUED_SCANS` waiting jobs the last one widens to everything."""
        if not self._running and self._nursery is not None:
            self._jobs += 1
            self._scan_id, self._scan_only = self._jobs, folder
            self._running = True
            self._scan_finished = trio.Event()
            self._nursery.start_soon(self._scan)
            return self._scan_id, True
        for job, waiting in self._queued:
            if _covers(waiting, folder):
                return job, False
        if len(self._queued) >= MAX_QUEUED_SCANS:
            job = self._queued[-1][0]
            self._queued[-1] = (job, None)
            return job, False
        self._jobs += 1
        self._queued.append((self._jobs, folder))
        return self._jobs, False

    @property
    def scan_id(self) -> int:
        """The number of the last scan started (1, 2, ...; 0 before the first)."""
        return self._scan_id

    async def scan_folder(self, wire_path: str | None) -> tuple[int, bool]:
        """Scan one library folder (wire form; absolute or relative to a music folder; None or ""
        scans everything), or the folder holding one track: ``(job id, started now)``. While a scan
        runs the request waits behind it (see :meth:`_request`), so a folder changed during a long scan
        is still read. Only what lies under the folder is read, added or forgotten.

        Raises:
            RpcError: ``outside_music_dirs`` or ``not_found`` for a path that is no library folder or track.
        """
        if not wire_path:
            return self._request(None)
        path = path_from_wire(wire_path)
        folder = await trio.to_thread.run_sync(self._folder, path)
        if folder is None:
            track = await self.resolve_track_path(wire_path)  # a file: its folder
            folder = (track.music_dir, track.rel_dir)
        return self._request(folder)

    async def wait_scan(self) -> None:
        """Wait until no scan is running."""
        await self._scan_finished.wait()

    async def _scan(self) -> None:
        """Run the started scan, then every queued one, in order; ``running`` until the queue is empty."""
        try:
            while True:
                await self._scan_one()
                if not self._queued:
                    break
                self._scan_id, self._scan_only = self._queued.pop(0)
        finally:
            self._queued.clear()
            self._running = False
            self._publish_progress("")
            self._scan_finished.set()

    async def _scan_one(self) -> None:
        started = time.monotonic()
        self._error = None
        self._counts = None
        try:
            self._counts = await self._scan_inner()
        except Exception as exc:
            log.exception("library scan failed")
            self._error = f"library scan failed ({type(exc).__name__}); see the daemon log"
            self._hub.publish("error", {"code": "internal", "message": self._error})
        finally:
            self._scans += 1
            self.finished_at_s = time.time()
            if self._queued:  # the last scan of a queue says running: false (in _scan), with its counts
                self._publish_progress("")
        counts = self._counts
        if self._error is None and counts is not None:
            log.info(
                "scan finished in %.2f s: %d tracks; %d files: %d added, %d updated, %d unchanged, %d unsupported,"
                " %d damaged, %d skipped; %d removed",
                time.monotonic() - started, self._tracks, counts.files, counts.added, counts.updated,
                counts.unchanged, counts.unsupported, counts.damaged, counts.skipped, counts.removed,
            )  # fmt: skip
        for callback in self.on_scan_complete:
            callback()

    async def _scan_inner(self) -> ScanCounts:
        found: list[FoundFile] = []
        listed: dict[str, frozenset[str]] = {}
        skipped = 0
        only = self._scan_only
        for music_dir in self._music_dirs:
            if only is not None and only[0] != music_dir:
                continue
            walk = await trio.to_thread.run_sync(walk_music_dir, music_dir, "" if only is None else only[1])
            if only is None and music_dir not in walk.listed:
                log.warning("music folder %s is missing, empty or unreadable; its tracks are kept", music_dir)
            found += walk.files
            listed.update(walk.listed)
            skipped += walk.skipped
        # one library path per real file, over all the music folders (first folder first)
        by_real: dict[str, FoundFile] = {}
        for f in sorted(found, key=lambda f: f.via_link):
            by_real.setdefault(f.real_path, f)
        found = [f for f in found if by_real[f.real_path] is f]
        by_path = {f.path: f for f in found}

        known = await self._db.known_tracks()
        if only is not None:  # a folder scan: what lies elsewhere is neither compared nor forgotten
            known = [k for k in known if _under(k.path, only)]
        stats, owner, moves, vanished = await trio.to_thread.run_sync(
            self._reconcile, known, by_path, by_real, listed
        )
        if moves:
            await self._db.move_tracks(moves)
        if vanished:
            await self._db.delete_tracks(vanished)
            log.info("%d tracks vanished", len(vanished))
            for hook in self.on_tracks_removed:
                await hook(vanished)
        rejected = await self._db.rejected_files()
        if only is not None:
            rejected = {p: v for p, v in rejected.items() if _under(p, only)}
        kinds = {r.path: r.kind for r in await self._db.rejected_list()}
        changed = [
            f
            for f in found
            if stats.get(f.path) != (f.size, f.mtime_ns) and rejected.get(f.path) != (f.size, f.mtime_ns)
        ]
        # known files whose audio is unchanged but whose tags were read by an older version
        stale_tags = [
            (owner[k.path], k.path)
            for k in known
            if k.tags_version < TAGS_VERSION and k.path in by_path and stats.get(k.path) == (by_path[k.path].size,
                                                                                         by_path[k.path].mtime_ns)
        ]  # fmt: skip
        forget = [p for p in rejected if p not in by_path and has_vanished(p, self._music_dir_of(p) or "/", listed)]
        self._total = len(found)
        self._done = len(found) - len(changed)
        self._publish_progress("")
        limiter = trio.CapacityLimiter(PROBE_THREADS)
        batch: list[TrackFile] = []
        bad: list[tuple[str, int, int, str, str]] = []
        outcome: dict[str, str] = {}  # path -> added | updated | unsupported | damaged (this scan's probes)
        last_event = 0.0

        async def read_one(item: FoundFile) -> None:
            nonlocal last_event
            try:
                track_file = await trio.to_thread.run_sync(read_track_file, item, limiter=limiter)
            except AudioError as exc:
                kind = rejected_kind(exc)
                # named once: an unchanged rejected file is not probed (nor logged) again
                log.warning("%s file %s: %s (not tried again until it changes)", kind, path_to_wire(item.path),
                            exc.reason)  # fmt: skip
                bad.append((item.path, item.size, item.mtime_ns, kind, exc.reason))
                outcome[item.path] = kind
                track_file = None
            self._files_probed += 1
            self._done += 1
            if track_file is not None:
                batch.append(track_file)
                outcome[item.path] = "updated" if item.path in stats else "added"
            now = time.monotonic()
            if now - last_event >= PROGRESS_INTERVAL_S:
                last_event = now
                self._publish_progress(item.path)

        for start in range(0, len(changed), UPSERT_BATCH):
            async with trio.open_nursery() as nursery:
                for item in changed[start : start + UPSERT_BATCH]:
                    nursery.start_soon(read_one, item)
            if batch:
                await self._db.upsert_tracks(batch)
                batch.clear()
            if bad:
                await self._db.set_rejected(bad)
                bad.clear()
        if forget:
            await self._db.set_rejected([], forget)
        for start in range(0, len(stale_tags), UPSERT_BATCH):
            rows = []
            for track_id, path in stale_tags[start : start + UPSERT_BATCH]:
                rows.append(await trio.to_thread.run_sync(read_track_tags, track_id, path, limiter=limiter))
            await self._db.update_tags(rows)
        self._tracks = await self._db.count_tracks()
        tally = dict.fromkeys(("added", "updated", "unchanged", "unsupported", "damaged"), 0)
        for f in found:
            if f.path in outcome:
                tally[outcome[f.path]] += 1
            elif rejected.get(f.path) == (f.size, f.mtime_ns):
                tally[kinds.get(f.path, "damaged")] += 1
            else:
                tally["unchanged"] += 1
        return ScanCounts(files=len(found) + skipped, removed=len(vanished), skipped=skipped, **tally)

    def _reconcile(
        self,
        known: list[KnownTrack],
        by_path: dict[str, FoundFile],
        by_real: dict[str, FoundFile],
        listed: dict[str, frozenset[str]],
    ) -> tuple[dict[str, tuple[int, int]], dict[str, int], list[tuple[int, str, str, str, str]], list[int]]:
        """Known rows against found files (blocking: resolves symlinks): ``(stats, owner, moves, vanished)``."""
        stats = {k.path: (k.size, k.mtime_ns) for k in known}
        owner = {k.path: k.track_id for k in known if k.path in by_path}
        moves: list[tuple[int, str, str, str, str]] = []
        vanished: list[int] = []
        for k in known:
            here = by_path.get(k.path)
            if here is not None:
                if k.real_path != here.real_path:  # (older rows have none yet)
                    moves.append((k.track_id, here.path, here.music_dir, here.rel_dir, here.real_path))
                continue
            moved = by_real.get(k.real_path or os.path.realpath(k.path))
            if moved is not None and moved.path not in owner:
                # the same file, now first reached by another path: keep the row (queue, fingerprint)
                owner[moved.path] = k.track_id
                stats[moved.path] = (k.size, k.mtime_ns)
                moves.append((k.track_id, moved.path, moved.music_dir, moved.rel_dir, moved.real_path))
            elif moved is not None or has_vanished(k.path, k.music_dir, listed):
                vanished.append(k.track_id)  # gone, or a second row for one file
            elif self._music_dir_of(k.path) is None or os.path.relpath(k.path, k.music_dir).startswith(".."):
                if k.music_dir in self._music_dirs:  # a row stored under a path outside its folder
                    vanished.append(k.track_id)
        return stats, owner, moves, vanished

    def _publish_progress(self, path: str) -> None:
        data: dict[str, Any] = {"done": self._done, "total": self._total, "path": path_to_wire(path),
                                "running": self._running}  # fmt: skip
        if not self._running:
            data["counts"] = None if self._counts is None else self._counts.to_wire()
            data["error"] = self._error
        self._hub.publish("scan_progress", data)

    # ----------------------------------------------------------------- path questions
    def _music_dir_of(self, path: str) -> str | None:
        for music_dir in self._music_dirs:
            if path == music_dir or path.startswith(music_dir.rstrip("/") + "/"):
                return music_dir
        return None

    def _absolute(self, path: str) -> list[str]:
        if os.path.isabs(path):
            return [os.path.abspath(path)]
        return [os.path.abspath(os.path.join(d, path)) for d in self._music_dirs]

    async def resolve_track_path(self, wire_path: str) -> Track:
        """The library track for a client path (in wire form, see ``protocol/paths.py``).

        The path (``..`` resolved textually) must lie under a music folder. A track the
        library found there (also through a symlink that leads outside) is answered as it is;
        another path to the same real file (a symlink loop, a second link) answers that same
        track, so aliases never make second rows. A file no scan has seen yet is probed and
        added when its real path lies inside a music folder, under its symlink-free library
        path; whether it is audio is decided by its content.

        Raises:
            RpcError: ``outside_music_dirs`` when the path escapes the music folders,
                ``not_found`` when no such file exists there, ``bad_audio`` when the file is
                not audio we decode (a sidecar, a text file) or is damaged; the message says which.
        """
        path = path_from_wire(wire_path)
        candidates = [c for c in self._absolute(path) if self._music_dir_of(c) is not None]
        if not candidates:
            raise RpcError(OUTSIDE_MUSIC_DIRS, f"{wire_path}: outside the music folders")
        for candidate in candidates:
            track = await self._db.get_track_by_path(candidate)
            if track is not None and track.music_dir in self._music_dirs:
                return track
        inside_real = False  # some candidate's real path lies in a music folder
        for candidate in candidates:
            real, inside, found = await trio.to_thread.run_sync(self._unseen_file, candidate)
            track = await self._db.get_track_by_real_path(real, self._music_dirs)
            if track is not None:
                return track
            inside_real = inside_real or inside
            if found is None:
                continue
            if real.endswith(SIDECAR_SUFFIX):
                raise RpcError(BAD_AUDIO, f"{wire_path}: a fingerprint sidecar ({SIDECAR_SUFFIX}), not audio")
            try:
                track_file = await trio.to_thread.run_sync(read_track_file, found)
            except AudioNotFoundError:
                continue  # vanished meanwhile
            except UnsupportedAudioError as exc:
                raise RpcError(BAD_AUDIO, f"{wire_path}: not audio in a format Auralis decodes ({exc.reason})") from None
            except AudioError as exc:
                raise RpcError(BAD_AUDIO, f"{wire_path}: damaged audio ({exc.reason})") from None
            self._files_probed += 1
            await self._db.upsert_tracks([track_file])
            track = await self._db.get_track_by_path(found.path)
            if track is not None:
                return track
        if not inside_real:
            raise RpcError(OUTSIDE_MUSIC_DIRS, f"{wire_path}: outside the music folders")
        raise RpcError(NOT_FOUND, f"{wire_path}: no such file in the music folders")

    def _unseen_file(self, candidate: str) -> tuple[str, bool, FoundFile | None]:
        """``(real path, inside a music folder, the file to add)`` for a path no track has (blocking).

        A file inside a music folder that no scan has seen yet is added under its symlink-free
        path (the path the next scan reaches it by first); None when there is no such file.
        """
        real = os.path.realpath(candidate)
        for music_dir in self._music_dirs:
            real_dir = os.path.realpath(music_dir)
            if not real.startswith(real_dir.rstrip("/") + "/"):
                continue
            try:
                st = os.stat(real)
            except OSError:
                return real, True, None
            if not stat.S_ISREG(st.st_mode):
                return real, True, None
            library_path = os.path.join(music_dir, os.path.relpath(real, real_dir))
            rel_dir = os.path.relpath(os.path.dirname(library_path), music_dir)
            found = FoundFile(library_path, music_dir, "" if rel_dir == "." else rel_dir, st.st_size, st.st_mtime_ns,
                              real)  # fmt: skip
            return real, True, found
        return real, False, None

    async def resolve_paths(self, wire_paths: Sequence[str]) -> list[Track]:
        """Tracks for files and folders given in wire form (a folder adds every library track under
        it: folder by folder, each in album order, see ``Database.tracks_under``)."""
        out: list[Track] = []
        for wire_path in wire_paths:
            # File-system calls run on a thread: a stalled network mount must not freeze the
            # event loop (the audio clock of every listener).
            folder = await trio.to_thread.run_sync(self._folder, path_from_wire(wire_path))
            if folder is not None:
                music_dir, rel = folder
                tracks = await self._db.tracks_under(music_dir, rel, recursive=True)
                alias = (
                    None if tracks
                    else await trio.to_thread.run_sync(self._canonical_folder, os.path.join(music_dir, rel))
                )
                if alias is not None:  # a folder reached through a symlink loop or a second link
                    tracks = await self._db.tracks_under(*alias, recursive=True)
                out += tracks
            else:
                out.append(await self.resolve_track_path(wire_path))
        return out

    def _folder(self, path: str) -> tuple[str, str] | None:
        """``(music_dir, rel_dir)`` when ``path`` names a folder textually inside a music folder."""
        for candidate in self._absolute(path):
            music_dir = self._music_dir_of(candidate)
            if music_dir is not None and os.path.isdir(candidate):
                rel = os.path.relpath(candidate, music_dir)
                return music_dir, "" if rel == "." else rel
        return None

    def _canonical_folder(self, folder: str) -> tuple[str, str] | None:
        """``(music_dir, rel_dir)`` of the symlink-free path of ``folder``, when it has one."""
        real = os.path.realpath(folder)
        for music_dir in self._music_dirs:
            real_dir = os.path.realpath(music_dir)
            if real == real_dir or real.startswith(real_dir.rstrip("/") + "/"):
                rel = os.path.relpath(real, real_dir)
                return music_dir, "" if rel == "." else rel
        return None

    async def list_dir(self, wire_path: str | None) -> dict[str, Any]:
        """``{dirs, tracks}`` of a library folder (dirs as absolute paths; every path in wire form;
        tracks in album order: disc, track number, name)."""
        if not wire_path:
            if len(self._music_dirs) != 1:
                return {"dirs": [path_to_wire(d) for d in self._music_dirs], "tracks": []}
            wire_path = path_to_wire(self._music_dirs[0])
        path = path_from_wire(wire_path)
        folder = await trio.to_thread.run_sync(self._folder, path)
        if folder is None:
            candidates = self._absolute(path)
            if any(self._music_dir_of(c) for c in candidates):
                raise RpcError(NOT_FOUND, f"{wire_path}: no such folder in the library")
            raise RpcError(OUTSIDE_MUSIC_DIRS, f"{wire_path}: outside the music folders")
        music_dir, rel = folder
        dirs = await self._db.subdirs(music_dir, rel)
        tracks = await self._db.tracks_under(music_dir, rel, recursive=False)
        return {
            "dirs": [path_to_wire(os.path.join(music_dir, d)) for d in dirs],
            "tracks": [t.to_wire() for t in tracks],
        }

    async def rejected(self) -> list[dict[str, Any]]:
        """Every file a scan could not use, with its kind and reason (paths in wire form)."""
        return [r.to_wire() for r in await self._db.rejected_list()]
