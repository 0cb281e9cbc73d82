"""The replay client against the protocol fake (tests/test_clients_fake_server.py): what is sent, paced, logged, written.

The same client against the real daemon is in test_clients_daemon.py.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from benchmarks.data import Clip
from clients.audio_file import AudioClip, AudioFileError, read_audio
from clients.connection import ConnectOptions
from clients.display import CaptionDisplay
from clients.pacing import PacingOptions, paced_frames
from clients.replay import ReplayOptions, replay
from tests.test_clients_fake_server import FakeDaemon, ScriptSegment
from tests.test_writers import assert_caption_rules, parse_srt
from wire import Framing

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = (ScriptSegment(0.2, 2.5, "Mister Quilter is the apostle"), ScriptSegment(2.6, 5.5, "of the middle classes and we are glad"))


@pytest.fixture(scope="module")
def short_clip(shared_data: list[Clip]) -> Clip:
    return next(c for c in shared_data if c.id == "ls_1272-128104-0000")


async def run_cli(args: list[str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "clients.replay", *args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await process.communicate()
    return process.returncode or 0, out.decode(), err.decode()


def test_read_wav_matches_the_file(short_clip: Clip) -> None:
    import wave

    clip = read_audio(short_clip.path)
    with wave.open(str(short_clip.path)) as wav:
        assert clip.sample_rate == wav.getframerate()
        assert clip.samples.shape == (wav.getnframes(), wav.getnchannels())
        assert clip.samples.tobytes() == wav.readframes(wav.getnframes()) or wav.getsampwidth() != 2
    assert clip.duration_s == pytest.approx(short_clip.duration_s, abs=0.01)


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed (apt-get install ffmpeg)")
def test_other_formats_decode_with_ffmpeg(short_clip: Clip, tmp_path: Path) -> None:
    flac = tmp_path / "clip.flac"
    subprocess.run(["ffmpeg", "-v", "error", "-i", str(short_clip.path), str(flac)], check=True)
    decoded, original = read_audio(flac), read_audio(short_clip.path)
    assert decoded.sample_rate == original.sample_rate
    assert np.array_equal(decoded.samples, original.samples)  # FLAC is lossless


def test_unreadable_files_say_why(tmp_path: Path) -> None:
    with pytest.raises(AudioFileError, match="no such file"):
        read_audio(tmp_path / "missing.wav")
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"not audio at all")
    with pytest.raises(AudioFileError):
        read_audio(junk)


def test_pacing_follows_the_wall_clock() -> None:
    clip = AudioClip(np.zeros((16000 * 2, 1), np.int16), 16000)  # 2 s

    async def timed(speed: float) -> tuple[float, list[int]]:
        began = time.monotonic()
        sizes = [len(f) async for f in paced_frames(clip, PacingOptions(frame_ms=20, speed=speed))]
        return time.monotonic() - began, sizes

    elapsed, sizes = asyncio.run(timed(4.0))
    assert 0.45 <= elapsed <= 0.75, elapsed  # 2 s at 4x: 0.5 s
    assert sizes == [640] * 100  # 20 ms of 16-bit mono at 16 kHz
    elapsed, _ = asyncio.run(timed(0.0))
    assert elapsed < 0.3


def test_replay_sends_the_whole_clip_and_keeps_the_stable_text(short_clip: Clip, tmp_path: Path) -> None:
    clip = read_audio(short_clip.path)
    out = io.StringIO()

    async def scenario() -> tuple[str, FakeDaemon]:
        async with FakeDaemon(SCRIPT).running() as fake:
            options = ReplayOptions(short_clip.path, ConnectOptions(fake.url), PacingOptions(frame_ms=100, speed=0), output=tmp_path / "t.srt")
            return await replay(options, clip, CaptionDisplay(out, interactive=False)), fake

    transcript, fake = asyncio.run(scenario())
    assert transcript == "Mister Quilter is the apostle of the middle classes and we are glad"
    session = fake.sessions[0]
    assert bytes(session.audio) == clip.samples.tobytes()
    assert session.start["sample_rate"] == clip.sample_rate and session.start["channels"] == 1
    assert all(size == clip.sample_rate // 10 * 2 for size in session.frame_sizes[:-1])
    # Off a terminal only stable lines are printed, one per segment, plus the language notice.
    assert out.getvalue().splitlines() == ["[language en (100%)]", "Mister Quilter is the apostle", "of the middle classes and we are glad"]
    cues = parse_srt((tmp_path / "t.srt").read_text())
    assert_caption_rules(cues)
    assert " ".join(" ".join(c.lines) for c in cues) == transcript


def test_cli_events_file_and_output(short_clip: Clip, tmp_path: Path) -> None:
    events, output = tmp_path / "events.jsonl", tmp_path / "out.vtt"

    async def scenario() -> tuple[int, str, str]:
        async with FakeDaemon(SCRIPT).running() as fake:
            return await run_cli([str(short_clip.path), "--url", fake.url, "--speed", "4", "--frame-ms", "50", "--events", str(events), "--output", str(output), "--json-mode"])

    code, out, err = asyncio.run(scenario())
    assert code == 0, err
    assert "of the middle classes and we are glad" in out
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    assert [set(line) for line in lines] == [{"t", "sent", "msg"}] * len(lines)
    kinds = [line["msg"]["type"] for line in lines]
    assert kinds[0] == "ready" and kinds[-1] == "end" and kinds.count("stable") == 2 and "partial" in kinds
    assert lines[0]["t"] < 0 and lines[0]["sent"] == 0  # ready comes before the first frame
    later = lines[1:]
    assert all(a["t"] <= b["t"] and a["sent"] <= b["sent"] for a, b in itertools.pairwise(later))
    # At 4x, audio sent keeps pace with the clock: sent = 4 t + one frame (a frame goes once it is "recorded").
    for line in later[:-1]:
        assert line["sent"] == pytest.approx(4 * line["t"] + 0.05, abs=0.2), line
    assert lines[-1]["msg"]["audio_seconds"] == pytest.approx(short_clip.duration_s, abs=0.01)
    assert output.read_text().startswith("WEBVTT\n\n")


def test_cli_error_close_exits_non_zero_with_the_servers_message(short_clip: Clip) -> None:
    async def scenario() -> tuple[int, str, str]:
        async with FakeDaemon().running() as fake:
            return await run_cli([str(short_clip.path), "--url", fake.url, "--language", "xx", "--speed", "0"])

    code, _, err = asyncio.run(scenario())
    assert code == 1
    assert "4415" in err and "unsupported language 'xx'" in err


def test_cli_without_a_daemon_says_so(short_clip: Clip) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, not listening: connections are refused
        code, _, err = asyncio.run(run_cli([str(short_clip.path), "--url", f"ws://127.0.0.1:{port}/v1/stream"]))
    assert code == 2
    assert "cannot reach the daemon" in err


def test_cli_rejects_bad_arguments(short_clip: Clip) -> None:
    for bad in (["--frame-ms", "10"], ["--speed", "-1"], ["--output", "x.doc"], ["--url", "http://x"]):
        code, _, err = asyncio.run(run_cli([str(short_clip.path), *bad]))
        assert code == 2 and "error:" in err, (bad, err)


def test_framing_choice_reaches_the_server(short_clip: Clip) -> None:
    clip = read_audio(short_clip.path)

    async def scenario(framing: Framing) -> bool:
        async with FakeDaemon(SCRIPT).running() as fake:
            options = ReplayOptions(short_clip.path, ConnectOptions(fake.url, framing), PacingOptions(speed=0))
            await replay(options, clip, CaptionDisplay(io.StringIO(), interactive=False))
            return fake.sessions[0].json_mode

    assert asyncio.run(scenario(Framing.JSON)) is True
    assert asyncio.run(scenario(Framing.MSGPACK)) is False
