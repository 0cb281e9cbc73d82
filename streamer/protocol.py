"""Protocol v1 (docs/protocol.md) without I/O: message dataclasses, the two codecs, the order state machine.

`SessionProtocol` is fed the frames of one connection (`receive`) and returns validated client
messages, or raises `ProtocolError` carrying the close code; it turns server messages into frames
(`encode`). It never touches a socket, so every rule here is unit-tested with plain bytes.
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import msgpack

PROTOCOL_VERSION = 1
ENCODINGS = ("pcm_s16le", "f32le")
EVENT_NAMES = ("vad",)
TASKS = ("transcribe", "translate")
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 8000, 48000
MAX_CHANNELS = 8
ENDPOINT_SILENCE = (0.1, 10.0)  # s: the bounds `stream.endpoint_silence` has in config.toml


class CloseCode(enum.IntEnum):
    NORMAL = 1000
    GOING_AWAY = 1001
    INTERNAL_ERROR = 1011
    MALFORMED = 4400
    UNAUTHORIZED = 4401
    FORBIDDEN_ORIGIN = 4403
    UNKNOWN_SESSION = 4404
    SESSION_TOO_LONG = 4408
    OUT_OF_ORDER = 4409
    FRAME_TOO_LARGE = 4413
    UNSUPPORTED = 4415
    LIMITS = 4429
    MOVED = 4503  # the replica drains (SIGTERM): committed, resume elsewhere now


class ProtocolError(Exception):
    """A client broke the protocol: send an `error` with `code`, then close with the same code."""

    def __init__(self, code: CloseCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class Framing(enum.Enum):
    MSGPACK = "msgpack"
    JSON = "json"


# ---- client → server ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Start:
    sample_rate: int = 16000
    encoding: str = "pcm_s16le"
    channels: int = 1
    language: str = "auto"
    task: str = "transcribe"
    word_timestamps: bool = True
    languages: tuple[str, ...] = ()  # with `auto`: detection chooses among these (empty: the config's)
    events: tuple[str, ...] = ()
    version: int = PROTOCOL_VERSION
    resume: Mapping[str, Any] | None = None
    prompt: str = ""  # initial decoder context (the drop-in interfaces' keyterms / prompt; not on the v1 wire)
    commit_policy: str = ""  # when words become stable; empty: the daemon's stream.commit_policy
    endpoint_silence: float | None = None  # s of silence that ends an utterance; None: the daemon's

    def __post_init__(self) -> None:
        if self.version != PROTOCOL_VERSION:
            raise ProtocolError(CloseCode.UNSUPPORTED, f"unsupported protocol version {self.version} (this server speaks 1)")
        if not MIN_SAMPLE_RATE <= self.sample_rate <= MAX_SAMPLE_RATE:
            raise ProtocolError(CloseCode.UNSUPPORTED, f"sample_rate must be {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE}, got {self.sample_rate}")
        if self.encoding not in ENCODINGS:
            raise ProtocolError(CloseCode.UNSUPPORTED, f"encoding must be one of {list(ENCODINGS)}, got {self.encoding!r}")
        if not 1 <= self.channels <= MAX_CHANNELS:
            raise ProtocolError(CloseCode.UNSUPPORTED, f"channels must be 1..{MAX_CHANNELS}, got {self.channels}")
        if self.task not in TASKS:
            raise ProtocolError(CloseCode.UNSUPPORTED, f"task must be one of {list(TASKS)}, got {self.task!r}")
        unknown = [e for e in self.events if e not in EVENT_NAMES]
        if unknown:
            raise ProtocolError(CloseCode.UNSUPPORTED, f"unknown event(s) {unknown}; known: {list(EVENT_NAMES)}")
        if self.endpoint_silence is not None and not ENDPOINT_SILENCE[0] <= self.endpoint_silence <= ENDPOINT_SILENCE[1]:
            raise ProtocolError(CloseCode.UNSUPPORTED, f"endpoint_silence must be in {ENDPOINT_SILENCE[0]}..{ENDPOINT_SILENCE[1]} s, got {self.endpoint_silence}")

    @property
    def bytes_per_frame(self) -> int:
        """Bytes of one sample across all channels."""
        return (2 if self.encoding == "pcm_s16le" else 4) * self.channels


@dataclass(frozen=True)
class Audio:
    data: bytes


@dataclass(frozen=True)
class Flush:
    pass


@dataclass(frozen=True)
class Stop:
    pass


ClientMessage = Start | Audio | Flush | Stop


# ---- server → client ---------------------------------------------------------------------------


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
    text: str
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
    fatal: bool = True


@dataclass(frozen=True)
class End:
    type: ClassVar[str] = "end"
    last_stable_id: int
    audio_seconds: float


ServerMessage = Ready | LanguageDetected | Partial | Stable | VadEvent | ErrorMessage | End


def server_message_to_dict(message: ServerMessage, *, word_timestamps: bool = True) -> dict[str, Any]:
    body = {"type": message.type, **asdict(message)}
    if "words" in body:
        if word_timestamps:
            body["words"] = [dict(w) for w in body["words"]]
        else:
            del body["words"]
    for key in ("start", "end", "time", "audio_seconds"):
        if key in body:
            body[key] = round(float(body[key]), 3)
    if "words" in body:
        for w in body["words"]:
            w["start"], w["end"], w["probability"] = round(w["start"], 3), round(w["end"], 3), round(w["probability"], 4)
    return body


# ---- decoding of client frames ----------------------------------------------------------------


def _field(body: Mapping[str, Any], key: str, kind: type | tuple[type, ...], default: Any) -> Any:
    if key not in body:
        return default
    value = body[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    # bool is an int in Python; a JSON `true` is never a valid sample rate.
    if isinstance(value, bool) and bool not in kinds:
        raise ProtocolError(CloseCode.MALFORMED, f"`{key}` must be {kinds[0].__name__}, got {value!r}")
    if not isinstance(value, kinds):
        raise ProtocolError(CloseCode.MALFORMED, f"`{key}` must be {kinds[0].__name__}, got {type(value).__name__}")
    return value


def parse_start(body: Mapping[str, Any]) -> Start:
    events = _field(body, "events", list, [])
    if not all(isinstance(e, str) for e in events):
        raise ProtocolError(CloseCode.MALFORMED, "`events` must be a list of strings")
    resume = _field(body, "resume", dict, None)
    languages = _field(body, "languages", list, [])
    if not all(isinstance(code, str) for code in languages):
        raise ProtocolError(CloseCode.MALFORMED, "`languages` must be a list of strings")
    return Start(
        languages=tuple(languages),
        version=_field(body, "version", int, PROTOCOL_VERSION),
        sample_rate=_field(body, "sample_rate", int, 16000),
        encoding=_field(body, "encoding", str, "pcm_s16le"),
        channels=_field(body, "channels", int, 1),
        language=_field(body, "language", str, "auto"),
        task=_field(body, "task", str, "transcribe"),
        word_timestamps=_field(body, "word_timestamps", bool, True),
        events=tuple(events),
        resume=resume,
        commit_policy=_field(body, "commit_policy", str, ""),
        endpoint_silence=_field(body, "endpoint_silence", (float, int), None),
    )


def _parse_map(body: Any, framing: Framing) -> ClientMessage:
    if not isinstance(body, dict):
        raise ProtocolError(CloseCode.MALFORMED, f"a message must be a map, got {type(body).__name__}")
    kind = body.get("type")
    if not isinstance(kind, str):
        raise ProtocolError(CloseCode.MALFORMED, "a message needs a string `type`")
    if kind == "start":
        return parse_start(body)
    if kind == "audio":
        data = body.get("data")
        if framing is Framing.JSON:
            if not isinstance(data, str):
                raise ProtocolError(CloseCode.MALFORMED, "`data` of a JSON audio message must be a base64 string")
            try:
                return Audio(base64.b64decode(data, validate=True))
            except binascii.Error as exc:
                raise ProtocolError(CloseCode.MALFORMED, f"`data` is not valid base64: {exc}") from exc
        if not isinstance(data, bytes):
            raise ProtocolError(CloseCode.MALFORMED, "`data` of a msgpack audio message must be bin")
        return Audio(data)
    if kind == "flush":
        return Flush()
    if kind == "stop":
        return Stop()
    raise ProtocolError(CloseCode.MALFORMED, f"unknown message type {kind!r}")


def decode_frame(frame: bytes | str, framing: Framing) -> ClientMessage:
    """One websocket frame → one client message, in the session's framing."""
    if isinstance(frame, str):
        if framing is Framing.MSGPACK:
            raise ProtocolError(CloseCode.MALFORMED, "text frame in a msgpack session (send msgpack maps in binary frames)")
        try:
            body = json.loads(frame)
        except json.JSONDecodeError as exc:
            raise ProtocolError(CloseCode.MALFORMED, f"text frame is not valid JSON: {exc}") from exc
        return _parse_map(body, framing)
    if framing is Framing.JSON:
        return Audio(bytes(frame))  # JSON sessions send raw samples in binary frames
    try:
        body = msgpack.unpackb(frame, raw=False, strict_map_key=True)
    except (msgpack.UnpackException, ValueError) as exc:
        raise ProtocolError(CloseCode.MALFORMED, f"binary frame is not msgpack ({type(exc).__name__}: {exc})") from exc
    return _parse_map(body, framing)


