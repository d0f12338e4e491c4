"""Queue commands: add, addid, delete*, move*, clear, shuffle, swap*, playlistinfo/id, plchanges*, prio*."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from ...actors.database import Track
from ...errors import NOT_FOUND, OUTSIDE_MUSIC_DIRS, RpcError
from ...protocol.mpd import Ack, AckError
from ...protocol.paths import path_to_wire
from .table import Permission, mpd_command

if TYPE_CHECKING:
    from .session import MpdSession

ADD: Final = Permission.ADD
CONTROL: Final = Permission.CONTROL


def _bad_index() -> AckError:
    return AckError(Ack.ARG, "Bad song index")


async def resolve_uri(session: MpdSession, uri: str) -> list[Track]:
    """The tracks a URI names: one song, or every song under a folder (``""`` or ``/``: all)."""
    if "://" in uri:
        raise AckError(Ack.NO_EXIST, "Unsupported URI scheme")
    uris = session.server.uris
    if uris.several and not uri.strip("/"):  # the top: every music folder, in name order
        paths = [path_to_wire(d) for d in uris.by_name]
    else:
        path = uris.path(uri)
        if path is None:
            raise AckError(Ack.NO_EXIST, "No such directory")
        paths = [path]
    try:
        return await session.svc.library.resolve_paths(paths)
    except RpcError as exc:
        if exc.code in (NOT_FOUND, OUTSIDE_MUSIC_DIRS):
            raise AckError(Ack.NO_EXIST, "No such directory") from None
        raise


def _length(session: MpdSession) -> int:
    return session.svc.player.view.queue_length


@mpd_command("add", "str", "str?", permission=ADD)
async def _add(session: MpdSession, uri: str, position: str | None) -> Any:
    tracks = await resolve_uri(session, uri)
    pos = await _insert_position(session, position)
    if tracks:
        await session.svc.player.add(tracks, pos)


async def _insert_position(session: MpdSession, position: str | None) -> int | None:
    """MPD 0.23's POSITION: absolute, or ``+N``/``-N`` relative to the current song."""
    if position is None:
        return None
    from .table import ARG_KINDS

    view = session.svc.player.view
    length = view.queue_length
    if position[:1] in "+-" and position:
        current = view.queue_pos
        if current is None:
            raise AckError(Ack.ARG, "No current song")
        offset = ARG_KINDS["uint"](position[1:])
        pos = current + 1 + offset if position[0] == "+" else current - offset
    else:
        pos = ARG_KINDS["uint"](position)
    if not 0 <= pos <= length:
        raise _bad_index()
    return int(pos)


@mpd_command("addid", "str", "str?", permission=ADD)
async def _addid(session: MpdSession, uri: str, position: str | None) -> Any:
    tracks = await resolve_uri(session, uri)
    if len(tracks) != 1:
        raise AckError(Ack.NO_EXIST, "No such song")
    pos = await _insert_position(session, position)
    added = await session.svc.player.add(tracks, pos)
    entries = await session.svc.player.queue_entries(added[0]["pos"], added[0]["pos"] + 1)
    return [("Id", entries[0][1])]


async def _positions(session: MpdSession, span: tuple[int, int | None], *, clip: bool = True) -> list[int]:
    """The positions of a range. Like MPD: a start past the end is ``Bad song index``; an end past
    it is clipped (``clip``) or also refused (``clip=False``, what ``move`` does)."""
    start, end = span
    length = _length(session)
    end = length if end is None else end
    if start > length or (not clip and end > length) or end < start:
        raise _bad_index()
    return list(range(start, min(end, length)))


@mpd_command("delete", "range", permission=CONTROL)
async def _delete(session: MpdSession, span: tuple[int, int | None]) -> Any:
    positions = await _positions(session, span)
    if positions:
        await session.svc.player.delete(positions)


async def pos_of_id(session: MpdSession, song_id: int) -> int:
    try:
        return await session.svc.player.position_of_id(song_id)
    except RpcError as exc:
        if exc.code == NOT_FOUND:
            raise AckError(Ack.NO_EXIST, "No such song") from None
        raise


@mpd_command("deleteid", "uint", permission=CONTROL)
async def _deleteid(session: MpdSession, song_id: int) -> Any:
    await session.svc.player.delete([await pos_of_id(session, song_id)])


async def _move_range(session: MpdSession, positions: list[int], to: int) -> None:
    """Move the block ``positions`` (consecutive) so that it starts at ``to``."""
    player = session.svc.player
    view = player.view
    length = view.queue_length
    if to < 0:  # relative to the current song (MPD 0.23)
        if view.queue_pos is None:
            raise AckError(Ack.PLAYER_SYNC, "No current song")
        to = view.queue_pos + 1 + to
    if not positions:
        return
    if to > length - len(positions):
        raise AckError(Ack.ARG, f"Number too large: {to}")
    if to < 0:
        raise _bad_index()
    first = positions[0]
    if to < first:
        for i, p in enumerate(positions):
            await player.move(p, to + i)
    elif to > first:
        for _ in positions:
            await player.move(first, to + len(positions) - 1)


