"""The command table: method name -> parameter schema -> one actor facade call.

Validation happens here, at the edge: unknown methods get ``unknown_method``; missing,
unexpected or wrongly typed parameters get ``invalid_params`` naming the parameter. A
handler receives the validated parameters as keyword arguments, the :class:`Services`
(actor facades) and the calling :class:`Session` (for ``auth`` and ``subscribe``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Protocol

from ..actors.albums import ALBUM_MODES, AlbumPlans
from ..actors.database import Database, Track
from ..actors.events import EVENT_NAMES, EventHub
from ..actors.fingerprints import FingerprintResolver, fingerprint_to_wire
from ..actors.library import Library
from ..actors.mastering import Mastering
from ..actors.outputs import Outputs
from ..actors.player import Player
from ..actors.playlists import SAVE_MODES, PlaylistEntry, PlaylistStore
from ..errors import INVALID_PARAMS, NOT_FOUND, UNKNOWN_METHOD, UNKNOWN_PRESET, RpcError
from ..protocol.audio_frames import MAX_POSITION_S  # the same seek range on /session and the control protocol
from ..protocol.mpd.filters import parse_expression
from ..protocol.paths import path_from_wire, path_to_wire
from ..protocol.query import MATCH_TAGS, TAGS, Query, QueryError, TagMatch, conjunction
from .covers import CoverReader
from .presentation import StreamCounters

MAX_SEARCH_LIMIT: Final = 1000
DEFAULT_SEARCH_LIMIT: Final = 100
MAX_PATHS: Final = 10_000
MAX_UINT: Final = 2**63 - 1  # SQLite's INTEGER is signed 64-bit; larger ids and positions cannot exist


class Session(Protocol):
    """What a transport session offers the command table."""

    authenticated: bool

    def check_token(self, token: str) -> bool: ...

    def subscribe(self, events: frozenset[str]) -> None: ...


@dataclass
class Services:
    """The actor facades the commands use (built by ``main``)."""

    db: Database
    hub: EventHub
    library: Library
    resolver: FingerprintResolver
    mastering: Mastering
    player: Player
    started_at: float
    albums: AlbumPlans | None = None
    playlists: PlaylistStore | None = None
    covers: CoverReader = field(default_factory=CoverReader)  # cover art for HTTP and MPD (app/covers.py)
    outputs: Outputs | None = None
    streams: StreamCounters = field(default_factory=StreamCounters)  # WebSocket audio peers (transport keeps them)
    http_address: tuple[str, int] | None = None  # where the HTTP/WebSocket server listens, once it does (main sets it)

    @property
    def stored_playlists(self) -> PlaylistStore:
        if self.playlists is None:
            raise RpcError(NOT_FOUND, "stored playlists are not available")
        return self.playlists

    async def stats(self) -> dict[str, Any]:
        """MPD's ``stats``: the library's totals, uptime, when the library was last updated, time played."""
        from ..playback.mixer import BLOCK_S

        totals = await self.db.library_totals()
        player = (await self.player.status()).get("player") or {}
        updated = self.library.finished_at_s or totals.last_scanned_at
        return {"artists": totals.artists, "albums": totals.albums, "songs": totals.songs,
                "uptime_s": time.monotonic() - self.started_at, "db_playtime_s": totals.playtime_s,
                "db_update_s": updated, "playtime_s": int(player.get("blocks_sent") or 0) * BLOCK_S}  # fmt: skip

    async def status(self) -> dict[str, Any]:
        status = await self.player.status()
        scan = self.library.statistics()
        status.update(
            cache=self.mastering.cache.statistics().to_wire(),
            fingerprints=self.resolver.statistics().to_wire(),
            analysis=self.resolver.analysis_progress().to_wire(),
            scan={"running": scan.running, "done": scan.done, "total": scan.total, "files_probed": scan.files_probed,
                  "scans": scan.scans, "tracks": scan.tracks,
                  "counts": None if scan.counts is None else scan.counts.to_wire(), "error": scan.error},
            pool=self.mastering.pool.statistics().to_wire(),
            albums=None if self.albums is None else self.albums.statistics().to_wire(),
            outputs=[] if self.outputs is None else [o.to_wire() for o in self.outputs.list()],
            streams=self.streams.to_wire(),
            http=None if self.http_address is None else {"host": self.http_address[0], "port": self.http_address[1]},
            uptime_s=time.monotonic() - self.started_at,
        )  # fmt: skip
        return status


# ----------------------------------------------------------------- parameter types
# The whole validation is declared in the table below: every parameter is a :class:`Param` (a kind
# from _KINDS, required or not, an optional range or set of choices), and a command can name
# groups of parameters of which exactly one / at least one must be given. Handlers receive only
# values that passed, so nothing a client sends can reach an actor in a form it cannot hold
# (e.g. ``seek`` with 1e308 s, which overflowed the player's frame arithmetic).
MAX_PATH_BYTES: Final = 4095  # Linux PATH_MAX (4096) including the terminating NUL
MAX_NAME_BYTES: Final = 255  # NAME_MAX: the longest file or folder name Linux file systems hold


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _uint(value: Any) -> bool:
    return _int(value) and 0 <= value <= MAX_UINT


def _path(value: Any) -> bool:
    """A string the OS can take as a path: no NUL, at most PATH_MAX bytes, no name over NAME_MAX."""
    if not isinstance(value, str) or "\x00" in value:
        return False
    try:
        encoded = value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return False
    return len(encoded) <= MAX_PATH_BYTES and all(len(name) <= MAX_NAME_BYTES for name in encoded.split(b"/"))


def _number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) and math.isfinite(value)


def _list_of(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, list) and len(v) <= MAX_PATHS and all(check(x) for x in v)


MAX_TAG_TERMS: Final = 32


def _tag_map(value: Any) -> bool:
    return (isinstance(value, dict) and 0 < len(value) <= MAX_TAG_TERMS
            and all(k in MATCH_TAGS and isinstance(v, str) and len(v) <= 1024 for k, v in value.items()))  # fmt: skip


_PATH_RULE: Final = f"without NUL characters, at most {MAX_PATH_BYTES} bytes with components of at most {MAX_NAME_BYTES} bytes"
# kind -> (check, what the value must be)
_KINDS: Final[dict[str, tuple[Callable[[Any], bool], str]]] = {
    "int": (_int, "an integer"),
    "uint": (_uint, f"an integer >= 0 (at most {MAX_UINT})"),
    "number": (_number, "a finite number"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "path": (_path, f"a string {_PATH_RULE}"),
    "strs": (_list_of(lambda x: isinstance(x, str)), f"an array of at most {MAX_PATHS} strings"),
    "paths": (_list_of(_path), f"an array of at most {MAX_PATHS} strings {_PATH_RULE}"),
    "uints": (_list_of(_uint), f"an array of at most {MAX_PATHS} integers >= 0 (at most {MAX_UINT} each)"),
    "tags": (_tag_map, f"a map of 1 to {MAX_TAG_TERMS} tags ({', '.join(MATCH_TAGS)}) to strings of at most"
                       " 1024 characters"),
}  # fmt: skip


def _in_range(value: Any, lo: float | None, hi: float | None) -> bool:
    return (lo is None or value >= lo) and (hi is None or value <= hi)


@dataclass(frozen=True)
class Param:
    """One declared parameter: its kind (a key of ``_KINDS``), whether it is required, and an
    optional inclusive range (numbers) or set of allowed strings (``str``/``strs``)."""

    kind: str
    required: bool = False
    lo: float | None = None
    hi: float | None = None
    choices: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"unknown parameter kind {self.kind!r}")

    def problem(self, value: Any) -> str | None:
        """None when ``value`` is acceptable, else what it must be (for the error message)."""
        check, expected = _KINDS[self.kind]
        if self.lo is not None or self.hi is not None:
            base = "an integer" if self.kind in ("int", "uint") else expected
            expected = f"{base} between {_fmt(self.lo)} and {_fmt(self.hi)}"
        if self.choices is not None:
            expected = f"{expected} among: {', '.join(self.choices)}"
        if not check(value):
            return expected
        if self.kind in ("int", "uint", "number") and not _in_range(value, self.lo, self.hi):
            return expected
        if self.choices is not None:
            items = value if isinstance(value, list) else [value]
            if any(item not in self.choices for item in items):
                return expected
        return None


def _fmt(bound: float | None) -> str:
    if bound is None:
        return "any"
    return str(int(bound)) if float(bound).is_integer() else str(bound)


def _param(spec: Param | tuple[str, bool]) -> Param:
    return spec if isinstance(spec, Param) else Param(spec[0], spec[1])


@dataclass(frozen=True)
class Command:
    name: str
    params: dict[str, Param]
    handler: Callable[..., Awaitable[Any]]
    needs_auth: bool = True
    exactly_one: tuple[str, ...] = ()  # exactly one of these parameters must be given
    at_least_one: tuple[str, ...] = ()  # at least one of these must be given (a non-empty value)


def command(
    method: str,
    /,
    needs_auth: bool = True,
    exactly_one: tuple[str, ...] = (),
    at_least_one: tuple[str, ...] = (),
    **params: Param | tuple[str, bool],
) -> Callable[..., Command]:
    """Decorator turning a handler into a :class:`Command` (collected in :data:`COMMANDS` below).

    Each keyword declares one parameter: a :class:`Param`, or the short form ``(kind, required)``.
    """

    def make(fn: Callable[..., Awaitable[Any]]) -> Command:
        declared = {name: _param(spec) for name, spec in params.items()}
        for name in exactly_one + at_least_one:
            if name not in declared:
                raise ValueError(f"{method}: group names undeclared parameter {name!r}")
        return Command(method, declared, fn, needs_auth, exactly_one, at_least_one)

    return make


def _names(names: tuple[str, ...]) -> str:
    quoted = [repr(n) for n in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


def validate(cmd: Command, params: dict[str, Any]) -> dict[str, Any]:
    """Checked keyword arguments for ``cmd`` (``RpcError(invalid_params)`` on any mismatch).

    A parameter given as nil counts as not given.
    """
    for key in params:
        if key not in cmd.params:
            allowed = ", ".join(cmd.params) or "none"
            raise RpcError(INVALID_PARAMS, f"{cmd.name}: unexpected parameter {str(key)[:64]!r} (allowed: {allowed})")
    out = {}
    for key, param in cmd.params.items():
        if key not in params or params[key] is None:
            if param.required:
                raise RpcError(INVALID_PARAMS, f"{cmd.name}: missing parameter {key!r}")
            continue
        problem = param.problem(params[key])
        if problem is not None:
            raise RpcError(INVALID_PARAMS, f"{cmd.name}: {key!r} must be {problem}")
        out[key] = params[key]
    if cmd.exactly_one and sum(key in out for key in cmd.exactly_one) != 1:
        raise RpcError(INVALID_PARAMS, f"{cmd.name}: give exactly one of {_names(cmd.exactly_one)}")
    if cmd.at_least_one and not any(out.get(key) not in (None, []) for key in cmd.at_least_one):
        raise RpcError(INVALID_PARAMS, f"{cmd.name}: give at least one of {_names(cmd.at_least_one)}")
    return out


async def dispatch(services: Services, session: Session, method: str, params: dict[str, Any]) -> Any:
    """Run one request; raises RpcError for every expected failure."""
    cmd = COMMANDS.get(method)
    if cmd is None:
        raise RpcError(UNKNOWN_METHOD, f"unknown method {method[:64]!r}")
    kwargs = validate(cmd, params)
    return await cmd.handler(services, session, **kwargs)


# ----------------------------------------------------------------- helpers
async def _track_of(svc: Services, track_id: int | None, path: str | None) -> Track:
    """The track named by exactly one of ``track_id`` / ``path`` (the table declares the group)."""
    if track_id is not None:
        track = await svc.db.get_track(track_id)
        if track is None:
            raise RpcError(NOT_FOUND, f"no track {track_id}")
        return track
    assert path is not None
    return await svc.library.resolve_track_path(path)


async def _tracks_of(svc: Services, paths: list[str] | None, track_ids: list[int] | None) -> list[Track]:
    tracks: list[Track] = []
    if paths:
        tracks += await svc.library.resolve_paths(paths)
    for track_id in track_ids or []:
        track = await svc.db.get_track(track_id)
        if track is None:
            raise RpcError(NOT_FOUND, f"no track {track_id}")
        tracks.append(track)
    return tracks


def _query_of(tags: dict[str, str] | None, filter_text: str | None, *, fold_case: bool) -> Query | None:
    """One query from a ``tags`` map (exact, or with ``fold_case`` substrings) and an MPD filter expression."""
    parts: list[Query] = []
    try:
        for tag, value in (tags or {}).items():
            parts.append(TagMatch(tag, "contains" if fold_case else "==", value, fold_case))
        if filter_text is not None:
            parts.append(parse_expression(filter_text, fold_case=fold_case))
    except QueryError as exc:
        raise RpcError(INVALID_PARAMS, f"bad filter: {exc}") from None
    return conjunction(parts)


async def _run_query(call: Callable[[], Awaitable[Any]]) -> Any:
    try:
        return await call()
    except QueryError as exc:  # a regular expression that does not compile
        raise RpcError(INVALID_PARAMS, f"bad filter: {exc}") from None


async def _entries_of(svc: Services, paths: list[str] | None, track_ids: list[int] | None) -> list[PlaylistEntry]:
    return [PlaylistEntry.of_track(t) for t in await _tracks_of(svc, paths, track_ids)]


def _entry_wire(pos: int, entry: PlaylistEntry, track: Track | None) -> dict[str, Any]:
    return {"pos": pos, "path": path_to_wire(entry.path), "track": None if track is None else track.to_wire()}


async def tracks_of_entries(svc: Services, entries: list[PlaylistEntry]) -> list[Track | None]:
    """The library track of each entry (None for a file the library does not hold); one transaction."""
    candidates: list[list[str]] = []
    for entry in entries:
        if entry.path.startswith("/"):
            candidates.append([entry.path])
        else:  # a relative entry (a playlist written by another program): inside a music folder
            candidates.append([d.rstrip("/") + "/" + entry.path for d in svc.library.music_dirs])
    found = await svc.db.tracks_by_paths([c for group in candidates for c in group])
    return [next((found[c] for c in group if c in found), None) for group in candidates]


# ----------------------------------------------------------------- methods
@command("ping", needs_auth=False)
async def _ping(svc: Services, session: Session) -> str:
    return "pong"


@command("auth", needs_auth=False, token=("str", True))
async def _auth(svc: Services, session: Session, token: str) -> bool:
    if not session.check_token(token):
        from ..errors import UNAUTHORIZED

        raise RpcError(UNAUTHORIZED, "wrong token")
    return True


@command("status")
async def _status(svc: Services, session: Session) -> dict[str, Any]:
    return await svc.status()


@command("play", pos=("uint", False))
async def _play(svc: Services, session: Session, pos: int | None = None) -> dict[str, Any]:
    return await svc.player.play(pos)


@command("pause")
async def _pause(svc: Services, session: Session) -> dict[str, Any]:
    return await svc.player.pause()


@command("toggle")
async def _toggle(svc: Services, session: Session) -> dict[str, Any]:
    return await svc.player.toggle()


@command("stop")
async def _stop(svc: Services, session: Session) -> dict[str, Any]:
    return await svc.player.stop()


@command("next")
async def _next(svc: Services, session: Session) -> dict[str, Any]:
    return await svc.player.next()


@command("previous")
async def _previous(svc: Services, session: Session) -> dict[str, Any]:
    return await svc.player.previous()


@command("seek", position_s=Param("number", True, lo=0, hi=MAX_POSITION_S))
async def _seek(svc: Services, session: Session, position_s: float) -> dict[str, Any]:
    return await svc.player.seek(float(position_s))


@command("queue.add", at_least_one=("paths", "track_ids"), paths=("paths", False), track_ids=("uints", False))
async def _queue_add(svc: Services, session: Session, paths=None, track_ids=None) -> dict[str, Any]:
    tracks = await _tracks_of(svc, paths, track_ids)
    return {"added": await svc.player.add(tracks)}


@command("queue.insert", at_least_one=("paths", "track_ids"), pos=("uint", True), paths=("paths", False),
         track_ids=("uints", False))
async def _queue_insert(svc: Services, session: Session, pos: int, paths=None, track_ids=None) -> dict[str, Any]:
    tracks = await _tracks_of(svc, paths, track_ids)
    return {"added": await svc.player.add(tracks, pos)}


@command("queue.delete", positions=("uints", True))
async def _queue_delete(svc: Services, session: Session, positions: list[int]) -> dict[str, Any]:
    return await svc.player.delete(positions)


@command("queue.move", from_pos=("uint", True), to_pos=("uint", True))
async def _queue_move(svc: Services, session: Session, from_pos: int, to_pos: int) -> dict[str, Any]:
    return await svc.player.move(from_pos, to_pos)


@command("queue.clear")
async def _queue_clear(svc: Services, session: Session) -> dict[str, Any]:
    return await svc.player.clear()


@command("queue.shuffle", start=("uint", False), end=("uint", False))
async def _queue_shuffle(svc: Services, session: Session, start: int | None = None, end: int | None = None) -> dict[str, Any]:
    return await svc.player.shuffle(start or 0, end)


@command("queue.crop")
async def _queue_crop(svc: Services, session: Session) -> dict[str, Any]:
    return await svc.player.crop()


@command("queue.swap", a=("uint", True), b=("uint", True))
async def _queue_swap(svc: Services, session: Session, a: int, b: int) -> dict[str, Any]:
    return await svc.player.swap(a, b)


@command("queue.list")
async def _queue_list(svc: Services, session: Session) -> dict[str, Any]:
    return await svc.player.queue_list()


@command("library.scan", path=("path", False))
async def _library_scan(svc: Services, session: Session, path: str | None = None) -> dict[str, Any]:
    job, started = await svc.library.scan_folder(path)
    return {"started": started, "queued": not started, "job": job}


@command("library.find", limit=("uint", False), offset=("uint", False), tags=Param("tags"), filter=Param("str"))
async def _library_find(svc: Services, session: Session, tags=None, filter=None, limit=None, offset=None) -> dict[str, Any]:
    query = _query_of(tags, filter, fold_case=False)
    return await _found(svc, query, limit, offset)


async def _found(svc: Services, query: Query | None, limit: int | None, offset: int | None) -> dict[str, Any]:
    limit = DEFAULT_SEARCH_LIMIT if limit is None else min(limit, MAX_SEARCH_LIMIT)
    offset = offset or 0
    tracks, total = await _run_query(lambda: svc.db.find_tracks(query, limit=limit, offset=offset))
    return {"tracks": [t.to_wire() for t in tracks], "total": total, "offset": offset,
            "truncated": offset + len(tracks) < total}  # fmt: skip


@command("library.values", tag=Param("str", True, choices=(*TAGS, "file")),
         group=Param("strs", False, choices=TAGS), tags=Param("tags"), filter=Param("str"))
async def _library_values(svc: Services, session: Session, tag: str, group=None, tags=None, filter=None) -> dict[str, Any]:
    if group is not None and len(group) > 8:
        raise RpcError(INVALID_PARAMS, "library.values: at most 8 'group' tags")
    query = _query_of(tags, filter, fold_case=False)
    names = [*(group or []), tag]
    rows = await _run_query(lambda: svc.db.tag_values(tag, group or (), query))
    return {"tag": tag, "group": group or [], "rows": [dict(zip(names, row, strict=True)) for row in rows]}


@command("library.count", group=Param("str", False, choices=TAGS), tags=Param("tags"), filter=Param("str"))
async def _library_count(svc: Services, session: Session, group=None, tags=None, filter=None) -> dict[str, Any]:
    query = _query_of(tags, filter, fold_case=False)
    rows = await _run_query(lambda: svc.db.count_matches(query, group))
    if group is None:
        return {"songs": rows[0][1], "playtime_s": rows[0][2]}
    return {"group": group, "groups": [{"value": v, "songs": n, "playtime_s": t} for v, n, t in rows]}


@command("library.stats")
async def _library_stats(svc: Services, session: Session) -> dict[str, Any]:
    return await svc.stats()


@command("pool.timeline", reset=("bool", False))
async def _pool_timeline(svc: Services, session: Session, reset: bool = False) -> dict[str, Any]:
    return svc.mastering.pool.timeline(reset=reset)


@command("library.list", path=("path", False))
async def _library_list(svc: Services, session: Session, path: str | None = None) -> dict[str, Any]:
    return await svc.library.list_dir(path)


@command("library.search", at_least_one=("query", "tags", "filter"), query=("str", False), limit=("uint", False),
         offset=("uint", False), tags=Param("tags"), filter=Param("str"))
async def _library_search(
    svc: Services, session: Session, query: str | None = None, limit: int | None = None, offset: int | None = None,
    tags: dict[str, str] | None = None, filter: str | None = None,
) -> dict[str, Any]:
    if tags is not None or filter is not None:  # by tag: case-insensitive substrings (MPD's search)
        if query:
            raise RpcError(INVALID_PARAMS, "library.search: give 'query', or 'tags'/'filter', not both")
        return await _found(svc, _query_of(tags, filter, fold_case=True), limit, offset)
    limit = DEFAULT_SEARCH_LIMIT if limit is None else min(limit, MAX_SEARCH_LIMIT)
    offset = offset or 0
    tracks, total = await svc.db.search_tracks((query or "")[:200], limit, offset)
    return {"tracks": [t.to_wire() for t in tracks], "total": total, "offset": offset,
            "truncated": offset + len(tracks) < total}  # fmt: skip


# ----------------------------------------------------------------- stored playlists
_NAME: Final = Param("str", True)


@command("playlist.list")
async def _playlist_list(svc: Services, session: Session) -> dict[str, Any]:
    return {"playlists": [p.to_wire() for p in await svc.stored_playlists.list_all()]}


@command("playlist.show", name=_NAME)
async def _playlist_show(svc: Services, session: Session, name: str) -> dict[str, Any]:
    entries = await svc.stored_playlists.entries(name)
    tracks = await tracks_of_entries(svc, entries)
    return {"name": name, "entries": [_entry_wire(i, e, t) for i, (e, t) in enumerate(zip(entries, tracks, strict=True))]}


@command("playlist.save", name=_NAME, mode=Param("str", False, choices=SAVE_MODES))
async def _playlist_save(svc: Services, session: Session, name: str, mode: str = "create") -> dict[str, Any]:
    queue = await svc.player.queue_list()
    entries = []
    for item in queue["items"]:
        label = " - ".join(str(v) for v in (item.get("artist"), item.get("title")) if v)
        entries.append(PlaylistEntry(path_from_wire(item["path"]), f"{round(item.get('duration_s') or 0)},{label}"))
    return {"name": name, "length": await svc.stored_playlists.save(name, entries, mode)}


@command("playlist.load", name=_NAME, start=("uint", False), end=("uint", False), pos=("uint", False))
async def _playlist_load(svc: Services, session: Session, name: str, start=None, end=None, pos=None) -> dict[str, Any]:
    """Add a playlist (or ``[start, end)`` of it) to the queue, at ``pos`` or the end; entries whose
    files the library does not hold are skipped and counted."""
    entries = await svc.stored_playlists.entries(name)
    lo, hi = start or 0, len(entries) if end is None else end
    if lo > hi or hi > len(entries):
        raise RpcError(NOT_FOUND, f"playlist {name!r} has no range {lo}:{hi} (length {len(entries)})")
    tracks = await tracks_of_entries(svc, entries[lo:hi])
    present = [t for t in tracks if t is not None]
    added = await svc.player.add(present, pos) if present else []
    return {"added": added, "missing": len(tracks) - len(present)}


@command("playlist.add", at_least_one=("paths", "track_ids"), name=_NAME, paths=("paths", False),
         track_ids=("uints", False), pos=("uint", False))
async def _playlist_add(svc: Services, session: Session, name: str, paths=None, track_ids=None, pos=None) -> dict[str, Any]:
    entries = await _entries_of(svc, paths, track_ids)
    return {"name": name, "length": await svc.stored_playlists.add(name, entries, pos)}


@command("playlist.clear", name=_NAME)
async def _playlist_clear(svc: Services, session: Session, name: str) -> dict[str, Any]:
    await svc.stored_playlists.clear(name)
    return {"name": name, "length": 0}


@command("playlist.delete", name=_NAME, positions=("uints", True))
async def _playlist_delete(svc: Services, session: Session, name: str, positions: list[int]) -> dict[str, Any]:
    return {"name": name, "length": await svc.stored_playlists.delete(name, positions)}


@command("playlist.move", name=_NAME, from_pos=("uint", True), to_pos=("uint", True))
async def _playlist_move(svc: Services, session: Session, name: str, from_pos: int, to_pos: int) -> dict[str, Any]:
    await svc.stored_playlists.move(name, from_pos, to_pos)
    return {"name": name}


@command("playlist.rename", name=_NAME, new_name=("str", True))
async def _playlist_rename(svc: Services, session: Session, name: str, new_name: str) -> dict[str, Any]:
    await svc.stored_playlists.rename(name, new_name)
    return {"name": new_name}


@command("playlist.remove", name=_NAME)
async def _playlist_remove(svc: Services, session: Session, name: str) -> bool:
    await svc.stored_playlists.remove(name)
    return True


@command("library.rejected")
async def _library_rejected(svc: Services, session: Session) -> dict[str, Any]:
    return {"files": await svc.library.rejected()}


@command("library.track", exactly_one=("track_id", "path"), track_id=("uint", False), path=("path", False))
async def _library_track(svc: Services, session: Session, track_id=None, path=None) -> dict[str, Any]:
    track = await _track_of(svc, track_id, path)
    wire = track.to_wire()
    wire["fingerprint_error"] = track.fingerprint_error
    return wire


@command("fingerprint.get", exactly_one=("track_id", "path"), track_id=("uint", False), path=("path", False))
async def _fingerprint_get(svc: Services, session: Session, track_id=None, path=None) -> dict[str, Any]:
    track = await _track_of(svc, track_id, path)
    resolved = await svc.resolver.fingerprint(track)
    return fingerprint_to_wire(track, resolved.value, resolved.source)


@command("preset.list")
async def _preset_list(svc: Services, session: Session) -> dict[str, Any]:
    from auralis.presets import PRESET_NAMES, get_preset

    presets = []
    for name in PRESET_NAMES:
        preset = get_preset(name)
        presets.append({"name": name, "target_lufs": preset.target_lufs, "description": preset.description})
    return {"presets": presets}


@command("preset.set", name=("str", True))
async def _preset_set(svc: Services, session: Session, name: str) -> dict[str, Any]:
    from auralis.presets import PRESET_NAMES

    if name not in PRESET_NAMES:
        raise RpcError(UNKNOWN_PRESET, f"unknown preset {name[:64]!r}; valid presets: {', '.join(PRESET_NAMES)}")
    return await svc.player.set_preset(name)


@command("intensity.set", value=Param("number", True, lo=0.0, hi=1.0))
async def _intensity_set(svc: Services, session: Session, value: float) -> dict[str, Any]:
    return await svc.player.set_intensity(float(value))


@command("volume.set", percent=Param("int", True, lo=0, hi=100))
async def _volume_set(svc: Services, session: Session, percent: int) -> dict[str, Any]:
    return await svc.player.set_volume(percent)


@command("options.set", at_least_one=("repeat", "random", "single", "consume"),
         repeat=("bool", False), random=("bool", False), single=("bool", False), consume=("bool", False))
async def _options_set(svc: Services, session: Session, **flags: bool) -> dict[str, Any]:
    return await svc.player.set_options(**flags)


@command("album_mode.set", mode=Param("str", True, choices=ALBUM_MODES))
async def _album_mode_set(svc: Services, session: Session, mode: str) -> dict[str, Any]:
    return await svc.player.set_album_mode(mode)


def _outputs_of(svc: Services) -> Outputs:
    if svc.outputs is None:
        raise RpcError(NOT_FOUND, "this daemon has no outputs")
    return svc.outputs


@command("outputs")
async def _outputs(svc: Services, session: Session) -> dict[str, Any]:
    return {"outputs": [o.to_wire() for o in _outputs_of(svc).list()]}


@command("enable_output", exactly_one=("name", "id"), name=("str", False), id=("uint", False))
async def _enable_output(svc: Services, session: Session, name: str | None = None, id: int | None = None) -> dict[str, Any]:
    ref: str | int = name if name is not None else int(id or 0)
    return (await _outputs_of(svc).enable(ref)).to_wire()


@command("disable_output", exactly_one=("name", "id"), name=("str", False), id=("uint", False))
async def _disable_output(svc: Services, session: Session, name: str | None = None, id: int | None = None) -> dict[str, Any]:
    ref: str | int = name if name is not None else int(id or 0)
    return (await _outputs_of(svc).disable(ref)).to_wire()


@command("subscribe", events=Param("strs", False, choices=tuple(EVENT_NAMES)))
async def _subscribe(svc: Services, session: Session, events: list[str] | None = None) -> bool:
    chosen = frozenset(events) if events else frozenset(EVENT_NAMES)
    session.subscribe(chosen)
    return True


# The table, explicit and immutable: every method the daemon serves.
COMMANDS: Final[MappingProxyType[str, Command]] = MappingProxyType(
    {c.name: c for c in (
        _ping,
        _auth,
        _status,
        _play,
        _pause,
        _toggle,
        _stop,
        _next,
        _previous,
        _seek,
        _queue_add,
        _queue_insert,
        _queue_delete,
        _queue_move,
        _queue_clear,
        _queue_shuffle,
        _queue_crop,
        _queue_swap,
        _queue_list,
        _library_scan,
        _library_list,
        _library_search,
        _library_find,
        _library_values,
        _library_count,
        _library_stats,
        _pool_timeline,
        _library_rejected,
        _library_track,
        _fingerprint_get,
        _preset_list,
        _preset_set,
        _intensity_set,
        _volume_set,
        _options_set,
        _album_mode_set,
        _outputs,
        _enable_output,
        _disable_output,
        _subscribe,
        _playlist_list,
        _playlist_show,
        _playlist_save,
        _playlist_load,
        _playlist_add,
        _playlist_clear,
        _playlist_delete,
        _playlist_move,
        _playlist_rename,
        _playlist_remove,
    )}
)  # fmt: skip
