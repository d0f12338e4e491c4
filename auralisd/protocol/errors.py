"""Wire error codes: every error reply is ``{"code": str, "message": str}``.

This module is part of the sans-IO protocol leaf: it imports nothing from ``auralisd`` or
``auralis``. The daemon's domain errors (``auralisd/errors.py``) carry one of these codes, and
the application layer (``auralisd/app/replies.py``) is the one place that turns an exception
into a reply.
"""

from __future__ import annotations

from typing import Final

from .paths import text_to_wire

BAD_REQUEST: Final = "bad_request"  # malformed frame or message shape
UNKNOWN_METHOD: Final = "unknown_method"
INVALID_PARAMS: Final = "invalid_params"
UNAUTHORIZED: Final = "unauthorized"
NOT_FOUND: Final = "not_found"
OUTSIDE_MUSIC_DIRS: Final = "outside_music_dirs"
BAD_AUDIO: Final = "bad_audio"
UNKNOWN_PRESET: Final = "unknown_preset"
EXISTS: Final = "exists"  # a name already taken (a stored playlist)
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
    EXISTS,
    INTERNAL,
)
INTERNAL_MESSAGE: Final = "internal error; see the daemon log"  # details only in the log


def error_reply(code: str, message: str) -> dict[str, str]:
    """The wire map of one error; ``code`` must be one of :data:`ERROR_CODES`."""
    if code not in ERROR_CODES:
        raise ValueError(f"unknown error code {code!r}")
    # a message may name a file whose name is not UTF-8: its bytes are written \xHH (msgpack needs UTF-8)
    return {"code": code, "message": text_to_wire(message)}
