"""The sans-IO protocol leaf: msgpack codec with limits, audio frames, wire error codes.

Nothing here imports from the rest of ``auralisd`` (an import-linter contract says so).
"""

from .codec import Decoder, Notification, ProtocolViolation, Request, Response, encode_notification, encode_response
from .errors import ERROR_CODES, error_reply

__all__ = [
    "ERROR_CODES",
    "Decoder",
    "Notification",
    "ProtocolViolation",
    "Request",
    "Response",
    "encode_notification",
    "encode_response",
    "error_reply",
]
