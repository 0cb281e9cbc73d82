"""The endpointer: VAD, utterance boundaries, and why the next decode is final."""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..config import Config
from .tick import Word
from .vad import SpeechStart, VoiceActivityDetector


class FinalReason(enum.Enum):
    """Why the next decode commits everything pending."""

    ENDPOINT = "endpoint"  # the VAD heard the speaker stop
    FLUSH = "flush"  # the client asked (or a failed final decode is tried again)
    STOP = "stop"  # no more audio will come
    FULL = "full"  # the buffer nears the 30 s window


@dataclass(frozen=True)
class Boundary:
    """A VAD transition, as the session hears it."""

    event: str  # speech_start | speech_end (the protocol's VadEvent names)
    time: float
    began: bool = False  # a speech start that opened an utterance (no speech was pending)


class Endpointer:
    def __init__(self, config: Config) -> None:
        self.vad = VoiceActivityDetector(config.vad.aggressiveness, config.vad.speech_start, config.stream.endpoint_silence)
        self._margin = config.stream.endpoint_margin
        self.speech_pending = False  # the uncommitted audio may hold speech
        self.epoch = 0  # speech starts seen; tells a result whether speech began after its request
        self._starts: deque[float] = deque(maxlen=16)  # the latest speech starts, oldest first (see `onset_after`)
        self.final_reason: FinalReason | None = None  # commit all at the next tick
        self.endpoint_time: float | None = None  # end of speech, when an endpoint commit is pending
        self.stopping = False  # no more audio will come: a final decode is for `STOP`

    def feed(self, samples: np.ndarray) -> list[Boundary]:
        boundaries = []
        for transition in self.vad.feed(samples):
            if isinstance(transition, SpeechStart):
                self.epoch += 1
                self._starts.append(transition.time)
                began, self.speech_pending = not self.speech_pending, True
                boundaries.append(Boundary("speech_start", transition.time, began))
            else:
                if self.speech_pending and self.final_reason is None:
                    self.final_reason = FinalReason.ENDPOINT
                    self.endpoint_time = transition.time
                boundaries.append(Boundary("speech_end", transition.time))
        return boundaries

    @property
    def onset(self) -> float:
        """Stream time of the latest speech start (0 before any)."""
        return self._starts[-1] if self._starts else 0.0

    @property
    def at_endpoint(self) -> bool:
        return self.final_reason is FinalReason.ENDPOINT

    def stop(self) -> None:
        """No more audio will come: what is pending gets its final decode."""
        self.stopping = True
        if self.speech_pending:
            self.final_reason = FinalReason.STOP

    def want_final(self) -> None:
        """The next tick is a final decode (for the reason already pending, if one is)."""
        self.final_reason = self.final_reason or (FinalReason.STOP if self.stopping else FinalReason.ENDPOINT)

    def endpoint_until(self) -> float | None:
        """An endpoint commits the words that started before the speaker stopped; later ones
        (the next utterance, heard by a decode that came late) wait for their own agreement."""
        return None if self.endpoint_time is None else self.endpoint_time + self._margin

    def commit_until(self) -> float | None:
        """What a final decode requested now commits: at an endpoint, the words before it."""
        return self.endpoint_until() if self.at_endpoint else None

    def voice_end(self) -> float:
        """Where the speech of the pending utterance ends (or ended last)."""
        return self.endpoint_time if self.endpoint_time is not None else self.vad.last_voiced_end

    def onset_after(self, time: float) -> float:
        """The first speech start at or after `time` (else the latest): where the speech after a
        pause begins. Not always the latest start: a worker late by seconds may answer after the
        speaker said a few words, paused briefly and went on, and a cut at the latest start would
        drop those words unheard."""
        return next((start for start in self._starts if start >= time), self.onset)

    def pause_after(self, until: float) -> tuple[float, float]:
        """The pause after the utterance a final decode commits the words before `until` of:
        where its speech ended, and where speech began again. Not the pending endpoint's: by the
        time a late decode is answered, the speaker may have ended another utterance."""
        speech_end = until - self._margin
        return speech_end, self.onset_after(speech_end)

    def utterance_bound(self, words: Sequence[Word], until: float) -> float:
        """Where a final decode that commits the words before `until` stops: before the first
        word that starts in the pause and ends after the speech that followed it began (the next
        utterance's first word aligned back into the pause: "¿Déjame" from 10.94 s for the German
        from 11.04 s, in the Spanish before it). A word begun before the pause is this
        utterance's, even when its alignment stretches over the pause ("…do for you." into "Ask")."""
        speech_end, onset = self.pause_after(until)
        if onset < speech_end:
            return until  # no speech since
        return next((w.start for w in words if speech_end <= w.start < until and w.end > onset), until)

    def next_utterance_began(self, until: float | None) -> bool:
        """Whether the speaker began again after the endpoint that commits the words before `until`."""
        return until is not None and self.vad.in_speech and self.onset >= until

    def ends_earlier_utterance(self, until: float | None) -> bool:
        """Whether a final decode that commits the words before `until` commits an utterance that
        ended before the latest one began (the worker was late)."""
        return until is not None and until <= self.onset + self._margin

    def utterance_done(self) -> None:
        """Everything pending is committed (a flush or stop that came meanwhile has nothing left)."""
        self.speech_pending = False
        self.final_reason = None
        self.endpoint_time = None
