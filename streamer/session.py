"""One stream's logic: audio → VAD → buffer → tick requests; hypotheses → commit policy → messages.

Plain code driven by method calls (`on_audio`, `flush`, `stop`, `make_tick_request`,
`apply_result`), each returning the server messages to send; no socket, no model, no clock.
Ownership: a `Session` and everything in it (buffer, VAD, policy) belongs to the event-loop
thread. The worker only ever sees a `TickRequest`, an immutable snapshot; at most one request of
a session is in flight, and whatever audio arrives meanwhile is in the next one.

Gating: a session asks for ticks only while its uncommitted audio holds speech (VAD); in
silence the buffer keeps just a short pre-roll, so silence is never decoded.

Each decode hears the whole buffer, prompted with the committed text before it (up to the last
finished segment). Words become stable by the commit policy (LocalAgreement-2), or all at once at
an endpoint (the VAD heard the speaker stop), on flush/stop, or when the buffer nears the 30 s
window; a final decode that looks wrong (stopped short of the speech, ran into committed words,
or broke from the last partial) is done once more on a window starting after the committed words.
The buffer is cut at the end of a committed Whisper segment (or at a committed word once it is
long), keeping `stream.overlap` s of committed speech, across a short pause too: the decode
begins with those words forced as known text (`TickRequest.context`), so it hears what comes
next in context, as offline transcription of a 30 s window does, without deciding them again
(they are matched on text and dropped from its hypothesis). The worker checks each decode
against the last one of the same window start (a draft), which makes most ticks cheaper.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from model.audio import N_SAMPLES, SAMPLE_RATE
from model.tokenizer import normalize_language

from .buffer import AudioBuffer
from .commit import CommitPolicy, LocalAgreement, find_repetition_loop, skip_committed, word_key
from .config import Config
from .ingest import AudioDecoder
from .language import LanguageDecider
from .protocol import (
    CloseCode,
    End,
    LanguageDetected,
    Partial,
    ProtocolError,
    Ready,
    ServerMessage,
    Stable,
    Start,
    VadEvent,
    WordTiming,
)
from .tick import Hypothesis, TickKind, TickRequest, Word
from .vad import FRAME_SAMPLES, SpeechStart, VoiceActivityDetector

ENDPOINT_MARGIN = 0.1  # s a decode must have heard past the end of speech to stand for the final one
EDGE_MARGIN = 0.05  # s: at an endpoint, a word ending this close to a window's end may be cut by it
UNHEARD_TAIL = 0.6  # s of speech after a final decode's last word that are decoded once more
RETRY_OVERLAP = 0.5  # s (at most half `stream.overlap`) of committed words kept before that tail
MERGED_OVERLAP = 0.3  # s a final decode's first new word may start before the committed words end
FILLERS = frozenset({"mm", "hmm", "mhm", "mmhmm", "uh", "um", "ah", "oh", "huh", "uhhuh"})  # word_key()s
UNHEARD_WORD = 0.02  # s: a word aligned to less than this was not found in the audio...
UNHEARD_RUN = 2  # ...and this many such words in a row were made up, not heard
MAX_WORD_SECONDS = 1.5  # a committed word "longer" than this was stretched by the alignment
CONTEXT_PAUSE = 3.0  # s of pause after which the last utterance is no longer the next one's context


@dataclass(frozen=True)
class ModelInfo:
    """What a session needs to know about the model, without the model."""

    name: str
    multilingual: bool


@dataclass(frozen=True)
class _Heard:
    """The uncommitted words of the latest decode, and how far into the stream it heard."""

    words: list[Word]
    window_end: float
    heard_until: float  # how far the decode heard (see `_guarded_words`)
    epoch: int
    language: str


class Session:
    """One transcription stream (see the module docstring for ownership and gating)."""

    def __init__(
        self,
        session_id: str,
        start: Start,
        config: Config,
        model: ModelInfo,
        policy: CommitPolicy | None = None,
    ) -> None:
        language = start.language.lower()
        if not model.multilingual and language not in ("auto", "en"):
            raise ProtocolError(CloseCode.UNSUPPORTED, f"model {model.name} is English-only; language {start.language!r} is not available")
        if not model.multilingual and start.task == "translate":
            raise ProtocolError(CloseCode.UNSUPPORTED, f"model {model.name} is English-only and cannot translate")
        self.id = session_id
        self._start = start
        self._config = config
        self._model = model
        self._policy = policy if policy is not None else LocalAgreement(2)
        self._decoder = AudioDecoder(start)
        self._vad = VoiceActivityDetector(config.vad.aggressiveness, config.vad.speech_start, config.stream.endpoint_silence)
        self._buffer = AudioBuffer()
        fixed = None if language == "auto" and model.multilingual else ("en" if language == "auto" else language)
        # The language decider (`streamer.language`): in `auto`, stable text waits for it.
        self._language = LanguageDecider(config.language, _candidates(start, config, model), fixed=fixed)
        self._fixed_language = self._language.fixed
        self.language: str | None = self._language.language
        self._prompt = start.prompt  # committed text before the buffer, given to the decoder as context...
        self._prompt_open = ""  # ...but for that of an unfinished Whisper segment (see `_extend_prompt`)
        self._unprompted = False  # this utterance is decoded without the prompt (see `apply_result`)
        self._head: str | None = None  # word_key() the next decode should begin with (`_begin_next_utterance`)
        self._committed_in_buffer: list[Word] = []  # committed words whose audio is still in the buffer
        self._next_stable_id = 0
        self._speech_pending = False  # the uncommitted audio may hold speech
        self._speech_epoch = 0  # speech starts seen; tells a result whether speech began after its request
        self._onset = 0.0  # stream time of the latest speech start
        self._final_reason: str | None = None  # endpoint | flush | stop | full: commit all at the next tick
        self._endpoint_time: float | None = None  # end of speech, when an endpoint commit is pending
        self._hypothesis: _Heard | None = None  # the latest decode's uncommitted words
        self._tail_retried = False  # this utterance's final decode was done once more already
        self._retry_fallback: list[Word] = []  # a final decode's words, should the one done again hear none
        self._in_flight: TickRequest | None = None
        self._last_request_end = 0  # absolute sample index where the last request's audio ended
        self._serial = 0
        self._partial_words: list[Word] = []  # the uncommitted words last sent as `partial`
        # The last decode's tokens, with the window start and prompt they came from: the next
        # decode of the same start says much the same, so the worker checks them as a draft.
        self._draft: tuple[float, str, tuple[int, ...]] = (-1.0, "", ())
        self.stopping = False  # no more audio will come
        self._announce_end = True
        self.ended = False

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
        self._buffer.skip_to(sample)
        self._vad.skip_to(frames)
        self._last_request_end = sample
        self._decoder.input_samples = round(sample * self._start.sample_rate / SAMPLE_RATE)
        self._next_stable_id = next_stable_id
        self._prompt = prompt
        self._committed_in_buffer = list(context)
        if pending:
            self._policy.decide(list(pending), final=False)
        if language is not None and self.language is None:
            self.language, self._fixed_language = language, True
        return sample / SAMPLE_RATE

    # ---- input -------------------------------------------------------------------------------

    def open(self) -> list[ServerMessage]:
        messages: list[ServerMessage] = [Ready(self.id, self._model.name, self._start.sample_rate)]
        if self._fixed_language and self.language is not None:
            messages.append(LanguageDetected(self.language, 1.0))
        return messages

    @property
    def undecoded_since(self) -> float | None:
        """Stream time from which no decode has heard the audio yet, while speech is pending (None
        in silence, which is never decoded): how far the worker is behind on this stream."""
        return self._last_request_end / SAMPLE_RATE if self._speech_pending else None

    @property
    def model_name(self) -> str:
        return self._model.name

    @property
    def received_seconds(self) -> float:
        """Audio received so far, counted in the client's samples (where a resuming client resumes)."""
        return self._decoder.input_samples / self._start.sample_rate

    @property
    def audio_seconds(self) -> float:
        return self._buffer.end_time

    def on_audio(self, data: bytes) -> list[ServerMessage]:
        if self.stopping:
            raise ProtocolError(CloseCode.OUT_OF_ORDER, "audio after `stop`")
        return self._ingest(self._decoder.decode(data))

    def flush(self) -> list[ServerMessage]:
        """Commit what is pending at the next tick (nothing to do when no speech is pending)."""
        if self._speech_pending:
            self._final_reason = "flush"
            self._language.expire()  # text held for the language is wanted now too
        return []

    def stop(self) -> list[ServerMessage]:
        """No more audio: finalise what is pending, then `end` (at once when nothing is)."""
        return self._finish(announce_end=True)

    def finalize(self) -> list[ServerMessage]:
        """The daemon shuts down: finalise like `stop`, but without `end` (the close code says why)."""
        return [] if self.stopping else self._finish(announce_end=False)

    def _finish(self, *, announce_end: bool) -> list[ServerMessage]:
        messages = self._ingest(self._decoder.finish())
        self.stopping = True
        self._announce_end = announce_end
        if self._speech_pending:
            self._final_reason = "stop"
        return messages + self._maybe_end()

    @property
    def stable_count(self) -> int:
        return self._next_stable_id

    def _ingest(self, samples: np.ndarray) -> list[ServerMessage]:
        messages: list[ServerMessage] = []
        self._buffer.append(samples)
        if self._buffer.end_time > self._config.stream.max_session_seconds:
            raise ProtocolError(CloseCode.SESSION_TOO_LONG, f"session longer than the maximum of {self._config.stream.max_session_seconds:.0f} s")
        for transition in self._vad.feed(samples):
            if isinstance(transition, SpeechStart):
                self._language.begin_utterance(max(0.0, transition.time - self._config.vad.preroll), self._vad.voiced_seconds)
                self._speech_epoch += 1
                self._onset = transition.time
                self._tail_retried = False  # a new utterance may need its own second decode
                if not self._speech_pending:
                    self._speech_pending = True
                    start_sample = int(transition.time * SAMPLE_RATE)
                    if self._committed_in_buffer and self._language.holding:
                        self._close_utterance()  # its own language-ID (and decode) hears it alone
                    if not self._committed_in_buffer:  # else the last utterance's words stay as context
                        self._buffer.trim_to(start_sample - int(self._config.vad.preroll * SAMPLE_RATE))
                    # The first decode waits for `first_tick` s of speech: less rarely reads as words.
                    stream = self._config.stream
                    first = int((stream.first_tick - stream.tick_interval) * SAMPLE_RATE)
                    self._last_request_end = max(self._last_request_end, start_sample + first)
                event = "speech_start"
            else:
                if self._speech_pending and self._final_reason is None:
                    self._final_reason = "endpoint"
                    self._endpoint_time = transition.time
                event = "speech_end"
            if "vad" in self._start.events:
                messages.append(VadEvent(event, transition.time))
        messages.extend(self._commit_at_endpoint())
        self._end_hold()
        if self._speech_pending:
            if self._final_reason is None and self._buffer.duration >= self._config.stream.max_buffer:
                self._final_reason = "full"
        elif self._in_flight is None:
            self._trim_silence()
        return messages

    def _trim_silence(self) -> None:
        """No speech pending: the buffer keeps the last `stream.overlap` s of committed words as the
        next utterance's context while the pause is short; else only a pre-roll for the next onset
        (silence is never decoded)."""
        if self._keep_context():
            return
        self._close_utterance()
        keep = self._config.vad.preroll + self._config.vad.speech_start + 0.1
        self._buffer.trim_to(self._buffer.end - int(keep * SAMPLE_RATE))

    # ---- ticks -------------------------------------------------------------------------------

    @property
    def in_flight(self) -> bool:
        return self._in_flight is not None

    @property
    def due_tick(self) -> TickKind | None:
        """The tick this stream is ready for (None: none): speech pending, nothing in flight, and
        a tick's worth of new audio, or a commit, which does not wait."""
        if self.ended or self._in_flight is not None or not self._speech_pending:
            return None
        if self._final_reason is not None:
            return TickKind.FINAL
        voice_end = int(self._vad.last_voiced_end * SAMPLE_RATE)
        heard_past_voice = voice_end + int(ENDPOINT_MARGIN * SAMPLE_RATE)
        if self._last_request_end < heard_past_voice <= self._buffer.end:
            # Once per pause, a decode that hears just past the last voiced frame: if the pause
            # turns out to be an endpoint, its hypothesis is committed without another decode.
            return TickKind.PAUSE
        # Silence after the last decode would not change its text: wait for speech or the endpoint.
        new_voice = voice_end > self._last_request_end
        new_audio = self._buffer.end - self._last_request_end
        return TickKind.PARTIAL if new_voice and new_audio >= self._config.stream.tick_interval * SAMPLE_RATE else None

    @property
    def wants_tick(self) -> bool:
        return self.due_tick is not None

    @property
    def final_pending(self) -> bool:
        return self._final_reason is not None

    def make_tick_request(self) -> TickRequest:
        if not self.wants_tick:
            raise RuntimeError(f"session {self.id}: no tick is due")
        audio = self._buffer.window(N_SAMPLES)
        prompt = "" if self._unprompted else self._prompt
        draft_start, draft_prompt, draft = self._draft
        self._serial += 1
        request = TickRequest(
            session_id=self.id,
            serial=self._serial,
            audio=audio,
            window_start=self._buffer.start_time,
            prompt=prompt,
            language=self._request_language(),
            task=self._start.task,
            final=self._final_reason is not None,
            commit_until=self._endpoint_time + ENDPOINT_MARGIN if self._final_reason == "endpoint" and self._endpoint_time is not None else None,
            speech_epoch=self._speech_epoch,
            truncated=self._buffer.end > self._buffer.start + len(audio),
            draft=draft if (draft_start, draft_prompt) == (self._buffer.start_time, prompt) else (),
            # A decode done again, because one went wrong after its context, hears the committed
            # words afresh: forced, they led it to the same place ("…with ugly ones.", then
            # nothing of the 7 s utterance after them).
            context=() if self._tail_retried or self._unprompted else tuple(self._committed_in_buffer),
            detect_language=self._language.holding,  # until the language is known, every decode tells it
            languages=self._language.candidates,
            detect_from=self._language.detect_from,
            voiced_total=self._vad.voiced_seconds,
        )
        self._final_reason = None
        self._last_request_end = self._buffer.start + len(audio)
        self._in_flight = request
        return request

    def abandon_request(self, request: TickRequest) -> None:
        """The worker failed on `request`: forget it, so the next tick retries with all audio."""
        if self._in_flight is request:
            self._in_flight = None
            if request.final:
                self._final_reason = "flush"

    def apply_result(self, request: TickRequest, hypothesis: Hypothesis) -> list[ServerMessage]:
        if self._in_flight is not request:
            raise RuntimeError(f"session {self.id}: result for request {request.serial}, which is not in flight")
        self._in_flight = None
        self._draft = (request.window_start, request.prompt, hypothesis.tokens)
        heard, heard_until = self._guarded_words(request, hypothesis)
        words = self._new_words(heard)
        head, self._head = self._head, None
        if head is not None and request.prompt and (not words or word_key(words[0]) != head):
            # The first decode after a cut in the pause (`_begin_next_utterance`) did not begin
            # with what the decode before it heard there: Whisper drops a phrase that repeats the
            # end of its prompt (after "…what your country can do for you,", the audio "ask what
            # you can do for your country" decoded as "can do for your country"). Decoded again
            # without the prompt.
            self._unprompted = True
            return self._decode_again(request)
        if request.context and not words and self._spoke_after_pause(request.context[-1].end, request.window_end):
            # Whisper at times ends its text at the forced context when a pause follows it, with
            # speech after the pause ("…soul in heaven." and nothing of the 8 s utterance after
            # it, in every decode of that window, the context heard again too): the buffer is cut
            # in the pause, so the next decode hears that speech alone, as after silence.
            self._cut_in_pause(request.context[-1].end)
            return self._decode_again(request)
        messages, again = self._observe_language(request, hypothesis, words)
        if again:
            return messages + self._decode_again(request)
        final, until = request.final, request.commit_until
        if self._final_reason == "endpoint" and self._heard_past_endpoint(request.window_end, words):
            # The speaker stopped while this decode ran, and it heard the whole utterance: no need
            # to decode the same audio again before committing.
            final, until, self._final_reason = True, self._endpoint_until(), None
        self._hypothesis = _Heard(words, request.window_end, heard_until, request.speech_epoch, hypothesis.language)
        messages.extend(self._decide(self._hypothesis, final=final, until=until, truncated=request.truncated))
        return messages + self._maybe_end()

    def _decode_again(self, request: TickRequest) -> list[ServerMessage]:
        """`request`'s hypothesis is not to be agreed with: the next decode, final if it was,
        hears its audio again (the caller changed how)."""
        self._hypothesis = None
        if request.final:
            self._want_final_decode()
        return self._maybe_end()

    def _heard_past_endpoint(self, window_end: float, words: list[Word]) -> bool:
        """Whether a decode up to `window_end` stands for the final one: it heard past the end of
        speech, and none of the words to commit runs into its edge (cut off, maybe misheard)."""
        until = self._endpoint_until()
        if until is None or window_end < until:
            return False
        return all(w.end < window_end - EDGE_MARGIN for w in words if w.start < until)

    def _unheard_tail(self, heard_until: float) -> bool:
        """Whether the speaker went on past the decode's last word by more than `UNHEARD_TAIL`."""
        voice_end = self._endpoint_time if self._endpoint_time is not None else self._vad.last_voiced_end
        return voice_end - heard_until > UNHEARD_TAIL

    def _endpoint_until(self) -> float | None:
        """An endpoint commits the words that started before the speaker stopped; later ones
        (the next utterance, heard by a decode that came late) wait for their own agreement."""
        return None if self._endpoint_time is None else self._endpoint_time + ENDPOINT_MARGIN

    def _commit_at_endpoint(self) -> list[ServerMessage]:
        """At an endpoint, commits the latest hypothesis at once when it heard past the end of speech."""
        heard = self._hypothesis
        if self._final_reason != "endpoint" or self._in_flight is not None or heard is None or self._language.holding:
            return []
        if not self._heard_past_endpoint(heard.window_end, heard.words):
            return []
        self._final_reason = None
        return self._decide(heard, final=True, until=self._endpoint_until(), truncated=False)

    def _decide(self, heard: _Heard, *, final: bool, until: float | None, truncated: bool) -> list[ServerMessage]:
        """Asks the commit policy about a decode's new words, commits, trims the buffer, and
        updates the partial.

        `final` commits every word, or with `until` every word that starts before that time.
        """
        if self._language.holding and not (final and self._ends_earlier_utterance(until)):
            return self._hold(heard.words, final=final)
        words = heard.words
        messages: list[ServerMessage] = []
        fallback, self._retry_fallback = self._retry_fallback, []
        if final and not words and fallback:
            # The decode done again heard nothing (tiny.en on the shorter window: "ask not what"
            # came out empty at shutdown): what the first one heard stands.
            words = fallback
        elif final and not self._tail_retried and ((overlaps := self._overlaps_committed(words)) or self._contradicts_partial(words)):
            # Whisper drops a phrase that repeats one just before it ("…for you, ask what you can
            # do for your country" heard as "…for your country"): a final decode that runs new
            # words into committed ones, or does not go on from the partial before it, would lose
            # words if committed. Decode again on a window that starts after the committed words.
            if not overlaps:
                self._retry_fallback = words
            self._decode_again_after_committed()
            return messages
        if final:
            limit = len(words) if until is None else next((i for i, w in enumerate(words) if w.start >= until), len(words))
            if truncated:
                limit = min(limit, max(0, len(words) - 1))  # the window's last word may be cut by its edge
            count = self._policy.decide(words[:limit], final=True)
            self._policy.decide(words[limit:], final=False)  # what follows starts a new agreement
        else:
            # A word near the window's edge may be cut off, or misheard for want of what follows,
            # the same way twice: it waits until the audio after it is heard.
            whole = next((i for i, w in enumerate(words) if w.end >= heard.window_end - self._config.stream.agreement_margin), len(words))
            count = self._policy.decide(words[:whole], final=False)
        committed, remaining = words[:count], words[count:]
        if committed:
            messages.extend(self._commit(committed, heard.language))
        if self._hypothesis is not None:
            self._hypothesis = replace(self._hypothesis, words=remaining)
        done = final and not truncated and not remaining and (self.stopping or not self._vad.in_speech)
        if done and (self._speech_epoch != heard.epoch or self._vad.last_voiced_end > heard.window_end):
            # Voice came after this decode's window while it ran (more words, the next utterance,
            # or a click): one more final decode hears it, rather than the stream ending without
            # it, or its buffer staying open with no final decode to come.
            self._want_final_decode()
            self._endpoint_time = self._vad.last_voiced_end
            done = False
        next_began = final and not truncated and not done and self._next_utterance_began(until)
        if (done or next_began) and not self._tail_retried and self._committed_in_buffer and self._unheard_tail(heard.heard_until):
            # Whisper at times ends a window early (a timestamp, then end of text) with speech
            # left after it. Like offline transcription, decode again from there (the window
            # starting a few words before, so no cut clips the tail), before the utterance is done.
            self._decode_again_after_committed()
            done = False
        elif next_began:
            self._begin_next_utterance(remaining)
        elif committed:
            self._trim_committed(everything=final, overlap=self._config.stream.overlap)
        if final and truncated:
            self._final_reason = self._final_reason or "full"
        if final and not done and self._final_reason != "endpoint":
            self._endpoint_time = None  # that endpoint is committed; the next one sets its own
        if done:
            self._speech_pending = False
            self._tail_retried = False
            self._final_reason = None  # a flush or stop that came meanwhile has nothing left to do
            self._endpoint_time = None
            self._hypothesis = None
            self._policy.reset()
            remaining = []
            self._trim_silence()
        messages.extend(self._update_partial(remaining))
        return messages

    def _observe_language(self, request: TickRequest, hypothesis: Hypothesis, words: list[Word]) -> tuple[list[ServerMessage], bool]:
        """Gives the decider a decode's language-ID; a final decode that must commit (stop,
        flush, `language.max_hold`) decides on what there is. Returns the `language` message of
        a new decision or switch, and whether the decode, in another language, is done again."""
        decider, before, now = self._language, self.language, request.window_end
        # Before the decision, a decode with no words (noise) gives no evidence; after it, a decode in
        # the stream's language may hear nothing of an utterance in another, whose ID still counts.
        if request.detect_language and hypothesis.language_probs is not None and (words or before is not None):
            onset = request.detect_from if request.detect_from is not None else request.window_start
            final = request.final and not self._ends_earlier_utterance(request.commit_until)
            decider.observe(onset, hypothesis.language_probs, request.voiced_total, now, final=final)
        elif request.detect_language and words and request.language is None:
            decider.report(hypothesis.language, hypothesis.language_probability, now)
        # Only a final decode of the held speech itself decides on what there is.
        heard = request.detect_from is None or abs(request.detect_from - (decider.detect_from or 0.0)) < 1e-6
        of_held = request.final and not self._ends_earlier_utterance(request.commit_until) and heard
        if decider.holding and of_held and (self.stopping or decider.hold_expired(now)):
            decider.force(now)
        decision = decider.decision
        messages: list[ServerMessage] = []
        if decision is not None and decision.language != before:
            if before is not None:
                messages.extend(self._switch_language(decision.since, words))
            self.language = decision.language
            messages.append(LanguageDetected(decision.language, decision.probability))
        # Words to commit, decoded in another language than the stream's, are decoded again in it.
        commits = not decider.holding or (request.final and self._ends_earlier_utterance(request.commit_until))
        again = bool(words) and commits and self.language is not None and hypothesis.language != self.language
        # A switch cut the buffer at the new language's utterance: it is decoded again, alone and in it.
        again = again or (before is not None and decision is not None and decision.language != before)
        if again:
            self._partial_words = []  # in the other language: not what the next decode must go on from
        return messages, again

    def _request_language(self) -> str | None:
        """The language a decode is in: the stream's; None (detected) while it is not decided, or
        while the window holds just an utterance whose own language is not known yet."""
        decider = self._language
        if not decider.holding or decider.language is None:
            return decider.language
        onset = decider.detect_from
        alone = onset is not None and self._buffer.start_time >= onset - 0.05
        return None if alone else self.language

    def _ends_earlier_utterance(self, until: float | None) -> bool:
        """Whether a final decode commits an utterance that ended before the latest one began
        (the worker was late): it commits those words only, so the latest one's language check
        does not wait for it, nor it for that check."""
        return until is not None and until <= self._onset + ENDPOINT_MARGIN

    def _switch_language(self, onset: float, words: list[Word]) -> list[ServerMessage]:
        """The utterance from `onset` on is in another language: the words before it (a late
        worker heard them in the same window) are committed in the old one; the next decode
        hears that utterance alone, without the old language's words as context or prompt (the
        decoder would go on in it)."""
        stables = self._commit([w for w in words if w.start < onset], self.language or "")
        self._close_utterance()
        if onset > self._buffer.start_time:
            self._buffer.trim_to(int(onset * SAMPLE_RATE))
        self._prompt = self._prompt_open = ""
        self._draft = (-1.0, "", ())
        self._policy.reset()
        self._hypothesis = None
        self._partial_words = []
        return list(stables)

    def _hold(self, words: list[Word], *, final: bool) -> list[ServerMessage]:
        """The language is not decided yet: nothing is committed; the words stay the partial, and
        their audio stays in the buffer (speech stays pending), so later decodes hear them again
        and commit them in the decided language."""
        if final:
            self._endpoint_time = None
            self._hypothesis = None
            self._policy.reset()
        return self._update_partial(words)

    def _end_hold(self) -> None:
        """Text held past `language.max_hold` in a pause gets the final decode that decides."""
        if self._vad.in_speech or not self._speech_pending or self._in_flight is not None or self._final_reason is not None:
            return
        if self._vad.pause_seconds >= self._config.stream.endpoint_silence and self._language.holding and self._language.hold_expired(self._buffer.end_time):
            self._want_final_decode()

    def _next_utterance_began(self, until: float | None) -> bool:
        """Whether the speaker began again after the endpoint that commits the words before `until`."""
        return until is not None and self._vad.in_speech and self._onset >= until

    def _begin_next_utterance(self, heard: list[Word]) -> None:
        """The utterance is committed, and the next one began while its final decode ran. As
        after a pause, its last words stay as the next one's context (`_keep_context`); where
        they cannot, the buffer is cut in the pause, so the next decodes hear the new utterance
        alone: with the old one's tail heard again (not forced), the decoder at times left the
        committed words out and laid the new first word over their audio, and it was lost
        ("…with ugly ones. And it was…"). `heard`, the new utterance's start as this decode
        heard it, stays the partial and the agreement's last hypothesis, and the next decode
        must begin as it does."""
        if not self._language.holding and self._keep_context():  # held: its language-ID hears it alone
            cut = self._buffer.start_time
        else:
            cut = self._cut_in_pause(self._endpoint_time if self._endpoint_time is not None else self._onset)
        self._hypothesis = None
        self._tail_retried = False
        self._head = word_key(heard[0]) if heard and heard[0].start >= cut else None

    def _spoke_after_pause(self, words_end: float, heard_until: float) -> bool:
        """Whether the speaker began again after `words_end`, and said more than `UNHEARD_TAIL` s
        of it before `heard_until`."""
        return self._onset > words_end and min(self._vad.last_voiced_end, heard_until) - self._onset > UNHEARD_TAIL

    def _cut_in_pause(self, speech_end: float) -> float:
        """Closes the utterance and cuts the buffer in the pause between `speech_end` and the
        latest speech start (no further back than a pre-roll before it); returns the cut."""
        self._close_utterance()
        cut = max(self._onset - self._config.vad.preroll, (speech_end + self._onset) / 2)
        self._buffer.trim_to(int(cut * SAMPLE_RATE))
        return cut

    def _keep_context(self) -> bool:
        """Between utterances: whether the buffer keeps the last `stream.overlap` s of committed
        words as the next utterance's context (while the pause after them is under
        `CONTEXT_PAUSE`); the words before them become prompt. When it does not, the caller
        closes the utterance (`_close_utterance`). Either way the next one has its prompt again."""
        self._unprompted = False
        committed = self._committed_in_buffer
        if not committed or self._config.stream.overlap <= 0 or self._buffer.end_time - committed[-1].end > CONTEXT_PAUSE:
            return False
        self._trim_committed(everything=True, overlap=self._config.stream.overlap)
        return True

    def _close_utterance(self) -> None:
        """The committed words of the buffer's utterance become prompt; the next one starts afresh."""
        self._extend_prompt(self._committed_in_buffer, utterance_ended=True)
        self._committed_in_buffer = []
        self._unprompted = False

    def _overlaps_committed(self, words: list[Word]) -> bool:
        """Whether new words start well inside the committed words still in the buffer."""
        committed = self._committed_in_buffer
        return bool(committed and words) and words[0].start < committed[-1].end - MERGED_OVERLAP

    def _contradicts_partial(self, words: list[Word]) -> bool:
        """Whether a decode's new words do not start with the first word of the last partial."""
        partial = self._partial_words
        return bool(partial) and (not words or word_key(words[0]) != word_key(partial[0]))

    def _decode_again_after_committed(self) -> None:
        """The final decode is done again on a window that starts `RETRY_OVERLAP` s before the end
        of the committed words, so no cut clips what follows: a fresh start for the decoder, with
        some audio before it to hear well (a 2 s window with 0.2 s gave "the prophet of the
        prophet…"). Less than `stream.overlap`, so it is never the window that just failed (it
        was, with 1 s: "…her parent forever with the race and descent of mortals and…" lost its
        middle twice over).
        Once per utterance (callers check `_tail_retried`): a tail that holds no words, a cough,
        must not loop."""
        self._tail_retried = True
        self._hypothesis = None  # not to be committed at the endpoint meanwhile
        self._want_final_decode()
        self._trim_committed(everything=True, overlap=min(RETRY_OVERLAP, self._config.stream.overlap / 2))

    def _want_final_decode(self) -> None:
        """The next tick is a final decode (for the reason already pending, if one is)."""
        self._final_reason = self._final_reason or ("stop" if self.stopping else "endpoint")

    def _trim_committed(self, *, everything: bool, overlap: float) -> None:
        """Cuts the buffer after committed words: at the end of the last committed Whisper segment,
        or at any word at a final commit or when the buffer grew past `stream.trim_after`.

        The last `overlap` s of committed words stay: a cut where the alignment
        placed a word boundary may clip the next word (heard as another word, or twice), and the
        audio and text before a word help the model hear it. The next decode begins with those
        words forced as its context (heard again, where a decode is done again: see
        `make_tick_request`); `_new_words` drops them from its hypothesis.
        """
        in_buffer = self._committed_in_buffer
        # Cuts are allowed after word `i` only when the words after it span the overlap.
        kept = [in_buffer[-1].end - w.start for w in in_buffer[1:]] + [0.0]
        allowed = [i for i, seconds in enumerate(kept) if seconds >= overlap]
        if not allowed:
            return
        if everything or self._buffer.duration >= self._config.stream.trim_after:
            cut_after = allowed[-1]
        else:
            closing = [i for i in allowed if in_buffer[i].ends_segment]
            if not closing:
                return
            cut_after = closing[-1]
        last = in_buffer[cut_after]
        nxt = in_buffer[cut_after + 1] if cut_after + 1 < len(in_buffer) else None
        # Between two words (their gap's middle) rather than on an edge the alignment may misplace.
        # Never past the next word's start, nor far past the word's own start: alignment
        # sometimes stretches a word's end over speech that follows.
        end = min(last.end, last.start + MAX_WORD_SECONDS)
        cut = end if nxt is None else nxt.start if nxt.start <= end else (end + nxt.start) / 2
        self._buffer.trim_to(round(cut * SAMPLE_RATE))
        self._extend_prompt(in_buffer[: cut_after + 1])
        self._committed_in_buffer = in_buffer[cut_after + 1 :]

    def _extend_prompt(self, words: list[Word], *, utterance_ended: bool = False) -> None:
        """The prompt is the committed text before the buffer, the decoder's previous context, up
        to the end of the last Whisper segment (or utterance) in it. A prompt that stops inside a
        sentence is continued rather than followed: after "…your country can do for", the audio
        "you, ask what you can do for your country" decodes as "your country".
        """
        text = self._prompt
        for word in words:
            self._prompt_open += word.text
            if word.ends_segment or word.text.rstrip().endswith((".", "?", "!")):
                text, self._prompt_open = text + self._prompt_open, ""
        if utterance_ended:
            text, self._prompt_open = text + self._prompt_open, ""
        limit = self._config.stream.prompt_chars
        if len(text) > limit:
            # Cut at a word boundary, so the prompt never starts with half a word.
            text = text[len(text) - limit :]
            space = text.find(" ")
            text = text[space:] if space >= 0 else ""
        self._prompt = text

    def _guarded_words(self, request: TickRequest, hypothesis: Hypothesis) -> tuple[list[Word], float]:
        """The hypothesis' words in stream time, minus what the hallucination guards reject; and
        how far the decode heard: to its last word, or through the window when a guard rejected
        words (decoding that audio again would only give the same)."""
        stream = self._config.stream
        if hypothesis.no_speech_prob > stream.no_speech_threshold and hypothesis.words:
            # The model doubts there is speech; noise the VAD let through reads as a word or two
            # of low probability ("Yeah."), so a doubtful text is not trusted either; nor is any
            # doubted text from an utterance's tail decoded again (noise after speech: "Thank you.").
            doubtful = _mean_probability(hypothesis.words) < stream.doubtful_word_probability
            if self._tail_retried or hypothesis.avg_logprob < stream.logprob_threshold or doubtful:
                return [], request.window_end
        words = [_clamped(w.shifted(request.window_start)) for w in hypothesis.words]
        words = _without_unsure_unheard_runs(words, stream.doubtful_word_probability)
        if words and all(word_key(w) in FILLERS for w in words) and _mean_probability(words) < stream.doubtful_word_probability:
            return [], request.window_end  # "Mm-hmm." heard in film ambience: unsure fillers alone are noise
        loop_at = find_repetition_loop(words)
        if hypothesis.compression_ratio > stream.compression_ratio_threshold and loop_at is None:
            loop_at = 0  # repetitive beyond what we can locate: trust none of it
        if loop_at is not None:
            # A loop is never committed, and the prompt that may have led into it is dropped.
            self._prompt = self._prompt_open = ""
            self._policy.reset()
            return words[:loop_at], request.window_end
        unheard = _unheard_run(words)
        if unheard < len(words):
            return words[:unheard], request.window_end
        return words, words[-1].end if words else request.window_start

    def _new_words(self, words: list[Word]) -> list[Word]:
        """Drops the words of a hypothesis that re-hear committed audio still in the buffer:
        matched on text (`skip_committed`); by time only when the text does not match."""
        committed = self._committed_in_buffer
        skip = skip_committed(committed, words)
        if skip is not None:
            return words[skip:]
        # Misheard beyond matching: keep the words centred after the last committed one ends.
        last = committed[-1].end
        return [w for w in words if (w.start + w.end) / 2 > last]

    def _commit(self, words: list[Word], language: str) -> list[Stable]:
        """Stable messages for `words`, one per Whisper segment they span."""
        stables: list[Stable] = []
        group: list[Word] = []
        for i, word in enumerate(words):
            group.append(word)
            if word.ends_segment or i == len(words) - 1:
                stables.append(
                    Stable(
                        id=self._next_stable_id,
                        start=group[0].start,
                        end=group[-1].end,
                        text="".join(w.text for w in group),
                        words=tuple(WordTiming(w.text, w.start, w.end, w.probability) for w in group),
                        language=self.language or language,
                    )
                )
                self._next_stable_id += 1
                group = []
        self._committed_in_buffer = self._committed_in_buffer + list(words)
        return stables

    def _update_partial(self, words: list[Word]) -> list[ServerMessage]:
        text = "".join(w.text for w in words)
        previous, self._partial_words = self._partial_words, words
        if text == "".join(w.text for w in previous):
            return []
        if not words:
            return [Partial("", self._buffer.start_time, self._buffer.start_time)]
        timings = tuple(WordTiming(w.text, w.start, w.end, w.probability) for w in words)
        return [Partial(text, words[0].start, words[-1].end, timings)]

    def _maybe_end(self) -> list[ServerMessage]:
        if self.stopping and not self.ended and self._in_flight is None and self._final_reason is None and not self._speech_pending:
            self.ended = True
            return [End(self._next_stable_id - 1, self._buffer.end_time)] if self._announce_end else []
        return []


