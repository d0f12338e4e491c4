"""Wire error codes and the one exception type the command table raises.

Every error reply is ``{"code": str, "message": str}``; :func:`error_to_wire` is the one
place that turns an exception into that map.
"""

from __future__ import annotations

from typing import Final

from auralis.errors import AudioError, AuralisError, UnknownPresetError

BAD_REQUEST: Final = "bad_request"  # malformed frame or message shape
UNKNOWN_METHOD: Final = "unknown_method"
INVALID_PARAMS: Final = "invalid_params"
UNAUTHORIZED: Final = "unauthorized"
NOT_FOUND: Final = "not_found"
OUTSIDE_MUSIC_DIRS: Final = "outside_music_dirs"
BAD_AUDIO: Final = "bad_audio"
UNKNOWN_PRESET: Final = "unknown_preset"
INTERNAL: Final = "internal"
ERROR_CODES: Final = (
    BAD_REQUEST,
    UNKNOWN_METHOD,
    INVALID_PARAMS,
    UNAUTHORIZED,
    NOT_FOUND,
    OUTSIDE_MUSIC_DIRS,
    BAD_AUDIO,
    UNKNOWN_PRESET,
    INTERNAL,
)


class RpcError(Exception):
    """An expected failure of one request, answered with ``code`` and ``message``."""

    def __init__(self, code: str, message: str) -> None:
        if code not in ERROR_CODES:
            raise ValueError(f"unknown error code {code!r}")
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


def error_to_wire(exc: BaseException) -> dict[str, str]:
    """The ``{"code", "message"}`` map for an exception (unexpected ones become ``internal``)."""
    if isinstance(exc, RpcError):
        return {"code": exc.code, "message": exc.message}
    if isinstance(exc, UnknownPresetError):
        return {"code": UNKNOWN_PRESET, "message": str(exc)}
    if isinstance(exc, AudioError):
        code = NOT_FOUND if exc.code == "not_found" else BAD_AUDIO
        return {"code": code, "message": str(exc)}
    if isinstance(exc, AuralisError):
        return {"code": BAD_AUDIO if exc.code == "bad_audio" else INTERNAL, "message": str(exc)}
    return {"code": INTERNAL, "message": "internal error; see the daemon log"}  # details only in the log
