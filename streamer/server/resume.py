"""Resuming a stream after its connection dropped: detached sessions, kept for a window, reattached by id.

A connection that ends without `stop` (network loss, client crash) does not end its session: the
session is parked here for `resume_window` seconds, still decoding what it had received, its new
`stable` segments recorded (and journaled) though nobody listens. A new connection whose `start`
carries `{"resume": {"session_id", "last_stable_id"}}` takes it back: the server replays every
stable segment after `last_stable_id`, and the audio of the new connection continues the same
timeline (the `ready` of a resumed session says how much audio the server holds, so the client
knows where to resend from).

Plain code, no I/O, the clock an argument; owned by the event-loop thread.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from wire import CloseCode, ProtocolError, Stable

from ..state.journal import SESSION_ID_PATTERN

StreamT = TypeVar("StreamT")


@dataclass(frozen=True)
class ResumeRequest:
    session_id: str
    last_stable_id: int  # the last stable id the client holds; -1 for none


def parse_resume(body: Mapping[str, Any]) -> ResumeRequest:
    """The `resume` map of a `start` message (close 4400 if malformed)."""
    session_id, last = body.get("session_id"), body.get("last_stable_id", -1)
    if not isinstance(session_id, str) or not SESSION_ID_PATTERN.match(session_id):
        raise ProtocolError(CloseCode.MALFORMED, "`resume.session_id` must be a session id string")
    if not isinstance(last, int) or isinstance(last, bool) or last < -1:
        raise ProtocolError(CloseCode.MALFORMED, "`resume.last_stable_id` must be an integer >= -1")
    return ResumeRequest(session_id, last)


class StableHistory:
    """The stable segments of one session, in id order, for replay."""

    def __init__(self) -> None:
        self._stables: list[Stable] = []

    def record(self, stable: Stable) -> None:
        expected = len(self._stables)
        if stable.id != expected:
            raise ValueError(f"stable {stable.id} recorded where {expected} was due")
        self._stables.append(stable)

    @property
    def last_id(self) -> int:
        return len(self._stables) - 1

    @property
    def segments(self) -> Sequence[Stable]:
        return self._stables

    def after(self, last_stable_id: int) -> Sequence[Stable]:
        """Every segment after `last_stable_id`; a client cannot hold one the server never sent."""
        if last_stable_id > self.last_id:
            raise ProtocolError(
                CloseCode.MALFORMED, f"resume.last_stable_id {last_stable_id} is beyond the session's last stable id {self.last_id}"
            )
        return self._stables[last_stable_id + 1 :]


@dataclass(frozen=True)
class Detached(Generic[StreamT]):
    stream: StreamT
    key_id: str | None
    detached_at: float
    expires_at: float


class DetachedSessions(Generic[StreamT]):
    """Sessions whose connection dropped, by session id, until reattached or expired."""

    def __init__(self, window_seconds: float, capacity: int) -> None:
        if window_seconds < 0 or capacity < 1:
            raise ValueError(f"resume window must be >= 0 s and capacity >= 1, got {window_seconds}, {capacity}")
        self.window_seconds = window_seconds
        self.capacity = capacity
        self._parked: dict[str, Detached[StreamT]] = {}  # in detach order

    def __len__(self) -> int:
        return len(self._parked)

    def __contains__(self, session_id: object) -> bool:
        return session_id in self._parked

    def detach(self, session_id: str, stream: StreamT, key_id: str | None, now: float) -> list[tuple[str, StreamT]]:
        """Parks a stream; returns the oldest parked ones it pushed out beyond `capacity` (the caller
        finalises them), so clients that drop connections in a loop cannot pile streams up."""
        if session_id in self._parked:
            raise ValueError(f"session {session_id} is already detached")
        self._parked[session_id] = Detached(stream, key_id, now, now + self.window_seconds)
        evicted = []
        while len(self._parked) > self.capacity:
            oldest = next(iter(self._parked))
            evicted.append((oldest, self._parked.pop(oldest).stream))
        return evicted

    def reattach(self, session_id: str, key_id: str | None, now: float) -> StreamT:
        """Takes a parked session back; 4404 if unknown, expired, or parked by another key.

        The three cases answer alike, so nobody learns which session ids exist.
        """
        entry = self._parked.get(session_id)
        if entry is None or now >= entry.expires_at or entry.key_id != key_id:
            raise ProtocolError(CloseCode.UNKNOWN_SESSION, f"no resumable session {session_id} (unknown or expired)")
        del self._parked[session_id]
        return entry.stream

    def expire(self, now: float) -> list[tuple[str, StreamT]]:
        """Removes and returns every session whose window has passed (the caller finalises them)."""
        gone = [(sid, e.stream) for sid, e in self._parked.items() if now >= e.expires_at]
        for session_id, _ in gone:
            del self._parked[session_id]
        return gone

    def discard(self, session_id: str) -> None:
        """Forgets a parked session that failed (no resume can help it)."""
        self._parked.pop(session_id, None)

    def next_expiry(self) -> float | None:
        return min((e.expires_at for e in self._parked.values()), default=None)
