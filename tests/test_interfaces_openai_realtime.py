"""OpenAI Realtime transcription at /v1/realtime: the session without a socket, then the real
openai SDK (3.x, GA and beta clients) against the daemon with tiny.en on a shared clip."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus
from websockets.typing import Subprotocol

from benchmarks.daemon import Daemon
from benchmarks.wer import word_error_rate
from streamer.interfaces.openai_realtime import (
    AppendAudio,
    CommitTurn,
    OpenStream,
    RealtimeSession,
)
from tests.conftest import INTERFACE_KEY, clip_by_id
from tests.interface_clips import chunks, pcm16
from wire import Partial, Stable, VadEvent

openai = pytest.importorskip("openai", reason="the test extra's openai SDK is not installed")
from openai import OpenAI

CLIP = "ls_1272-128104-0000"
COMPLETED = "conversation.item.input_audio_transcription.completed"
DELTA = "conversation.item.input_audio_transcription.delta"


def _send(realtime: RealtimeSession, **event: Any) -> tuple[list[Any], list[dict[str, Any]]]:
    return realtime.receive(json.dumps(event))


# ---- without a socket ---------------------------------------------------------------------------


def test_ga_update_then_audio_opens_a_24khz_stream() -> None:
    session = RealtimeSession(beta=False)
    assert session.created()["type"] == "session.created"
    _, events = _send(session, type="session.update", session={"type": "transcription", "audio": {"input": {
        "format": {"type": "audio/pcm", "rate": 24000}, "transcription": {"model": "gpt-4o-transcribe", "language": "en", "prompt": "Quilter"}, "turn_detection": None}}})
    assert events[0]["type"] == "session.updated" and events[0]["session"]["audio"]["input"]["turn_detection"] is None
    actions, _ = _send(session, type="input_audio_buffer.append", audio=base64.b64encode(bytes(4800)).decode())
    assert isinstance(actions[0], OpenStream) and (actions[0].start.sample_rate, actions[0].start.language, actions[0].start.prompt) == (24000, "en", " Quilter")
    assert isinstance(actions[1], AppendAudio) and len(actions[1].pcm) == 4800


def test_silence_duration_ms_becomes_the_streams_endpoint_silence() -> None:
    default = RealtimeSession(beta=True)
    actions, _ = _send(default, type="input_audio_buffer.append", audio=base64.b64encode(bytes(480)).decode())
    assert actions[0].start.endpoint_silence is None  # not asked for: the daemon's endpointing

    session = RealtimeSession(beta=True)
    _, events = _send(session, type="transcription_session.update", event_id="e1", session={"turn_detection": {"type": "server_vad", "silence_duration_ms": "long"}})
    assert events[0]["type"] == "error" and events[0]["error"]["event_id"] == "e1"
    _send(session, type="transcription_session.update", session={"turn_detection": {"type": "server_vad", "silence_duration_ms": 900}})
    actions, _ = _send(session, type="input_audio_buffer.append", audio=base64.b64encode(bytes(480)).decode())
    assert isinstance(actions[0], OpenStream) and actions[0].start.endpoint_silence == 0.9
    _, events = _send(session, type="transcription_session.update", session={"turn_detection": {"type": "server_vad", "silence_duration_ms": 900}})
    assert events[0]["type"] != "error"  # the same value again is no change
    _, events = _send(session, type="transcription_session.update", session={"turn_detection": {"type": "server_vad", "silence_duration_ms": 300}})
    assert events[0]["type"] == "error"


def test_beta_g711_is_decoded_to_pcm_at_8khz() -> None:
    session = RealtimeSession(beta=False)
    _, events = _send(session, type="transcription_session.update", session={"input_audio_format": "g711_ulaw"})
    assert session.beta and events[0]["type"] == "transcription_session.updated" and events[0]["session"]["input_audio_format"] == "g711_ulaw"
    actions, _ = _send(session, type="input_audio_buffer.append", audio=base64.b64encode(b"\xff" * 800).decode())
    assert actions[0].start.sample_rate == 8000 and actions[1].pcm == bytes(1600)


def test_bad_events_are_error_events_that_echo_the_event_id() -> None:
    session = RealtimeSession(beta=False)
    cases = [
        ("{nope", "invalid_json"),
        (json.dumps({"type": "input_audio_buffer.append", "audio": "@@@", "event_id": "e1"}), "invalid_value"),
        (json.dumps({"type": "input_audio_buffer.append", "audio": 5}), "invalid_value"),
        (json.dumps({"type": "response.create"}), "unknown_event"),
        (json.dumps({"type": "input_audio_buffer.commit", "event_id": "e2"}), "input_audio_buffer_commit_empty"),
        (json.dumps({"type": "session.update", "session": {"type": "realtime"}}), "invalid_value"),
    ]
    for text, code in cases:
        actions, events = session.receive(text)
        assert actions == [] and events[0]["type"] == "error" and events[0]["error"]["code"] == code, text
    assert session.receive(cases[1][0])[1][0]["error"]["event_id"] == "e1"


def test_server_vad_turn_order_with_one_item_id() -> None:
    session = RealtimeSession(beta=False)
    _send(session, type="input_audio_buffer.append", audio=base64.b64encode(bytes(48000)).decode())
    events = session.translate([VadEvent("speech_start", 0.5)], True)
    events += session.translate([Stable(0, 0.5, 1.0, " Hello", (), "en"), Partial(" world", 1.0, 1.2)], True)
    events += session.translate([VadEvent("speech_end", 1.6)], True)
    events += session.translate([Stable(1, 1.0, 1.4, " world.", (), "en"), Partial("", 1.6, 1.6)], False)
    kinds = [e["type"] for e in events]
    assert kinds == ["input_audio_buffer.speech_started", DELTA, "input_audio_buffer.speech_stopped", "input_audio_buffer.committed", DELTA, COMPLETED]
    assert len({e["item_id"] for e in events}) == 1
    assert "".join(e["delta"] for e in events if e["type"] == DELTA) == "Hello world." == events[-1]["transcript"]


def test_manual_turn_deltas_follow_the_commit() -> None:
    session = RealtimeSession(beta=False, turn_detection=None)
    _send(session, type="input_audio_buffer.append", audio=base64.b64encode(bytes(48000)).decode())
    assert session.translate([VadEvent("speech_start", 0.1), Stable(0, 0.1, 0.6, " Hi there.", (), "en")], True) == []
    actions, events = _send(session, type="input_audio_buffer.commit")
    assert isinstance(actions[0], CommitTurn) and [e["type"] for e in events] == ["input_audio_buffer.committed", DELTA]
    assert [e["type"] for e in session.translate([], False)] == [COMPLETED]


def test_a_manual_turn_completes_when_its_flush_is_decoded_not_at_an_earlier_stable() -> None:
    """A decode begun before the commit may bring stable text agreed on mid-utterance: the turn
    is not complete until the flush's own final decode has answered (the beta SDK test once got
    "Mr. Quilter is the apostle of the middle classes," as a whole turn's transcript)."""
    session = RealtimeSession(beta=False, turn_detection=None)
    _send(session, type="input_audio_buffer.append", audio=base64.b64encode(bytes(48000)).decode())
    _send(session, type="input_audio_buffer.commit")
    assert COMPLETED not in [e["type"] for e in session.translate([Stable(0, 0.1, 0.6, " Hi there,", (), "en")], True)]
    completed = session.translate([Stable(1, 0.6, 1.0, " you.", (), "en")], False)
    assert [e["type"] for e in completed] == [DELTA, COMPLETED] and completed[-1]["transcript"] == "Hi there, you."


