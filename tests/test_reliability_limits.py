"""Audio rate limit, worker load and admission control (streamer/server/limits.py); metrics exposition."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from streamer.engine.load import WorkerLoad
from streamer.metrics import StreamerMetrics
from streamer.server.limits import AdmissionControl, AudioRateLimiter
from wire import ProtocolError


def first_refused(limiter: AudioRateLimiter, frames: int, frame_s: float, pace: float) -> int | None:
    """The index of the first of `frames` frames of `frame_s` audio, sent at `pace` x real time,
    that the limiter refuses (4429); None when it takes them all."""
    for i in range(frames):
        try:
            limiter.take(frame_s, now=i * frame_s / pace)
        except ProtocolError as error:
            assert error.code == 4429
            return i
    return None


def test_real_time_audio_never_trips_the_limit() -> None:
    limiter = AudioRateLimiter(max_rate=4.0, burst_seconds=10.0, now=0.0)
    assert first_refused(limiter, 10_000, 0.1, pace=1.0) is None  # ~17 min of 0.1 s frames sent at 1x
    # Real time spent none of the burst: a 9.9 s catch-up right after is still taken.
    limiter.take(9.9, now=10_000 * 0.1)
    # The same frames do trip a limit under real time, once the 10 s burst is spent: at 0.5x the
    # allowance drains 0.05 s a frame after the first frame's 0.1 s, so frame 199 is refused.
    below = AudioRateLimiter(max_rate=0.5, burst_seconds=10.0, now=0.0)
    assert first_refused(below, 10_000, 0.1, pace=1.0) == pytest.approx(199, abs=1)


def test_burst_then_sustained_overspeed_trips() -> None:
    limiter = AudioRateLimiter(max_rate=4.0, burst_seconds=10.0, now=0.0)
    limiter.take(9.9, now=0.0)  # catching up after a stall: fine
    with pytest.raises(ProtocolError) as error:
        for i in range(1, 1000):
            limiter.take(0.5, now=i * 0.1)  # 5x real time, sustained
    assert error.value.code == 4429 and "4x real time" in error.value.message
    slow = AudioRateLimiter(max_rate=4.0, burst_seconds=10.0, now=0.0)
    for i in range(1, 1000):
        slow.take(0.39, now=i * 0.1)  # 3.9x forever is allowed


def test_worker_load_window() -> None:
    load = WorkerLoad(window=10.0)
    for t in range(10):
        load.record(finished=float(t), busy_seconds=0.95, waiting=0)
        load.record_lag(finished=float(t), seconds_late=2.0)
    assert load.load(now=9.0) == pytest.approx(0.95)
    assert not load.saturated(now=9.0, max_load=0.9, max_lag=1.0)  # busy, but every ready stream got its tick
    load.record(finished=9.5, busy_seconds=0.5, waiting=3)
    assert load.backlog(now=9.5) == pytest.approx(3 / 11)
    assert load.saturated(now=9.5, max_load=0.9, max_lag=1.0)
    assert load.load(now=25.0) == 0.0 and load.backlog(now=25.0) == 0.0 and not load.saturated(now=25.0, max_load=0.9, max_lag=1.0)


def test_a_busy_worker_whose_decodes_are_on_time_is_not_saturated() -> None:
    """The knee is where decodes run late, not where the worker gets busy: two streams on a CPU
    keep it busy all the time, yet serve their text on time."""
    load = WorkerLoad(window=10.0)
    for i in range(40):
        t = i * 0.25
        load.record(finished=t, busy_seconds=0.25, waiting=1)
        load.record_lag(finished=t, seconds_late=0.3 if i % 10 else 1.5)  # one late decode in ten
    assert load.load(now=9.75) >= 0.95 and load.backlog(now=9.75) > 0
    assert load.lag_p90(now=9.75) == pytest.approx(0.3)
    assert not load.saturated(now=9.75, max_load=0.9, max_lag=1.0)
    for i in range(40, 60):
        load.record(finished=i * 0.25, busy_seconds=0.25, waiting=2)
        load.record_lag(finished=i * 0.25, seconds_late=1.8)  # now half of them late
    assert load.lag_p90(now=14.75) == pytest.approx(1.8)
    assert load.saturated(now=14.75, max_load=0.9, max_lag=1.0)


def test_admission() -> None:
    control = AdmissionControl(max_streams=4)
    assert control.admit(active=3, load=0.5, saturated=False).ok
    full = control.admit(active=4, load=0.1, saturated=False)
    assert (full.ok, full.close_code, full.reason) == (False, 4429, "max_streams")
    busy = control.admit(active=1, load=0.95, saturated=True)
    assert (busy.ok, busy.close_code, busy.reason) == (False, 4429, "overloaded") and "overloaded" in busy.message
    assert control.admit(active=0, load=0.0, saturated=False, shutting_down=True).close_code == 1001


def test_metrics_exposition_on_private_registry() -> None:
    first, second = StreamerMetrics(), StreamerMetrics()  # no clash: each has its own registry
    first.active_streams.set(3)
    first.audio_seconds_total.inc(12.5)
    first.tick_latency.observe(0.4)
    first.batch_size.observe(2)
    first.reject("overloaded")
    with pytest.raises(ValueError):
        first.reject("because")
    families = {f.name: f for f in text_string_to_metric_families(first.exposition().decode())}
    assert families["streamer_active_streams"].samples[0].value == 3
    assert families["streamer_audio_seconds"].samples[0].value == 12.5
    rejected = {s.labels["reason"]: s.value for s in families["streamer_rejected_sessions"].samples if s.name.endswith("_total")}
    assert rejected["overloaded"] == 1 and rejected["max_streams"] == 0
    count = next(s for s in families["streamer_tick_latency_seconds"].samples if s.name.endswith("_count"))
    assert count.value == 1
    second_families = {f.name: f for f in text_string_to_metric_families(second.exposition().decode())}
    assert second_families["streamer_active_streams"].samples[0].value == 0
    response = first.response()
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/plain")
