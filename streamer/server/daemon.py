"""The thin asyncio layer: websocket connections ↔ streams, the tick scheduler, HTTP routes.

Ownership: `StreamerServer` owns the websockets server, one handler task and one writer task per
connection, the scheduler task, the housekeeping task, and the `streams` registry; all of them run
in the event-loop thread. The model belongs to the worker thread (`engine.worker.ModelWorker`). A
connection's failure is answered on that connection only (an `error`, then its close code); every
other stream goes on.

A `Stream` outlives its connection: when a connection drops without `stop`, the stream is parked
(`resume.DetachedSessions`) for `stream.resume_window` seconds, still decoding and journaling
what it had; a `start` with `resume` takes it back. Every `stable` is journaled (fsync'd), and
stored in the session store (`store`), before it is sent. With a shared store a resume may
reach a replica that does not hold the stream: it claims it from the store and continues it
(`handover`, `_adopt_stream`).

Admission, in order, before any audio reaches a session: key/token and origin (4401/4403, decided
on the handshake, answered on the first frame), the daemon's stream limit and worker load (4429),
the key's stream limit (4429). Audio faster than `server.max_audio_rate` × real time is 4429.

Shutdown order (`shutdown`, on SIGTERM/SIGINT):
  1. stop accepting connections (the listening socket closes; open ones stay);
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
import uuid
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Protocol, TypeVar
from urllib.parse import urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from model.runtime import release_free_memory
from model.whisper import Whisper

from ..config import Config
from ..engine.load import WorkerLoad
from ..engine.scheduler import TickScheduler
from ..engine.worker import ModelWorker
from ..interfaces import Interfaces
from ..metrics import StreamerMetrics
from ..protocol import (
    Audio,
    CloseCode,
    End,
    ErrorMessage,
    Flush,
    LanguageDetected,
    Partial,
    ProtocolError,
    Ready,
    ServerMessage,
    SessionProtocol,
    Stable,
    Start,
    Stop,
)
from ..state.handover import plan_handover
from ..state.journal import Journal, JournalWriter
from ..state.store import SessionStore, StoredSession, committed_text, make_store
from ..stream.session import ModelInfo, Session
from .auth import AuthDecision, Authenticator, StreamLimiter, TokenSigner, credentials_from_request, json_response, load_key_store, token_endpoint
from .http import STATIC_DIR, HttpRoutes, text_response, transcript_response
from .limits import AdmissionControl, AudioRateLimiter
from .resume import DetachedSessions, ResumeRequest, StableHistory, parse_resume

log = logging.getLogger("streamer.server.daemon")
T = TypeVar("T")

MAX_REASON_BYTES = 123  # a close frame's reason must fit in a control frame
AUTH_FIRST_FRAME_TIMEOUT = 10.0  # s a refused client has to send its first frame (its framing)
HOUSEKEEPING_INTERVAL = 1.0  # s between expiry / load checks
JOURNAL_CLEANUP_INTERVAL = 3600.0
OVERLOAD_CLEAR = 0.8  # the overload warning re-arms once the load falls below this × max_load
DEGRADED_LAG = 3.5  # s a stream's speech may wait undecoded before it is told its latency is degraded


@dataclass(frozen=True)
class _Close:
    code: int
    reason: str


class MessageSink(Protocol):
    """Where a stream's messages go: protocol v1's `Outbox`, or an interface's translator (streamer/interfaces)."""

    closing: bool
    task: asyncio.Task[None]  # the writer: done once the connection's last frame is out

    # `after`: a stable's write to the shared store; protocol v1 sends the stable only once it is
    # stored (a resume elsewhere must find it). The other interfaces never resume and ignore it.
    def send(self, message: ServerMessage, after: asyncio.Future[bool] | None = None) -> None: ...
    def close(self, code: int, reason: str = "") -> None: ...
    def fail(self, code: int, message: str) -> None: ...