@mpd_command("move", "range", "int", permission=CONTROL)
async def _move(session: MpdSession, span: tuple[int, int | None], to: int) -> Any:
    start, end = span
    length = _length(session)
    if start >= length or (end is not None and end > length):
        raise _bad_index()
    await _move_range(session, await _positions(session, span), to)


@mpd_command("moveid", "uint", "int", permission=CONTROL)
async def _moveid(session: MpdSession, song_id: int, to: int) -> Any:
    await _move_range(session, [await pos_of_id(session, song_id)], to)


@mpd_command("clear", permission=CONTROL)
async def _clear(session: MpdSession) -> Any:
    await session.svc.player.clear()


@mpd_command("shuffle", "range?", permission=CONTROL)
async def _shuffle(session: MpdSession, span: tuple[int, int | None] | None) -> Any:
    if span is None:
        await session.svc.player.shuffle()
        return
    positions = await _positions(session, span)
    if positions:
        await session.svc.player.shuffle(positions[0], positions[-1] + 1)


@mpd_command("swap", "uint", "uint", permission=CONTROL)
async def _swap(session: MpdSession, a: int, b: int) -> Any:
    length = _length(session)
    if a >= length or b >= length:
        raise _bad_index()
    await session.svc.player.swap(a, b)


@mpd_command("swapid", "uint", "uint", permission=CONTROL)
async def _swapid(session: MpdSession, a: int, b: int) -> Any:
    await session.svc.player.swap(await pos_of_id(session, a), await pos_of_id(session, b))


def songs_text(session: MpdSession, entries: list[tuple[int, int, int, Track]]) -> bytes:
    """Queue entries as song blocks (cached per track; Pos, Id and Prio added per entry)."""
    block = session.server.song_block
    tagtypes = session.tagtypes
    out = []
    for pos, song_id, prio, track in entries:
        out.append(block(track, tagtypes))
        out.append(b"Pos: %d\nId: %d\n" % (pos, song_id) if not prio else b"Pos: %d\nId: %d\nPrio: %d\n" % (pos, song_id, prio))
    return b"".join(out)




@mpd_command("playlistinfo", "range?")
async def _playlistinfo(session: MpdSession, span: tuple[int, int | None] | None) -> Any:
    if span is None:
        return songs_text(session, await session.svc.player.queue_entries())
    start, end = span
    length = _length(session)
    if start > length:
        raise _bad_index()  # MPD: an end past the queue is clipped, a start at its end answers nothing
    return songs_text(session, await session.svc.player.queue_entries(start, end))


@mpd_command("playlist")
async def _playlist(session: MpdSession) -> Any:
    uris = session.server.uris
    return [(f"{pos}:file", uris.uri(t.path)) for pos, _, _, t in await session.svc.player.queue_entries()]


@mpd_command("playlistid", "int?")
async def _playlistid(session: MpdSession, song_id: int | None) -> Any:
    if song_id is None:
        return songs_text(session, await session.svc.player.queue_entries())
    pos = await pos_of_id(session, song_id)
    return songs_text(session, await session.svc.player.queue_entries(pos, pos + 1))


@mpd_command("plchanges", "int", "range?")
async def _plchanges(session: MpdSession, version: int, span: tuple[int, int | None] | None) -> Any:
    entries = await session.svc.player.queue_entries(since_version=version)
    return songs_text(session, _within(entries, span))


def _within(entries: list[tuple[int, int, int, Track]], span: tuple[int, int | None] | None) -> list[tuple[int, int, int, Track]]:
    if span is None:
        return entries
    start, end = span
    return [e for e in entries if e[0] >= start and (end is None or e[0] < end)]


@mpd_command("plchangesposid", "int", "range?")
async def _plchangesposid(session: MpdSession, version: int, span: tuple[int, int | None] | None) -> Any:
    entries = _within(await session.svc.player.queue_entries(since_version=version), span)
    out: list[tuple[str, object]] = []
    for pos, song_id, _, _ in entries:
        out += [("cpos", pos), ("Id", song_id)]
    return out


@mpd_command("prio", "prio", rest="range", permission=CONTROL)
async def _prio(session: MpdSession, prio: int, spans: tuple[tuple[int, int | None], ...]) -> Any:
    if not spans:
        raise AckError(Ack.ARG, 'wrong number of arguments for "prio"')
    positions: list[int] = []
    for span in spans:
        positions += await _positions(session, span)
    await session.svc.player.set_prio(prio, positions)


@mpd_command("prioid", "prio", rest="uint", permission=CONTROL)
async def _prioid(session: MpdSession, prio: int, ids: tuple[int, ...]) -> Any:
    if not ids:
        raise AckError(Ack.ARG, 'wrong number of arguments for "prioid"')
    await session.svc.player.set_prio(prio, [await pos_of_id(session, i) for i in ids])


COMMANDS: Final = (
    _add, _addid, _delete, _deleteid, _move, _moveid, _clear, _shuffle, _swap, _swapid, _playlistinfo,
    _playlist, _playlistid, _plchanges, _plchangesposid, _prio, _prioid,
)  # fmt: skip
