"""The sans-I/O protocol: codec in both framings, order rules, validation, frame limits."""

from __future__ import annotations

import base64
import json

import msgpack
import numpy as np
import pytest

from streamer.protocol import SessionProtocol
from streamer.stream.ingest import AudioDecoder
from wire import Audio, CloseCode, End, Flush, Framing, Partial, ProtocolError, Stable, Start, Stop, WordTiming


def packed(body: object) -> bytes:
    return msgpack.packb(body, use_bin_type=True)


def started(framing: Framing, **start) -> SessionProtocol:
    protocol = SessionProtocol(max_frame_bytes=1 << 16)
    body = {"type": "start", **start}
    protocol.receive(json.dumps(body) if framing is Framing.JSON else packed(body))
    return protocol


def assert_error(code: CloseCode, protocol: SessionProtocol, frame: bytes | str) -> None:
    with pytest.raises(ProtocolError) as raised:
        protocol.receive(frame)
    assert raised.value.code == code, raised.value.message


def test_msgpack_session_decodes_every_message_type() -> None:
    protocol = SessionProtocol(max_frame_bytes=1 << 16)
    start = protocol.receive(packed({"type": "start", "sample_rate": 44100, "encoding": "f32le", "channels": 2, "events": ["vad"], "future_key": 1}))
    assert start == Start(sample_rate=44100, encoding="f32le", channels=2, events=("vad",))
    assert protocol.framing is Framing.MSGPACK
    assert protocol.receive(packed({"type": "audio", "data": b"\x00\x01" * 8})) == Audio(b"\x00\x01" * 8)
    assert protocol.receive(packed({"type": "flush"})) == Flush()
    assert protocol.receive(packed({"type": "stop"})) == Stop()


def test_json_session_takes_raw_binary_and_base64_audio() -> None:
    protocol = started(Framing.JSON)
    assert protocol.framing is Framing.JSON
    raw = np.arange(10, dtype="<i2").tobytes()
    assert protocol.receive(raw) == Audio(raw)
    assert protocol.receive(json.dumps({"type": "audio", "data": base64.b64encode(raw).decode()})) == Audio(raw)
    assert_error(CloseCode.MALFORMED, protocol, json.dumps({"type": "audio", "data": "not base64!"}))


def test_server_messages_encode_in_the_session_framing() -> None:
    word = WordTiming(" hello", 1.0, 1.4, 0.9)
    stable = Stable(id=0, start=1.0, end=1.4, text=" hello", words=(word,), language="en")
    as_msgpack = msgpack.unpackb(started(Framing.MSGPACK).encode(stable))
    as_json = json.loads(started(Framing.JSON).encode(stable))
    assert as_msgpack == as_json
    assert as_json["type"] == "stable" and as_json["id"] == 0 and as_json["words"][0]["word"] == " hello"
    no_words = json.loads(started(Framing.JSON, word_timestamps=False).encode(Partial(" hi", 0.0, 0.5, (word,))))
    assert "words" not in no_words and no_words["text"] == " hi"
    assert json.loads(started(Framing.JSON).encode(End(-1, 2.0))) == {"type": "end", "last_stable_id": -1, "audio_seconds": 2.0}


@pytest.mark.parametrize(
    "first",
    [packed({"type": "audio", "data": b"\x00\x00"}), json.dumps({"type": "stop"}), json.dumps({"type": "flush"})],
)
def test_anything_before_start_is_out_of_order(first: bytes | str) -> None:
    assert_error(CloseCode.OUT_OF_ORDER, SessionProtocol(max_frame_bytes=1 << 16), first)


def test_second_start_and_messages_after_stop_are_out_of_order() -> None:
    protocol = started(Framing.MSGPACK)
    assert_error(CloseCode.OUT_OF_ORDER, protocol, packed({"type": "start"}))
    protocol = started(Framing.JSON)
    protocol.receive(json.dumps({"type": "stop"}))
    assert_error(CloseCode.OUT_OF_ORDER, protocol, b"\x00\x00")


