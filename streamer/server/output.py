"""A stream's messages on their way out: journal, history, shared store, then the sink.

Every `stable` is journaled (fsync'd) and recorded before it is sent, also while nobody listens;
with a shared store, protocol v1's sink sends it only once the store holds it, so a resume on
another replica finds every stable the client saw. Runs in the event-loop thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from wire import CloseCode, End, LanguageDetected, Partial, ServerMessage, Stable

from ..metrics import StreamerMetrics
from ..state.store import SessionStore, committed_text
from .host import Stream

log = logging.getLogger("streamer.server.output")


class StreamOutput:
    def __init__(
        self, store: SessionStore, metrics: StreamerMetrics, prompt_chars: int, *, refused: Callable[[Stream, str, CloseCode], None]
    ) -> None:
        self._store = store
        self._metrics = metrics
        self._prompt_chars = prompt_chars
        self._refused = refused  # the store refused a segment: (stream, why, close code)

    def deliver(self, stream: Stream, messages: list[ServerMessage]) -> None:
        for message in messages:
            stored: asyncio.Future[bool] | None = None
            if isinstance(message, Stable):
                if stream.journal is not None:
                    stream.journal.append(message)
                stream.history.record(message)
                self._metrics.stable_segments_total.inc()
                stored = self._store_stable(stream, message)
            elif isinstance(message, Partial):
                self._store.note_partial(stream.session.id, message.words)
            elif isinstance(message, LanguageDetected):
                log.info("session %s: language %s (p=%.2f)", stream.session.id, message.language, message.probability)
            if isinstance(message, End):
                self._store.end(stream.session.id)
            if stream.outbox is not None:
                stream.outbox.send(message, stored)
                if isinstance(message, End):
                    stream.outbox.close(CloseCode.NORMAL, "")

    def _store_stable(self, stream: Stream, stable: Stable) -> asyncio.Future[bool] | None:
        context = committed_text(stream.history.segments, self._prompt_chars)
        write = self._store.append(stream.session.id, stable, context)
        if write is not None:
            write.add_done_callback(lambda done: self._check_stored(stream, done))
        return write

    def _check_stored(self, stream: Stream, write: asyncio.Future[bool]) -> None:
        """A write the store refused (the stream moved to another replica) or failed."""
        error = None if write.cancelled() else write.exception()
        if error is None and (write.cancelled() or write.result()):
            return
        if error is not None:
            self._refused(stream, f"store failed: {error}", CloseCode.INTERNAL_ERROR)
        else:
            self._refused(stream, "session resumed on another replica", CloseCode.OUT_OF_ORDER)
