"""`--events FILE`: one JSON line per server message, timed against the audio sent.

Each line is `{"t": seconds since the first audio frame was sent, "sent": seconds of audio sent
by then, "msg": the server message}`. `ready` comes before any audio: its line is written once
the first frame is sent, with a negative `t` (if no audio is ever sent, `t` counts from opening).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any


class EventLog:
    def __init__(self, path: str | Path, sample_rate: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._file = Path(path).open("w", encoding="utf-8")
        self._sample_rate = sample_rate
        self._clock = clock
        self._opened = clock()
        self._first_audio: float | None = None
        self._samples_sent = 0
        self._early: list[tuple[float, Mapping[str, Any]]] = []  # messages before the first audio

    def audio_sent(self, samples: int) -> None:
        if self._first_audio is None:
            self._first_audio = self._clock()
            self._write_early(self._first_audio)
        self._samples_sent += samples

    def message(self, body: Mapping[str, Any]) -> None:
        now = self._clock()
        if self._first_audio is None:
            self._early.append((now, body))
        else:
            self._write(now - self._first_audio, body)

    def _write_early(self, origin: float) -> None:
        for at, body in self._early:
            self._write(at - origin, body)
        self._early.clear()

    def _write(self, t: float, body: Mapping[str, Any]) -> None:
        line = {"t": round(t, 6), "sent": round(self._samples_sent / self._sample_rate, 6), "msg": dict(body)}
        self._file.write(json.dumps(line, ensure_ascii=False) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._write_early(self._opened)
        self._file.close()
