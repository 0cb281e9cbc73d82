"""The daemon: listening, routing, housekeeping and shutdown; composed in streamer/app.py.

Ownership: `StreamerServer` owns the websockets server, the scheduler task, the housekeeping
task and the model-loading task; all of them run in the event-loop thread, as do the streams
(`registry.StreamRegistry`) and every connection's handler and writer task. The model belongs to
the worker thread (`engine.worker.ModelWorker`). Each websocket path is served by an interface
(`front_end`, streamer/interfaces): protocol v1 at `/v1/stream`, Deepgram and OpenAI Realtime
at theirs; plain HTTP goes to `HttpRoutes`.

Admission, in order, before any audio reaches a session: key/token and origin (4401/4403, decided
on the handshake, answered on the first frame), the daemon's stream limit and worker load (4429),
the key's stream limit (4429). Audio faster than `server.max_audio_rate` × real time is 4429.

Shutdown order (`shutdown`, on SIGTERM/SIGINT):
  1. refuse new streams, and stop accepting connections (the listening socket closes; open ones stay);
  2. finalise every stream, parked ones included: pending audio is decoded and committed, its
     `stable` messages journaled and sent (bounded by `server.shutdown_timeout`); with a shared
     store (`[store] backend = "redis"`) and `server.drain_finalize` off, an attached stream is
     handed over as it is instead (docs/deploy.md);
  3. close every connection with 1001 (with a shared store 4503: resume on another replica);
  4. stop the scheduler and housekeeping, then the worker thread; close the journals.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from http import HTTPStatus
from typing import Any, Protocol
from urllib.parse import urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from wire import CloseCode, ErrorMessage

from ..config import Config
from .auth import Authenticator, credentials_from_request, json_response, token_endpoint
from .http import HttpRoutes, text_response, transcript_response
from .registry import StreamRegistry

log = logging.getLogger("streamer.server.daemon")

HOUSEKEEPING_INTERVAL = 1.0  # s between expiry / load checks
JOURNAL_CLEANUP_INTERVAL = 3600.0
OVERLOAD_CLEAR = 0.8  # the overload warning re-arms once the load falls below this × max_load
DEGRADED_LAG = 3.5  # s a stream's speech may wait undecoded before it is told its latency is degraded


class FrontEnd(Protocol):
    """The interfaces (streamer/interfaces.Interfaces): what serves each websocket path."""

    def websocket_handler(self, path: str) -> Callable[[ServerConnection], Awaitable[None]]: ...
    def connection_factory(self, *args: Any, **kwargs: Any) -> asyncio.Protocol: ...
    def select_subprotocol(self, connection: ServerConnection, offered: Sequence[str]) -> Any: ...
    async def start(self) -> None: ...
    async def stop_accepting(self) -> None: ...


class StreamerServer:
    """The daemon's network side. `start()`, then `serve_until(event)` or `shutdown()`."""

    def __init__(
        self,
        config: Config,
        streams: StreamRegistry,
        front_end: FrontEnd,
        routes: HttpRoutes,
        auth: Authenticator,
        tls: ssl.SSLContext | None,
    ) -> None:
        self._config = config
        self.streams = streams
        self.metrics = streams.metrics
        self.auth = auth
        self._front_end = front_end
        self._tls = tls
        self._tasks: list[asyncio.Task[None]] = []
        self._server: Server | None = None
        self._shutting_down = False
        self._overloaded = False
        self.routes = routes
        routes.add("/healthz", lambda request: text_response(HTTPStatus.OK, "ok\n"))
        routes.add("/readyz", self._readyz)
        routes.add("/metrics", lambda request: self.metrics.response())
        routes.add("/v1/token", lambda request: token_endpoint(self.auth, request, time.time(), secure=self._tls is not None))
        routes.add_prefix("/v1/sessions/", self._transcript)

    @property
    def scheme(self) -> str:
        return "wss" if self._tls is not None else "ws"

    # ---- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> tuple[str, int]:
        """Listens (the model may still be loading; sessions wait for it) and returns the bound address."""
        await self.streams.store.check()
        self._tasks.append(asyncio.create_task(self.streams.await_model(), name="await-model"))
        self._tasks.append(asyncio.create_task(self.streams.scheduler.run(), name="tick-scheduler"))
        self._tasks.append(asyncio.create_task(self._housekeeping(), name="housekeeping"))
        server_config = self._config.server
        self._server = await serve(
            self._handle,
            server_config.host,
            server_config.port,
            process_request=self.routes.process_request,
            # Our own check answers 4413 up to twice the limit; beyond, websockets drops it (1009).
            max_size=2 * server_config.max_frame_bytes,
            max_queue=64,
            ssl=self._tls,
            create_connection=self._front_end.connection_factory,  # type: ignore[arg-type]  # a front door for uploads
            select_subprotocol=self._front_end.select_subprotocol,
        )
        host, port = self._server.sockets[0].getsockname()[:2]
        await self._front_end.start()
        return host, port

    def _readyz(self, request: Request) -> Response:
        if self.streams.model_ready and not self._shutting_down:
            return text_response(HTTPStatus.OK, "ready\n")
        return text_response(HTTPStatus.SERVICE_UNAVAILABLE, "model loading\n" if not self._shutting_down else "shutting down\n")

    def _transcript(self, request: Request) -> Response:
        decision = self.auth.authenticate(credentials_from_request(request, secure=self._tls is not None), time.time())
        if not decision.ok:
            assert decision.http_status is not None
            return json_response(HTTPStatus(decision.http_status), {"error": decision.reason})
        return transcript_response(self.streams.journal, request.path.split("?", 1)[0], decision.key_id)

    async def serve_until(self, stop: asyncio.Event) -> None:
        await stop.wait()
        await self.shutdown()

    async def shutdown(self) -> None:
        """Stops in the documented order (module docstring)."""
        if self._shutting_down or self._server is None:
            return
        self._shutting_down = True
        log.info("shutting down: no new connections; finalising %d stream(s)", len(self.streams.streams))
        # 1 and 2: no stream opens from here on; every stream is finalised, parked ones too (the
        # other interfaces' streams always: they never resume). With a shared store and
        # server.drain_finalize off, an attached v1 stream is handed over at once instead: what is
        # committed is stored (flush below), the client resends the rest to the next replica,
        # which goes on mid-utterance (docs/deploy.md). A decode still in flight here lands in the
        # store only while this replica owns the stream, so it is replayed there or refused, never twice.
        handover = self.streams.store.shared and not self._config.server.drain_finalize
        self.streams.begin_shutdown(handover)
        self._server.server.close()
        await self._front_end.stop_accepting()
        try:
            await asyncio.wait_for(self._all_finalised(handover), self._config.server.shutdown_timeout)
        except TimeoutError:
            log.warning("shutdown: streams not finalised after %.1f s; closing anyway", self._config.server.shutdown_timeout)
        await self.streams.store.flush()
        await self._close_all()  # 3.
        await self._server.wait_closed()
        for task in self._tasks:  # 4. scheduler and housekeeping, then worker, then journals
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.to_thread(self.streams.stop_worker)
        self.streams.remove_all("shutdown")
        await self.streams.store.close()
        log.info("shut down")

    async def _close_all(self) -> None:
        """Closes every connection: 1001, or with a shared store 4503 (resume on another replica),
        once each connection's writer has sent what was queued before."""
        assert self._server is not None
        shared = self.streams.store.shared
        code, reason = (CloseCode.MOVED, "replica draining: resume elsewhere") if shared else (CloseCode.GOING_AWAY, "server shutting down")
        writers = self.streams.close_all(code, reason)
        if writers:
            await asyncio.wait(writers, timeout=self._config.server.shutdown_timeout)
        self._server.close(close_connections=True, code=code, reason=reason)

    async def _all_finalised(self, handover: bool) -> None:
        while not self.streams.settled(handover):
            await asyncio.sleep(0.05)

    async def _housekeeping(self) -> None:
        """Parked streams' expiry, worker-load warnings, gauges, journal retention."""
        last_cleanup = 0.0
        while True:
            now = time.monotonic()
            self.streams.expire(now)
            self._check_load(now)
            self.metrics.active_streams.set(self.streams.attached_count())
            self.metrics.detached_streams.set(len(self.streams.detached))
            if now - last_cleanup > JOURNAL_CLEANUP_INTERVAL:
                last_cleanup = now
                await asyncio.to_thread(self.streams.journal.cleanup)
            await asyncio.sleep(HOUSEKEEPING_INTERVAL)

    def _check_load(self, now: float) -> None:
        """Admitted streams are slowed, never cut, when the worker saturates; they are told so once."""
        worker = self.streams.load
        load = worker.load(now)
        self.metrics.worker_load.set(load)
        limit = self._config.server.max_load
        max_lag = self._config.server.max_tick_lag
        if worker.saturated(now, limit, max_lag) and not self._overloaded:
            self._overloaded = True
            log.warning(
                "worker saturated (load %.2f, decodes %.2f s late at p90): new sessions are refused, open ones get slower ticks",
                load, worker.lag_p90(now),
            )
            warning = ErrorMessage(int(CloseCode.LIMITS), f"daemon overloaded (worker load {load:.0%}): latency is degraded", fatal=False)
            for stream in self.streams.streams.values():
                if stream.outbox is not None:
                    stream.outbox.send(warning)
        elif self._overloaded and not worker.saturated(now, OVERLOAD_CLEAR * limit, OVERLOAD_CLEAR * max_lag):
            self._overloaded = False
            log.info("worker load back to %.2f", load)
        # Every stream fitting in one batch, but batches too slow for real time: no backlog, yet
        # speech waits. Each stream hit is told once (and again after it has caught up).
        for stream in self.streams.streams.values():
            lag = stream.lag(now)
            if lag > DEGRADED_LAG and not stream.lag_warned and stream.outbox is not None:
                stream.lag_warned = True
                self.metrics.degraded_total.inc()
                log.warning("session %s: speech waits %.1f s for the worker; latency degraded", stream.session.id, lag)
                stream.outbox.send(ErrorMessage(int(CloseCode.LIMITS), f"daemon overloaded: speech waits {lag:.1f} s for decoding; latency is degraded", fatal=False))
            elif lag < DEGRADED_LAG / 2:
                stream.lag_warned = False

    # ---- connections ----------------------------------------------------------------------------

    async def _handle(self, websocket: ServerConnection) -> None:
        """Hands a websocket to the interface of its path (the routes let only known paths through)."""
        assert websocket.request is not None
        await self._front_end.websocket_handler(urlsplit(websocket.request.path).path)(websocket)


def tls_context(cert: str, key: str) -> ssl.SSLContext | None:
    if not cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key or None)
    return context
