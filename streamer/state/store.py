"""Where a stream's committed state lives, so that another replica can continue it.

What a stream needs to go on elsewhere: its committed segments (and so their ids), its context
(the committed text the decoder is prompted with), its options (the `start` it was opened
with), who may resume it (the key), and how much audio is committed (the client resends what
came after). Audio that was not yet committed is not stored: the client keeps it and sends it
again after a resume.

Two backends behind one `SessionStore` protocol, chosen by `[store] backend` (`backends.make_store`):
  * `LocalStore`, the single-machine default: a stream lives in this process (the parked
    streams of `streamer.server.resume.DetachedSessions`) and on its disk (`journal`), so nothing is shared
    and `claim` finds nothing; the daemon behaves exactly as before.
  * `RedisStore` (`redis.asyncio`): every replica reads and writes the same Redis. A stream has
    one owner at a time; `claim` moves it atomically, and an append by a replica that lost the
    stream is refused, so two replicas never both write ids for one session.

Appends are ordered per session: `append` returns at once with an awaitable that completes when
the segment is stored; the server sends a `stable` only after it (a client never holds a
segment the store lacks). Owned by the event-loop thread.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from wire import Stable, Start, WordTiming, server_message_body

KEY_PREFIX = "whisper-streamer:"
NO_KEY = ""  # the key id stored for a session opened without authentication
# What a moved stream keeps of its `start` (all but `version` and `resume`). A reader ignores the
# keys it does not know, so replicas of two versions share one store during a rolling update.
START_FIELDS = ("sample_rate", "encoding", "channels", "language", "task", "word_timestamps", "languages", "events", "prompt", "commit_policy", "endpoint_silence")
TUPLE_FIELDS = ("languages", "events")


@dataclass(frozen=True)
class StoredSession:
    """A stream as the store holds it: enough to continue it on any replica."""

    session_id: str
    key_id: str | None
    start: Start  # the options it was opened with (`resume` unset)
    segments: tuple[Stable, ...]
    context: str  # committed text, the decoder's prompt when it goes on
    committed_seconds: float  # stream time (s) up to which the audio is committed
    pending: tuple[WordTiming, ...] = ()  # the last partial: what the owner heard after the committed words

    @property
    def next_stable_id(self) -> int:
        return len(self.segments)


class StoreError(RuntimeError):
    """The store failed (unreachable, or answered nonsense)."""


class SessionStore(Protocol):
    """The interface both backends implement (see the module docstring)."""

    @property
    def shared(self) -> bool:
        """Whether another replica can continue a stream from this store."""
        ...

    async def check(self) -> None:
        """Raises `StoreError` when the store cannot be reached (at start-up)."""
        ...

    async def open(self, session_id: str, key_id: str | None, start: Start) -> None: ...

    def append(self, session_id: str, stable: Stable, context: str) -> asyncio.Future[bool] | None:
        """Stores one segment after the previous ones; the awaitable says whether this replica
        still owned the stream (None: stored already)."""
        ...

    def note_partial(self, session_id: str, words: Sequence[WordTiming]) -> None:
        """The stream's latest uncommitted words: a replica continuing it agrees with them (the
        commit policy's previous hypothesis), so its first decode can commit (no I/O awaited)."""
        ...

    def end(self, session_id: str) -> None:
        """The stream ended (`end` sent): it cannot be resumed any more."""
        ...

    async def claim(self, session_id: str, key_id: str | None) -> StoredSession | None:
        """Takes a stream over for this replica; None when unknown, ended, or another key's."""
        ...

    async def flush(self) -> None:
        """Waits for every pending append."""
        ...

    async def close(self) -> None: ...


class LocalStore:
    """Nothing shared: streams stay in this process and its journal (the default)."""

    shared = False

    async def check(self) -> None:
        return None

    async def open(self, session_id: str, key_id: str | None, start: Start) -> None:
        return None

    def append(self, session_id: str, stable: Stable, context: str) -> asyncio.Future[bool] | None:
        return None

    def note_partial(self, session_id: str, words: Sequence[WordTiming]) -> None:
        return None

    def end(self, session_id: str) -> None:
        return None

    async def claim(self, session_id: str, key_id: str | None) -> StoredSession | None:
        return None

    async def flush(self) -> None:
        return None

    async def close(self) -> None:
        return None


def start_to_dict(start: Start) -> dict[str, Any]:
    body = {name: getattr(start, name) for name in START_FIELDS}
    for name in TUPLE_FIELDS:
        body[name] = list(body[name])
    return body


def start_from_dict(body: dict[str, Any]) -> Start:
    known = {name: body[name] for name in START_FIELDS if name in body}
    for name in TUPLE_FIELDS:
        known[name] = tuple(known.get(name, ()))
    return Start(**known)


def stable_to_json(stable: Stable) -> str:
    body = server_message_body(stable)
    del body["type"]
    return json.dumps(body, ensure_ascii=False, allow_nan=False)


def words_to_json(words: Sequence[WordTiming]) -> str:
    return json.dumps([[w.word, round(w.start, 3), round(w.end, 3), round(w.probability, 4)] for w in words], ensure_ascii=False)


def words_from_json(data: str) -> tuple[WordTiming, ...]:
    return tuple(WordTiming(str(w), float(s), float(e), float(p)) for w, s, e, p in json.loads(data or "[]"))


def stable_from_json(data: str | bytes) -> Stable:
    body = json.loads(data)
    words = tuple(WordTiming(**w) for w in body.pop("words", ()))
    return Stable(words=words, **body)


def committed_text(segments: Sequence[Stable], limit: int) -> str:
    """The last `limit` characters of committed text, cut at a word boundary (the prompt)."""
    parts: list[str] = []
    length = 0
    for segment in reversed(segments):  # only the tail: a long session has thousands
        parts.append(segment.text)
        length += len(segment.text)
        if length > limit:
            break
    text = "".join(reversed(parts))
    if len(text) <= limit:
        return text
    text = text[len(text) - limit :]
    space = text.find(" ")
    return text[space:] if space >= 0 else ""

