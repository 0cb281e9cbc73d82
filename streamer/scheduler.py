"""Feeds the model worker from the event loop: picks ready streams, batches them, applies results.

Runs as one asyncio task. Backpressure happens here: one batch is in flight at a time; a stream
is in at most one batch (a session has at most one request in flight) and its request is built
only when its batch is formed, so a lagging worker makes ticks rarer for everyone, each tick
covering all audio received meanwhile, and no audio is dropped.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping

from .protocol import ServerMessage
from .session import Session
from .tick import TickRequest
from .worker import ModelWorker

log = logging.getLogger("streamer.scheduler")

BEHIND_FACTOR = 2.0  # a batch slower than this many tick intervals means streams wait for the worker
BEHIND_LOG_INTERVAL = 30.0  # s between two "falling behind" warnings


class TickScheduler:
    def __init__(
        self,
        worker: ModelWorker,
        sessions: Mapping[str, Session],
        deliver: Callable[[Session, list[ServerMessage]], None],
        fail: Callable[[Session, BaseException], None],
        max_batch: int,
        tick_interval: float,
    ) -> None:
        self._worker = worker
        self._sessions = sessions  # owned by the server; read here in the same thread
        self._deliver = deliver
        self._fail = fail
        self._max_batch = max_batch
        self._tick_interval = tick_interval
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
        for session in ready[: self._max_batch]:
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
        try:
            result = await asyncio.wrap_future(self._worker.submit([request for _, request in batch]))
        except Exception as exc:
            log.exception("decoding a batch of %d stream(s) failed", len(batch))
            for session, request in batch:
                session.abandon_request(request)
                self._fail(session, exc)
            return
        behind = result.seconds > BEHIND_FACTOR * self._tick_interval
        if behind and time.monotonic() - self._last_behind_log > BEHIND_LOG_INTERVAL:
            self._last_behind_log = time.monotonic()
            log.warning(
                "worker falling behind: a batch of %d stream(s) took %.2f s (tick interval %.2f s); ticks are spaced out",
                len(batch), result.seconds, self._tick_interval,
            )
        for (session, request), hypothesis in zip(batch, result.hypotheses, strict=True):
            if self._sessions.get(session.id) is not session:
                continue  # the client left while its audio was being decoded
            try:
                messages = session.apply_result(request, hypothesis)
            except Exception as exc:
                log.exception("session %s: applying a result failed", session.id)
                self._fail(session, exc)
                continue
            self._deliver(session, messages)

    def forget(self, session_id: str) -> None:
        self._last_tick.pop(session_id, None)
