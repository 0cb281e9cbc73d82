"""What every command-line client shares: connection arguments, and errors turned into exit codes."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Coroutine
from typing import Any

from websockets.exceptions import InvalidHandshake, InvalidURI

from wire import Framing

from .audio_file import AudioInputError
from .connection import ConnectOptions, StreamClosedError
from .protocol import ServerProtocolError

DEFAULT_URL = "ws://127.0.0.1:8765/v1/stream"
EXIT_STREAM_ERROR = 1  # the server closed the session with an error
EXIT_USAGE = 2  # bad arguments, unreadable input, nothing to connect to


def add_connection_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default=os.environ.get("WHISPER_STREAMER_URL", DEFAULT_URL), help="stream endpoint, ws://HOST:PORT/v1/stream")
    parser.add_argument("--api-key", default=os.environ.get("WHISPER_STREAMER_API_KEY"), help="sent as 'Authorization: Bearer KEY' (default: $WHISPER_STREAMER_API_KEY)")
    parser.add_argument("--json-mode", action="store_true", help="speak the JSON framing instead of msgpack")


def connect_options(args: argparse.Namespace) -> ConnectOptions:
    return ConnectOptions(args.url, Framing.JSON if args.json_mode else Framing.MSGPACK, args.api_key)


def run_client(program: str, main: Coroutine[Any, Any, int]) -> int:
    """Run a client's coroutine; the errors a user can act on become one line on stderr and an exit code."""
    try:
        return asyncio.run(main)
    except StreamClosedError as exc:
        print(f"{program}: {exc}", file=sys.stderr)
        return EXIT_STREAM_ERROR
    except ServerProtocolError as exc:
        print(f"{program}: the server broke the protocol: {exc}", file=sys.stderr)
        return EXIT_STREAM_ERROR
    except (AudioInputError, InvalidURI) as exc:
        print(f"{program}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except InvalidHandshake as exc:
        print(f"{program}: the server refused the connection: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (OSError, TimeoutError) as exc:
        print(f"{program}: cannot reach the daemon: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{program}: interrupted", file=sys.stderr)
        return 130
