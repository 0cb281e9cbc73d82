"""The replay and meeting clients against the real daemon (the `daemon_url` fixture), on shared clips."""

from __future__ import annotations

import asyncio
import itertools
import json
import subprocess
import sys
import threading
import wave
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest

from benchmarks.data import Clip
from benchmarks.wer import word_error_rate
from clients.audio_file import read_audio
from tests.test_writers import assert_caption_rules, parse_srt

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def url(request: pytest.FixtureRequest) -> str:
    try:
        return request.getfixturevalue("daemon_url")
    except pytest.FixtureLookupError:
        pytest.skip("no `daemon_url` fixture in tests/conftest.py (the real daemon)")


def clip(clips: list[Clip], clip_id: str) -> Clip:
    return next(c for c in clips if c.id == clip_id)


def run(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.parametrize("json_mode", [False, True], ids=["msgpack", "json"])
def test_replay_transcribes_a_clip(url: str, shared_data: list[Clip], tmp_path: Path, json_mode: bool) -> None:
    speech = clip(shared_data, "ls_1089-134686-0001")
    events, output = tmp_path / "events.jsonl", tmp_path / "out.srt"
    args = [str(speech.path), "--url", url, "--speed", "2", "--events", str(events), "--output", str(output)]
    result = run("clients.replay", *args, *(["--json-mode"] if json_mode else []))
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    stable = "".join(line["msg"]["text"] for line in lines if line["msg"]["type"] == "stable")
    assert word_error_rate([speech.text], [stable]) <= 0.10, stable
    assert lines[-1]["msg"]["type"] == "end"
    assert lines[-1]["msg"]["audio_seconds"] == pytest.approx(speech.duration_s, abs=0.05)
    cues = parse_srt(output.read_text())
    assert_caption_rules(cues)
    assert word_error_rate([speech.text], [" ".join(" ".join(c.lines) for c in cues)]) <= 0.10


def test_replay_reports_a_refused_stream(url: str, shared_data: list[Clip]) -> None:
    result = run("clients.replay", str(clip(shared_data, "cmu_goforward").path), "--url", url, "--language", "no-such-language")
    assert result.returncode == 1
    assert "4415" in result.stderr


class CuttingProxy:
    """A TCP proxy on loopback, in its own thread, that cuts its first connection (no close
    frame: the client sees 1006, as when a network path fails) once `cut_after` bytes went
    upstream; later connections pass untouched."""

    def __init__(self, upstream_url: str, cut_after: int) -> None:
        parts = urlsplit(upstream_url)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.path = parts.path
        self.cut_after = cut_after
        self.connections = 0
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.stopping = asyncio.Event()
        self.url = ""

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, budget: int | None, peer: asyncio.StreamWriter) -> None:
        sent = 0
        while data := await reader.read(65536):
            writer.write(data)
            sent += len(data)
            if budget is not None and sent >= budget:
                writer.transport.abort()
                peer.transport.abort()
                return
        writer.close()

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        budget = self.cut_after if self.connections == 1 else None
        server_reader, server_writer = await asyncio.open_connection(*self.upstream)
        await asyncio.gather(
            self._pipe(client_reader, server_writer, budget, client_writer),
            self._pipe(server_reader, client_writer, None, server_writer),
            return_exceptions=True,
        )

    def run(self) -> None:
        async def serve() -> None:
            server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
            self.url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}{self.path}"
            self.ready.set()
            async with server:
                await self.stopping.wait()

        self.loop.run_until_complete(serve())


@pytest.fixture
def cutting_proxy(url: str) -> Iterator[CuttingProxy]:
    proxy = CuttingProxy(url, cut_after=100_000)  # about 3 s of 16 kHz int16 audio
    thread = threading.Thread(target=proxy.run, daemon=True)
    thread.start()
    assert proxy.ready.wait(10)
    yield proxy
    proxy.loop.call_soon_threadsafe(proxy.stopping.set)
    thread.join(10)


def test_replay_resumes_after_a_lost_connection(cutting_proxy: CuttingProxy, shared_data: list[Clip], tmp_path: Path) -> None:
    """The connection is cut mid-clip: the client resumes on its own (the daemon holds the
    session), sends again what the daemon lacks, and its stable text is one stream, ids contiguous."""
    speech = clip(shared_data, "ls_1089-134686-0001")
    events = tmp_path / "events.jsonl"
    result = run("clients.replay", str(speech.path), "--url", cutting_proxy.url, "--speed", "2", "--events", str(events))
    assert result.returncode == 0, result.stderr
    assert cutting_proxy.connections == 2, "the client reconnected once"
    assert "resumed after" in result.stdout
    stables = [line["msg"] for line in map(json.loads, events.read_text().splitlines()) if line["msg"]["type"] == "stable"]
    assert [s["id"] for s in stables] == list(range(len(stables)))
    assert all(a["end"] <= b["start"] + 1e-6 for a, b in itertools.pairwise(stables)), "no audio transcribed twice"
    assert word_error_rate([speech.text], ["".join(s["text"] for s in stables)]) <= 0.10


def padded(path: Path, source: Path, before_s: float, after_s: float) -> Path:
    """A participant's track: the clip with silence around it, so two tracks take turns on one timeline."""
    audio = read_audio(source)
    silence = lambda seconds: np.zeros((round(seconds * audio.sample_rate), 1), np.int16)  # noqa: E731
    samples = np.concatenate([silence(before_s), audio.samples[:, :1], silence(after_s)])
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(audio.sample_rate)
        out.writeframes(samples.tobytes())
    return path


def test_meeting_merges_two_speakers_in_time_order(url: str, shared_data: list[Clip], tmp_path: Path) -> None:
    first, second = clip(shared_data, "ls_1272-128104-0000"), clip(shared_data, "lj_LJ001-0016")
    alice = padded(tmp_path / "alice.wav", first.path, 0.0, second.duration_s + 1.0)
    bob = padded(tmp_path / "bob.wav", second.path, first.duration_s + 1.0, 0.0)
    output = tmp_path / "merged.json"
    result = run("clients.meeting", str(alice), str(bob), "--names", "Alice,Bob", "--url", url, "--speed", "2", "--output", str(output))
    assert result.returncode == 0, result.stderr
    segments = json.loads(output.read_text())["segments"]
    assert [s["start"] for s in segments] == sorted(s["start"] for s in segments)
    speakers = [s["speaker"] for s in segments]
    assert speakers == sorted(speakers), speakers  # all of Alice's turn, then all of Bob's
    said = {name: "".join(s["text"] for s in segments if s["speaker"] == name) for name in ("Alice", "Bob")}
    assert word_error_rate([first.text, second.text], [said["Alice"], said["Bob"]]) <= 0.10, said
