"""MPD's database commands: lsinfo, listall(info), list, find, search, findadd, searchadd, count,
update, rescan, albumart, readpicture.

Filters are parsed by ``protocol/mpd/filters.py`` into a query the database actor runs in SQL
(``actors/tagquery.py``); this module only turns results into MPD's response lines. A
malformed filter is ``ACK [2@i]`` with the parser's message, an unknown folder or song
``ACK [50@i]``.

URIs are paths relative to the music folder (``server.SongUris``); with several music folders
each folder's name leads its URIs, and ``file``/``base``/``any`` filters match those URIs (the
database compiles them with ``SongUris.roots``), as MPD does for one music directory holding the
folders.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Final

import trio

from ...actors.database import Track
from ...errors import NOT_FOUND, OUTSIDE_MUSIC_DIRS, RpcError
from ...protocol.mpd import Ack, AckError, binary_chunk, format_pairs
from ...protocol.mpd.filters import TAG_DISPLAY, FilterArgs, FilterError, parse_filter_args, tag_of
from ...protocol.paths import path_from_wire, path_to_line, path_to_wire
from ...protocol.query import And, Base, Query, QueryError
from .queue import _insert_position
from .songs import TAG_TYPES, canonical_tag, last_modified, song_pairs
from .table import ARG_KINDS, Permission, mpd_command

if TYPE_CHECKING:
    from .session import MpdSession

Pairs = list[tuple[str, object]]
ADD: Final = Permission.ADD
ADMIN: Final = Permission.ADMIN


def _filter(args: Sequence[str], *, fold_case: bool, options: tuple[str, ...] = (), empty_ok: bool = False) -> FilterArgs:
    try:
        return parse_filter_args(list(args), fold_case=fold_case, options=options, empty_ok=empty_ok)
    except QueryError as exc:
        raise AckError(Ack.ARG, str(exc)) from None


async def _query(session: MpdSession, query: Query | None) -> list[Track]:
    await _check_bases(session, query)
    try:
        tracks, _ = await session.svc.db.find_tracks(query, uri_roots=session.server.uris.roots)
    except QueryError as exc:  # a regular expression that does not compile
        raise AckError(Ack.ARG, str(exc)) from None
    return tracks


async def _check_bases(session: MpdSession, query: Query | None) -> None:
    """MPD refuses a ``base`` that names no folder (``ACK [50] No such directory``)."""
    if isinstance(query, Base) and query.path.strip("/") and await _folder(session, query.path) is None:
        raise AckError(Ack.NO_EXIST, "No such directory")
    if isinstance(query, And):
        for part in query.parts:
            await _check_bases(session, part)


def _sorted(tracks: list[Track], sort: str | None, window: tuple[int, int] | None) -> list[Track]:
    if sort is not None:
        descending = sort.startswith("-")
        name = sort[1:] if descending else sort
        if name.lower() == "last-modified":
            tracks = sorted(tracks, key=lambda t: t.mtime_ns, reverse=descending)
        else:
            tag = tag_of(name) or ""
            tracks = sorted(tracks, key=lambda t: _sort_key(t, tag), reverse=descending)
    if window is not None:
        start, end = window
        tracks = tracks[start : None if end == -1 else end]
    return tracks


def _sort_key(track: Track, tag: str) -> tuple[bool, Any]:
    value = tag_value(track, tag)
    if tag in ("track", "disc"):
        return value is None, int(value) if value is not None and value.isdigit() else 0
    return value is None, value or ""


def tag_value(track: Track, tag: str) -> str | None:
    """A track's value of one of our tags (protocol/query.py) as text; None when it has none."""
    value: object = {
        "artist": track.artist, "albumartist": track.album_artist or track.artist, "album": track.album,
        "title": track.title, "track": track.track_number, "disc": track.disc_number, "genre": track.genre,
        "date": track.date, "composer": track.composer, "performer": track.performer, "comment": track.comment,
        "musicbrainz_albumid": track.mb_album_id,
    }.get(tag)  # fmt: skip
    return None if value is None or value == "" else str(value)


def _songs(session: MpdSession, tracks: Iterable[Track]) -> Pairs:
    uris = session.server.uris
    out: Pairs = []
    for track in tracks:
        out += song_pairs(track, uris.uri(track.path), session.tagtypes)
    return out


