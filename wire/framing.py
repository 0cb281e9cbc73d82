"""The two framings of a session (docs/protocol.md, "Framing"): maps as msgpack in binary frames, or as JSON in text frames."""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping
from typing import Any

import msgpack

from .codes import CloseCode, ProtocolError


class Framing(enum.Enum):
    MSGPACK = "msgpack"
    JSON = "json"

    @classmethod
    def of(cls, frame: bytes | str) -> Framing:
        """The framing a session's first frame picks: JSON in a text frame, msgpack in a binary one."""
        return cls.JSON if isinstance(frame, str) else cls.MSGPACK


def encode_map(body: Mapping[str, Any], framing: Framing) -> bytes | str:
    if framing is Framing.MSGPACK:
        return msgpack.packb(dict(body), use_bin_type=True)
    return json.dumps(dict(body), ensure_ascii=False, allow_nan=False)


def decode_map(frame: bytes | str, framing: Framing) -> Any:
    """What a control frame holds (a map, when the peer keeps the protocol); 4400 when it cannot be read."""
    if isinstance(frame, str):
        if framing is Framing.MSGPACK:
            raise ProtocolError(CloseCode.MALFORMED, "text frame in a msgpack session (send msgpack maps in binary frames)")
        try:
            return json.loads(frame)
        except json.JSONDecodeError as exc:
            raise ProtocolError(CloseCode.MALFORMED, f"text frame is not valid JSON: {exc}") from exc
    if framing is Framing.JSON:
        raise ProtocolError(CloseCode.MALFORMED, "binary frame where a JSON session sends text")
    try:
        return msgpack.unpackb(frame, raw=False, strict_map_key=True)
    except (msgpack.UnpackException, ValueError) as exc:
        raise ProtocolError(CloseCode.MALFORMED, f"binary frame is not msgpack ({type(exc).__name__}: {exc})") from exc