class Outbox:
    """Frames to one client, sent in order by one writer task, so a slow client delays only itself."""

    def __init__(self, websocket: ServerConnection, protocol: SessionProtocol) -> None:
        self._websocket = websocket
        self._protocol = protocol
        self._queue: asyncio.Queue[tuple[bytes | str, asyncio.Future[bool] | None] | _Close] = asyncio.Queue()
        self.closing = False
        self.task = asyncio.create_task(self._run(), name=f"writer-{websocket.id}")

    def send(self, message: ServerMessage, after: asyncio.Future[bool] | None = None) -> None:
        """Queues `message`; with `after`, it is sent once that store write succeeded (else never)."""
        if not self.closing:
            self._queue.put_nowait((self._protocol.encode(message), after))

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


def _short_reason(reason: str) -> str:
    data = reason.encode("utf-8")[:MAX_REASON_BYTES]
    return data.decode("utf-8", errors="ignore")


@dataclass(eq=False)
class Stream:
    """A session and what the daemon keeps beside it, across connections."""

    session: Session
    start: Start
    key_id: str | None
    rate: AudioRateLimiter
    journal: JournalWriter | None
    history: StableHistory = field(default_factory=StableHistory)
    outbox: MessageSink | None = None  # None while parked (no connection)
    expired: bool = False  # parked past its window: being finalised, then removed
    failed: bool = False  # closed with 1011 by a worker failure: never resumable
    arrivals: deque[tuple[float, float]] = field(default_factory=deque)  # (stream seconds after a frame, monotonic time)
    lag_warned: bool = False

    def lag(self, now: float) -> float:
        """Seconds the oldest undecoded speech of this stream has waited (0 when none waits)."""
        since = self.session.undecoded_since
        if since is None:
            self.arrivals.clear()
            return 0.0
        while self.arrivals and self.arrivals[0][0] <= since:
            self.arrivals.popleft()  # frames every decode has covered
        return now - self.arrivals[0][1] if self.arrivals else 0.0


