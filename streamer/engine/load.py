"""The worker's load, as the scheduler records it and admission reads it: over a sliding window,
the worker's busy time per wall second, how many streams on average were ready for a tick but
left out of the batch (the backlog), and how late decodes finished past their deadline (the
scheduler's; see `scheduler.py`). Plain code with the clock as an argument; owned by the
event-loop thread."""

from __future__ import annotations

import math
from collections import deque


class WorkerLoad:
    """Busy seconds of the worker per second of wall time, and the backlog, over the last `window` seconds."""

    def __init__(self, window: float) -> None:
        if window <= 0:
            raise ValueError("window must be > 0")
        self.window = window
        self._batches: deque[tuple[float, float, int]] = deque()  # (finished, busy seconds, streams left waiting)
        self._lags: deque[tuple[float, float]] = deque()  # (finished, seconds past its deadline) per decode

    def record(self, finished: float, busy_seconds: float, waiting: int) -> None:
        self._batches.append((finished, busy_seconds, waiting))

    def record_lag(self, finished: float, seconds_late: float) -> None:
        self._lags.append((finished, seconds_late))

    def _prune(self, now: float) -> None:
        """Forgets what finished before the window."""
        for entries in (self._batches, self._lags):
            while entries and entries[0][0] < now - self.window:
                entries.popleft()

    def load(self, now: float) -> float:
        self._prune(now)
        return sum(busy for _, busy, _ in self._batches) / self.window

    def backlog(self, now: float) -> float:
        """Streams left waiting per batch, on average (0 when every ready stream fit in its batch)."""
        self._prune(now)
        return sum(waiting for _, _, waiting in self._batches) / len(self._batches) if self._batches else 0.0

    def lag_p90(self, now: float) -> float:
        """90th percentile of how late the recent decodes finished past their deadline (0 if none)."""
        self._prune(now)
        lags = sorted(lag for _, lag in self._lags)
        return lags[math.ceil(0.9 * len(lags)) - 1] if lags else 0.0  # nearest rank

    def saturated(self, now: float, max_load: float, max_lag: float) -> bool:
        return self.load(now) >= max_load and self.backlog(now) > 0 and self.lag_p90(now) > max_lag
