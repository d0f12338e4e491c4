"""Connection and server commands: ping, close, password, idle, commands, tagtypes, stats, ...

All but ``stats`` are plain functions: they answer from the session's own state, awaiting nothing."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Final

from ...protocol.mpd import Ack, AckError
from .session import MAX_BINARY_LIMIT, MIN_BINARY_LIMIT, SUBSYSTEMS
from .songs import MPD_TAG_NAMES, TAG_TYPES, canonical_tag
from .table import Permission, mpd_command

if TYPE_CHECKING:
    from .session import MpdSession

NONE: Final = Permission.NONE

# Pseudo-commands the session handles itself; ``commands`` lists them as MPD does.
SESSION_COMMANDS: Final = ("command_list_begin", "command_list_ok_begin", "command_list_end", "noidle")


@mpd_command("ping", permission=NONE)
def _ping(session: MpdSession) -> Any:
    return None


@mpd_command("close", permission=NONE)
def _close(session: MpdSession) -> Any:
    session.close()


@mpd_command("binarylimit", "str", permission=NONE)
def _binarylimit(session: MpdSession, size_text: str) -> Any:
    # MPD parses the size as C's strtoul does: digits only, and a value above the bound (a "-5" wraps
    # to one) is "Number too large"; then below 64 is "Value too small"
    digits = size_text[1:] if size_text[:1] in ("+", "-") else size_text
    if not (digits.isascii() and digits.isdigit()):
        raise AckError(Ack.ARG, f"Integer expected: {size_text}")
    size = int(digits)
    if size > MAX_BINARY_LIMIT or (size_text[0] == "-" and size):
        raise AckError(Ack.ARG, f"Number too large: {size_text}")
    if size < MIN_BINARY_LIMIT:
        raise AckError(Ack.ARG, "Value too small")
    session.binary_limit = size


@mpd_command("password", "str", permission=NONE)
def _password(session: MpdSession, password: str) -> Any:
    if not session.check_password(password):
        raise AckError(Ack.PASSWORD, "incorrect password")


@mpd_command("idle", rest="str", permission=Permission.READ)
def _idle(session: MpdSession, names: tuple[str, ...]) -> Any:
    for name in names:
        if name not in SUBSYSTEMS:
            raise AckError(Ack.ARG, f"Unrecognized idle event: {name}")
    return session.start_idle(names)


@mpd_command("commands", permission=NONE)
def _commands(session: MpdSession) -> Any:
    allowed = [c.name for c in session.server.table.values() if not c.permission & ~session.permissions]
    return [("command", name) for name in sorted([*allowed, *SESSION_COMMANDS])]


@mpd_command("notcommands", permission=NONE)
def _notcommands(session: MpdSession) -> Any:
    refused = [c.name for c in session.server.table.values() if c.permission & ~session.permissions]
    return [("command", name) for name in sorted(refused)]


@mpd_command("tagtypes", rest="str")
def _tagtypes(session: MpdSession, args: tuple[str, ...]) -> Any:
    if not args:
        return [("tagtype", tag) for tag in TAG_TYPES if tag in session.tagtypes]
    verb, names = args[0], args[1:]
    if verb in ("all", "clear"):
        if names:
            raise AckError(Ack.ARG, "Too many arguments")
        session.tagtypes = set(MPD_TAG_NAMES) if verb == "all" else set()
        return None
    if verb not in ("enable", "disable"):
        raise AckError(Ack.ARG, "Unknown sub command")
    if not names:
        raise AckError(Ack.ARG, "Not enough arguments")
    tags = []
    for name in names:
        tag = canonical_tag(name)
        if tag is None:
            raise AckError(Ack.ARG, "Unknown tag type")
        tags.append(tag)
    if verb == "enable":
        session.tagtypes.update(tags)
    else:
        session.tagtypes.difference_update(tags)
    return None


@mpd_command("urlhandlers")
def _urlhandlers(session: MpdSession) -> Any:
    return []  # Auralis plays files from its music folders only; no stream URLs


@mpd_command("decoders")
def _decoders(session: MpdSession) -> Any:
    # One decoder plugin in MPD's terms: libsndfile, then PyAV (FFmpeg) for what it cannot read.
    suffixes = ("flac", "wav", "aiff", "aif", "ogg", "oga", "opus", "mp3", "m4a", "mp4", "aac", "alac", "wv",
                "ape", "wma", "dsf", "dff")  # fmt: skip
    return [("plugin", "auralis"), *(("suffix", s) for s in suffixes)]


@mpd_command("config", permission=Permission.ADMIN)
def _config(session: MpdSession) -> Any:
    if not session.local:
        raise AckError(Ack.PERMISSION, "Command only permitted to local clients")
    return []


@mpd_command("stats")
async def _stats(session: MpdSession) -> Any:
    stats = await session.svc.stats()  # the same totals as the control protocol's library.stats
    return [
        ("uptime", int(time.monotonic() - session.server.started_at)),
        ("playtime", int(stats["playtime_s"])),
        ("artists", stats["artists"]),
        ("albums", stats["albums"]),
        ("songs", stats["songs"]),
        ("db_playtime", int(stats["db_playtime_s"])),
        ("db_update", int(stats["db_update_s"] or 0)),
    ]


COMMANDS: Final = (
    _ping, _close, _binarylimit, _password, _idle, _commands, _notcommands, _tagtypes, _urlhandlers, _decoders, _config, _stats,
)  # fmt: skip
