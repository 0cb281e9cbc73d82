"""What a decode's result does to a stream: the guard's verdict, the retry rules, the language,
the commit policy's count, the messages, and the utterance's life cycle (done, next begun,
decoded again, held for the language, cut at a language switch).

`ResultRules` is a part `streamer.stream.session.Session` owns and calls with each result. It
works on the parts the session shares with it (endpointer, stream buffer, policy, language) and
owns the state only results change: the stable text as sent (`StableText`, its part: ids, times,
the held sentence mark), the latest hypothesis and partial, the utterance's retries, and the
last decode's tokens (the next request's draft).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from model.constants import SAMPLE_RATE
from wire import ServerMessage

from ..config import Config
from . import retry
from .commit import CommitPolicy, word_key
from .context import StreamBuffer
from .endpointer import Endpointer, FinalReason
from .guard import guard
from .language import StreamLanguage
from .language_decider import LanguageDecision
from .messages import partial
from .policy import commit_count
from .stable import StableText
from .tick import Hypothesis, TickRequest, Word

NO_DRAFT: tuple[float, str, tuple[int, ...]] = (-1.0, "", ())


@dataclass(frozen=True)
class Heard:
    """The uncommitted words of the latest decode, and how far into the stream it heard."""

    words: list[Word]
    window_end: float
    heard_until: float  # how far the decode heard (see `guard.Verdict`)
    epoch: int
    language: str


class ResultRules:
    def __init__(
        self, config: Config, endpointer: Endpointer, buffer: StreamBuffer, policy: CommitPolicy, lang: StreamLanguage, *, hold_sentence_end: bool = True
    ) -> None:
        self._config = config
        self._endpointer = endpointer
        self._buffer = buffer
        self._policy = policy
        self._lang = lang
        self.stable = StableText(buffer, lang, hold_sentence_end=hold_sentence_end)  # ids, times, the held sentence mark
        self._hypothesis: Heard | None = None  # the latest decode's uncommitted words
        self._partial_words: list[Word] = []  # the uncommitted words last sent as `partial`
        self._tail_retried = False  # this utterance's final decode was done once more already
        self._retry_fallback: list[Word] = []  # a final decode's words, should the one done again hear none
        self._head: str | None = None  # word_key() the next decode should begin with (`_begin_next_utterance`)
        # The last decode's tokens, with the window start and prompt they came from: the next
        # decode of the same start says much the same, so the worker checks them as a draft.
        self._draft = NO_DRAFT

    @property
    def next_stable_id(self) -> int:
        return self.stable.next_id

    @property
    def partial_words(self) -> Sequence[Word]:
        """The uncommitted words last sent as `partial`."""
        return self._partial_words

    @property
    def tail_retried(self) -> bool:
        """This utterance's final decode was done once more already (its context is kept short)."""
        return self._tail_retried

    def draft(self, window_start: float, prompt: str) -> tuple[int, ...]:
        """The last decode's tokens, when the next decode has its window start and prompt."""
        draft_start, draft_prompt, tokens = self._draft
        return tokens if (draft_start, draft_prompt) == (window_start, prompt) else ()

    def continue_after(self, next_stable_id: int) -> None:
        """A stream continued from another replica: its ids go on after the segments there."""
        self.stable.next_id = next_stable_id

    def utterance_began(self) -> None:
        """Speech started: a new utterance may need its own second decode."""
        self._tail_retried = False

    def apply(self, request: TickRequest, hypothesis: Hypothesis) -> list[ServerMessage]:
        """The result of `request`, once it is known to be the one in flight."""
        if request.probe:
            return self._show_probe(request, hypothesis)
        self._draft = (request.window_start, request.prompt, hypothesis.tokens)
        return self._apply(request, hypothesis)

    def _apply(self, request: TickRequest, hypothesis: Hypothesis) -> list[ServerMessage]:
        stream, endpointer = self._config.stream, self._endpointer
        verdict = guard(hypothesis, request.window_start, request.window_end, stream, tail_retried=self._tail_retried)
        if verdict.loop:  # the prompt that may have led into the loop is dropped
            self._buffer.prompt.clear()
            self._policy.reset()
        words = self._buffer.new_words(verdict.words)
        self.stable.heard(request.context, verdict.words[: len(verdict.words) - len(words)])
        head, self._head = self._head, None
        if retry.missed_head(head, request.prompt, words):
            self._buffer.unprompted = True
            return self._decode_again(request)
        context_end = request.context[-1].end if request.context else 0.0
        onset = endpointer.onset_after(context_end)
        if request.context and not words and retry.spoke_after_pause(onset, endpointer.vad.last_voiced_end, context_end, request.window_end, stream.unheard_tail):
            self._buffer.cut_in_pause(context_end, onset)
            return self._decode_again(request)
        # The speaker stopped while this decode ran, and it heard the whole utterance: no need to
        # decode the same audio again before committing.
        at_endpoint = endpointer.at_endpoint and self._heard_past_endpoint(request.window_end, words)
        final, until = (True, endpointer.endpoint_until()) if at_endpoint else (request.final, request.commit_until)
        messages, again = self._observe_language(request, hypothesis, words, final=final, until=until)
        if again:
            return messages + self._decode_again(request)
        if at_endpoint:
            endpointer.final_reason = None
        self._hypothesis = Heard(words, request.window_end, verdict.heard_until, request.speech_epoch, hypothesis.language)
        return messages + self._decide(self._hypothesis, final=final, until=until, truncated=request.truncated)

    def _show_probe(self, request: TickRequest, hypothesis: Hypothesis) -> list[ServerMessage]:
        """A probe's words (`TickRequest.probe`) after the pending ones before it, as the partial;
        nothing is agreed on or committed, and the next decode hears the whole buffer again."""
        verdict = guard(hypothesis, request.window_start, request.window_end, self._config.stream, tail_retried=False)
        before = [w for w in self._partial_words if w.end <= request.window_start]
        return self._update_partial(before + verdict.words)

    def _decode_again(self, request: TickRequest) -> list[ServerMessage]:
        """`request`'s hypothesis is not to be agreed with: the next decode, final if it was,
        hears its audio again (the caller changed how)."""
        self._hypothesis = None
        if request.final:
            self._endpointer.want_final()
        return []

    def _heard_past_endpoint(self, window_end: float, words: list[Word]) -> bool:
        return retry.heard_past_endpoint(self._endpointer.endpoint_until(), window_end, words, self._config.stream.edge_margin)

    def commit_at_endpoint(self) -> list[ServerMessage]:
        """At an endpoint, commits the latest hypothesis at once when it heard past the end of
        speech, and is in the stream's language (one decoded while that was held, in another, is
        left to the final decode). The session calls it only while no decode is in flight."""
        heard = self._hypothesis
        if not self._endpointer.at_endpoint or heard is None or self._lang.holding:
            return []
        if self._lang.is_other(heard.language):
            return []
        if not self._heard_past_endpoint(heard.window_end, heard.words):
            return []
        self._endpointer.final_reason = None
        return self._decide(heard, final=True, until=self._endpointer.endpoint_until(), truncated=False)

    def _decide(self, heard: Heard, *, final: bool, until: float | None, truncated: bool) -> list[ServerMessage]:
        """Asks the commit policy about a decode's new words, commits, moves the utterance on
        (trims the buffer), and updates the partial. `final` commits every word, or with `until`
        every word that starts before that time."""
        if self._lang.holds(final=final, earlier=self._endpointer.ends_earlier_utterance(until)):
            return self._hold(heard.words, final=final)
        words = self._final_words(heard.words) if final else heard.words
        if words is None:
            return []
        if final and until is not None:
            until = self._endpointer.utterance_bound(words, until)
        count = commit_count(self._policy, words, final=final, until=until, truncated=truncated, window_end=heard.window_end)
        committed, remaining = words[:count], words[count:]
        # An endpoint's commit that ends the decode's words did not hear what follows the pause.
        at_pause = final and until is not None and not remaining and not self._endpointer.stopping
        messages: list[ServerMessage] = list(self.stable.commit(committed, heard.language, at_pause=at_pause)) if committed else []
        if self._hypothesis is not None:
            self._hypothesis = replace(self._hypothesis, words=remaining)
        if self._after_commit(heard, committed, remaining, final=final, until=until, truncated=truncated):
            remaining = []
        return messages + self._update_partial(remaining)

    def _final_words(self, words: list[Word]) -> list[Word] | None:
        """The words a final decode commits from, or None when it is to be done again: Whisper
        drops a phrase that repeats one just before it ("…for you, ask what you can do for your
        country" heard as "…for your country"): a final decode that runs new words into committed
        ones, or does not go on from the partial before it, would lose words if committed."""
        fallback, self._retry_fallback = self._retry_fallback, []
        if not words and fallback:
            # The decode done again heard nothing (tiny.en on the shorter window: "ask not what"
            # came out empty at shutdown): what the first one heard stands.
            return fallback
        if self._tail_retried:
            return words
        overlaps = retry.overlaps_committed(self._buffer.committed, words, self._config.stream.merged_overlap)
        if overlaps or retry.contradicts_partial(self._partial_words, words):
            if not overlaps:
                self._retry_fallback = words
            self._decode_again_after_committed()
            return None
        return words

    def _after_commit(self, heard: Heard, committed: list[Word], remaining: list[Word], *, final: bool, until: float | None, truncated: bool) -> bool:
        """Moves the utterance on after a commit; whether it is done (nothing left pending)."""
        endpointer, vad = self._endpointer, self._endpointer.vad
        done = final and not truncated and not remaining and (endpointer.stopping or not vad.in_speech)
        if done and (endpointer.epoch != heard.epoch or vad.last_voiced_end > heard.window_end):
            # Voice came after this decode's window while it ran (more words, the next utterance,
            # or a click): one more final decode hears it, rather than the stream ending without
            # it, or its buffer staying open with no final decode to come.
            endpointer.want_final()
            endpointer.endpoint_time = vad.last_voiced_end
            done = False
        next_began = final and not truncated and not done and endpointer.next_utterance_began(until)
        tail = retry.unheard_tail(endpointer.voice_end(), heard.heard_until, self._config.stream.unheard_tail)
        if (done or next_began) and not self._tail_retried and self._buffer.committed and tail:
            # Like offline transcription, decode again from the end of the words heard (the window
            # starting a few words before, so no cut clips the tail), before the utterance is done.
            self._decode_again_after_committed()
            done = False
        elif next_began and until is not None:
            self._begin_next_utterance(remaining, until)
        elif committed:
            self._buffer.trim_committed(everything=final, overlap=self._config.stream.overlap)
        if final and truncated:
            endpointer.final_reason = endpointer.final_reason or FinalReason.FULL
        if final and not done and not endpointer.at_endpoint:
            endpointer.endpoint_time = None  # that endpoint is committed; the next one sets its own
        if done:
            self._utterance_done()
        return done

    def _utterance_done(self) -> None:
        self._endpointer.utterance_done()
        self._tail_retried = False
        self._hypothesis = None
        self._policy.reset()
        self._buffer.trim_silence()

    def _begin_next_utterance(self, heard: list[Word], until: float) -> None:
        """The utterance is committed, and the next one began while its final decode ran. As
        after a pause, its last words stay as the next one's context (`keep_context`); where
        they cannot, the buffer is cut in the pause, so the next decodes hear the new utterance
        alone: with the old one's tail heard again (not forced), the decoder at times left the
        committed words out and laid the new first word over their audio, and it was lost
        ("…with ugly ones. And it was…"). `heard`, the new utterance's start as this decode
        heard it, stays the partial and the agreement's last hypothesis, and the next decode
        must begin as it does. `until`: the decode committed the words before it."""
        if not self._lang.holding and self._buffer.keep_context():  # held: its language-ID hears it alone
            cut = self._buffer.audio.start_time
        else:
            cut = self._buffer.cut_in_pause(*self._endpointer.pause_after(until))
        self._hypothesis = None
        self._tail_retried = False
        self._head = word_key(heard[0]) if heard and heard[0].start >= cut else None

    def _decode_again_after_committed(self) -> None:
        """The final decode is done again on a window that starts `stream.retry_overlap` s before
        the end of the committed words, so no cut clips what follows: a fresh start for the
        decoder, with some audio before it to hear well (a 2 s window with 0.2 s gave "the prophet
        of the prophet…"). Less than `stream.overlap`, so it is never the window that just failed
        (it was, with 1 s: "…her parent forever with the race and descent of mortals and…" lost
        its middle twice over).
        Once per utterance (callers check `_tail_retried`): a tail that holds no words, a cough,
        must not loop."""
        stream = self._config.stream
        self._tail_retried = True
        self._hypothesis = None  # not to be committed at the endpoint meanwhile
        self._endpointer.want_final()
        self._buffer.trim_committed(everything=True, overlap=min(stream.retry_overlap, stream.overlap / 2))

    def _observe_language(self, request: TickRequest, hypothesis: Hypothesis, words: list[Word], *, final: bool, until: float | None) -> tuple[list[ServerMessage], bool]:
        """Tells the stream's language what a decode heard. Returns the `language` message of a
        new decision or switch, and whether the decode, in another language, is done again:
        whether it would commit (`final`, `until`: as its words are to be decided) words in it."""
        earlier = self._endpointer.ends_earlier_utterance(request.commit_until)
        decision = self._lang.observe(request, hypothesis, words, earlier=earlier, stopping=self._endpointer.stopping)
        switched = decision is not None and self._lang.language is not None
        messages: list[ServerMessage] = self._switch_language(decision, words) if switched and decision is not None else []
        if decision is not None:
            messages.append(self._lang.adopt(decision))
        # A switch cut the buffer at the new language's utterance: it is decoded again, alone and in it.
        again = switched or self._lang.in_other_language(hypothesis, words, final=final, earlier=self._endpointer.ends_earlier_utterance(until))
        if again:
            self._partial_words = []  # in the other language: not what the next decode must go on from
        return messages, again

    def _switch_language(self, decision: LanguageDecision, words: list[Word]) -> list[ServerMessage]:
        """The utterance from `decision.since` on is in another language: the words before it (a
        late worker heard them in the same window) are committed in the old one; the next decode
        hears that utterance alone, without the old language's words as context or prompt (the
        decoder would go on in it). Stable text is never heard again: a switch whose utterances
        reach back into it (a late worker committed their first words) begins after it."""
        onset = max(decision.since, self.stable.until)
        # Only words that end before the new language's speech began (a pre-roll after `since`):
        # the alignment may put its first word's start back at the window's ("Deer" from 10.50,
        # the German from 11.04), and that word is not the old language's.
        began = decision.since + self._config.vad.preroll
        old = [w for w in words if w.start < onset and w.end <= began]
        messages: list[ServerMessage] = list(self.stable.commit(old, self._lang.language or ""))
        self._buffer.close_utterance()
        if onset > self._buffer.audio.start_time:
            self._buffer.audio.trim_to(int(onset * SAMPLE_RATE))
        self._buffer.prompt.clear()
        self._draft = NO_DRAFT
        self._policy.reset()
        self._hypothesis = None
        self._partial_words = []
        return messages

    def _hold(self, words: list[Word], *, final: bool) -> list[ServerMessage]:
        """The language is not decided yet: nothing is committed; the words stay the partial, and
        their audio stays in the buffer (speech stays pending), so later decodes hear them again
        and commit them in the decided language."""
        if final:
            self._endpointer.endpoint_time = None
            self._hypothesis = None
            self._policy.reset()
        return self._update_partial(words)

    def _update_partial(self, words: list[Word]) -> list[ServerMessage]:
        previous, self._partial_words = self._partial_words, words
        if "".join(w.text for w in words) == "".join(w.text for w in previous):
            return []
        return [partial(words, self._buffer.audio.start_time)]

