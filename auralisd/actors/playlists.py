"""Stored playlists: named lists of tracks kept as ``.m3u8`` files in the daemon's state folder.

One :class:`PlaylistStore` owns the folder (``<state_dir>/playlists``, mode 0700). Every
operation runs under one lock, its file work on a thread, so two clients editing the same
playlist never interleave, and the trio loop never waits for a disk.

Files are extended M3U in UTF-8 (``#EXTM3U``, an ``#EXTINF:seconds,Artist - Title`` line
before each entry it knows, then the path). Paths are absolute and written in the wire
escaping of ``protocol/paths.py``, so a file name that is not UTF-8 survives the round trip.
A playlist written by another program is read as it is: lines starting with ``#`` are
comments, any other line is an entry, raw bytes that are not UTF-8 stay those bytes.

Nothing the user saved is lost: every write goes to a temporary file in the same folder,
is flushed to disk (``fsync``), then renamed over the playlist, and the folder is synced; a
crash leaves the old playlist or the new one, never half of one. An entry whose file left
the library stays in the playlist (MPD does the same): ``load`` skips it, listings show it.

Names are what a user types: not empty, at most :data:`MAX_NAME_BYTES` bytes of UTF-8, no
``/``, NUL or line break, not starting with ``.`` (hidden files, and the temporary files
of this store).
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, TypeVar

import trio

from ..errors import EXISTS, INVALID_PARAMS, NOT_FOUND, RpcError
from ..protocol.paths import path_from_wire, path_to_wire, text_to_wire
from .database import Track
from .events import EventHub

log = logging.getLogger("auralisd.playlists")

T = TypeVar("T")

PLAYLISTS_FOLDER: Final = "playlists"  # inside the state folder
SUFFIX: Final = ".m3u8"
HEADER: Final = "#EXTM3U"
MAX_NAME_BYTES: Final = 200  # NAME_MAX (255) minus the suffix and the temporary file's decoration
MAX_ENTRIES: Final = 65_536  # per playlist (a 10,000-track queue saves with room to spare)
MAX_FILE_BYTES: Final = 32 << 20  # a larger file is not read (65,536 entries of 4 KiB paths would be 256 MiB)
SAVE_MODES: Final = ("create", "append", "replace")  # MPD 0.24's save modes
FOLDER_MODE: Final = 0o700
FILE_MODE: Final = 0o600


@dataclass(frozen=True)
class PlaylistEntry:
    """One line of a playlist: an OS path (``os.fsdecode`` form) and its ``#EXTINF`` text, if any."""

    path: str
    extinf: str | None = None

    @classmethod
    def of_track(cls, track: Track) -> PlaylistEntry:
        label = " - ".join(v for v in (track.artist, track.title) if v) or None
        seconds = int(round(track.duration_s))
        extinf = f"{seconds},{label}" if label else f"{seconds},"
        return cls(track.path, " ".join(text_to_wire(extinf).splitlines()))


@dataclass(frozen=True)
class PlaylistInfo:
    name: str
    modified_s: float  # Unix time of the last change

    def to_wire(self) -> dict[str, object]:
        return {"name": self.name, "modified_s": self.modified_s}


def check_name(name: str) -> str:
    """``name`` when it can name a playlist; else ``RpcError(invalid_params)`` saying why."""
    problem = None
    if not name:
        problem = "is empty"
    elif "/" in name or "\x00" in name or "\n" in name or "\r" in name:
        problem = "holds '/', NUL or a line break"
    elif name.startswith("."):
        problem = "starts with '.'"
    elif any("\udc80" <= c <= "\udcff" for c in name):
        problem = "is not valid UTF-8"
    elif len(name.encode("utf-8")) > MAX_NAME_BYTES:
        problem = f"is longer than {MAX_NAME_BYTES} bytes"
    if problem is not None:
        raise RpcError(INVALID_PARAMS, f"playlist name {text_to_wire(name[:64])!r} {problem}")
    return name


