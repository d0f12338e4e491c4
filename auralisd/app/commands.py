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
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final, Protocol

from ..actors.database import Database, Track
from ..actors.events import EVENT_NAMES, EventHub
from ..actors.fingerprints import FingerprintResolver, fingerprint_to_wire
from ..actors.library import Library
from ..actors.mastering import Mastering
from ..actors.player import Player
from ..errors import INVALID_PARAMS, NOT_FOUND, UNKNOWN_METHOD, UNKNOWN_PRESET, RpcError

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

    async def status(self) -> dict[str, Any]:
        status = await self.player.status()
        scan = self.library.statistics()
        status.update(
            cache=self.mastering.cache.statistics().to_wire(),
            fingerprints=self.resolver.statistics().to_wire(),
            scan={"running": scan.running, "done": scan.done, "total": scan.total, "files_probed": scan.files_probed,
                  "scans": scan.scans, "tracks": scan.tracks},
            pool=self.mastering.pool.statistics().to_wire(),
            uptime_s=time.monotonic() - self.started_at,
        )  # fmt: skip
        return status


# ----------------------------------------------------------------- parameter types
def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _uint(value: Any) -> bool:
    return _int(value) and 0 <= value <= MAX_UINT


def _path(value: Any) -> bool:
    return isinstance(value, str) and "\x00" not in value  # the OS cannot name a file with NUL in it


def _number(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) and math.isfinite(value)