def _candidates(start: Start, config: Config, model: ModelInfo) -> tuple[str, ...]:
    """The languages detection chooses among: the client's, else the config's (empty: any)."""
    try:
        codes = tuple(normalize_language(code) or "" for code in start.languages)
    except ValueError as exc:
        raise ProtocolError(CloseCode.UNSUPPORTED, f"languages: {exc}") from exc
    if not model.multilingual:
        if any(code != "en" for code in codes):
            raise ProtocolError(CloseCode.UNSUPPORTED, f"model {model.name} is English-only; languages {list(codes)} are not available")
        return ()
    return codes or config.language.language_list


def _mean_probability(words: Sequence[Word]) -> float:
    return sum(w.probability for w in words) / len(words)


def _unheard_runs(words: list[Word]) -> list[tuple[int, int]]:
    """The (start, stop) index ranges of `UNHEARD_RUN` or more consecutive words that alignment
    found no audio for (each under `UNHEARD_WORD` s): text the decoder made up."""
    runs: list[tuple[int, int]] = []
    start = 0
    for i, word in enumerate([*words, None]):
        if word is not None and word.end - word.start < UNHEARD_WORD:
            continue
        if i - start >= UNHEARD_RUN:
            runs.append((start, i))
        start = i + 1
    return runs


def _unheard_run(words: list[Word]) -> int:
    """Where a closing unheard run (`_unheard_runs`) begins, however sure the decoder was of it:
    text made up after the speech it heard, as when it repeats the sentence before ("…10
    meters. Go forward 10 meters." with the last four at one instant). len(words) when none."""
    runs = _unheard_runs(words)
    return runs[-1][0] if runs and runs[-1][1] == len(words) else len(words)


def _without_unsure_unheard_runs(words: list[Word], doubtful: float) -> list[Word]:
    """`words` less every unheard run (`_unheard_runs`) the decoder was unsure of (mean
    probability under `doubtful`): text it made up in the middle of what it heard. Seen after a
    cut inside a phrase: "…or cost incurred in casting…" decoded as "fact, it is" and "In case you
    are not required in casting…", each made-up word 0 ms long and of probability 0.0-0.3."""
    dropped = {i for start, stop in _unheard_runs(words) if _mean_probability(words[start:stop]) < doubtful for i in range(start, stop)}
    return [w for i, w in enumerate(words) if i not in dropped]


def _clamped(word: Word) -> Word:
    """Word times as the protocol promises them: start <= end."""
    if word.end >= word.start:
        return word
    return Word(word.text, word.start, word.start, word.probability, word.ends_segment)
