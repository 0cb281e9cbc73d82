"""A stream's messages to one interface connection: batched, translated, written by one task.

The daemon hands a stream's messages over one at a time, but those of one decode belong
together (the stable segments of an endpoint, then the partial after them): the sink collects
what one `_deliver` call hands over and translates it as one batch, on the next loop turn, so a
translator knows which stable is the last of an utterance. Frames go out in order through one
writer task, so a slow client delays only itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from wire import ServerMessage

MAX_REASON_BYTES = 123


@dataclass(frozen=True)
class CloseFrame:
    code: int
    reason: str


Frame = str | bytes | CloseFrame
Translate = Callable[[Sequence[ServerMessage]], list[Frame]]


def short_reason(reason: str) -> str:
    return reason.encode("utf-8")[:MAX_REASON_BYTES].decode("utf-8", errors="ignore")


class TranslatingSink:
    """A `MessageSink` (streamer/server/host.py) whose `translate` turns batches of messages into frames (and closes)."""

    resumable = False  # the other services' streams end with their connection

    def __init__(self, websocket: ServerConnection, translate: Translate, on_error: Callable[[int, str], list[Frame]]) -> None:
        self._websocket = websocket
        self._translate = translate
        self._on_error = on_error
        self._batch: list[ServerMessage] = []
        self._queue: asyncio.Queue[Frame] = asyncio.Queue()
        self.closing = False
        self.task = asyncio.create_task(self._run(), name=f"interface-writer-{websocket.id}")

    def send(self, message: ServerMessage, after: asyncio.Future[bool] | None = None) -> None:
        if self.closing:
            return
        if not self._batch:
            asyncio.get_running_loop().call_soon(self.flush)
        self._batch.append(message)

    def send_frames(self, frames: Sequence[Frame]) -> None:
        """Frames of the interface itself (replies to its client's messages), after any pending batch."""
        self.flush()
        for frame in frames:
            self._put(frame)

    def flush(self) -> None:
        batch, self._batch = self._batch, []
        if batch and not self.closing:
            for frame in self._translate(batch):
                self._put(frame)

    def close(self, code: int, reason: str = "") -> None:
        self.flush()
        self._put(CloseFrame(code, short_reason(reason)))

    def fail(self, code: int, message: str) -> None:
        """A fatal error in the interface's own error shape, then the close its `on_error` chose."""
        self.flush()
        for frame in self._on_error(code, message):
            self._put(frame)

    def _put(self, frame: Frame) -> None:
        if self.closing:
            return
        if isinstance(frame, CloseFrame):
            self.closing = True
        self._queue.put_nowait(frame)

    async def _run(self) -> None:
        try:
            while True:
                frame = await self._queue.get()
                if isinstance(frame, CloseFrame):
                    await self._websocket.close(frame.code, frame.reason)
                    return
                await self._websocket.send(frame)
        except ConnectionClosed:
            return
