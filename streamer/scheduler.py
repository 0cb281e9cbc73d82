"""Feeds the model worker from the event loop: picks ready streams, batches them, applies results.

Runs as one asyncio task. Backpressure happens here: one batch is in flight at a time; a stream
is in at most one batch (a session has at most one request in flight) and its request is built
only when its batch is formed, so a lagging worker makes ticks rarer for everyone, each tick
covering all audio received meanwhile, and no audio is dropped.

A failed batch (out of memory, a CUDA error) fails only its ticks: the requests are abandoned, so
their audio stays in the sessions' buffers and the next tick retries it; batches shrink (halved,
then grown back one by one) in case the batch size caused it; a session is closed (1011) only
after `max_retries` failures in a row. Every failure is logged with its traceback and counted.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping

from .limits import WorkerLoad
from .metrics import StreamerMetrics
from .protocol import ServerMessage
from .session import Session
from .tick import TickRequest
from .worker import ModelWorker

log = logging.getLogger("streamer.scheduler")

BEHIND_FACTOR = 2.0  # a batch slower than this many tick intervals means streams wait for the worker
BEHIND_LOG_INTERVAL = 30.0  # s between two "falling behind" warnings
RETRY_BACKOFF = 0.2  # s after a failed batch, doubled per failure in a row (at most 2 s)


class TickScheduler:
    def __init__(
        self,
        worker: ModelWorker,
        sessions: Mapping[str, Session],
        deliver: Callable[[Session, list[ServerMessage]], None],
        fail: Callable[[Session, BaseException], None],
        max_batch: int,
        tick_interval: float,
        metrics: StreamerMetrics | None = None,
        load: WorkerLoad | None = None,
        max_retries: int = 3,
    ) -> None:
        self._worker = worker
        self._sessions = sessions  # owned by the server; read here in the same thread
        self._deliver = deliver
        self._fail = fail
        self._max_batch = max_batch
        self._tick_interval = tick_interval
        self._metrics = metrics if metrics is not None else StreamerMetrics()  # the server passes its own
        self._load = load if load is not None else WorkerLoad(window=10.0)
        self._max_retries = max_retries
        self._batch_limit = max_batch  # lowered after a failed batch, grown back after successes
        self._failures: dict[str, int] = {}  # failed ticks in a row, per session
        self._failed_batches_in_row = 0
        self._waiting = 0  # ready streams left out of the last batch
        self._wake = asyncio.Event()
        self._last_tick: dict[str, float] = {}
        self._last_behind_log = 0.0
        self.batches = 0

    def wake(self) -> None:
        """Something changed (audio, flush, stop, a new session): look for ready streams."""
        self._wake.set()

    def _take_batch(self) -> list[tuple[Session, TickRequest]]:
        ready = [s for s in self._sessions.values() if s.wants_tick]
        # Commits first (they are what the user waits for), then whoever waited longest.
        ready.sort(key=lambda s: (not s.final_pending, self._last_tick.get(s.id, 0.0)))
        now = time.monotonic()
        batch = []
        self._waiting = max(0, len(ready) - self._batch_limit)
        self._metrics.worker_queue_depth.set(self._waiting)
        for session in ready[: self._batch_limit]:
            self._last_tick[session.id] = now
            batch.append((session, session.make_tick_request()))
        return batch

    async def run(self) -> None:
        while True:
            batch = self._take_batch()
            if not batch:
                await self._wake.wait()
                self._wake.clear()
                continue
            await self._run_batch(batch)

    async def _run_batch(self, batch: list[tuple[Session, TickRequest]]) -> None:
        self.batches += 1
        self._metrics.batch_size.observe(len(batch))
        began = time.monotonic()
        try:
            result = await asyncio.wrap_future(self._worker.submit([request for _, request in batch]))
        except Exception as exc:
            self._load.record(time.monotonic(), time.monotonic() - began, self._waiting)
            await self._batch_failed(batch, exc)
            return
        finished = time.monotonic()
        self._load.record(finished, result.seconds, self._waiting)
        self._failed_batches_in_row = 0
        self._batch_limit = min(self._max_batch, self._batch_limit + 1)
        behind = result.seconds > BEHIND_FACTOR * self._tick_interval
        if behind and finished - self._last_behind_log > BEHIND_LOG_INTERVAL:
            self._last_behind_log = finished
            log.warning(
                "worker falling behind: a batch of %d stream(s) took %.2f s (tick interval %.2f s); ticks are spaced out",
                len(batch), result.seconds, self._tick_interval,
            )
        for (session, request), hypothesis in zip(batch, result.hypotheses, strict=True):
            self._metrics.tick_latency.observe(finished - began)
            self._failures.pop(session.id, None)
            if self._sessions.get(session.id) is not session:
                continue  # the client left while its audio was being decoded
            try:
                messages = session.apply_result(request, hypothesis)
            except Exception as exc:
                log.exception("session %s: applying a result failed", session.id)
                self._fail(session, exc)
                continue
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "session %s tick %d: %.2f-%.2f s%s heard %r (no-speech %.2f); sends %s",
                    session.id, request.serial, request.window_start, request.window_end, " final" if request.final else "",
                    "".join(w.text for w in hypothesis.words), hypothesis.no_speech_prob,
                    ", ".join(type(m).__name__ for m in messages) or "nothing",
                )
            self._deliver(session, messages)

    async def _batch_failed(self, batch: list[tuple[Session, TickRequest]], exc: Exception) -> None:
        self._metrics.worker_errors_total.labels(type(exc).__name__).inc()
        self._failed_batches_in_row += 1
        self._batch_limit = max(1, len(batch) // 2)
        log.error(
            "decoding a batch of %d stream(s) failed (%s); their ticks are retried, batches now at most %d",
            len(batch), type(exc).__name__, self._batch_limit, exc_info=exc,
        )
        for session, request in batch:
            session.abandon_request(request)
            failures = self._failures[session.id] = self._failures.get(session.id, 0) + 1
            if failures >= self._max_retries and self._sessions.get(session.id) is session:
                log.error("session %s: %d failed ticks in a row; closing it", session.id, failures)
                self._failures.pop(session.id, None)
                self._fail(session, exc)
        # A persistent error (a broken device) must not spin the loop.
        await asyncio.sleep(min(2.0, RETRY_BACKOFF * 2 ** (self._failed_batches_in_row - 1)))

    def forget(self, session_id: str) -> None:
        self._last_tick.pop(session_id, None)
        self._failures.pop(session_id, None)