# ---- the per-connection state machine --------------------------------------------------------


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
            framing = Framing.JSON if isinstance(frame, str) else Framing.MSGPACK
            message = decode_frame(frame, framing)
            if not isinstance(message, Start):
                raise ProtocolError(CloseCode.OUT_OF_ORDER, f"the first message must be `start`, got `{_type_name(message)}`")
            self.framing, self.start, self.state = framing, message, ProtocolState.STREAMING
            return message
        assert self.framing is not None
        message = decode_frame(frame, self.framing)
        if isinstance(message, Start):
            raise ProtocolError(CloseCode.OUT_OF_ORDER, "second `start` in one session")
        if isinstance(message, Stop):
            self.state = ProtocolState.STOPPED
        return message

    def adopt_framing_of(self, frame: bytes | str) -> None:
        """Answers in the framing of `frame` without reading it (a refused client's first frame)."""
        self.framing = Framing.JSON if isinstance(frame, str) else Framing.MSGPACK

    def encode(self, message: ServerMessage) -> bytes | str:
        """A server message as a frame in the session's framing (JSON before `start` is known)."""
        word_timestamps = self.start.word_timestamps if self.start is not None else True
        body = server_message_to_dict(message, word_timestamps=word_timestamps)
        if self.framing is Framing.MSGPACK:
            return msgpack.packb(body, use_bin_type=True)
        return json.dumps(body, ensure_ascii=False, allow_nan=False)


def _type_name(message: ClientMessage) -> str:
    return type(message).__name__.lower()

