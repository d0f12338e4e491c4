"""Client-to-client messages (subscribe, unsubscribe, channels, sendmessage, readmessages) and the
``auralis`` channel: ``preset NAME`` and ``intensity X`` sent there change the mastering, and every
new mastering decision is posted there (:func:`decision_text`)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Final

import trio

from ...protocol.mpd import Ack, AckError
from .server import AURALIS_CHANNEL, MAX_SUBSCRIPTIONS, MpdServer, valid_channel
from .table import Permission, mpd_command

if TYPE_CHECKING:
    from .session import MpdSession

log = logging.getLogger("auralisd.mpd")


@mpd_command("subscribe", "str")
def _subscribe(session: MpdSession, channel: str) -> Any:
    if not valid_channel(channel):
        raise AckError(Ack.ARG, "invalid channel name")
    if len(session.channels) >= MAX_SUBSCRIPTIONS and channel not in session.channels:
        raise AckError(Ack.PLAYLIST_MAX, "too many subscriptions")
    if not session.server.broker.subscribe(session, channel):
        raise AckError(Ack.EXIST, "already subscribed to this channel")


@mpd_command("unsubscribe", "str")
def _unsubscribe(session: MpdSession, channel: str) -> Any:
    if not session.server.broker.unsubscribe(session, channel):
        raise AckError(Ack.NO_EXIST, "not subscribed to this channel")


@mpd_command("channels")
def _channels(session: MpdSession) -> Any:
    return [("channel", name) for name in session.server.broker.channels()]


@mpd_command("readmessages")
def _readmessages(session: MpdSession) -> Any:
    messages, session.messages = session.messages, []
    out: list[tuple[str, object]] = []
    for channel, text in messages:
        out += [("channel", channel), ("message", text)]
    return out


@mpd_command("sendmessage", "str", "str", permission=Permission.CONTROL)
async def _sendmessage(session: MpdSession, channel: str, text: str) -> Any:
    if not valid_channel(channel):
        raise AckError(Ack.ARG, "invalid channel name")
    if channel == AURALIS_CHANNEL:
        await apply_auralis_message(session, text)
        session.server.broker.post(channel, text)
        return
    if session.server.broker.post(channel, text) == 0:
        raise AckError(Ack.NO_EXIST, "nobody is subscribed to this channel")


async def apply_auralis_message(session: MpdSession, text: str) -> None:
    """``preset NAME`` or ``intensity X`` (0..1): the same facades as the control protocol's
    ``preset.set`` and ``intensity.set``."""
    from auralis.presets import PRESET_NAMES  # names only; the same list preset.set checks

    verb, _, value = text.strip().partition(" ")
    value = value.strip()
    player = session.svc.player
    if verb == "preset":
        if value not in PRESET_NAMES:
            raise AckError(Ack.ARG, f"unknown preset {value[:64]!r}; valid presets: {', '.join(PRESET_NAMES)}")
        await player.set_preset(value)
    elif verb == "intensity":
        try:
            intensity = float(value)
        except ValueError:
            raise AckError(Ack.ARG, f"Float expected: {value[:64]}") from None
        if not 0.0 <= intensity <= 1.0:
            raise AckError(Ack.ARG, "intensity must be between 0 and 1")
        await player.set_intensity(intensity)
    else:
        raise AckError(Ack.ARG, "the auralis channel takes 'preset NAME' or 'intensity X'")


def decision_text(event: dict[str, Any], uri: str | None) -> str:
    """One line for a ``mastering`` event: preset, intensity, scope, region, gain and the decision."""
    plan = event.get("plan") or {}
    gain = plan.get("gain_db")
    parts = [
        "decision",
        f"preset={plan.get('preset')}",
        f"intensity={plan.get('intensity')}",
        f"mode={event.get('album_mode')}",
        f"scope={event.get('plan_scope')}",
        f"region={plan.get('region')}",
        f"gain_db={gain:+.2f}" if isinstance(gain, (int, float)) else "gain_db=none",
    ]
    if uri is not None:
        parts.append(f"file={uri}")
    decision = event.get("decision")
    line = " ".join(parts)
    return f"{line}: {decision}" if decision else line


async def post_decisions(server: MpdServer) -> None:
    """Post every new mastering decision on the ``auralis`` channel (run for the server's lifetime).

    Cancellation: stops at once; the hub subscription is removed.
    """
    hub = server.services.hub
    while True:
        sub = hub.subscribe(frozenset({"mastering"}))
        try:
            async for event in sub.receive:
                uri = None
                track_id = event.data.get("track_id")
                if isinstance(track_id, int):
                    track = await server.services.db.get_track(track_id)
                    uri = None if track is None else server.uris.uri(track.path)
                server.broker.post(AURALIS_CHANNEL, decision_text(event.data, uri))
        finally:
            hub.unsubscribe(sub)
        await trio.lowlevel.checkpoint()


COMMANDS: Final = (_subscribe, _unsubscribe, _channels, _readmessages, _sendmessage)
