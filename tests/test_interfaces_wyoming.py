"""Wyoming on its own TCP port: the session without a socket, then the `wyoming` package's own
client against a daemon with tiny.en on the shared short clips."""

from __future__ import annotations

import asyncio
import time

import pytest

from benchmarks.daemon import Daemon, free_port
from benchmarks.wer import word_error_rate
from streamer.interfaces.wyoming import (
    FeedAudio,
    OpenStream,
    StopStream,
    WyomingSession,
)
from tests.conftest import clip_by_id
from tests.interface_clips import chunks, pcm16
from wire import End, Stable

pytest.importorskip("wyoming")
from wyoming.asr import Transcribe, Transcript
from wyoming.audio import AudioChunk, AudioStart, AudioStop
from wyoming.client import AsyncTcpClient
from wyoming.info import Describe, Info

CLIPS = ("ls_1272-128104-0000", "lj_LJ001-0016")


def test_session_events_in_order() -> None:
    session = WyomingSession("tiny.en")
    assert Info.from_event(session.receive(Describe().event())[1][0]).asr[0].supports_transcript_streaming
    session.receive(Transcribe(language="en-US").event())
    actions, _ = session.receive(AudioStart(rate=16000, width=2, channels=1).event())
    assert isinstance(actions[0], OpenStream) and actions[0].start.language == "en"
    assert isinstance(session.receive(AudioChunk(rate=16000, width=2, channels=1, audio=b"\0\0").event())[0][0], FeedAudio)
    assert isinstance(session.receive(AudioStop().event())[0][0], StopStream)
    events, done = session.translate([Stable(0, 0.0, 1.0, " Hello", (), "en"), Stable(1, 1.0, 2.0, " world.", (), "en"), End(1, 2.0)])
    assert [e.type for e in events] == ["transcript-start", "transcript-chunk", "transcript-chunk", "transcript", "transcript-stop"] and done
    assert events[3].data["text"] == "Hello world."
    assert session.receive(AudioStart(rate=16000, width=4, channels=1).event())[1][0].type == "error"


@pytest.fixture(scope="module")
def wyoming_port():
    port = free_port()
    server = Daemon("--max-tick-lag", "600", "--uri", f"tcp://127.0.0.1:{port}")
    yield port
    server.stop()


async def _describe(port: int) -> tuple[Info, float]:
    async with AsyncTcpClient("127.0.0.1", port) as client:
        began = time.monotonic()
        await client.write_event(Describe().event())
        event = await asyncio.wait_for(client.read_event(), 5)
        assert event is not None
        return Info.from_event(event), time.monotonic() - began


async def _transcribe(port: int, pcm: bytes) -> tuple[list[str], str]:
    async with AsyncTcpClient("127.0.0.1", port) as client:
        for event in (Transcribe(language="en"), AudioStart(rate=16000, width=2, channels=1)):
            await client.write_event(event.event())
        for chunk in chunks(pcm, 3200):  # 0.1 s chunks at 5x real time, as a satellite streams (not one burst)
            await client.write_event(AudioChunk(rate=16000, width=2, channels=1, audio=chunk).event())
            await asyncio.sleep(0.02)
        await client.write_event(AudioStop().event())
        types = []
        text = ""
        while (event := await asyncio.wait_for(client.read_event(), 60)) is not None:
            types.append(event.type)
            if Transcript.is_type(event.type):
                text = Transcript.from_event(event).text
        return types, text


@pytest.mark.slow
def test_describe_is_answered_within_a_second_and_clips_transcribe(wyoming_port: int, shared_data) -> None:
    info, seconds = asyncio.run(_describe(wyoming_port))
    assert seconds < 1.0 and info.asr[0].models[0].name == "tiny.en"
    references, hypotheses = [], []
    for clip_id in CLIPS:
        clip = clip_by_id(shared_data, clip_id)
        types, text = asyncio.run(_transcribe(wyoming_port, pcm16(clip.path)))
        assert types[0] == "transcript-start" and types[-2:] == ["transcript", "transcript-stop"] and "transcript-chunk" in types
        references.append(clip.text)
        hypotheses.append(text)
    assert word_error_rate(references, hypotheses) < 0.15
    assert asyncio.run(_transcribe(wyoming_port, b""))[0][-2:] == ["transcript", "transcript-stop"]
