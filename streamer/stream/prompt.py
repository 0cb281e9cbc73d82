"""The prompt: the committed text before the buffer, given to the decoder as its previous context."""

from __future__ import annotations

from .tick import Word


class Prompt:
    """Up to the end of the last Whisper segment (or utterance) committed before the buffer. A
    prompt that stops inside a sentence is continued rather than followed: after "…your country
    can do for", the audio "you, ask what you can do for your country" decodes as "your country"."""

    def __init__(self, limit: int, initial: str = "") -> None:
        self.text = initial  # at first a client's initial context (`Start.prompt`), as given
        self._open = ""  # the words of an unfinished Whisper segment, not yet in `text`
        self._limit = limit

    def extend(self, words: list[Word], *, utterance_ended: bool = False) -> None:
        text = self.text
        for word in words:
            self._open += word.text
            if word.ends_segment or word.text.rstrip().endswith((".", "?", "!")):
                text, self._open = text + self._open, ""
        if utterance_ended:
            text, self._open = text + self._open, ""
        if len(text) > self._limit:
            # Cut at a word boundary, so the prompt never starts with half a word.
            text = text[len(text) - self._limit :]
            space = text.find(" ")
            text = text[space:] if space >= 0 else ""
        self.text = text

    def punctuate(self, marks: str) -> None:
        """The text so far ends with `marks` (a sentence's end, or a comma, decided after its last word)."""
        if self._open:
            self.text, self._open = self.text + self._open, ""
        if self.text:
            self.text += marks

    def clear(self) -> None:
        """After a repetition loop: the prompt may have led into it."""
        self.text = self._open = ""
