"""Audio outputs: outputs, enableoutput, disableoutput, toggleoutput.

Auralis's output today is the WebSocket ``/stream`` of the HTTP port (every browser or
``auralisctl listen`` that connects hears the shared player). It is always on: disabling it
is refused with a clear error rather than pretended.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from ...protocol.mpd import Ack, AckError
from .table import Permission, mpd_command

if TYPE_CHECKING:
    from .session import MpdSession

STREAM_OUTPUT: Final = (0, "WebSocket /stream", "websocket")  # id, name, plugin


@mpd_command("outputs")
async def _outputs(session: MpdSession) -> Any:
    output_id, name, plugin = STREAM_OUTPUT
    return [("outputid", output_id), ("outputname", name), ("plugin", plugin), ("outputenabled", True)]


def _check(output_id: int) -> None:
    if output_id != STREAM_OUTPUT[0]:
        raise AckError(Ack.NO_EXIST, "No such audio output")


@mpd_command("enableoutput", "uint", permission=Permission.ADMIN)
async def _enableoutput(session: MpdSession, output_id: int) -> Any:
    _check(output_id)  # always enabled


@mpd_command("disableoutput", "uint", permission=Permission.ADMIN)
async def _disableoutput(session: MpdSession, output_id: int) -> Any:
    _check(output_id)
    raise AckError(Ack.SYSTEM, "the /stream output is always on (listeners disconnect to stop hearing it)")


@mpd_command("toggleoutput", "uint", permission=Permission.ADMIN)
async def _toggleoutput(session: MpdSession, output_id: int) -> Any:
    _check(output_id)
    raise AckError(Ack.SYSTEM, "the /stream output is always on (listeners disconnect to stop hearing it)")


COMMANDS: Final = (_outputs, _enableoutput, _disableoutput, _toggleoutput)
