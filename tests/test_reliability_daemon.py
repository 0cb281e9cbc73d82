"""The real daemon (tiny.en) on loopback: keys, tokens, origins, per-key limits, resume, journal after kill -9."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import msgpack
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, WebSocketException

from benchmarks.data import Clip
from benchmarks.wer import word_error_rate
from model.audio import SAMPLE_RATE, load_audio
from streamer.server.auth import API_KEYS_ENV, key_digest

from .conftest import Daemon, clip_by_id

pytestmark = pytest.mark.slow

WEB_ORIGIN = "https://captions.example"


@dataclass
class Reply:
    messages: list[dict] = field(default_factory=list)
    close_code: int | None = None
    close_reason: str = ""

    def of(self, kind: str) -> list[dict]:
        return [m for m in self.messages if m["type"] == kind]


def http(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def metric(daemon: Daemon, name: str, **labels: str) -> float:
    status, body = http(daemon.http_url + "/metrics")
    assert status == 200
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    raise KeyError(name)


def pcm16(audio: np.ndarray) -> bytes:
    return (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()


async def read_until_closed(ws, reply: Reply) -> None:
    """Collects the server's messages until it closes, then its close code and reason."""
    try:
        async for frame in ws:
            reply.messages.append(msgpack.unpackb(frame))
    except ConnectionClosed:
        pass
    reply.close_code, reply.close_reason = ws.close_code, ws.close_reason or ""


