"""The wire schema: every `start` field the daemon reads is one the client library sends, and every
message goes to its map (or frame) and back unchanged, in both framings."""

from __future__ import annotations

import base64
import json
import typing
from dataclasses import fields, replace
from typing import Any

import msgpack
import pytest

from clients.protocol import ClientProtocol
from streamer.protocol import SessionProtocol
from wire import (
    Audio,
    ClientMessage,
    CloseCode,
    End,
    ErrorMessage,
    Flush,
    Framing,
    LanguageDetected,
    Partial,
    ProtocolError,
    Ready,
    ServerMessage,
    Stable,
    Start,
    Stop,
    VadEvent,
    WordTiming,
    decode_client_message,
    decode_map,
    encode_client_message,
    encode_map,
    parse_server_message,
    parse_start,
    server_message_body,
)

# A value for every field of `Start`, none of them the default. A field added to `Start` fails
# here until it is given one, and then the tests below prove it travels.
NON_DEFAULT: dict[str, Any] = {
    "sample_rate": 44100,
    "encoding": "f32le",
    "channels": 2,
    "language": "de",
    "task": "translate",
    "word_timestamps": False,
    "languages": ("de", "fr"),
    "events": ("vad",),
    "resume": {"session_id": "0123456789abcdef", "last_stable_id": 4},
    "prompt": "Kubernetes, nginx, Müller",
    "commit_policy": "alignatt",
    "endpoint_silence": 1.5,
    "hold_sentence_end": False,
}

WORDS = (WordTiming(" Hello", 0.0, 0.42, 0.9812), WordTiming(" world.", 0.42, 0.9, 0.75))
# One of each server message, its times already at the millisecond the wire keeps.
SERVER_MESSAGES: dict[type, ServerMessage] = {
    Ready: Ready("s1", "tiny.en", 44100, resumed=True, audio_seconds=12.5),
    LanguageDetected: LanguageDetected("de", 0.93),
    Partial: Partial(" Hello world.", 0.0, 0.9, WORDS),
    Stable: Stable(3, 0.0, 0.9, " Hello world.", WORDS, "en"),
    VadEvent: VadEvent("speech_start", 1.23),
    ErrorMessage: ErrorMessage(4429, "daemon overloaded", fatal=False),
    End: End(3, 12.5),
}


def test_every_start_field_has_a_value_that_is_not_its_default() -> None:
    assert set(NON_DEFAULT) == {spec.name for spec in fields(Start)}
    for spec in fields(Start):
        assert NON_DEFAULT[spec.name] != spec.default, spec.name


@pytest.mark.parametrize("name", [spec.name for spec in fields(Start)])
@pytest.mark.parametrize("framing", list(Framing))
def test_every_start_field_the_daemon_reads_is_sent_by_the_client_library(name: str, framing: Framing) -> None:
    asked = Start(**{name: NON_DEFAULT[name]})
    daemon = SessionProtocol(max_frame_bytes=1 << 16)
    assert daemon.receive(ClientProtocol(asked, framing).start()) == asked


def test_every_start_field_at_once_and_the_defaults_left_out() -> None:
    asked = Start(**NON_DEFAULT)
    assert parse_start(asked.body()) == asked
    assert parse_start({"type": "start"}) == Start()
    # What clients have always sent, and nothing for the settings left to the daemon.
    assert Start().body() == {
        "type": "start", "version": 1, "sample_rate": 16000, "encoding": "pcm_s16le", "channels": 1,
        "language": "auto", "task": "transcribe", "word_timestamps": True, "events": [],
    }  # fmt: skip


def test_a_resuming_start_carries_the_resume_map() -> None:
    resumed = Start(language="en").resuming("0123456789abcdef", 6)
    assert resumed.body()["resume"] == {"session_id": "0123456789abcdef", "last_stable_id": 6}
    assert parse_start(resumed.body()) == resumed


@pytest.mark.parametrize(
    "bad",
    [{"sample_rate": 7999}, {"sample_rate": 48001}, {"encoding": "mp3"}, {"channels": 0}, {"channels": 9}, {"task": "summarise"},
     {"events": ("words",)}, {"language": ""}, {"endpoint_silence": 0.05}, {"endpoint_silence": 10.5}],
)
def test_start_is_validated_in_one_place_for_both_ends(bad: dict[str, Any]) -> None:
    with pytest.raises(ProtocolError) as built:
        Start(**bad)
    assert built.value.code == CloseCode.UNSUPPORTED
    assert isinstance(built.value, ValueError)  # a client's bad setting is an argument error
    body = {**Start().body(), **{k: list(v) if isinstance(v, tuple) else v for k, v in bad.items()}}
    with pytest.raises(ProtocolError) as parsed:
        parse_start(body)
    assert parsed.value.code == CloseCode.UNSUPPORTED


