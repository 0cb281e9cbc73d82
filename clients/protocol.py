"""The client side of protocol v1 (docs/protocol.md), without I/O.

Message dataclasses for what the server sends, the two framings (msgpack, JSON), and
`ClientProtocol`: a state machine fed the frames of one connection that checks the order of
both sides and keeps the transcript (stable segments, the current partial, the language).
`clients.connection` puts a websocket under it.
"""

from __future__ import annotations

import enum
import json
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgpack

PROTOCOL_VERSION = 1
ENCODINGS = ("pcm_s16le", "f32le")
BYTES_PER_SAMPLE = {"pcm_s16le": 2, "f32le": 4}
TASKS = ("transcribe", "translate")
EVENTS = ("vad",)
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 8000, 48000
MAX_CHANNELS = 8
NORMAL_CLOSE = 1000
GOING_AWAY_CLOSE = 1001  # the daemon shut down (it or a replica behind the same address may come back)
LOST_CLOSE = 1006  # no close frame: the connection (or the replica) died
MOVED_CLOSE = 4503  # the replica drains: its text is committed, resume elsewhere now
RESUMABLE_CLOSES = frozenset({GOING_AWAY_CLOSE, LOST_CLOSE, MOVED_CLOSE})


class ServerProtocolError(Exception):
    """The server sent something the protocol does not allow (a bug there, or not a whisper-streamer)."""


class ClientOrderError(Exception):
    """This client tried to send a message out of the protocol's order (a bug here)."""


class Framing(enum.Enum):
    MSGPACK = "msgpack"
    JSON = "json"


# ---- client → server ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StartOptions:
    """The `start` message's settings, checked against the protocol's ranges before anything is sent."""

    sample_rate: int = 16000
    encoding: str = "pcm_s16le"
    channels: int = 1
    language: str = "auto"
    task: str = "transcribe"
    word_timestamps: bool = True
    events: tuple[str, ...] = ()
    languages: tuple[str, ...] = ()  # with language auto: detection chooses among these
    resume_session_id: str | None = None
    resume_last_stable_id: int = -1

    def __post_init__(self) -> None:
        if not MIN_SAMPLE_RATE <= self.sample_rate <= MAX_SAMPLE_RATE:
            raise ValueError(f"sample_rate must be {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz, got {self.sample_rate}")
        if self.encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {ENCODINGS}, got {self.encoding!r}")
        if not 1 <= self.channels <= MAX_CHANNELS:
            raise ValueError(f"channels must be 1..{MAX_CHANNELS}, got {self.channels}")
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        if not self.language:
            raise ValueError("language must be a language code or 'auto'")
        unknown = [e for e in self.events if e not in EVENTS]
        if unknown:
            raise ValueError(f"unknown events {unknown}: known are {EVENTS}")

    @property
    def bytes_per_frame(self) -> int:
        """Bytes of one sample on every channel: audio frames are whole multiples of this."""
        return BYTES_PER_SAMPLE[self.encoding] * self.channels

    def message(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "type": "start",
            "version": PROTOCOL_VERSION,
            "sample_rate": self.sample_rate,
            "encoding": self.encoding,
            "channels": self.channels,
            "language": self.language,
            "task": self.task,
            "word_timestamps": self.word_timestamps,
            "events": list(self.events),
        }
        if self.languages:
            body["languages"] = list(self.languages)
        if self.resume_session_id is not None:
            body["resume"] = {"session_id": self.resume_session_id, "last_stable_id": self.resume_last_stable_id}
        return body


# ---- server → client ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Word:
    word: str
    start: float
    end: float
    probability: float


@dataclass(frozen=True)
class Ready:
    session_id: str
    protocol: int
    model: str
    sample_rate: int
    resumed: bool = False
    audio_seconds: float = 0.0  # on a resume: the audio the server holds; the client resends what follows


@dataclass(frozen=True)
class Language:
    language: str
    probability: float


@dataclass(frozen=True)
class Partial:
    text: str
    start: float
    end: float
    words: tuple[Word, ...] = ()


@dataclass(frozen=True)
class Stable:
    id: int
    start: float
    end: float
    text: str
    words: tuple[Word, ...] = ()
    language: str | None = None


@dataclass(frozen=True)
class VadEvent:
    event: str
    time: float


@dataclass(frozen=True)
class ErrorMessage:
    code: int
    message: str
    fatal: bool = True


@dataclass(frozen=True)
class End:
    last_stable_id: int
    audio_seconds: float


ServerMessage = Ready | Language | Partial | Stable | VadEvent | ErrorMessage | End


@dataclass(frozen=True)
class Received:
    """One server message, parsed, with the map it came as (what event logs record)."""

    message: ServerMessage
    body: Mapping[str, Any] = field(repr=False, compare=False)