# ----------------------------------------------------------------- folders
def _inside(music_dirs: tuple[str, ...], path: str | None) -> tuple[str, str] | None:
    """``(music_dir, rel)`` when ``path`` lies in a music folder (text only, no I/O)."""
    if path is None:
        return None
    for music_dir in music_dirs:
        if path == music_dir or path.startswith(music_dir.rstrip("/") + "/"):
            return music_dir, path[len(music_dir) :].strip("/")
    return None


async def _folder(session: MpdSession, uri: str) -> tuple[str, str] | None:
    """``(music_dir, rel_dir)`` of a library folder URI (``""``: the top); None when it is no folder."""
    uris = session.server.uris
    if not uri.strip("/") and len(uris.music_dirs) == 1:
        return uris.music_dirs[0], ""
    wire = uris.path(uri)
    if wire is None:  # several music folders: the top, or a first name that is none of theirs
        return None
    path = path_from_wire(wire)
    for music_dir in uris.music_dirs:
        if path == music_dir or path.startswith(music_dir.rstrip("/") + "/"):
            is_dir = await trio.to_thread.run_sync(os.path.isdir, path)
            if is_dir:
                return music_dir, path[len(music_dir) :].strip("/")
    return None


async def song_of(session: MpdSession, uri: str) -> Track:
    path = session.server.uris.path(uri)
    if path is None:
        raise AckError(Ack.NO_EXIST, "No such song")
    try:
        return await session.svc.library.resolve_track_path(path)
    except RpcError as exc:
        if exc.code in (NOT_FOUND, OUTSIDE_MUSIC_DIRS):
            raise AckError(Ack.NO_EXIST, "No such song") from None
        raise


def _dir_mtimes(dir_wire: str, names: list[str]) -> dict[str, str]:
    """``{name: Last-Modified}`` of folders (wire form) inside the music folder ``dir_wire`` (blocking)."""
    out = {}
    for name in names:
        try:
            out[name] = last_modified(os.stat(path_from_wire(dir_wire + "/" + name)).st_mtime_ns)
        except OSError:
            pass
    return out


async def _walk(session: MpdSession, uri: str, *, info: bool) -> Any:
    """``listall``/``listallinfo``: every folder and song under ``uri``, depth first in name order, each
    folder's songs before its subfolders (MPD's order). The song lines are made in SQL
    (``Database.track_blocks``): one string per song. With several music folders, the top is each
    of them in name order, each listed as a folder of the top."""
    uris = session.server.uris
    if uris.several and not uri.strip("/"):
        walks = [await _walk(session, uris.uri(music_dir), info=info) for music_dir in uris.by_name]
        return b"".join(w for w in walks if isinstance(w, bytes))
    wire = uris.path(uri)
    folder = _inside(uris.music_dirs, None if wire is None else path_from_wire(wire))
    lines = block_lines(session.tagtypes) if info else [("file", "uri")]
    rows = [] if folder is None else await session.svc.db.track_blocks(
        Base(path_to_wire(folder[1])) if folder[1] else None, lines
    )
    if not rows:  # no song below it: an empty folder, a song, or nothing (the file system says which)
        folder = await _folder(session, uri)
        if folder is None:
            track = await song_of(session, uri)
            return _songs(session, [track]) if info else [("file", uris.uri(track.path))]
    assert folder is not None
    music_dir, rel = folder
    dir_wire, rel_wire = path_to_wire(music_dir), path_to_wire(rel)
    by_dir: dict[str, list[str]] = {}
    for row_dir, row_rel, text in rows:
        if row_dir == dir_wire:
            by_dir.setdefault(row_rel, []).append(text)
    # every folder on the way, sorted component by component (so "A", "A/B", then "A B")
    top = rel_wire.split("/") if rel_wire else []
    folders: set[str] = set()
    for name in by_dir:
        parts = name.split("/") if name else []
        for i in range(max(1, len(top)), len(parts) + 1):
            folders.add("/".join(parts[:i]))
    mtimes = await trio.to_thread.run_sync(_dir_mtimes, dir_wire, sorted(folders)) if info else {}
    prefix = _uri_prefix(uris.music_dirs, music_dir)
    out: list[str] = []
    if info and prefix and not rel_wire:  # a music folder itself, as a folder of the top
        mtimes.update(await trio.to_thread.run_sync(_dir_mtimes, dir_wire, [""]))
    for name in sorted({rel_wire, *folders}, key=lambda f: f.split("/") if f else []):
        if name or prefix:
            out.append(f"directory: {prefix}{path_to_line(name)}\n" if name else f"directory: {prefix[:-1]}\n")
            if name in mtimes:
                out.append(f"Last-Modified: {mtimes[name]}\n")
        texts = by_dir.get(name, [])
        out += [t.replace("file: ", "file: " + prefix, 1) for t in texts] if prefix else texts
    return "".join(out).encode("utf-8", "surrogateescape")