def test_start_of_another_version_is_unsupported_and_a_mistyped_key_malformed() -> None:
    with pytest.raises(ProtocolError) as version:
        parse_start({"type": "start", "version": 2})
    assert version.value.code == CloseCode.UNSUPPORTED
    for mistyped in ({"prompt": 3}, {"commit_policy": ["alignatt"]}, {"endpoint_silence": True}, {"languages": ["de", 1]}, {"resume": "s1"}):
        with pytest.raises(ProtocolError) as malformed:
            parse_start({"type": "start", **mistyped})
        assert malformed.value.code == CloseCode.MALFORMED, mistyped


@pytest.mark.parametrize("framing", list(Framing))
def test_every_client_message_goes_to_its_frame_and_back(framing: Framing) -> None:
    messages: dict[type, ClientMessage] = {Start: Start(**NON_DEFAULT), Audio: Audio(b"\x01\x00\x02\x00"), Flush: Flush(), Stop: Stop()}
    assert set(messages) == set(typing.get_args(ClientMessage))
    for message in messages.values():
        assert decode_client_message(encode_client_message(message, framing), framing) == message
    # JSON sessions send raw samples in binary frames, and may send base64 in a text frame.
    if framing is Framing.JSON:
        assert encode_client_message(Audio(b"\x01\x00"), framing) == b"\x01\x00"
        assert decode_client_message(json.dumps({"type": "audio", "data": base64.b64encode(b"\x01\x00").decode()}), framing) == Audio(b"\x01\x00")


def test_one_sample_of_every_server_message() -> None:
    assert set(SERVER_MESSAGES) == set(typing.get_args(ServerMessage))
    for kind, message in SERVER_MESSAGES.items():
        assert type(message) is kind


@pytest.mark.parametrize("kind", list(SERVER_MESSAGES), ids=lambda kind: kind.__name__)
@pytest.mark.parametrize("framing", list(Framing))
def test_every_server_message_goes_to_its_map_and_back(kind: type, framing: Framing) -> None:
    message = SERVER_MESSAGES[kind]
    body = server_message_body(message)
    assert body["type"] == kind.type  # type: ignore[attr-defined]
    assert parse_server_message(body) == message
    frame = encode_map(body, framing)
    assert isinstance(frame, str if framing is Framing.JSON else bytes)
    assert decode_map(frame, framing) == body
    assert server_message_body(parse_server_message(decode_map(frame, framing))) == body


def test_server_times_are_kept_to_the_millisecond_and_words_only_when_asked() -> None:
    stable = Stable(0, 1.23456, 2.0004, " Hi", (WordTiming(" Hi", 1.23456, 2.0004, 0.123456),), "en")
    body = server_message_body(stable)
    assert (body["start"], body["end"]) == (1.235, 2.0)
    assert body["words"] == [{"word": " Hi", "start": 1.235, "end": 2.0, "probability": 0.1235}]
    without = server_message_body(stable, word_timestamps=False)
    assert "words" not in without
    assert parse_server_message(without) == replace(stable, start=1.235, end=2.0, words=())


def test_server_maps_that_break_the_schema_are_malformed() -> None:
    for body in ({"type": "surprise"}, {"no_type": 1}, [1, 2], {"type": "partial", "text": 3}, {"type": "stable", "id": 0, "start": 0, "end": 1},
                 {"type": "ready", "session_id": "s", "protocol": True}, {"type": "stable", "id": 0, "start": 0, "end": 1, "text": "x", "words": ["x"]}):
        with pytest.raises(ProtocolError) as raised:
            parse_server_message(body)
        assert raised.value.code == CloseCode.MALFORMED, body


def test_frames_in_the_other_framing_or_undecodable_are_malformed() -> None:
    for frame, framing in ((json.dumps({"type": "stop"}), Framing.MSGPACK), (msgpack.packb({"type": "stop"}), Framing.JSON), (b"\xc1", Framing.MSGPACK), ("{", Framing.JSON)):
        with pytest.raises(ProtocolError) as raised:
            decode_map(frame, framing)
        assert raised.value.code == CloseCode.MALFORMED
