"""`RedisStore`: the session store every replica shares (see `streamer.state.store`).

Two keys per session, both expiring `store.ttl` s after the last write:
  * `whisper-streamer:session:{id}`, a hash: `key_id`, `start` (JSON), `owner` (the replica
    writing it), `context`, `committed_seconds`, `ended`;
  * `whisper-streamer:segments:{id}`, a list of the stable segments as JSON, in id order.

Ownership is checked inside Redis (Lua scripts run atomically): an append names its owner and
the id it expects to be next, and is refused otherwise; a claim sets the owner and returns the
state in one step. A replica that lost a stream thus cannot write one more segment into it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import uuid
from collections.abc import Callable, Coroutine, Sequence

from redis.asyncio import Redis
from redis.exceptions import RedisError
from redis.typing import EncodableT, FieldT

from wire import Stable, Start, WordTiming

from .store import (
    KEY_PREFIX,
    NO_KEY,
    StoredSession,
    StoreError,
    stable_from_json,
    stable_to_json,
    start_from_dict,
    start_to_dict,
    words_from_json,
    words_to_json,
)

log = logging.getLogger("streamer.state.store")

STORE_TIMEOUT_S = 5.0  # seconds one Redis command may take

# KEYS: hash, list. ARGV: owner, expected id, segment JSON, context, committed seconds, ttl.
# Returns 1 stored, 0 not the owner (or gone), -1 an id out of sequence.
APPEND = """
if redis.call('HGET', KEYS[1], 'owner') ~= ARGV[1] then return 0 end
if redis.call('LLEN', KEYS[2]) ~= tonumber(ARGV[2]) then return -1 end
redis.call('RPUSH', KEYS[2], ARGV[3])
redis.call('HSET', KEYS[1], 'context', ARGV[4], 'committed_seconds', ARGV[5])
redis.call('EXPIRE', KEYS[1], ARGV[6])
redis.call('EXPIRE', KEYS[2], ARGV[6])
return 1
"""

# KEYS: hash. ARGV: owner, words JSON. Only the owner's partial counts.
PARTIAL = """
if redis.call('HGET', KEYS[1], 'owner') == ARGV[1] then redis.call('HSET', KEYS[1], 'partial', ARGV[2]) end
return 1
"""

# KEYS: hash, list. ARGV: new owner, key id. Returns false, or {start, context, committed, partial, segments...}.
CLAIM = """
local s = redis.call('HMGET', KEYS[1], 'key_id', 'start', 'context', 'committed_seconds', 'ended', 'partial')
if not s[2] or s[1] ~= ARGV[2] or s[5] == '1' then return false end
redis.call('HSET', KEYS[1], 'owner', ARGV[1])
local out = {s[2], s[3] or '', s[4] or '0', s[6] or '[]'}
for _, seg in ipairs(redis.call('LRANGE', KEYS[2], 0, -1)) do table.insert(out, seg) end
return out
"""


def replica_name() -> str:
    """This process, unique across restarts of the same host (a restarted replica is a new owner)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class RedisStore:
    shared = True

    def __init__(self, url: str, ttl: float, replica: str = "") -> None:
        # Bounded waits: a hung Redis fails the streams writing to it (1011) rather than holding
        # their stable segments back without end.
        self._redis = Redis.from_url(url, decode_responses=True, socket_timeout=STORE_TIMEOUT_S, socket_connect_timeout=STORE_TIMEOUT_S)
        self._ttl = max(1, int(ttl))
        self.replica = replica or replica_name()
        self._append = self._redis.register_script(APPEND)
        self._claim = self._redis.register_script(CLAIM)
        self._partial = self._redis.register_script(PARTIAL)
        self._tails: dict[str, asyncio.Task[bool]] = {}  # each session's last pending write

    @staticmethod
    def _keys(session_id: str) -> list[str]:
        return [f"{KEY_PREFIX}session:{session_id}", f"{KEY_PREFIX}segments:{session_id}"]

    async def check(self) -> None:
        """Fails at start-up, not on the first stream, when Redis cannot be reached."""
        try:
            await self._redis.ping()
        except (RedisError, OSError) as exc:
            raise StoreError(f"store: cannot reach Redis: {exc}") from exc

    async def open(self, session_id: str, key_id: str | None, start: Start) -> None:
        hash_key, list_key = self._keys(session_id)
        mapping: dict[FieldT, EncodableT] = {
            "key_id": key_id or NO_KEY, "start": json.dumps(start_to_dict(start)), "owner": self.replica,
            "context": "", "committed_seconds": "0", "ended": "0",
        }
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.delete(list_key)
                pipe.hset(hash_key, mapping=mapping)
                pipe.expire(hash_key, self._ttl)
                await pipe.execute()
        except (RedisError, OSError) as exc:
            raise StoreError(f"store: cannot open session {session_id}: {exc}") from exc

    def append(self, session_id: str, stable: Stable, context: str) -> asyncio.Future[bool] | None:
        args: list[EncodableT] = [self.replica, stable.id, stable_to_json(stable), context, repr(stable.end), self._ttl]
        return self._chain(session_id, lambda previous: self._append_after(previous, session_id, stable.id, args))

    def _chain(self, session_id: str, write: Callable[[asyncio.Task[bool] | None], Coroutine[object, object, bool]]) -> asyncio.Task[bool]:
        """Runs `write` after the session's previous write: a session's writes keep their order."""
        task = asyncio.create_task(write(self._tails.get(session_id)), name=f"store-{session_id}")
        self._tails[session_id] = task
        task.add_done_callback(lambda done: self._tails.pop(session_id, None) if self._tails.get(session_id) is done else None)
        return task

    async def _append_after(self, previous: asyncio.Task[bool] | None, session_id: str, stable_id: int, args: list[EncodableT]) -> bool:
        if previous is not None and not await previous:
            return False  # lost the stream already: nothing after it may be stored
        try:
            result = await self._append(keys=self._keys(session_id), args=args)
        except (RedisError, OSError) as exc:
            raise StoreError(f"store: cannot store segment {stable_id} of {session_id}: {exc}") from exc
        if result == -1:
            raise StoreError(f"store: segment {stable_id} of {session_id} is out of sequence")
        if result == 0:
            log.warning("session %s: taken over by another replica; segment %d not stored", session_id, stable_id)
        return bool(result == 1)

    def note_partial(self, session_id: str, words: Sequence[WordTiming]) -> None:
        self._chain(session_id, lambda previous: self._write_partial(previous, session_id, words_to_json(words)))

    async def _write_partial(self, previous: asyncio.Task[bool] | None, session_id: str, words: str) -> bool:
        try:
            if previous is not None and not await previous:
                return False
            await self._partial(keys=self._keys(session_id)[:1], args=[self.replica, words])
        except (RedisError, OSError, StoreError) as exc:
            log.debug("session %s: partial not stored: %s", session_id, exc)  # only a hint for a hand-over
        return True

    def end(self, session_id: str) -> None:
        self._chain(session_id, lambda previous: self._mark_ended(previous, session_id))

    async def _mark_ended(self, previous: asyncio.Task[bool] | None, session_id: str) -> bool:
        try:
            if previous is not None and not await previous:
                return False
            await self._redis.hset(self._keys(session_id)[0], "ended", "1")
        except (RedisError, OSError, StoreError) as exc:
            log.warning("session %s: could not mark it ended in the store: %s", session_id, exc)
            return False
        return True

    async def claim(self, session_id: str, key_id: str | None) -> StoredSession | None:
        try:
            found = await self._claim(keys=self._keys(session_id), args=[self.replica, key_id or NO_KEY])
        except (RedisError, OSError) as exc:
            raise StoreError(f"store: cannot claim session {session_id}: {exc}") from exc
        if not found:
            return None
        start, context, committed, partial, *segments = found
        stables = tuple(stable_from_json(s) for s in segments)
        return StoredSession(session_id, key_id, start_from_dict(json.loads(start)), stables, context, float(committed), words_from_json(partial))

    async def flush(self) -> None:
        await asyncio.gather(*list(self._tails.values()), return_exceptions=True)

    async def close(self) -> None:
        await self.flush()
        await self._redis.aclose()