class StreamerServer:
    """The daemon's network side. `start()`, then `serve_until(event)` or `shutdown()`."""

    def __init__(self, config: Config, worker: ModelWorker, metrics: StreamerMetrics | None = None) -> None:
        self._config = config
        self._worker = worker
        self.metrics = metrics if metrics is not None else StreamerMetrics()
        self.sessions: dict[str, Session] = {}  # every live session, parked ones included (the scheduler reads it)
        self.streams: dict[str, Stream] = {}
        self._detached: DetachedSessions[Stream] = DetachedSessions(config.stream.resume_window, config.server.max_streams)
        keys = load_key_store(config.auth.keys_file)
        self.auth = Authenticator(
            keys, TokenSigner.random(config.auth.token_ttl), [o.strip() for o in config.auth.allowed_origins.split(",") if o.strip()]
        )
        self._limiter = StreamLimiter()
        self._admission = AdmissionControl(config.server.max_streams)
        self._load = WorkerLoad(window=10.0)
        self.journal = Journal(Path(config.journal.directory).expanduser(), config.journal.retention_days * 86400.0)
        self.store: SessionStore = make_store(config.store)
        self._model: asyncio.Future[ModelInfo] | None = None
        self._scheduler: TickScheduler | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._server: Server | None = None
        self._shutting_down = False
        self._overloaded = False
        self._tls = _tls_context(config.server.tls_cert, config.server.tls_key)
        static = Path(config.server.static_dir) if config.server.static_dir else STATIC_DIR
        self.routes = HttpRoutes(static)
        self.routes.add("/healthz", lambda request: text_response(HTTPStatus.OK, "ok\n"))
        self.routes.add("/readyz", self._readyz)
        self.routes.add("/metrics", lambda request: self.metrics.response())
        self.routes.add("/v1/token", lambda request: token_endpoint(self.auth, request, time.time(), secure=self._tls is not None))
        self.routes.add_prefix("/v1/sessions/", self._transcript)
        self.interfaces = Interfaces(self, config)  # Deepgram, OpenAI, Wyoming: their routes and paths

    @property
    def scheme(self) -> str:
        return "wss" if self._tls is not None else "ws"

    # ---- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> tuple[str, int]:
        """Listens (the model may still be loading; sessions wait for it) and returns the bound address."""
        await self.store.check()
        loop = asyncio.get_running_loop()
        self._model = loop.create_future()
        self._tasks.append(asyncio.create_task(self._await_model(), name="await-model"))
        self._scheduler = TickScheduler(
            self._worker,
            self.sessions,
            deliver=self._deliver_to_session,
            fail=self._fail_session,
            max_batch=self._config.model.max_batch,
            tick_interval=self._config.stream.tick_interval,
            step_budget=self._config.model.step_budget,
            partial_busy=self._config.model.partial_busy,
            metrics=self.metrics,
            load=self._load,
        )
        self._tasks.append(asyncio.create_task(self._scheduler.run(), name="tick-scheduler"))
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
            create_connection=self.interfaces.connection_factory,  # type: ignore[arg-type]  # a front door for uploads
            select_subprotocol=self.interfaces.select_subprotocol,
        )
        host, port = self._server.sockets[0].getsockname()[:2]
        await self.interfaces.start()
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

    def _transcript(self, request: Request) -> Response:
        decision = self.auth.authenticate(credentials_from_request(request, secure=self._tls is not None), time.time())
        if not decision.ok:
            assert decision.http_status is not None
            return json_response(HTTPStatus(decision.http_status), {"error": decision.reason})
        return transcript_response(self.journal, request.path.split("?", 1)[0], decision.key_id)

    async def serve_until(self, stop: asyncio.Event) -> None:
        await stop.wait()
        await self.shutdown()

    async def shutdown(self) -> None:
        """Stops in the documented order (module docstring)."""
        if self._shutting_down or self._server is None:
            return
        self._shutting_down = True
        log.info("shutting down: no new connections; finalising %d stream(s)", len(self.streams))
        self._server.server.close()  # 1. stop accepting
        await self.interfaces.stop_accepting()
        # 2. finalise, parked streams too (the other interfaces' streams always: they never resume); with a shared store and server.drain_finalize off, an
        # attached stream is handed over at once instead: what is committed is stored (flush
        # below), the client resends the rest to the next replica, which goes on mid-utterance
        # (docs/deploy.md). A decode still in flight here lands in the store only while this
        # replica owns the stream, so it is either replayed there or refused, never twice.
        handover = self.store.shared and not self._config.server.drain_finalize
        for stream in list(self.streams.values()):
            if not (handover and isinstance(stream.outbox, Outbox)):
                self._deliver(stream, stream.session.finalize())
        assert self._scheduler is not None
        self._scheduler.wake()
        try:
            await asyncio.wait_for(self._all_finalised(handover), self._config.server.shutdown_timeout)
        except TimeoutError:
            log.warning("shutdown: streams not finalised after %.1f s; closing anyway", self._config.server.shutdown_timeout)
        await self.store.flush()
        await self._close_all()  # 3.
        await self._server.wait_closed()
        for task in self._tasks:  # 4. scheduler and housekeeping, then worker, then journals
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await asyncio.to_thread(self._worker.stop)
        for stream in list(self.streams.values()):
            self._remove(stream, "shutdown")
        await self.store.close()
        log.info("shut down")

    async def _close_all(self) -> None:
        """Closes every connection: 1001, or with a shared store 4503 (resume on another replica),
        once each connection's writer has sent what was queued before."""
        assert self._server is not None
        code, reason = (CloseCode.MOVED, "replica draining: resume elsewhere") if self.store.shared else (CloseCode.GOING_AWAY, "server shutting down")
        writers = [s.outbox.task for s in self.streams.values() if s.outbox is not None]
        for stream in self.streams.values():
            if stream.outbox is not None:
                stream.outbox.close(code, reason)
        if writers:
            await asyncio.wait(writers, timeout=self._config.server.shutdown_timeout)
        self._server.close(close_connections=True, code=code, reason=reason)

    async def _all_finalised(self, handover: bool = False) -> None:
        def settled(s: Stream) -> bool:
            return s.session.ended or (handover and isinstance(s.outbox, Outbox))

        while not all(settled(s) for s in self.streams.values()):
            await asyncio.sleep(0.05)

    async def _housekeeping(self) -> None:
        """Parked streams' expiry, worker-load warnings, gauges, journal retention."""
        last_cleanup = 0.0
        while True:
            now = time.monotonic()
            self._expire(self._detached.expire(now), f"not resumed within {self._detached.window_seconds:.0f} s")
            for stream in list(self.streams.values()):
                if stream.outbox is None and stream.session.ended and stream.session.id not in self._detached:
                    self._remove(stream, "expired" if stream.expired else "ended while detached")
            self._check_load(now)
            self.metrics.active_streams.set(self._attached_count())
            self.metrics.detached_streams.set(len(self._detached))
            if now - last_cleanup > JOURNAL_CLEANUP_INTERVAL:
                last_cleanup = now
                await asyncio.to_thread(self.journal.cleanup)
            await asyncio.sleep(HOUSEKEEPING_INTERVAL)

    def _check_load(self, now: float) -> None:
        """Admitted streams are slowed, never cut, when the worker saturates; they are told so once."""
        load = self._load.load(now)
        self.metrics.worker_load.set(load)
        limit = self._config.server.max_load
        max_lag = self._config.server.max_tick_lag
        if self._load.saturated(now, limit, max_lag) and not self._overloaded:
            self._overloaded = True
            log.warning(
                "worker saturated (load %.2f, decodes %.2f s late at p90): new sessions are refused, open ones get slower ticks",
                load, self._load.lag_p90(now),
            )
            warning = ErrorMessage(int(CloseCode.LIMITS), f"daemon overloaded (worker load {load:.0%}): latency is degraded", fatal=False)
            for stream in self.streams.values():
                if stream.outbox is not None:
                    stream.outbox.send(warning)
        elif self._overloaded and not self._load.saturated(now, OVERLOAD_CLEAR * limit, OVERLOAD_CLEAR * max_lag):
            self._overloaded = False
            log.info("worker load back to %.2f", load)
        # Every stream fitting in one batch, but batches too slow for real time: no backlog, yet
        # speech waits. Each stream hit is told once (and again after it has caught up).
        for stream in self.streams.values():
            lag = stream.lag(now)
            if lag > DEGRADED_LAG and not stream.lag_warned and stream.outbox is not None:
                stream.lag_warned = True
                self.metrics.degraded_total.inc()
                log.warning("session %s: speech waits %.1f s for the worker; latency degraded", stream.session.id, lag)
                stream.outbox.send(ErrorMessage(int(CloseCode.LIMITS), f"daemon overloaded: speech waits {lag:.1f} s for decoding; latency is degraded", fatal=False))
            elif lag < DEGRADED_LAG / 2:
                stream.lag_warned = False

    def _attached_count(self) -> int:
        return sum(s.outbox is not None for s in self.streams.values())

    def _expire(self, parked: list[tuple[str, Stream]], why: str) -> None:
        """Parked streams that will not be resumed: their pending speech is decoded and journaled."""
        for session_id, stream in parked:
            log.info("session %s: %s; finalising", session_id, why)
            stream.expired = True
            self._deliver(stream, stream.session.finalize())
        if parked:
            self._scheduler_wake()

    def _scheduler_wake(self, session: Session | None = None) -> None:
        if self._scheduler is not None:
            self._scheduler.wake(session)

    # ---- one connection ------------------------------------------------------------------------

    async def _handle(self, websocket: ServerConnection) -> None:
        assert websocket.request is not None
        interface = self.interfaces.websocket_handler(urlsplit(websocket.request.path).path)
        if interface is not None:
            await interface(websocket)
            return
        protocol = SessionProtocol(self._config.server.max_frame_bytes)
        outbox = Outbox(websocket, protocol)
        stream: Stream | None = None
        ended_by_error = False
        try:
            assert websocket.request is not None
            decision = self.auth.authenticate(credentials_from_request(websocket.request, secure=self._tls is not None), time.time())
            if not decision.ok:
                await self._refuse(websocket, protocol, outbox, decision)
                return
            async for frame in websocket:
                if self._shutting_down and stream is not None:
                    continue  # the stream is being finalised; late audio has nowhere to go
                message = protocol.receive(frame)
                if isinstance(message, Start):
                    stream = await self._open_stream(outbox, message, decision.key_id)
                    continue
                assert stream is not None  # the protocol admits nothing else before `start`
                session = stream.session
                if isinstance(message, Audio):
                    self.feed(stream, message.data)
                elif isinstance(message, Flush):
                    self._deliver(stream, session.flush())
                elif isinstance(message, Stop):
                    self._deliver(stream, session.stop())
                self._scheduler_wake(session)
        except ProtocolError as exc:
            ended_by_error = True
            log.info("connection %s: %s (close %d)", websocket.id, exc.message, exc.code)
            self.metrics.protocol_errors_total.labels(str(int(exc.code))).inc()
            outbox.fail(exc.code, exc.message)
        except ConnectionClosed:
            pass
        except Exception:
            ended_by_error = True
            log.exception("connection %s: internal error", websocket.id)
            outbox.fail(CloseCode.INTERNAL_ERROR, "internal error")
        finally:
            if stream is not None and stream.outbox is outbox:
                self._connection_gone(stream, websocket, ended_by_error)
            outbox.close(CloseCode.NORMAL)  # no-op if a close is queued; else ends the writer of a dropped connection
            await outbox.task

    async def _refuse(self, websocket: ServerConnection, protocol: SessionProtocol, outbox: Outbox, decision: AuthDecision) -> None:
        """Refuses an unauthenticated connection on its first frame, in that frame's framing (a browser
        sees close codes, not HTTP statuses); that frame is never parsed, so no audio is processed."""
        assert decision.close_code is not None
        self.metrics.reject("unauthorized" if decision.close_code == CloseCode.UNAUTHORIZED else "forbidden_origin")
        log.info("connection %s refused: %s (close %d)", websocket.id, decision.reason, decision.close_code)
        try:
            first = await asyncio.wait_for(websocket.recv(), AUTH_FIRST_FRAME_TIMEOUT)
            protocol.adopt_framing_of(first)
        except (TimeoutError, ConnectionClosed):
            pass
        outbox.fail(decision.close_code, decision.reason)

    async def _open_stream(self, outbox: MessageSink, start: Start, key_id: str | None) -> Stream:
        assert self._model is not None
        model = await self._model
        now = time.monotonic()
        if self._shutting_down:
            self.metrics.reject("shutting_down")
            raise ProtocolError(CloseCode.GOING_AWAY, "server shutting down")
        if start.resume is not None:
            request = parse_resume(start.resume)
            stored = await self._claim(request, key_id) if self.store.shared else None
            if stored is not None:
                return self._adopt_stream(outbox, start, key_id, request, model, stored)
            return self._resume_stream(outbox, start, key_id, now)
        self._admit(key_id, now)
        try:
            session = Session(uuid.uuid4().hex, start, self._config, model)
            await self.store.open(session.id, key_id, start)
            journal = self.journal.open(session.id, key_id)
        except BaseException:
            self._release_key(key_id)
            raise
        stream = self._register(session, start, key_id, journal, outbox, now)
        self.metrics.sessions_total.inc()
        log.info(
            "session %s opened: %d Hz %s x%d, language %s, task %s, key %s (%d active)",
            session.id, start.sample_rate, start.encoding, start.channels, start.language, start.task, key_id, len(self.streams),
        )
        self._deliver(stream, session.open())
        return stream

    def _admit(self, key_id: str | None, now: float, moved: bool = False) -> None:
        """The daemon's and the key's limits (4429). A stream moved here from another replica is
        an admitted one (slowed, never cut, when the worker saturates): only the counts apply."""
        saturated = not moved and self._load.saturated(now, self._config.server.max_load, self._config.server.max_tick_lag)
        admission = self._admission.admit(
            self._attached_count(), 0.0 if moved else self._load.load(now), saturated, shutting_down=self._shutting_down
        )
        if not admission.ok:
            assert admission.close_code is not None
            self.metrics.reject(admission.reason)
            raise ProtocolError(CloseCode(admission.close_code), admission.message)
        key = self.auth.keys.by_id(key_id) if key_id is not None else None
        if key is not None and not self._limiter.acquire(key.key_id, key.max_streams):
            self.metrics.reject("key_limit")
            raise ProtocolError(CloseCode.LIMITS, f"too many streams for key {key.key_id} (maximum {key.max_streams})")

    def _release_key(self, key_id: str | None) -> None:
        if key_id is not None and self.auth.keys.by_id(key_id) is not None:
            self._limiter.release(key_id)

    def _register(self, session: Session, start: Start, key_id: str | None, journal: JournalWriter, outbox: MessageSink, now: float) -> Stream:
        limits = self._config.server
        stream = Stream(session, start, key_id, AudioRateLimiter(limits.max_audio_rate, limits.audio_burst, now), journal, outbox=outbox)
        self.sessions[session.id] = session
        self.streams[session.id] = stream
        return stream

    async def _claim(self, request: ResumeRequest, key_id: str | None) -> StoredSession | None:
        """The stored stream to continue here; None when there is none, or when this replica's
        own copy is current (the resume is then local: it holds all the audio)."""
        local = self.streams.get(request.session_id)
        if local is not None:
            await self.store.flush()  # its pending segments count
        stored = await self.store.claim(request.session_id, key_id)
        if stored is None or local is None or stored.next_stable_id == len(local.history.segments):
            return stored if local is None else None
        # The stream went on elsewhere meanwhile (its copy here was parked): that copy is stale.
        log.info("session %s: continued on another replica meanwhile; dropping the copy here", request.session_id)
        self._detached.discard(request.session_id)
        if local.outbox is not None:
            outbox, local.outbox = local.outbox, None
            outbox.fail(CloseCode.OUT_OF_ORDER, "session resumed by another connection")
        self._remove(local, "stale copy")
        return stored

    def _adopt_stream(self, outbox: MessageSink, start: Start, key_id: str | None, request: ResumeRequest, model: ModelInfo, stored: StoredSession) -> Stream:
        """Continues here a stream claimed from the shared store (committed by another replica)."""
        now = time.monotonic()
        self._admit(key_id, now, moved=True)
        try:
            handover = plan_handover(stored, start, request.last_stable_id)
            session = Session(stored.session_id, stored.start, self._config, model)
            resume_at = session.continue_at(
                handover.resume_seconds, stored.next_stable_id, handover.prompt, handover.language, handover.context, handover.pending
            )
            journal = self.journal.open(session.id, key_id)
        except BaseException:
            self._release_key(key_id)
            raise
        stream = self._register(session, stored.start, key_id, journal, outbox, now)
        for stable in stored.segments:
            stream.history.record(stable)
        self.metrics.resumed_total.inc()
        log.info(
            "session %s moved here: %d stable segment(s), audio from %.1f s (%d committed word(s) as context); replaying %d after %d",
            session.id, stored.next_stable_id, resume_at, len(handover.context), len(handover.replay), request.last_stable_id,
        )
        outbox.send(Ready(session.id, session.model_name, stored.start.sample_rate, resumed=True, audio_seconds=resume_at))
        for stable in handover.replay:
            outbox.send(stable)
        return stream

    def _resume_stream(self, outbox: MessageSink, start: Start, key_id: str | None, now: float) -> Stream:
        assert start.resume is not None
        request = parse_resume(start.resume)
        live = self.streams.get(request.session_id)
        if live is not None and live.outbox is not None and live.key_id == key_id and not live.session.stopping:
            # The client came back before the old connection was seen dead (a network change):
            # the newer connection wins.
            live.outbox.fail(CloseCode.OUT_OF_ORDER, "session resumed by another connection")
            live.outbox = None
            self._expire(self._detached.detach(request.session_id, live, key_id, now), "too many resumable streams")
        try:
            stream = self._detached.reattach(request.session_id, key_id, now)
        except ProtocolError:
            self.metrics.reject("unknown_session")
            raise
        try:
            if (start.sample_rate, start.encoding, start.channels) != (stream.start.sample_rate, stream.start.encoding, stream.start.channels):
                raise ProtocolError(CloseCode.UNSUPPORTED, "a resumed stream keeps its sample_rate, encoding and channels")
            replay = stream.history.after(request.last_stable_id)
        except ProtocolError:
            self._expire(self._detached.detach(request.session_id, stream, key_id, now), "too many resumable streams")
            raise
        stream.outbox = outbox
        session = stream.session
        self.metrics.resumed_total.inc()
        log.info(
            "session %s resumed at %.1f s of audio; replaying %d stable segment(s) after %d",
            session.id, session.received_seconds, len(replay), request.last_stable_id,
        )
        outbox.send(Ready(session.id, session.model_name, stream.start.sample_rate, resumed=True, audio_seconds=session.received_seconds))
        for stable in replay:
            outbox.send(stable)
        return stream

    # ---- the API of the other interfaces (streamer/interfaces): one stream each, never resumed --

    async def open_stream(self, sink: MessageSink, start: Start, key_id: str | None) -> Stream:
        """Admits and opens a stream whose messages go to `sink`; raises `ProtocolError` when refused."""
        if start.resume is not None:
            raise ProtocolError(CloseCode.UNSUPPORTED, "resume is only for protocol v1")
        return await self._open_stream(sink, start, key_id)

    async def model_info(self) -> ModelInfo:
        assert self._model is not None
        return await self._model

    def submit_model_call(self, call: Callable[[Whisper], T]) -> Future[T]:
        """Work on the model worker between stream batches (an upload's next window)."""
        return self._worker.submit_call(call)

    def feed(self, stream: Stream, data: bytes) -> None:
        """Audio of `stream` in its `start` encoding (raises `ProtocolError` on a limit)."""
        session = stream.session
        seconds = len(data) / (stream.start.bytes_per_frame * stream.start.sample_rate)
        stream.rate.take(seconds, time.monotonic())
        before = session.audio_seconds
        self._deliver(stream, session.on_audio(data))
        self.metrics.audio_seconds_total.inc(max(0.0, session.audio_seconds - before))
        if session.audio_seconds > before:
            stream.arrivals.append((session.audio_seconds, time.monotonic()))
        self._scheduler_wake(session)

    def flush(self, stream: Stream) -> None:
        self._deliver(stream, stream.session.flush())
        self._scheduler_wake(stream.session)

    def stop(self, stream: Stream) -> None:
        """No more audio: what is pending is decoded, journaled and sent, then `End`."""
        if not stream.session.stopping:
            self._deliver(stream, stream.session.stop())
            self._scheduler_wake(stream.session)

    def release(self, stream: Stream, why: str) -> None:
        """The interface's connection is gone: its pending speech is still decoded and journaled."""
        stream.outbox = None
        if stream.failed or self._shutting_down:
            self._remove(stream, why)
            return
        self.stop(stream)  # housekeeping removes it once ended
        if stream.session.ended:
            self._remove(stream, why)

    def _connection_gone(self, stream: Stream, websocket: ServerConnection, ended_by_error: bool) -> None:
        """The connection of a stream ended: park it for a resume, or let it finish."""
        stream.outbox = None
        session = stream.session
        resumable = (
            not ended_by_error and not stream.failed and not session.stopping and not self._shutting_down and self._detached.window_seconds > 0
        )
        if resumable:
            log.info("session %s detached (%s): resumable for %.0f s", session.id, websocket.close_code, self._detached.window_seconds)
            self._expire(self._detached.detach(session.id, stream, stream.key_id, time.monotonic()), "too many resumable streams")
        elif session.stopping and not session.ended and not (ended_by_error or stream.failed or self._shutting_down):
            pass  # the client left after `stop`: its last text is still decoded and journaled; housekeeping removes it
        else:
            self._remove(stream, str(websocket.close_code))

    def _remove(self, stream: Stream, why: str) -> None:
        session = stream.session
        if self.streams.pop(session.id, None) is None:
            return
        self.sessions.pop(session.id, None)
        if self._scheduler is not None:
            self._scheduler.forget(session.id)
        if stream.journal is not None:
            stream.journal.close()
        if stream.key_id is not None:
            self._limiter.release(stream.key_id)
        log.info("session %s closed (%s): %.1f s of audio, %d stable segment(s)", session.id, why, session.audio_seconds, session.stable_count)
        if not self.streams:
            release_free_memory()

    # ---- messages out --------------------------------------------------------------------------

    def _deliver_to_session(self, session: Session, messages: list[ServerMessage]) -> None:
        stream = self.streams.get(session.id)
        if stream is not None:
            self._deliver(stream, messages)

    def _deliver(self, stream: Stream, messages: list[ServerMessage]) -> None:
        """Journals and records every `stable` before it is sent (also while nobody listens)."""
        for message in messages:
            stored: asyncio.Future[bool] | None = None
            if isinstance(message, Stable):
                if stream.journal is not None:
                    stream.journal.append(message)
                stream.history.record(message)
                self.metrics.stable_segments_total.inc()
                stored = self._store_stable(stream, message)
            elif isinstance(message, Partial):
                self.store.note_partial(stream.session.id, message.words)
            elif isinstance(message, LanguageDetected):
                log.info("session %s: language %s (p=%.2f)", stream.session.id, message.language, message.probability)
            if isinstance(message, End):
                self.store.end(stream.session.id)
            if stream.outbox is not None:
                stream.outbox.send(message, stored)
                if isinstance(message, End):
                    stream.outbox.close(CloseCode.NORMAL, "")

    def _store_stable(self, stream: Stream, stable: Stable) -> asyncio.Future[bool] | None:
        context = committed_text(stream.history.segments, self._config.stream.prompt_chars)
        write = self.store.append(stream.session.id, stable, context)
        if write is not None:
            write.add_done_callback(lambda done: self._check_stored(stream, done))
        return write

    def _check_stored(self, stream: Stream, write: asyncio.Future[bool]) -> None:
        """A segment the store refused: the stream moved to another replica, or the store failed."""
        error = None if write.cancelled() else write.exception()
        if (error is None and (write.cancelled() or write.result())) or self.streams.get(stream.session.id) is not stream:
            return
        why, code = (f"store failed: {error}", CloseCode.INTERNAL_ERROR) if error else ("session resumed on another replica", CloseCode.OUT_OF_ORDER)
        log.warning("session %s: %s; ending it here", stream.session.id, why)
        self._detached.discard(stream.session.id)
        if stream.outbox is not None:
            stream.failed = True
            stream.outbox.fail(code, why)
        else:
            self._remove(stream, why)

    def _fail_session(self, session: Session, exc: BaseException) -> None:
        stream = self.streams.get(session.id)
        if stream is None:
            return
        stream.failed = True
        if stream.outbox is not None:
            stream.outbox.fail(CloseCode.INTERNAL_ERROR, f"internal error: {type(exc).__name__}")
        else:
            self._detached.discard(session.id)
            self._remove(stream, f"failed: {type(exc).__name__}")


def _tls_context(cert: str, key: str) -> ssl.SSLContext | None:
    if not cert:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key or None)
    return context
