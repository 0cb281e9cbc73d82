"""The client side of protocol v1 (docs/protocol.md), without I/O.

`ClientProtocol`: a state machine fed the frames of one connection that checks the order of both
sides and keeps the transcript (stable segments, the current partial, the language). The
messages, their framings and the settings of `start` are the schema's, in `wire`.
`clients.connection` puts a websocket under it.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from wire import (
    Audio,
    CloseCode,
    End,
    ErrorMessage,
    Flush,
    Framing,
    LanguageDetected,
    Partial,
    ProtocolError,
    Ready,
    ServerMessage,
    Stable,
    Start,
    Stop,
    decode_map,
    encode_client_message,
    parse_server_message,
)

LOST_CLOSE = 1006  # no close frame: the connection (or the replica) died
# The closes after which the stream lives on: the daemon shut down (it, or a replica behind the same
# address, may come back), the connection died, or the replica drains.
RESUMABLE_CLOSES = frozenset({int(CloseCode.GOING_AWAY), LOST_CLOSE, int(CloseCode.MOVED)})


class ServerProtocolError(Exception):
    """The server sent something the protocol does not allow (a bug there, or not a whisper-streamer)."""


class ClientOrderError(Exception):
    """This client tried to send a message out of the protocol's order (a bug here)."""


@dataclass(frozen=True)
class Received:
    """One server message, parsed, with the map it came as (what event logs record)."""

    message: ServerMessage
    body: Mapping[str, Any] = field(repr=False, compare=False)


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

    def __init__(self, options: Start, framing: Framing = Framing.MSGPACK) -> None:
        self.options = options
        self.framing = framing
        self.state = State.IDLE
        self.ready: Ready | None = None
        self.language: LanguageDetected | None = None
        self.partial: Partial | None = None
        self.end: End | None = None
        self._stable: list[Stable] = []
        # A resumed session goes on counting stable ids after the last one this client has.
        self._first_stable_id = int(options.resume.get("last_stable_id", -1)) + 1 if options.resume is not None else 0
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
        return encode_client_message(self.options, self.framing)

    def audio(self, pcm: bytes) -> bytes:
        self._expect(State.STREAMING, "audio")
        if len(pcm) % self.options.bytes_per_frame:
            raise ClientOrderError(f"audio of {len(pcm)} bytes is not a whole number of {self.options.bytes_per_frame}-byte samples")
        self.samples_sent += len(pcm) // self.options.bytes_per_frame
        return Audio(pcm).frame(self.framing)

    def flush(self) -> bytes | str:
        self._expect(State.STREAMING, "flush")
        return encode_client_message(Flush(), self.framing)

    def stop(self) -> bytes | str:
        self._expect(State.STREAMING, "stop")
        self.state = State.STOPPING
        return encode_client_message(Stop(), self.framing)

    def receive(self, frame: bytes | str) -> Received:
        try:
            body = decode_map(frame, self.framing)
            message = parse_server_message(body)
        except ProtocolError as exc:
            raise ServerProtocolError(exc.message) from exc
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
        elif isinstance(message, LanguageDetected):
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
