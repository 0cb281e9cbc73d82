"""The asyncio side of Wyoming: a TCP server (`[wyoming] uri`), one connection ↔ one utterance."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from wyoming.error import Error
from wyoming.event import Event, async_read_event, async_write_event

from model.tokenizer import LANGUAGES
from wire import ProtocolError, ServerMessage

from .wyoming import FeedAudio, OpenStream, StopStream, WyomingSession

if TYPE_CHECKING:
    from ..server.host import Stream, StreamHost

log = logging.getLogger("streamer.interfaces.wyoming")


class _Sink:
    """The stream's messages as Wyoming events, written in order by one task."""

    resumable = False  # a Wyoming stream ends with its connection

    def __init__(self, session: WyomingSession, writer: asyncio.StreamWriter) -> None:
        self._session = session
        self._writer = writer
        self._batch: list[ServerMessage] = []
        self._queue: asyncio.Queue[Event | None] = asyncio.Queue()
        self.closing = False
        self.task = asyncio.create_task(self._run(), name="wyoming-writer")

    def send(self, message: ServerMessage, after: asyncio.Future[bool] | None = None) -> None:
        if not self._batch:
            asyncio.get_running_loop().call_soon(self._flush)
        self._batch.append(message)

    def _flush(self) -> None:
        batch, self._batch = self._batch, []
        if not batch:
            return
        events, done = self._session.translate(batch)
        self.write(events)
        if done:
            self.close(1000)

    def write(self, events: Sequence[Event]) -> None:
        if not self.closing:
            for event in events:
                self._queue.put_nowait(event)

    def close(self, code: int, reason: str = "") -> None:
        self._flush()  # the server closes right after handing over `End`: its batch goes first
        if not self.closing:
            self.closing = True
            self._queue.put_nowait(None)

    def fail(self, code: int, message: str) -> None:
        self.write([Error(message, str(code)).event()])
        self.close(code)

    async def _run(self) -> None:
        with contextlib.suppress(ConnectionError):
            while (event := await self._queue.get()) is not None:
                await async_write_event(event, self._writer)
            self._writer.close()


class WyomingServer:
    def __init__(self, host: StreamHost, uri: str, model_name: str) -> None:
        self._host = host
        self._uri = uri
        self._model_name = model_name
        self._server: asyncio.Server | None = None

    async def start(self) -> tuple[str, int]:
        parts = urlsplit(self._uri)
        self._server = await asyncio.start_server(self._connection, parts.hostname or "127.0.0.1", parts.port or 10300)
        bound = self._server.sockets[0].getsockname()[:2]
        log.info("Wyoming on tcp://%s:%d", *bound)
        return bound

    def close(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # `describe` must be answered within 1 s, even while the model loads: named as configured.
        english_only = self._model_name.endswith(".en")
        session = WyomingSession(self._model_name, languages=["en"] if english_only else sorted(LANGUAGES))
        sink = _Sink(session, writer)
        stream: Stream | None = None
        try:
            while not sink.closing and (event := await async_read_event(reader)) is not None:
                actions, events = session.receive(event)
                sink.write(events)
                for action in actions:
                    if isinstance(action, OpenStream):
                        stream = await self._host.open_stream(sink, action.start, None)
                        log.info("session %s: Wyoming (%d Hz x%d)", stream.session.id, action.start.sample_rate, action.start.channels)
                    elif isinstance(action, FeedAudio) and stream is not None and action.pcm:
                        self._host.feed(stream, action.pcm)
                    elif isinstance(action, StopStream) and stream is not None:
                        self._host.stop(stream)
                if any(e.type == "transcript-stop" for e in events):
                    sink.close(1000)  # audio-stop without audio: the empty transcript is all
        except ProtocolError as exc:
            log.info("Wyoming connection: %s (%d)", exc.message, exc.code)
            sink.fail(int(exc.code), exc.message)
        except (ConnectionError, asyncio.IncompleteReadError, ValueError) as exc:
            log.info("Wyoming connection ended: %s", exc)
        finally:
            if stream is not None and stream.outbox is sink:
                self._host.release(stream, "wyoming connection closed")
            sink.close(1000)
            await sink.task
