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
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import msgpack
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed


@dataclass(frozen=True)
class ScriptSegment:
    start: float
    end: float
    text: str


@dataclass
class FakeSession:
    start: dict
    json_mode: bool
    audio: bytearray = field(default_factory=bytearray)
    frame_sizes: list[int] = field(default_factory=list)
    flushes: int = 0
    stopped: bool = False


class FakeDaemon:
    def __init__(self, scripts: dict[str, Sequence[ScriptSegment]] | None = None, refuse_language: str = "xx") -> None:
        # Which script a session gets: by its `language` (so one fake serves several meeting streams), else "".
        self.scripts = scripts or {"": ()}
        self.refuse_language = refuse_language
        self.sessions: list[FakeSession] = []
        self.url = ""

    @asynccontextmanager
    async def running(self) -> AsyncIterator[FakeDaemon]:
        async with serve(self._handle, "127.0.0.1", 0, compression=None) as server:
            port = server.sockets[0].getsockname()[1]
            self.url = f"ws://127.0.0.1:{port}/v1/stream"
            yield self

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
                    session = FakeSession(start, json_mode)
                    self.sessions.append(session)
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
        script = list(self.scripts.get(language, self.scripts.get("", ())))
        await self._send(ws, session, {"type": "ready", "session_id": "fake", "protocol": 1, "model": "fake", "sample_rate": rate})
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
                data = body["data"]
                if len(data) % (width * channels):
                    await self._fail(ws, session, 4415, "audio not a whole number of samples")
                    return
                session.audio += data
                session.frame_sizes.append(len(data))
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
