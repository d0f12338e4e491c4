"""Status and playback commands: status, currentsong, play*, pause, stop, next, previous, seek*,
volume, the play-order options, crossfade and replay gain (mapped onto album mode).

``status``, ``currentsong``, ``getvol`` and ``replay_gain_status`` are plain functions: they
read the player's published view (:class:`~auralisd.actors.player_view.PlayerView`) and await
nothing. ``status`` formats the view once (:class:`StatusText`) and adds ``time``/``elapsed``
for the moment it answers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

import trio

from ...actors.player_view import PlayerView
from ...errors import NOT_FOUND, RpcError
from ...protocol.mpd import Ack, AckError, format_pairs
from .queue import songs_text
from .table import Permission, mpd_command

if TYPE_CHECKING:
    from .session import MpdSession

CONTROL: Final = Permission.CONTROL
# replay_gain_mode -> album mode (docs/mpd.md): album where it exists, else per track
REPLAY_GAIN_MODES: Final = {"off": "off", "track": "track", "album": "album", "auto": "auto"}


def _bad_index() -> AckError:
    return AckError(Ack.ARG, "Bad song index")


class StatusText:
    """MPD's own ``status`` fields (the mastering goes on the ``auralis`` channel) for a player view.

    Everything but ``time`` and ``elapsed`` is formatted once per view (the player publishes a
    new one only when something changed), so an answer joins three byte strings.
    """

    def __init__(self) -> None:
        self._view: PlayerView | None = None
        self._head = self._tail = b""
        self._duration_s: float | None = None  # None: stopped or nothing loaded (no time fields)

    def _format(self, view: PlayerView) -> None:
        head: list[tuple[str, object]] = [
            ("volume", view.volume),
            ("repeat", view.repeat),
            ("random", view.random),
            ("single", view.single),
            ("consume", view.consume),
            ("partition", "default"),
            ("playlist", view.queue_version),
            ("playlistlength", view.queue_length),
            ("mixrampdb", 0),
            ("state", view.state),
            ("xfade", view.crossfade_s or None),
        ]
        if view.queue_pos is not None:
            head += [("song", view.queue_pos), ("songid", view.song_id)]
        tail: list[tuple[str, object]] = []
        self._duration_s = None
        if view.state != "stop" and view.track is not None:
            self._duration_s = float(view.track.duration_s or 0.0)
            tail += [("bitrate", 0), ("duration", self._duration_s), ("audio", f"{view.sample_rate}:f:2")]
        if view.next_pos is not None:
            tail += [("nextsong", view.next_pos), ("nextsongid", view.next_song_id)]
        self._head, self._tail, self._view = format_pairs(head), format_pairs(tail), view

    def text(self, view: PlayerView, now: float, updating_db: int | None = None) -> bytes:
        """The body of ``status`` at ``now`` (``trio.current_time()``); ``updating_db``: the scan's job id."""
        if view is not self._view:
            self._format(view)
        parts = [self._head]
        if self._duration_s is not None:
            elapsed = view.elapsed_s(now)
            parts.append(b"time: %d:%d\nelapsed: %.3f\n" % (round(elapsed), round(self._duration_s), elapsed))
        parts.append(self._tail)
        if updating_db is not None:
            parts.append(b"updating_db: %d\n" % updating_db)
        return b"".join(parts)


@mpd_command("status")
def _status(session: MpdSession) -> Any:
    scan = session.svc.library.statistics()
    text = session.server.status_text.text(
        session.svc.player.view, trio.current_time(), scan.scans if scan.running else None
    )
    error = session.server.error
    return text if error is None else text + format_pairs([("error", error)])


@mpd_command("clearerror", permission=CONTROL)
def _clearerror(session: MpdSession) -> Any:
    """Forget the error ``status`` shows (so does a command that starts playback, as in MPD)."""
    session.server.error = None
    return None


@mpd_command("currentsong")
def _currentsong(session: MpdSession) -> Any:
    view = session.svc.player.view
    if view.entry is None or view.queue_pos is None or view.song_id is None:
        return None
    return songs_text(session, [(view.queue_pos, view.song_id, view.prio, view.entry)])


async def _play_pos(session: MpdSession, pos: int | None) -> None:
    session.server.error = None  # MPD: a command that starts playback clears the error
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
    state = player.view.state
    if pause and state == "play":
        await player.pause()
    elif not pause and state == "pause":
        await player.play(None)


@mpd_command("stop", permission=CONTROL)
async def _stop(session: MpdSession) -> Any:
    await session.svc.player.stop()


async def _while_playing(session: MpdSession, call: Any) -> None:
    """``next``/``previous`` while stopped: ``ACK [55@0] Not playing``, as MPD answers."""
    if session.svc.player.view.state == "stop":
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
    view = player.view
    if pos != view.queue_pos or view.track is None:
        await _play_pos(session, pos)
        if view.state != "play":  # seeking a song while paused/stopped leaves it paused (MPD)
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
    view = player.view
    if view.track is None or view.state == "stop":
        raise AckError(Ack.PLAYER_SYNC, "Not playing")
    sign, seconds = target
    elapsed = view.elapsed_s(trio.current_time())
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
def _getvol(session: MpdSession) -> Any:
    return [("volume", session.svc.player.view.volume)]


@mpd_command("volume", "int", permission=CONTROL)
async def _volume_change(session: MpdSession, change: int) -> Any:
    if not -100 <= change <= 100:
        raise AckError(Ack.ARG, "Invalid volume value")
    current = session.svc.player.view.volume
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
def _replay_gain_status(session: MpdSession) -> Any:
    return [("replay_gain_mode", session.svc.player.view.album_mode)]


COMMANDS: Final = (
    _status, _clearerror, _currentsong, _play, _playid, _pause, _stop, _next, _previous, _seek, _seekid, _seekcur,
    _setvol, _getvol, _volume_change, _random, _repeat, _consume, _single, _crossfade, _mixrampdb,
    _replay_gain_mode, _replay_gain_status,
)  # fmt: skip
