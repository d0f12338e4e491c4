"""The MPD frontend's application layer: command table, session, shared server state.

``build_table()`` joins the command tuples of the modules below into one immutable table.
To add commands, write a module here whose handlers are declared with
:func:`~auralisd.app.mpd.table.mpd_command`, export them as ``COMMANDS`` and name the module
in :data:`COMMAND_MODULES` (docs/mpd.md, "How to add a command").
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from ..commands import Services
from . import connection, database, messages, outputs, playback, playlists, queue
from .server import MpdServer, SongUris
from .session import MpdSession, SessionClosed
from .songs import TAG_TYPES
from .table import Arg, MpdCommand, Permission, build_table, mpd_command

# The modules whose COMMANDS make up the table. Imported, not looked up by name: the layer test
# sees their imports, and a module that goes missing is an ImportError, not commands that vanish.
COMMAND_MODULES: Final = (connection, playback, queue, messages, outputs, database, playlists)


def command_table() -> Mapping[str, MpdCommand]:
    """The full MPD command table."""
    return build_table(*(module.COMMANDS for module in COMMAND_MODULES))


def make_server(services: Services, *, token: str | None = None) -> MpdServer:
    """The shared state of one MPD listener, with the full command table."""
    return MpdServer(services, command_table(), token=token, default_tagtypes=TAG_TYPES)


__all__ = [
    "COMMAND_MODULES", "Arg", "MpdCommand", "MpdServer", "MpdSession", "Permission", "SessionClosed", "SongUris",
    "build_table", "command_table", "make_server", "mpd_command",
]