# ---- the real SDK against the daemon ------------------------------------------------------------


def _client(daemon: Daemon, key: str = "any-key") -> OpenAI:
    return openai.OpenAI(api_key=key, base_url=f"{daemon.http_url}/v1", websocket_base_url=f"ws://{daemon.address}/v1", max_retries=0)


def _transcribe(conn: Any, pcm: bytes, *, commit: bool) -> list[Any]:
    """Sends `pcm` (paced) from a thread and reads events until a turn with text completes."""
    def send() -> None:
        for chunk in chunks(pcm, 4800):
            conn.input_audio_buffer.append(audio=base64.b64encode(chunk).decode())
            time.sleep(0.02)
        if commit:
            conn.input_audio_buffer.commit()

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    events = []
    deadline = time.monotonic() + 90
    for event in conn:
        events.append(event)
        if (event.type == COMPLETED and event.transcript) or time.monotonic() > deadline:
            break
    sender.join(30)
    return events


def _check(events: list[Any], reference: str) -> None:
    completed = [e for e in events if e.type == COMPLETED and e.transcript][-1]
    assert word_error_rate([reference], [completed.transcript]) < 0.15
    deltas = "".join(e.delta for e in events if e.type == DELTA and e.item_id == completed.item_id)
    assert deltas.strip() == completed.transcript  # append-only deltas add up to the turn
    committed = [e for e in events if e.type == "input_audio_buffer.committed" and e.item_id == completed.item_id]
    assert len(committed) == 1 and events.index(committed[0]) < events.index(completed)


