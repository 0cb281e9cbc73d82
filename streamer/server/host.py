"""What every interface sees of the daemon: a host of streams, and the sink a stream's messages go to.

Protocol v1, Deepgram, OpenAI Realtime, OpenAI REST and Wyoming (streamer/interfaces) import
this, never the server: each opens streams on a `StreamHost`, feeds them, ends them, and gets
their messages through its own `MessageSink`. `registry.StreamRegistry` is the host; the daemon
composes the two (streamer/app.py). Everything here runs in the event-loop thread.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from model.whisper import Whisper
from wire import ServerMessage, Start

from ..metrics import StreamerMetrics
from ..state.journal import JournalWriter
from ..stream.session import ModelInfo, Session
from .limits import AudioRateLimiter
from .resume import StableHistory

T = TypeVar("T")


class MessageSink(Protocol):
    """Where a stream's messages go: protocol v1's `Outbox`, or an interface's translator."""

    closing: bool
    task: asyncio.Task[None]  # the writer: done once the connection's last frame is out
    # Protocol v1's streams survive their connection (a client resumes them, on this replica or,
    # with a shared store, another); the other interfaces' streams end with theirs.
    resumable: bool

    # `after`: a stable's write to the shared store; protocol v1 sends the stable only once it is
    # stored (a resume elsewhere must find it). The other interfaces never resume and ignore it.
    def send(self, message: ServerMessage, after: asyncio.Future[bool] | None = None) -> None: ...
    def close(self, code: int, reason: str = "") -> None: ...
    def fail(self, code: int, message: str) -> None: ...


@dataclass(eq=False)
class Stream:
    """A session and what the daemon keeps beside it, across connections."""

    session: Session
    start: Start
    key_id: str | None
    rate: AudioRateLimiter
    journal: JournalWriter | None
    history: StableHistory = field(default_factory=StableHistory)
    outbox: MessageSink | None = None  # None while parked (no connection)
    expired: bool = False  # parked past its window: being finalised, then removed
    failed: bool = False  # closed with 1011 by a worker failure: never resumable
    arrivals: deque[tuple[float, float]] = field(default_factory=deque)  # (stream seconds after a frame, monotonic time)
    lag_warned: bool = False

    def lag(self, now: float) -> float:
        """Seconds the oldest undecoded speech of this stream has waited (0 when none waits)."""
        since = self.session.undecoded_since
        if since is None:
            self.arrivals.clear()
            return 0.0
        while self.arrivals and self.arrivals[0][0] <= since:
            self.arrivals.popleft()  # frames every decode has covered
        return now - self.arrivals[0][1] if self.arrivals else 0.0


class StreamHost(Protocol):
    """Streams for an interface: admitted, fed, flushed, ended; every call in the event-loop thread.

    Admission and audio limits raise `ProtocolError` with the close code to answer; a stream's
    `stable` messages are journaled (and stored) before its sink gets them.
    """

    metrics: StreamerMetrics

    @property
    def shutting_down(self) -> bool: ...

    async def open_stream(self, sink: MessageSink, start: Start, key_id: str | None) -> Stream:
        """A new stream (or, for a `start` with `resume`, protocol v1's stream taken back)."""
        ...

    def feed(self, stream: Stream, data: bytes) -> None:
        """Audio in the stream's `start` encoding."""
        ...

    def flush(self, stream: Stream) -> None: ...

    def stop(self, stream: Stream) -> None:
        """No more audio: what is pending is decoded, journaled and sent, then `End`."""
        ...

    def release(self, stream: Stream, why: str, *, resumable: bool = False) -> None:
        """The stream's connection is gone. A resumable stream is parked for a resume; any
        other finishes: its pending speech is still decoded and journaled."""
        ...

    async def model_info(self) -> ModelInfo: ...

    def submit_model_call(self, call: Callable[[Whisper], T]) -> Future[T]:
        """Work on the model worker between stream batches (an upload's next window)."""
        ...
