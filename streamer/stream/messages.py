"""Stable and partial messages from words."""

from __future__ import annotations

from wire import Partial, Stable, WordTiming

from .tick import Word


def timings(words: list[Word]) -> tuple[WordTiming, ...]:
    return tuple(WordTiming(w.text, w.start, w.end, w.probability) for w in words)


def stables(words: list[Word], first_id: int, language: str) -> list[Stable]:
    """Stable messages for `words`, one per Whisper segment they span, numbered from `first_id`."""
    messages: list[Stable] = []
    group: list[Word] = []
    for i, word in enumerate(words):
        group.append(word)
        if word.ends_segment or i == len(words) - 1:
            text = "".join(w.text for w in group)
            messages.append(Stable(first_id + len(messages), group[0].start, group[-1].end, text, timings(group), language))
            group = []
    return messages


def partial(words: list[Word], empty_at: float) -> Partial:
    """The uncommitted words as a partial (an empty one at `empty_at` when there are none)."""
    if not words:
        return Partial("", empty_at, empty_at)
    return Partial("".join(w.text for w in words), words[0].start, words[-1].end, timings(words))
