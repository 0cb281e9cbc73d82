"""Per-session journals on disk: every `stable` segment is written (and fsync'd) before it is sent.

One JSON-lines file per session, `<dir>/<session_id>.jsonl`: a `session` header line, then one
`stable` line per committed segment, in id order. A client never holds a segment the disk does not,
so a crash (even kill -9) loses no text it had received; a line torn by the crash is the last one
and is skipped on reading. After a restart `GET /v1/sessions/{id}/transcript` reads it back.

Ownership: a `JournalWriter` belongs to its session (event-loop thread). Appends are small and
synchronous: an fsync costs about a millisecond, far below a tick, and it is what makes the
promise hold.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wire import Stable, server_message_body

log = logging.getLogger("streamer.state.journal")

SESSION_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{8,64}$")  # never a path separator nor `..`
TRANSCRIPT_PATH = re.compile(r"^/v1/sessions/([^/]+)/transcript$")
SUFFIX = ".jsonl"


class InvalidSessionId(ValueError):
    pass


def check_session_id(session_id: str) -> str:
    if not SESSION_ID_PATTERN.match(session_id):
        raise InvalidSessionId(f"invalid session id {session_id!r}")
    return session_id


@dataclass(frozen=True)
class JournalSegment:
    id: int
    start: float
    end: float
    text: str
    language: str
    words: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class JournalTranscript:
    session_id: str
    key_id: str | None  # the key that opened the session; only it may read the transcript
    created: float
    segments: tuple[JournalSegment, ...]

    @property
    def text(self) -> str:
        return "".join(s.text for s in self.segments)

    @property
    def last_stable_id(self) -> int:
        return self.segments[-1].id if self.segments else -1

    def to_json(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "created": self.created,
            "last_stable_id": self.last_stable_id,
            "text": self.text,
            "segments": [
                {"id": s.id, "start": s.start, "end": s.end, "text": s.text, "language": s.language, "words": list(s.words)}
                for s in self.segments
            ],
        }


class JournalWriter:
    """Appends one session's stable segments; each append is on disk when it returns."""

    def __init__(self, path: Path, session_id: str, key_id: str | None, now: float) -> None:
        self.path = path
        # O_APPEND: a line is written whole at the end even if another writer appeared by mistake.
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._write({"type": "session", "session_id": session_id, "key_id": key_id, "created": now})
        self._last_id = -1

    def append(self, stable: Stable) -> None:
        if stable.id <= self._last_id:
            raise ValueError(f"stable {stable.id} after {self._last_id}: ids must increase")
        self._write(server_message_body(stable))
        self._last_id = stable.id

    def _write(self, record: dict[str, Any]) -> None:
        data = (json.dumps(record, ensure_ascii=False, allow_nan=False) + "\n").encode("utf-8")
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class Journal:
    """The journal folder: writers for new sessions, readers by session id, retention."""

    def __init__(self, directory: Path, retention_seconds: float) -> None:
        if retention_seconds <= 0:
            raise ValueError(f"journal retention must be > 0 s, got {retention_seconds}")
        self.directory = directory
        self.retention_seconds = retention_seconds
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)

    def path_of(self, session_id: str) -> Path:
        return self.directory / f"{check_session_id(session_id)}{SUFFIX}"

    def open(self, session_id: str, key_id: str | None, now: float | None = None) -> JournalWriter:
        return JournalWriter(self.path_of(session_id), session_id, key_id, time.time() if now is None else now)

    def read(self, session_id: str) -> JournalTranscript | None:
        """The session's transcript as journaled, or None if there is no journal for it."""
        try:
            raw = self.path_of(session_id).read_bytes()
        except FileNotFoundError:
            return None
        header: dict[str, Any] | None = None
        segments: list[JournalSegment] = []
        lines = raw.split(b"\n")
        for number, line in enumerate(lines):
            if not line:
                continue
            try:
                record = json.loads(line)
            except ValueError:
                if number == len(lines) - 1:
                    break  # torn by a crash mid-write: that segment was never sent
                raise
            if record.get("type") == "session":
                header = record
            elif record.get("type") == "stable":
                segments.append(
                    JournalSegment(
                        record["id"], record["start"], record["end"], record["text"], record["language"], tuple(record.get("words", ()))
                    )
                )
        if header is None:
            return None
        return JournalTranscript(session_id, header.get("key_id"), float(header.get("created", 0.0)), tuple(segments))

    def cleanup(self, now: float | None = None) -> int:
        """Deletes journals untouched for longer than the retention; returns how many."""
        now = time.time() if now is None else now
        removed = 0
        for path in self.directory.glob(f"*{SUFFIX}"):
            try:
                if now - path.stat().st_mtime > self.retention_seconds:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue  # removed meanwhile
        if removed:
            log.info("journal: removed %d journal(s) older than %.0f s", removed, self.retention_seconds)
        return removed
