"""`python -m streamer [--config FILE] [--host H] [--port P] [--model M] [--section.key VALUE ...]`

Prints exactly one line to stdout, `listening on ws://HOST:PORT`, once connections are accepted
(the bound port when `--port 0`); everything else is logged to stderr.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys

from .config import ConfigError, load_config
from .server import StreamerServer
from .worker import ModelWorker

log = logging.getLogger("streamer")


async def run_daemon(argv: list[str]) -> int:
    config = load_config(None, argv)
    logging.getLogger().setLevel(config.server.log_level.upper())
    worker = ModelWorker(config.model, config.stream)
    worker.start()  # loads the model in its own thread while the socket opens
    server = StreamerServer(config, worker)
    host, port = await server.start()
    shown_host = f"[{host}]" if ":" in host else host
    print(f"listening on ws://{shown_host}:{port}", flush=True)
    log.info("listening on ws://%s:%d (stream at /v1/stream, page at /)", shown_host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await server.serve_until(stop)
    return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return asyncio.run(run_daemon(sys.argv[1:] if argv is None else argv))
    except ConfigError as exc:
        print(f"streamer: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
