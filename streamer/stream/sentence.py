"""Sentence ends decided by what follows them.

A decode that ends at a pause ends its text with a full stop: the audio stops there, and Whisper
cannot hear whether the speaker goes on with the same sentence ("…an exact imitation. Of the
more formal writing…"). Offline transcription decides it hearing what follows, in the same
window. So the mark that ends an utterance's stable text at an endpoint is held back (the words
are not: they are stable as soon as before), and the next utterance's decodes decide it where
offline transcription does: they begin with the committed words forced as their context
(`StreamBuffer.context`), the last one without its mark, and the decoder, hearing the pause and
the speech after it, writes after that word the mark again, or a comma, or nothing, or ends the
segment there (the mark stays) (`SentenceEnd.heard`).

The first such decode decides, and the context gets what it wrote at once. Left without the
mark, the decoder drifts: it mishears the words after it ("unless" as "I'd less") and soon stops
punctuating altogether (waiting for a decode that heard 1 s of the speech after the pause, one
stream's stable text lost most of its punctuation). The next stable text begins with what the
decoder wrote (". The next…", its first letter in upper case after a mark; ", in being…"); where
no decode heard the word in context, its case decides. A long pause (`stream.sentence_pause`), a
flush and the stream's end release the mark on its own, as a stable message holding only it.
"""

from __future__ import annotations

import re
from dataclasses import replace

from .tick import Word

MARKS = ".?!…"  # what may end a sentence in the scripts with case (Latin, Greek, Cyrillic)
_TRAILING = re.compile(r"[^\w\s']+$")


def _first_letter(text: str) -> int | None:
    return next((i for i, c in enumerate(text) if c.isalpha()), None)


def capitalized(word: Word) -> Word:
    """`word` beginning a sentence: its first letter in upper case."""
    text = word.text
    first = _first_letter(text)
    if first is None or not text[first].islower():
        return word
    return replace(word, text=text[:first] + text[first].upper() + text[first + 1 :])


class SentenceEnd:
    """The mark held back from the last stable word (empty: none), where that word ended, and
    what a decode that heard what follows wrote after it (None: none has)."""

    def __init__(self) -> None:
        self.mark = ""
        self.after = 0.0
        self.follows: str | None = None

    def hold(self, words: list[Word]) -> list[Word]:
        """`words` (the end of an utterance's stable text) with the last one's mark held back."""
        last = words[-1]
        bare = last.text.rstrip(MARKS)
        if bare == last.text or not bare.strip():
            return words
        self.mark, self.after, self.follows = last.text[len(bare) :], last.end, None
        return [*words[:-1], replace(last, text=bare)]

    def heard(self, context: tuple[Word, ...], reheard: list[Word]) -> str:
        """A decode forced with `context` heard its committed words again as `reheard`: when the
        context ends with the word whose mark is held, what the decoder wrote after that word is
        the verdict, the first one's. Returns what the context lacks now (empty: nothing)."""
        if not self.mark or self.follows is not None or not context or not reheard or context[-1].end != self.after:
            return ""
        word = reheard[-1]
        written = _TRAILING.search(word.text)
        self.follows = written.group() if written else self.mark if word.ends_segment else ""
        return self.follows

    def before(self, word: str) -> tuple[str, str]:
        """What the next stable text, beginning with `word`, begins with: what the decoder wrote
        after the held word (without its verdict: the held mark, unless `word` begins, letters
        aside, in lower case); and what the context still lacks of it (all of it without a
        verdict). The mark is no longer held."""
        mark, follows = self.release(), self.follows
        if not mark:
            return "", ""
        if follows is not None:
            return follows, ""
        first = _first_letter(word)
        follows = "" if first is not None and word[first].islower() else mark
        return follows, follows

    @staticmethod
    def ends_sentence(punctuation: str) -> bool:
        return any(c in MARKS for c in punctuation)

    def release(self) -> str:
        """The held mark, no longer held."""
        mark, self.mark = self.mark, ""
        return mark