@pytest.mark.slow
def test_ga_sdk_with_server_vad(daemon: Daemon, shared_data) -> None:
    clip = clip_by_id(shared_data, CLIP)
    with _client(daemon).realtime.connect(extra_query={"intent": "transcription"}) as conn:
        conn.session.update(session={"type": "transcription", "audio": {"input": {"format": {"type": "audio/pcm", "rate": 24000},
            "transcription": {"model": "whisper-1", "language": "en"}, "turn_detection": {"type": "server_vad", "silence_duration_ms": 500}}}})
        events = _transcribe(conn, pcm16(clip.path, 24000) + bytes(96000), commit=False)
    assert events[0].type == "session.created" and events[1].type == "session.updated"
    assert any(e.type == "input_audio_buffer.speech_started" for e in events)
    _check(events, clip.text)


@pytest.mark.slow
def test_beta_sdk_with_manual_turns(daemon: Daemon, shared_data) -> None:
    clip = clip_by_id(shared_data, CLIP)
    with _client(daemon).beta.realtime.connect(model="whisper-1", extra_query={"intent": "transcription"}) as conn:
        conn.transcription_session.update(session={"input_audio_format": "pcm16", "input_audio_transcription": {"model": "whisper-1"}, "turn_detection": None})  # type: ignore[typeddict-item]  # null (manual turns) is valid on the wire; the beta types omit it
        events = _transcribe(conn, pcm16(clip.path, 24000), commit=True)
    assert events[1].type == "transcription_session.updated"
    assert not any(e.type == "input_audio_buffer.speech_started" for e in events)
    _check(events, clip.text)


async def _browser(url: str, subprotocols: list[str]) -> tuple[str | None, list[dict[str, Any]]]:
    async with connect(url, subprotocols=[Subprotocol(p) for p in subprotocols]) as ws:
        await ws.send("{broken")
        await ws.send(json.dumps({"type": "input_audio_buffer.commit", "event_id": "ev1"}))
        return ws.subprotocol, [json.loads(await asyncio.wait_for(ws.recv(), 10)) for _ in range(3)]


@pytest.mark.slow
def test_browser_subprotocol_key_and_errors_keep_the_connection(keyed_daemon: Daemon) -> None:
    url = f"ws://{keyed_daemon.address}/v1/realtime?intent=transcription"
    subprotocol, events = asyncio.run(_browser(url, ["realtime", f"openai-insecure-api-key.{INTERFACE_KEY}", "openai-beta.realtime-v1"]))
    assert subprotocol == "realtime"
    assert events[0]["type"] == "transcription_session.created"  # the beta subprotocol chose the dialect
    assert [e["error"]["code"] for e in events[1:]] == ["invalid_json", "input_audio_buffer_commit_empty"]
    assert events[2]["error"]["event_id"] == "ev1"
    with pytest.raises(InvalidStatus) as refused:
        asyncio.run(_browser(url, ["realtime", "openai-insecure-api-key.wrong"]))
    assert refused.value.response.status_code == 401
