"""The unit of work between a session and the model worker: a tick request and its hypothesis.

A `TickRequest` is a self-contained snapshot (its audio is a copy), so the worker thread never
reads session state; a `Hypothesis` is plain data the session applies in the event-loop thread.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from model.constants import SAMPLE_RATE


class TickKind(enum.Enum):
    """Why a stream wants a decode, which tells the scheduler how soon it is due."""

    FINAL = "final"  # commit everything: an endpoint, flush, stop or a full buffer
    PAUSE = "pause"  # hears just past the last voiced frame: the commit, if the pause is an endpoint
    FIRST = "first"  # the first decode to hear speech begun since the last one: its first words
    PARTIAL = "partial"  # more speech since the last decode: the next partial, and agreement

    @property
    def commits(self) -> bool:
        """Stable text waits on this decode (the latency users see)."""
        return self is TickKind.FINAL or self is TickKind.PAUSE

    @property
    def urgent(self) -> bool:
        """Due at once: a listener waits on it (stable text, or the first words of new speech)."""
        return self is not TickKind.PARTIAL


@dataclass(frozen=True)
class Word:
    text: str  # with Whisper's leading space
    start: float  # seconds; relative to the window in a Hypothesis, absolute in a session
    end: float
    probability: float
    ends_segment: bool = False  # the last word before a timestamp token closed a segment

    def shifted(self, offset: float) -> Word:
        return Word(self.text, self.start + offset, self.end + offset, self.probability, self.ends_segment)


@dataclass(frozen=True, eq=False)
class TickRequest:
    session_id: str
    serial: int  # per session, increasing; a result applies to the request it answers
    audio: np.ndarray  # 16 kHz float32, at most 30 s, a private copy
    window_start: float  # stream seconds of audio[0]
    prompt: str  # committed text tail, given as the previous context (may be empty)
    language: str | None  # None: detect
    task: str
    final: bool  # commit everything (endpoint, flush, stop, full buffer)...
    commit_until: float | None  # ...or, at an endpoint, the words that start before this stream time
    speech_epoch: int  # the session's count of speech starts when the request was made
    truncated: bool = False  # the buffer held more than one window: audio continues past `audio`
    draft: tuple[int, ...] = ()  # tokens of the last decode from the same window start and prompt
    # Committed words whose audio is in the window (stream times): the decode begins with them
    # as known text, so it hears them in context without deciding them again.
    context: tuple[Word, ...] = ()
    # The hypothesis should carry the language-ID (`Hypothesis.language_probs`) of the audio from
    # `detect_from` to `detect_until` (stream times; None: the window's start, end), among
    # `languages` (empty: any).
    detect_language: bool = False
    languages: tuple[str, ...] = ()
    detect_from: float | None = None
    detect_until: float | None = None
    voiced_total: float = 0.0  # the VAD's voiced seconds of the stream up to the window's end
    # The first decode of new speech, heard alone from its onset (the text before it as the
    # prompt): its words are shown as the partial, neither agreed on nor committed.
    probe: bool = False

    @property
    def window_end(self) -> float:
        return self.window_start + len(self.audio) / SAMPLE_RATE


@dataclass(frozen=True)
class Hypothesis:
    words: tuple[Word, ...]  # times relative to the window start
    language: str
    language_probability: float
    avg_logprob: float
    no_speech_prob: float
    compression_ratio: float
    tokens: tuple[int, ...] = ()  # what the decoder sampled: the next tick's draft
    language_probs: Mapping[str, float] | None = None  # the language-ID, when the request asked for it
