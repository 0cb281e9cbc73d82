"""The client-side protocol module: options, framings, and the order/transcript state machine."""

from __future__ import annotations

import json

import msgpack
import pytest

from clients.protocol import ClientOrderError, ClientProtocol, ServerProtocolError, State
from wire import End, ErrorMessage, Framing, Partial, ProtocolError, Ready, Stable, Start, WordTiming, parse_server_message


def server(body: dict, framing: Framing = Framing.MSGPACK) -> bytes | str:
    return msgpack.packb(body) if framing is Framing.MSGPACK else json.dumps(body)


READY = {"type": "ready", "session_id": "s1", "protocol": 1, "model": "tiny.en", "sample_rate": 16000}


def started(framing: Framing = Framing.MSGPACK, options: Start = Start()) -> ClientProtocol:
    protocol = ClientProtocol(options, framing)
    protocol.start()
    protocol.receive(server(READY, framing))
    return protocol


def test_start_options_are_validated() -> None:
    for bad in ({"sample_rate": 7999}, {"sample_rate": 48001}, {"encoding": "mp3"}, {"channels": 9}, {"task": "summarise"}, {"events": ("words",)}, {"language": ""}):
        with pytest.raises(ValueError):
            Start(**bad)


def test_start_message_in_both_framings() -> None:
    options = Start(sample_rate=44100, channels=2, language="de", events=("vad",))
    binary = ClientProtocol(options, Framing.MSGPACK).start()
    text = ClientProtocol(options, Framing.JSON).start()
    assert isinstance(binary, bytes) and isinstance(text, str)
    expected = {"type": "start", "version": 1, "sample_rate": 44100, "encoding": "pcm_s16le", "channels": 2, "language": "de", "task": "transcribe", "word_timestamps": True, "events": ["vad"]}
    assert msgpack.unpackb(binary) == expected == json.loads(text)
    resumed = Start().resuming("abc", 4).body()
    assert resumed["resume"] == {"session_id": "abc", "last_stable_id": 4}


def test_audio_framing() -> None:
    pcm = b"\x01\x00\x02\x00"
    msgpack_mode = started(Framing.MSGPACK)
    assert msgpack.unpackb(msgpack_mode.audio(pcm)) == {"type": "audio", "data": pcm}
    json_mode = started(Framing.JSON)
    assert json_mode.audio(pcm) == pcm  # JSON mode: raw samples in a binary frame
    assert json_mode.samples_sent == 2
    with pytest.raises(ClientOrderError):
        json_mode.audio(b"\x01\x00\x02")  # half a sample
    stereo = started(options=Start(channels=2))
    with pytest.raises(ClientOrderError):
        stereo.audio(pcm[:2])


def test_client_order_is_enforced() -> None:
    protocol = ClientProtocol(Start())
    with pytest.raises(ClientOrderError):
        protocol.audio(b"\x00\x00")  # before start
    protocol.start()
    with pytest.raises(ClientOrderError):
        protocol.start()
    with pytest.raises(ClientOrderError):
        protocol.audio(b"\x00\x00")  # before ready
    protocol.receive(server(READY))
    protocol.audio(b"\x00\x00")
    protocol.stop()
    with pytest.raises(ClientOrderError):
        protocol.audio(b"\x00\x00")  # after stop
    assert protocol.state is State.STOPPING


def test_transcript_state() -> None:
    protocol = started(Framing.JSON)
    partial = protocol.receive(server({"type": "partial", "text": " Hello", "start": 0.0, "end": 0.5, "words": [{"word": " Hello", "start": 0.0, "end": 0.5, "probability": 0.8}], "future_key": 1}, Framing.JSON))
    assert partial.message == Partial(" Hello", 0.0, 0.5, (WordTiming(" Hello", 0.0, 0.5, 0.8),))
    assert partial.body["future_key"] == 1  # unknown keys are ignored but kept for event logs
    assert protocol.partial == partial.message
    protocol.receive(server({"type": "stable", "id": 0, "start": 0.0, "end": 1.0, "text": " Hello world.", "words": [], "language": "en"}, Framing.JSON))
    assert protocol.partial is None
    protocol.receive(server({"type": "partial", "text": " And", "start": 1.0, "end": 1.2, "words": []}, Framing.JSON))
    protocol.receive(server({"type": "partial", "text": "", "start": 1.0, "end": 1.2, "words": []}, Framing.JSON))
    assert protocol.partial is None  # empty text clears it
    protocol.receive(server({"type": "stable", "id": 1, "start": 1.0, "end": 2.0, "text": " Bye.", "words": [], "language": "en"}, Framing.JSON))
    protocol.stop()
    protocol.receive(server({"type": "end", "last_stable_id": 1, "audio_seconds": 2.0}, Framing.JSON))
    assert protocol.state is State.ENDED
    assert protocol.transcript() == "Hello world. Bye."
    assert [s.id for s in protocol.stable] == [0, 1]


def test_server_mistakes_are_detected() -> None:
    protocol = started()
    with pytest.raises(ServerProtocolError):
        protocol.receive(server({"type": "stable", "id": 1, "start": 0.0, "end": 1.0, "text": "x"}))  # skipped id 0
    with pytest.raises(ServerProtocolError):
        protocol.receive(server({"type": "surprise"}))
    with pytest.raises(ServerProtocolError):
        protocol.receive(server({"type": "partial", "text": 3}))
    with pytest.raises(ServerProtocolError):
        protocol.receive(json.dumps(READY))  # text frame in a msgpack session
    with pytest.raises(ServerProtocolError):
        protocol.receive(b"\xc1")  # not msgpack
    with pytest.raises(ServerProtocolError):
        protocol.receive(server({"type": "end", "last_stable_id": 3, "audio_seconds": 1.0}))  # ids never sent
    fresh = ClientProtocol(Start())
    fresh.start()
    with pytest.raises(ServerProtocolError):
        fresh.receive(server({"type": "partial", "text": "x", "start": 0, "end": 1}))  # before ready


def test_resumed_session_counts_ids_on() -> None:
    protocol = started(options=Start().resuming("s1", 6))
    protocol.receive(server({"type": "stable", "id": 7, "start": 9.0, "end": 10.0, "text": " more"}))
    protocol.stop()
    protocol.receive(server({"type": "end", "last_stable_id": 7, "audio_seconds": 10.0}))
    assert protocol.state is State.ENDED


def test_parse_every_server_message() -> None:
    assert parse_server_message(READY) == Ready("s1", "tiny.en", 16000, protocol=1)
    assert parse_server_message({"type": "error", "code": 4415, "message": "bad rate"}) == ErrorMessage(4415, "bad rate", True)
    assert parse_server_message({"type": "error", "code": 4429, "message": "slow down", "fatal": False}).fatal is False
    assert parse_server_message({"type": "end", "last_stable_id": -1, "audio_seconds": 0.0}) == End(-1, 0.0)
    assert parse_server_message({"type": "stable", "id": 0, "start": 0, "end": 1, "text": "x"}) == Stable(0, 0.0, 1.0, "x", (), "")
    with pytest.raises(ProtocolError):
        parse_server_message({"type": "ready", "session_id": "s", "protocol": True})  # a bool is not an int here
