"""The hallucination guard: a pure verdict on what of one hypothesis was heard, not made up."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..config import StreamConfig
from .commit import find_repetition_loop, word_key
from .tick import Hypothesis, Word

FILLERS = frozenset({"mm", "hmm", "mhm", "mmhmm", "uh", "um", "ah", "oh", "huh", "uhhuh"})  # word_key()s


@dataclass(frozen=True)
class Verdict:
    words: list[Word]  # the hypothesis' words in stream time, minus what the guards reject
    heard_until: float  # to its last word, or through the window when a guard rejected words
    loop: bool = False  # a repetition loop: the prompt that may have led into it is to be dropped


def guard(hypothesis: Hypothesis, window_start: float, window_end: float, stream: StreamConfig, *, tail_retried: bool) -> Verdict:
    """What of `hypothesis` (a decode of the window at `window_start`..`window_end`) to trust.
    Where a guard rejects words, the decode heard the whole window: decoding that audio again
    would only give the same."""
    if hypothesis.no_speech_prob > stream.no_speech_threshold and hypothesis.words:
        # The model doubts there is speech; noise the VAD let through reads as a word or two
        # of low probability ("Yeah."), so a doubtful text is not trusted either; nor is any
        # doubted text from an utterance's tail decoded again (noise after speech: "Thank you.").
        doubtful = mean_probability(hypothesis.words) < stream.doubtful_word_probability
        if tail_retried or hypothesis.avg_logprob < stream.logprob_threshold or doubtful:
            return Verdict([], window_end)
    words = [_clamped(w.shifted(window_start)) for w in hypothesis.words]
    words = _without_unsure_unheard_runs(words, stream)
    if words and all(word_key(w) in FILLERS for w in words) and mean_probability(words) < stream.doubtful_word_probability:
        return Verdict([], window_end)  # "Mm-hmm." heard in film ambience: unsure fillers alone are noise
    loop_at = find_repetition_loop(words)
    if hypothesis.compression_ratio > stream.compression_ratio_threshold and loop_at is None:
        loop_at = 0  # repetitive beyond what we can locate: trust none of it
    if loop_at is not None:
        return Verdict(words[:loop_at], window_end, loop=True)  # a loop is never committed
    unheard = _unheard_run(words, stream)
    if unheard < len(words):
        return Verdict(words[:unheard], window_end)
    return Verdict(words, words[-1].end if words else window_start)


def mean_probability(words: Sequence[Word]) -> float:
    return sum(w.probability for w in words) / len(words)


def _unheard_runs(words: list[Word], stream: StreamConfig) -> list[tuple[int, int]]:
    """The (start, stop) index ranges of `unheard_run` or more consecutive words that alignment
    found no audio for (each under `unheard_word` s): text the decoder made up."""
    runs: list[tuple[int, int]] = []
    start = 0
    for i, word in enumerate([*words, None]):
        if word is not None and word.end - word.start < stream.unheard_word:
            continue
        if i - start >= stream.unheard_run:
            runs.append((start, i))
        start = i + 1
    return runs


def _unheard_run(words: list[Word], stream: StreamConfig) -> int:
    """Where a closing unheard run (`_unheard_runs`) begins, however sure the decoder was of it:
    text made up after the speech it heard, as when it repeats the sentence before ("…10
    meters. Go forward 10 meters." with the last four at one instant). len(words) when none."""
    runs = _unheard_runs(words, stream)
    return runs[-1][0] if runs and runs[-1][1] == len(words) else len(words)


def _without_unsure_unheard_runs(words: list[Word], stream: StreamConfig) -> list[Word]:
    """`words` less every unheard run (`_unheard_runs`) the decoder was unsure of (mean
    probability under `doubtful_word_probability`): text it made up in the middle of what it
    heard. Seen after a cut inside a phrase: "…or cost incurred in casting…" decoded as "fact, it
    is" and "In case you are not required in casting…", each made-up word 0 ms long and of
    probability 0.0-0.3."""
    doubtful = stream.doubtful_word_probability
    runs = _unheard_runs(words, stream)
    dropped = {i for start, stop in runs if mean_probability(words[start:stop]) < doubtful for i in range(start, stop)}
    return [w for i, w in enumerate(words) if i not in dropped]


def _clamped(word: Word) -> Word:
    """Word times as the protocol promises them: start <= end."""
    if word.end >= word.start:
        return word
    return Word(word.text, word.start, word.start, word.probability, word.ends_segment)
