"""Backpressure: a slow worker spaces ticks out for every stream; no stream is queued twice,
one batch is in flight at a time, and no audio is skipped (a stand-in worker, real sessions)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future

import numpy as np
import pytest

from benchmarks.data import clips_of, data_available
from model.audio import SAMPLE_RATE, load_audio
from streamer.config import Config, StreamConfig
from streamer.engine.scheduler import PartialBudget, TickScheduler
from streamer.engine.worker import BatchResult
from streamer.stream.session import ModelInfo, Session
from streamer.stream.tick import Hypothesis, TickKind, TickRequest
from wire import ServerMessage, Start

pytestmark = pytest.mark.skipif(not data_available(), reason="shared evaluation data not found")


class SlowWorker:
    """Answers each batch after `delay` seconds from its own thread, with empty hypotheses."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.batches: list[list[TickRequest]] = []
        self.in_flight = 0
        self.max_in_flight = 0

    def submit(self, requests: Sequence[TickRequest]) -> Future[BatchResult]:
        future: Future[BatchResult] = Future()
        self.batches.append(list(requests))
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)

        def answer() -> None:
            time.sleep(self.delay)
            self.in_flight -= 1
            silent = Hypothesis((), "en", 1.0, -0.2, 0.01, 1.0)
            future.set_result(BatchResult(tuple(silent for _ in requests), self.delay))

        threading.Thread(target=answer, daemon=True).start()
        return future


def test_a_slow_worker_spaces_ticks_out_without_dropping_audio() -> None:
    clip = next(c for c in clips_of("long") if c.id == "long_mixed_speakers")
    speech = load_audio(clip.path)[: 6 * SAMPLE_RATE]
    pcm = (speech * 32767).astype("<i2")
    worker = SlowWorker(delay=0.4)
    config = Config(stream=StreamConfig(tick_interval=0.1))
    sessions = {f"s{i}": Session(f"s{i}", Start(), config, ModelInfo("tiny.en", False)) for i in range(3)}

    async def scenario() -> None:
        scheduler = TickScheduler(worker, sessions, deliver=lambda s, m: None, fail=lambda s, e: None, max_batch=2, tick_interval=0.1)
        task = asyncio.create_task(scheduler.run())
        frame = 1600  # 0.1 s, sent at twice real time
        for offset in range(0, len(pcm), frame):
            for session in sessions.values():
                session.on_audio(pcm[offset : offset + frame].tobytes())
            scheduler.wake()
            await asyncio.sleep(0.05)
        while any(s.in_flight for s in sessions.values()) or worker.in_flight:
            await asyncio.sleep(0.05)
        task.cancel()

    asyncio.run(scenario())
    assert worker.max_in_flight == 1
    assert all(len({r.session_id for r in batch}) == len(batch) <= 2 for batch in worker.batches)
    # 0.1 s ticks over 6 s would be 60 per stream; 3 s of a 0.4 s worker, 2 streams a batch, allow ~10.
    per_session = {sid: [r for b in worker.batches for r in b if r.session_id == sid] for sid in sessions}
    assert all(3 <= len(requests) <= 12 for requests in per_session.values()), {k: len(v) for k, v in per_session.items()}
    for requests in per_session.values():
        ends = [r.window_end for r in requests]
        assert ends == sorted(ends)
        # Nothing was committed (silent hypotheses), so every decode after the one that ends the
        # clip's opening blip starts where the speech did (at 0.54 s, with its pre-roll) and
        # covers all audio received by then: the last one reaches the end of the stream.
        blip_ends = next(i for i, r in enumerate(requests) if r.final)
        assert len({r.window_start for r in requests[blip_ends + 1 :]}) == 1
        assert all(r.window_start < 0.54 for r in requests)
        assert np.isclose(ends[-1], 6.0, atol=0.2)


class ScriptedSession:
    """Just what the scheduler reads of a session: whether a tick is due, and of what kind."""

    def __init__(self, session_id: str, kind: TickKind | None = None) -> None:
        self.id = session_id
        self.due_tick = kind
        self.speech_pending = True  # a scripted stream is speaking unless a test says otherwise
        self.taken: list[TickKind] = []

    @property
    def wants_tick(self) -> bool:
        return self.due_tick is not None

    def make_tick_request(self) -> TickRequest:
        assert self.due_tick is not None
        self.taken.append(self.due_tick)
        final = self.due_tick is TickKind.FINAL
        self.due_tick = None
        return TickRequest(self.id, len(self.taken), np.zeros(1600, np.float32), 0.0, "", "en", "transcribe", final, None, 0)

    def apply_result(self, request: TickRequest, hypothesis: Hypothesis) -> list[ServerMessage]:
        return []

    def abandon_request(self, request: TickRequest) -> None:
        self.due_tick = TickKind.FINAL if request.final else TickKind.PARTIAL


