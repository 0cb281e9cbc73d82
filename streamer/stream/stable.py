"""The stream's stable text as it is sent: ids in order, times that never go back, and the
sentence mark held back from the end of the last utterance (`streamer.stream.sentence`).

`StableText` is a part `ResultRules` owns: it turns committed words into `stable` messages and
hands them back; the words, as sent, go to the stream buffer as committed (its context).
"""

from __future__ import annotations

from dataclasses import replace

from wire import Stable

from .context import StreamBuffer
from .language import StreamLanguage
from .messages import stables
from .sentence import SentenceEnd, capitalized
from .tick import Word


class StableText:
    def __init__(self, buffer: StreamBuffer, lang: StreamLanguage, *, hold_sentence_end: bool) -> None:
        self._buffer = buffer
        self._lang = lang
        self._hold = hold_sentence_end  # `Start.hold_sentence_end`
        self.next_id = 0
        self.until = 0.0  # stream seconds: the end of the last stable word
        self._sentence = SentenceEnd()

    def heard(self, context: tuple[Word, ...], reheard: list[Word]) -> None:
        """A decode forced with `context` heard it again as `reheard`: it may decide the held mark."""
        if written := self._sentence.heard(context, reheard):
            self._buffer.punctuate(self._sentence.after, written)

    def commit(self, words: list[Word], language: str, *, at_pause: bool = False) -> list[Stable]:
        """Stable messages for `words`, one per Whisper segment they span. Stable times never go
        back: word alignment moves a boundary by tens of ms from one decode to the next, so a
        word that begins before the last stable word's end is moved to begin there. The mark
        held back from the text before decides how they begin; `at_pause` (an endpoint's commit
        that heard nothing after them) holds their last word's in turn."""
        words = _in_order(words, self.until)
        prefix, lacking = self._sentence.before(words[0].text if words else "")
        if lacking:
            self._buffer.punctuate(self._sentence.after, lacking)
        if SentenceEnd.ends_sentence(prefix) and words:  # a decode before the verdict went on without the mark
            words = [capitalized(words[0]), *words[1:]]
        if at_pause and self._hold:
            words = self._sentence.hold(words)
        messages = stables(words, self.next_id, self._lang.language or language)
        if prefix and messages:
            messages[0] = replace(messages[0], text=prefix + messages[0].text)
        self.next_id += len(messages)
        if words:
            self.until = max(self.until, words[-1].end)
        self._buffer.committed = self._buffer.committed + list(words)
        return messages

    @property
    def held_after(self) -> float | None:
        """Where the stable word whose sentence mark is held back ended (None: none is held)."""
        return self._sentence.after if self._sentence.mark else None

    def release(self) -> list[Stable]:
        """The held mark as a stable message of its own: nothing follows it (a long pause, a
        flush, the stream's end)."""
        mark = self._sentence.release()
        if not mark:
            return []
        at = self._sentence.after
        message = Stable(self.next_id, at, at, mark, (), self._lang.language or "")
        self.next_id += 1
        return [message]


def _in_order(words: list[Word], since: float) -> list[Word]:
    """`words` with each start at least the previous end (the first's at least `since`)."""
    ordered: list[Word] = []
    for word in words:
        start = max(word.start, since)
        since = max(word.end, start)
        ordered.append(word if (start, since) == (word.start, word.end) else replace(word, start=start, end=since))
    return ordered
