"""A stream moving to this replica from the shared store: what to check, what to replay.

Plain code, no I/O: `plan_handover` checks a resuming `start` against the stored stream (the
same audio format; a `last_stable_id` the stream has) and says which stored segments the client
still lacks. The server then builds the session (`Session.continue_at`) and sends `ready` with
`audio_seconds` = the committed audio, from which the client resends what it kept.
"""

from __future__ import annotations

from dataclasses import dataclass

from .protocol import CloseCode, ProtocolError, Stable, Start
from .store import StoredSession


@dataclass(frozen=True)
class Handover:
    replay: tuple[Stable, ...]  # stored segments after the client's last one, to send after `ready`
    language: str | None  # the language the stream's segments were committed in (kept)


def plan_handover(stored: StoredSession, start: Start, last_stable_id: int) -> Handover:
    """4415 for another audio format, 4400 for a `last_stable_id` beyond the stored segments."""
    format_now = (start.sample_rate, start.encoding, start.channels)
    if format_now != (stored.start.sample_rate, stored.start.encoding, stored.start.channels):
        raise ProtocolError(CloseCode.UNSUPPORTED, "a resumed stream keeps its sample_rate, encoding and channels")
    if last_stable_id >= stored.next_stable_id:
        raise ProtocolError(
            CloseCode.MALFORMED, f"resume.last_stable_id {last_stable_id} is beyond the session's last stable id {stored.next_stable_id - 1}"
        )
    language = stored.segments[-1].language if stored.segments else None
    return Handover(stored.segments[last_stable_id + 1 :], language)
