"""Status and playback commands: status, currentsong, play*, pause, stop, next, previous, seek*,
volume, the play-order options, crossfade and replay gain (mapped onto album mode)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from ...errors import NOT_FOUND, RpcError
from ...protocol.mpd import Ack, AckError
from .table import Permission, mpd_command

if TYPE_CHECKING:
    from .session import MpdSession

CONTROL: Final = Permission.CONTROL
# replay_gain_mode -> album mode (docs/mpd.md): album where it exists, else per track
REPLAY_GAIN_MODES: Final = {"off": "off", "track": "track", "album": "album", "auto": "auto"}


def _bad_index() -> AckError:
    return AckError(Ack.ARG, "Bad song index")


async def mpd_status(session: MpdSession) -> list[tuple[str, object]]:
    """MPD's own ``status`` fields only (the mastering goes on the ``auralis`` channel)."""
    svc = session.svc
    s = await svc.player.mpd_status()
    pairs: list[tuple[str, object]] = [
        ("volume", s["volume"]),
        ("repeat", bool(s["repeat"])),
        ("random", bool(s["random"])),
        ("single", bool(s["single"])),
        ("consume", bool(s["consume"])),
        ("partition", "default"),
        ("playlist", s.get("queue_version", 0)),
        ("playlistlength", s["queue_length"]),
        ("mixrampdb", 0),
        ("state", s["state"]),
    ]
    if s.get("crossfade_s"):
        pairs.append(("xfade", s["crossfade_s"]))
    if s["queue_pos"] is not None:
        pairs += [("song", s["queue_pos"]), ("songid", s.get("song_id"))]
    if s["state"] != "stop" and s["track"] is not None:
        elapsed = float(s["elapsed_s"])
        duration = float(s["track"].duration_s or 0.0)
        pairs += [
            ("time", f"{int(round(elapsed))}:{int(round(duration))}"),
            ("elapsed", elapsed),
            ("bitrate", 0),
            ("duration", duration),
            ("audio", f"{s['sample_rate']}:f:2"),
        ]
    if s.get("next_pos") is not None:
        pairs += [("nextsong", s["next_pos"]), ("nextsongid", s.get("next_song_id"))]
    scan = svc.library.statistics()
    if scan.running:
        pairs.append(("updating_db", scan.scans))
    return pairs


@mpd_command("status")
async def _status(session: MpdSession) -> Any:
    return await mpd_status(session)


@mpd_command("currentsong")
async def _currentsong(session: MpdSession) -> Any:
    from .queue import songs_text

    current = (await session.svc.player.mpd_status())["current"]
    return None if current is None else songs_text(session, [current])


async def _play_pos(session: MpdSession, pos: int | None) -> None:
    try:
        await session.svc.player.play(pos)
    except RpcError as exc:
        if exc.code == NOT_FOUND and pos is not None:
            raise _bad_index() from None
        raise


@mpd_command("play", "int?", permission=CONTROL)
async def _play(session: MpdSession, pos: int | None) -> Any:
    await _play_pos(session, None if pos is None or pos < 0 else pos)


async def _pos_of_id(session: MpdSession, song_id: int) -> int:
    try:
        return await session.svc.player.position_of_id(song_id)
    except RpcError as exc:
        if exc.code == NOT_FOUND:
            raise AckError(Ack.NO_EXIST, "No such song") from None
        raise


@mpd_command("playid", "int?", permission=CONTROL)
async def _playid(session: MpdSession, song_id: int | None) -> Any:
    if song_id is None or song_id < 0:
        await _play_pos(session, None)
        return
    await _play_pos(session, await _pos_of_id(session, song_id))


@mpd_command("pause", "bool?", permission=CONTROL)
async def _pause(session: MpdSession, pause: bool | None) -> Any:
    player = session.svc.player
    if pause is None:
        await player.toggle()
        return
    state = (await player.mpd_status())["state"]
    if pause and state == "play":
        await player.pause()
    elif not pause and state == "pause":
        await player.play(None)


@mpd_command("stop", permission=CONTROL)
async def _stop(session: MpdSession) -> Any:
    await session.svc.player.stop()


async def _while_playing(session: MpdSession, call: Any) -> None:
    """``next``/``previous`` while stopped: ``ACK [55@0] Not playing``, as MPD answers."""
    if (await session.svc.player.mpd_status())["state"] == "stop":
        raise AckError(Ack.PLAYER_SYNC, "Not playing")
    await call()


@mpd_command("next", permission=CONTROL)
async def _next(session: MpdSession) -> Any:
    await _while_playing(session, session.svc.player.next)


