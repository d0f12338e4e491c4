"""Audio outputs: outputs, enableoutput, disableoutput, toggleoutput over Auralis's real outputs.

The outputs actor (``auralisd/actors/outputs``) lists ``stream`` (the WebSocket ``/stream``, id 0)
and every configured output (Snapcast, Icecast...); enabling and disabling are its own, saved
before the reply, and each change is an ``output`` event (idle subsystem ``output``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from ...actors.outputs import Outputs
from ...errors import NOT_FOUND, RpcError
from ...protocol.mpd import Ack, AckError
from .table import Permission, mpd_command

if TYPE_CHECKING:
    from .session import MpdSession


def _registry(session: MpdSession) -> Outputs:
    if session.svc.outputs is None:
        raise AckError(Ack.NO_EXIST, "No such audio output")
    return session.svc.outputs


@mpd_command("outputs")
async def _outputs(session: MpdSession) -> Any:
    if session.svc.outputs is None:
        return []
    pairs: list[tuple[str, object]] = []
    for info in session.svc.outputs.list():
        pairs += [("outputid", info.output_id), ("outputname", info.name), ("plugin", info.kind),
                  ("outputenabled", info.enabled)]  # fmt: skip
    return pairs


async def _switch(session: MpdSession, output_id: int, enable: bool | None) -> None:
    registry = _registry(session)
    try:
        info = registry.find(output_id)
        if enable is None:
            enable = not info.enabled
        if enable:
            await registry.enable(output_id)
        else:
            await registry.disable(output_id)
    except RpcError as exc:
        if exc.code == NOT_FOUND:
            raise AckError(Ack.NO_EXIST, "No such audio output") from None
        raise


@mpd_command("enableoutput", "uint", permission=Permission.ADMIN)
async def _enableoutput(session: MpdSession, output_id: int) -> Any:
    await _switch(session, output_id, True)


@mpd_command("disableoutput", "uint", permission=Permission.ADMIN)
async def _disableoutput(session: MpdSession, output_id: int) -> Any:
    await _switch(session, output_id, False)


@mpd_command("toggleoutput", "uint", permission=Permission.ADMIN)
async def _toggleoutput(session: MpdSession, output_id: int) -> Any:
    await _switch(session, output_id, None)


COMMANDS: Final = (_outputs, _enableoutput, _disableoutput, _toggleoutput)
