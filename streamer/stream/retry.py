"""The retry rules: when a decode is not to be trusted as it is, and is done again.

Each is a pure predicate; the result rules act on it (`ResultRules._decode_again*`, streamer/stream/results.py).
"""

from __future__ import annotations

from .commit import word_key
from .tick import Word


def missed_head(head: str | None, prompt: str, words: list[Word]) -> bool:
    """The first decode after a cut in the pause (`ResultRules._begin_next_utterance`) did not begin
    with `head`, what the decode before it heard there: Whisper drops a phrase that repeats the
    end of its prompt (after "…what your country can do for you,", the audio "ask what you can do
    for your country" decoded as "can do for your country"). Decoded again without the prompt."""
    return head is not None and bool(prompt) and (not words or word_key(words[0]) != head)


def spoke_after_pause(onset: float, voiced_end: float, words_end: float, heard_until: float, unheard_tail: float) -> bool:
    """Whether the speaker began again (at `onset`) after `words_end`, and said more than
    `unheard_tail` s of it before `heard_until`. Whisper at times ends its text at the forced
    context when a pause follows it, with speech after the pause ("…soul in heaven." and nothing
    of the 8 s utterance after it, in every decode of that window, the context heard again
    too): the buffer is then cut in the pause, so the next decode hears that speech alone."""
    return onset > words_end and min(voiced_end, heard_until) - onset > unheard_tail


def heard_past_endpoint(until: float | None, window_end: float, words: list[Word], edge_margin: float) -> bool:
    """Whether a decode up to `window_end` stands for the final one of an endpoint that commits
    the words before `until`: it heard past the end of speech, and none of the words to commit
    runs into its edge (cut off, maybe misheard)."""
    if until is None or window_end < until:
        return False
    return all(w.end < window_end - edge_margin for w in words if w.start < until)


def unheard_tail(voice_end: float, heard_until: float, limit: float) -> bool:
    """Whether the speaker went on past the decode's last word by more than `limit` s: Whisper
    at times ends a window early (a timestamp, then end of text) with speech left after it."""
    return voice_end - heard_until > limit


def overlaps_committed(committed: list[Word], words: list[Word], merged_overlap: float) -> bool:
    """Whether new words start well inside the committed words still in the buffer."""
    return bool(committed and words) and words[0].start < committed[-1].end - merged_overlap


def contradicts_partial(partial: list[Word], words: list[Word]) -> bool:
    """Whether a decode's new words do not start with the first word of the last partial."""
    return bool(partial) and (not words or word_key(words[0]) != word_key(partial[0]))
