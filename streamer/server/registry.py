"""The streams of this daemon: admitted, opened, resumed, fed, ended; their messages journaled,
stored, then sent. The `StreamHost` every interface uses (host.py).

Ownership: all of it belongs to the event-loop thread. `sessions` is the scheduler's view (it
reads it to pick due streams); `streams` holds each session with what the daemon keeps beside
it (`host.Stream`). The model belongs to the worker thread; sessions reach it only through the
scheduler's batches, uploads through `submit_model_call`.

A `Stream` outlives its connection when its sink is resumable (protocol v1): when the
connection drops without `stop`, the stream is parked (`resume.DetachedSessions`) for
`stream.resume_window` seconds, still decoding and journaling what it had; a `start` with
`resume` takes it back. With a shared store a resume may reach a replica that does not hold the
stream: it claims it from the store and continues it (`handover`, `_adopt`). Every `stable` is
journaled (fsync'd) and written to the store before it is sent (`_deliver`).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import TypeVar

from model.runtime import release_free_memory
from model.whisper import Whisper
from wire import CloseCode, ProtocolError, Ready, ServerMessage, Stable, Start

from ..config import Config
from ..engine.load import WorkerLoad
from ..engine.scheduler import TickScheduler
from ..engine.worker import ModelWorker
from ..metrics import StreamerMetrics
from ..state.backends import make_store
from ..state.handover import plan_handover
from ..state.journal import Journal, JournalWriter
from ..state.store import SessionStore, StoredSession
from ..stream.session import ModelInfo, Session
from .auth import KeyStore
from .host import MessageSink, Stream
from .limits import AudioRateLimiter, StreamGate
from .output import StreamOutput
from .resume import DetachedSessions, ResumeRequest, parse_resume

log = logging.getLogger("streamer.server.registry")
T = TypeVar("T")


class StreamRegistry:
    """The streams, and the one path their messages take out (journal, store, sink)."""

    def __init__(self, config: Config, worker: ModelWorker, metrics: StreamerMetrics, keys: KeyStore) -> None:
        self._config = config
        self._worker = worker
        self.metrics = metrics
        self.sessions: dict[str, Session] = {}  # every live session, parked ones included
        self.streams: dict[str, Stream] = {}
        self.detached: DetachedSessions[Stream] = DetachedSessions(config.stream.resume_window, config.server.max_streams)
        self.load = WorkerLoad(window=10.0)
        self._gate = StreamGate(config.server, keys, self.load, metrics)
        self.journal = Journal(Path(config.journal.directory).expanduser(), config.journal.retention_days * 86400.0)
        self.store: SessionStore = make_store(config.store)
        self.scheduler = TickScheduler(
            worker,
            self.sessions,
            deliver=self._deliver_to_session,
            fail=self._fail_session,
            max_batch=config.model.max_batch,
            tick_interval=config.stream.tick_interval,
            step_budget=config.model.step_budget,
            partial_busy=config.model.partial_busy,
            metrics=metrics,
            load=self.load,
        )
        self._output = StreamOutput(self.store, metrics, config.stream.prompt_chars, refused=self._store_refused)
        self._model: asyncio.Future[ModelInfo] | None = None
        self._shutting_down = False

    # ---- lifecycle (the daemon's) ----------------------------------------------------------------

    async def await_model(self) -> None:
        """Resolves `model_info()` once the worker has loaded the model (sessions wait for it)."""
        model = self._model_future()
        try:
            model.set_result(await asyncio.to_thread(self._worker.wait_loaded))
        except Exception as exc:
            log.exception("the model could not be loaded")
            model.set_exception(exc)

    @property
    def model_ready(self) -> bool:
        return self._model is not None and self._model.done() and self._model.exception() is None

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def begin_shutdown(self, handover: bool) -> None:
        """No new streams; every stream is finalised, parked ones too, except (with `handover`)
        attached resumable ones: those go on another replica from what the store holds."""
        self._shutting_down = True
        for stream in list(self.streams.values()):
            if not (handover and _handed_over(stream)):
                self._output.deliver(stream, stream.session.finalize())
        self.scheduler.wake()

    def settled(self, handover: bool) -> bool:
        """Every stream ended, or (with `handover`) left as it is for another replica."""
        return all(s.session.ended or (handover and _handed_over(s)) for s in self.streams.values())

    def close_all(self, code: int, reason: str) -> list[asyncio.Task[None]]:
        """Closes every attached stream's connection; returns their writers (done once flushed)."""
        attached = [s.outbox for s in self.streams.values() if s.outbox is not None]
        for outbox in attached:
            outbox.close(code, reason)
        return [outbox.task for outbox in attached]

    def stop_worker(self) -> None:
        """Blocks until the worker thread has stopped (after the scheduler: no batch is pending)."""
        self._worker.stop()

    def remove_all(self, why: str) -> None:
        for stream in list(self.streams.values()):
            self._remove(stream, why)

    def expire(self, now: float) -> None:
        """Parked streams past their window are finalised; ended unattached streams removed."""
        self._expire(self.detached.expire(now), f"not resumed within {self.detached.window_seconds:.0f} s")
        for stream in list(self.streams.values()):
            if stream.outbox is None and stream.session.ended and stream.session.id not in self.detached:
                self._remove(stream, "expired" if stream.expired else "ended while detached")

    def attached_count(self) -> int:
        return sum(s.outbox is not None for s in self.streams.values())

    # ---- StreamHost --------------------------------------------------------------------------------

    async def open_stream(self, sink: MessageSink, start: Start, key_id: str | None) -> Stream:
        model = await self._model_future()
        if self._shutting_down:
            self.metrics.reject("shutting_down")
            raise ProtocolError(CloseCode.GOING_AWAY, "server shutting down")
        if start.resume is None:
            return await self._open(sink, start, key_id, model)
        if not sink.resumable:
            raise ProtocolError(CloseCode.UNSUPPORTED, "resume is only for protocol v1")
        request = parse_resume(start.resume)
        stored = await self._claim(request, key_id) if self.store.shared else None
        if stored is not None:
            return self._adopt(sink, start, key_id, request, model, stored)
        return self._resume(sink, start, key_id, request)

    async def model_info(self) -> ModelInfo:
        return await self._model_future()

    def submit_model_call(self, call: Callable[[Whisper], T]) -> Future[T]:
        return self._worker.submit_call(call)

    def feed(self, stream: Stream, data: bytes) -> None:
        session = stream.session
        seconds = len(data) / (stream.start.bytes_per_frame * stream.start.sample_rate)
        stream.rate.take(seconds, time.monotonic())
        before = session.audio_seconds
        self._output.deliver(stream, session.on_audio(data))
        self.metrics.audio_seconds_total.inc(max(0.0, session.audio_seconds - before))
        if session.audio_seconds > before:
            stream.arrivals.append((session.audio_seconds, time.monotonic()))
        self.scheduler.wake(session)

    def flush(self, stream: Stream) -> None:
        self._output.deliver(stream, stream.session.flush())
        self.scheduler.wake(stream.session)

    def stop(self, stream: Stream) -> None:
        if not stream.session.stopping:
            self._output.deliver(stream, stream.session.stop())
            self.scheduler.wake(stream.session)

    def release(self, stream: Stream, why: str, *, resumable: bool = False) -> None:
        stream.outbox = None
        session = stream.session
        if stream.failed or self._shutting_down:
            self._remove(stream, why)
        elif resumable and not session.stopping and self.detached.window_seconds > 0:
            log.info("session %s detached (%s): resumable for %.0f s", session.id, why, self.detached.window_seconds)
            self._expire(self.detached.detach(session.id, stream, stream.key_id, time.monotonic()), "too many resumable streams")
        else:
            self.stop(stream)  # housekeeping removes it once ended
            if session.ended:
                self._remove(stream, why)

    # ---- opening -------------------------------------------------------------------------------------

    def _model_future(self) -> asyncio.Future[ModelInfo]:
        if self._model is None:
            self._model = asyncio.get_running_loop().create_future()
        return self._model

    async def _open(self, sink: MessageSink, start: Start, key_id: str | None, model: ModelInfo) -> Stream:
        now = time.monotonic()
        self._gate.admit(key_id, self.attached_count(), now, shutting_down=self._shutting_down)
        try:
            session = Session(uuid.uuid4().hex, start, self._config, model)
            await self.store.open(session.id, key_id, start)
            journal = self.journal.open(session.id, key_id)
        except BaseException:
            self._gate.release(key_id)
            raise
        stream = self._register(session, start, key_id, journal, sink, now)
        self.metrics.sessions_total.inc()
        log.info(
            "session %s opened: %d Hz %s x%d, language %s, task %s, key %s (%d active)",
            session.id, start.sample_rate, start.encoding, start.channels, start.language, start.task, key_id, len(self.streams),
        )
        self._output.deliver(stream, session.open())
        return stream

    def _register(self, session: Session, start: Start, key_id: str | None, journal: JournalWriter, sink: MessageSink, now: float) -> Stream:
        limits = self._config.server
        stream = Stream(session, start, key_id, AudioRateLimiter(limits.max_audio_rate, limits.audio_burst, now), journal, outbox=sink)
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
        self.detached.discard(request.session_id)
        if local.outbox is not None:
            outbox, local.outbox = local.outbox, None
            outbox.fail(CloseCode.OUT_OF_ORDER, "session resumed by another connection")
        self._remove(local, "stale copy")
        return stored

    def _adopt(self, sink: MessageSink, start: Start, key_id: str | None, request: ResumeRequest, model: ModelInfo, stored: StoredSession) -> Stream:
        """Continues here a stream claimed from the shared store (committed by another replica)."""
        now = time.monotonic()
        self._gate.admit(key_id, self.attached_count(), now, moved=True, shutting_down=self._shutting_down)
        try:
            handover = plan_handover(stored, start, request.last_stable_id)
            session = Session(stored.session_id, stored.start, self._config, model)
            resume_at = session.continue_at(
                handover.resume_seconds, stored.next_stable_id, handover.prompt, handover.language, handover.context, handover.pending
            )
            journal = self.journal.open(session.id, key_id)
        except BaseException:
            self._gate.release(key_id)
            raise
        stream = self._register(session, stored.start, key_id, journal, sink, now)
        for stable in stored.segments:
            stream.history.record(stable)
        self.metrics.resumed_total.inc()
        log.info(
            "session %s moved here: %d stable segment(s), audio from %.1f s (%d committed word(s) as context); replaying %d after %d",
            session.id, stored.next_stable_id, resume_at, len(handover.context), len(handover.replay), request.last_stable_id,
        )
        _send_resumed(sink, session, stored.start, resume_at, handover.replay)
        return stream

    def _resume(self, sink: MessageSink, start: Start, key_id: str | None, request: ResumeRequest) -> Stream:
        now = time.monotonic()
        live = self.streams.get(request.session_id)
        if live is not None and live.outbox is not None and live.key_id == key_id and not live.session.stopping:
            # The client came back before the old connection was seen dead (a network change):
            # the newer connection wins.
            live.outbox.fail(CloseCode.OUT_OF_ORDER, "session resumed by another connection")
            live.outbox = None
            self._expire(self.detached.detach(request.session_id, live, key_id, now), "too many resumable streams")
        try:
            stream = self.detached.reattach(request.session_id, key_id, now)
        except ProtocolError:
            self.metrics.reject("unknown_session")
            raise
        try:
            if (start.sample_rate, start.encoding, start.channels) != (stream.start.sample_rate, stream.start.encoding, stream.start.channels):
                raise ProtocolError(CloseCode.UNSUPPORTED, "a resumed stream keeps its sample_rate, encoding and channels")
            replay = stream.history.after(request.last_stable_id)
        except ProtocolError:
            self._expire(self.detached.detach(request.session_id, stream, key_id, now), "too many resumable streams")
            raise
        stream.outbox = sink
        session = stream.session
        self.metrics.resumed_total.inc()
        log.info(
            "session %s resumed at %.1f s of audio; replaying %d stable segment(s) after %d",
            session.id, session.received_seconds, len(replay), request.last_stable_id,
        )
        _send_resumed(sink, session, stream.start, session.received_seconds, replay)
        return stream

    # ---- ending ----------------------------------------------------------------------------------------

    def _expire(self, parked: list[tuple[str, Stream]], why: str) -> None:
        """Parked streams that will not be resumed: their pending speech is decoded and journaled."""
        for session_id, stream in parked:
            log.info("session %s: %s; finalising", session_id, why)
            stream.expired = True
            self._output.deliver(stream, stream.session.finalize())
        if parked:
            self.scheduler.wake()

    def _remove(self, stream: Stream, why: str) -> None:
        session = stream.session
        if self.streams.pop(session.id, None) is None:
            return
        self.sessions.pop(session.id, None)
        self.scheduler.forget(session.id)
        if stream.journal is not None:
            stream.journal.close()
        self._gate.release(stream.key_id)
        log.info("session %s closed (%s): %.1f s of audio, %d stable segment(s)", session.id, why, session.audio_seconds, session.stable_count)
        if not self.streams:
            release_free_memory()

    def _fail_session(self, session: Session, exc: BaseException) -> None:
        stream = self.streams.get(session.id)
        if stream is None:
            return
        stream.failed = True
        if stream.outbox is not None:
            stream.outbox.fail(CloseCode.INTERNAL_ERROR, f"internal error: {type(exc).__name__}")
        else:
            self.detached.discard(session.id)
            self._remove(stream, f"failed: {type(exc).__name__}")

    def _deliver_to_session(self, session: Session, messages: list[ServerMessage]) -> None:
        stream = self.streams.get(session.id)
        if stream is not None:
            self._output.deliver(stream, messages)

    def _store_refused(self, stream: Stream, why: str, code: CloseCode) -> None:
        """A segment the store refused: the stream moved to another replica, or the store failed."""
        if self.streams.get(stream.session.id) is not stream:
            return
        log.warning("session %s: %s; ending it here", stream.session.id, why)
        self.detached.discard(stream.session.id)
        if stream.outbox is not None:
            stream.failed = True
            stream.outbox.fail(code, why)
        else:
            self._remove(stream, why)


def _send_resumed(sink: MessageSink, session: Session, start: Start, audio_seconds: float, replay: Sequence[Stable]) -> None:
    sink.send(Ready(session.id, session.model_name, start.sample_rate, resumed=True, audio_seconds=audio_seconds))
    for stable in replay:
        sink.send(stable)


def _handed_over(stream: Stream) -> bool:
    """At a handover drain, an attached resumable stream goes on elsewhere as it is (not finalised)."""
    return stream.outbox is not None and stream.outbox.resumable
