"""HTTP requests with a body (`POST /v1/audio/*` uploads) on the websocket port.

websockets answers plain HTTP only without a body, so every new connection first meets a
`FrontDoor`: it reads the request head, and hands the connection (its transport, and the bytes
read so far) either to the websockets connection it was made for, or, for an upload, to an
`UploadConnection`, which speaks HTTP/1.1 with `h11`: it reads the body (413 beyond the limit),
awaits the handler's `UploadResponse`, writes it (a streamed body as chunks: SSE) and closes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import h11
from websockets.asyncio.server import ServerConnection
from websockets.server import ServerProtocol

log = logging.getLogger("streamer.interfaces.http")

MAX_HEAD_BYTES = 16 * 1024


@dataclass(frozen=True)
class UploadRequest:
    method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes


@dataclass(frozen=True)
class UploadResponse:
    status: int
    content_type: str
    body: bytes = b""
    stream: AsyncIterator[bytes] | None = None  # a body written as it comes (chunked)
    headers: tuple[tuple[str, str], ...] = field(default=())


UploadHandler = Callable[[UploadRequest], Awaitable[UploadResponse]]
TooLarge = Callable[[int], UploadResponse]


class UploadConnection(asyncio.Protocol):
    """One HTTP/1.1 request with a body, then the connection closes."""

    def __init__(self, handler: UploadHandler, max_body: int, too_large: TooLarge) -> None:
        self._handler = handler
        self._max_body = max_body
        self._too_large = too_large
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        self._transport: asyncio.Transport | None = None
        self._request: h11.Request | None = None
        self._body = bytearray()
        self._task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()  # the client left: its transcription is abandoned

    def data_received(self, data: bytes) -> None:
        if self._task is not None:
            return  # one request per connection: anything after its body is ignored
        try:
            self._h11.receive_data(data)
            self._events()
        except h11.RemoteProtocolError as exc:
            self._reply(UploadResponse(400, "text/plain; charset=utf-8", f"bad HTTP request: {exc}\n".encode()))

    def _events(self) -> None:
        while self._task is None:
            event = self._h11.next_event()
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Request):
                self._request = event
                length = dict(event.headers).get(b"content-length")
                if length is not None and length.isdigit() and int(length) > self._max_body:
                    self._reply(self._too_large(int(length)))
                elif self._h11.they_are_waiting_for_100_continue:
                    self._write(h11.InformationalResponse(status_code=100, headers=[]))  # curl waits for it before a large body
            elif isinstance(event, h11.Data):
                self._body.extend(event.data)
                if len(self._body) > self._max_body:
                    self._reply(self._too_large(len(self._body)))
            elif isinstance(event, h11.EndOfMessage):
                assert self._request is not None
                request = UploadRequest(
                    self._request.method.decode("ascii"),
                    self._request.target.decode("latin-1"),
                    [(k.decode("latin-1"), v.decode("latin-1")) for k, v in self._request.headers],
                    bytes(self._body),
                )
                self._body = bytearray()
                self._task = asyncio.create_task(self._respond(request), name="upload")
            elif isinstance(event, h11.ConnectionClosed):
                return

    def _reply(self, response: UploadResponse) -> None:
        """An answer before the body is read (an error): sent, then the connection closes."""
        self._task = asyncio.create_task(self._send(response), name="upload-refusal")

    async def _respond(self, request: UploadRequest) -> None:
        try:
            response = await self._handler(request)
        except Exception:
            log.exception("upload %s %s: internal error", request.method, request.target)
            response = UploadResponse(500, "application/json", b'{"error": {"message": "internal error", "type": "server_error", "param": null, "code": null}}')
        await self._send(response)

    async def _send(self, response: UploadResponse) -> None:
        assert self._transport is not None
        headers: list[tuple[str, str]] = [("Content-Type", response.content_type), ("Connection", "close"), ("Cache-Control", "no-store"), *response.headers]
        if response.stream is None:
            headers.append(("Content-Length", str(len(response.body))))
        try:
            self._write(h11.Response(status_code=response.status, headers=headers))
            if response.stream is None:
                self._write(h11.Data(data=response.body))
            else:
                async for chunk in response.stream:
                    self._write(h11.Data(data=chunk))
            self._write(h11.EndOfMessage())
        except h11.LocalProtocolError as exc:
            log.warning("upload response not sent: %s", exc)
        finally:
            self._transport.close()

    def _write(self, event: Any) -> None:
        assert self._transport is not None
        data = self._h11.send(event)
        if data and not self._transport.is_closing():
            self._transport.write(data)


class FrontDoor(asyncio.Protocol):
    """Reads a new connection's request head, then hands it on (module docstring)."""

    def __init__(self, websocket: ServerConnection, wants: Callable[[bytes], bool], upload: Callable[[], asyncio.Protocol]) -> None:
        self._websocket = websocket
        self._wants = wants
        self._upload = upload
        self._transport: asyncio.BaseTransport | None = None
        self._head = bytearray()

    @property
    def protocol(self) -> ServerProtocol:
        """The websockets connection's own (websockets' subprotocol selection checks it)."""
        return self._websocket.protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        assert self._transport is not None
        self._head.extend(data)
        if b"\r\n" not in self._head and len(self._head) < MAX_HEAD_BYTES:
            return
        request_line = bytes(self._head.split(b"\r\n", 1)[0])
        target: asyncio.Protocol = self._upload() if self._wants(request_line) else self._websocket
        self._transport.set_protocol(target)
        target.connection_made(self._transport)
        target.data_received(bytes(self._head))

    def connection_lost(self, exc: Exception | None) -> None:
        pass  # closed before its first line: nothing was started

    def eof_received(self) -> bool | None:
        return None