def _uri_prefix(music_dirs: tuple[str, ...], music_dir: str) -> str:
    """What leads the URIs of ``music_dir``'s songs: nothing with one music folder, else its name (server.SongUris)."""
    return "" if len(music_dirs) == 1 else path_to_line(path_to_wire(os.path.basename(music_dir))) + "/"


# MPD tag name -> the field of tagquery.BLOCK_FIELDS that holds it
_BLOCK_TAG_FIELDS: Final = {
    "Artist": "artist", "Album": "album", "AlbumArtist": "albumartist", "Title": "title", "Track": "track",
    "Genre": "genre", "Date": "date", "Disc": "disc", "MUSICBRAINZ_ALBUMID": "musicbrainz_albumid",
    "Composer": "composer", "Performer": "performer", "Comment": "comment",
}  # fmt: skip


def block_lines(tagtypes: Iterable[str]) -> list[tuple[str, str]]:
    """The lines of a song block made in SQL: the same fields and order as ``songs.song_pairs``."""
    enabled = set(tagtypes)
    lines = [("file", "uri"), ("Last-Modified", "last_modified")]
    lines += [(tag, _BLOCK_TAG_FIELDS[tag]) for tag in TAG_TYPES if tag in enabled and tag in _BLOCK_TAG_FIELDS]
    return [*lines, ("Time", "time"), ("duration", "duration")]


async def _found_blocks(session: MpdSession, query: Query | None, window: tuple[int, int] | None) -> bytes:
    """find/search without ``sort``: the song blocks made in SQL, the window as LIMIT/OFFSET."""
    await _check_bases(session, query)
    limit = offset = None
    if window is not None:
        offset = window[0]
        limit = None if window[1] == -1 else max(0, window[1] - window[0])
    try:
        rows = await session.svc.db.track_blocks(
            query, block_lines(session.tagtypes), limit=limit, offset=offset or 0, uri_roots=session.server.uris.roots
        )
    except QueryError as exc:
        raise AckError(Ack.ARG, str(exc)) from None
    uris = session.server.uris
    texts = [
        t.replace("file: ", "file: " + _uri_prefix(uris.music_dirs, path_from_wire(d)), 1) if len(uris.music_dirs) > 1
        else t
        for d, _, t in rows
    ]  # fmt: skip
    return "".join(texts).encode("utf-8", "surrogateescape")


@mpd_command("lsinfo", "str?")
async def _lsinfo(session: MpdSession, uri: str | None) -> Any:
    uri = uri or ""
    uris = session.server.uris
    out: Pairs = []
    if not uri.strip("/") and uris.several:  # the music folders are the top's folders, in name order
        for music_dir in uris.by_name:
            out.append(("directory", uris.uri(music_dir)))
            mtime = await trio.to_thread.run_sync(_dir_mtimes, path_to_wire(music_dir), [""])
            if "" in mtime:
                out.append(("Last-Modified", mtime[""]))
    else:
        folder = await _folder(session, uri)
        if folder is None:
            try:
                track = await song_of(session, uri)
            except AckError:
                raise AckError(Ack.NO_EXIST, "No such directory") from None
            return _songs(session, [track])
        music_dir, rel = folder
        db = session.svc.db
        songs = sorted(await db.tracks_under(music_dir, rel, recursive=False), key=lambda t: t.path)
        out += _songs(session, songs)  # MPD: the folder's songs, then its folders
        subdirs = [path_to_wire(d) for d in await db.subdirs(music_dir, rel)]
        mtimes = await trio.to_thread.run_sync(_dir_mtimes, path_to_wire(music_dir), subdirs)
        for name in subdirs:
            out.append(("directory", uris.uri(os.path.join(music_dir, path_from_wire(name)))))
            if name in mtimes:
                out.append(("Last-Modified", mtimes[name]))
    if not uri.strip("/") and session.svc.playlists is not None:  # the top also lists stored playlists
        for info in await session.svc.playlists.list_all():
            out += [("playlist", info.name), ("Last-Modified", last_modified(int(info.modified_s * 1e9)))]
    return out


