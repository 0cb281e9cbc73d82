"""Prometheus metrics of the daemon, on a private registry (tests and several daemons in one process
never collide), and their exposition for `GET /metrics`.

Updated from the event-loop thread only (prometheus-client is thread-safe anyway).
"""

from __future__ import annotations

from http import HTTPStatus

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from websockets.datastructures import Headers
from websockets.http11 import Response

from model.profile import STAGES, BatchProfile

# Tick latency: what a tick took from request to result, batching and queueing included.
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 32)

REJECT_REASONS = ("unauthorized", "forbidden_origin", "key_limit", "max_streams", "overloaded", "shutting_down", "unknown_session")


class StreamerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.active_streams = Gauge("streamer_active_streams", "Streams with an open connection", registry=r)
        self.detached_streams = Gauge("streamer_detached_streams", "Streams waiting for a resume", registry=r)
        self.sessions_total = Counter("streamer_sessions", "Sessions opened (resumes not counted)", registry=r)
        self.resumed_total = Counter("streamer_resumed_sessions", "Sessions taken back by a resume", registry=r)
        self.rejected_total = Counter("streamer_rejected_sessions", "Connections or sessions refused, by reason", ["reason"], registry=r)
        self.protocol_errors_total = Counter("streamer_protocol_errors", "Connections closed for a client error, by close code", ["code"], registry=r)
        self.audio_seconds_total = Counter("streamer_audio_seconds", "Seconds of audio received (16 kHz, after resampling)", registry=r)
        self.stable_segments_total = Counter("streamer_stable_segments", "Stable segments committed", registry=r)
        self.tick_latency = Histogram("streamer_tick_latency_seconds", "Tick request to result, queueing included", buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("streamer_batch_size", "Streams decoded together in one worker step", buckets=BATCH_BUCKETS, registry=r)
        self.worker_queue_depth = Gauge("streamer_worker_queue_depth", "Streams ready for a tick but waiting for the worker", registry=r)
        self.worker_errors_total = Counter("streamer_worker_errors", "Worker batches that failed (retried), by exception type", ["error"], registry=r)
        self.degraded_total = Counter("streamer_degraded_warnings", "Streams warned that their latency is degraded (overload)", registry=r)
        self.worker_load = Gauge("streamer_worker_load", "Recent worker busy time per second of wall time (1 = saturated)", registry=r)
        self.worker_busy_seconds_total = Counter("streamer_worker_busy_seconds", "Worker seconds spent decoding batches", registry=r)
        self.worker_stage_seconds_total = Counter(
            "streamer_worker_stage_seconds", "Worker seconds by stage of a decode (mel, encoder, language, decoder, alignment)", ["stage"], registry=r
        )
        self.decoder_passes_total = Counter("streamer_decoder_passes", "Decoder runs (prompt, steps, alignment)", registry=r)
        self.decoded_windows_total = Counter("streamer_decoded_windows", "Windows decoded (one per stream per tick)", registry=r)
        for stage in STAGES:
            self.worker_stage_seconds_total.labels(stage)
        for reason in REJECT_REASONS:
            self.rejected_total.labels(reason)  # present at 0 from the start, so rates work at once

    def observe_batch(self, seconds: float, profile: BatchProfile | None) -> None:
        """One worker batch: its wall seconds and, when measured, their split."""
        self.worker_busy_seconds_total.inc(seconds)
        if profile is not None:
            for stage, seconds in profile.stages.items():
                self.worker_stage_seconds_total.labels(stage).inc(seconds)
            self.decoder_passes_total.inc(profile.decoder_passes)
            self.decoded_windows_total.inc(profile.windows)

    def reject(self, reason: str) -> None:
        if reason not in REJECT_REASONS:
            raise ValueError(f"unknown reject reason {reason!r}")
        self.rejected_total.labels(reason).inc()

    def exposition(self) -> bytes:
        return generate_latest(self.registry)

    def response(self) -> Response:
        """The `GET /metrics` answer in the Prometheus text format."""
        body = self.exposition()
        headers = Headers([("Content-Type", CONTENT_TYPE_LATEST), ("Content-Length", str(len(body))), ("Cache-Control", "no-store")])
        return Response(HTTPStatus.OK.value, HTTPStatus.OK.phrase, headers, body)
