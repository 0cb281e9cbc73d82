"""When hypothesis text becomes stable: the commit policy interface, LocalAgreement-n, AlignAtt, and loop guards.

A policy sees successive hypotheses of the uncommitted audio of one stream (words in stream
time, the committed prefix already removed) and says how many leading words to commit. Committed
words are never revisited, so stable text is never revised.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Protocol

from .tick import Word

_PUNCTUATION = re.compile(r"[^\w']+")
MAX_EXTRA_REHEARD = 2  # a decode may split a committed word or insert one, not re-hear a phrase more
UNHEARD_HEAD = 2  # committed words at a window's start that a decode may leave out


def word_key(word: Word) -> str:
    """How two hypotheses' words are compared: case and punctuation do not count."""
    return _PUNCTUATION.sub("", word.text.lower())


class CommitPolicy(Protocol):
    def decide(self, words: Sequence[Word], *, final: bool, window_end: float = math.inf) -> int:
        """How many leading `words` to commit now, of a decode of audio up to `window_end`
        (stream time); `final` asks for all of them."""
        ...

    def reset(self) -> None:
        """Forgets earlier hypotheses (after a loop, or when the buffer was cleared)."""
        ...


class LocalAgreement:
    """LocalAgreement-n (Macháček et al., whisper_streaming) at word level.

    The longest common prefix of the last `n` hypotheses is committed. With n=2, a word is
    stable once two decodes, the second one seeing more audio, agree on it.

    A word ending within `margin` s of the window's end may be cut off, or misheard for want of
    what follows, the same way twice: it is not agreed on until the audio after it is heard.

    The hypotheses that agree must have heard at least `gap` s of audio apart: two decodes a
    fraction of a second apart hear nearly the same and make the same mistake ("than" heard as
    "then" twice); with the worker fast enough for a decode every tick, a lone stream committed
    such words (its WER in `benchmarks.capacity` rose from ~2.7 to 4.7 %).
    """

    HISTORY = 8  # decodes kept to find the one `gap` before the newest

    def __init__(self, n: int = 2, margin: float = 0.0, gap: float = 0.0) -> None:
        if n < 2:
            raise ValueError(f"LocalAgreement needs n >= 2, got {n}")
        self._n = n
        self._margin = margin
        self._gap = gap
        self._history: list[tuple[float, list[str]]] = []  # (window end, uncommitted word keys), oldest first

    def decide(self, words: Sequence[Word], *, final: bool, window_end: float = math.inf) -> int:
        if not final:
            words = words[: before_edge(words, window_end, self._margin)]
        keys = [word_key(w) for w in words]
        if final:
            self._history = []
            return len(words)
        earlier = [h for end, h in self._history if end <= window_end - self._gap + 1e-6][-(self._n - 1) :]
        count = 0
        if len(earlier) == self._n - 1:
            count = len(keys)
            for h in earlier:
                count = min(count, _common_prefix(h, keys))
        # What is left after the commit is the next decodes' prefix to agree with; a hypothesis
        # that did not begin with the committed words has nothing left to agree on.
        done = keys[:count]
        kept = [(end, h[count:]) for end, h in self._history if h[:count] == done]
        # A hypothesis of unknown end (a stream continued elsewhere) counts as heard long before.
        self._history = (kept + [(window_end if math.isfinite(window_end) else -math.inf, keys[count:])])[-self.HISTORY :]
        return count

    def reset(self) -> None:
        self._history = []


class AlignAtt:
    """AlignAtt (Papi et al.; SimulStreaming's rule) at word level: a word is committed while the
    decoder's attention for it lies more than `margin` s before the end of the received audio,
    from one decode alone (no agreement). The attended position is the word's aligned end (the
    alignment heads' cross-attention is what places it, `model/timing.py`): a word attended at the
    audio's very end may still be cut off, one well before it was heard whole. The decode goes
    on from the committed words (the session forces them as its context)."""

    def __init__(self, margin: float = 0.5) -> None:
        if margin < 0:
            raise ValueError(f"AlignAtt needs margin >= 0, got {margin}")
        self._margin = margin

    def decide(self, words: Sequence[Word], *, final: bool, window_end: float = math.inf) -> int:
        return len(words) if final else before_edge(words, window_end, self._margin)

    def reset(self) -> None:
        """Nothing to forget: each decode is judged alone."""


def before_edge(words: Sequence[Word], window_end: float, margin: float) -> int:
    """How many leading `words` end more than `margin` s before `window_end` (the words after
    them may be cut off by the window's edge, or misheard for want of what follows)."""
    return next((i for i, w in enumerate(words) if w.end >= window_end - margin), len(words))


def _common_prefix(a: Sequence[str], b: Sequence[str]) -> int:
    count = 0
    for x, y in zip(a, b):
        if x != y:
            break
        count += 1
    return count


def skip_committed(committed: Sequence[Word], words: Sequence[Word]) -> int | None:
    """How many leading `words` of a new hypothesis re-hear `committed` (committed words whose
    audio the decode heard again), or None when the hypothesis does not match them well enough.

    Matched on text, not on times: word alignment jitters by tenths of a second between decodes
    and squeezes or stretches words, so a time cut drops real words. The split point is the
    one whose head is closest to `committed` in word edits (a re-heard word may be misheard),
    and at most `MAX_EXTRA_REHEARD` words longer than it (so a phrase said again later, "ask not
    what your country can do for you, ask what you can do for your country", is never taken for
    the committed one); of equally close ones, the one where the next word starts nearest the
    end of the committed words. Failing that, a hypothesis that starts with the committed words
    less up to `UNHEARD_HEAD` of the first matches: Whisper often leaves out words at a window's
    very start (after "…to form letterpress." a decode began "letterpress. It is of…"; counted as
    edits, the match failed, and the fallback by time dropped "It").
    """
    if not committed:
        return 0
    target = [word_key(w) for w in committed]
    keys = [word_key(w) for w in words]
    # distance[j]: word edits between `target` and keys[:j], by the usual dynamic programme.
    previous = list(range(len(keys) + 1))
    for i, key in enumerate(target, start=1):
        current = [i] + [0] * len(keys)
        for j, other in enumerate(keys, start=1):
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (key != other))
        previous = current
    candidates = previous[: len(target) + MAX_EXTRA_REHEARD + 1]
    best = min(candidates)
    if best > len(target) // 2:
        # The decode may have left out the first committed words and heard the rest exactly.
        rest = next((target[k:] for k in range(1, UNHEARD_HEAD + 1) if target[k:] and keys[: len(target) - k] == target[k:]), None)
        return None if rest is None else len(rest)
    end = committed[-1].end

    def gap(j: int) -> float:
        return abs(words[j].start - end) if j < len(words) else abs(words[-1].end - end) if words else 0.0

    return min((j for j, d in enumerate(candidates) if d == best), key=gap)


def find_repetition_loop(words: Sequence[Word], *, max_ngram: int = 8) -> int | None:
    """Index of the first word of a repetition loop's second occurrence, or None.

    A loop is an n-gram repeated back to back: 4 times for n <= 2 (people do say "no, no, no"),
    3 times for longer n-grams. The first occurrence is kept; the repeats are the hallucination.
    """
    keys = [word_key(w) for w in words]
    best: int | None = None
    for n in range(1, max_ngram + 1):
        repeats = 4 if n <= 2 else 3
        for i in range(0, len(keys) - n * repeats + 1):
            gram = keys[i : i + n]
            if not any(gram):
                continue
            if all(keys[i + k * n : i + (k + 1) * n] == gram for k in range(1, repeats)):
                if best is None or i + n < best:
                    best = i + n
                break
    return best
