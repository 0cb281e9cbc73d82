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

from ..protocol import CloseCode, ProtocolError


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
