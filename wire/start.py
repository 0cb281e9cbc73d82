"""The `start` message: every setting of a stream, validated here for the daemon and every client alike."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar

from .codes import CloseCode, ProtocolError
from .constants import BYTES_PER_SAMPLE, ENCODINGS, ENDPOINT_SILENCE, EVENTS, MAX_CHANNELS, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, PROTOCOL_VERSION, TASKS
from .fields import NUMBER, read, read_strings

# Sent even at their defaults, as clients always have; the other keys only when set.
_ALWAYS_SENT = frozenset({"sample_rate", "encoding", "channels", "language", "task", "word_timestamps", "events"})


@dataclass(frozen=True)
class Start:
    type: ClassVar[str] = "start"
    sample_rate: int = 16000
    encoding: str = "pcm_s16le"
    channels: int = 1
    language: str = "auto"
    task: str = "transcribe"
    word_timestamps: bool = True
    languages: tuple[str, ...] = ()  # with `auto`: detection chooses among these (empty: the daemon's config)
    events: tuple[str, ...] = ()
    resume: Mapping[str, Any] | None = None  # {"session_id", "last_stable_id"}: continue a lost session (see `resuming`)
    prompt: str = ""  # initial decoder context (vocabulary, names; the drop-in interfaces' keyterms / prompt)
    commit_policy: str = ""  # when words become stable; empty: the daemon's stream.commit_policy
    endpoint_silence: float | None = None  # s of silence that ends an utterance; None: the daemon's
    # The mark that ends an utterance's stable text waits for what follows (docs/protocol.md,
    # Sentences); False: it ends as Whisper heard it (the drop-in interfaces: their finals stand alone).
    hold_sentence_end: bool = True

    def __post_init__(self) -> None:
        if not MIN_SAMPLE_RATE <= self.sample_rate <= MAX_SAMPLE_RATE:
            raise _unsupported(f"sample_rate must be {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE}, got {self.sample_rate}")
        if self.encoding not in ENCODINGS:
            raise _unsupported(f"encoding must be one of {list(ENCODINGS)}, got {self.encoding!r}")
        if not 1 <= self.channels <= MAX_CHANNELS:
            raise _unsupported(f"channels must be 1..{MAX_CHANNELS}, got {self.channels}")
        if not self.language:
            raise _unsupported("language must be a language code or 'auto'")
        if self.task not in TASKS:
            raise _unsupported(f"task must be one of {list(TASKS)}, got {self.task!r}")
        unknown = [e for e in self.events if e not in EVENTS]
        if unknown:
            raise _unsupported(f"unknown event(s) {unknown}; known: {list(EVENTS)}")
        low, high = ENDPOINT_SILENCE
        if self.endpoint_silence is not None and not low <= self.endpoint_silence <= high:
            raise _unsupported(f"endpoint_silence must be in {low}..{high} s, got {self.endpoint_silence}")

    @property
    def bytes_per_frame(self) -> int:
        """Bytes of one sample on every channel: audio frames are whole multiples of this."""
        return BYTES_PER_SAMPLE[self.encoding] * self.channels

    def resuming(self, session_id: str, last_stable_id: int) -> Start:
        """This stream's `start` taking back session `session_id`, whose stable segments up to `last_stable_id` the client holds."""
        return replace(self, resume={"session_id": session_id, "last_stable_id": last_stable_id})

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"type": self.type, "version": PROTOCOL_VERSION}
        for spec in fields(self):
            value = getattr(self, spec.name)
            if spec.name in _ALWAYS_SENT or value != spec.default:
                body[spec.name] = list(value) if isinstance(value, tuple) else dict(value) if isinstance(value, Mapping) else value
        return body


def parse_start(body: Mapping[str, Any]) -> Start:
    """A `start` map → `Start`: 4400 for a mistyped key, 4415 for an unsupported value; unknown keys are ignored."""
    settings = {
        "sample_rate": read(body, "sample_rate", int, Start.sample_rate),
        "encoding": read(body, "encoding", str, Start.encoding),
        "channels": read(body, "channels", int, Start.channels),
        "language": read(body, "language", str, Start.language),
        "task": read(body, "task", str, Start.task),
        "word_timestamps": read(body, "word_timestamps", bool, Start.word_timestamps),
        "languages": read_strings(body, "languages"),
        "events": read_strings(body, "events"),
        "resume": read(body, "resume", dict, None),
        "prompt": read(body, "prompt", str, Start.prompt),
        "commit_policy": read(body, "commit_policy", str, Start.commit_policy),
        "endpoint_silence": _seconds(read(body, "endpoint_silence", NUMBER, None)),
        "hold_sentence_end": read(body, "hold_sentence_end", bool, Start.hold_sentence_end),
    }
    version = read(body, "version", int, PROTOCOL_VERSION)
    if version != PROTOCOL_VERSION:
        raise _unsupported(f"unsupported protocol version {version} (this server speaks {PROTOCOL_VERSION})")
    return Start(**settings)


def _seconds(value: float | None) -> float | None:
    return None if value is None else float(value)


def _unsupported(message: str) -> ProtocolError:
    return ProtocolError(CloseCode.UNSUPPORTED, message)
