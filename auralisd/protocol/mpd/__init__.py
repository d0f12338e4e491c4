"""MPD's text protocol, sans-IO: tokenizer, response formatting, ACK errors, command-list framing.

A leaf like the rest of ``auralisd/protocol``: it imports nothing else of ours, no trio.
"""

from .errors import Ack, AckError
from .framing import (
    MAX_COMMAND_LIST_BYTES,
    MAX_LINE_BYTES,
    CommandListFramer,
    CommandListTooLong,
    LineSplitter,
    LineTooLong,
    Run,
)
from .response import GREETING, LIST_OK, OK, PROTOCOL_VERSION, binary_chunk, format_pairs, format_value, parse_pairs
from .tokenizer import CommandWordError, join, quote, tokenize

__all__ = [
    "GREETING", "LIST_OK", "MAX_COMMAND_LIST_BYTES", "MAX_LINE_BYTES", "OK", "PROTOCOL_VERSION", "Ack", "AckError",
    "CommandListFramer", "CommandWordError", "CommandListTooLong", "LineSplitter", "LineTooLong", "Run", "binary_chunk", "format_pairs",
    "format_value", "join", "parse_pairs", "quote", "tokenize",
]
