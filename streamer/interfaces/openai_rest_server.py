"""The asyncio side of OpenAI's REST transcriptions: an upload → ffmpeg → the offline long-form
transcription, one 30 s window per model-worker call (between live streams' batches)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import urlsplit

import numpy as np
from websockets.datastructures import Headers
from websockets.http11 import Request

from model.audio import SAMPLE_RATE
from model.transcribe import FileTranscription, Segment, Transcript, WindowOptions
from model.whisper import Whisper

from ..config import OpenAIConfig
from ..server.auth import AuthDecision
from .container import DecodeError, decode_file
from .http_upload import UploadRequest, UploadResponse
from .multipart_form import FormError, parse_form
from .openai_rest import (
    ApiError,
    RestOptions,
    parse_request,
    render,
    sse_deltas,
    sse_done,
    sse_error,
)

if TYPE_CHECKING:
    from ..server.host import StreamHost

log = logging.getLogger("streamer.interfaces.openai")

T = TypeVar("T")
TASKS = {"/v1/audio/transcriptions": "transcribe", "/v1/audio/translations": "translate"}
UPLOAD_PREFIX = b"POST /v1/audio/"


def wants_upload(request_line: bytes) -> bool:
    return request_line.startswith(UPLOAD_PREFIX)


def error_response(error: ApiError) -> UploadResponse:
    return UploadResponse(error.status, "application/json", error.body())


def too_large(limit: int) -> Callable[[int], UploadResponse]:
    def answer(size: int) -> UploadResponse:
        return error_response(ApiError(413, f"the upload of {size} bytes exceeds the maximum of {limit} bytes", "file", "file_too_large"))

    return answer


class RestTranscriptions:
    """Answers uploads; at most `max_uploads` are transcribed at once (429 beyond)."""

    def __init__(self, host: StreamHost, config: OpenAIConfig, authenticate: Callable[[Request], AuthDecision]) -> None:
        self._host = host
        self._config = config
        self._authenticate = authenticate
        self.active = 0

    async def handle(self, upload: UploadRequest) -> UploadResponse:
        try:
            return await self._handle(upload)
        except ApiError as error:
            log.info("upload %s refused: %d %s", upload.target, error.status, error.message)
            return error_response(error)

    async def _handle(self, upload: UploadRequest) -> UploadResponse:
        headers = Headers(upload.headers)
        decision = self._authenticate(Request(upload.target, headers))
        if not decision.ok:
            raise ApiError(decision.http_status or 401, decision.reason, None, "invalid_api_key")
        task = TASKS.get(urlsplit(upload.target).path)
        if task is None:
            raise ApiError(404, f"no such route: {upload.method} {upload.target}", None, "not_found")
        if self.active >= self._config.max_uploads:
            raise ApiError(429, f"too many uploads at once (maximum {self._config.max_uploads}); retry later", None, "rate_limit_exceeded", "rate_limit_error")
        try:
            options = parse_request(parse_form(headers.get("Content-Type", ""), upload.body), task=task)
        except FormError as exc:
            raise ApiError(400, str(exc), None, "invalid_request") from exc
        info = await self._host.model_info()
        if not info.multilingual and (task == "translate" or options.language not in (None, "en")):
            raise ApiError(400, f"model {info.name} is English-only: no translation, no language other than en", "language", "unsupported_language")
        self.active += 1
        try:
            audio = await decode_file(options.audio)
        except DecodeError as exc:
            self.active -= 1
            raise ApiError(400, f"the file could not be decoded: {exc}", "file", "invalid_file") from exc
        except BaseException:
            self.active -= 1
            raise
        log.info("upload %s: %.1f s of audio, %s, response %s%s", options.filename, len(audio) / SAMPLE_RATE, task, options.response_format, ", streamed" if options.stream else "")
        if options.stream:
            return UploadResponse(200, "text/event-stream", stream=self._stream(options, audio))
        try:
            transcript = await self._transcribe(options, audio, None)
        finally:
            self.active -= 1
        rendered = render(options, transcript, len(audio) / SAMPLE_RATE)
        return UploadResponse(200, rendered.content_type, rendered.body)

    async def _stream(self, options: RestOptions, audio: np.ndarray) -> AsyncIterator[bytes]:
        queue: asyncio.Queue[list[Segment] | None] = asyncio.Queue()
        duration = len(audio) / SAMPLE_RATE
        job = asyncio.create_task(self._transcribe(options, audio, queue.put_nowait))
        try:
            first = True
            while (segments := await queue.get()) is not None:
                if chunk := sse_deltas(segments, first):
                    first = False
                    yield chunk
            yield sse_done(await job, duration)
        except Exception as exc:
            log.exception("upload %s: transcription failed", options.filename)
            yield sse_error(ApiError(500, f"transcription failed: {type(exc).__name__}", None, None, "server_error"))
        finally:
            job.cancel()
            self.active -= 1

    async def _transcribe(self, options: RestOptions, audio: np.ndarray, on_segments: Callable[[list[Segment] | None], None] | None) -> Transcript:
        window = WindowOptions(language=options.language, task=options.task, word_timestamps=options.words, temperatures=options.temperatures)
        began = time.perf_counter()

        def create(model: Whisper) -> FileTranscription:
            return FileTranscription(model, audio, window, initial_prompt=options.prompt)

        job = await self._on_worker(create)
        while not job.done:
            segments = await self._on_worker(job.step)  # one window per call: streams' batches go between
            if on_segments is not None and segments:
                on_segments(segments)
        if on_segments is not None:
            on_segments(None)
        transcript = job.transcript()
        log.info("upload %s transcribed in %.1f s: %d segment(s)", options.filename, time.perf_counter() - began, len(transcript.segments))
        return transcript

    async def _on_worker(self, call: Callable[[Whisper], T]) -> T:
        return await asyncio.wrap_future(self._host.submit_model_call(call))
