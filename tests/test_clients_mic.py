"""The microphone client: its PortAudio callback, and real capture from a PulseAudio virtual microphone.

The virtual microphone is a PulseAudio null sink: `paplay` plays a shared clip into it and the
client records its monitor through PortAudio's ALSA `pulse` device, at the device's native rate.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soxr

from benchmarks.data import Clip
from benchmarks.wer import word_error_rate
from clients.audio_file import read_audio
from clients.mic import MicFrames
from tests.test_clients_fake_server import FakeDaemon
from tests.test_writers import assert_caption_rules, parse_srt

ROOT = Path(__file__).resolve().parents[1]
CLIP_ID = "ls_1272-128104-0000"  # a clear start: streaming tiny.en drops nothing


@pytest.fixture(scope="module")
def clip(shared_data: list[Clip]) -> Clip:
    return next(c for c in shared_data if c.id == CLIP_ID)


def test_callback_blocks_arrive_in_order_and_are_copied(clip: Clip) -> None:
    audio = read_audio(clip.path)
    block = audio.sample_rate // 25  # 40 ms blocks, as PortAudio would deliver them
    limit = audio.samples.shape[0] - 1234  # the duration limit cuts inside a block

    async def scenario() -> bytes:
        frames = MicFrames(asyncio.get_running_loop(), bytes_per_sample=2, max_samples=limit)

        def portaudio_thread() -> None:
            buffer = bytearray(block * 2)  # PortAudio reuses one buffer for every callback
            for offset in range(0, audio.samples.shape[0], block):
                chunk = audio.samples[offset : offset + block].tobytes()
                buffer[: len(chunk)] = chunk
                frames.callback(memoryview(buffer)[: len(chunk)], len(chunk) // 2, None, None)

        thread = threading.Thread(target=portaudio_thread)
        thread.start()
        received = b"".join([f async for f in frames])
        thread.join()
        return received

    received = asyncio.run(scenario())
    assert received == audio.samples[:limit].tobytes()


def test_stop_ends_the_frames() -> None:
    async def scenario() -> list[bytes]:
        frames = MicFrames(asyncio.get_running_loop(), bytes_per_sample=2)
        frames.callback(b"\x01\x00" * 10, 10, None, None)
        asyncio.get_running_loop().call_later(0.05, frames.stop)
        return [f async for f in frames]

    assert asyncio.run(scenario()) == [b"\x01\x00" * 10]


@pytest.fixture(scope="module")
def virtual_microphone(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A running PulseAudio with a null sink `virt`; yields the environment that selects its monitor as the microphone."""
    if shutil.which("pulseaudio") is None or shutil.which("paplay") is None:
        pytest.skip("PulseAudio is not installed (Debian: pulseaudio pulseaudio-utils libasound2-plugins)")
    runtime = tmp_path_factory.mktemp("pulse")
    runtime.chmod(0o700)
    env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime), "HOME": str(runtime), "PULSE_SOURCE": "virt.monitor", "PULSE_SINK": "virt"}
    # -n: no default.pa (no hardware to probe); root is allowed to run a per-user daemon this way.
    daemon = subprocess.Popen(
        ["pulseaudio", "--daemonize=no", "--exit-idle-time=-1", "--system=false", "-n",
         "--load=module-native-protocol-unix", "--load=module-null-sink sink_name=virt rate=44100"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while subprocess.run(["pactl", "info"], env=env, capture_output=True, check=False).returncode != 0:
            if daemon.poll() is not None or time.monotonic() > deadline:
                pytest.skip(f"PulseAudio did not start: {daemon.stderr.read().decode() if daemon.poll() is not None else 'timeout'}")
            time.sleep(0.1)
        yield env
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)


def list_devices(env: dict[str, str]) -> str:
    result = subprocess.run([sys.executable, "-m", "clients.mic", "--list-devices"], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return result.stdout


async def capture_while_playing(env: dict[str, str], url: str, clip: Clip, output: Path) -> tuple[int, str, str]:
    """Start the mic client, play the clip into the virtual microphone, let it finish and stop."""
    duration = clip.duration_s + 2.0
    mic = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "clients.mic", "--device", "pulse", "--url", url, "--duration", f"{duration}", "--output", str(output),
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert mic.stdout is not None
    first = await asyncio.wait_for(mic.stdout.readline(), timeout=60)
    if not first.startswith(b"[capturing from"):  # it failed to start: report what it said
        out, err = await mic.communicate()
        return mic.returncode or 0, (first + out).decode(), err.decode()
    player = await asyncio.create_subprocess_exec("paplay", "-d", "virt", str(clip.path), env=env)
    assert await player.wait() == 0
    out, err = await asyncio.wait_for(mic.communicate(), timeout=duration + 60)
    return mic.returncode or 0, (first + out).decode(), err.decode()


def test_mic_streams_the_devices_native_rate(virtual_microphone: dict[str, str], clip: Clip, tmp_path: Path) -> None:
    assert "pulse" in list_devices(virtual_microphone)

    async def scenario() -> tuple[int, str, FakeDaemon]:
        async with FakeDaemon().running() as fake:
            code, _, err = await capture_while_playing(virtual_microphone, fake.url, clip, tmp_path / "t.srt")
            return code, err, fake

    code, err, fake = asyncio.run(scenario())
    assert code == 0, err
    session = fake.sessions[0]
    rate = session.start["sample_rate"]
    assert rate == 44100  # the null sink's rate, not resampled by the client
    captured = np.frombuffer(bytes(session.audio), "<i2").astype(np.float32)
    assert abs(len(captured) / rate - (clip.duration_s + 2.0)) < 0.1
    # The clip is in what was captured: find it by cross-correlation at 16 kHz.
    original = read_audio(clip.path).samples[:, 0].astype(np.float32)
    heard = soxr.resample(captured, rate, 16000)
    lag = int(np.argmax(np.correlate(heard, original[16000:20000], mode="valid"))) - 16000
    # PulseAudio may drop the first moments of a new playback (the clip opens with silence).
    assert lag >= -1600, lag
    skipped = max(0, -lag)
    aligned = heard[max(0, lag) : max(0, lag) + len(original) - skipped]
    correlation = np.corrcoef(aligned, original[skipped : skipped + len(aligned)])[0, 1]
    assert correlation > 0.9, correlation


@pytest.mark.slow  # the real daemon
def test_mic_captions_the_virtual_microphone_with_the_daemon(virtual_microphone: dict[str, str], clip: Clip, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    try:
        url = request.getfixturevalue("daemon_url")
    except pytest.FixtureLookupError:
        pytest.skip("no `daemon_url` fixture in tests/conftest.py yet (the real daemon)")
    output = tmp_path / "mic.srt"
    code, out, err = asyncio.run(capture_while_playing(virtual_microphone, url, clip, output))
    assert code == 0, err
    cues = parse_srt(output.read_text())
    assert cues, out
    assert_caption_rules(cues)
    text = " ".join(" ".join(c.lines) for c in cues)
    assert word_error_rate([clip.text], [text]) <= 0.10, text


def test_ctrl_c_stops_cleanly(virtual_microphone: dict[str, str], clip: Clip, tmp_path: Path) -> None:
    import signal

    async def scenario() -> tuple[int, str, FakeDaemon]:
        async with FakeDaemon().running() as fake:
            mic = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "clients.mic", "--device", "pulse", "--url", fake.url, "--output", str(tmp_path / "t.txt"),
                cwd=ROOT, env=virtual_microphone, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            )  # fmt: skip
            assert mic.stdout is not None
            assert (await asyncio.wait_for(mic.stdout.readline(), timeout=60)).startswith(b"[capturing from")
            player = await asyncio.create_subprocess_exec("paplay", "-d", "virt", str(clip.path), env=virtual_microphone)
            while not fake.sessions or len(fake.sessions[0].audio) < 2 * 44100:  # a second of audio has arrived
                await asyncio.sleep(0.05)
            mic.send_signal(signal.SIGINT)
            await player.wait()
            _, err = await asyncio.wait_for(mic.communicate(), timeout=30)
            return mic.returncode or 0, err.decode(), fake

    code, err, fake = asyncio.run(scenario())
    assert code == 0, err
    assert fake.sessions[0].stopped  # `stop` was sent and `end` awaited, not a dropped connection
    assert len(fake.sessions[0].audio) / 2 / fake.sessions[0].start["sample_rate"] >= 0.9
