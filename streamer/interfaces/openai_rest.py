"""OpenAI's `POST /v1/audio/transcriptions` and `/translations`, without I/O.

`parse_request` turns the multipart form into `RestOptions` (or an `ApiError`: OpenAI's JSON
error shape and status); `render` turns the finished transcript into the body `response_format`
asks for; `sse_*` are the events of `stream=true` (deltas as windows are decided, then exactly
one `transcript.text.done`). Unknown fields are accepted and ignored.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from captions.writers import TranscriptFormat
from captions.writers import render as render_captions
from model.tokenizer import LANGUAGES, TO_LANGUAGE_CODE
from model.transcribe import DEFAULT_TEMPERATURES, Segment, Transcript

from .multipart_form import Form

RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
GRANULARITIES = ("word", "segment")


@dataclass(frozen=True)
class ApiError(Exception):
    status: int
    message: str
    param: str | None = None
    code: str | None = None
    type: str = "invalid_request_error"

    def body(self) -> bytes:
        error = {"message": self.message, "type": self.type, "param": self.param, "code": self.code}
        return json.dumps({"error": error}).encode("utf-8")


@dataclass(frozen=True)
class RestOptions:
    model: str
    task: str  # transcribe | translate
    language: str | None  # None: detected
    prompt: str | None
    response_format: str
    temperatures: tuple[float, ...]
    words: bool  # timestamp_granularities[] has `word`
    stream: bool
    audio: bytes
    filename: str


def _language(value: str | None) -> str | None:
    if value is None or not value.strip() or value.strip().lower() in ("auto", "multi"):
        return None
    tag = value.strip().lower().split("-", 1)[0]
    code = tag if tag in LANGUAGES else TO_LANGUAGE_CODE.get(tag)
    if code is None:
        raise ApiError(400, f"language {value!r} is not a language Whisper knows (an ISO-639-1 code such as 'en')", "language", "invalid_language")
    return code


def _temperatures(value: str | None) -> tuple[float, ...]:
    if value is None or not value.strip():
        return DEFAULT_TEMPERATURES
    try:
        temperature = float(value)
    except ValueError as exc:
        raise ApiError(400, f"temperature must be a number, got {value!r}", "temperature") from exc
    if not 0.0 <= temperature <= 1.0:
        raise ApiError(400, f"temperature must be in 0..1, got {temperature}", "temperature")
    # As the openai CLI does: start there, fall back hotter when a window fails its checks.
    return (temperature, *(t for t in DEFAULT_TEMPERATURES if t > temperature))


def parse_request(form: Form, *, task: str) -> RestOptions:
    upload = form.files.get("file")
    if upload is None or not upload.data:
        raise ApiError(400, "a non-empty `file` part is required", "file", "missing_file")
    response_format = form.one("response_format") or "json"
    if response_format not in RESPONSE_FORMATS:
        raise ApiError(400, f"response_format must be one of {list(RESPONSE_FORMATS)}, got {response_format!r}", "response_format", "unsupported_value")
    granularities = form.many("timestamp_granularities")
    bad = [g for g in granularities if g not in GRANULARITIES]
    if bad:
        raise ApiError(400, f"timestamp_granularities must be among {list(GRANULARITIES)}, got {bad}", "timestamp_granularities")
    stream = (form.one("stream") or "false").lower() == "true"
    return RestOptions(
        model=form.one("model") or "whisper-1",
        task=task,
        language=_language(form.one("language")) if task == "transcribe" else None,
        prompt=form.one("prompt") or None,
        response_format=response_format,
        temperatures=_temperatures(form.one("temperature")),
        words="word" in granularities,
        stream=stream,
        audio=upload.data,
        filename=upload.filename,
    )


@dataclass(frozen=True)
class Rendered:
    content_type: str
    body: bytes


def _usage(duration: float) -> dict[str, Any]:
    return {"type": "duration", "seconds": max(1, round(duration))}


def _segment(segment: Segment) -> dict[str, Any]:
    return {
        "id": segment.id,
        "seek": 0,
        "start": segment.start,
        "end": segment.end,
        "text": segment.text,
        "tokens": list(segment.tokens),
        "temperature": segment.temperature,
        "avg_logprob": segment.avg_logprob,
        "compression_ratio": segment.compression_ratio,
        "no_speech_prob": segment.no_speech_prob,
    }


def render(options: RestOptions, transcript: Transcript, duration: float) -> Rendered:
    fmt = options.response_format
    if fmt == "text":
        return Rendered("text/plain; charset=utf-8", (transcript.text + "\n").encode("utf-8"))
    if fmt in ("srt", "vtt"):
        text = render_captions(transcript.segments, TranscriptFormat.SRT if fmt == "srt" else TranscriptFormat.VTT)
        return Rendered("text/plain; charset=utf-8", text.encode("utf-8"))
    body: dict[str, Any] = {"text": transcript.text, "usage": _usage(duration)}
    if fmt == "verbose_json":
        body = {
            "task": options.task,
            "language": LANGUAGES.get(transcript.language, transcript.language),
            "duration": round(duration, 3),
            "text": transcript.text,
            "segments": [_segment(s) for s in transcript.segments],
            "usage": _usage(duration),
        }
        if options.words:
            body["words"] = [{"word": w.word.strip(), "start": w.start, "end": w.end} for s in transcript.segments for w in s.words]
    return Rendered("application/json", json.dumps(body, ensure_ascii=False).encode("utf-8"))


def sse(body: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n".encode()


def sse_deltas(segments: Sequence[Segment], first: bool) -> bytes:
    """The text of newly decided segments as one `transcript.text.delta` (none when empty)."""
    text = "".join(s.text for s in segments)
    if first:
        text = text.lstrip()
    return sse({"type": "transcript.text.delta", "delta": text}) if text else b""


def sse_done(transcript: Transcript, duration: float) -> bytes:
    tokens = sum(len(s.tokens) for s in transcript.segments)
    usage = {"type": "tokens", "input_tokens": max(1, round(duration * 10)), "output_tokens": tokens, "total_tokens": max(1, round(duration * 10)) + tokens}
    return sse({"type": "transcript.text.done", "text": transcript.text, "usage": usage}) + b"data: [DONE]\n\n"


def sse_error(error: ApiError) -> bytes:
    return sse({"error": {"message": error.message, "type": error.type, "param": error.param, "code": error.code}})


def models_body(model_name: str) -> dict[str, Any]:
    """`GET /v1/models`: the served model under its own name and the names clients ask for."""
    names = [model_name, "whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe"]
    return {"object": "list", "data": [{"id": n, "object": "model", "created": 0, "owned_by": "whisper-streamer"} for n in names]}
