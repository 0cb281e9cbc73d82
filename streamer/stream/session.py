"""One stream's orchestrator: audio in, tick requests out, results in, messages out.

Plain code driven by method calls (`on_audio`, `flush`, `stop`, `make_tick_request`,
`apply_result`), each returning the server messages to send; no socket, no model, no clock.
Ownership: a `Session` and everything in it belongs to the event-loop thread. The worker only
ever sees a `TickRequest`, an immutable snapshot; at most one request of a session is in
flight, and whatever audio arrives meanwhile is in the next one.

The rules live in `streamer/stream/`, a file each: the endpointer (VAD, utterance boundaries,
why a decode is final), the stream buffer and its context, the prompt, the hallucination
guard, the retry rules, the commit policy, the stream's language (in `auto`, stable text waits
for the language decider), and what a result does (`ResultRules`, a part the session owns and
hands each result); this file wires them together.

Gating: a session asks for ticks only while its uncommitted audio holds speech (VAD); in
silence the buffer keeps just a short pre-roll, so silence is never decoded. Each decode hears
the whole buffer, prompted with the committed text before it, beginning with the committed
words still in the buffer forced as known text (`TickRequest.context`). Words become stable by
the commit policy, or all at once at an endpoint, on flush/stop, or when the buffer nears the
30 s window. The worker checks each decode against the last one of the same window start (a
draft), which makes most ticks cheaper.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from model.constants import N_SAMPLES, SAMPLE_RATE
from wire import CloseCode, End, ProtocolError, Ready, ServerMessage, Start, VadEvent

from ..config import Config
from .commit import CommitPolicy
from .context import StreamBuffer
from .endpointer import Endpointer, FinalReason
from .ingest import AudioDecoder
from .language import StreamLanguage
from .policy import make_policy
from .results import ResultRules
from .tick import Hypothesis, TickKind, TickRequest, Word
from .vad import FRAME_SAMPLES

PROBE_AFTER = 1.0  # s of audio before new speech from which its first decode is a probe (`Session._probe_request`)


@dataclass(frozen=True)
class ModelInfo:
    """What a session needs to know about the model, without the model."""

    name: str
    multilingual: bool


def _policy_of(start: Start, config: Config) -> CommitPolicy:
    """The commit policy `start` asks for, or the daemon's; an unknown one ends this stream alone."""
    try:
        return make_policy(start.commit_policy or config.stream.commit_policy, config.stream)
    except ValueError as exc:
        raise ProtocolError(CloseCode.UNSUPPORTED, str(exc)) from exc


