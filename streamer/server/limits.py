"""What the daemon takes on: the audio rate of one stream, and new sessions when the worker is loaded.

Plain code with the clock as an argument; owned by the event-loop thread.

- `AudioRateLimiter`: a token bucket in seconds of audio. A live source sends 1 s per second; a
  client may catch up after a stall (the burst) but not push audio much faster than real time for
  long, which would let one client take the worker from everyone else (close 4429).
- `AdmissionControl`: a new session is refused (4429, with the reason) when the stream limit is
  reached or the worker is saturated (`streamer.engine.load.WorkerLoad`): busy nearly all the time AND decodes finishing late (p90
  past `server.max_tick_lag`). That is the measured knee: a busy worker whose decodes are still
  on time serves one more stream well (streams on a CPU keep it busy from two on, since each
  tick covers all audio received meanwhile), while late decodes are late stable text. Admitted
  streams are never dropped for load: the scheduler spaces their ticks out instead (each tick
  then covers more audio), so they degrade in latency, not in text.
"""

from __future__ import annotations

from dataclasses import dataclass

from wire import CloseCode, ProtocolError

from ..config import ServerConfig
from ..engine.load import WorkerLoad
from ..metrics import StreamerMetrics
from .auth import KeyStore, StreamLimiter


class AudioRateLimiter:
    def __init__(self, max_rate: float, burst_seconds: float, now: float) -> None:
        if max_rate <= 0 or burst_seconds <= 0:
            raise ValueError("audio rate and burst must be > 0")
        self.max_rate = max_rate
        self.burst_seconds = burst_seconds
        self._tokens = burst_seconds
        self._last = now

    def take(self, audio_seconds: float, now: float) -> None:
        """Accounts one frame's audio; raises 4429 when the stream runs ahead of the allowed rate."""
        self._tokens = min(self.burst_seconds, self._tokens + (now - self._last) * self.max_rate)
        self._last = now
        self._tokens -= audio_seconds
        if self._tokens < 0:
            raise ProtocolError(
                CloseCode.LIMITS,
                f"audio sent faster than {self.max_rate:g}x real time (beyond a {self.burst_seconds:g} s burst)",
            )


@dataclass(frozen=True)
class Admission:
    ok: bool
    reason: str = ""  # metrics label when refused: max_streams | overloaded | shutting_down
    message: str = ""
    close_code: int | None = None


class AdmissionControl:
    def __init__(self, max_streams: int) -> None:
        if max_streams < 1:
            raise ValueError("max_streams must be >= 1")
        self.max_streams = max_streams

    def admit(self, active: int, load: float, saturated: bool, *, shutting_down: bool = False) -> Admission:
        if shutting_down:
            return Admission(False, "shutting_down", "server shutting down", int(CloseCode.GOING_AWAY))
        if active >= self.max_streams:
            return Admission(False, "max_streams", f"too many streams (maximum {self.max_streams}); try again later", int(CloseCode.LIMITS))
        if saturated:
            return Admission(
                False,
                "overloaded",
                f"daemon overloaded: the worker is busy {load:.0%} of the time and its decodes run late; try again later",
                int(CloseCode.LIMITS),
            )
        return Admission(True)


class StreamGate:
    """Who may open a stream, in order: the daemon's stream limit and the worker's load, then the
    key's own stream limit (all 4429). A stream moved here from another replica is an admitted one
    (slowed, never cut, when the worker saturates): only the counts apply to it."""

    def __init__(self, config: ServerConfig, keys: KeyStore, load: WorkerLoad, metrics: StreamerMetrics) -> None:
        self._config = config
        self._keys = keys
        self._load = load
        self._metrics = metrics
        self._admission = AdmissionControl(config.max_streams)
        self._per_key = StreamLimiter()

    def admit(self, key_id: str | None, active: int, now: float, *, moved: bool = False, shutting_down: bool = False) -> None:
        """Takes a stream slot of `key_id`, or raises `ProtocolError` with the reason."""
        saturated = not moved and self._load.saturated(now, self._config.max_load, self._config.max_tick_lag)
        admission = self._admission.admit(active, 0.0 if moved else self._load.load(now), saturated, shutting_down=shutting_down)
        if not admission.ok:
            assert admission.close_code is not None
            self._metrics.reject(admission.reason)
            raise ProtocolError(CloseCode(admission.close_code), admission.message)
        key = self._keys.by_id(key_id) if key_id is not None else None
        if key is not None and not self._per_key.acquire(key.key_id, key.max_streams):
            self._metrics.reject("key_limit")
            raise ProtocolError(CloseCode.LIMITS, f"too many streams for key {key.key_id} (maximum {key.max_streams})")

    def release(self, key_id: str | None) -> None:
        """Gives back the slot `admit` took (a no-op for streams without a known key)."""
        if key_id is not None and self._keys.by_id(key_id) is not None:
            self._per_key.release(key_id)
