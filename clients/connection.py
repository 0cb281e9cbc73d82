"""`ClientProtocol` over a websocket: open a session, send audio, read the server's messages."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from .protocol import NORMAL_CLOSE, ClientProtocol, End, ErrorMessage, Framing, Ready, Received, StartOptions, State


class StreamClosedError(Exception):
    """The session ended without `end`: an error close, a lost connection, or a refused `start`."""

    def __init__(self, code: int, reason: str, error: ErrorMessage | None = None) -> None:
        detail = (error.message if error else "") or reason or "connection lost"
        super().__init__(f"server closed the stream with code {code}: {detail}")
        self.code = code
        self.reason = reason
        self.error = error


@dataclass(frozen=True)
class ConnectOptions:
    url: str
    framing: Framing = Framing.MSGPACK
    api_key: str | None = None
    open_timeout_s: float = 10.0

    def __post_init__(self) -> None:
        if not self.url.startswith(("ws://", "wss://")):
            raise ValueError(f"the stream URL must start with ws:// or wss://, got {self.url!r}")
        if not self.open_timeout_s > 0:
            raise ValueError(f"open_timeout_s must be positive, got {self.open_timeout_s}")


class StreamConnection:
    """One transcription session. Use `open`, then `send_audio`/`flush`/`stop`, and iterate for messages."""

    def __init__(self, websocket: ClientConnection, protocol: ClientProtocol) -> None:
        self.websocket = websocket
        self.protocol = protocol
        self.last_error: ErrorMessage | None = None
        self.handshake: Received | None = None  # the `ready` message, as received
        self._send_lock = asyncio.Lock()

    @classmethod
    async def open(cls, connect_options: ConnectOptions, start: StartOptions) -> StreamConnection:
        """Connect, send `start` and wait for `ready`; raises `StreamClosedError` when refused."""
        headers = {"Authorization": f"Bearer {connect_options.api_key}"} if connect_options.api_key else None
        websocket = await connect(
            connect_options.url,
            additional_headers=headers,
            open_timeout=connect_options.open_timeout_s,
            max_size=None,  # server messages are small; never refuse a long stable segment
            compression=None,  # audio does not compress; spare both CPUs the work
        )
        connection = cls(websocket, ClientProtocol(start, connect_options.framing))
        try:
            await websocket.send(connection.protocol.start())
            received = await connection.receive()
            while isinstance(received.message, ErrorMessage):
                received = await connection.receive()  # a refusal: the close that follows raises
            connection.handshake = received
        except BaseException:
            await websocket.close()
            raise
        return connection

    @property
    def ready(self) -> Ready:
        assert self.protocol.ready is not None  # `open` returns only after `ready`
        return self.protocol.ready

    async def send_audio(self, pcm: bytes) -> None:
        await self._send(self.protocol.audio(pcm))

    async def flush(self) -> None:
        await self._send(self.protocol.flush())

    async def stop(self) -> None:
        await self._send(self.protocol.stop())

    async def _send(self, frame: bytes | str) -> None:
        try:
            async with self._send_lock:
                await self.websocket.send(frame)
        except ConnectionClosed as exc:
            raise self._closed_error(exc) from exc

    async def receive(self) -> Received:
        """The next server message; `StreamClosedError` when the connection closes instead."""
        try:
            frame = await self.websocket.recv()
        except ConnectionClosed as exc:
            raise self._closed_error(exc) from exc
        received = self.protocol.receive(frame)
        if isinstance(received.message, ErrorMessage) and received.message.fatal:
            self.last_error = received.message
        return received

    async def messages(self) -> AsyncIterator[Received]:
        """Every server message up to and including `end`; then waits for the server's close."""
        while self.protocol.state is not State.ENDED:
            yield await self.receive()
        await self.websocket.close()

    def _closed_error(self, exc: ConnectionClosed) -> StreamClosedError:
        code = exc.rcvd.code if exc.rcvd is not None else 1006
        reason = exc.rcvd.reason if exc.rcvd is not None else ""
        if code == NORMAL_CLOSE and self.protocol.state is not State.ENDED:
            reason = reason or "closed before 'end'"
        return StreamClosedError(code, reason, self.last_error)

    async def close(self) -> None:
        await self.websocket.close()


async def stream_session(
    connection: StreamConnection,
    frames: AsyncIterator[bytes],
    on_message: Callable[[Received], None],
    on_sent: Callable[[int], None] = lambda samples: None,
) -> End:
    """Send every frame of `frames` then `stop`, while handing each server message to `on_message`.

    Returns the `end` message; raises `StreamClosedError` (the sender is cancelled) when the
    server closes the session early. `on_sent` hears of each frame (its samples per channel)
    right after it was sent.
    """

    async def send_all() -> None:
        async for pcm in frames:
            await connection.send_audio(pcm)
            on_sent(len(pcm) // connection.protocol.options.bytes_per_frame)
        await connection.stop()

    async def receive_all() -> None:
        async for received in connection.messages():
            on_message(received)

    # A TaskGroup cancels the sender when the receiver fails, and the other way round.
    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(send_all())
            group.create_task(receive_all())
    except ExceptionGroup as failed:
        # Callers handle one error; each exception keeps its own traceback.
        raise failed.exceptions[0] from failed
    assert connection.protocol.end is not None
    return connection.protocol.end
