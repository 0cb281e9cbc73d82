"""A stream moving to this replica from the shared store: what to check, what to replay.

Plain code, no I/O: `plan_handover` checks a resuming `start` against the stored stream (the
same audio format; a `last_stable_id` the stream has) and says which stored segments the client
still lacks. The server then builds the session (`Session.continue_at`) and sends `ready` with
`audio_seconds` = the committed audio, from which the client resends what it kept.
"""

from __future__ import annotations

from dataclasses import dataclass

from wire import CloseCode, ProtocolError, Stable, Start

from ..stream.tick import Word
from .store import StoredSession

# Seconds of committed speech (of the last segment) heard again, as the decoder's forced context:
# the next words are then decoded after them, as on the replica that committed them, not after a
# cut at an edge the alignment may have misplaced. The client library keeps more than this.
CONTEXT_REPLAY_S = 3.0
ONSET_MARGIN_S = 0.1  # s before the first context word where the audio resumes


@dataclass(frozen=True)
class Handover:
    replay: tuple[Stable, ...]  # stored segments after the client's last one, to send after `ready`
    language: str | None  # the language the stream's segments were committed in (kept)
    resume_seconds: float  # stream time from which the client sends the audio again
    context: tuple[Word, ...]  # committed words in that audio (decoded as known text, never re-sent)
    prompt: str  # committed text before them
    pending: tuple[Word, ...] = ()  # the previous owner's last partial, after the committed words


def plan_handover(stored: StoredSession, start: Start, last_stable_id: int) -> Handover:
    """4415 for another audio format, 4400 for a `last_stable_id` beyond the stored segments."""
    format_now = (start.sample_rate, start.encoding, start.channels)
    if format_now != (stored.start.sample_rate, stored.start.encoding, stored.start.channels):
        raise ProtocolError(CloseCode.UNSUPPORTED, "a resumed stream keeps its sample_rate, encoding and channels")
    if last_stable_id >= stored.next_stable_id:
        raise ProtocolError(
            CloseCode.MALFORMED, f"resume.last_stable_id {last_stable_id} is beyond the session's last stable id {stored.next_stable_id - 1}"
        )
    replay = stored.segments[last_stable_id + 1 :]
    if not stored.segments:
        pending = tuple(Word(w.word, w.start, w.end, w.probability) for w in stored.pending)
        return Handover(replay, None, stored.committed_seconds, (), stored.context, pending)
    last = stored.segments[-1]
    cut = max(last.start, last.end - CONTEXT_REPLAY_S)
    kept = [w for w in last.words if w.start >= cut]
    context = tuple(Word(w.word, w.start, w.end, w.probability) for w in kept)
    if context:
        context = context[:-1] + (Word(kept[-1].word, kept[-1].start, kept[-1].end, kept[-1].probability, ends_segment=True),)
    text = "".join(w.text for w in context)
    prompt = stored.context[: len(stored.context) - len(text)] if text and stored.context.endswith(text) else stored.context
    resume = max(0.0, context[0].start - ONSET_MARGIN_S) if context else stored.committed_seconds
    pending = tuple(Word(w.word, w.start, w.end, w.probability) for w in stored.pending if w.start >= last.end)
    return Handover(replay, last.language, resume, context, prompt, pending)
