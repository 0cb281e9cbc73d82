"""`python -m streamer [--config FILE] [--host H] [--port P] [--model M] [--section.key VALUE ...]`

Prints exactly one line to stdout, `listening on ws://HOST:PORT` (`wss://` with TLS), once
connections are accepted (the bound port when `--port 0`); everything else is logged to stderr.
Exits with 2, before loading the model, on a bad configuration: a bad value, a bad keys file, or
a non-loopback host without any API key; and when `[store] backend = "redis"` cannot reach Redis.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from model.runtime import return_freed_memory_to_os

from .app import build_server
from .config import ConfigError, load_config
from .engine.worker import ModelWorker
from .server.auth import AuthConfigError, InsecureListenError, check_listen_address
from .state.store import StoreError

log = logging.getLogger("streamer")


async def run_daemon(argv: list[str]) -> int:
    config = load_config(None, argv)
    logging.getLogger().setLevel(config.server.log_level.upper())
    # websockets' debug log is every frame's bytes: ours says what the daemon does.
    logging.getLogger("websockets").setLevel(max(logging.INFO, logging.getLogger().level))
    worker = ModelWorker(config.model, config.stream)
    server = build_server(config, worker)
    check_listen_address(config.server.host, server.auth.keys)
    if not server.auth.keys.enabled:
        log.warning("no API key configured: authentication is off, listening on loopback only")
    worker.start()  # loads the model in its own thread while the socket opens
    host, port = await server.start()
    shown_host = f"[{host}]" if ":" in host else host
    print(f"listening on {server.scheme}://{shown_host}:{port}", flush=True)
    log.info("listening on %s://%s:%d (stream at /v1/stream, page at /)", server.scheme, shown_host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await server.serve_until(stop)
    return 0


def main(argv: list[str] | None = None) -> int:
    return_freed_memory_to_os()  # streams come and go: their buffers should not stay resident
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return asyncio.run(run_daemon(sys.argv[1:] if argv is None else argv))
    except (ConfigError, AuthConfigError, InsecureListenError, StoreError) as exc:
        print(f"streamer: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