class CostWorker:
    """Reports each batch as costing `fixed + per_row × rows` worker seconds, answering at once."""

    def __init__(self, fixed: float, per_row: float) -> None:
        self.fixed, self.per_row = fixed, per_row
        self.batches: list[list[str]] = []

    def submit(self, requests: Sequence[TickRequest]) -> Future[BatchResult]:
        self.batches.append([r.session_id for r in requests])
        future: Future[BatchResult] = Future()
        silent = Hypothesis((), "en", 1.0, -0.2, 0.01, 1.0)
        future.set_result(BatchResult(tuple(silent for _ in requests), self.fixed + self.per_row * len(requests)))
        return future


async def _drain(scheduler: TickScheduler, sessions: dict, rounds: int, refill: TickKind = TickKind.PARTIAL) -> None:
    """Runs the scheduler while every stream keeps asking for a tick of `refill`'s kind."""
    task = asyncio.create_task(scheduler.run())
    for _ in range(rounds):
        for session in sessions.values():
            if session.due_tick is None:
                session.due_tick = refill
                scheduler.wake(session)
        await asyncio.sleep(0.005)
    task.cancel()


@pytest.mark.parametrize(("fixed", "per_row", "expected"), [(0.0, 0.3, 1), (0.02, 0.001, 8)])
def test_the_batch_size_adapts_to_the_cost_of_a_row(fixed: float, per_row: float, expected: int) -> None:
    """A CPU-like worker (rows cost the same batched or not) gets batches the step budget holds;
    a GPU-like one (rows nearly free) gets max_batch."""
    worker = CostWorker(fixed, per_row)
    sessions = {f"s{i}": ScriptedSession(f"s{i}", TickKind.PARTIAL) for i in range(12)}
    scheduler = TickScheduler(worker, sessions, lambda s, m: None, lambda s, e: None, max_batch=8, tick_interval=0.3, step_budget=0.5)
    asyncio.run(_drain(scheduler, sessions, rounds=20))
    assert len(worker.batches[0]) == 8  # no cost measured yet
    assert max(len(batch) for batch in worker.batches[3:]) == expected
    assert scheduler.batch_size == expected


def test_a_commit_goes_before_partials_that_were_due_earlier() -> None:
    """Earliest deadline first: a decode stable text waits on is due at once, a partial one tick
    interval after it became due; arrival order does not decide."""
    worker = CostWorker(0.0, 0.3)
    sessions = {f"p{i}": ScriptedSession(f"p{i}", TickKind.PARTIAL) for i in range(3)}
    scheduler = TickScheduler(worker, sessions, lambda s, m: None, lambda s, e: None, max_batch=8, tick_interval=0.3, step_budget=0.5)

    async def scenario() -> None:
        for session in sessions.values():
            scheduler.wake(session)
        await asyncio.sleep(0.05)  # the partials have waited, but less than a tick interval
        sessions["c"] = ScriptedSession("c", TickKind.FINAL)
        scheduler.wake(sessions["c"])
        scheduler._row_seconds = 0.3  # as measured: one row a batch
        task = asyncio.create_task(scheduler.run())
        await asyncio.sleep(0.05)
        task.cancel()

    asyncio.run(scenario())
    assert worker.batches[0] == ["c"]
    assert sorted(b[0] for b in worker.batches[1:4]) == ["p0", "p1", "p2"]


def test_the_partial_budget_fills_at_its_share_no_deeper_than_a_row() -> None:
    budget = PartialBudget(0.5, now=0.0)
    assert budget.allows(0.0, depth=0.3)
    budget.spend(0.0, 0.3, depth=0.3)
    assert not budget.allows(0.1, depth=0.3) and budget.wait() == pytest.approx(0.5)
    assert budget.allows(0.6, depth=0.3)
    budget.spend(10.0, 0.3, depth=0.3)  # ten idle seconds bought one row, not a burst
    assert budget.allows(10.0, depth=0.3)
    budget.spend(10.0, 0.3, depth=0.3)
    assert not budget.allows(10.0, depth=0.3)
    assert PartialBudget(1.0, now=0.0).allows(0.0, depth=0.0)  # 1: no limit
    assert budget.allows(10.0, depth=0.3, overdraw=0.3)  # 0.3 short: a first decode may still go...
    budget.spend(10.0, 0.3, depth=0.3)
    assert not budget.allows(10.0, depth=0.3, overdraw=0.3)  # ...not 0.6 short


