"""Deepgram's live API (`/v1/listen`) onto a protocol v1 stream, without I/O.

`parse_query` turns the handshake's query into `DeepgramOptions` (unknown parameters are ignored,
never refused); `options.start()` is the stream they ask for. `DeepgramTranslator` turns the
stream's messages into Deepgram's: our partials are `Results` with `is_final:false`, our stable
segments `Results` with `is_final:true` (each covering the audio from the end of the last one, so
the finals cover the audio once), the last one of an utterance `speech_final:true` (our VAD
endpoint) or `from_finalize:true` (after `Finalize`), our VAD's speech starts `SpeechStarted`, and
`End` the closing `Metadata`. `parse_client_text` reads the client's JSON messages.
"""

from __future__ import annotations

import datetime
import json
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from wire import ENDPOINT_SILENCE, CloseCode, End, Partial, ProtocolError, ServerMessage, Stable, Start, VadEvent, WordTiming

ENCODINGS = ("linear16", "mulaw", "alaw")
TRUE = ("true", "1", "yes")
# A client's endpointing in ms becomes the stream's `endpoint_silence`, at least this long: a
# shorter pause (Deepgram's 10 ms default, LiveKit's 25) falls between words for our VAD.
MIN_ENDPOINT_SILENCE = 0.3
_EDGE_PUNCTUATION = re.compile(r"^[^\w']+|[^\w']+$")


@dataclass(frozen=True)
class DeepgramOptions:
    model: str = "nova-3"
    language: str = "en"  # Whisper's code; "auto" detects
    encoding: str | None = None  # None: a container (WebM, Ogg, WAV) decoded by ffmpeg
    sample_rate: int = 16000
    channels: int = 1
    interim_results: bool = False
    endpointing: bool = True
    endpointing_ms: int | None = None  # None: the daemon's endpointing
    utterance_end_ms: int | None = None
    vad_events: bool = False
    keyterms: tuple[str, ...] = ()

    def start(self) -> Start:
        """The protocol v1 stream: raw audio keeps its rate (G.711 is decoded to 16-bit first);
        a container is decoded to 16 kHz mono. VAD events are always asked for: they mark endpoints."""
        raw = self.encoding is not None
        return Start(
            sample_rate=self.sample_rate if raw else 16000,
            channels=self.channels if raw else 1,
            language=self.language,
            events=("vad",),
            prompt=keyterm_prompt(self.keyterms),
            endpoint_silence=endpoint_silence(self.endpointing_ms),
            hold_sentence_end=False,  # each final result is read on its own, ended as heard
        )


def endpoint_silence(ms: float | None) -> float | None:
    """A client's silence-before-endpoint in ms → the stream's `endpoint_silence` (s), kept in bounds."""
    return None if ms is None else min(max(ms / 1000, MIN_ENDPOINT_SILENCE), ENDPOINT_SILENCE[1])


def keyterm_prompt(terms: tuple[str, ...]) -> str:
    """Key terms as Whisper's previous-text context, which biases it towards their spelling."""
    return " " + ", ".join(t.strip() for t in terms if t.strip()) + "." if any(t.strip() for t in terms) else ""


def whisper_language(tag: str) -> str:
    """BCP-47 (`en-US`) → Whisper's code (`en`); `multi` detects."""
    tag = tag.strip().lower()
    if tag in ("multi", "auto", ""):
        return "auto"
    return tag.split("-", 1)[0]


def parse_query(query: str) -> DeepgramOptions:
    """The handshake's query; a value of the wrong form is a `ProtocolError` (answered with `Error`)."""
    values = parse_qs(query, keep_blank_values=True)

    def one(name: str) -> str | None:
        return values[name][-1] if name in values else None

    def flag(name: str, default: bool) -> bool:
        value = one(name)
        return default if value is None else value.lower() in TRUE

    def number(name: str) -> int | None:
        value = one(name)
        if value is None or value.lower() in ("false", ""):
            return None
        if not value.isdigit():
            raise ProtocolError(CloseCode.MALFORMED, f"{name} must be a whole number, got {value!r}")
        return int(value)

    endpointing = one("endpointing")
    encoding = one("encoding")
    if encoding is not None and encoding not in ENCODINGS:
        raise ProtocolError(CloseCode.UNSUPPORTED, f"encoding must be one of {list(ENCODINGS)} (or none, for a container), got {encoding!r}")
    language = one("language")
    if flag("detect_language", False):
        language = "multi"
    return DeepgramOptions(
        model=one("model") or "nova-3",
        language=whisper_language(language) if language is not None else "en",
        encoding=encoding,
        sample_rate=(number("sample_rate") or 16000) if encoding is not None else 16000,
        channels=(number("channels") or 1) if encoding is not None else 1,
        interim_results=flag("interim_results", False),
        endpointing=endpointing is None or endpointing.lower() != "false",
        endpointing_ms=int(endpointing) if endpointing is not None and endpointing.isdigit() else None,
        utterance_end_ms=number("utterance_end_ms"),
        vad_events=flag("vad_events", False),
        keyterms=tuple(values.get("keyterm", []) + values.get("keywords", [])),
    )


# ---- client messages ------------------------------------------------------------------------


@dataclass(frozen=True)
class KeepAlive:
    pass


@dataclass(frozen=True)
class Finalize:
    pass


@dataclass(frozen=True)
class CloseStream:
    pass


@dataclass(frozen=True)
class Configure:
    body: dict[str, Any]


ClientMessage = KeepAlive | Finalize | CloseStream | Configure
CLIENT_MESSAGES: dict[str, type[KeepAlive | Finalize | CloseStream]] = {"KeepAlive": KeepAlive, "Finalize": Finalize, "CloseStream": CloseStream}