async def session(url: str, audio: np.ndarray, headers: dict[str, str] | None = None, start: dict | None = None) -> Reply:
    """Start, the audio in 0.5 s frames at full speed, stop; everything that comes back."""
    reply = Reply()
    async with connect(url, max_size=None, additional_headers=headers or {}) as ws:
        await ws.send(msgpack.packb({"type": "start", **(start or {})}))
        try:
            for offset in range(0, len(audio), SAMPLE_RATE // 2):
                await ws.send(msgpack.packb({"type": "audio", "data": pcm16(audio[offset : offset + SAMPLE_RATE // 2])}))
            await ws.send(msgpack.packb({"type": "stop"}))
        except ConnectionClosed:
            pass
        await read_until_closed(ws, reply)
    return reply


@pytest.fixture(scope="module")
def keyed_daemon(tmp_path_factory):
    """A daemon with keys: `ops` (any origin listed globally: none), `web` (one origin, one stream),
    and `cli` from the environment variable; its journal in a temporary folder."""
    folder = tmp_path_factory.mktemp("keyed")
    keys = folder / "keys.toml"
    keys.write_text(
        f'[[key]]\nid = "ops"\nsha256 = "{key_digest("ops-secret")}"\n'
        f'[[key]]\nid = "web"\nsecret = "web-secret"\norigins = ["{WEB_ORIGIN}"]\nmax_streams = 1\n'
    )
    os.environ[API_KEYS_ENV] = "cli:cli-secret"
    try:
        server = Daemon("--auth.keys-file", str(keys), "--journal.directory", str(folder / "journal"))
    finally:
        del os.environ[API_KEYS_ENV]
    yield server
    server.stop()


@pytest.fixture(scope="module")
def jfk(shared_data: list[Clip]) -> tuple[Clip, np.ndarray]:
    clip = clip_by_id(shared_data, "jfk_inaugural_excerpt")
    return clip, load_audio(clip.path)


def test_without_a_key_nothing_is_processed(keyed_daemon: Daemon, jfk) -> None:
    _, audio = jfk
    before = metric(keyed_daemon, "streamer_audio_seconds_total")
    for headers in ({}, {"Authorization": "Bearer wrong-secret"}):
        reply = asyncio.run(session(keyed_daemon.url, audio[: 3 * SAMPLE_RATE], headers))
        assert reply.close_code == 4401, reply
        assert not reply.of("ready") and reply.of("error")[0]["code"] == 4401
    assert metric(keyed_daemon, "streamer_audio_seconds_total") == before  # not one sample was decoded
    assert metric(keyed_daemon, "streamer_rejected_sessions_total", reason="unauthorized") >= 2
    # the same over plain HTTP: no key, no transcript, no token
    assert http(keyed_daemon.http_url + "/v1/sessions/" + "0" * 32 + "/transcript")[0] == 401
    assert http(keyed_daemon.http_url + "/v1/token", "POST")[0] == 401


def test_a_key_for_another_origin_is_refused(keyed_daemon: Daemon, jfk) -> None:
    clip, audio = jfk
    other = asyncio.run(session(keyed_daemon.url, audio[:SAMPLE_RATE], {"Authorization": "Bearer web-secret", "Origin": "https://evil.example"}))
    assert other.close_code == 4403 and not other.of("ready")
    # `ops` lists no origin and there is no global list: a browser page elsewhere may not use it either
    ops = asyncio.run(session(keyed_daemon.url, audio[:SAMPLE_RATE], {"Authorization": "Bearer ops-secret", "Origin": WEB_ORIGIN}))
    assert ops.close_code == 4403
    good = asyncio.run(session(keyed_daemon.url, audio, {"Authorization": "Bearer web-secret", "Origin": WEB_ORIGIN}))
    assert good.close_code == 1000 and word_error_rate([clip.text], ["".join(s["text"] for s in good.of("stable"))]) <= 0.15


def test_browser_token_flow_and_transcript_access(keyed_daemon: Daemon, jfk) -> None:
    _clip, audio = jfk
    status, body = http(keyed_daemon.http_url + "/v1/token", "POST", {"Authorization": "Bearer web-secret", "Origin": WEB_ORIGIN})
    assert status == 200, body
    token = json.loads(body)["token"]
    reply = asyncio.run(session(f"{keyed_daemon.url}?token={token}", audio, {"Origin": WEB_ORIGIN}))
    assert reply.close_code == 1000, reply.close_reason
    session_id = reply.of("ready")[0]["session_id"]
    # a token is not a key: it cannot mint tokens
    assert http(f"{keyed_daemon.http_url}/v1/token?token={token}", "POST")[0] == 401
    transcript_url = f"{keyed_daemon.http_url}/v1/sessions/{session_id}/transcript"
    status, body = http(transcript_url, headers={"Authorization": "Bearer web-secret"})
    assert status == 200
    assert json.loads(body)["text"] == "".join(s["text"] for s in reply.of("stable"))
    assert http(transcript_url, headers={"Authorization": "Bearer ops-secret"})[0] == 404  # not ops' session
    assert http(f"{keyed_daemon.http_url}/v1/sessions/..%2f..%2fetc/transcript", headers={"Authorization": "Bearer ops-secret"})[0] == 400


def test_per_key_stream_limit(keyed_daemon: Daemon, jfk) -> None:
    _, audio = jfk
    headers = {"Authorization": "Bearer web-secret"}

    async def two() -> tuple[Reply, Reply]:
        async with connect(keyed_daemon.url, additional_headers=headers) as first:
            await first.send(msgpack.packb({"type": "start"}))
            assert msgpack.unpackb(await first.recv())["type"] == "ready"
            second = await session(keyed_daemon.url, audio[:SAMPLE_RATE], headers)
            await first.send(msgpack.packb({"type": "stop"}))
            rest = Reply([msgpack.unpackb(f) async for f in first])
        return rest, second

    first, second = asyncio.run(two())
    assert second.close_code == 4429 and "web" in second.close_reason
    assert first.of("end")
    # the slot is free again once the first stream ended
    assert asyncio.run(session(keyed_daemon.url, audio[:SAMPLE_RATE], headers)).close_code == 1000


def test_env_key_and_audio_rate_limit(keyed_daemon: Daemon) -> None:
    async def flood() -> Reply:
        reply = Reply()
        async with connect(keyed_daemon.url, max_size=None, additional_headers={"Authorization": "Bearer cli-secret"}) as ws:
            await ws.send(msgpack.packb({"type": "start"}))
            silence = bytes(2 * SAMPLE_RATE)  # 1 s frames, as fast as the socket takes them
            try:
                for _ in range(120):  # 120 s of audio at once: past the 60 s burst
                    await ws.send(msgpack.packb({"type": "audio", "data": silence}))
            except ConnectionClosed:
                pass
            await read_until_closed(ws, reply)
        return reply

    reply = asyncio.run(flood())
    assert reply.of("ready")  # the environment's key works
    assert reply.close_code == 4429 and "real time" in reply.close_reason


def test_no_keys_refuses_to_listen_beyond_loopback() -> None:
    env = {k: v for k, v in os.environ.items() if k != API_KEYS_ENV}
    done = subprocess.run(
        [sys.executable, "-m", "streamer", "--host", "0.0.0.0", "--port", "0"], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 2
    assert "without API keys" in done.stderr and done.stdout == ""


# ---- resume ------------------------------------------------------------------------------------


def pieces_of(clip: Clip, audio: np.ndarray, utterances: tuple[int, ...]) -> list[np.ndarray]:
    """The chosen utterances of a `long` clip, each with 1 s of silence after it: the voice activity
    detector hears each utterance end within its own frame, so each is committed by one final decode."""
    pieces = []
    for index in utterances:
        segment = clip.segments[index]
        begin, end = int((segment.start_s - 0.1) * SAMPLE_RATE), int((segment.end_s + 0.1) * SAMPLE_RATE)
        pieces.append(np.concatenate([audio[max(0, begin) : end], np.zeros(SAMPLE_RATE, np.float32)]))
    return pieces


QUIET_SECONDS = 2.5  # no message for this long after a piece's text: its decode is over


async def quiet(ws, reply: Reply, seconds: float) -> None:
    """Reads until the daemon has said nothing for `seconds` (after at least one new stable)."""
    stables = len(reply.of("stable"))
    async with asyncio.timeout(60):
        while True:
            try:
                frame = await asyncio.wait_for(ws.recv(), seconds)
            except TimeoutError:
                if len(reply.of("stable")) > stables:
                    return
                continue
            reply.messages.append(msgpack.unpackb(frame))


async def resumable_run(url: str, pieces: list[np.ndarray], drops: dict[int, str]) -> tuple[Reply, list[dict]]:
    """Sends each piece as one frame and waits for its text before the next, so each piece is decoded
    alone, however fast or loaded the machine. (No `flush`: whether it reached the daemon before or
    after the piece's endpoint decode began would change what that decode commits.) `drops[k]` cuts the connection after piece k:
    "after" once its text came, "in_flight" right after sending it. Returns all messages and the
    `ready` of every connection."""
    reply, readies = Reply(), []
    resume: dict | None = None
    k = 0
    while k < len(pieces):
        start: dict = {"type": "start"}
        if resume is not None:
            start["resume"] = resume
        ws = await connect(url, max_size=None)
        await ws.send(msgpack.packb(start))
        ready = msgpack.unpackb(await ws.recv())
        assert ready["type"] == "ready", ready
        readies.append(ready)
        if resume is not None and drops.get(k - 1) == "in_flight":
            await quiet(ws, reply, QUIET_SECONDS)  # the dropped piece's text: replayed, or still being decoded
        # the server says how much audio it holds: continue from there
        held = round(ready.get("audio_seconds", 0.0) * SAMPLE_RATE)
        while k < len(pieces):
            begin = sum(len(p) for p in pieces[:k])
            await ws.send(msgpack.packb({"type": "audio", "data": pcm16(pieces[k][max(0, held - begin) :])}))
            if drops.get(k) == "in_flight":
                ws.transport.abort()  # the network is gone: no close frame
                k += 1
                break
            await quiet(ws, reply, QUIET_SECONDS)
            k += 1
            if drops.get(k - 1) == "after":
                ws.transport.abort()
                break
        else:
            await ws.send(msgpack.packb({"type": "stop"}))
            try:
                async for frame in ws:
                    reply.messages.append(msgpack.unpackb(frame))
            except ConnectionClosed:
                pass
            reply.close_code = ws.close_code
            return reply, readies
        stables = reply.of("stable")
        resume = {"session_id": readies[0]["session_id"], "last_stable_id": stables[-1]["id"] if stables else -1}
        await asyncio.sleep(0.5)  # the daemon notices the loss
    raise AssertionError("unreachable: the last piece ends with stop")


def test_resume_after_drops_gives_the_uninterrupted_transcript(daemon: Daemon, shared_data: list[Clip]) -> None:
    clip = clip_by_id(shared_data, "long_mixed_speakers")
    audio = load_audio(clip.path)
    utterances = (0, 1, 4, 7)
    pieces = pieces_of(clip, audio, utterances)
    whole, _ = asyncio.run(resumable_run(daemon.url, pieces, {}))
    resumed, readies = asyncio.run(resumable_run(daemon.url, pieces, {0: "after", 2: "in_flight"}))
    for reply in (whole, resumed):
        ids = [s["id"] for s in reply.of("stable")]
        assert ids == list(range(len(ids))), ids  # nothing lost, nothing repeated
        assert reply.close_code == 1000 and reply.of("end")
    assert len(readies) == 3 and all(r["session_id"] == readies[0]["session_id"] for r in readies)
    assert readies[1]["resumed"] and readies[2]["resumed"]
    assert readies[2]["audio_seconds"] == pytest.approx(sum(len(p) for p in pieces[:3]) / SAMPLE_RATE, abs=0.01)  # all of piece 2
    whole_text = "".join(s["text"] for s in whole.of("stable"))
    assert "".join(s["text"] for s in resumed.of("stable")) == whole_text
    assert [(s["start"], s["end"]) for s in resumed.of("stable")] == [(s["start"], s["end"]) for s in whole.of("stable")]
    reference = " ".join(clip_by_id(shared_data, clip.segments[i].id).text for i in utterances)
    assert word_error_rate([reference], [whole_text]) <= 0.2, whole_text


def test_resume_of_an_unknown_session_is_4404(daemon: Daemon) -> None:
    async def attempt() -> Reply:
        async with connect(daemon.url) as ws:
            await ws.send(msgpack.packb({"type": "start", "resume": {"session_id": "f" * 32, "last_stable_id": -1}}))
            reply = Reply()
            try:
                async for frame in ws:
                    reply.messages.append(msgpack.unpackb(frame))
            except ConnectionClosed:
                pass
        reply.close_code = ws.close_code
        return reply

    reply = asyncio.run(attempt())
    assert reply.close_code == 4404 and reply.of("error")[0]["code"] == 4404


# ---- journal after kill -9 ---------------------------------------------------------------------


def test_kill_9_keeps_every_stable_segment_the_client_received(tmp_path: Path, shared_data: list[Clip]) -> None:
    clip = clip_by_id(shared_data, "long_mixed_speakers")
    audio = load_audio(clip.path)[: 40 * SAMPLE_RATE]
    journal = tmp_path / "journal"
    first = Daemon("--journal.directory", str(journal))
    received: list[dict] = []
    session_id = ""
    try:

        async def until_killed() -> None:
            nonlocal session_id
            async with connect(first.url, max_size=None) as ws:
                await ws.send(msgpack.packb({"type": "start"}))
                session_id = msgpack.unpackb(await ws.recv())["session_id"]

                async def send() -> None:
                    for offset in range(0, len(audio), SAMPLE_RATE // 10):
                        await ws.send(msgpack.packb({"type": "audio", "data": pcm16(audio[offset : offset + SAMPLE_RATE // 10])}))
                        await asyncio.sleep(0.05)  # 2x real time, never stop

                sender = asyncio.create_task(send())
                try:
                    async with asyncio.timeout(120):
                        async for frame in ws:
                            message = msgpack.unpackb(frame)
                            if message["type"] == "stable":
                                received.append(message)
                                if len(received) == 3:
                                    first.process.send_signal(signal.SIGKILL)  # mid-session, mid-speech
                except ConnectionClosed:
                    pass
                sender.cancel()

        asyncio.run(until_killed())
        assert first.process.wait(timeout=30) == -signal.SIGKILL
    finally:
        if first.process.poll() is None:
            first.process.kill()
            first.process.wait()
    assert len(received) >= 3
    second = Daemon("--journal.directory", str(journal))
    try:
        status, body = http(f"{second.http_url}/v1/sessions/{session_id}/transcript")
    finally:
        second.stop()
    assert status == 200, body
    journaled = json.loads(body)["segments"]
    by_id = {s["id"]: s for s in journaled}
    for message in received:
        assert by_id[message["id"]]["text"] == message["text"]
        assert by_id[message["id"]]["end"] == message["end"]


# ---- TLS -------------------------------------------------------------------------------------------


def test_tls_when_a_certificate_is_configured(tmp_path: Path, jfk) -> None:
    import ssl

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=60,
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "streamer", "--host", "127.0.0.1", "--port", "0", "--server.tls-cert", str(cert), "--server.tls-key", str(key)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        line = process.stdout.readline()
        assert line.startswith("listening on wss://"), line
        address = line.strip().removeprefix("listening on wss://")
        client_context = ssl.create_default_context(cafile=str(cert))
        clip, audio = jfk

        async def over_tls() -> Reply:
            reply = Reply()
            async with connect(f"wss://{address}/v1/stream", ssl=client_context, max_size=None) as ws:
                await ws.send(msgpack.packb({"type": "start"}))
                for offset in range(0, len(audio), SAMPLE_RATE):
                    await ws.send(msgpack.packb({"type": "audio", "data": pcm16(audio[offset : offset + SAMPLE_RATE])}))
                await ws.send(msgpack.packb({"type": "stop"}))
                reply.messages = [msgpack.unpackb(f) async for f in ws]
            reply.close_code = ws.close_code
            return reply

        reply = asyncio.run(over_tls())
        assert reply.close_code == 1000
        assert word_error_rate([clip.text], ["".join(s["text"] for s in reply.of("stable"))]) <= 0.15
        with urllib.request.urlopen(f"https://{address}/healthz", context=client_context, timeout=10) as response:
            assert response.status == 200
        with pytest.raises((OSError, EOFError, WebSocketException)):  # plain ws:// to a TLS port fails
            asyncio.run(session(f"ws://{address}/v1/stream", audio[:SAMPLE_RATE]))
    finally:
        process.terminate()
        process.wait(timeout=30)