def _get(body: Mapping[str, Any], key: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
    if key not in body:
        if default is ...:
            raise ServerProtocolError(f"{body.get('type')!r} message without {key!r}: {dict(body)}")
        return default
    value = body[key]
    # bool is an int in Python; the protocol keeps them apart.
    if not isinstance(value, kind) or (isinstance(value, bool) and bool not in (kind if isinstance(kind, tuple) else (kind,))):
        raise ServerProtocolError(f"{body.get('type')!r} message: {key!r} is {value!r}, not {kind}")
    return value


_NUMBER = (int, float)


def _words(body: Mapping[str, Any]) -> tuple[Word, ...]:
    raw = _get(body, "words", list, [])
    words = []
    for w in raw:
        if not isinstance(w, Mapping):
            raise ServerProtocolError(f"word is not a map: {w!r}")
        words.append(Word(_get(w, "word", str), float(_get(w, "start", _NUMBER)), float(_get(w, "end", _NUMBER)), float(_get(w, "probability", _NUMBER, 0.0))))
    return tuple(words)


def parse_server_message(body: Any) -> ServerMessage:
    if not isinstance(body, Mapping) or not isinstance(body.get("type"), str):
        raise ServerProtocolError(f"server message is not a map with a string 'type': {body!r}")
    kind = body["type"]
    if kind == "ready":
        return Ready(
            _get(body, "session_id", str),
            _get(body, "protocol", int),
            _get(body, "model", str, ""),
            _get(body, "sample_rate", int, 0),
            _get(body, "resumed", bool, False),
            float(_get(body, "audio_seconds", _NUMBER, 0.0)),
        )
    if kind == "language":
        return Language(_get(body, "language", str), float(_get(body, "probability", _NUMBER, 1.0)))
    if kind == "partial":
        return Partial(_get(body, "text", str), float(_get(body, "start", _NUMBER, 0.0)), float(_get(body, "end", _NUMBER, 0.0)), _words(body))
    if kind == "stable":
        return Stable(
            _get(body, "id", int),
            float(_get(body, "start", _NUMBER)),
            float(_get(body, "end", _NUMBER)),
            _get(body, "text", str),
            _words(body),
            _get(body, "language", (str, type(None)), None),
        )
    if kind == "vad":
        return VadEvent(_get(body, "event", str), float(_get(body, "time", _NUMBER)))
    if kind == "error":
        return ErrorMessage(_get(body, "code", int), _get(body, "message", str, ""), _get(body, "fatal", bool, True))
    if kind == "end":
        return End(_get(body, "last_stable_id", int), float(_get(body, "audio_seconds", _NUMBER, 0.0)))
    raise ServerProtocolError(f"unknown server message type {kind!r}")


# ---- framing -----------------------------------------------------------------------------------


def encode_control(body: Mapping[str, Any], framing: Framing) -> bytes | str:
    if framing is Framing.MSGPACK:
        return msgpack.packb(dict(body), use_bin_type=True)
    return json.dumps(dict(body), separators=(",", ":"))


def encode_audio(pcm: bytes, framing: Framing) -> bytes:
    """In msgpack mode a map around the bytes; in JSON mode the raw samples as a binary frame."""
    if framing is Framing.MSGPACK:
        return msgpack.packb({"type": "audio", "data": pcm}, use_bin_type=True)
    return pcm


def decode_frame(frame: bytes | str, framing: Framing) -> Mapping[str, Any]:
    try:
        if framing is Framing.MSGPACK:
            if not isinstance(frame, bytes):
                raise ServerProtocolError(f"text frame in a msgpack session: {frame[:80]!r}")
            return msgpack.unpackb(frame, raw=False)
        if not isinstance(frame, str):
            raise ServerProtocolError("binary frame in a JSON session")
        return json.loads(frame)
    except (ValueError, msgpack.UnpackException) as exc:
        raise ServerProtocolError(f"undecodable {framing.value} frame: {exc}") from exc


# ---- the session state machine -----------------------------------------------------------------


class State(enum.Enum):
    IDLE = "idle"  # nothing sent yet
    STARTING = "starting"  # start sent, waiting for ready
    STREAMING = "streaming"  # ready received: audio may flow
    STOPPING = "stopping"  # stop sent, waiting for end
    ENDED = "ended"  # end received


class ClientProtocol:
    """One session's frames in both directions, checked for order; no I/O.

    `start`/`audio`/`flush`/`stop` return the frame to send; `receive` takes a frame from the
    server and returns it parsed. The transcript so far is `stable` (in id order) and `partial`.
    """

    def __init__(self, options: StartOptions, framing: Framing = Framing.MSGPACK) -> None:
        self.options = options
        self.framing = framing
        self.state = State.IDLE
        self.ready: Ready | None = None
        self.language: Language | None = None
        self.partial: Partial | None = None
        self.end: End | None = None
        self._stable: list[Stable] = []
        # A resumed session goes on counting stable ids after the last one this client has.
        self._first_stable_id = options.resume_last_stable_id + 1 if options.resume_session_id is not None else 0
        self.samples_sent = 0  # per channel

    @property
    def stable(self) -> Sequence[Stable]:
        return tuple(self._stable)

    @property
    def audio_seconds_sent(self) -> float:
        return self.samples_sent / self.options.sample_rate

    def transcript(self) -> str:
        return transcript_of(self._stable)

    def start(self) -> bytes | str:
        self._expect(State.IDLE, "start")
        self.state = State.STARTING
        return encode_control(self.options.message(), self.framing)

    def audio(self, pcm: bytes) -> bytes:
        self._expect(State.STREAMING, "audio")
        if len(pcm) % self.options.bytes_per_frame:
            raise ClientOrderError(f"audio of {len(pcm)} bytes is not a whole number of {self.options.bytes_per_frame}-byte samples")
        self.samples_sent += len(pcm) // self.options.bytes_per_frame
        return encode_audio(pcm, self.framing)

    def flush(self) -> bytes | str:
        self._expect(State.STREAMING, "flush")
        return encode_control({"type": "flush"}, self.framing)

    def stop(self) -> bytes | str:
        self._expect(State.STREAMING, "stop")
        self.state = State.STOPPING
        return encode_control({"type": "stop"}, self.framing)

    def receive(self, frame: bytes | str) -> Received:
        body = decode_frame(frame, self.framing)
        message = parse_server_message(body)
        if self.state in (State.IDLE, State.ENDED):
            raise ServerProtocolError(f"{body['type']!r} received in state {self.state.value}")
        if isinstance(message, Ready):
            if self.state is not State.STARTING:
                raise ServerProtocolError("a second 'ready'")
            self.ready = message
            self.state = State.STREAMING
        elif isinstance(message, ErrorMessage):
            pass  # errors may come at any time; the close that follows ends the session
        elif self.state is State.STARTING:
            raise ServerProtocolError(f"{body['type']!r} before 'ready'")
        elif isinstance(message, Language):
            self.language = message
        elif isinstance(message, Partial):
            self.partial = message if message.text else None
        elif isinstance(message, Stable):
            expected = self._first_stable_id + len(self._stable)
            if message.id != expected:
                raise ServerProtocolError(f"stable id {message.id} out of sequence (expected {expected})")
            self._stable.append(message)
            self.partial = None  # the server's next partial follows this segment
        elif isinstance(message, End):
            last = self._first_stable_id + len(self._stable) - 1
            if message.last_stable_id != last:
                raise ServerProtocolError(f"'end' says last stable id {message.last_stable_id}, received up to {last}")
            self.end = message
            self.state = State.ENDED
        return Received(message, body)

    def _expect(self, state: State, what: str) -> None:
        if self.state is not state:
            raise ClientOrderError(f"cannot send {what!r} in state {self.state.value}")


# ---- audio kept for a resume ---------------------------------------------------------------------


def transcript_of(stables: Sequence[Stable]) -> str:
    """The text of a stream's stable segments, in order."""
    return "".join(s.text for s in stables).strip()


class UnacknowledgedAudio:
    """The audio sent since the last stable segment (and `margin_s` before it, which a replica
    continuing the stream hears again as context), kept to send again after a resume.

    The server commits audio only through `stable` segments; what came after the last one is not
    stored anywhere but here. After a resume, `ready.audio_seconds` says how much the server holds:
    `since(seconds)` is what to send again. Plain code, no I/O.
    """

    def __init__(self, sample_rate: int, bytes_per_frame: int, margin_s: float = 5.0) -> None:
        self._rate = sample_rate
        self._bytes_per_frame = bytes_per_frame
        self._margin = int(margin_s * sample_rate)
        self._chunks: deque[bytes] = deque()
        self._start = 0  # sample index (per channel) of the first kept sample
        self._end = 0  # sample index after the last sample handed to `sent`

    @property
    def kept_from(self) -> float:
        return self._start / self._rate

    @property
    def sent_seconds(self) -> float:
        return self._end / self._rate

    def sent(self, pcm: bytes) -> None:
        self._chunks.append(pcm)
        self._end += len(pcm) // self._bytes_per_frame

    def acknowledge(self, stable_end: float) -> None:
        """A `stable` up to `stable_end` s: audio older than that (less the margin) is committed."""
        drop_to = min(self._end, int(stable_end * self._rate) - self._margin)
        while self._chunks and self._start + len(self._chunks[0]) // self._bytes_per_frame <= drop_to:
            self._start += len(self._chunks.popleft()) // self._bytes_per_frame

    def since(self, seconds: float) -> bytes:
        """The kept audio from `seconds` on (from the oldest kept sample if that was dropped)."""
        first = max(self._start, min(self._end, round(seconds * self._rate)))
        data = b"".join(self._chunks)
        return data[(first - self._start) * self._bytes_per_frame :]
