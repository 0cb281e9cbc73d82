"""The daemon's side of protocol v1 (docs/protocol.md) without I/O: the order state machine of one connection.

`SessionProtocol` is fed the frames of one connection (`receive`) and returns validated client
messages, or raises `ProtocolError` carrying the close code; it turns server messages into frames
(`encode`). It never touches a socket, so every rule here is unit-tested with plain bytes. The
messages and their codecs are the schema's, in `wire`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from wire import (
    ClientMessage,
    CloseCode,
    Framing,
    ProtocolError,
    ServerMessage,
    Start,
    Stop,
    decode_client_message,
    encode_map,
    server_message_body,
)


class ProtocolState(enum.Enum):
    AWAIT_START = "await_start"
    STREAMING = "streaming"
    STOPPED = "stopped"  # `stop` received: nothing more may come


@dataclass
class SessionProtocol:
    """Order and framing of one connection; no I/O.

    Owned by the connection's handler task; never shared.
    """

    max_frame_bytes: int
    state: ProtocolState = ProtocolState.AWAIT_START
    framing: Framing | None = None
    start: Start | None = field(default=None)

    def receive(self, frame: bytes | str) -> ClientMessage:
        """Validates one incoming frame against size, framing and order; returns its message."""
        size = len(frame) if isinstance(frame, (bytes, bytearray, memoryview)) else len(frame.encode("utf-8"))
        if size > self.max_frame_bytes:
            raise ProtocolError(CloseCode.FRAME_TOO_LARGE, f"frame of {size} bytes exceeds the maximum of {self.max_frame_bytes}")
        if self.state is ProtocolState.STOPPED:
            raise ProtocolError(CloseCode.OUT_OF_ORDER, "message after `stop`")
        if self.state is ProtocolState.AWAIT_START:
            framing = Framing.of(frame)
            message = decode_client_message(frame, framing)
            if not isinstance(message, Start):
                raise ProtocolError(CloseCode.OUT_OF_ORDER, f"the first message must be `start`, got `{message.type}`")
            self.framing, self.start, self.state = framing, message, ProtocolState.STREAMING
            return message
        assert self.framing is not None
        message = decode_client_message(frame, self.framing)
        if isinstance(message, Start):
            raise ProtocolError(CloseCode.OUT_OF_ORDER, "second `start` in one session")
        if isinstance(message, Stop):
            self.state = ProtocolState.STOPPED
        return message

    def adopt_framing_of(self, frame: bytes | str) -> None:
        """Answers in the framing of `frame` without reading it (a refused client's first frame)."""
        self.framing = Framing.of(frame)

    def encode(self, message: ServerMessage) -> bytes | str:
        """A server message as a frame in the session's framing (JSON before `start` is known)."""
        word_timestamps = self.start.word_timestamps if self.start is not None else True
        return encode_map(server_message_body(message, word_timestamps=word_timestamps), self.framing or Framing.JSON)
