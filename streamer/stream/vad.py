"""Voice activity per stream: webrtcvad on 30 ms frames at 16 kHz, smoothed into speech start/end events.

webrtcvad's per-frame decisions flicker; a start needs most frames of a short window voiced, and
an end needs a whole `endpoint_silence` window nearly free of voiced frames (the hangover).
Times are stream seconds at 16 kHz, counted from the first sample fed in.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np
import webrtcvad

from model.constants import SAMPLE_RATE

FRAME_SAMPLES = 480  # 30 ms at 16 kHz, one of the three frame sizes webrtcvad accepts
FRAME_SECONDS = FRAME_SAMPLES / SAMPLE_RATE
START_RATIO = 0.6  # voiced share of the start window that opens speech
END_RATIO = 0.1  # voiced share of the endpoint window below which speech has ended


@dataclass(frozen=True)
class SpeechStart:
    time: float  # start of the first voiced frame of the window that opened speech


@dataclass(frozen=True)
class SpeechEnd:
    time: float  # end of the last voiced frame


VadTransition = SpeechStart | SpeechEnd


class VoiceActivityDetector:
    """Smoothed webrtcvad state of one stream. Owned by the stream's session (event-loop thread)."""

    def __init__(self, aggressiveness: int, speech_start: float, endpoint_silence: float) -> None:
        self._vad = webrtcvad.Vad(aggressiveness)
        self._start_window = max(1, round(speech_start / FRAME_SECONDS))
        self._end_window = max(1, round(endpoint_silence / FRAME_SECONDS))
        self._recent: deque[bool] = deque(maxlen=max(self._start_window, self._end_window))
        self._pending = np.zeros(0, np.int16)
        self._frames = 0  # frames classified so far
        self._last_voiced_frame = -1
        self._voiced_frames = 0
        self.in_speech = False

    @property
    def last_voiced_end(self) -> float:
        """Stream time (s) where the last voiced frame ended; 0 before any."""
        return (self._last_voiced_frame + 1) * FRAME_SECONDS

    def skip_to(self, frames: int) -> None:
        """Counts time from frame `frames` (a stream continued elsewhere), as if silence preceded."""
        self._frames = frames
        self._last_voiced_frame = frames - 1

    @property
    def voiced_seconds(self) -> float:
        """Seconds of voiced frames so far (how much speech a language-ID has to go on)."""
        return self._voiced_frames * FRAME_SECONDS

    @property
    def pause_seconds(self) -> float:
        """Seconds since the last voiced frame ended (all the audio before any)."""
        return (self._frames - self._last_voiced_frame - 1) * FRAME_SECONDS

    def feed(self, samples: np.ndarray) -> list[VadTransition]:
        """Classifies the complete 30 ms frames in `samples` (16 kHz float32); returns transitions."""
        pcm = np.clip(samples * 32768.0, -32768, 32767).astype(np.int16)
        pcm = np.concatenate([self._pending, pcm]) if len(self._pending) else pcm
        whole = len(pcm) // FRAME_SAMPLES * FRAME_SAMPLES
        self._pending = pcm[whole:].copy()
        transitions: list[VadTransition] = []
        for offset in range(0, whole, FRAME_SAMPLES):
            voiced = self._vad.is_speech(pcm[offset : offset + FRAME_SAMPLES].tobytes(), SAMPLE_RATE)
            transition = self._update(voiced)
            if transition is not None:
                transitions.append(transition)
        return transitions

    def _update(self, voiced: bool) -> VadTransition | None:
        index = self._frames
        self._frames += 1
        self._recent.append(voiced)
        if voiced:
            self._last_voiced_frame = index
            self._voiced_frames += 1
        if not self.in_speech:
            window = list(self._recent)[-self._start_window :]
            if len(window) == self._start_window and sum(window) >= START_RATIO * self._start_window:
                self.in_speech = True
                first = index - self._start_window + 1 + window.index(True)
                return SpeechStart(first * FRAME_SECONDS)
            return None
        window = list(self._recent)[-self._end_window :]
        if len(window) == self._end_window and sum(window) <= END_RATIO * self._end_window and not window[-1]:
            self.in_speech = False
            return SpeechEnd((self._last_voiced_frame + 1) * FRAME_SECONDS)
        return None