class ClockedWorker(CostWorker):
    """A CostWorker that also notes when each batch was submitted."""

    def __init__(self, per_row: float) -> None:
        super().__init__(0.0, per_row)
        self.submitted: list[float] = []

    def submit(self, requests: Sequence[TickRequest]) -> Future[BatchResult]:
        self.submitted.append(time.monotonic())
        return super().submit(requests)


def partials_then(late: TickKind) -> tuple[ClockedWorker, float]:
    """Three streams keep a partial due for 1.5 s, batches reported at 0.3 s a row, answered at
    once, with `partial_busy` 0.5; 0.9 s in, a stream "late" comes due with a `late` decode.
    Returns the worker (its batches and when each was submitted) and when "late" came due."""
    worker = ClockedWorker(per_row=0.3)
    sessions = {f"p{i}": ScriptedSession(f"p{i}", TickKind.PARTIAL) for i in range(3)}
    scheduler = TickScheduler(worker, sessions, lambda s, m: None, lambda s, e: None, max_batch=1, tick_interval=0.3, partial_busy=0.5)
    late_due = 0.0

    async def scenario() -> None:
        nonlocal late_due
        task = asyncio.create_task(scheduler.run())
        began = time.monotonic()
        while time.monotonic() - began < 1.5:
            for session in sessions.values():
                if session.due_tick is None and session.id != "late":
                    session.due_tick = TickKind.PARTIAL
                    scheduler.wake(session)
            if "late" not in sessions and time.monotonic() - began > 0.9:
                sessions["late"] = ScriptedSession("late", late)
                late_due = time.monotonic()
                scheduler.wake(sessions["late"])
            await asyncio.sleep(0.01)
        task.cancel()

    asyncio.run(scenario())
    return worker, late_due


def test_partials_are_held_to_the_busy_share_and_commits_never_wait_for_it() -> None:
    """Partials go about once per 0.6 s of wall time however many are due; a commit that comes
    due while they are held goes at once."""
    worker, commit_due = partials_then(TickKind.FINAL)
    partials = [t for batch, t in zip(worker.batches, worker.submitted) if batch[0] != "late"]
    assert 2 <= len(partials) <= 4, worker.batches  # 1.5 s at 0.5 worker s per s, 0.3 s a row: ~3
    commit = next(t for batch, t in zip(worker.batches, worker.submitted) if batch[0] == "late")
    assert commit - commit_due < 0.1


def test_the_first_decode_of_new_speech_may_overdraw_the_budget_by_a_row() -> None:
    """With the budget spent on other streams' partials (a row or less short), a stream's first
    decode of new speech (its first words) still goes at once, as a commit does."""
    worker, first_due = partials_then(TickKind.FIRST)
    first = next(t for batch, t in zip(worker.batches, worker.submitted) if batch[0] == "late")
    assert first - first_due < 0.1


def test_a_stream_speaking_alone_is_not_held_to_the_busy_share() -> None:
    """No other stream has speech pending, so no commit can wait behind its partials: with
    `partial_busy` 0.5 and 0.3 s a row, one speaking stream (beside a silent one) still gets a
    partial each time it asks, about 5 in 1.5 s, where the budget would allow about 3."""
    worker = ClockedWorker(per_row=0.3)
    speaking, silent = ScriptedSession("speaking", TickKind.PARTIAL), ScriptedSession("silent")
    silent.speech_pending = False
    sessions = {"speaking": speaking, "silent": silent}
    scheduler = TickScheduler(worker, sessions, lambda s, m: None, lambda s, e: None, max_batch=1, tick_interval=0.3, partial_busy=0.5)

    async def scenario() -> None:
        task = asyncio.create_task(scheduler.run())
        began = time.monotonic()
        while time.monotonic() - began < 1.5:
            if speaking.due_tick is None and worker.submitted and time.monotonic() - worker.submitted[-1] >= 0.3:
                speaking.due_tick = TickKind.PARTIAL  # the worker "took" 0.3 s: the next partial is due
                scheduler.wake(speaking)
            await asyncio.sleep(0.01)
        task.cancel()

    asyncio.run(scenario())
    assert len(worker.batches) >= 4, worker.submitted
