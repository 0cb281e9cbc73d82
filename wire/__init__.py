"""Protocol v1 (docs/protocol.md), written once: the schema the daemon and every client put on the wire.

Standard library and msgpack only, so any client can take it without the daemon's dependencies.
`start` (the settings, validated in one place), the client's other messages, the server's
messages (to their maps and back), the framings, the constants and the close codes.
"""

from .client_messages import Audio, ClientMessage, Flush, Stop, decode_client_message, encode_client_message, parse_client_message
from .codes import CloseCode, ProtocolError
from .constants import BYTES_PER_SAMPLE, ENCODINGS, ENDPOINT_SILENCE, EVENTS, MAX_CHANNELS, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, PROTOCOL_VERSION, TASKS
from .framing import Framing, decode_map, encode_map
from .server_messages import (
    End,
    ErrorMessage,
    LanguageDetected,
    Partial,
    Ready,
    ServerMessage,
    Stable,
    VadEvent,
    WordTiming,
    parse_server_message,
    server_message_body,
)
from .start import Start, parse_start

__all__ = [
    "BYTES_PER_SAMPLE",
    "ENCODINGS",
    "ENDPOINT_SILENCE",
    "EVENTS",
    "MAX_CHANNELS",
    "MAX_SAMPLE_RATE",
    "MIN_SAMPLE_RATE",
    "PROTOCOL_VERSION",
    "TASKS",
    "Audio",
    "ClientMessage",
    "CloseCode",
    "End",
    "ErrorMessage",
    "Flush",
    "Framing",
    "LanguageDetected",
    "Partial",
    "ProtocolError",
    "Ready",
    "ServerMessage",
    "Stable",
    "Start",
    "Stop",
    "VadEvent",
    "WordTiming",
    "decode_client_message",
    "decode_map",
    "encode_client_message",
    "encode_map",
    "parse_client_message",
    "parse_server_message",
    "parse_start",
    "server_message_body",
]
