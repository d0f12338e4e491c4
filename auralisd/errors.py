"""Domain errors: the expected failures of one request that actors and the app layer raise.

An actor says *what* went wrong (``RpcError(NOT_FOUND, "no track 12")``); the application
layer (``auralisd/app/replies.py``) turns it into the wire reply. The codes are the protocol's
(``auralisd/protocol/errors.py``, the leaf every layer may import), re-exported here so an
actor needs one import.
"""

from __future__ import annotations

from .protocol.errors import (
    BAD_AUDIO,
    BAD_REQUEST,
    ERROR_CODES,
    EXISTS,
    INTERNAL,
    INVALID_PARAMS,
    NOT_FOUND,
    OUTSIDE_MUSIC_DIRS,
    UNAUTHORIZED,
    UNKNOWN_METHOD,
    UNKNOWN_PRESET,
)

__all__ = [
    "BAD_AUDIO",
    "BAD_REQUEST",
    "ERROR_CODES",
    "EXISTS",
    "INTERNAL",
    "INVALID_PARAMS",
    "NOT_FOUND",
    "OUTSIDE_MUSIC_DIRS",
    "UNAUTHORIZED",
    "UNKNOWN_METHOD",
    "UNKNOWN_PRESET",
    "RpcError",
]


class RpcError(Exception):
    """An expected failure of one request, answered with ``code`` and ``message``."""

    def __init__(self, code: str, message: str) -> None:
        if code not in ERROR_CODES:
            raise ValueError(f"unknown error code {code!r}")
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")
