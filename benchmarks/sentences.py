"""Sentences, as a reader sees them: words with their case and sentence-final punctuation.

WER's normaliser hides how stable text breaks sentences ("…an exact imitation. Of the more
formal…" scores as well as "…an exact imitation of the more formal…"). Two figures do not:

- `cased_error_rate`: WER over words that keep their case and a sentence-final mark
  (`imitation.` and `imitation` differ, so do `Of` and `of`), against references that are
  punctuated (`is_punctuated`: the LJ Speech texts, `text_punct`). Other punctuation (commas,
  quotes, hyphens) is dropped: Whisper and the references disagree on it without changing a
  sentence.
- `compare_breaks`: the sentence breaks of one transcript (streaming) checked against another
  of the same audio (offline), word by word: a break the other has not is a *false* break.

Numbers stay as written ("1455" against "fourteen fifty-five" counts as errors) on both sides
alike: these figures are read against the offline transcript's, not alone.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass

_WORD_CHARS = re.compile(r"[^\w']+")
_SENTENCE_END = (".", "?", "!")
_CLOSERS = "\"')]»”’"


@dataclass(frozen=True)
class CasedWord:
    bare: str  # lower case, letters, digits and apostrophes only: what aligns two transcripts
    text: str  # as written (case kept), without punctuation
    ends_sentence: bool

    @property
    def token(self) -> str:
        """What `cased_error_rate` compares: case and the sentence-final mark count."""
        return self.text + ("." if self.ends_sentence else "")


def cased_words(text: str) -> list[CasedWord]:
    """`text`'s words with their case and whether each ends a sentence ("?", "!" and an
    ellipsis count as "."); a hyphenated word is its parts."""
    words: list[CasedWord] = []
    for raw in text.split():
        stripped = raw.rstrip(_CLOSERS)
        ends = stripped.endswith(_SENTENCE_END) and not stripped.endswith((",", ";", ":"))
        parts = [p for p in _WORD_CHARS.split(raw) if p.strip("'")]
        for i, part in enumerate(parts):
            words.append(CasedWord(part.lower(), part, ends and i == len(parts) - 1))
    return words


def is_punctuated(reference: str) -> bool:
    """A reference written as sentences (lower case with capitals or punctuation), not a word
    list in capitals (LibriSpeech's) or without punctuation: only those can score case and
    sentence ends."""
    letters = [c for c in reference if c.isalpha()]
    return any(c.islower() for c in letters) and (any(c.isupper() for c in letters) or any(c in ".,?!;:" for c in reference))


def cased_error_rate(references: Sequence[str], hypotheses: Sequence[str]) -> float:
    """Corpus WER over `CasedWord.token`s (total edits / total reference words)."""
    import jiwer

    refs = [" ".join(w.token for w in cased_words(r)) for r in references]
    hyps = [" ".join(w.token for w in cased_words(h)) for h in hypotheses]
    pairs = [(r, h) for r, h in zip(refs, hyps, strict=True) if r.strip()]
    if not pairs:
        raise ValueError("no non-empty reference to score against")
    return float(jiwer.wer([r for r, _ in pairs], [h for _, h in pairs]))


@dataclass(frozen=True)
class Breaks:
    """Sentence breaks of a transcript against another of the same audio."""

    breaks: int  # words of the transcript that end a sentence (its last word aside)
    false: int  # ...where the other transcript's same word does not
    missed: int  # words where the other ends a sentence and this one does not

    def __add__(self, other: Breaks) -> Breaks:
        return Breaks(self.breaks + other.breaks, self.false + other.false, self.missed + other.missed)

    @property
    def false_share(self) -> float:
        return self.false / self.breaks if self.breaks else 0.0


def compare_breaks(text: str, other: str) -> Breaks:
    """`text`'s sentence breaks checked against `other`'s, on the words the two share (aligned on
    their bare form); the last word of each (the end of the audio) does not count."""
    mine, theirs = cased_words(text)[:-1], cased_words(other)[:-1]
    matcher = difflib.SequenceMatcher(a=[w.bare for w in mine], b=[w.bare for w in theirs], autojunk=False)
    breaks = false = missed = 0
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            a, b = mine[block.a + k], theirs[block.b + k]
            breaks += a.ends_sentence
            false += a.ends_sentence and not b.ends_sentence
            missed += b.ends_sentence and not a.ends_sentence
    return Breaks(breaks, false, missed)