@mpd_command("previous", permission=CONTROL)
async def _previous(session: MpdSession) -> Any:
    await _while_playing(session, session.svc.player.previous)


async def _seek_in(session: MpdSession, pos: int, seconds: float) -> None:
    player = session.svc.player
    s = await player.mpd_status()
    if pos != s["queue_pos"] or s["track"] is None:
        await _play_pos(session, pos)
        if s["state"] != "play":  # seeking a song while paused/stopped leaves it paused (MPD)
            await player.pause()
    await player.seek(seconds)


@mpd_command("seek", "uint", "time", permission=CONTROL)
async def _seek(session: MpdSession, pos: int, seconds: float) -> Any:
    await _seek_in(session, pos, seconds)


@mpd_command("seekid", "int", "time", permission=CONTROL)
async def _seekid(session: MpdSession, song_id: int, seconds: float) -> Any:
    await _seek_in(session, await _pos_of_id(session, song_id), seconds)


@mpd_command("seekcur", "reltime", permission=CONTROL)
async def _seekcur(session: MpdSession, target: tuple[str, float]) -> Any:
    player = session.svc.player
    s = await player.mpd_status()
    if s["track"] is None or s["state"] == "stop":
        raise AckError(Ack.PLAYER_SYNC, "Not playing")
    sign, seconds = target
    elapsed = float(s["elapsed_s"])
    position = elapsed + seconds if sign == "+" else max(0.0, elapsed - seconds) if sign == "-" else seconds
    await player.seek(position)


def _volume(value: int) -> int:
    if not 0 <= value <= 100:
        raise AckError(Ack.ARG, f"Number too large: {value}")  # MPD's words for both ends
    return value


@mpd_command("setvol", "int", permission=CONTROL)
async def _setvol(session: MpdSession, value: int) -> Any:
    await session.svc.player.set_volume(_volume(value))


@mpd_command("getvol")
async def _getvol(session: MpdSession) -> Any:
    return [("volume", (await session.svc.player.mpd_status())["volume"])]


@mpd_command("volume", "int", permission=CONTROL)
async def _volume_change(session: MpdSession, change: int) -> Any:
    if not -100 <= change <= 100:
        raise AckError(Ack.ARG, "Invalid volume value")
    current = int((await session.svc.player.mpd_status())["volume"])
    await session.svc.player.set_volume(min(100, max(0, current + change)))


def _flag_command(name: str) -> Any:
    @mpd_command(name, "bool", permission=CONTROL)
    async def handler(session: MpdSession, value: bool) -> Any:
        await session.svc.player.set_options(**{name: value})

    return handler


_random = _flag_command("random")
_repeat = _flag_command("repeat")
_consume = _flag_command("consume")


@mpd_command("single", "str", permission=CONTROL)
async def _single(session: MpdSession, value: str) -> Any:
    if value not in ("0", "1"):
        # MPD 0.21's "oneshot" (single for one song only) is not a mode the player has
        raise AckError(Ack.ARG, f"Boolean (0/1) expected: {value}")
    await session.svc.player.set_options(single=value == "1")


@mpd_command("crossfade", "uint", permission=CONTROL)
async def _crossfade(session: MpdSession, seconds: int) -> Any:
    await session.svc.player.set_crossfade(seconds)


@mpd_command("mixrampdb", "float", permission=CONTROL)
async def _mixrampdb(session: MpdSession, value: float) -> Any:
    raise AckError(Ack.SYSTEM, "MixRamp is not supported: Auralis switches tracks gaplessly")


@mpd_command("replay_gain_mode", "str", permission=CONTROL)
async def _replay_gain_mode(session: MpdSession, mode: str) -> Any:
    if mode not in REPLAY_GAIN_MODES:
        raise AckError(Ack.ARG, "Unrecognized replay gain mode")
    await session.svc.player.set_album_mode(REPLAY_GAIN_MODES[mode])


@mpd_command("replay_gain_status")
async def _replay_gain_status(session: MpdSession) -> Any:
    mode = (await session.svc.player.mpd_status()).get("album_mode", "auto")
    return [("replay_gain_mode", mode)]


COMMANDS: Final = (
    _status, _currentsong, _play, _playid, _pause, _stop, _next, _previous, _seek, _seekid, _seekcur,
    _setvol, _getvol, _volume_change, _random, _repeat, _consume, _single, _crossfade, _mixrampdb,
    _replay_gain_mode, _replay_gain_status,
)  # fmt: skip
