"""`ResultRules` driven directly: hand-made requests and hypotheses, no audio and no model.

Each test builds the parts a session shares with its result rules (endpointer, stream buffer,
commit policy, language) from plain values, sets the state a rule reads, applies results and
checks what the rules sent and what they left in the parts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from model.constants import SAMPLE_RATE
from streamer.config import Config
from streamer.stream.commit import LocalAgreement
from streamer.stream.context import StreamBuffer
from streamer.stream.endpointer import Endpointer, FinalReason
from streamer.stream.language import StreamLanguage
from streamer.stream.results import ResultRules
from streamer.stream.tick import Hypothesis, TickRequest, Word
from wire import Partial, ServerMessage, Stable, Start


@dataclass
class Parts:
    rules: ResultRules
    endpointer: Endpointer
    buffer: StreamBuffer
    lang: StreamLanguage


def parts(*, language: str = "en", multilingual: bool = False, seconds: float = 5.0) -> Parts:
    """Result rules on `seconds` of buffered audio with speech pending; agreement of two decodes, no margin or gap."""
    config = Config()
    endpointer = Endpointer(config)
    endpointer.speech_pending = True
    buffer = StreamBuffer(config)
    buffer.audio.append(np.zeros(int(seconds * SAMPLE_RATE), np.float32))
    lang = StreamLanguage(Start(language=language), config, "base" if multilingual else "tiny.en", multilingual)
    rules = ResultRules(config, endpointer, buffer, LocalAgreement(2), lang)
    return Parts(rules, endpointer, buffer, lang)


def words(*spoken: tuple[str, float, float]) -> tuple[Word, ...]:
    return tuple(Word(text, start, end, 0.9) for text, start, end in spoken)


def request(p: Parts, serial: int, window_end: float, *, final: bool = False, prompt: str = "", probe: bool = False, start: float = 0.0) -> TickRequest:
    audio = np.zeros(int((window_end - start) * SAMPLE_RATE), np.float32)
    return TickRequest(
        "s", serial, audio, start, prompt, "en", "transcribe", final=final, commit_until=None, speech_epoch=p.endpointer.epoch, probe=probe
    )


def hypothesis(heard: tuple[Word, ...], tokens: tuple[int, ...] = (1, 2, 3)) -> Hypothesis:
    return Hypothesis(heard, "en", 1.0, avg_logprob=-0.2, no_speech_prob=0.01, compression_ratio=1.2, tokens=tokens)


def stable_texts(messages: list[ServerMessage]) -> list[tuple[int, str]]:
    return [(m.id, m.text) for m in messages if isinstance(m, Stable)]


def partial_texts(messages: list[ServerMessage]) -> list[str]:
    return [m.text for m in messages if isinstance(m, Partial)]


THE_CAT_SAT = words((" the", 0.2, 0.6), (" cat", 0.6, 1.0), (" sat", 1.0, 1.4))
THE_CAT_SITS = words((" the", 0.2, 0.6), (" cat", 0.6, 1.0), (" sits", 1.0, 1.5), (" here", 1.5, 1.9))


def test_two_decodes_commit_what_they_agree_on_and_show_the_rest() -> None:
    p = parts()
    first = p.rules.apply(request(p, 1, 2.0), hypothesis(THE_CAT_SAT))
    assert stable_texts(first) == [] and partial_texts(first) == [" the cat sat"]
    second = p.rules.apply(request(p, 2, 3.0), hypothesis(THE_CAT_SITS))
    assert stable_texts(second) == [(0, " the cat")]
    assert partial_texts(second) == [" sits here"]
    assert p.rules.next_stable_id == 1
    assert [w.text for w in p.buffer.committed] == [" the", " cat"]
    assert [w.text for w in p.rules.partial_words] == [" sits", " here"]


def test_a_final_decode_commits_everything_and_ends_the_utterance() -> None:
    p = parts()
    p.rules.apply(request(p, 1, 2.0), hypothesis(THE_CAT_SAT))
    messages = p.rules.apply(request(p, 2, 2.0, final=True), hypothesis(THE_CAT_SAT))
    assert stable_texts(messages) == [(0, " the cat sat")]
    assert not p.endpointer.speech_pending  # the utterance is done
    assert p.endpointer.final_reason is None


def test_a_continued_stream_numbers_its_stables_after_the_ones_there() -> None:
    p = parts()
    p.rules.continue_after(7)
    messages = p.rules.apply(request(p, 1, 2.0, final=True), hypothesis(THE_CAT_SAT))
    assert stable_texts(messages) == [(7, " the cat sat")]
    assert p.rules.next_stable_id == 8


def test_the_next_decode_of_the_same_window_start_and_prompt_gets_the_last_tokens_as_draft() -> None:
    p = parts()
    assert p.rules.draft(0.0, "") == ()
    p.rules.apply(request(p, 1, 2.0, prompt="before"), hypothesis(THE_CAT_SAT, tokens=(5, 6, 7)))
    assert p.rules.draft(0.0, "before") == (5, 6, 7)
    assert p.rules.draft(0.0, "other") == ()
    assert p.rules.draft(0.5, "before") == ()


def test_a_probe_shows_its_words_after_the_pending_ones_and_commits_nothing() -> None:
    p = parts()
    p.rules.apply(request(p, 1, 2.0), hypothesis(words((" hello", 0.2, 0.6), (" there", 2.2, 2.6))))
    probe = request(p, 2, 3.0, start=2.0, probe=True)
    messages = p.rules.apply(probe, hypothesis(words((" new", 0.1, 0.5), (" words", 0.5, 0.9)), tokens=(9,)))
    # " there" ends after the probe's window start: the probe heard it again, as " new words".
    assert partial_texts(messages) == [" hello new words"]
    assert stable_texts(messages) == [] and p.rules.next_stable_id == 0
    assert p.rules.draft(2.0, "") == ()  # a probe is no draft for a whole decode


def test_stable_times_never_go_back() -> None:
    p = parts()
    p.rules.apply(request(p, 1, 2.0), hypothesis(words((" one", 0.2, 1.0), (" two", 1.0, 1.4))))
    first = p.rules.apply(request(p, 2, 3.0), hypothesis(words((" one", 0.2, 1.0), (" too", 1.0, 1.4))))
    assert stable_texts(first) == [(0, " one")]
    # The next decode's alignment puts " two" back into " one" (from 0.9 s).
    p.rules.apply(request(p, 3, 3.5), hypothesis(words((" one", 0.2, 0.9), (" two", 0.9, 1.4), (" three", 1.5, 1.9))))
    second = p.rules.apply(request(p, 4, 4.0), hypothesis(words((" one", 0.2, 0.9), (" two", 0.9, 1.4), (" three", 1.5, 1.9))))
    stable = [m for m in second if isinstance(m, Stable)]
    assert [m.text for m in stable] == [" two three"]
    assert stable[0].start == 1.0  # moved to the end of " one"


def test_a_final_decode_that_contradicts_the_partial_is_done_again_and_stands_if_that_hears_nothing() -> None:
    p = parts()
    p.rules.apply(request(p, 1, 2.0), hypothesis(words((" hello", 0.2, 0.6), (" world", 0.6, 1.0))))
    p.endpointer.stop()
    again = p.rules.apply(request(p, 2, 2.0, final=True), hypothesis(words((" yellow", 0.2, 0.6), (" world", 0.6, 1.0))))
    assert again == []
    assert p.rules.tail_retried
    assert p.endpointer.final_reason is FinalReason.STOP  # stopping: the decode done again is for the stop
    messages = p.rules.apply(request(p, 3, 2.0, final=True), hypothesis(()))
    assert stable_texts(messages) == [(0, " yellow world")]


def test_a_new_utterance_may_be_decoded_again_once_more() -> None:
    p = parts()
    p.rules.apply(request(p, 1, 2.0), hypothesis(words((" hello", 0.2, 0.6),)))
    p.rules.apply(request(p, 2, 2.0, final=True), hypothesis(words((" yellow", 0.2, 0.6),)))
    assert p.rules.tail_retried
    assert p.endpointer.final_reason is FinalReason.ENDPOINT  # not stopping
    p.rules.utterance_began()
    assert not p.rules.tail_retried


def test_at_an_endpoint_a_decode_that_heard_past_it_is_committed_without_another() -> None:
    p = parts()
    assert p.rules.commit_at_endpoint() == []  # no hypothesis yet
    p.rules.apply(request(p, 1, 3.0), hypothesis(THE_CAT_SAT))
    assert p.rules.commit_at_endpoint() == []  # no endpoint yet
    p.endpointer.final_reason, p.endpointer.endpoint_time = FinalReason.ENDPOINT, 1.5
    messages = p.rules.commit_at_endpoint()
    assert stable_texts(messages) == [(0, " the cat sat")]
    assert p.endpointer.final_reason is None and not p.endpointer.speech_pending


def test_an_endpoint_does_not_commit_a_decode_that_stopped_short_of_it() -> None:
    p = parts()
    p.rules.apply(request(p, 1, 1.5), hypothesis(THE_CAT_SAT))
    p.endpointer.final_reason, p.endpointer.endpoint_time = FinalReason.ENDPOINT, 1.5
    assert p.rules.commit_at_endpoint() == []  # its window ended before the endpoint's margin
    assert p.endpointer.final_reason is FinalReason.ENDPOINT


def test_text_is_held_until_the_language_is_decided() -> None:
    p = parts(language="auto", multilingual=True)
    assert p.lang.holding
    p.endpointer.endpoint_time = 1.5
    messages = p.rules.apply(request(p, 1, 2.0, final=True), hypothesis(THE_CAT_SAT))
    assert stable_texts(messages) == [] and p.rules.next_stable_id == 0
    assert partial_texts(messages) == [" the cat sat"]
    assert p.endpointer.endpoint_time is None  # that endpoint waits for the decision's final decode
    assert p.endpointer.speech_pending  # its audio stays to be heard again


def test_a_repetition_loop_drops_the_prompt_and_the_agreement_so_far() -> None:
    p = parts()
    p.buffer.prompt.text = " earlier text"
    p.rules.apply(request(p, 1, 2.0), hypothesis(words((" we", 0.2, 0.5), (" go", 0.5, 0.8), (" again", 0.8, 1.1))))
    loop = words((" we", 0.2, 0.5), (" go", 0.5, 0.8), *((" again", 0.8 + 0.3 * i, 1.1 + 0.3 * i) for i in range(6)))
    messages = p.rules.apply(request(p, 2, 3.0), hypothesis(loop))
    assert p.buffer.prompt.text == ""  # the prompt that may have led into the loop
    assert stable_texts(messages) == []  # without the reset, " we go again" agreed with the decode before
    assert partial_texts(messages) == []  # the words before the loop are the partial already
    assert [w.text for w in p.rules.partial_words] == [" we", " go", " again"]


def endpoint_commit(p: Parts, serial: int, heard: tuple[Word, ...], window_end: float) -> list[ServerMessage]:
    """A decode heard past the speaker's stop at `heard`'s last word's end, then the endpoint."""
    p.endpointer.speech_pending = True
    p.rules.apply(request(p, serial, window_end), hypothesis(heard))
    p.endpointer.final_reason, p.endpointer.endpoint_time = FinalReason.ENDPOINT, heard[-1].end
    return p.rules.commit_at_endpoint()