@pytest.mark.parametrize(
    "frame",
    [
        b"\xc1\xff not msgpack",
        packed([1, 2, 3]),
        packed({"no_type": 1}),
        packed({"type": "dance"}),
        packed({"type": "start", "sample_rate": "16000"}),
        packed({"type": "start", "word_timestamps": "yes"}),
        packed({"type": "start", "events": "vad"}),
        "{not json",
        json.dumps({"type": "start", "sample_rate": True}),
        json.dumps({"type": "start", "endpoint_silence": "1s"}),
    ],
)
def test_malformed_first_messages(frame: bytes | str) -> None:
    assert_error(CloseCode.MALFORMED, SessionProtocol(max_frame_bytes=1 << 16), frame)


def test_malformed_later_messages() -> None:
    protocol = started(Framing.MSGPACK)
    assert_error(CloseCode.MALFORMED, protocol, json.dumps({"type": "flush"}))  # text frame in a msgpack session
    protocol = started(Framing.MSGPACK)
    assert_error(CloseCode.MALFORMED, protocol, packed({"type": "audio", "data": "text, not bin"}))


@pytest.mark.parametrize(
    "start",
    [{"sample_rate": 4000}, {"sample_rate": 96000}, {"encoding": "mp3"}, {"channels": 0}, {"channels": 9}, {"version": 2}, {"task": "summarise"}, {"events": ["words"]},
     {"endpoint_silence": 0.05}, {"endpoint_silence": 11}],
)
def test_unsupported_start_options(start: dict) -> None:
    assert_error(CloseCode.UNSUPPORTED, SessionProtocol(max_frame_bytes=1 << 16), packed({"type": "start", **start}))


def test_frames_over_the_limit_are_refused() -> None:
    protocol = started(Framing.JSON)
    protocol.max_frame_bytes = 1024
    protocol.receive(b"\x00" * 1024)
    assert_error(CloseCode.FRAME_TOO_LARGE, protocol, b"\x00" * 1026)


def test_audio_decoder_rejects_partial_samples_and_nan() -> None:
    decoder = AudioDecoder(Start(encoding="pcm_s16le", channels=2))
    with pytest.raises(ProtocolError) as raised:
        decoder.decode(b"\x00" * 6)  # 1.5 stereo samples
    assert raised.value.code == CloseCode.UNSUPPORTED
    decoder = AudioDecoder(Start(encoding="f32le"))
    with pytest.raises(ProtocolError) as raised:
        decoder.decode(np.array([0.1, np.nan], "<f4").tobytes())
    assert raised.value.code == CloseCode.UNSUPPORTED


def test_audio_decoder_mixes_channels_and_resamples_without_seams() -> None:
    """A 440 Hz stereo tone at 44.1 kHz in odd-sized frames comes out as the same tone at 16 kHz,
    with no click at frame boundaries (compared with resampling the whole signal at once)."""
    rate = 44100
    t = np.arange(rate * 2) / rate
    tone = 0.5 * np.sin(2 * np.pi * 440 * t).astype(np.float32)
    stereo = np.stack([tone, tone], axis=1).astype("<f4")
    decoder = AudioDecoder(Start(sample_rate=rate, encoding="f32le", channels=2))
    pieces, offset = [], 0
    for size in [1, 7, 333, 4410, 1023] * 40:
        chunk = stereo[offset : offset + size]
        offset += len(chunk)
        pieces.append(decoder.decode(chunk.tobytes()))
    pieces.append(decoder.decode(stereo[offset:].tobytes()))
    pieces.append(decoder.finish())
    out = np.concatenate(pieces)
    assert abs(len(out) - 32000) <= 2
    expected = 0.5 * np.sin(2 * np.pi * 440 * np.arange(len(out)) / 16000)
    middle = slice(800, len(out) - 800)
    assert np.max(np.abs(out[middle] - expected[middle])) < 1e-2