class Session:
    """One transcription stream (see the module docstring for ownership and gating). A decode's
    result goes to its `ResultRules` (streamer/stream/results.py), which owns the stable ids, the
    latest hypothesis and partial, and the draft; the session owns the requests."""

    def __init__(self, session_id: str, start: Start, config: Config, model: ModelInfo, policy: CommitPolicy | None = None) -> None:
        if start.endpoint_silence is not None:  # the stream's own endpointing (the drop-in interfaces map theirs here)
            config = replace(config, stream=replace(config.stream, endpoint_silence=float(start.endpoint_silence)))
        self._lang = StreamLanguage(start, config, model.name, model.multilingual)
        self.id = session_id
        self._start = start
        self._config = config
        self._model = model
        self._policy = policy if policy is not None else _policy_of(start, config)
        self._decoder = AudioDecoder(start)
        self._endpointer = Endpointer(config)
        self._buffer = StreamBuffer(config, prompt=start.prompt)
        self._results = ResultRules(config, self._endpointer, self._buffer, self._policy, self._lang, hold_sentence_end=start.hold_sentence_end)
        self._in_flight: TickRequest | None = None
        self._last_request_end = 0  # absolute sample index where the last request's audio ended
        self._onset_heard = False  # a decode heard the latest speech start: the next is no FIRST
        self._serial = 0
        self._announce_end = True
        self.ended = False

    @property
    def language(self) -> str | None:
        return self._lang.language

    @property
    def stopping(self) -> bool:
        """No more audio will come (`stop`, or the daemon's `finalize`)."""
        return self._endpointer.stopping

    def continue_at(
        self, seconds: float, next_stable_id: int, prompt: str, language: str | None, context: Sequence[Word] = (), pending: Sequence[Word] = ()
    ) -> float:
        """Goes on with a stream committed elsewhere: audio from `seconds` (stream time) on, ids
        after its segments, their text as the prompt, `context`, the committed words in that
        audio, as the next decode's known text, and `pending`, the last hypothesis heard there,
        as the commit policy's previous one (the first decode here that agrees commits, as the
        next decode there would have). Returns where the client resends audio from (rounded
        down to a VAD frame, so the timeline stays on the same grid)."""
        frames = int(seconds * SAMPLE_RATE) // FRAME_SAMPLES
        sample = frames * FRAME_SAMPLES
        self._buffer.audio.skip_to(sample)
        self._endpointer.vad.skip_to(frames)
        self._last_request_end = sample
        self._decoder.input_samples = round(sample * self._start.sample_rate / SAMPLE_RATE)
        self._results.continue_after(next_stable_id)
        self._buffer.prompt.text = prompt
        self._buffer.committed = list(context)
        if pending:
            self._policy.decide(list(pending), final=False)
        self._lang.continue_with(language, sample / SAMPLE_RATE)
        return sample / SAMPLE_RATE

    # ---- input -------------------------------------------------------------------------------

    def open(self) -> list[ServerMessage]:
        return [Ready(self.id, self._model.name, self._start.sample_rate), *self._lang.opening()]

    @property
    def undecoded_since(self) -> float | None:
        """Stream time from which no decode has heard the audio yet, while speech is pending (None
        in silence, which is never decoded): how far the worker is behind on this stream."""
        return self._last_request_end / SAMPLE_RATE if self._endpointer.speech_pending else None

    @property
    def speech_pending(self) -> bool:
        """Speech not yet all committed: a commit decode (`TickKind.commits`) may come due."""
        return self._endpointer.speech_pending

    @property
    def model_name(self) -> str:
        return self._model.name

    @property
    def received_seconds(self) -> float:
        """Audio received so far, counted in the client's samples (where a resuming client resumes)."""
        return self._decoder.input_samples / self._start.sample_rate

    @property
    def audio_seconds(self) -> float:
        return self._buffer.audio.end_time

    @property
    def stable_count(self) -> int:
        return self._results.next_stable_id

    def on_audio(self, data: bytes) -> list[ServerMessage]:
        if self.stopping:
            raise ProtocolError(CloseCode.OUT_OF_ORDER, "audio after `stop`")
        return self._ingest(self._decoder.decode(data))

    def flush(self) -> list[ServerMessage]:
        """Commit what is pending at the next tick; with no speech pending, the sentence mark held
        back from the stable text (`streamer.stream.sentence`) at once."""
        if self._endpointer.speech_pending:
            self._endpointer.final_reason = FinalReason.FLUSH
            self._lang.decider.expire()  # text held for the language is wanted now too
            return []
        return list(self._results.stable.release())

    def stop(self) -> list[ServerMessage]:
        """No more audio: finalise what is pending, then `end` (at once when nothing is)."""
        return self._finish(announce_end=True)

    def finalize(self) -> list[ServerMessage]:
        """The daemon shuts down: finalise like `stop`, but without `end` (the close code says why)."""
        return [] if self.stopping else self._finish(announce_end=False)

    def _finish(self, *, announce_end: bool) -> list[ServerMessage]:
        messages = self._ingest(self._decoder.finish())
        self._endpointer.stop()
        self._announce_end = announce_end
        return messages + self._maybe_end()

    def _ingest(self, samples: np.ndarray) -> list[ServerMessage]:
        messages: list[ServerMessage] = []
        audio, stream = self._buffer.audio, self._config.stream
        audio.append(samples)
        if audio.end_time > stream.max_session_seconds:
            raise ProtocolError(CloseCode.SESSION_TOO_LONG, f"session longer than the maximum of {stream.max_session_seconds:.0f} s")
        for boundary in self._endpointer.feed(samples):
            if boundary.event == "speech_start":
                self._onset_heard = False
                preroll_start = max(0.0, boundary.time - self._config.vad.preroll)
                self._lang.decider.begin_utterance(preroll_start, self._endpointer.vad.voiced_seconds)
                self._results.utterance_began()
            if boundary.began:
                start_sample = int(boundary.time * SAMPLE_RATE)
                if self._buffer.committed and self._lang.holding:
                    self._buffer.close_utterance()  # its own language-ID (and decode) hears it alone
                if not self._buffer.committed:  # else the last utterance's words stay as context
                    audio.trim_to(start_sample - int(self._config.vad.preroll * SAMPLE_RATE))
                # The first decode waits for `first_tick` s of speech: less rarely reads as words.
                first = int((stream.first_tick - stream.tick_interval) * SAMPLE_RATE)
                self._last_request_end = max(self._last_request_end, start_sample + first)
            if "vad" in self._start.events:
                messages.append(VadEvent(boundary.event, boundary.time))
        if self._in_flight is None:
            messages.extend(self._results.commit_at_endpoint())
        self._end_hold()
        if self._endpointer.speech_pending:
            if self._endpointer.final_reason is None and audio.duration >= stream.max_buffer:
                self._endpointer.final_reason = FinalReason.FULL
        elif self._in_flight is None:
            self._buffer.trim_silence()
            held_after = self._results.stable.held_after
            if held_after is not None and audio.end_time - held_after >= stream.sentence_pause:
                messages.extend(self._results.stable.release())  # the speaker stopped: the sentence ended
        return messages

    # ---- ticks -------------------------------------------------------------------------------

    @property
    def in_flight(self) -> bool:
        return self._in_flight is not None

    @property
    def due_tick(self) -> TickKind | None:
        """The tick this stream is ready for (None: none): speech pending, nothing in flight, and
        a tick's worth of new audio, or a commit, which does not wait."""
        endpointer, end = self._endpointer, self._buffer.audio.end
        if self.ended or self._in_flight is not None or not endpointer.speech_pending:
            return None
        if endpointer.final_reason is not None:
            return TickKind.FINAL
        voice_end = int(endpointer.vad.last_voiced_end * SAMPLE_RATE)
        heard_past_voice = voice_end + int(self._config.stream.endpoint_margin * SAMPLE_RATE)
        if self._last_request_end < heard_past_voice <= end:
            # Once per pause, a decode that hears just past the last voiced frame: if the pause
            # turns out to be an endpoint, its hypothesis is committed without another decode.
            return TickKind.PAUSE
        # Silence after the last decode would not change its text: wait for speech or the endpoint.
        new_voice = voice_end > self._last_request_end
        new_audio = end - self._last_request_end
        ready = new_voice and new_audio >= self._config.stream.tick_interval * SAMPLE_RATE
        return None if not ready else TickKind.PARTIAL if self._onset_heard else TickKind.FIRST

    @property
    def wants_tick(self) -> bool:
        return self.due_tick is not None

    @property
    def final_pending(self) -> bool:
        """A final decode is to come or running (after a flush: its text is not all out yet)."""
        return self._endpointer.final_reason is not None or (self._in_flight is not None and self._in_flight.final)

    def make_tick_request(self) -> TickRequest:
        if not self.wants_tick:
            raise RuntimeError(f"session {self.id}: no tick is due")
        if self.due_tick is TickKind.FIRST and (probe := self._probe_request()) is not None:
            return self._send(probe)
        buffer = self._buffer.audio
        audio = buffer.window(N_SAMPLES)
        prompt = self._buffer.prompt_text()
        self._serial += 1
        request = TickRequest(
            session_id=self.id,
            serial=self._serial,
            audio=audio,
            window_start=buffer.start_time,
            prompt=prompt,
            language=self._lang.request_language(buffer.start_time),
            task=self._start.task,
            final=self._endpointer.final_reason is not None,
            commit_until=self._endpointer.commit_until(),
            speech_epoch=self._endpointer.epoch,
            truncated=buffer.end > buffer.start + len(audio),
            draft=self._results.draft(buffer.start_time, prompt),
            context=self._buffer.context(tail_retried=self._results.tail_retried),
            detect_language=self._lang.holding,  # until the language is known, every decode tells it
            languages=self._lang.decider.candidates,
            detect_from=self._lang.decider.detect_from,
            detect_until=self._lang.decider.detect_until,
            voiced_total=self._endpointer.vad.voiced_seconds,
        )
        self._endpointer.final_reason = None
        return self._send(request)

    def _probe_request(self) -> TickRequest | None:
        """The first decode of new speech as a probe (`TickRequest.probe`), when the window would
        hold more than `PROBE_AFTER` s before it: there Whisper, done with the earlier speech, mostly
        ends its text before the new half second (a whole decode that showed nothing), and the
        probe's short window costs a fraction of the whole one's."""
        buffer, preroll = self._buffer.audio, self._config.vad.preroll
        begin = max(buffer.start, int((self._endpointer.onset - preroll) * SAMPLE_RATE))
        if self._lang.holding or begin - buffer.start < PROBE_AFTER * SAMPLE_RATE:
            return None
        audio = buffer.window(N_SAMPLES)[begin - buffer.start :]
        prompt = self._buffer.prompt_text() + "".join(w.text for w in (*self._buffer.committed, *self._results.partial_words) if w.end <= begin / SAMPLE_RATE)
        self._serial += 1
        return TickRequest(
            self.id, self._serial, audio, begin / SAMPLE_RATE, prompt[-self._config.stream.prompt_chars :], self._lang.request_language(begin / SAMPLE_RATE),
            self._start.task, final=False, commit_until=None, speech_epoch=self._endpointer.epoch, probe=True,
        )

    def _send(self, request: TickRequest) -> TickRequest:
        self._last_request_end = int(request.window_end * SAMPLE_RATE + 0.5)
        self._onset_heard = True
        self._in_flight = request
        return request

    def abandon_request(self, request: TickRequest) -> None:
        """The worker failed on `request`: forget it, so the next tick retries with all audio."""
        if self._in_flight is request:
            self._in_flight = None
            if request.final:
                self._endpointer.final_reason = FinalReason.FLUSH

    def apply_result(self, request: TickRequest, hypothesis: Hypothesis) -> list[ServerMessage]:
        if self._in_flight is not request:
            raise RuntimeError(f"session {self.id}: result for request {request.serial}, which is not in flight")
        self._in_flight = None
        return self._results.apply(request, hypothesis) + self._maybe_end()

    def _end_hold(self) -> None:
        """Text held past `language.max_hold` in a pause gets the final decode that decides."""
        endpointer = self._endpointer
        if endpointer.vad.in_speech or not endpointer.speech_pending or self._in_flight is not None or endpointer.final_reason is not None:
            return
        if endpointer.vad.pause_seconds >= self._config.stream.endpoint_silence and self._lang.hold_expired(self._buffer.audio.end_time):
            endpointer.want_final()

    def _maybe_end(self) -> list[ServerMessage]:
        idle = self._in_flight is None and self._endpointer.final_reason is None and not self._endpointer.speech_pending
        if self.stopping and not self.ended and idle:
            self.ended = True
            messages: list[ServerMessage] = list(self._results.stable.release())
            return messages + [End(self._results.next_stable_id - 1, self._buffer.audio.end_time)] if self._announce_end else messages
        return []
