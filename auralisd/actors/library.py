"""The library actor: scans the music folders into the database and answers path questions.

A scan walks every music folder recursively (following symlinks, each real directory
visited once, so symlink loops end), skips hidden entries and files whose extension is not
audio, and compares each file's size and mtime with the database: only new or changed
files are opened (header probe plus mutagen tags), vanished ones are removed. A rescan of
an unchanged library therefore reads no audio at all (``statistics().files_probed`` stays
put). Progress goes out as ``scan_progress`` events.

Paths from clients are checked here: a path is accepted when it is a track the library
found (even through a symlink that leads outside the music folders), or when it resolves,
symlinks and ``..`` included, to a file inside a music folder.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import trio

from auralis.audio import is_audio_path, probe
from auralis.errors import AudioError

from ..protocol.errors import NOT_FOUND, OUTSIDE_MUSIC_DIRS, RpcError
from .database import Database, Track, TrackFile
from .events import EventHub

log = logging.getLogger("auralisd.library")

PROBE_THREADS: Final = 2  # files probed at once during a scan
UPSERT_BATCH: Final = 200  # files per database transaction
PROGRESS_INTERVAL_S: Final = 0.1  # at most ten scan_progress events per second


@dataclass(frozen=True)
class LibraryStatistics:
    running: bool
    done: int
    total: int
    files_probed: int  # audio files opened by scans since start (0 growth on an unchanged rescan)
    scans: int
    tracks: int


@dataclass(frozen=True)
class FoundFile:
    path: str
    music_dir: str
    rel_dir: str
    size: int
    mtime_ns: int


def walk_music_dir(music_dir: str) -> list[FoundFile]:
    """Every audio file under ``music_dir`` (blocking; run on a thread).

    Follows symlinks; a real directory reached twice (a loop, or two links to one folder)
    is walked once. Hidden files and folders (leading ``.``) are skipped.
    """
    found: list[FoundFile] = []
    seen_dirs: set[tuple[int, int]] = set()
    stack = [""]
    while stack:
        rel = stack.pop()
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
            log.warning("cannot list %s: %s", folder, exc.strerror)
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            child_rel = f"{rel}/{entry.name}" if rel else entry.name
            try:
                est = entry.stat(follow_symlinks=True)
            except OSError:
                continue  # dangling symlink or vanished
            if stat.S_ISDIR(est.st_mode):
                stack.append(child_rel)
            elif stat.S_ISREG(est.st_mode) and is_audio_path(entry.name) and est.st_size > 0:
                found.append(FoundFile(entry.path, music_dir, rel, est.st_size, est.st_mtime_ns))
    return found


def read_track_file(found: FoundFile) -> TrackFile:
    """Probe the header and read the tags (blocking). Raises AudioError for unusable files."""
    info = probe(found.path)
    tags = _read_tags(found.path)
    return TrackFile(
        path=found.path,
        music_dir=found.music_dir,
        rel_dir=found.rel_dir,
        size=found.size,
        mtime_ns=found.mtime_ns,
        title=tags.get("title"),
        artist=tags.get("artist"),
        album=tags.get("album"),
        track_number=_track_number(tags.get("tracknumber")),
        duration_s=info.duration_s,
        num_frames=info.num_frames,
        sample_rate=info.sample_rate,
        channels=info.channels,
        format=info.format,
    )


def _read_tags(path: str) -> dict[str, str]:
    import mutagen

    try:
        meta = mutagen.File(path, easy=True)
    except Exception:  # mutagen raises many kinds on odd files; tags are optional
        return {}
    if meta is None or meta.tags is None:
        return {}
    out = {}
    for key in ("title", "artist", "album", "tracknumber"):
        try:
            value = meta.tags.get(key)
        except Exception:
            value = None
        if value:
            out[key] = str(value[0] if isinstance(value, list) else value)
    return out


def _track_number(text: str | None) -> int | None:
    if not text:
        return None
    head = text.split("/", 1)[0].strip()
    return int(head) if head.isdigit() else None


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
        self._scan_finished: trio.Event = trio.Event()
        self._scan_finished.set()
        self.on_scan_complete: list = []  # callables run (sync) after each scan

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
            self._running, self._done, self._total, self._files_probed, self._scans, self._tracks
        )

    def scan(self) -> bool:
        """Start a scan in the background; False when one is already running."""
        if self._running or self._nursery is None:
            return False
        self._running = True
        self._scan_finished = trio.Event()
        self._nursery.start_soon(self._scan)
        return True

    async def wait_scan(self) -> None:
        """Wait until no scan is running."""
        await self._scan_finished.wait()

    async def _scan(self) -> None:
        started = time.monotonic()
        try:
            await self._scan_inner()
        except Exception:
            log.exception("library scan failed")
            self._hub.publish("error", {"code": "internal", "message": "library scan failed; see the daemon log"})
        finally:
            self._running = False
            self._scans += 1
            self._scan_finished.set()
        log.info(
            "scan finished: %d tracks, %d files probed, %.2f s", self._tracks, self._files_probed, time.monotonic() - started
        )
        for callback in self.on_scan_complete:
            callback()

    async def _scan_inner(self) -> None:
        found: list[FoundFile] = []
        for music_dir in self._music_dirs:
            if not os.path.isdir(music_dir):
                log.warning("music folder %s does not exist", music_dir)
                continue
            found += await trio.to_thread.run_sync(walk_music_dir, music_dir)
        known = await self._db.track_stats()
        seen_paths = {f.path for f in found}
        changed = [f for f in found if known.get(f.path, (None, None, None))[1:] != (f.size, f.mtime_ns)]
        vanished = [tid for path, (tid, _, _) in known.items() if path not in seen_paths]
        if vanished:
            await self._db.delete_tracks(vanished)
            log.info("%d tracks vanished", len(vanished))
        self._total = len(found)
        self._done = len(found) - len(changed)
        self._publish_progress("", force=True)
        limiter = trio.CapacityLimiter(PROBE_THREADS)
        batch: list[TrackFile] = []
        last_event = 0.0

        async def read_one(item: FoundFile) -> None:
            nonlocal last_event
            try:
                track_file = await trio.to_thread.run_sync(read_track_file, item, limiter=limiter)
            except AudioError as exc:
                log.warning("skipping %s", exc)
                track_file = None
            self._files_probed += 1
            self._done += 1
            if track_file is not None:
                batch.append(track_file)
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
        self._tracks = await self._db.count_tracks()
        self._publish_progress("", force=True)

    def _publish_progress(self, path: str, *, force: bool = False) -> None:
        self._hub.publish("scan_progress", {"done": self._done, "total": self._total, "path": path, "running": self._running})

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

    async def resolve_track_path(self, path: str) -> Track:
        """The library track for a client path.

        Raises:
            RpcError: ``outside_music_dirs`` when the path escapes the music folders,
                ``not_found`` when it is not an audio file there.
        """
        candidates = self._absolute(path)
        for candidate in candidates:
            track = await self._db.get_track_by_path(candidate)
            if track is not None:
                return track
        real_dirs = [os.path.realpath(d) for d in self._music_dirs]
        for candidate in candidates:
            real = os.path.realpath(candidate)
            inside = any(real.startswith(d.rstrip("/") + "/") for d in real_dirs)
            if not inside:
                continue
            if not os.path.isfile(real) or not is_audio_path(real):
                continue
            # A file inside a music folder that no scan has seen yet: add it now.
            music_dir = self._music_dir_of(candidate) or next(
                d for d, r in zip(self._music_dirs, real_dirs) if real.startswith(r.rstrip("/") + "/")
            )
            rel_dir = os.path.relpath(os.path.dirname(candidate), music_dir)
            st = os.stat(candidate)
            found = FoundFile(candidate, music_dir, "" if rel_dir == "." else rel_dir, st.st_size, st.st_mtime_ns)
            try:
                track_file = await trio.to_thread.run_sync(read_track_file, found)
            except AudioError as exc:
                raise RpcError("bad_audio", str(exc)) from None
            self._files_probed += 1
            await self._db.upsert_tracks([track_file])
            track = await self._db.get_track_by_path(candidate)
            if track is not None:
                return track
        if not any(self._inside_real(c, real_dirs) for c in candidates):
            raise RpcError(OUTSIDE_MUSIC_DIRS, f"{path}: outside the music folders")
        raise RpcError(NOT_FOUND, f"{path}: no such audio file in the library")

    @staticmethod
    def _inside_real(candidate: str, real_dirs: list[str]) -> bool:
        real = os.path.realpath(candidate)
        return any(real == d or real.startswith(d.rstrip("/") + "/") for d in real_dirs)

    async def resolve_paths(self, paths: Sequence[str]) -> list[Track]:
        """Tracks for files and folders (a folder adds every library track under it, in path order)."""
        out: list[Track] = []
        for path in paths:
            folder = self._folder(path)
            if folder is not None:
                music_dir, rel = folder
                out += await self._db.tracks_under(music_dir, rel, recursive=True)
            else:
                out.append(await self.resolve_track_path(path))
        return out

    def _folder(self, path: str) -> tuple[str, str] | None:
        """``(music_dir, rel_dir)`` when ``path`` names a folder textually inside a music folder."""
        for candidate in self._absolute(path):
            music_dir = self._music_dir_of(candidate)
            if music_dir is not None and os.path.isdir(candidate):
                rel = os.path.relpath(candidate, music_dir)
                return music_dir, "" if rel == "." else rel
        return None

    async def list_dir(self, path: str | None) -> dict[str, Any]:
        """``{dirs, tracks}`` of a library folder (dirs as absolute paths)."""
        if not path:
            if len(self._music_dirs) != 1:
                return {"dirs": list(self._music_dirs), "tracks": []}
            path = self._music_dirs[0]
        folder = self._folder(path)
        if folder is None:
            candidates = self._absolute(path)
            if any(self._music_dir_of(c) for c in candidates):
                raise RpcError(NOT_FOUND, f"{path}: no such folder in the library")
            raise RpcError(OUTSIDE_MUSIC_DIRS, f"{path}: outside the music folders")
        music_dir, rel = folder
        dirs = await self._db.subdirs(music_dir, rel)
        tracks = await self._db.tracks_under(music_dir, rel, recursive=False)
        return {
            "dirs": [os.path.join(music_dir, d) for d in dirs],
            "tracks": [t.to_wire() for t in tracks],
        }
