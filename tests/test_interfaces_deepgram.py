"""Deepgram's live API at /v1/listen: the translator without a socket, then the real deepgram-sdk
(7.x) against the daemon with tiny.en on shared clips."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from benchmarks.daemon import Daemon
from benchmarks.wer import word_error_rate
from streamer.interfaces.deepgram import (
    CloseStream,
    DeepgramTranslator,
    Finalize,
    KeepAlive,
    SchemaError,
    parse_client_text,
    parse_query,
)
from streamer.interfaces.g711 import alaw_to_pcm16, ulaw_to_pcm16
from tests.conftest import INTERFACE_KEY, clip_by_id
from tests.interface_clips import chunks, encode, pcm16
from wire import End, Partial, ProtocolError, Stable, VadEvent, WordTiming

deepgram = pytest.importorskip("deepgram", reason="the test extra's deepgram-sdk is not installed")
from deepgram import DeepgramClient
from deepgram.core.api_error import ApiError
from deepgram.core.events import EventType
from deepgram.environment import DeepgramClientEnvironment

CLIP = "ls_1272-128104-0000"


# ---- without a socket ---------------------------------------------------------------------------


def test_query_maps_onto_a_stream_and_ignores_unknown_parameters() -> None:
    options = parse_query("model=nova-3&language=en-US&encoding=mulaw&sample_rate=8000&channels=1&interim_results=true"
                          "&utterance_end_ms=1000&vad_events=true&diarize=true&tag=x&keyterm=Quilter&keyterm=gospel")
    assert (options.model, options.language, options.encoding, options.sample_rate) == ("nova-3", "en", "mulaw", 8000)
    assert options.interim_results and options.vad_events and options.utterance_end_ms == 1000
    assert options.keyterms == ("Quilter", "gospel")
    start = options.start()
    assert (start.sample_rate, start.encoding, start.language, start.events) == (8000, "pcm_s16le", "en", ("vad",))
    assert start.prompt == " Quilter, gospel."  # key terms become the decoder's previous-text context
    assert parse_query("language=multi").language == "auto"
    assert parse_query("sample_rate=44100").start().sample_rate == 16000  # without encoding: a container, decoded to 16 kHz
    # endpointing in ms becomes the stream's endpoint silence, no shorter than our VAD can tell
    assert parse_query("").start().endpoint_silence is None and parse_query("endpointing=true").start().endpoint_silence is None
    assert parse_query("endpointing=800").start().endpoint_silence == 0.8
    assert parse_query("endpointing=10").start().endpoint_silence == 0.3
    assert not parse_query("endpointing=false").endpointing
    with pytest.raises(ProtocolError):
        parse_query("encoding=flac")
    with pytest.raises(ProtocolError):
        parse_query("encoding=linear16&sample_rate=fast")


def test_client_messages() -> None:
    assert isinstance(parse_client_text('{"type": "KeepAlive"}'), KeepAlive)
    assert isinstance(parse_client_text('{"type": "Finalize", "channel": 0}'), Finalize)
    assert isinstance(parse_client_text('{"type": "CloseStream"}'), CloseStream)
    for bad in ("{not json", "[1]", '{"type": 3}', '{"type": "Dance"}'):
        with pytest.raises(SchemaError):
            parse_client_text(bad)


def _words(text: str, start: float, end: float) -> tuple[WordTiming, ...]:
    parts = text.split()
    step = (end - start) / len(parts)
    return tuple(WordTiming(" " + w, start + i * step, start + (i + 1) * step, 0.9) for i, w in enumerate(parts))


def test_translator_finals_cover_the_audio_once_and_the_endpoint_is_speech_final() -> None:
    translator = DeepgramTranslator(parse_query("interim_results=true&utterance_end_ms=1000&vad_events=true"), "tiny.en")
    out = translator.translate([VadEvent("speech_start", 0.3)], True)
    assert out[0]["type"] == "SpeechStarted" and out[0]["timestamp"] == 0.3
    out = translator.translate([Partial(" Hello world", 0.4, 1.2, _words("Hello world", 0.4, 1.2))], True)
    assert out[0]["is_final"] is False and out[0]["channel"]["alternatives"][0]["transcript"] == "Hello world"
    first = Stable(0, 0.4, 1.2, " Hello world.", _words("Hello world.", 0.4, 1.2), "en")
    out = translator.translate([first], True)
    assert out[0]["is_final"] and not out[0]["speech_final"] and (out[0]["start"], out[0]["duration"]) == (0.0, 1.2)
    assert out[0]["channel"]["alternatives"][0]["words"][1] == {"word": "world", "start": 0.8, "end": 1.2, "confidence": 0.9, "punctuated_word": "world."}
    assert translator.translate([VadEvent("speech_end", 2.0)], True) == []
    second, third = (Stable(1, 1.5, 1.8, " Again", _words("Again", 1.5, 1.8), "en"), Stable(2, 1.8, 2.0, " now.", _words("now.", 1.8, 2.0), "en"))
    out = translator.translate([second, third, Partial("", 2.0, 2.0)], False)
    assert [m["type"] for m in out] == ["Results", "Results", "UtteranceEnd"]
    assert (out[0]["start"], out[1]["start"]) == (1.2, 1.8) and not out[0]["speech_final"] and out[1]["speech_final"]
    assert out[2]["last_word_end"] == 2.0
    out = translator.translate([End(2, 3.0)], False)
    assert out[-1]["type"] == "Metadata" and out[-1]["duration"] == 3.0


def test_finalize_with_nothing_pending_answers_at_once() -> None:
    translator = DeepgramTranslator(parse_query(""), "tiny.en")
    out = translator.finalize(False, 1.5)
    assert out[0]["is_final"] and out[0]["from_finalize"] and out[0]["duration"] == 1.5


def test_g711_tables() -> None:
    # ITU-T G.711: mu-law 0xFF and 0x7F are zero, 0x00 the most negative; A-law 0xD5/0x55 are ±8.
    assert np.frombuffer(ulaw_to_pcm16(bytes([0xFF, 0x7F, 0x00, 0x80])), "<i2").tolist() == [0, 0, -32124, 32124]
    assert np.frombuffer(alaw_to_pcm16(bytes([0xD5, 0x55, 0xAA, 0x2A])), "<i2").tolist() == [8, -8, 32256, -32256]


# ---- the real SDK against the daemon ------------------------------------------------------------


def _client(daemon: Daemon, key: str = "any-key") -> DeepgramClient:
    host = daemon.address
    env = DeepgramClientEnvironment(base=f"http://{host}", production=f"ws://{host}", agent=f"ws://{host}", agent_rest=f"http://{host}")
    return DeepgramClient(api_key=key, environment=env)


def _run(client: DeepgramClient, audio: list[bytes], *, pace: float = 0.02, **options: Any) -> list[Any]:
    """Streams `audio` through the SDK, then Finalize and CloseStream; every message it received."""
    got: list[Any] = []
    with client.listen.v1.connect(model="nova-3", **options) as conn:
        conn.on(EventType.MESSAGE, got.append)
        listener = threading.Thread(target=conn.start_listening, daemon=True)
        listener.start()
        for chunk in audio:
            conn.send_media(chunk)
            time.sleep(pace)
        conn.send_finalize()
        conn.send_close_stream()
        listener.join(60)
    assert not listener.is_alive(), "the server did not close the stream after CloseStream"
    return got


def _finals(messages: list[Any]) -> list[Any]:
    return [m for m in messages if m.type == "Results" and m.is_final]


def _transcript(messages: list[Any]) -> str:
    return " ".join(m.channel.alternatives[0].transcript for m in _finals(messages))


@pytest.mark.slow
def test_sdk_linear16_transcribes_a_clip_with_deepgrams_message_sequence(daemon: Daemon, shared_data) -> None:
    clip = clip_by_id(shared_data, CLIP)
    audio = chunks(pcm16(clip.path) + bytes(32000), 3200)
    messages = _run(_client(daemon), audio, language="en-US", encoding="linear16", sample_rate=16000, channels=1,
                    interim_results=True, endpointing=300, utterance_end_ms=1000, vad_events=True, smart_format=True)
    types = [m.type for m in messages]
    assert types[0] == "SpeechStarted" and types[-1] == "Metadata"
    assert word_error_rate([clip.text], [_transcript(messages)]) < 0.15
    finals = _finals(messages)
    for before, after in itertools.pairwise(finals):
        assert abs(before.start + before.duration - after.start) < 1e-3  # finals cover the audio once
    assert finals[-1].speech_final or finals[-1].from_finalize
    assert finals[0].metadata.model_info.name == "nova-3"


@pytest.mark.slow
def test_sdk_mulaw_at_8khz(daemon: Daemon, shared_data) -> None:
    clip = clip_by_id(shared_data, CLIP)
    audio = chunks(encode(clip.path, "-f", "mulaw", "-ar", "8000") + b"\xff" * 8000, 1600)
    messages = _run(_client(daemon), audio, language="en", encoding="mulaw", sample_rate=8000)
    assert word_error_rate([clip.text], [_transcript(messages)]) < 0.2


@pytest.mark.slow
def test_sdk_webm_opus_container_is_decoded_by_ffmpeg(daemon: Daemon, shared_data) -> None:
    clip = clip_by_id(shared_data, CLIP)
    webm = encode(clip.path, "-af", "apad=pad_dur=1", "-c:a", "libopus", "-b:a", "32k", "-f", "webm")
    messages = _run(_client(daemon), chunks(webm, 4000), language="en")
    assert word_error_rate([clip.text], [_transcript(messages)]) < 0.15


@pytest.mark.slow
def test_bad_key_is_refused_at_the_handshake_with_401(keyed_daemon: Daemon) -> None:
    # deepgram-sdk 7 wraps the 401 in its ApiError with websockets' legacy API; with websockets 14+
    # the handshake's own InvalidStatus reaches the caller.
    with pytest.raises((ApiError, InvalidStatus)) as refused, _client(keyed_daemon, "wrong-key").listen.v1.connect(model="nova-3"):
        pass
    error = refused.value
    status = error.status_code if isinstance(error, ApiError) else error.response.status_code if isinstance(error, InvalidStatus) else None
    assert status == 401


async def _raw(url: str, **kwargs: Any) -> tuple[str | None, list[dict[str, Any]], int | None]:
    """Connects, sends bad JSON then CloseStream; the selected subprotocol, messages, close code."""
    async with connect(url, **kwargs) as ws:
        await ws.send("{not json")
        await ws.send(json.dumps({"type": "CloseStream"}))
        received = []
        try:
            while True:
                received.append(json.loads(await asyncio.wait_for(ws.recv(), 30)))
        except ConnectionClosed:
            pass
        return ws.subprotocol, received, ws.close_code


@pytest.mark.slow
def test_browser_token_subprotocol_is_selected_and_bad_json_keeps_the_stream(keyed_daemon: Daemon) -> None:
    url = f"ws://{keyed_daemon.address}/v1/listen?encoding=linear16&sample_rate=16000"
    subprotocol, received, code = asyncio.run(_raw(url, subprotocols=["token", INTERFACE_KEY]))
    assert subprotocol == "token"
    assert received[0]["type"] == "Error" and received[0]["variant"] == "SchemaError" and received[0]["message"] == "{not json"
    assert received[-1]["type"] == "Metadata" and code == 1000
    # The SDK's own header form, `Authorization: Token KEY`, passes too.
    assert asyncio.run(_raw(url, additional_headers={"Authorization": f"Token {INTERFACE_KEY}"}))[2] == 1000
    with pytest.raises(InvalidStatus) as refused:
        asyncio.run(_raw(url, subprotocols=["token", "wrong"]))
    assert refused.value.response.status_code == 401


async def _idle(url: str) -> tuple[int | None, str | None, float]:
    began = time.monotonic()
    async with connect(url, additional_headers={"Authorization": f"Token {INTERFACE_KEY}"}) as ws:
        try:
            while True:
                await asyncio.wait_for(ws.recv(), 30)
        except ConnectionClosed:
            pass
        return ws.close_code, ws.close_reason, time.monotonic() - began


@pytest.mark.slow
def test_no_audio_closes_with_1011_net_0001(keyed_daemon: Daemon) -> None:
    code, reason, waited = asyncio.run(_idle(f"ws://{keyed_daemon.address}/v1/listen?encoding=linear16"))
    assert (code, reason) == (1011, "NET-0001")
    assert 1.0 < waited < 10  # the fixture's idle_timeout is 1.5 s


async def _bad_neighbours(address: str) -> list[Any]:
    """Bad input on each other interface: each is refused alone, in its own shape."""
    import httpx

    outcomes: list[Any] = []
    async with connect(f"ws://{address}/v1/listen?encoding=flac") as ws:
        kind = json.loads(await ws.recv())["type"]
        await asyncio.wait_for(ws.wait_closed(), 10)
        outcomes.append((kind, ws.close_code))
    async with connect(f"ws://{address}/v1/realtime?intent=transcription") as ws:
        await ws.recv()  # session.created
        await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": "not base64!"}))
        outcomes.append(json.loads(await ws.recv())["error"]["code"])
    async with httpx.AsyncClient() as client:
        response = await client.post(f"http://{address}/v1/audio/transcriptions", content=b"--x\r\nbroken", headers={"Content-Type": "multipart/form-data; boundary=x"})
        outcomes.append((response.status_code, response.json()["error"]["type"]))
    return outcomes


@pytest.mark.slow
def test_bad_input_elsewhere_leaves_a_live_stream_untouched(daemon: Daemon, shared_data) -> None:
    clip = clip_by_id(shared_data, CLIP)
    outcomes: list[Any] = []
    neighbour = threading.Thread(target=lambda: outcomes.extend(asyncio.run(_bad_neighbours(daemon.address))))
    audio = chunks(pcm16(clip.path) + bytes(32000), 3200)

    def start_neighbours_midway() -> None:
        time.sleep(0.5)
        neighbour.start()

    threading.Thread(target=start_neighbours_midway, daemon=True).start()
    messages = _run(_client(daemon), audio, pace=0.05, language="en", encoding="linear16", sample_rate=16000)
    neighbour.join(60)
    assert outcomes == [("Error", 4415), "invalid_value", (400, "invalid_request_error")]
    assert word_error_rate([clip.text], [_transcript(messages)]) < 0.15
