"""Protocol v1 (docs/protocol.md) at `/v1/stream`: one interface among the others, with resume.

A connection's frames go through `SessionProtocol` (the sans-I/O state machine) onto the
`StreamHost`; the stream's messages come back through an `Outbox`, which sends a `stable` only
once the shared store holds it. An error is answered on this connection only (an `error`, then
its close code); every other stream goes on. A connection that drops without `stop` leaves its
stream parked for a resume.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request

from wire import Audio, ClientMessage, CloseCode, ErrorMessage, Flush, ProtocolError, ServerMessage, Start, Stop

from ..protocol import SessionProtocol
from ..server.auth import AuthDecision
from ..server.host import Stream, StreamHost
from .sink import CloseFrame, short_reason

log = logging.getLogger("streamer.interfaces.v1")

AUTH_FIRST_FRAME_TIMEOUT = 10.0  # s a refused client has to send its first frame (its framing)


class Outbox:
    """Frames to one client, sent in order by one writer task, so a slow client delays only itself."""

    resumable = True

    def __init__(self, websocket: ServerConnection, protocol: SessionProtocol) -> None:
        self._websocket = websocket
        self._protocol = protocol
        self._queue: asyncio.Queue[tuple[bytes | str, asyncio.Future[bool] | None] | CloseFrame] = asyncio.Queue()
        self.closing = False
        self.task = asyncio.create_task(self._run(), name=f"writer-{websocket.id}")

    def send(self, message: ServerMessage, after: asyncio.Future[bool] | None = None) -> None:
        """Queues `message`; with `after`, it is sent once that store write succeeded (else never)."""
        if not self.closing:
            self._queue.put_nowait((self._protocol.encode(message), after))

    def close(self, code: int, reason: str = "") -> None:
        if not self.closing:
            self.closing = True
            self._queue.put_nowait(CloseFrame(code, short_reason(reason)))

    def fail(self, code: int, message: str) -> None:
        """An `error` message, then the close with the same code (the reason repeats the message)."""
        self.send(ErrorMessage(int(code), message))
        self.close(code, message)

    async def _run(self) -> None:
        try:
            while True:
                item = await self._queue.get()
                if isinstance(item, CloseFrame):
                    await self._websocket.close(item.code, item.reason)
                    return
                frame, after = item
                if after is None or await _stored(after):
                    await self._websocket.send(frame)
        except ConnectionClosed:
            return


async def _stored(write: asyncio.Future[bool]) -> bool:
    try:
        return await asyncio.shield(write)
    except Exception:
        return False


class ProtocolV1:
    """Serves protocol v1 connections on a `StreamHost`."""

    def __init__(self, host: StreamHost, authenticate: Callable[[Request], AuthDecision], max_frame_bytes: int) -> None:
        self._host = host
        self._authenticate = authenticate
        self._max_frame_bytes = max_frame_bytes

    async def serve(self, websocket: ServerConnection) -> None:
        assert websocket.request is not None
        protocol = SessionProtocol(self._max_frame_bytes)
        outbox = Outbox(websocket, protocol)
        stream: Stream | None = None
        ended_by_error = False
        try:
            decision = self._authenticate(websocket.request)
            if not decision.ok:
                await self._refuse(websocket, protocol, outbox, decision)
                return
            async for frame in websocket:
                if self._host.shutting_down and stream is not None:
                    continue  # the stream is being finalised; late audio has nowhere to go
                stream = await self._on_frame(protocol.receive(frame), stream, outbox, decision.key_id)
        except ProtocolError as exc:
            ended_by_error = True
            log.info("connection %s: %s (close %d)", websocket.id, exc.message, exc.code)
            self._host.metrics.protocol_errors_total.labels(str(int(exc.code))).inc()
            outbox.fail(exc.code, exc.message)
        except ConnectionClosed:
            pass
        except Exception:
            ended_by_error = True
            log.exception("connection %s: internal error", websocket.id)
            outbox.fail(CloseCode.INTERNAL_ERROR, "internal error")
        finally:
            if stream is not None and stream.outbox is outbox:
                self._host.release(stream, str(websocket.close_code), resumable=not ended_by_error)
            outbox.close(CloseCode.NORMAL)  # no-op if a close is queued; else ends the writer of a dropped connection
            await outbox.task

    async def _on_frame(self, message: ClientMessage, stream: Stream | None, outbox: Outbox, key_id: str | None) -> Stream:
        if isinstance(message, Start):
            return await self._host.open_stream(outbox, message, key_id)
        assert stream is not None  # the protocol admits nothing else before `start`
        if isinstance(message, Audio):
            self._host.feed(stream, message.data)
        elif isinstance(message, Flush):
            self._host.flush(stream)
        elif isinstance(message, Stop):
            self._host.stop(stream)
        return stream

    async def _refuse(self, websocket: ServerConnection, protocol: SessionProtocol, outbox: Outbox, decision: AuthDecision) -> None:
        """Refuses an unauthenticated connection on its first frame, in that frame's framing (a browser
        sees close codes, not HTTP statuses); that frame is never parsed, so no audio is processed."""
        assert decision.close_code is not None
        self._host.metrics.reject("unauthorized" if decision.close_code == CloseCode.UNAUTHORIZED else "forbidden_origin")
        log.info("connection %s refused: %s (close %d)", websocket.id, decision.reason, decision.close_code)
        try:
            first = await asyncio.wait_for(websocket.recv(), AUTH_FIRST_FRAME_TIMEOUT)
            protocol.adopt_framing_of(first)
        except (TimeoutError, ConnectionClosed):
            pass
        outbox.fail(decision.close_code, decision.reason)