def format_playlist(entries: Sequence[PlaylistEntry]) -> bytes:
    """The file's bytes: ``#EXTM3U``, then for each entry its ``#EXTINF`` line (when known) and its path."""
    lines = [HEADER]
    for entry in entries:
        if entry.extinf:
            lines.append("#EXTINF:" + entry.extinf)
        lines.append(path_to_wire(entry.path))
    return ("\n".join(lines) + "\n").encode("utf-8")


def parse_playlist(data: bytes) -> list[PlaylistEntry]:
    """The entries of an (extended) M3U file; raw bytes that are not UTF-8 stay those bytes in the path."""
    text = data.decode("utf-8", "surrogateescape")
    entries = []
    extinf: str | None = None
    for raw in text.splitlines():
        line = raw.strip("\r\ufeff")
        if not line.strip():
            continue
        if line.startswith("#"):
            if line.startswith("#EXTINF:"):
                extinf = line[len("#EXTINF:") :]
            continue
        entries.append(PlaylistEntry(path_from_wire(line), extinf))
        extinf = None
    return entries


class PlaylistStore:
    """Owner of the playlists folder. Start with ``await nursery.start(store.run)``."""

    def __init__(self, folder: str, hub: EventHub) -> None:
        self.folder = folder
        self._hub = hub
        self._lock = trio.Lock()
        self._ready = False

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        await trio.to_thread.run_sync(lambda: os.makedirs(self.folder, mode=FOLDER_MODE, exist_ok=True))
        await trio.to_thread.run_sync(self._remove_leftovers)
        self._ready = True
        task_status.started()
        await trio.sleep_forever()

    # ----------------------------------------------------------------- reading
    async def list_all(self) -> list[PlaylistInfo]:
        """Every playlist, by name."""
        return await self._locked(self._list_sync)

    async def entries(self, name: str) -> list[PlaylistEntry]:
        """The entries of playlist ``name`` (``not_found`` when there is none)."""
        check_name(name)
        return await self._locked(lambda: self._read(name))

    # ----------------------------------------------------------------- writing
    async def save(self, name: str, entries: Sequence[PlaylistEntry], mode: str = "create") -> int:
        """Write ``entries`` as playlist ``name``; returns its length.

        ``mode``: ``create`` (``exists`` when there is one already), ``replace`` (create or
        overwrite) or ``append`` (create, or add at the end).
        """
        check_name(name)
        if mode not in SAVE_MODES:
            raise RpcError(INVALID_PARAMS, f"save mode must be one of {', '.join(SAVE_MODES)}")

        def job() -> int:
            exists = os.path.exists(self._file(name))
            if mode == "create" and exists:
                raise RpcError(EXISTS, f"playlist {name!r} already exists")
            old = self._read(name) if mode == "append" and exists else []
            return self._write(name, [*old, *entries])

        length = await self._locked(job)
        self._publish(name, "saved")
        return length

    async def add(self, name: str, entries: Sequence[PlaylistEntry], pos: int | None = None) -> int:
        """Insert ``entries`` at ``pos`` (default: the end) of playlist ``name``, creating it; returns its length."""
        check_name(name)

        def job() -> int:
            old = self._read(name) if os.path.exists(self._file(name)) else []
            at = len(old) if pos is None else pos
            if at > len(old):
                raise RpcError(NOT_FOUND, f"playlist {name!r} has no position {at}")
            return self._write(name, [*old[:at], *entries, *old[at:]])

        length = await self._locked(job)
        self._publish(name, "modified")
        return length

    async def clear(self, name: str) -> None:
        """Empty playlist ``name`` (creating it empty, as MPD does)."""
        check_name(name)
        await self._locked(lambda: self._write(name, []))
        self._publish(name, "modified")

    async def delete(self, name: str, positions: Sequence[int]) -> int:
        """Remove the entries at ``positions``; returns the new length."""
        check_name(name)

        def job() -> int:
            old = self._read(name)
            gone = set(positions)
            bad = [p for p in gone if p >= len(old)]
            if bad:
                raise RpcError(NOT_FOUND, f"playlist {name!r} has no position {min(bad)}")
            return self._write(name, [e for i, e in enumerate(old) if i not in gone])

        length = await self._locked(job)
        self._publish(name, "modified")
        return length

    async def move(self, name: str, from_pos: int, to_pos: int) -> None:
        """Move the entry at ``from_pos`` to ``to_pos``."""
        check_name(name)

        def job() -> None:
            entries = self._read(name)
            for p in (from_pos, to_pos):
                if p >= len(entries):
                    raise RpcError(NOT_FOUND, f"playlist {name!r} has no position {p}")
            entries.insert(to_pos, entries.pop(from_pos))
            self._write(name, entries)

        await self._locked(job)
        self._publish(name, "modified")

    async def rename(self, name: str, new_name: str) -> None:
        """Rename a playlist (``exists`` when ``new_name`` is taken)."""
        check_name(name)
        check_name(new_name)

        def job() -> None:
            if not os.path.exists(self._file(name)):
                raise RpcError(NOT_FOUND, f"no playlist {name!r}")
            if os.path.exists(self._file(new_name)):
                raise RpcError(EXISTS, f"playlist {new_name!r} already exists")
            os.rename(self._file(name), self._file(new_name))
            self._sync_folder()

        await self._locked(job)
        self._hub.publish("stored_playlist", {"name": name, "change": "renamed", "new_name": new_name})

    async def remove(self, name: str) -> None:
        """Delete playlist ``name``."""
        check_name(name)

        def job() -> None:
            try:
                os.unlink(self._file(name))
            except FileNotFoundError:
                raise RpcError(NOT_FOUND, f"no playlist {name!r}") from None
            self._sync_folder()

        await self._locked(job)
        self._publish(name, "deleted")

    # ----------------------------------------------------------------- inside (on the worker thread)
    async def _locked(self, job: Callable[[], T]) -> T:
        if not self._ready:
            raise RuntimeError("the playlist store is not running")
        async with self._lock:
            return await trio.to_thread.run_sync(job)

    def _file(self, name: str) -> str:
        return os.path.join(self.folder, name + SUFFIX)

    def _list_sync(self) -> list[PlaylistInfo]:
        out = []
        with os.scandir(self.folder) as it:
            for entry in it:
                if not entry.name.endswith(SUFFIX) or entry.name.startswith("."):
                    continue
                name = entry.name[: -len(SUFFIX)]
                try:
                    check_name(name)
                    st = entry.stat()
                except (RpcError, OSError):
                    continue  # a name no client could ask for again, or a file that just went
                out.append(PlaylistInfo(name, st.st_mtime))
        return sorted(out, key=lambda p: p.name)

    def _read(self, name: str) -> list[PlaylistEntry]:
        try:
            with open(self._file(name), "rb") as f:
                data = f.read(MAX_FILE_BYTES + 1)
        except FileNotFoundError:
            raise RpcError(NOT_FOUND, f"no playlist {name!r}") from None
        if len(data) > MAX_FILE_BYTES:
            raise RpcError(INVALID_PARAMS, f"playlist {name!r} is larger than {MAX_FILE_BYTES >> 20} MiB")
        return parse_playlist(data)

    def _write(self, name: str, entries: Sequence[PlaylistEntry]) -> int:
        """Replace the file atomically: temporary file, fsync, rename, fsync of the folder."""
        if len(entries) > MAX_ENTRIES:
            raise RpcError(INVALID_PARAMS, f"a playlist holds at most {MAX_ENTRIES} entries")
        data = format_playlist(entries)
        tmp = os.path.join(self.folder, f".{name}{SUFFIX}.{secrets.token_hex(4)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self._file(name))
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        self._sync_folder()
        return len(entries)

    def _sync_folder(self) -> None:
        fd = os.open(self.folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _remove_leftovers(self) -> None:
        """Temporary files of writes a crash interrupted (the playlist itself is intact)."""
        for entry in os.scandir(self.folder):
            if entry.name.startswith(".") and entry.name.endswith(".tmp"):
                try:
                    os.unlink(entry.path)
                    log.info("removed %s, left by an interrupted write", text_to_wire(entry.path))
                except OSError:
                    pass

    def _publish(self, name: str, change: str) -> None:
        self._hub.publish("stored_playlist", {"name": name, "change": change})