class SchemaError(ValueError):
    """A text frame that is no Deepgram message: answered with `Error`, the stream goes on."""


def parse_client_text(text: str) -> ClientMessage:
    try:
        body = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SchemaError(f"text frame is not valid JSON: {exc}") from exc
    if not isinstance(body, dict) or not isinstance(body.get("type"), str):
        raise SchemaError("a message must be a JSON object with a string `type`")
    kind = body["type"]
    if kind == "Configure":
        return Configure(body)
    if kind not in CLIENT_MESSAGES:
        raise SchemaError(f"unknown message type {kind!r}; known: KeepAlive, Finalize, CloseStream, Configure")
    return CLIENT_MESSAGES[kind]()


def error_message(description: str, original: str | None = None, variant: str = "SchemaError") -> dict[str, Any]:
    body: dict[str, Any] = {"type": "Error", "variant": variant, "description": description}
    if original is not None:
        body["message"] = original
    return body


# ---- server messages ------------------------------------------------------------------------


def _word(word: WordTiming) -> dict[str, Any]:
    punctuated = word.word.strip()
    return {
        "word": _EDGE_PUNCTUATION.sub("", punctuated).lower() or punctuated,
        "start": round(word.start, 3),
        "end": round(word.end, 3),
        "confidence": round(word.probability, 4),
        "punctuated_word": punctuated,
    }


@dataclass
class DeepgramTranslator:
    """Our messages → Deepgram's, for one connection. `speech_pending`: the stream's utterance is
    not yet all committed (after an endpoint, the batch that clears it carries the last final)."""

    options: DeepgramOptions
    model_name: str
    request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    cursor: float = 0.0  # end of the last final result: where the next one starts
    awaiting_endpoint: bool = False  # speech ended; the utterance's last final is speech_final
    finalizing: bool = False  # `Finalize` came; the next last final is from_finalize
    last_word_end: float | None = None
    _model_uuid: str = field(default_factory=lambda: str(uuid.uuid4()))

    def translate(self, messages: Sequence[ServerMessage], speech_pending: bool) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        last_final: dict[str, Any] | None = None
        for message in messages:
            if isinstance(message, Partial) and self.options.interim_results and message.text.strip():
                out.append(self._results(message.text, message.words, self.cursor, message.end, is_final=False))
            elif isinstance(message, Stable):
                last_final = self._results(message.text, message.words, self.cursor, message.end, is_final=True)
                out.append(last_final)
                self.cursor = max(self.cursor, message.end)
                if message.words:
                    self.last_word_end = message.words[-1].end
            elif isinstance(message, VadEvent):
                if message.event == "speech_start" and self.options.vad_events:
                    out.append({"type": "SpeechStarted", "channel": [0], "timestamp": round(message.time, 3)})
                elif message.event == "speech_end" and self.options.endpointing:
                    self.awaiting_endpoint = True
            elif isinstance(message, End):
                self.finalizing = self.finalizing or self.awaiting_endpoint
                out.extend(self._utterance_done(last_final, message.audio_seconds, speech_final=self.awaiting_endpoint))
                last_final = None
                out.append(self.metadata(message.audio_seconds))
        if not speech_pending:  # the utterance is all committed: its last final closes it
            out.extend(self._utterance_done(last_final, self.cursor, speech_final=self.awaiting_endpoint))
        return out

    def finalize(self, speech_pending: bool, audio_seconds: float) -> list[dict[str, Any]]:
        """`Finalize`: with nothing pending, an empty final at once; else the coming one says so."""
        if speech_pending:
            self.finalizing = True
            return []
        result = self._results("", (), self.cursor, max(self.cursor, audio_seconds), is_final=True)
        result["from_finalize"] = True
        self.cursor = max(self.cursor, audio_seconds)
        return [result]

    def _utterance_done(self, last_final: dict[str, Any] | None, until: float, *, speech_final: bool) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        if not (self.awaiting_endpoint or self.finalizing):
            return out
        if last_final is None:
            last_final = self._results("", (), self.cursor, max(self.cursor, until), is_final=True)
            self.cursor = max(self.cursor, until)
            out.append(last_final)
        last_final["speech_final"] = speech_final
        last_final["from_finalize"] = self.finalizing
        if speech_final and self.options.utterance_end_ms is not None and self.last_word_end is not None:
            out.append({"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": round(self.last_word_end, 3)})
        self.awaiting_endpoint = self.finalizing = False
        return out

    def _results(self, text: str, words: Sequence[WordTiming], start: float, end: float, *, is_final: bool) -> dict[str, Any]:
        confidence = sum(w.probability for w in words) / len(words) if words else 0.0
        return {
            "type": "Results",
            "channel_index": [0, 1],
            "start": round(start, 3),
            "duration": round(max(0.0, end - start), 3),
            "is_final": is_final,
            "speech_final": False,
            "from_finalize": False,
            "channel": {"alternatives": [{"transcript": text.strip(), "confidence": round(confidence, 4), "words": [_word(w) for w in words]}]},
            "metadata": {
                "request_id": self.request_id,
                "model_uuid": self._model_uuid,
                "model_info": {"name": self.options.model, "version": self.model_name, "arch": "whisper"},
            },
        }

    def metadata(self, duration: float) -> dict[str, Any]:
        created = datetime.datetime.now(datetime.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return {
            "type": "Metadata",
            "transaction_key": "deprecated",
            "request_id": self.request_id,
            "sha256": "",
            "created": created,
            "duration": round(duration, 3),
            "channels": self.options.channels,
            "models": [self._model_uuid],
            "model_info": {self._model_uuid: {"name": self.options.model, "version": self.model_name, "arch": "whisper"}},
        }