def test_the_full_stop_that_ends_an_utterance_waits_for_what_follows() -> None:
    p = parts(seconds=8.0)
    first = endpoint_commit(p, 1, words((" an", 0.2, 0.5), (" exact", 0.5, 0.9), (" imitation.", 0.9, 1.5)), 2.0)
    assert stable_texts(first) == [(0, " an exact imitation")]
    assert p.rules.stable.held_after == 1.5
    # The sentence goes on: the mark is dropped.
    goes_on = endpoint_commit(p, 2, words((" of", 2.2, 2.4), (" the", 2.4, 2.6), (" writing.", 2.6, 3.2)), 3.6)
    assert stable_texts(goes_on) == [(1, " of the writing")]
    # A new sentence: its text begins with the mark.
    new = endpoint_commit(p, 3, words((" The", 4.0, 4.2), (" next.", 4.2, 4.8)), 5.2)
    assert stable_texts(new) == [(2, ". The next")]
    assert p.buffer.prompt_text() == " an exact imitation of the writing. The next"  # the decoder's context gets the mark back
    # Nothing follows: the mark on its own, where the word ended.
    released = p.rules.stable.release()
    assert [(m.id, m.text, m.start, m.words) for m in released if isinstance(m, Stable)] == [(3, ".", 4.8, ())]
    assert p.rules.stable.release() == [] and p.rules.stable.held_after is None


