"""The thin asyncio layer: websocket connections ↔ sessions, the tick scheduler, HTTP routes.

Ownership: `StreamerServer` owns the websockets server, one handler task and one writer task per
connection, the scheduler task, and the `sessions` registry; all of them run in the event-loop
thread. The model belongs to the worker thread (`worker.ModelWorker`). A connection's failure is
answered on that connection only (an `error`, then its close code); every other stream goes on.

Shutdown order (`shutdown`, on SIGTERM/SIGINT):
  1. stop accepting connections (the listening socket closes; open ones stay);
  2. finalise every stream: pending audio is decoded and committed, its `stable` messages sent
     (bounded by `server.shutdown_timeout`);
  3. close every connection with 1001;
  4. stop the scheduler, then the worker thread.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from pathlib import Path

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from .config import Config
from .http import STATIC_DIR, HttpRoutes, text_response
from .protocol import (
    Audio,
    CloseCode,
    End,
    ErrorMessage,
    Flush,
    LanguageDetected,
    ProtocolError,
    ServerMessage,
    SessionProtocol,
    Stable,
    Start,
    Stop,
)
from .scheduler import TickScheduler
from .session import ModelInfo, Session
from .worker import ModelWorker

log = logging.getLogger("streamer.server")

MAX_REASON_BYTES = 123  # a close frame's reason must fit in a control frame

StableListener = Callable[[Session, Stable], None]


@dataclass(frozen=True)
class _Close:
    code: int
    reason: str


class Outbox:
    """Frames to one client, sent in order by one writer task, so a slow client delays only itself."""

    def __init__(self, websocket: ServerConnection, protocol: SessionProtocol) -> None:
        self._websocket = websocket
        self._protocol = protocol
        self._queue: asyncio.Queue[bytes | str | _Close] = asyncio.Queue()
        self.closing = False
        self.task = asyncio.create_task(self._run(), name=f"writer-{websocket.id}")

    def send(self, message: ServerMessage) -> None:
        if not self.closing:
            self._queue.put_nowait(self._protocol.encode(message))

    def close(self, code: int, reason: str = "") -> None:
        if not self.closing:
            self.closing = True
            self._queue.put_nowait(_Close(code, _short_reason(reason)))

    def fail(self, code: int, message: str) -> None:
        """An `error` message, then the close with the same code (the reason repeats the message)."""
        self.send(ErrorMessage(int(code), message))
        self.close(code, message)

    async def _run(self) -> None:
        try:
            while True:
                item = await self._queue.get()
                if isinstance(item, _Close):
                    await self._websocket.close(item.code, item.reason)
                    return
                await self._websocket.send(item)
        except ConnectionClosed:
            return


def _short_reason(reason: str) -> str:
    data = reason.encode("utf-8")[:MAX_REASON_BYTES]
    return data.decode("utf-8", errors="ignore")


class StreamerServer:
    """The daemon's network side. `start()`, then `serve_until(event)` or `shutdown()`."""

    def __init__(self, config: Config, worker: ModelWorker) -> None:
        self._config = config
        self._worker = worker
        self.sessions: dict[str, Session] = {}
        self._outboxes: dict[str, Outbox] = {}
        self._model: asyncio.Future[ModelInfo] | None = None
        self._scheduler: TickScheduler | None = None
        self._scheduler_task: asyncio.Task[None] | None = None
        self._server: Server | None = None
        self._shutting_down = False
        static = Path(config.server.static_dir) if config.server.static_dir else STATIC_DIR
        self.routes = HttpRoutes(static)
        self.routes.add("/healthz", lambda request: text_response(HTTPStatus.OK, "ok\n"))
        self.routes.add("/readyz", self._readyz)
        # Seam for the journal/metrics layers: called with every stable segment, in order.
        self.stable_listeners: list[StableListener] = []

    # ---- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> tuple[str, int]:
        """Listens (the model may still be loading; sessions wait for it) and returns the bound address."""
        loop = asyncio.get_running_loop()
        self._model = loop.create_future()
        asyncio.create_task(self._await_model(), name="await-model")
        self._scheduler = TickScheduler(
            self._worker,
            self.sessions,
            deliver=self._deliver,
            fail=self._fail_session,
            max_batch=self._config.model.max_batch,
            tick_interval=self._config.stream.tick_interval,
        )
        self._scheduler_task = asyncio.create_task(self._scheduler.run(), name="tick-scheduler")
        server_config = self._config.server
        self._server = await serve(
            self._handle,
            server_config.host,
            server_config.port,
            process_request=self.routes.process_request,
            # Our own check answers 4413 up to twice the limit; beyond, websockets drops it (1009).
            max_size=2 * server_config.max_frame_bytes,
            max_queue=64,
        )
        host, port = self._server.sockets[0].getsockname()[:2]
        return host, port

    async def _await_model(self) -> None:
        assert self._model is not None
        try:
            info = await asyncio.to_thread(self._worker.wait_loaded)
        except Exception as exc:
            log.exception("the model could not be loaded")
            self._model.set_exception(exc)
            return
        self._model.set_result(info)

    def _readyz(self, request: Request) -> Response:
        ready = self._model is not None and self._model.done() and not self._model.exception() and not self._shutting_down
        if ready:
            return text_response(HTTPStatus.OK, "ready\n")
        return text_response(HTTPStatus.SERVICE_UNAVAILABLE, "model loading\n" if not self._shutting_down else "shutting down\n")

    async def serve_until(self, stop: asyncio.Event) -> None:
        await stop.wait()
        await self.shutdown()

    async def shutdown(self) -> None:
        """Stops in the documented order (module docstring)."""
        if self._shutting_down or self._server is None:
            return
        self._shutting_down = True
        log.info("shutting down: no new connections; finalising %d stream(s)", len(self.sessions))
        self._server.server.close()  # 1. stop accepting
        for session in list(self.sessions.values()):  # 2. finalise
            self._deliver(session, session.finalize())
        assert self._scheduler is not None
        self._scheduler.wake()
        try:
            await asyncio.wait_for(self._all_finalised(), self._config.server.shutdown_timeout)
        except TimeoutError:
            log.warning("shutdown: streams not finalised after %.1f s; closing anyway", self._config.server.shutdown_timeout)
        for session_id, outbox in list(self._outboxes.items()):  # 3. close 1001
            outbox.close(CloseCode.GOING_AWAY, "server shutting down")
        self._server.close(close_connections=True, code=CloseCode.GOING_AWAY, reason="server shutting down")
        await self._server.wait_closed()
        if self._scheduler_task is not None:  # 4. scheduler, then worker
            self._scheduler_task.cancel()
            try:
                await self._scheduler_task
            except asyncio.CancelledError:
                pass
        await asyncio.to_thread(self._worker.stop)
        log.info("shut down")

    async def _all_finalised(self) -> None:
        while any(not s.ended for s in self.sessions.values()):
            await asyncio.sleep(0.05)

    # ---- one connection ------------------------------------------------------------------------

    async def _handle(self, websocket: ServerConnection) -> None:
        protocol = SessionProtocol(self._config.server.max_frame_bytes)
        outbox = Outbox(websocket, protocol)
        session: Session | None = None
        try:
            async for frame in websocket:
                if self._shutting_down and session is not None:
                    continue  # the stream is being finalised; late audio has nowhere to go
                message = protocol.receive(frame)
                if isinstance(message, Start):
                    session = await self._open_session(outbox, message)
                    continue
                assert session is not None  # the protocol admits nothing else before `start`
                if isinstance(message, Audio):
                    self._deliver(session, session.on_audio(message.data))
                elif isinstance(message, Flush):
                    self._deliver(session, session.flush())
                elif isinstance(message, Stop):
                    self._deliver(session, session.stop())
                assert self._scheduler is not None
                self._scheduler.wake()
        except ProtocolError as exc:
            log.info("connection %s: %s (close %d)", websocket.id, exc.message, exc.code)
            outbox.fail(exc.code, exc.message)
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("connection %s: internal error", websocket.id)
            outbox.fail(CloseCode.INTERNAL_ERROR, "internal error")
        finally:
            if session is not None:
                self._close_session(session, websocket)
            await outbox.task

    async def _open_session(self, outbox: Outbox, start: Start) -> Session:
        if self._shutting_down:
            raise ProtocolError(CloseCode.GOING_AWAY, "server shutting down")
        if len(self.sessions) >= self._config.server.max_streams:
            raise ProtocolError(CloseCode.LIMITS, f"too many streams (maximum {self._config.server.max_streams})")
        assert self._model is not None
        model = await self._model
        session = Session(uuid.uuid4().hex, start, self._config, model)
        self.sessions[session.id] = session
        self._outboxes[session.id] = outbox
        log.info(
            "session %s opened: %d Hz %s x%d, language %s, task %s (%d active)",
            session.id, start.sample_rate, start.encoding, start.channels, start.language, start.task, len(self.sessions),
        )
        self._deliver(session, session.open())
        return session

    def _close_session(self, session: Session, websocket: ServerConnection) -> None:
        self.sessions.pop(session.id, None)
        self._outboxes.pop(session.id, None)
        if self._scheduler is not None:
            self._scheduler.forget(session.id)
        log.info(
            "session %s closed (%s): %.1f s of audio, %d stable segment(s)",
            session.id, websocket.close_code, session.audio_seconds, session.stable_count,
        )

    # ---- messages out --------------------------------------------------------------------------

    def _deliver(self, session: Session, messages: list[ServerMessage]) -> None:
        outbox = self._outboxes.get(session.id)
        if outbox is None:
            return
        for message in messages:
            if isinstance(message, Stable):
                for listener in self.stable_listeners:
                    listener(session, message)
            elif isinstance(message, LanguageDetected):
                log.info("session %s: language %s (p=%.2f)", session.id, message.language, message.probability)
            outbox.send(message)
            if isinstance(message, End):
                outbox.close(CloseCode.NORMAL, "")

    def _fail_session(self, session: Session, exc: BaseException) -> None:
        outbox = self._outboxes.get(session.id)
        if outbox is not None:
            outbox.fail(CloseCode.INTERNAL_ERROR, f"internal error: {type(exc).__name__}")
