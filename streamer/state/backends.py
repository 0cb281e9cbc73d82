"""The session store `[store] backend` names: above both backends, so neither imports the other."""

from __future__ import annotations

from ..config import StoreConfig
from .store import LocalStore, SessionStore


def make_store(config: StoreConfig) -> SessionStore:
    if config.backend == "redis":
        from .redis_store import RedisStore  # the redis package is needed only then

        return RedisStore(config.url, config.ttl, config.replica)
    return LocalStore()
