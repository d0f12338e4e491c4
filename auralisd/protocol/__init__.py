"""The control protocol: sans-IO codec, error codes, and the command table."""

from .codec import Decoder, Notification, ProtocolViolation, Request, Response, encode_notification, encode_response
from .errors import RpcError, error_to_wire

__all__ = [
    "Decoder",
    "Notification",
    "ProtocolViolation",
    "Request",
    "Response",
    "RpcError",
    "encode_notification",
    "encode_response",
    "error_to_wire",
]
