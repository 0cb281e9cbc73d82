"""What a client sends after `start`: audio, `flush`, `stop`; and every client frame read back (the daemon's side)."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any, ClassVar

import msgpack

from .codes import CloseCode, ProtocolError
from .framing import Framing, decode_map, encode_map
from .start import Start, parse_start


@dataclass(frozen=True)
class Audio:
    type: ClassVar[str] = "audio"
    data: bytes  # samples in the encoding of `start`

    def frame(self, framing: Framing) -> bytes:
        """Audio goes in binary frames: a msgpack map, or in a JSON session the raw samples."""
        if framing is Framing.MSGPACK:
            return msgpack.packb({"type": self.type, "data": self.data}, use_bin_type=True)
        return self.data


@dataclass(frozen=True)
class Flush:
    type: ClassVar[str] = "flush"

    def body(self) -> dict[str, Any]:
        return {"type": self.type}


@dataclass(frozen=True)
class Stop:
    type: ClassVar[str] = "stop"

    def body(self) -> dict[str, Any]:
        return {"type": self.type}


ClientMessage = Start | Audio | Flush | Stop


def parse_client_message(body: Any, framing: Framing) -> ClientMessage:
    """A client's map → its message; 4400 when it is not one."""
    if not isinstance(body, dict):
        raise ProtocolError(CloseCode.MALFORMED, f"a message must be a map, got {type(body).__name__}")
    kind = body.get("type")
    if not isinstance(kind, str):
        raise ProtocolError(CloseCode.MALFORMED, "a message needs a string `type`")
    if kind == Start.type:
        return parse_start(body)
    if kind == Audio.type:
        return Audio(_audio_data(body.get("data"), framing))
    if kind == Flush.type:
        return Flush()
    if kind == Stop.type:
        return Stop()
    raise ProtocolError(CloseCode.MALFORMED, f"unknown message type {kind!r}")


def _audio_data(data: Any, framing: Framing) -> bytes:
    """An audio map's samples: bin in msgpack, base64 in JSON (whose sessions mostly send raw binary frames)."""
    if framing is Framing.MSGPACK:
        if not isinstance(data, bytes):
            raise ProtocolError(CloseCode.MALFORMED, "`data` of a msgpack audio message must be bin")
        return data
    if not isinstance(data, str):
        raise ProtocolError(CloseCode.MALFORMED, "`data` of a JSON audio message must be a base64 string")
    try:
        return base64.b64decode(data, validate=True)
    except binascii.Error as exc:
        raise ProtocolError(CloseCode.MALFORMED, f"`data` is not valid base64: {exc}") from exc


def decode_client_message(frame: bytes | str, framing: Framing) -> ClientMessage:
    """One websocket frame from a client → its message, in the session's framing."""
    if framing is Framing.JSON and not isinstance(frame, str):
        return Audio(bytes(frame))  # JSON sessions send raw samples in binary frames
    return parse_client_message(decode_map(frame, framing), framing)


def encode_client_message(message: ClientMessage, framing: Framing) -> bytes | str:
    """A client message as the frame it travels in (`decode_client_message` reads it back)."""
    if isinstance(message, Audio):
        return message.frame(framing)
    return encode_map(message.body(), framing)
