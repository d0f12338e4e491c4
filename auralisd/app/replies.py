"""The one place an exception becomes an error reply ``{"code", "message"}``."""

from __future__ import annotations

from auralis.errors import AudioError, AuralisError, UnknownPresetError

from ..errors import RpcError
from ..jobs import JobFailed
from ..protocol.errors import BAD_AUDIO, INTERNAL, INTERNAL_MESSAGE, NOT_FOUND, UNKNOWN_PRESET, error_reply


def error_to_wire(exc: BaseException) -> dict[str, str]:
    """The ``{"code", "message"}`` map for an exception (unexpected ones become ``internal``)."""
    if isinstance(exc, RpcError):
        return error_reply(exc.code, exc.message)
    if isinstance(exc, UnknownPresetError):
        return error_reply(UNKNOWN_PRESET, str(exc))
    if isinstance(exc, AudioError):
        return error_reply(NOT_FOUND if exc.code == "not_found" else BAD_AUDIO, str(exc))
    if isinstance(exc, AuralisError) and exc.code == "bad_audio":
        return error_reply(BAD_AUDIO, str(exc))
    return error_reply(INTERNAL, INTERNAL_MESSAGE)


def is_expected_failure(exc: BaseException) -> bool:
    """A failure of the request's subject (bad audio, a failed job), not a bug: no traceback in the log."""
    return isinstance(exc, (RpcError, AuralisError, JobFailed))
