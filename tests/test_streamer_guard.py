"""streamer/stream/guard.py: the hallucination guard's verdict on one hypothesis, from plain words.

Defaults of `StreamConfig` throughout: no_speech_threshold 0.6, logprob_threshold -1.0,
compression_ratio_threshold 2.4, doubtful_word_probability 0.5, unheard_word 0.02 s, unheard_run 2.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from streamer.config import StreamConfig
from streamer.stream.guard import guard, mean_probability
from streamer.stream.tick import Hypothesis, Word

STREAM = StreamConfig()
WINDOW_START, WINDOW_END = 10.0, 25.0  # stream seconds of the decoded window


def word(text: str, start: float, end: float, probability: float = 0.9, ends_segment: bool = False) -> Word:
    return Word(text, start, end, probability, ends_segment)


def sentence(texts: list[str], begin: float = 0.5, step: float = 0.4, probability: float = 0.9) -> list[Word]:
    """Heard words, one every `step` s from `begin` (window time), each 0.3 s long."""
    return [word(t, begin + i * step, begin + i * step + 0.3, probability) for i, t in enumerate(texts)]


def hypothesis(words: list[Word], *, no_speech: float = 0.1, avg_logprob: float = -0.3, compression: float = 1.5) -> Hypothesis:
    return Hypothesis(tuple(words), "en", 1.0, avg_logprob, no_speech, compression)


def verdict_of(words: list[Word], *, tail_retried: bool = False, **hypothesis_figures: float) -> tuple[list[tuple[str, float, float]], float, bool]:
    """The verdict as (text, start, end) of each word kept, heard_until and loop."""
    verdict = guard(hypothesis(words, **hypothesis_figures), WINDOW_START, WINDOW_END, STREAM, tail_retried=tail_retried)
    return [(w.text, round(w.start, 6), round(w.end, 6)) for w in verdict.words], round(verdict.heard_until, 6), verdict.loop


def test_heard_words_are_kept_in_stream_time_and_heard_until_their_last_word() -> None:
    words, heard_until, loop = verdict_of(sentence([" Ask", " not", " what."]))
    assert words == [(" Ask", 10.5, 10.8), (" not", 10.9, 11.2), (" what.", 11.3, 11.6)]
    assert heard_until == 11.6 and not loop


def test_no_words_heard_nothing_past_the_window_start() -> None:
    assert verdict_of([]) == ([], WINDOW_START, False)
    # Doubted speech with no words is not "rejected": there was nothing to reject.
    assert verdict_of([], no_speech=0.99, avg_logprob=-5.0) == ([], WINDOW_START, False)


def test_a_word_ending_before_it_starts_is_clamped_to_its_start() -> None:
    words, _, _ = verdict_of([word(" so", 1.0, 1.3), word(" backwards", 2.0, 1.8)])
    assert words[-1] == (" backwards", 12.0, 12.0)


@pytest.mark.parametrize(
    ("figures", "tail_retried"),
    [
        ({"avg_logprob": -1.2}, False),  # the decoder was unsure of its text
        ({"avg_logprob": -0.3}, True),  # an utterance's tail decoded again: noise after speech
    ],
)
def test_doubted_speech_that_is_unsure_or_a_retried_tail_is_rejected_whole(figures: dict[str, float], tail_retried: bool) -> None:
    # Rejected: no words, and the decode heard the whole window (decoding it again gives the same).
    assert verdict_of(sentence([" Thank", " you."]), no_speech=0.7, tail_retried=tail_retried, **figures) == ([], WINDOW_END, False)


def test_doubted_speech_of_doubtful_words_is_rejected_even_when_the_decoder_was_sure() -> None:
    assert verdict_of(sentence([" Yeah."], probability=0.3), no_speech=0.7, avg_logprob=-0.2) == ([], WINDOW_END, False)


def test_doubted_speech_is_kept_when_the_decode_and_its_words_are_sure() -> None:
    words, heard_until, _ = verdict_of(sentence([" Go", " forward."]), no_speech=0.7, avg_logprob=-0.2)
    assert [w[0] for w in words] == [" Go", " forward."] and heard_until == 11.2


def test_no_speech_exactly_at_the_threshold_is_not_doubted() -> None:
    """The model doubts speech only above `no_speech_threshold`."""
    words, _, _ = verdict_of(sentence([" Go."]), no_speech=STREAM.no_speech_threshold, avg_logprob=-1.5)
    assert [w[0] for w in words] == [" Go."]
    assert verdict_of(sentence([" Go."]), no_speech=STREAM.no_speech_threshold + 0.01, avg_logprob=-1.5)[0] == []


def test_unsure_fillers_alone_are_noise_but_sure_ones_and_fillers_among_words_are_kept() -> None:
    assert verdict_of(sentence([" Mm-hmm."], probability=0.3)) == ([], WINDOW_END, False)
    assert verdict_of(sentence([" Um,", " uh."], probability=0.3)) == ([], WINDOW_END, False)
    assert [w[0] for w in verdict_of(sentence([" Mm-hmm."], probability=0.8))[0]] == [" Mm-hmm."]
    assert [w[0] for w in verdict_of(sentence([" Um,", " yes."], probability=0.3))[0]] == [" Um,", " yes."]


def test_a_repetition_loop_keeps_its_first_occurrence_and_is_flagged() -> None:
    loop = sentence([" I", " will", " go", " I", " will", " go", " I", " will", " go"])
    words, heard_until, flagged = verdict_of(loop)
    assert [w[0] for w in words] == [" I", " will", " go"]
    assert heard_until == WINDOW_END and flagged  # the prompt that led into it is to be dropped
    # Twice is speech, not a loop.
    assert verdict_of(loop[:6])[2] is False


def test_a_high_compression_ratio_without_a_loop_to_locate_trusts_none_of_it() -> None:
    words = sentence([" all", " of", " this", " text"])
    assert verdict_of(words, compression=STREAM.compression_ratio_threshold + 0.1) == ([], WINDOW_END, True)
    assert verdict_of(words, compression=STREAM.compression_ratio_threshold)[0] != []  # at the threshold: kept


def test_a_closing_run_of_unheard_words_is_cut_however_sure_the_decoder_was() -> None:
    """ "…10 meters. Go forward 10 meters." with the last words at one instant: made up."""
    heard = sentence([" Go", " forward", " 10", " meters."])
    made_up = [word(" Go", 2.0, 2.0, 0.95), word(" forward", 2.0, 2.01, 0.95)]
    words, heard_until, loop = verdict_of(heard + made_up)
    assert [w[0] for w in words] == [" Go", " forward", " 10", " meters."]
    assert heard_until == WINDOW_END and not loop  # the decode heard the whole window


def test_one_unheard_word_is_not_a_run() -> None:
    words, heard_until, _ = verdict_of(sentence([" Go", " forward"]) + [word(" now.", 1.5, 1.5)])
    assert [w[0] for w in words] == [" Go", " forward", " now."]
    assert heard_until == 11.5


def test_an_unsure_unheard_run_inside_the_speech_is_dropped_and_a_sure_one_kept() -> None:
    before = sentence([" or", " cost"], begin=0.5)
    inside = [word(" fact,", 1.5, 1.5, 0.2), word(" it", 1.5, 1.5, 0.1), word(" is", 1.5, 1.51, 0.3)]
    after = sentence([" incurred", " in", " casting."], begin=2.0)
    words, heard_until, _ = verdict_of(before + inside + after)
    assert [w[0] for w in words] == [" or", " cost", " incurred", " in", " casting."]
    assert heard_until == pytest.approx(12.0 + 0.8 + 0.3)  # the last heard word's end, in stream time
    sure = [replace(w, probability=0.9) for w in inside]
    assert [w[0] for w in verdict_of(before + sure + after)[0]] == [" or", " cost", " fact,", " it", " is", " incurred", " in", " casting."]


def test_mean_probability() -> None:
    assert mean_probability([word(" a", 0, 1, 0.2), word(" b", 1, 2, 0.6), word(" c", 2, 3, 1.0)]) == pytest.approx(0.6)
