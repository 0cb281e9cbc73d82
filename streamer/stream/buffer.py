"""The rolling audio of one stream: 16 kHz float32 from the last commit point to now.

Positions are absolute sample indices in the stream, so trimming never changes a time.
Storage is one preallocated array (grown by doubling when the worker lags), so an append
is a copy of the new frame only, not of the whole buffer.
"""

from __future__ import annotations

import numpy as np

from model.constants import SAMPLE_RATE


class AudioBuffer:
    """Owned by one session, in the event-loop thread; the worker only ever sees copies (`window`)."""

    def __init__(self, initial_seconds: float = 32.0) -> None:
        self._data = np.zeros(int(initial_seconds * SAMPLE_RATE), np.float32)
        self._length = 0
        self.start = 0  # absolute index of the first sample held

    @property
    def end(self) -> int:
        """Absolute index one past the last sample held (= samples received so far)."""
        return self.start + self._length

    @property
    def start_time(self) -> float:
        return self.start / SAMPLE_RATE

    @property
    def end_time(self) -> float:
        return self.end / SAMPLE_RATE

    @property
    def duration(self) -> float:
        return self._length / SAMPLE_RATE

    def append(self, samples: np.ndarray) -> None:
        needed = self._length + len(samples)
        if needed > len(self._data):
            grown = np.zeros(max(needed, 2 * len(self._data)), np.float32)
            grown[: self._length] = self._data[: self._length]
            self._data = grown
        self._data[self._length : needed] = samples
        self._length = needed

    def skip_to(self, position: int) -> None:
        """An empty buffer starts at `position` (a stream continued from another replica)."""
        if self._length:
            raise RuntimeError("skip_to on a buffer that holds audio")
        self.start = position

    def trim_to(self, position: int) -> None:
        """Drops the samples before absolute `position` (clamped to what is held)."""
        position = min(max(position, self.start), self.end)
        drop = position - self.start
        if drop:
            self._data[: self._length - drop] = self._data[drop : self._length]
            self._length -= drop
            self.start = position

    def window(self, max_samples: int) -> np.ndarray:
        """A copy of the first `max_samples` held samples: what one decode of this stream sees."""
        return self._data[: min(self._length, max_samples)].copy()
