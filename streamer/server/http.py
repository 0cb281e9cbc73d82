"""Plain HTTP on the websocket port: a route table, health probes and the static browser page.

websockets calls `HttpRoutes.process_request` for every incoming request; returning None lets the
websocket handshake go on (only for `/v1/stream`). Routes are added with `add`, so later layers
(metrics, tokens) plug in without touching the server.
"""

from __future__ import annotations

import json
import mimetypes
from collections.abc import Callable
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from ..state.journal import SESSION_ID_PATTERN, TRANSCRIPT_PATH, Journal

STREAM_PATH = "/v1/stream"
STATIC_DIR = Path(__file__).resolve().parents[1] / "static"

RouteHandler = Callable[[Request], Response]


def text_response(status: HTTPStatus, body: str, content_type: str = "text/plain; charset=utf-8") -> Response:
    data = body.encode("utf-8")
    headers = Headers([("Content-Type", content_type), ("Content-Length", str(len(data))), ("Cache-Control", "no-store")])
    return Response(status.value, status.phrase, headers, data)


class HttpRoutes:
    """Exact-path routes, then static files under `static_dir`; everything else is 404."""

    def __init__(self, static_dir: Path = STATIC_DIR) -> None:
        self._routes: dict[str, RouteHandler] = {}
        self._prefixes: dict[str, RouteHandler] = {}
        self._websockets: dict[str, Callable[[Request], Response | None]] = {}
        self._static_dir = static_dir.resolve()

    def add(self, path: str, handler: RouteHandler) -> None:
        if path in self._routes or path == STREAM_PATH:
            raise ValueError(f"route {path} is already taken")
        self._routes[path] = handler

    def add_websocket(self, path: str, check: Callable[[Request], Response | None]) -> None:
        """Another websocket path (streamer/interfaces): `check` refuses the handshake with a response, or lets it on."""
        if path in self._routes or path in self._websockets or path == STREAM_PATH:
            raise ValueError(f"route {path} is already taken")
        self._websockets[path] = check

    def add_prefix(self, prefix: str, handler: RouteHandler) -> None:
        """Every path under `prefix` (which ends with "/") goes to `handler`, which validates the rest."""
        if not prefix.endswith("/") or prefix in self._prefixes:
            raise ValueError(f"prefix {prefix} must end with / and be free")
        self._prefixes[prefix] = handler

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if path == STREAM_PATH:
            return None  # the websocket handshake proceeds (and answers 426 to plain HTTP)
        check = self._websockets.get(path)
        if check is not None:
            return check(request)
        handler = self._routes.get(path)
        if handler is not None:
            return handler(request)
        for prefix, prefix_handler in self._prefixes.items():
            if path.startswith(prefix):
                return prefix_handler(request)
        return self.static_file(path)

    def static_file(self, path: str) -> Response:
        relative = unquote(path).lstrip("/") or "index.html"
        target = (self._static_dir / relative).resolve()
        if target.is_dir():
            target = target / "index.html"
        # resolve() follows `..` and links; anything that lands outside the folder is refused.
        if not target.is_relative_to(self._static_dir) or not target.is_file():
            return text_response(HTTPStatus.NOT_FOUND, f"not found: {path}\n")
        data = target.read_bytes()
        content_type = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        if content_type.startswith("text/") or content_type in ("application/javascript", "application/json"):
            content_type += "; charset=utf-8"
        headers = Headers([("Content-Type", content_type), ("Content-Length", str(len(data))), ("Cache-Control", "no-cache")])
        return Response(HTTPStatus.OK.value, HTTPStatus.OK.phrase, headers, data)


def transcript_response(journal: Journal, path: str, key_id: str | None) -> Response:
    """`GET /v1/sessions/{id}/transcript` → the journaled transcript as JSON.

    `key_id` is the authenticated key (None when authentication is off); a session opened with a
    key is readable only with that key.
    """
    match = TRANSCRIPT_PATH.match(path)
    if match is None or not SESSION_ID_PATTERN.match(match.group(1)):
        return _json(HTTPStatus.BAD_REQUEST, {"error": "expected /v1/sessions/{session_id}/transcript with a valid id"})
    transcript = journal.read(match.group(1))
    if transcript is None or (transcript.key_id is not None and transcript.key_id != key_id):
        # The same answer for "not yours" as for "absent": ids of others' sessions are not confirmed.
        return _json(HTTPStatus.NOT_FOUND, {"error": f"no transcript for session {match.group(1)}"})
    return _json(HTTPStatus.OK, transcript.to_json())


def _json(status: HTTPStatus, body: dict[str, Any]) -> Response:
    return text_response(status, json.dumps(body, ensure_ascii=False) + "\n", "application/json")

