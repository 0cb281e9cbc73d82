"""Feeds the model worker from the event loop: picks due streams, batches them by deadline,
applies results.

Runs as one asyncio task. Backpressure happens here: one batch is in flight at a time; a stream
is in at most one batch (a session has at most one request in flight) and its request is built
only when its batch is formed, so a lagging worker makes ticks rarer for everyone, each tick
covering all audio received meanwhile (one longer window instead of many ticks), and no audio
is dropped.

Batches are formed by deadline, not by arrival (continuous batching at the granularity of a
decode): a stream's tick is due when it becomes ready (`wake(session)` notes the moment), and
its deadline is that moment plus the slack of its kind: none for an urgent one (`TickKind.urgent`:
a decode that stable text waits on, or the first to hear new speech), one tick interval for a
partial. The batch takes the earliest deadlines, as many as fit the step budget
(`model.step_budget`) by the measured cost of a row, so the batch size adapts to the device: on
a CPU, where rows cost the same batched or not, a commit never waits behind a long batch; on a
GPU, where rows are nearly free, batches grow to `max_batch`.

Partials (decodes that commit nothing, but for the first of new speech) are held back while the
worker has been busy more than `model.partial_busy` of the time (a token bucket, `PartialBudget`),
but only when holding them can serve a commit: a decode cannot be preempted, so a commit that
comes due while a partial runs waits for it. That can happen only when two or more streams have
speech pending (a stream alone, or beside silent ones, has no other stream's commit to wait for:
its partials go on as fast as the worker allows). The rest of the time is headroom in which
commits find the worker free; partials thin out as speaking streams grow, commits do not. The
first decode of new speech (`TickKind.FIRST`) may overdraw the bucket by one row: it brings the
utterance's first words, once per utterance, and hears a short window (a probe:
`streamer.stream.session`), so a commit waits little behind it; under heavier load it is held too.

A failed batch (out of memory, a CUDA error) fails only its ticks: the requests are abandoned, so
their audio stays in the sessions' buffers and the next tick retries it; batches shrink (halved,
then grown back one by one) in case the batch size caused it; a session is closed (1011) only
after `max_retries` failures in a row. Every failure is logged with its traceback and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from wire import ServerMessage

from ..metrics import StreamerMetrics
from ..stream.tick import Hypothesis, TickKind, TickRequest
from .load import WorkerLoad
from .worker import BatchResult

log = logging.getLogger("streamer.engine.scheduler")

BEHIND_FACTOR = 2.0  # a batch slower than this many tick intervals means streams wait for the worker
BEHIND_LOG_INTERVAL = 30.0  # s between two "falling behind" warnings
RETRY_BACKOFF = 0.2  # s after a failed batch, doubled per failure in a row (at most 2 s)
ROW_COST_SMOOTHING = 0.2  # weight of the newest batch in the running cost of a row


class Decodable(Protocol):
    """What the scheduler needs of a stream (`streamer.stream.session.Session` is one; tests script their own)."""

    @property
    def id(self) -> str: ...
    @property
    def wants_tick(self) -> bool: ...
    @property
    def due_tick(self) -> TickKind | None: ...
    @property
    def speech_pending(self) -> bool: ...
    def make_tick_request(self) -> TickRequest: ...
    def apply_result(self, request: TickRequest, hypothesis: Hypothesis) -> list[ServerMessage]: ...
    def abandon_request(self, request: TickRequest) -> None: ...


class BatchDecoder(Protocol):
    """What the scheduler needs of the model worker (`worker.ModelWorker` is one)."""

    def submit(self, requests: Sequence[TickRequest]) -> Future[BatchResult]: ...


StreamT = TypeVar("StreamT", bound=Decodable)


class PartialBudget:
    """A token bucket of worker seconds: it fills at `share` seconds per second, at most `depth`
    seconds deep (about one row, so an idle spell buys no burst), and every batch drains it by
    its seconds, commits included. Partials may start while it is not empty; commits always may,
    so the worker stays busy at most about `share` of the time unless commits alone need more."""

    def __init__(self, share: float, now: float) -> None:
        self._share = share
        self._tokens = 0.0
        self._at = now

    def _fill(self, now: float, depth: float) -> None:
        self._tokens = min(depth, self._tokens + self._share * (now - self._at))
        self._at = now

    def allows(self, now: float, depth: float, overdraw: float = 0.0) -> bool:
        """Whether a partial may start now; `overdraw`: seconds the bucket may be short of it."""
        if self._share >= 1.0:
            return True
        self._fill(now, depth)
        return self._tokens >= -overdraw

    def spend(self, now: float, seconds: float, depth: float) -> None:
        self._fill(now, depth)
        self._tokens -= seconds

    def wait(self) -> float:
        """Seconds until partials may start again (0: they may now)."""
        return max(0.0, -self._tokens / self._share) if self._share < 1.0 else 0.0


@dataclass(frozen=True)
class _Due(Generic[StreamT]):
    """A stream ready for a decode, and by when it should get one."""

    session: StreamT
    kind: TickKind
    deadline: float  # monotonic seconds


class TickScheduler(Generic[StreamT]):
    def __init__(
        self,
        worker: BatchDecoder,
        sessions: Mapping[str, StreamT],
        deliver: Callable[[StreamT, list[ServerMessage]], None],
        fail: Callable[[StreamT, BaseException], None],
        max_batch: int,
        tick_interval: float,
        step_budget: float = math.inf,
        partial_busy: float = 1.0,
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
        self._step_budget = step_budget  # seconds a batch should take at most (by the row cost)
        self._row_seconds: float | None = None  # running worker seconds per row of a batch
        self._partials = PartialBudget(partial_busy, time.monotonic())
        self._partials_held = False  # the last batch left due partials out for the budget
        self._due_since: dict[str, float] = {}  # when each ready stream's tick became due
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

    def wake(self, session: StreamT | None = None) -> None:
        """Something changed (audio, flush, stop, a new session): look for due streams. With the
        session whose input changed, its tick's due time is noted now, not at the next scan."""
        if session is not None and session.wants_tick:
            self._due_since.setdefault(session.id, time.monotonic())
        self._wake.set()

    @property
    def batch_size(self) -> int:
        """Rows the next batch may take: as many as the step budget holds at the measured cost of
        a row (all of `max_batch` until one is measured), fewer after a failure."""
        row = self._row_seconds
        fits = self._max_batch if row is None or row * self._max_batch <= self._step_budget else int(self._step_budget / row)
        return max(1, min(self._batch_limit, fits))

    def _due(self, now: float) -> list[_Due[StreamT]]:
        due = []
        for session in self._sessions.values():
            kind = session.due_tick
            if kind is None:
                self._due_since.pop(session.id, None)  # e.g. committed at an endpoint without a decode
                continue
            since = self._due_since.setdefault(session.id, now)
            due.append(_Due(session, kind, since + (0.0 if kind.urgent else self._tick_interval)))
        # Earliest deadline first; between equals, whoever was decoded longest ago.
        due.sort(key=lambda d: (d.deadline, self._last_tick.get(d.session.id, 0.0)))
        return due

    def _take_batch(self) -> list[tuple[_Due[StreamT], TickRequest]]:
        now = time.monotonic()
        due = self._due(now)
        held = self._held_kinds(now) if any(not d.kind.commits for d in due) else set()
        self._partials_held = any(d.kind in held for d in due)
        if self._partials_held:
            due = [d for d in due if d.kind not in held]
        size = self.batch_size
        self._waiting = max(0, len(due) - size)
        self._metrics.worker_queue_depth.set(self._waiting)
        batch = []
        for entry in due[:size]:
            self._last_tick[entry.session.id] = now
            del self._due_since[entry.session.id]
            batch.append((entry, entry.session.make_tick_request()))
        return batch

    def _held_kinds(self, now: float) -> set[TickKind]:
        """The kinds of decode the partial budget holds back now: none while no commit can wait
        behind them; first decodes of new speech only once the bucket is a whole row short."""
        if not self._commits_contend():
            return set()
        row = self._row_seconds or 0.0
        if self._partials.allows(now, row):
            return set()
        return {TickKind.PARTIAL} if self._partials.allows(now, row, overdraw=row) else {TickKind.PARTIAL, TickKind.FIRST}

    def _commits_contend(self) -> bool:
        """Whether a partial could delay another stream's commit: two streams have speech pending."""
        speaking = 0
        for session in self._sessions.values():
            speaking += session.speech_pending
            if speaking > 1:
                return True
        return False

    async def run(self) -> None:
        while True:
            batch = self._take_batch()
            if not batch:
                # Held partials are due again when the budget has refilled, if nothing comes first.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._partials.wait() if self._partials_held else None)
                self._wake.clear()
                continue
            await self._run_batch(batch)

    async def _run_batch(self, batch: list[tuple[_Due[StreamT], TickRequest]]) -> None:
        self.batches += 1
        self._metrics.batch_size.observe(len(batch))
        began = time.monotonic()
        try:
            result = await asyncio.wrap_future(self._worker.submit([request for _, request in batch]))
        except Exception as exc:
            self._load.record(time.monotonic(), time.monotonic() - began, self._waiting)
            await self._batch_failed([(due.session, request) for due, request in batch], exc)
            return
        finished = time.monotonic()
        self._account(batch, result, finished)
        self._failed_batches_in_row = 0
        self._batch_limit = min(self._max_batch, self._batch_limit + 1)
        for (due, request), hypothesis in zip(batch, result.hypotheses, strict=True):
            session = due.session
            self._metrics.tick_latency.observe(finished - began)
            self._failures.pop(session.id, None)
            if not self._still_open(session):
                continue  # the client left while its audio was being decoded
            try:
                messages = session.apply_result(request, hypothesis)
            except Exception as exc:
                log.exception("session %s: applying a result failed", session.id)
                self._fail(session, exc)
                continue
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "session %s tick %d (%s, %.2f s after due): %.2f-%.2f s%s heard %r (no-speech %.2f); sends %s",
                    session.id, request.serial, due.kind.value, finished - due.deadline, request.window_start, request.window_end,
                    " final" if request.final else "", "".join(w.text for w in hypothesis.words), hypothesis.no_speech_prob,
                    ", ".join(type(m).__name__ for m in messages) or "nothing",
                )
            self._deliver(session, messages)

    def _account(self, batch: list[tuple[_Due[StreamT], TickRequest]], result: BatchResult, finished: float) -> None:
        """The batch's cost into the row cost, the load and the metrics; how late each row came, into the load."""
        self._load.record(finished, result.seconds, self._waiting)
        for due, _ in batch:
            if due.kind.commits:  # partials are late by design under the budget: stable text is what lags
                self._load.record_lag(finished, finished - due.deadline)
        row = result.seconds / len(batch)
        self._partials.spend(finished, result.seconds, row)
        self._row_seconds = row if self._row_seconds is None else self._row_seconds + ROW_COST_SMOOTHING * (row - self._row_seconds)
        self._metrics.observe_batch(result.seconds, result.profile)
        if result.seconds > BEHIND_FACTOR * self._tick_interval and finished - self._last_behind_log > BEHIND_LOG_INTERVAL:
            self._last_behind_log = finished
            log.warning(
                "worker falling behind: a batch of %d stream(s) took %.2f s (tick interval %.2f s); ticks are spaced out",
                len(batch), result.seconds, self._tick_interval,
            )

    def _still_open(self, session: StreamT) -> bool:
        return self._sessions.get(session.id) is session

    async def _batch_failed(self, batch: list[tuple[StreamT, TickRequest]], exc: Exception) -> None:
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
        self._due_since.pop(session_id, None)
        self._failures.pop(session_id, None)
