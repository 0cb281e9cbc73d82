"""The meeting client against the protocol fake: one stream per participant, merged by time.

Against the real daemon: test_clients_daemon.py.
"""

from __future__ import annotations

import asyncio
import io
import wave
from pathlib import Path

import numpy as np
import pytest

from clients.connection import ConnectOptions
from clients.display import CaptionDisplay
from clients.meeting import MeetingOptions, meeting, participants_from
from clients.pacing import PacingOptions
from tests.test_clients_fake_server import FakeDaemon, ScriptSegment
from tests.test_writers import assert_caption_rules, parse_srt

RATE = 16000


def write_wav(path: Path, samples: np.ndarray) -> Path:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(samples.shape[1])
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(samples.astype("<i2").tobytes())
    return path


def tone(seconds: float, level: int) -> np.ndarray:
    return np.full((round(seconds * RATE), 1), level, np.int16)


def test_multichannel_file_is_one_participant_per_channel(tmp_path: Path) -> None:
    left, right = tone(2.0, 100), tone(2.0, -200)
    stereo = write_wav(tmp_path / "call.wav", np.concatenate([left, right], axis=1))
    participants = participants_from([stereo], ["Ann", "Ben"])
    assert [p.name for p in participants] == ["Ann", "Ben"]
    assert np.array_equal(participants[0].audio.samples, left) and np.array_equal(participants[1].audio.samples, right)
    with pytest.raises(ValueError, match="3 names for 2 participants"):
        participants_from([stereo], ["a", "b", "c"])
    assert [p.name for p in participants_from([stereo], [])] == ["Speaker 1", "Speaker 2"]


def test_streams_run_together_and_merge_in_time_order(tmp_path: Path) -> None:
    ann = write_wav(tmp_path / "ann.wav", tone(3.0, 100))
    ben = write_wav(tmp_path / "ben.wav", tone(3.0, -100))
    participants = participants_from([ann, ben], ["Ann", "Ben"])
    # Ben's long turn starts before Ann's second one but ends after it, so it arrives after it:
    # the merged file is rewritten to keep time order.
    ann_says = (ScriptSegment(0.0, 1.0, "hello Ben"), ScriptSegment(2.0, 2.8, "see you"))
    ben_says = (ScriptSegment(1.2, 2.9, "hi Ann"), ScriptSegment(2.92, 2.99, "bye"))
    output = tmp_path / "merged.srt"
    out = io.StringIO()

    async def scenario() -> tuple[FakeDaemon, float]:
        async with FakeDaemon(ann_says, ben_says).running() as fake:
            options = MeetingOptions(ConnectOptions(fake.url), PacingOptions(frame_ms=50, speed=4.0), output=output)
            began = asyncio.get_running_loop().time()
            await meeting(participants, options, CaptionDisplay(out, interactive=False))
            return fake, asyncio.get_running_loop().time() - began

    fake, elapsed = asyncio.run(scenario())
    # Concurrent, not one after the other: 3 s of audio at 4x takes 0.75 s, not 1.5 s.
    assert elapsed < 1.3, elapsed
    assert [bytes(s.audio) for s in fake.sessions] == [p.audio.samples.tobytes() for p in participants]
    cues = parse_srt(output.read_text())
    assert_caption_rules(cues)
    assert [c.lines[0] for c in cues] == ["Ann: hello Ben", "Ben: hi Ann", "Ann: see you", "Ben: bye"]
    printed = out.getvalue().splitlines()
    assert printed.index("Ann: see you") < printed.index("Ben: hi Ann")  # arrival order on screen
    assert "Ann: hello Ben" in printed and "Ben: bye" in printed
