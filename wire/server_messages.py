"""What the daemon sends (docs/protocol.md, "Server → client"): the messages, to their maps and back."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from .codes import CloseCode, ProtocolError
from .constants import PROTOCOL_VERSION
from .fields import NUMBER, read


@dataclass(frozen=True)
class WordTiming:
    word: str  # with its leading space, as Whisper writes it
    start: float
    end: float
    probability: float


@dataclass(frozen=True)
class Ready:
    type: ClassVar[str] = "ready"
    session_id: str
    model: str
    sample_rate: int
    protocol: int = PROTOCOL_VERSION
    resumed: bool = False  # this connection took back a dropped stream
    audio_seconds: float = 0.0  # audio the server holds (client time): a resuming client resends from here


@dataclass(frozen=True)
class LanguageDetected:
    type: ClassVar[str] = "language"
    language: str
    probability: float


@dataclass(frozen=True)
class Partial:
    type: ClassVar[str] = "partial"
    text: str  # replaces the previous partial; empty clears it
    start: float
    end: float
    words: tuple[WordTiming, ...] = ()


@dataclass(frozen=True)
class Stable:
    type: ClassVar[str] = "stable"
    id: int
    start: float
    end: float
    text: str  # keeps its first word's leading space, so stable texts joined give the transcript
    words: tuple[WordTiming, ...]
    language: str


@dataclass(frozen=True)
class VadEvent:
    type: ClassVar[str] = "vad"
    event: str  # speech_start | speech_end
    time: float


@dataclass(frozen=True)
class ErrorMessage:
    type: ClassVar[str] = "error"
    code: int
    message: str
    fatal: bool = True  # False: a warning (4429 "daemon overloaded")


@dataclass(frozen=True)
class End:
    type: ClassVar[str] = "end"
    last_stable_id: int
    audio_seconds: float


ServerMessage = Ready | LanguageDetected | Partial | Stable | VadEvent | ErrorMessage | End


def server_message_body(message: ServerMessage, *, word_timestamps: bool = True) -> dict[str, Any]:
    """The map of `message`; times to the millisecond, without `words` for a stream that asked for none."""
    body = {"type": message.type, **asdict(message)}
    if "words" in body:
        if word_timestamps:
            body["words"] = [dict(w) for w in body["words"]]
        else:
            del body["words"]
    for key in ("start", "end", "time", "audio_seconds"):
        if key in body:
            body[key] = round(float(body[key]), 3)
    for w in body.get("words", ()):
        w["start"], w["end"], w["probability"] = round(w["start"], 3), round(w["end"], 3), round(w["probability"], 4)
    return body


def parse_server_message(body: Any) -> ServerMessage:
    """A daemon's map → its message; 4400 when it is not one. Keys with a sensible default may be left out."""
    if not isinstance(body, Mapping) or not isinstance(body.get("type"), str):
        raise ProtocolError(CloseCode.MALFORMED, f"server message is not a map with a string `type`: {body!r}")
    parse = _PARSERS.get(body["type"])
    if parse is None:
        raise ProtocolError(CloseCode.MALFORMED, f"unknown server message type {body['type']!r}")
    return parse(body)


def _words(body: Mapping[str, Any]) -> tuple[WordTiming, ...]:
    words = []
    for w in read(body, "words", list, []):  # absent for a stream without word timestamps
        if not isinstance(w, Mapping):
            raise ProtocolError(CloseCode.MALFORMED, f"word is not a map: {w!r}")
        words.append(WordTiming(read(w, "word", str), float(read(w, "start", NUMBER)), float(read(w, "end", NUMBER)), float(read(w, "probability", NUMBER, 0.0))))
    return tuple(words)


def _ready(body: Mapping[str, Any]) -> Ready:
    return Ready(
        session_id=read(body, "session_id", str),
        model=read(body, "model", str, ""),
        sample_rate=read(body, "sample_rate", int, 0),
        protocol=read(body, "protocol", int),
        resumed=read(body, "resumed", bool, False),
        audio_seconds=float(read(body, "audio_seconds", NUMBER, 0.0)),
    )


def _stable(body: Mapping[str, Any]) -> Stable:
    start, end = float(read(body, "start", NUMBER)), float(read(body, "end", NUMBER))
    return Stable(read(body, "id", int), start, end, read(body, "text", str), _words(body), read(body, "language", str, ""))


_PARSERS: dict[str, Callable[[Mapping[str, Any]], ServerMessage]] = {
    Ready.type: _ready,
    LanguageDetected.type: lambda body: LanguageDetected(read(body, "language", str), float(read(body, "probability", NUMBER, 1.0))),
    Partial.type: lambda body: Partial(read(body, "text", str), float(read(body, "start", NUMBER, 0.0)), float(read(body, "end", NUMBER, 0.0)), _words(body)),
    Stable.type: _stable,
    VadEvent.type: lambda body: VadEvent(read(body, "event", str), float(read(body, "time", NUMBER))),
    ErrorMessage.type: lambda body: ErrorMessage(read(body, "code", int), read(body, "message", str, ""), read(body, "fatal", bool, True)),
    End.type: lambda body: End(read(body, "last_stable_id", int), float(read(body, "audio_seconds", NUMBER, 0.0))),
}
