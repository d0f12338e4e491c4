"""The MPD frontend's application layer: command table, session, shared server state.

``build_table()`` joins the command tuples of the modules below into one immutable table.
To add commands, write a module here whose handlers are declared with
:func:`~auralisd.app.mpd.table.mpd_command`, export them as ``COMMANDS`` and name the module
in :data:`COMMAND_MODULES` (docs/mpd.md, "How to add a command").
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Final

from ..commands import Services
from .server import MpdServer, SongUris
from .session import MpdSession, SessionClosed
from .songs import TAG_TYPES
from .table import Arg, MpdCommand, Permission, build_table, mpd_command

# Modules whose COMMANDS make up the table (relative to this package); a module not yet
# written is skipped, so a helper can land its module and its line here in either order.
COMMAND_MODULES: Final = (
    "connection",
    "playback",
    "queue",
    "messages",
    "outputs",
    "database",  # lsinfo, list, find, search, update, ... (issue 12, the query side)
    "playlists",  # stored playlists
)


def command_table() -> Mapping[str, MpdCommand]:
    """The full MPD command table."""
    groups = []
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise
            continue
        groups.append(module.COMMANDS)
    return build_table(*groups)


def make_server(services: Services, *, token: str | None = None) -> MpdServer:
    """The shared state of one MPD listener, with the full command table."""
    return MpdServer(services, command_table(), token=token, default_tagtypes=TAG_TYPES)


__all__ = [
    "COMMAND_MODULES", "Arg", "MpdCommand", "MpdServer", "MpdSession", "Permission", "SessionClosed", "SongUris",
    "build_table", "command_table", "make_server", "mpd_command",
]
