"""The daemon composed: the streams, the interfaces on them, and the server that routes to both.

`build_server` is what `python -m streamer` runs and what in-process tests start; the server
itself (streamer/server/daemon.py) knows the interfaces only as a `FrontEnd`, and the interfaces
know the streams only as a `StreamHost`.
"""

from __future__ import annotations

from pathlib import Path

from .config import Config
from .engine.worker import ModelWorker
from .interfaces import Interfaces
from .metrics import StreamerMetrics
from .server.auth import Authenticator, TokenSigner, load_key_store
from .server.daemon import StreamerServer, tls_context
from .server.http import STATIC_DIR, HttpRoutes
from .server.registry import StreamRegistry


def build_server(config: Config, worker: ModelWorker, metrics: StreamerMetrics | None = None) -> StreamerServer:
    """The daemon for `config` on `worker` (started by the caller); raises on a bad keys file or TLS pair."""
    auth_config = config.auth
    origins = [origin.strip() for origin in auth_config.allowed_origins.split(",") if origin.strip()]
    auth = Authenticator(load_key_store(auth_config.keys_file), TokenSigner.random(auth_config.token_ttl), origins)
    streams = StreamRegistry(config, worker, metrics if metrics is not None else StreamerMetrics(), auth.keys)
    tls = tls_context(config.server.tls_cert, config.server.tls_key)
    routes = HttpRoutes(Path(config.server.static_dir) if config.server.static_dir else STATIC_DIR)
    interfaces = Interfaces(streams, config, routes, auth, secure=tls is not None)
    return StreamerServer(config, streams, interfaces, routes, auth, tls)
