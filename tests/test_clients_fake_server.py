"""A TEST FAKE of the daemon's websocket side, speaking docs/protocol.md, for client tests.

It transcribes nothing: it is given a script of (start, end, text) segments and, as audio time
advances, sends each segment's words as `partial` and then as `stable` once the audio has passed
the segment's end. It checks the client strictly (order of messages, whole samples, framing)
and keeps every audio byte, so tests compare what arrived with the clip that was sent.
The real-daemon tests are in test_clients_daemon.py.
"""

from __future__ import annotations

import asyncio
import json
import mimetypes
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast
from urllib.parse import urlsplit

import msgpack
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response


@dataclass(frozen=True)
class ScriptSegment:
    start: float
    end: float
    text: str


@dataclass
class FakeSession:
    start: dict
    json_mode: bool
    path: str = "/v1/stream"
    audio: bytearray = field(default_factory=bytearray)
    frame_sizes: list[int] = field(default_factory=list)
    flushes: int = 0
    stopped: bool = False


class FakeDaemon:
    def __init__(
        self, *scripts: Sequence[ScriptSegment], refuse_language: str = "xx", static_dir: Path | None = None, drop_first_after_s: float | None = None
    ) -> None:
        # The k-th session gets the k-th script (the last one when there are fewer): meeting streams differ.
        self.scripts = scripts or ((),)
        self.refuse_language = refuse_language
        self.static_dir = static_dir  # serve the browser page, like the daemon does at /
        self.drop_first_after_s = drop_first_after_s  # cut the first connection (no close frame) after this much audio
        self.sessions: list[FakeSession] = []
        self.url = ""

    @asynccontextmanager
    async def running(self) -> AsyncIterator[FakeDaemon]:
        async with serve(self._handle, "127.0.0.1", 0, compression=None, process_request=self._http) as server:
            port = server.sockets[0].getsockname()[1]
            self.url = f"ws://127.0.0.1:{port}/v1/stream"
            self.http_url = f"http://127.0.0.1:{port}"
            yield self

    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        path = urlsplit(request.path).path
        if path == "/v1/stream" or self.static_dir is None:
            return None
        target = self.static_dir / (path.lstrip("/") or "index.html")
        if not target.is_file():
            return connection.respond(404, "not found\n")
        body = target.read_bytes()
        kind = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
        return Response(200, "OK", Headers([("Content-Type", kind), ("Content-Length", str(len(body)))]), body)

    async def _fail(self, ws: ServerConnection, session: FakeSession | None, code: int, message: str) -> None:
        body = {"type": "error", "code": code, "message": message}
        await ws.send(json.dumps(body) if session is None or session.json_mode else msgpack.packb(body))
        await ws.close(code, message)

    async def _handle(self, ws: ServerConnection) -> None:
        session: FakeSession | None = None
        try:
            async for frame in ws:
                if session is None:
                    json_mode = isinstance(frame, str)
                    start = json.loads(frame) if json_mode else msgpack.unpackb(frame)
                    if start.get("type") != "start":
                        await self._fail(ws, None, 4409, "expected start")
                        return
                    session = FakeSession(start, json_mode, ws.request.path if ws.request else "")
                    self.sessions.append(session)
                    if "resume" in start:  # this fake keeps no sessions to resume
                        await self._fail(ws, session, 4404, "unknown session")
                        return
                    if start.get("language") == self.refuse_language:
                        await self._fail(ws, session, 4415, f"unsupported language {self.refuse_language!r}")
                        return
                    await self._run(ws, session)
                    return
        except ConnectionClosed:
            pass

    async def _send(self, ws: ServerConnection, session: FakeSession, body: dict) -> None:
        await ws.send(json.dumps(body) if session.json_mode else msgpack.packb(body, use_bin_type=True))

    async def _run(self, ws: ServerConnection, session: FakeSession) -> None:
        start = session.start
        rate, channels = start.get("sample_rate", 16000), start.get("channels", 1)
        width = {"pcm_s16le": 2, "f32le": 4}[start.get("encoding", "pcm_s16le")]
        language = start.get("language", "auto")
        script = list(self.scripts[min(len(self.sessions) - 1, len(self.scripts) - 1)])
        await self._send(ws, session, {"type": "ready", "session_id": f"fake-{len(self.sessions)}", "protocol": 1, "model": "fake", "sample_rate": rate})
        await self._send(ws, session, {"type": "language", "language": "en" if language == "auto" else language, "probability": 1.0})
        next_id = 0

        async def emit(upto: float, final: bool) -> None:
            nonlocal next_id
            while script and (script[0].end <= upto or (final and script[0].start < upto)):
                segment = script.pop(0)
                words = segment.text.split()
                step = (segment.end - segment.start) / len(words)
                timed = [
                    {"word": " " + w, "start": segment.start + i * step, "end": segment.start + (i + 1) * step, "probability": 0.9}
                    for i, w in enumerate(words)
                ]
                await self._send(ws, session, {"type": "stable", "id": next_id, "start": segment.start, "end": segment.end, "text": " " + segment.text, "words": timed, "language": "en"})
                next_id += 1
            if script and script[0].start < upto and not final:
                segment = script[0]
                share = (upto - segment.start) / (segment.end - segment.start)
                words = segment.text.split()
                await self._send(ws, session, {"type": "partial", "text": " " + " ".join(words[: max(1, int(len(words) * share))]), "start": segment.start, "end": upto, "words": []})

        async for frame in ws:
            body = (json.loads(frame) if isinstance(frame, str) else {"type": "audio", "data": frame}) if session.json_mode else msgpack.unpackb(frame)
            kind = body.get("type")
            if session.stopped:
                await self._fail(ws, session, 4409, f"{kind} after stop")
                return
            if kind == "audio":
                data = cast(bytes, body["data"])
                if len(data) % (width * channels):
                    await self._fail(ws, session, 4415, "audio not a whole number of samples")
                    return
                session.audio += data
                session.frame_sizes.append(len(data))
                seconds = len(session.audio) / (width * channels) / rate
                if self.drop_first_after_s is not None and session is self.sessions[0] and seconds >= self.drop_first_after_s:
                    ws.transport.abort()  # the daemon "crashes": no close frame, the client sees 1006
                    return
                await emit(len(session.audio) / (width * channels) / rate, final=False)
            elif kind == "flush":
                session.flushes += 1
            elif kind == "stop":
                session.stopped = True
                seconds = len(session.audio) / (width * channels) / rate
                await emit(seconds, final=True)
                await self._send(ws, session, {"type": "end", "last_stable_id": next_id - 1, "audio_seconds": seconds})
                await ws.close(1000)
                return
            else:
                await self._fail(ws, session, 4409, f"unexpected {kind!r}")
                return


def test_fake_daemon_speaks_the_documented_handshake() -> None:
    from websockets.asyncio.client import connect

    async def scenario() -> list[dict]:
        async with FakeDaemon().running() as fake, connect(fake.url) as ws:
            await ws.send(json.dumps({"type": "start"}))
            return [json.loads(await ws.recv()) for _ in range(2)]

    ready, language = asyncio.run(scenario())
    assert ready["type"] == "ready" and ready["protocol"] == 1
    assert language == {"type": "language", "language": "en", "probability": 1.0}