@mpd_command("listall", "str?")
async def _listall(session: MpdSession, uri: str | None) -> Any:
    return await _walk(session, uri or "", info=False)


@mpd_command("listallinfo", "str?")
async def _listallinfo(session: MpdSession, uri: str | None) -> Any:
    return await _walk(session, uri or "", info=True)


# ----------------------------------------------------------------- queries
@mpd_command("find", rest="str")
async def _find(session: MpdSession, args: tuple[str, ...]) -> Any:
    parsed = _filter(args, fold_case=False, options=("sort", "window"))
    if parsed.sort is None:
        return await _found_blocks(session, parsed.query, parsed.window)
    return _songs(session, _sorted(await _query(session, parsed.query), parsed.sort, parsed.window))


@mpd_command("search", rest="str")
async def _search(session: MpdSession, args: tuple[str, ...]) -> Any:
    parsed = _filter(args, fold_case=True, options=("sort", "window"))
    if parsed.sort is None:
        return await _found_blocks(session, parsed.query, parsed.window)
    return _songs(session, _sorted(await _query(session, parsed.query), parsed.sort, parsed.window))


async def _add_found(session: MpdSession, args: tuple[str, ...], *, fold_case: bool) -> None:
    parsed = _filter(args, fold_case=fold_case, options=("sort", "window", "position"))
    tracks = _sorted(await _query(session, parsed.query), parsed.sort, parsed.window)
    pos = await _insert_position(session, parsed.position)
    if tracks:
        await session.svc.player.add(tracks, pos)


@mpd_command("findadd", rest="str", permission=ADD)
async def _findadd(session: MpdSession, args: tuple[str, ...]) -> Any:
    await _add_found(session, args, fold_case=False)


@mpd_command("searchadd", rest="str", permission=ADD)
async def _searchadd(session: MpdSession, args: tuple[str, ...]) -> Any:
    await _add_found(session, args, fold_case=True)


@mpd_command("list", "str", rest="str")
async def _list(session: MpdSession, tag_name: str, args: tuple[str, ...]) -> Any:
    try:
        tag = tag_of(tag_name)
    except FilterError:
        raise AckError(Ack.ARG, f"Unknown tag type: {tag_name}") from None
    if tag == "any":
        raise AckError(Ack.ARG, f"Unknown tag type: {tag_name}")
    rest = list(args)
    if len(rest) == 1 and not rest[0].startswith("("):  # MPD's old "list album ARTIST"
        if tag != "album":
            raise AckError(Ack.ARG, "should be \"Album\" for 3 arguments")
        rest = ["artist", rest[0]]
    parsed = _filter(rest, fold_case=False, options=("group",), empty_ok=True)
    display = canonical_tag(tag_name) or TAG_DISPLAY.get(tag or "", tag_name)
    if tag is None:  # a tag MPD knows that the library does not store: every track lacks it
        return [(display, "")] if (await _query(session, parsed.query)) else []
    if tag == "file":  # every song's URI, in MPD's walk order (folder by folder, songs before subfolders)
        await _check_bases(session, parsed.query)
        try:
            uris = session.server.uris
            blocks = await session.svc.db.track_blocks(parsed.query, [("file", "uri")], uri_roots=uris.roots)
        except QueryError as exc:
            raise AckError(Ack.ARG, str(exc)) from None
        rank = {d: i for i, (d, _) in enumerate(uris.roots)}  # several music folders: by name
        # stable: names within a folder
        blocks = sorted(blocks, key=lambda r: (rank.get(r[0], -1), r[0], r[1].split("/") if r[1] else []))
        return "".join(
            t.replace("file: ", "file: " + _uri_prefix(uris.music_dirs, path_from_wire(d)), 1)
            if len(uris.music_dirs) > 1 else t
            for d, _, t in blocks
        ).encode("utf-8", "surrogateescape")
    await _check_bases(session, parsed.query)
    try:
        rows = await session.svc.db.tag_values(tag, parsed.groups, parsed.query, uri_roots=session.server.uris.roots)
    except QueryError as exc:
        raise AckError(Ack.ARG, str(exc)) from None
    names = [TAG_DISPLAY[g] for g in parsed.groups] + [display]
    out: Pairs = []
    last: list[str] | None = None
    for row in rows:
        values = ["" if v is None else v for v in row]  # MPD lists a missing tag as an empty value
        for i, group_value in enumerate(values[:-1]):
            if last is None or values[: i + 1] != last[: i + 1]:
                out.append((names[i], group_value))
        out.append((names[-1], values[-1]))
        last = values
    return _unique_empty(out)


