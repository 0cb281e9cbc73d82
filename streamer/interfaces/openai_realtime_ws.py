"""The asyncio side of OpenAI Realtime transcription: one websocket ↔ one stream (`openai_realtime.py` decides)."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from wire import CloseCode, ProtocolError, ServerMessage

from .credentials import offered_subprotocols
from .openai_realtime import (
    AppendAudio,
    CommitTurn,
    OpenStream,
    RealtimeError,
    RealtimeSession,
)
from .sink import CloseFrame, Frame, TranslatingSink

if TYPE_CHECKING:
    from ..server.host import Stream, StreamHost

log = logging.getLogger("streamer.interfaces.realtime")


def _frames(events: Sequence[dict[str, Any]]) -> list[Frame]:
    return [json.dumps(e, ensure_ascii=False) for e in events]


def is_beta(connection: ServerConnection) -> bool:
    assert connection.request is not None
    headers = connection.request.headers
    return "realtime=v1" in headers.get("OpenAI-Beta", "") or "openai-beta.realtime-v1" in offered_subprotocols(headers)


class RealtimeConnection:
    def __init__(self, host: StreamHost, websocket: ServerConnection) -> None:
        self._host = host
        self._websocket = websocket
        self._session = RealtimeSession(beta=is_beta(websocket))
        self._stream: Stream | None = None
        self.sink = TranslatingSink(websocket, self._translate, self._on_error)

    def _text_pending(self) -> bool:
        """Whether the turn awaiting completion has text to come (`RealtimeSession.translate`)."""
        if self._stream is None:
            return False
        session = self._stream.session
        return session.final_pending if self._session.turn_detection is None else session.undecoded_since is not None

    def _translate(self, batch: Sequence[ServerMessage]) -> list[Frame]:
        return _frames(self._session.translate(batch, self._text_pending()))

    def _on_error(self, code: int, message: str) -> list[Frame]:
        event = self._session.error(RealtimeError("stream_error", message), None)
        return [json.dumps(event), CloseFrame(code, message)]

    async def run(self, key_id: str | None) -> None:
        self.sink.send_frames(_frames([self._session.created()]))
        try:
            async for frame in self._websocket:
                if isinstance(frame, bytes):
                    error = RealtimeError("invalid_event", "send audio as input_audio_buffer.append events (JSON text), not binary frames")
                    self.sink.send_frames(_frames([self._session.error(error, None)]))
                    continue
                actions, events = self._session.receive(frame)
                self.sink.send_frames(_frames(events))
                for action in actions:
                    await self._act(action, key_id)
        except ProtocolError as exc:
            log.info("connection %s (Realtime): %s (close %d)", self._websocket.id, exc.message, exc.code)
            self.sink.fail(int(exc.code), exc.message)
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("connection %s (Realtime): internal error", self._websocket.id)
            self.sink.fail(int(CloseCode.INTERNAL_ERROR), "internal error")
        finally:
            if self._stream is not None and self._stream.outbox is self.sink:
                self._host.release(self._stream, str(self._websocket.close_code))
            self.sink.close(int(CloseCode.NORMAL))
            await self.sink.task

    async def _act(self, action: OpenStream | AppendAudio | CommitTurn, key_id: str | None) -> None:
        if isinstance(action, OpenStream):
            self._stream = await self._host.open_stream(self.sink, action.start, key_id)
            log.info("session %s: OpenAI Realtime transcription (%s dialect, %s)", self._stream.session.id, "beta" if self._session.beta else "GA", self._session.audio_format)
            return
        assert self._stream is not None
        if isinstance(action, AppendAudio):
            if action.pcm:
                self._host.feed(self._stream, action.pcm)
        else:
            self._host.flush(self._stream)
            self.sink.send_frames(_frames(self._session.translate([], self._text_pending())))  # nothing pending: completed at once
