"""The interfaces: protocol v1 and the drop-ins for clients written against other services.

Each is a thin translation onto the daemon's streams: protocol v1 at `/v1/stream`
(docs/protocol.md), Deepgram's live API at `/v1/listen`, OpenAI's Realtime transcription at
`/v1/realtime`, OpenAI's REST transcriptions at `/v1/audio/*` (on the same port), Wyoming on its
own TCP port (docs/compat.md). Keys, limits, admission, journal and metrics are the daemon's
own: an interface only opens, feeds and ends streams through a `StreamHost`
(streamer/server/host.py), never the server itself.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.http11 import Request, Response

from ..config import Config
from ..server.auth import AuthDecision, Authenticator, credentials_from_request, json_response
from ..server.host import StreamHost
from ..server.http import STREAM_PATH, HttpRoutes, text_response
from .credentials import interface_credentials
from .credentials import select_subprotocol as choose_subprotocol
from .deepgram_ws import serve_deepgram
from .http_upload import FrontDoor, UploadConnection
from .openai_realtime_ws import RealtimeConnection
from .openai_rest import ApiError, models_body
from .openai_rest_server import RestTranscriptions, too_large, wants_upload
from .v1 import ProtocolV1
from .wyoming_server import WyomingServer

WebsocketHandler = Callable[[ServerConnection], Awaitable[None]]
DEEPGRAM_PATH = "/v1/listen"
REALTIME_PATH = "/v1/realtime"


def _openai_error(status: int, message: str, code: str | None) -> Response:
    return text_response(HTTPStatus(status), ApiError(status, message, None, code).body().decode("utf-8"), "application/json")


class Interfaces:
    """Registers the interfaces' routes and dispatches their connections; the daemon's front end."""

    def __init__(self, host: StreamHost, config: Config, routes: HttpRoutes, auth: Authenticator, *, secure: bool) -> None:
        self._host = host
        self._config = config
        self._auth = auth
        self._secure = secure
        v1 = ProtocolV1(host, self._authenticate_v1, config.server.max_frame_bytes)
        self._websockets: dict[str, WebsocketHandler] = {STREAM_PATH: v1.serve, DEEPGRAM_PATH: self._deepgram, REALTIME_PATH: self._realtime}
        for path in (DEEPGRAM_PATH, REALTIME_PATH):
            routes.add_websocket(path, self._check_handshake)
        self.rest = RestTranscriptions(host, config.openai, self.authenticate)
        routes.add("/v1/models", self._models)
        self._wyoming = WyomingServer(host, config.wyoming.uri, config.model.model) if config.wyoming.uri else None

    # ---- authentication -----------------------------------------------------------------------

    def _authenticate_v1(self, request: Request) -> AuthDecision:
        """Protocol v1's credentials: a key or a browser token (docs/protocol.md)."""
        return self._auth.authenticate(credentials_from_request(request, secure=self._secure), time.time())

    def authenticate(self, request: Request) -> AuthDecision:
        """The other services' credentials, as their SDKs send them."""
        return self._auth.authenticate(interface_credentials(request, secure=self._secure), time.time())

    def _check_handshake(self, request: Request) -> Response | None:
        """A bad key is refused at the handshake with 401 (what these SDKs expect), 403 for an origin."""
        decision = self.authenticate(request)
        if decision.ok:
            return None
        assert decision.http_status is not None
        self._host.metrics.reject("unauthorized" if decision.http_status == 401 else "forbidden_origin")
        body = {"error": {"message": decision.reason, "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}}
        return json_response(HTTPStatus(decision.http_status), body)

    # ---- plain HTTP ---------------------------------------------------------------------------

    def _models(self, request: Request) -> Response:
        decision = self.authenticate(request)
        if not decision.ok:
            return _openai_error(decision.http_status or 401, decision.reason, "invalid_api_key")
        return text_response(HTTPStatus.OK, json.dumps(models_body(self._config.model.model)), "application/json")

    def connection_factory(self, *args: Any, **kwargs: Any) -> asyncio.Protocol:
        """websockets' connection behind a `FrontDoor` that diverts uploads (http_upload.py)."""
        return FrontDoor(ServerConnection(*args, **kwargs), wants_upload, self._upload_connection)

    def _upload_connection(self) -> asyncio.Protocol:
        return UploadConnection(self.rest.handle, self._config.openai.max_upload_bytes, too_large(self._config.openai.max_upload_bytes))

    # ---- websocket paths ----------------------------------------------------------------------

    def websocket_handler(self, path: str) -> WebsocketHandler:
        """The handler of a websocket path `HttpRoutes` let through (protocol v1 for any other)."""
        return self._websockets.get(path, self._websockets[STREAM_PATH])

    def select_subprotocol(self, connection: ServerConnection, offered: Sequence[str]) -> Any:
        return choose_subprotocol(offered)

    async def _deepgram(self, websocket: ServerConnection) -> None:
        assert websocket.request is not None
        decision = self.authenticate(websocket.request)
        await serve_deepgram(self._host, self._config.deepgram, websocket, decision.key_id)

    async def _realtime(self, websocket: ServerConnection) -> None:
        assert websocket.request is not None
        decision = self.authenticate(websocket.request)
        await RealtimeConnection(self._host, websocket).run(decision.key_id)

    # ---- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        if self._wyoming is not None:
            await self._wyoming.start()

    async def stop_accepting(self) -> None:
        if self._wyoming is not None:
            self._wyoming.close()
