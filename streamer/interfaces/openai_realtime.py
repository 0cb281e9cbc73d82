"""OpenAI's Realtime API, transcription sessions (`/v1/realtime?intent=transcription`), without I/O.

Both dialects: GA (`session.update` with `session.type = "transcription"`) and beta
(`transcription_session.update`, chosen by the `OpenAI-Beta: realtime=v1` header or by that
first message). `RealtimeSession` reads the client's events (`receive` → `Action`s for the
adapter: open the stream, audio, commit) and turns our stream's messages into OpenAI's events:
with server VAD, our VAD's speech start/end are `speech_started`/`speech_stopped` + `committed`,
our stable segments append-only `…transcription.delta`s of that item, and the utterance's last
one is followed by `…transcription.completed`. With `turn_detection: null` the client's `commit`
ends a turn: `committed`, its deltas, `completed`. Errors are `error` events; the connection stays.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from wire import ServerMessage, Stable, Start, VadEvent

from .deepgram import endpoint_silence, whisper_language
from .g711 import alaw_to_pcm16, ulaw_to_pcm16

PCM_RATE = 24000
G711_RATE = 8000
MIN_COMMIT_SECONDS = 0.1
# GA format type ↔ beta format name, and how each is decoded to 16-bit PCM.
FORMATS = {"audio/pcm": "pcm16", "audio/pcmu": "g711_ulaw", "audio/pcma": "g711_alaw"}


class RealtimeError(Exception):
    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.param = code, message, param


@dataclass(frozen=True)
class OpenStream:
    start: Start


@dataclass(frozen=True)
class AppendAudio:
    pcm: bytes  # 16-bit PCM at the stream's rate


@dataclass(frozen=True)
class CommitTurn:
    pass


Action = OpenStream | AppendAudio | CommitTurn


def _event_id() -> str:
    return "event_" + uuid.uuid4().hex[:20]


def _item_id() -> str:
    return "item_" + uuid.uuid4().hex[:20]


@dataclass
class _Turn:
    item_id: str
    texts: list[str] = field(default_factory=list)
    sent: int = 0  # texts sent as deltas (manual turns hold theirs until the commit)
    committed: bool = False
    audio_seconds: float = 0.0


@dataclass
class RealtimeSession:
    """One connection's state: its settings, its current turn, the events to send."""

    beta: bool
    model: str = "whisper-1"
    audio_format: str = "pcm16"  # beta names: pcm16 | g711_ulaw | g711_alaw
    language: str | None = None
    prompt: str | None = None
    turn_detection: dict[str, Any] | None = field(default_factory=lambda: {"type": "server_vad", "threshold": 0.5, "prefix_padding_ms": 300, "silence_duration_ms": 500})
    silence_ms: float | None = None  # the client's `silence_duration_ms`; None: the daemon's endpointing
    session_id: str = field(default_factory=lambda: "sess_" + uuid.uuid4().hex[:20])
    stream_open: bool = False
    uncommitted_seconds: float = 0.0  # audio appended since the last commit (manual turns)
    previous_item: str | None = None
    turn: _Turn | None = None
    awaiting_completion: bool = False

    # ---- client events ------------------------------------------------------------------------

    def created(self) -> dict[str, Any]:
        return self._event("transcription_session.created" if self.beta else "session.created", session=self.describe())

    def receive(self, text: str) -> tuple[list[Action], list[dict[str, Any]]]:
        """One client event → what the adapter must do, and events to send. Bad input → `error` event."""
        event_id = None
        try:
            body = json.loads(text)
            if not isinstance(body, dict) or not isinstance(body.get("type"), str):
                raise RealtimeError("invalid_event", "an event must be a JSON object with a string `type`")
            event_id = body.get("event_id") if isinstance(body.get("event_id"), str) else None
            return self._dispatch(body)
        except json.JSONDecodeError as exc:
            return [], [self.error(RealtimeError("invalid_json", f"the event is not valid JSON: {exc}"), None)]
        except RealtimeError as exc:
            return [], [self.error(exc, event_id)]

    def _dispatch(self, body: dict[str, Any]) -> tuple[list[Action], list[dict[str, Any]]]:
        kind = body["type"]
        if kind in ("session.update", "transcription_session.update"):
            self.beta = self.beta or kind == "transcription_session.update"
            session = body.get("session")
            if not isinstance(session, dict):
                raise RealtimeError("invalid_value", "`session` must be an object", "session")
            self._update_beta(session) if kind == "transcription_session.update" else self._update_ga(session)
            return [], [self._event("transcription_session.updated" if self.beta else "session.updated", session=self.describe())]
        if kind == "input_audio_buffer.append":
            return self._append(body.get("audio")), []
        if kind == "input_audio_buffer.commit":
            return self._commit()
        if kind == "input_audio_buffer.clear":
            self.uncommitted_seconds = 0.0
            return [], [self._event("input_audio_buffer.cleared")]
        raise RealtimeError("unknown_event", f"event type {kind!r} is not supported in a transcription session")

    def _update_ga(self, session: dict[str, Any]) -> None:
        if session.get("type", "transcription") != "transcription":
            raise RealtimeError("invalid_value", "this server only runs transcription sessions (session.type = \"transcription\")", "session.type")
        audio_input = _object(_object(session, "audio"), "input")
        if "format" in audio_input:
            fmt = _object(audio_input, "format")
            name = FORMATS.get(str(fmt.get("type")))
            if name is None or (name == "pcm16" and fmt.get("rate", PCM_RATE) != PCM_RATE):
                raise RealtimeError("invalid_value", f"format must be audio/pcm at 24000 Hz, audio/pcmu or audio/pcma, got {fmt}", "session.audio.input.format")
            self._set_format(name)
        self._set_transcription(audio_input.get("transcription"))
        if "turn_detection" in audio_input:
            self._set_turn_detection(audio_input["turn_detection"])

    def _update_beta(self, session: dict[str, Any]) -> None:
        if "input_audio_format" in session:
            name = session["input_audio_format"]
            if name not in FORMATS.values():
                raise RealtimeError("invalid_value", f"input_audio_format must be one of {list(FORMATS.values())}, got {name!r}", "session.input_audio_format")
            self._set_format(name)
        self._set_transcription(session.get("input_audio_transcription"))
        if "turn_detection" in session:
            self._set_turn_detection(session["turn_detection"])

    def _set_format(self, name: str) -> None:
        if self.stream_open and name != self.audio_format:
            raise RealtimeError("invalid_value", "the audio format cannot change once audio was sent", "format")
        self.audio_format = name

    def _set_transcription(self, value: Any) -> None:
        if value is None:
            return
        if not isinstance(value, dict):
            raise RealtimeError("invalid_value", "`transcription` must be an object", "transcription")
        self.model = str(value.get("model") or self.model)
        if value.get("language"):
            if self.stream_open:
                raise RealtimeError("invalid_value", "the language cannot change once audio was sent", "language")
            self.language = whisper_language(str(value["language"]))
        self.prompt = str(value["prompt"]) if value.get("prompt") else self.prompt

    def _set_turn_detection(self, value: Any) -> None:
        if value is not None and (not isinstance(value, dict) or value.get("type") not in ("server_vad", "semantic_vad")):
            raise RealtimeError("invalid_value", "turn_detection must be null or {type: server_vad | semantic_vad, ...}", "turn_detection")
        silence = value.get("silence_duration_ms") if value is not None else None
        if silence is not None and (isinstance(silence, bool) or not isinstance(silence, (int, float)) or not silence >= 0):
            raise RealtimeError("invalid_value", "turn_detection.silence_duration_ms must be a number of milliseconds", "turn_detection.silence_duration_ms")
        if silence is not None and self.stream_open and silence != self.silence_ms:
            raise RealtimeError("invalid_value", "silence_duration_ms cannot change once audio was sent", "turn_detection.silence_duration_ms")
        self.turn_detection, self.silence_ms = value, silence

    def start(self) -> Start:
        rate = PCM_RATE if self.audio_format == "pcm16" else G711_RATE
        prompt = " " + self.prompt.strip() if self.prompt else ""
        # Each item's transcript is read on its own: it ends as Whisper heard it.
        silence = endpoint_silence(self.silence_ms)
        return Start(sample_rate=rate, language=self.language or "auto", events=("vad",), prompt=prompt, endpoint_silence=silence, hold_sentence_end=False)

    def _append(self, audio: Any) -> list[Action]:
        if not isinstance(audio, str):
            raise RealtimeError("invalid_value", "`audio` must be a base64 string", "audio")
        try:
            data = base64.b64decode(audio, validate=True)
        except binascii.Error as exc:
            raise RealtimeError("invalid_value", f"`audio` is not valid base64: {exc}", "audio") from exc
        if self.audio_format == "pcm16":
            data = data[: len(data) - len(data) % 2]
            seconds = len(data) / 2 / PCM_RATE
        else:
            seconds = len(data) / G711_RATE
            data = ulaw_to_pcm16(data) if self.audio_format == "g711_ulaw" else alaw_to_pcm16(data)
        actions: list[Action] = []
        if not self.stream_open:
            self.stream_open = True
            actions.append(OpenStream(self.start()))
        self.uncommitted_seconds += seconds
        if self.turn_detection is None and self.turn is None:
            self.turn = _Turn(_item_id())
        actions.append(AppendAudio(data))
        return actions

    def _commit(self) -> tuple[list[Action], list[dict[str, Any]]]:
        if self.uncommitted_seconds < MIN_COMMIT_SECONDS:
            raise RealtimeError(
                "input_audio_buffer_commit_empty",
                f"buffer too small: expected at least {MIN_COMMIT_SECONDS * 1000:.0f}ms of audio, but buffer only has {self.uncommitted_seconds * 1000:.2f}ms of audio",
            )
        self.uncommitted_seconds = 0.0
        if self.turn is None:
            self.turn = _Turn(_item_id())
        events = [self._committed(self.turn), *self._deltas(self.turn)]
        self.awaiting_completion = True
        return [CommitTurn()], events

    # ---- our stream's messages ----------------------------------------------------------------

    def translate(self, messages: Sequence[ServerMessage], text_pending: bool) -> list[dict[str, Any]]:
        """Our messages as Realtime events. `text_pending`: the turn awaiting completion has text
        still to come (with server VAD: the stream has speech pending; with manual turns: the
        flush of the client's commit has not been decoded yet, whatever the VAD hears, since the
        client may cut a turn mid-speech). A stable that agreement commits before that flush
        is no sign of it: completing then would cut the turn's transcript short."""
        out: list[dict[str, Any]] = []
        for message in messages:
            if isinstance(message, VadEvent) and self.turn_detection is not None:
                out.extend(self._vad(message))
            elif isinstance(message, Stable):
                out.extend(self._stable(message))
        if self.awaiting_completion and not text_pending:
            out.extend(self._complete())
        return out

    def _vad(self, event: VadEvent) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        ms = round(event.time * 1000)
        if event.event == "speech_start":
            if self.awaiting_completion:
                out.extend(self._complete())  # the next turn began before the last one's final decode
            if self.turn is None:
                self.turn = _Turn(_item_id())
                out.append(self._event("input_audio_buffer.speech_started", item_id=self.turn.item_id, audio_start_ms=ms))
        elif self.turn is not None and not self.turn.committed:
            out.append(self._event("input_audio_buffer.speech_stopped", item_id=self.turn.item_id, audio_end_ms=ms))
            out.append(self._committed(self.turn))
            self.turn.audio_seconds = event.time
            self.awaiting_completion = True
        return out

    def _stable(self, stable: Stable) -> list[dict[str, Any]]:
        if self.turn is None:
            self.turn = _Turn(_item_id())  # text without a speech start we saw: its own turn
        turn = self.turn
        text = stable.text if turn.texts else stable.text.lstrip()
        turn.texts.append(text)
        if self.turn_detection is None and not turn.committed:
            return []  # manual turns: deltas follow the client's commit
        return self._deltas(turn)

    def _complete(self) -> list[dict[str, Any]]:
        self.awaiting_completion = False
        turn, self.turn = self.turn, None
        if turn is None:
            return []
        out = [
            self._event(
                "conversation.item.input_audio_transcription.completed",
                item_id=turn.item_id,
                content_index=0,
                transcript="".join(turn.texts).strip(),
                usage={"type": "duration", "seconds": round(turn.audio_seconds, 3)},
            )
        ]
        self.previous_item = turn.item_id
        return out

    def _committed(self, turn: _Turn) -> dict[str, Any]:
        turn.committed = True
        return self._event("input_audio_buffer.committed", item_id=turn.item_id, previous_item_id=self.previous_item)

    def _deltas(self, turn: _Turn) -> list[dict[str, Any]]:
        """The turn's texts not yet sent, as append-only deltas."""
        unsent, turn.sent = turn.texts[turn.sent :], len(turn.texts)
        return [self._event("conversation.item.input_audio_transcription.delta", item_id=turn.item_id, content_index=0, delta=t) for t in unsent]

    def error(self, error: RealtimeError, event_id: str | None) -> dict[str, Any]:
        detail = {"type": "invalid_request_error", "code": error.code, "message": error.message, "param": error.param, "event_id": event_id}
        return self._event("error", error=detail)

    def _event(self, kind: str, **fields: Any) -> dict[str, Any]:
        return {"type": kind, "event_id": _event_id(), **fields}

    def describe(self) -> dict[str, Any]:
        """The effective settings, in the connection's dialect."""
        transcription = {"model": self.model, "language": self.language, "prompt": self.prompt or ""}
        if self.beta:
            return {
                "id": self.session_id, "object": "realtime.transcription_session", "input_audio_format": self.audio_format,
                "input_audio_transcription": transcription, "turn_detection": self.turn_detection,
                "input_audio_noise_reduction": None, "include": [],
            }
        fmt = next(ga for ga, beta in FORMATS.items() if beta == self.audio_format)
        audio_format: dict[str, Any] = {"type": fmt, "rate": PCM_RATE} if fmt == "audio/pcm" else {"type": fmt}
        return {
            "id": self.session_id, "object": "realtime.transcription_session", "type": "transcription",
            "audio": {"input": {"format": audio_format, "transcription": transcription, "turn_detection": self.turn_detection, "noise_reduction": None}},
            "include": [],
        }


def _object(parent: dict[str, Any], key: str) -> dict[str, Any]:
    value = parent.get(key, {})
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RealtimeError("invalid_value", f"`{key}` must be an object", key)
    return value