_CHECKS: Final[dict[str, tuple[Callable[[Any], bool], str]]] = {
    "int": (_int, "an integer"),
    "uint": (_uint, f"an integer >= 0 (at most {MAX_UINT})"),
    "number": (_number, "a finite number"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "path": (_path, "a string without NUL characters"),
    "strs": (lambda v: isinstance(v, list) and len(v) <= MAX_PATHS and all(isinstance(x, str) for x in v),
             f"an array of at most {MAX_PATHS} strings"),
    "paths": (lambda v: isinstance(v, list) and len(v) <= MAX_PATHS and all(_path(x) for x in v),
              f"an array of at most {MAX_PATHS} strings without NUL characters"),
    "uints": (lambda v: isinstance(v, list) and len(v) <= MAX_PATHS and all(_uint(x) for x in v),
              f"an array of at most {MAX_PATHS} integers >= 0 (at most {MAX_UINT} each)"),
}  # fmt: skip


@dataclass(frozen=True)
class Command:
    name: str
    params: dict[str, tuple[str, bool]]  # name -> (type, required)
    handler: Callable[..., Awaitable[Any]]
    needs_auth: bool = True


def command(method: str, /, needs_auth: bool = True, **params: tuple[str, bool]) -> Callable[..., Command]:
    """Decorator turning a handler into a :class:`Command` (collected in :data:`COMMANDS` below)."""

    def make(fn: Callable[..., Awaitable[Any]]) -> Command:
        return Command(method, params, fn, needs_auth)

    return make


def validate(cmd: Command, params: dict[str, Any]) -> dict[str, Any]:
    """Checked keyword arguments for ``cmd`` (``RpcError(invalid_params)`` on any mismatch)."""
    for key in params:
        if key not in cmd.params:
            allowed = ", ".join(cmd.params) or "none"
            raise RpcError(INVALID_PARAMS, f"{cmd.name}: unexpected parameter {key!r} (allowed: {allowed})")
    out = {}
    for key, (kind, required) in cmd.params.items():
        if key not in params or params[key] is None:
            if required:
                raise RpcError(INVALID_PARAMS, f"{cmd.name}: missing parameter {key!r}")
            continue
        check, expected = _CHECKS[kind]
        if not check(params[key]):
            raise RpcError(INVALID_PARAMS, f"{cmd.name}: {key!r} must be {expected}")
        out[key] = params[key]
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
    if (track_id is None) == (path is None):
        raise RpcError(INVALID_PARAMS, "give exactly one of 'track_id' or 'path'")
    if track_id is not None:
        track = await svc.db.get_track(track_id)
        if track is None:
            raise RpcError(NOT_FOUND, f"no track {track_id}")
        return track
    assert path is not None
    return await svc.library.resolve_track_path(path)


async def _tracks_of(svc: Services, paths: list[str] | None, track_ids: list[int] | None) -> list[Track]:
    if not paths and not track_ids:
        raise RpcError(INVALID_PARAMS, "give 'paths' or 'track_ids'")
    tracks: list[Track] = []
    if paths:
        tracks += await svc.library.resolve_paths(paths)
    for track_id in track_ids or []:
        track = await svc.db.get_track(track_id)
        if track is None:
            raise RpcError(NOT_FOUND, f"no track {track_id}")
        tracks.append(track)
    return tracks


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


@command("seek", position_s=("number", True))
async def _seek(svc: Services, session: Session, position_s: float) -> dict[str, Any]:
    return await svc.player.seek(float(position_s))


@command("queue.add", paths=("paths", False), track_ids=("uints", False))
async def _queue_add(svc: Services, session: Session, paths=None, track_ids=None) -> dict[str, Any]:
    tracks = await _tracks_of(svc, paths, track_ids)
    return {"added": await svc.player.add(tracks)}


@command("queue.insert", pos=("uint", True), paths=("paths", False), track_ids=("uints", False))
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


@command("queue.list")
async def _queue_list(svc: Services, session: Session) -> dict[str, Any]:
    return await svc.player.queue_list()


@command("library.scan")
async def _library_scan(svc: Services, session: Session) -> dict[str, Any]:
    return {"started": svc.library.scan()}


@command("library.list", path=("path", False))
async def _library_list(svc: Services, session: Session, path: str | None = None) -> dict[str, Any]:
    return await svc.library.list_dir(path)


@command("library.search", query=("str", True), limit=("uint", False))
async def _library_search(svc: Services, session: Session, query: str, limit: int | None = None) -> dict[str, Any]:
    limit = DEFAULT_SEARCH_LIMIT if limit is None else min(limit, MAX_SEARCH_LIMIT)
    tracks = await svc.db.search_tracks(query[:200], limit)
    return {"tracks": [t.to_wire() for t in tracks]}


@command("library.track", track_id=("uint", False), path=("path", False))
async def _library_track(svc: Services, session: Session, track_id=None, path=None) -> dict[str, Any]:
    track = await _track_of(svc, track_id, path)
    wire = track.to_wire()
    wire["fingerprint_error"] = track.fingerprint_error
    return wire


@command("fingerprint.get", track_id=("uint", False), path=("path", False))
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


@command("intensity.set", value=("number", True))
async def _intensity_set(svc: Services, session: Session, value: float) -> dict[str, Any]:
    if not 0.0 <= value <= 1.0:
        raise RpcError(INVALID_PARAMS, "intensity.set: 'value' must be between 0 and 1")
    return await svc.player.set_intensity(float(value))


@command("volume.set", percent=("int", True))
async def _volume_set(svc: Services, session: Session, percent: int) -> dict[str, Any]:
    if not 0 <= percent <= 100:
        raise RpcError(INVALID_PARAMS, "volume.set: 'percent' must be between 0 and 100")
    return await svc.player.set_volume(percent)


@command("options.set", repeat=("bool", False), random=("bool", False), single=("bool", False), consume=("bool", False))
async def _options_set(svc: Services, session: Session, **flags: bool) -> dict[str, Any]:
    if not flags:
        raise RpcError(INVALID_PARAMS, "options.set: give at least one of repeat, random, single, consume")
    return await svc.player.set_options(**flags)


@command("subscribe", events=("strs", False))
async def _subscribe(svc: Services, session: Session, events: list[str] | None = None) -> bool:
    chosen = frozenset(events) if events else frozenset(EVENT_NAMES)
    unknown = sorted(chosen - set(EVENT_NAMES))
    if unknown:
        raise RpcError(INVALID_PARAMS, f"subscribe: unknown events {unknown} (known: {', '.join(EVENT_NAMES)})")
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
        _queue_list,
        _library_scan,
        _library_list,
        _library_search,
        _library_track,
        _fingerprint_get,
        _preset_list,
        _preset_set,
        _intensity_set,
        _volume_set,
        _options_set,
        _subscribe,
    )}
)  # fmt: skip
