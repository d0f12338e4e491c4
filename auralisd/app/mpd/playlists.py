"""MPD's stored-playlist commands over the daemon's playlist store (``actors/playlists.py``):
save, load, listplaylists, listplaylist, listplaylistinfo, playlistadd, playlistclear,
playlistdelete, playlistmove, rename, rm.

The playlists are the same ``.m3u8`` files ``auralisctl`` and the msgpack protocol see. Errors
as MPD words them: a missing playlist ``ACK [50@i] No such playlist``, a taken name ``ACK
[56@i] Playlist already exists``, a bad position ``ACK [2@i] Bad song index``.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, Final, TypeVar

from ...actors.playlists import SAVE_MODES, PlaylistEntry, PlaylistStore
from ...errors import EXISTS, INVALID_PARAMS, NOT_FOUND, RpcError
from ...protocol.mpd import Ack, AckError
from ...protocol.paths import path_from_wire
from ..commands import Services, tracks_of_entries
from .database import song_of
from .queue import _insert_position, resolve_uri
from .songs import last_modified, song_pairs
from .table import ARG_KINDS, Permission, mpd_command

if TYPE_CHECKING:
    from .session import MpdSession

T = TypeVar("T")
CONTROL: Final = Permission.CONTROL
ADD: Final = Permission.ADD


def _store(session: MpdSession) -> PlaylistStore:
    if session.svc.playlists is None:
        raise AckError(Ack.SYSTEM, "stored playlists are not available")
    return session.svc.playlists


async def _mapped(call: Awaitable[T]) -> T:
    """The store's errors in MPD's codes and words."""
    try:
        return await call
    except RpcError as exc:
        if exc.code == EXISTS:
            raise AckError(Ack.EXIST, "Playlist already exists") from None
        if exc.code == NOT_FOUND and "position" in exc.message:
            raise AckError(Ack.ARG, "Bad song index") from None
        if exc.code == NOT_FOUND:
            raise AckError(Ack.NO_EXIST, "No such playlist") from None
        if exc.code == INVALID_PARAMS:
            raise AckError(Ack.ARG, exc.message) from None
        raise


def _span(text: str | None, length: int) -> tuple[int, int]:
    if text is None:
        return 0, length
    start, end = ARG_KINDS["range"](text)
    end = length if end is None else end
    if start > length or end > length:
        raise AckError(Ack.ARG, "Bad song index")
    return start, end


async def _entry_tracks(svc: Services, entries: list[PlaylistEntry]) -> list[Any]:
    return await tracks_of_entries(svc, entries)


@mpd_command("save", "str", "str?", permission=CONTROL)
async def _save(session: MpdSession, name: str, mode: str | None) -> Any:
    if mode is not None and mode not in SAVE_MODES:
        raise AckError(Ack.ARG, f"Unrecognized save mode: {mode}")
    queue = await session.svc.player.queue_list()
    entries = [
        PlaylistEntry(path_from_wire(item["path"]),
                      f"{round(item.get('duration_s') or 0)},"
                      + " - ".join(str(v) for v in (item.get("artist"), item.get("title")) if v))
        for item in queue["items"]
    ]  # fmt: skip
    await _mapped(_store(session).save(name, entries, mode or "create"))


@mpd_command("load", "str", "str?", "str?", permission=ADD)
async def _load(session: MpdSession, name: str, span: str | None, position: str | None) -> Any:
    entries = await _mapped(_store(session).entries(name))
    start, end = _span(span, len(entries))
    pos = await _insert_position(session, position)
    tracks = [t for t in await _entry_tracks(session.svc, entries[start:end]) if t is not None]
    if tracks:
        await session.svc.player.add(tracks, pos)


@mpd_command("listplaylists")
async def _listplaylists(session: MpdSession) -> Any:
    out: list[tuple[str, object]] = []
    for info in await _mapped(_store(session).list_all()):
        out += [("playlist", info.name), ("Last-Modified", last_modified(int(info.modified_s * 1e9)))]
    return out


@mpd_command("listplaylist", "str", "str?")
async def _listplaylist(session: MpdSession, name: str, span: str | None) -> Any:
    entries = await _mapped(_store(session).entries(name))
    start, end = _span(span, len(entries))
    uris = session.server.uris
    return [("file", uris.uri(e.path)) for e in entries[start:end]]


@mpd_command("listplaylistinfo", "str", "str?")
async def _listplaylistinfo(session: MpdSession, name: str, span: str | None) -> Any:
    entries = await _mapped(_store(session).entries(name))
    start, end = _span(span, len(entries))
    uris = session.server.uris
    out: list[tuple[str, object]] = []
    for entry, track in zip(entries[start:end], await _entry_tracks(session.svc, entries[start:end]), strict=True):
        if track is None:
            out.append(("file", uris.uri(entry.path)))  # the file left the library: the entry stays
        else:
            out += song_pairs(track, uris.uri(track.path), session.tagtypes)
    return out


@mpd_command("playlistadd", "str", "str", "str?", permission=CONTROL)
async def _playlistadd(session: MpdSession, name: str, uri: str, position: str | None) -> Any:
    try:
        tracks = [await song_of(session, uri)]
    except AckError:
        tracks = await resolve_uri(session, uri)  # a folder: every song under it
    pos = None if position is None else ARG_KINDS["uint"](position)
    await _mapped(_store(session).add(name, [PlaylistEntry.of_track(t) for t in tracks], pos))


@mpd_command("playlistclear", "str", permission=CONTROL)
async def _playlistclear(session: MpdSession, name: str) -> Any:
    await _mapped(_store(session).clear(name))


@mpd_command("playlistdelete", "str", "str", permission=CONTROL)
async def _playlistdelete(session: MpdSession, name: str, span: str) -> Any:
    start, end = ARG_KINDS["range"](span)
    store = _store(session)
    if end is None:
        end = len(await _mapped(store.entries(name)))
    await _mapped(store.delete(name, list(range(start, max(end, start + 1)))))


@mpd_command("playlistmove", "str", "uint", "uint", permission=CONTROL)
async def _playlistmove(session: MpdSession, name: str, from_pos: int, to_pos: int) -> Any:
    await _mapped(_store(session).move(name, from_pos, to_pos))


@mpd_command("rename", "str", "str", permission=CONTROL)
async def _rename(session: MpdSession, name: str, new_name: str) -> Any:
    await _mapped(_store(session).rename(name, new_name))


@mpd_command("rm", "str", permission=CONTROL)
async def _rm(session: MpdSession, name: str) -> Any:
    await _mapped(_store(session).remove(name))


COMMANDS: Final = (
    _save, _load, _listplaylists, _listplaylist, _listplaylistinfo, _playlistadd, _playlistclear, _playlistdelete,
    _playlistmove, _rename, _rm,
)  # fmt: skip