def _unique_empty(pairs: Pairs) -> Pairs:
    """NULL and "" are one value for MPD: drop a repeated pair the merge produced."""
    out: Pairs = []
    for pair in pairs:
        if not out or pair != out[-1]:
            out.append(pair)
    return out





@mpd_command("count", rest="str")
async def _count(session: MpdSession, args: tuple[str, ...]) -> Any:
    parsed = _filter(args, fold_case=False, options=("group",), empty_ok=True)
    if len(parsed.groups) > 1:
        raise AckError(Ack.ARG, "Too many arguments")
    group = parsed.groups[0] if parsed.groups else None
    await _check_bases(session, parsed.query)
    try:
        rows = await session.svc.db.count_matches(parsed.query, group, uri_roots=session.server.uris.roots)
    except QueryError as exc:
        raise AckError(Ack.ARG, str(exc)) from None
    out: Pairs = []
    for value, songs, playtime_s in rows:
        if group is not None:
            out.append((TAG_DISPLAY[group], value or ""))
        out += [("songs", songs), ("playtime", int(playtime_s))]
    return out


# ----------------------------------------------------------------- update
async def _update(session: MpdSession, uri: str | None) -> Any:
    library = session.svc.library
    path = None
    if uri and uri.strip("/"):
        path = session.server.uris.path(uri)
        if path is None:
            raise AckError(Ack.ARG, "Malformed path")
    try:
        job, _started = await library.scan_folder(path)  # behind a running scan it waits, as in MPD
    except RpcError as exc:
        if exc.code in (NOT_FOUND, OUTSIDE_MUSIC_DIRS):
            raise AckError(Ack.ARG, "Malformed path") from None
        raise
    return [("updating_db", job)]


@mpd_command("update", "str?", permission=ADMIN)
async def _update_cmd(session: MpdSession, uri: str | None) -> Any:
    return await _update(session, uri)


@mpd_command("rescan", "str?", permission=ADMIN)
async def _rescan(session: MpdSession, uri: str | None) -> Any:
    return await _update(session, uri)


# ----------------------------------------------------------------- cover art
async def _picture(session: MpdSession, uri: str, offset_text: str, *, source: str) -> Any:
    offset = ARG_KINDS["uint"](offset_text)
    track = await song_of(session, uri)
    found = await session.svc.covers.cover(track, "folder" if source == "albumart" else "embedded")
    if found is None:
        if source == "readpicture":
            return []  # MPD: an empty answer when the song has no picture
        raise AckError(Ack.NO_EXIST, "No file exists")
    data, kind = found
    if offset > len(data):
        raise AckError(Ack.ARG, "Bad file offset")
    head: Pairs = [("size", len(data))]
    if source == "readpicture":
        head.append(("type", kind))
    return format_pairs(head) + binary_chunk(data[offset : offset + session.binary_limit])


@mpd_command("albumart", "str", "str")
async def _albumart(session: MpdSession, uri: str, offset: str) -> Any:
    return await _picture(session, uri, offset, source="albumart")


@mpd_command("readpicture", "str", "str")
async def _readpicture(session: MpdSession, uri: str, offset: str) -> Any:
    return await _picture(session, uri, offset, source="readpicture")


COMMANDS: Final = (
    _lsinfo, _listall, _listallinfo, _find, _search, _findadd, _searchadd, _list, _count, _update_cmd, _rescan,
    _albumart, _readpicture,
)  # fmt: skip
