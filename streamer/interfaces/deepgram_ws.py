"""The asyncio side of Deepgram's live API: one websocket ↔ one stream (`deepgram.py` decides everything)."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from wire import CloseCode, ProtocolError, ServerMessage

from ..config import DeepgramConfig
from .container import StreamDecoder
from .deepgram import (
    CloseStream,
    Configure,
    DeepgramOptions,
    DeepgramTranslator,
    Finalize,
    SchemaError,
    error_message,
    parse_client_text,
    parse_query,
)
from .g711 import alaw_to_pcm16, ulaw_to_pcm16
from .sink import CloseFrame, Frame, TranslatingSink

if TYPE_CHECKING:
    from ..server.host import Stream, StreamHost

log = logging.getLogger("streamer.interfaces.deepgram")

IDLE_CLOSE = CloseFrame(int(CloseCode.INTERNAL_ERROR), "NET-0001")
RAW_DECODERS: dict[str, Callable[[bytes], bytes]] = {"linear16": bytes, "mulaw": ulaw_to_pcm16, "alaw": alaw_to_pcm16}


def _frames(bodies: Sequence[dict[str, Any]]) -> list[Frame]:
    return [json.dumps(b, ensure_ascii=False) for b in bodies]


def _on_error(code: int, message: str) -> list[Frame]:
    return [json.dumps(error_message(message, variant="StreamError")), CloseFrame(code, message)]


async def serve_deepgram(host: StreamHost, config: DeepgramConfig, websocket: ServerConnection, key_id: str | None) -> None:
    assert websocket.request is not None
    try:
        options = parse_query(urlsplit(websocket.request.path).query)
    except ProtocolError as exc:
        await websocket.send(json.dumps(error_message(exc.message, variant="BadRequest")))
        await websocket.close(int(exc.code), exc.message)
        return
    connection = _DeepgramConnection(host, config, websocket, options)
    await connection.run(key_id)


class _DeepgramConnection:
    def __init__(self, host: StreamHost, config: DeepgramConfig, websocket: ServerConnection, options: DeepgramOptions) -> None:
        self._host = host
        self._config = config
        self._websocket = websocket
        self._options = options
        self._translator: DeepgramTranslator | None = None
        self._stream: Stream | None = None
        self._container: StreamDecoder | None = None
        self._closing = False
        self.sink = TranslatingSink(websocket, self._translate, _on_error)

    def _speech_pending(self) -> bool:
        return self._stream is not None and self._stream.session.undecoded_since is not None

    def _translate(self, batch: Sequence[ServerMessage]) -> list[Frame]:
        assert self._translator is not None
        return _frames(self._translator.translate(batch, self._speech_pending()))

    async def run(self, key_id: str | None) -> None:
        try:
            self._stream = await self._host.open_stream(self.sink, self._options.start(), key_id)
            self._translator = DeepgramTranslator(self._options, self._stream.session.model_name)
            log.info("session %s: Deepgram live (model %s, encoding %s)", self._stream.session.id, self._options.model, self._options.encoding or "container")
            if self._options.encoding is None:
                self._container = StreamDecoder(self._feed_pcm)
                await self._container.start()
            await self._receive()
        except ProtocolError as exc:
            log.info("connection %s (Deepgram): %s (close %d)", self._websocket.id, exc.message, exc.code)
            self.sink.fail(int(exc.code), exc.message)
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("connection %s (Deepgram): internal error", self._websocket.id)
            self.sink.fail(int(CloseCode.INTERNAL_ERROR), "internal error")
        finally:
            if self._container is not None:
                self._container.kill()
            if self._stream is not None and self._stream.outbox is self.sink:
                self._host.release(self._stream, str(self._websocket.close_code))
            self.sink.close(int(CloseCode.NORMAL))
            await self.sink.task

    async def _receive(self) -> None:
        while True:
            try:
                frame = await asyncio.wait_for(self._websocket.recv(), None if self._closing else self._config.idle_timeout)
            except TimeoutError:
                log.info("connection %s (Deepgram): no audio for %.0f s; closing (NET-0001)", self._websocket.id, self._config.idle_timeout)
                self.sink.send_frames([json.dumps(error_message("no audio received within the timeout", variant="NET-0001")), IDLE_CLOSE])
                return
            if self._closing:
                continue  # after CloseStream: the final results are on their way
            if isinstance(frame, str):
                await self._on_text(frame)
            elif not frame:
                await self._close_stream()  # an empty binary frame: the old way to say CloseStream
            else:
                await self._on_audio(frame)

    async def _on_audio(self, data: bytes) -> None:
        if self._container is not None:
            await self._container.write(data)
            return
        assert self._options.encoding is not None
        self._feed_pcm(RAW_DECODERS[self._options.encoding](data))

    def _feed_pcm(self, pcm: bytes) -> None:
        assert self._stream is not None
        if not self._stream.session.stopping:
            self._host.feed(self._stream, pcm)

    async def _on_text(self, text: str) -> None:
        assert self._stream is not None and self._translator is not None
        try:
            message = parse_client_text(text)
        except SchemaError as exc:
            self.sink.send_frames(_frames([error_message(str(exc), text)]))
            return
        if isinstance(message, Finalize):
            self.sink.send_frames(_frames(self._translator.finalize(self._speech_pending(), self._stream.session.audio_seconds)))
            self._host.flush(self._stream)
        elif isinstance(message, CloseStream):
            await self._close_stream()
        elif isinstance(message, Configure):
            reply = {"type": "ConfigureFailure", "request_id": self._translator.request_id, "code": "CONFIGURE_NOT_SUPPORTED",
                     "description": "this server does not change a live stream's settings"}
            self.sink.send_frames(_frames([reply]))
        # KeepAlive: receiving it has reset the idle timer

    async def _close_stream(self) -> None:
        """Flush, the last `Results`, `Metadata`, close 1000 (the `End` of the stream triggers the last two)."""
        assert self._stream is not None
        self._closing = True
        if self._container is not None:
            await self._container.finish()
            if self._container.error is not None:
                log.info("session %s: ffmpeg: %s", self._stream.session.id, self._container.error)
        self._host.stop(self._stream)