def test_a_decode_that_heard_words_after_the_stop_keeps_its_mark() -> None:
    p = parts()
    p.rules.apply(request(p, 1, 2.0), hypothesis(THE_CAT_SAT))
    messages = p.rules.apply(request(p, 2, 2.0, final=True), hypothesis(words((" the", 0.2, 0.6), (" cat", 0.6, 1.0), (" sat.", 1.0, 1.4))))
    assert stable_texts(messages) == [(0, " the cat sat.")]  # a flush or stop: not an endpoint's commit
    assert p.rules.stable.held_after is None



def test_after_a_decoders_full_stop_the_next_stable_text_begins_a_sentence() -> None:
    p = parts(seconds=2.0)
    endpoint_commit(p, 1, words((" young", 0.2, 0.5), (" man.", 0.5, 0.9)), 1.4)
    context = tuple(p.buffer.committed)  # kept across the short pause, the held mark left out
    assert [w.text for w in context] == [" young", " man"]
    p.endpointer.speech_pending = True
    heard = (*words((" young", 0.2, 0.5), (" man.", 0.5, 0.9)), *words((" unless", 1.6, 2.0), (" to", 2.0, 2.2)))
    ask = TickRequest("s", 2, np.zeros(int(2.6 * SAMPLE_RATE), np.float32), 0.0, "", "en", "transcribe", final=True, commit_until=None, speech_epoch=p.endpointer.epoch, context=context)
    messages = p.rules.apply(ask, hypothesis(heard))
    assert stable_texts(messages) == [(1, ". Unless to")]
