"""Audio files as 16-bit PCM: WAV read natively, anything else decoded by ffmpeg when it is installed."""

from __future__ import annotations

import json
import shutil
import subprocess
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wire import MAX_CHANNELS, MAX_SAMPLE_RATE, MIN_SAMPLE_RATE


class AudioInputError(Exception):
    """The audio to stream cannot be had: a file or a device the user named is unusable."""


class AudioFileError(AudioInputError):
    """The file cannot be read as audio (missing, unsupported format, no ffmpeg for it)."""


@dataclass(frozen=True)
class AudioClip:
    samples: np.ndarray  # int16, shape (frames, channels)
    sample_rate: int

    def __post_init__(self) -> None:
        if self.samples.dtype != np.int16 or self.samples.ndim != 2:
            raise ValueError(f"samples must be int16 of shape (frames, channels), got {self.samples.dtype} {self.samples.shape}")
        if self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {self.sample_rate}")

    @property
    def channels(self) -> int:
        return self.samples.shape[1]

    @property
    def duration_s(self) -> float:
        return self.samples.shape[0] / self.sample_rate

    def channel(self, index: int) -> AudioClip:
        return AudioClip(np.ascontiguousarray(self.samples[:, index : index + 1]), self.sample_rate)


def _read_wav(path: Path) -> AudioClip:
    with wave.open(str(path), "rb") as wav:
        width, channels, rate = wav.getsampwidth(), wav.getnchannels(), wav.getframerate()
        raw = wav.readframes(wav.getnframes())
    if width == 1:  # unsigned 8-bit
        samples = ((np.frombuffer(raw, np.uint8).astype(np.int16) - 128) << 8).astype(np.int16)
    elif width == 2:
        samples = np.frombuffer(raw, "<i2")
    elif width == 3:
        bytes3 = np.frombuffer(raw, np.uint8).reshape(-1, 3)
        samples = bytes3[:, 1].astype(np.int16) | (bytes3[:, 2].astype(np.int8).astype(np.int16) << 8)  # top 16 bits
    elif width == 4:
        samples = (np.frombuffer(raw, "<i4") >> 16).astype(np.int16)
    else:
        raise AudioFileError(f"{path}: {8 * width}-bit WAV is not supported")
    return AudioClip(samples.astype(np.int16).reshape(-1, channels), rate)


def _ffprobe_format(path: Path) -> tuple[int, int]:
    result = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "a:0", "-show_entries", "stream=sample_rate,channels", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    streams = json.loads(result.stdout or "{}").get("streams") if result.returncode == 0 else None
    if not streams:
        raise AudioFileError(f"{path}: ffprobe found no audio stream ({result.stderr.strip() or 'no output'})")
    return int(streams[0]["sample_rate"]), int(streams[0]["channels"])


def _read_with_ffmpeg(path: Path) -> AudioClip:
    if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
        raise AudioFileError(f"{path}: not a PCM WAV file, and decoding other formats needs ffmpeg (apt-get install ffmpeg)")
    rate, channels = _ffprobe_format(path)
    # The protocol takes 8-48 kHz and up to 8 channels; ffmpeg converts anything else.
    rate = min(max(rate, MIN_SAMPLE_RATE), MAX_SAMPLE_RATE)
    channels = min(channels, MAX_CHANNELS)
    result = subprocess.run(
        ["ffmpeg", "-nostdin", "-v", "error", "-i", str(path), "-f", "s16le", "-acodec", "pcm_s16le", "-ar", str(rate), "-ac", str(channels), "-"],
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        raise AudioFileError(f"{path}: ffmpeg could not decode it: {result.stderr.decode(errors='replace').strip()}")
    raw = result.stdout[: len(result.stdout) // (2 * channels) * 2 * channels]
    return AudioClip(np.frombuffer(raw, "<i2").reshape(-1, channels).copy(), rate)


def read_audio(path: str | Path) -> AudioClip:
    path = Path(path)
    if not path.is_file():
        raise AudioFileError(f"{path}: no such file")
    try:
        clip = _read_wav(path)
    except (wave.Error, EOFError):
        return _read_with_ffmpeg(path)  # not PCM WAV: compressed formats, float WAV
    if MIN_SAMPLE_RATE <= clip.sample_rate <= MAX_SAMPLE_RATE and clip.channels <= MAX_CHANNELS:
        return clip
    return _read_with_ffmpeg(path)
