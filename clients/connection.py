"""`ClientProtocol` over a websocket: open a session, send audio, read the server's messages.

`ResumingStream` goes further: one session across connections, resumed by itself when a
connection is lost or its replica drains (docs/deploy.md).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from wire import CloseCode, End, ErrorMessage, Framing, Ready, Stable, Start

from .protocol import RESUMABLE_CLOSES, ClientProtocol, Received, State, UnacknowledgedAudio, transcript_of


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
    async def open(cls, connect_options: ConnectOptions, start: Start) -> StreamConnection:
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
        if code == CloseCode.NORMAL and self.protocol.state is not State.ENDED:
            reason = reason or "closed before 'end'"
        return StreamClosedError(code, reason, self.last_error)

    async def close(self) -> None:
        await self.websocket.close()


# ---- a stream that survives its connection -----------------------------------------------------


@dataclass(frozen=True)
class ReconnectPolicy:
    """How a `ResumingStream` comes back: at once, then backing off, for at most `give_up_s`."""

    first_delay_s: float = 0.0
    initial_backoff_s: float = 0.1
    max_backoff_s: float = 2.0
    give_up_s: float = 60.0  # within the server's `stream.resume_window`

    def delays(self) -> Iterator[float]:
        yield self.first_delay_s
        delay = self.initial_backoff_s
        while True:
            yield delay
            delay = min(self.max_backoff_s, 2 * delay)


@dataclass(frozen=True)
class Resumed:
    """One move of the stream to a new connection (maybe another replica)."""

    close_code: int  # why the last connection ended
    lost_at: float  # time.monotonic() when it ended
    attempts: int  # connections tried until one took the stream back
    seconds: float  # from losing the connection to the new `ready`
    replayed_seconds: float  # audio sent again (the server did not hold it)


REPLAY_FRAME_S = 0.25  # audio sent again goes in frames of this many seconds (8 channels of f32 at 48 kHz: 384 KB)
RETRY_OPEN_CODES = RESUMABLE_CLOSES | {1012, 1013, 4429}  # worth another connection
OPEN_FAILURES = (OSError, TimeoutError, InvalidHandshake, ConnectionClosed)


class ResumingStream:
    """A session that resumes by itself when its connection is lost or its replica drains.

    It keeps the audio sent since the last `stable` (`UnacknowledgedAudio`); on a close in
    `RESUMABLE_CLOSES` it reconnects to the same address (a load balancer may pick another
    replica), resumes with the last stable id it holds, sends again what the server lacks, and
    goes on. The caller sees every message of every connection but the later `ready`s, so one
    stream of `stable` segments with contiguous ids; `on_resume` hears of each move.
    """

    def __init__(
        self,
        connect_options: ConnectOptions,
        start: Start,
        on_message: Callable[[Received], None],
        policy: ReconnectPolicy = ReconnectPolicy(),
        on_resume: Callable[[Resumed], None] = lambda resumed: None,
        on_sent: Callable[[int], None] = lambda samples: None,
    ) -> None:
        self.connect_options = connect_options
        self.start = start
        self.policy = policy
        self._on_message = on_message
        self._on_resume = on_resume
        self._on_sent = on_sent
        self._connection: StreamConnection | None = None
        self._kept = UnacknowledgedAudio(start.sample_rate, start.bytes_per_frame)
        self.stable: list[Stable] = []
        self.session_id: str | None = None
        self.resumes: list[Resumed] = []
        self._source_done = False

    @property
    def last_stable_id(self) -> int:
        return len(self.stable) - 1

    def transcript(self) -> str:
        """The stable text so far, across every connection."""
        return transcript_of(self.stable)

    async def open(self) -> Ready:
        """Opens the first connection (a refused `start` raises here); `run` opens it when not done."""
        if self._connection is None:
            self._connection = await StreamConnection.open(self.connect_options, self.start)
            self.session_id = self._connection.ready.session_id
            assert self._connection.handshake is not None
            self._on_message(self._connection.handshake)
        return self._connection.ready

    async def close(self) -> None:
        """Closes the current connection (`run` leaves it open only when it fails)."""
        if self._connection is not None:
            await self._connection.close()

    async def run(self, frames: AsyncIterator[bytes]) -> End:
        """Sends every frame then `stop` across as many connections as it takes; returns `end`.
        `on_sent` hears of each frame of `frames` (its samples per channel) once it was first sent."""
        await self.open()
        assert self._connection is not None
        connection = self._connection
        # The source is read by its own task: a connection's end must not cancel (and so end) it.
        source: asyncio.Queue[bytes | None] = asyncio.Queue()
        pump = asyncio.create_task(_pump(frames, source), name="resuming-stream-source")
        replay = b""
        try:
            while True:
                try:
                    end = await self._serve(connection, source, replay)
                    break
                except StreamClosedError as closed:
                    if closed.code not in RESUMABLE_CLOSES:
                        raise
                    connection, replay = await self._reconnect(closed)
                    self._connection = connection
        except BaseException:
            pump.cancel()
            raise
        (source_error,) = await asyncio.gather(pump, return_exceptions=True)  # it has ended: the session did
        if isinstance(source_error, Exception):
            raise source_error
        return end

    async def _serve(self, connection: StreamConnection, source: asyncio.Queue[bytes | None], replay: bytes) -> End:
        async def send_all() -> None:
            step = int(REPLAY_FRAME_S * self.start.sample_rate) * self.start.bytes_per_frame
            for offset in range(0, len(replay), step):  # frames of the usual size: under the frame limit
                await connection.send_audio(replay[offset : offset + step])
            while not self._source_done:
                pcm = await source.get()
                if pcm is None:
                    self._source_done = True
                    break
                self._kept.sent(pcm)  # kept before it is sent: a frame lost on the way is sent again
                await connection.send_audio(pcm)
                self._on_sent(len(pcm) // self.start.bytes_per_frame)
            await connection.stop()

        async def receive_all() -> None:
            async for received in connection.messages():
                if isinstance(received.message, Stable):
                    self.stable.append(received.message)
                    self._kept.acknowledge(received.message.end)
                self._on_message(received)

        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(send_all())
                group.create_task(receive_all())
        except ExceptionGroup as failed:
            raise failed.exceptions[0] from failed
        assert connection.protocol.end is not None
        return connection.protocol.end

    async def _reconnect(self, closed: StreamClosedError) -> tuple[StreamConnection, bytes]:
        """A new connection that took the stream back, and the audio to send it again."""
        assert self.session_id is not None
        lost_at = time.monotonic()
        resume = self.start.resuming(self.session_id, self.last_stable_id)
        attempts = 0
        for delay in self.policy.delays():
            if time.monotonic() - lost_at + delay > self.policy.give_up_s:
                raise closed
            await asyncio.sleep(delay)
            attempts += 1
            try:
                connection = await StreamConnection.open(self.connect_options, resume)
            except StreamClosedError as refused:
                if refused.code not in RETRY_OPEN_CODES:
                    raise
                continue
            except OPEN_FAILURES:
                continue
            replay = self._kept.since(connection.ready.audio_seconds)
            resumed = Resumed(closed.code, lost_at, attempts, time.monotonic() - lost_at, len(replay) / self.start.bytes_per_frame / self.start.sample_rate)
            self.resumes.append(resumed)
            self._on_resume(resumed)
            return connection, replay
        raise AssertionError("unreachable: delays() never ends")


async def _pump(frames: AsyncIterator[bytes], into: asyncio.Queue[bytes | None]) -> None:
    try:
        async for pcm in frames:
            into.put_nowait(pcm)
    finally:
        into.put_nowait(None)  # also when the source fails: the session stops, then its error is raised
