"""Audio input and Whisper's log-mel features, computed with torch on the model's device."""

from __future__ import annotations

import shutil
import subprocess
import wave
from functools import cache
from pathlib import Path

import numpy as np
import torch

from model.constants import HOP_LENGTH, N_FFT, N_SAMPLES, SAMPLE_RATE


class AudioLoadError(RuntimeError):
    """The file could not be read as audio."""


def load_audio(path: str | Path, sr: int = SAMPLE_RATE) -> np.ndarray:
    """Reads a file as mono float32 in [-1, 1] at `sr` Hz.

    WAV (PCM 8/16/24/32-bit) is read natively; anything else goes through ffmpeg.
    """
    path = Path(path)
    if not path.is_file():
        raise AudioLoadError(f"no such audio file: {path}")
    try:
        audio, file_sr = _read_wav(path)
    except (wave.Error, EOFError):
        return _read_with_ffmpeg(path, sr)
    return resample(audio, file_sr, sr)


def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    with wave.open(str(path), "rb") as wav:
        channels, width, rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
        raw = wav.readframes(wav.getnframes())
    if width == 1:
        samples = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width == 2:
        samples = np.frombuffer(raw, "<i2").astype(np.float32) / 32768.0
    elif width == 3:
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        ints = (b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)) << 8 >> 8  # sign-extend 24-bit
        samples = ints.astype(np.float32) / 8388608.0
    elif width == 4:
        samples = np.frombuffer(raw, "<i4").astype(np.float32) / 2147483648.0
    else:
        raise wave.Error(f"unsupported sample width {width}")
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1)
    return samples, rate


def _read_with_ffmpeg(path: Path, sr: int) -> np.ndarray:
    if shutil.which("ffmpeg") is None:
        raise AudioLoadError(f"{path} is not a PCM WAV file, and reading other formats needs ffmpeg on PATH")
    cmd = ["ffmpeg", "-nostdin", "-threads", "0", "-i", str(path), "-f", "s16le", "-ac", "1", "-acodec", "pcm_s16le", "-ar", str(sr), "-"]
    proc = subprocess.run(cmd, capture_output=True)
    if proc.returncode != 0:
        raise AudioLoadError(f"ffmpeg could not read {path}: {proc.stderr.decode(errors='replace').strip()[-500:]}")
    return np.frombuffer(proc.stdout, "<i2").astype(np.float32) / 32768.0


def resample(audio: np.ndarray, orig_sr: int, sr: int = SAMPLE_RATE) -> np.ndarray:
    """High-quality resampling of a whole signal (soxr)."""
    audio = np.asarray(audio, dtype=np.float32)
    if orig_sr == sr:
        return audio
    import soxr

    return soxr.resample(audio, orig_sr, sr, quality="HQ").astype(np.float32, copy=False)


def pad_or_trim(array: np.ndarray | torch.Tensor, length: int = N_SAMPLES, *, axis: int = -1):
    """Zero-pads or cuts `array` along `axis` to exactly `length`."""
    size = array.shape[axis]
    if torch.is_tensor(array):
        if size > length:
            return array.index_select(axis, torch.arange(length, device=array.device))
        if size < length:
            pad = [0, 0] * array.ndim
            pad[(-axis - 1 if axis < 0 else array.ndim - axis - 1) * 2 + 1] = length - size
            return torch.nn.functional.pad(array, pad)
        return array
    if size > length:
        return array.take(np.arange(length), axis=axis)
    if size < length:
        widths = [(0, 0)] * array.ndim
        widths[axis] = (0, length - size)
        return np.pad(array, widths)
    return array


def _hz_to_mel(freq: np.ndarray) -> np.ndarray:
    # Slaney's mel scale (librosa's default): linear below 1 kHz, logarithmic above.
    freq = np.asarray(freq, dtype=np.float64)
    f_sp, min_log_hz, min_log_mel, logstep = 200.0 / 3, 1000.0, 15.0, np.log(6.4) / 27.0
    mels = freq / f_sp
    log_region = freq >= min_log_hz
    mels[log_region] = min_log_mel + np.log(freq[log_region] / min_log_hz) / logstep
    return mels


def _mel_to_hz(mels: np.ndarray) -> np.ndarray:
    f_sp, min_log_hz, min_log_mel, logstep = 200.0 / 3, 1000.0, 15.0, np.log(6.4) / 27.0
    freqs = f_sp * mels
    log_region = mels >= min_log_mel
    freqs[log_region] = min_log_hz * np.exp(logstep * (mels[log_region] - min_log_mel))
    return freqs


@cache
def mel_filters_np(n_mels: int, sr: int = SAMPLE_RATE, n_fft: int = N_FFT) -> np.ndarray:
    """Slaney-normalised triangular mel filterbank [n_mels, 1 + n_fft // 2], as librosa builds it."""
    fft_freqs = np.linspace(0, sr / 2, 1 + n_fft // 2)
    mel_points = _mel_to_hz(np.linspace(_hz_to_mel(np.array([0.0]))[0], _hz_to_mel(np.array([sr / 2]))[0], n_mels + 2))
    widths = np.diff(mel_points)
    ramps = mel_points[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (mel_points[2 : n_mels + 2] - mel_points[:n_mels]))[:, None]
    return weights.astype(np.float32)


@cache
def _filters_and_window(n_mels: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.from_numpy(mel_filters_np(n_mels)).to(device), torch.hann_window(N_FFT, device=device)


def log_mel_spectrogram(
    audio: np.ndarray | torch.Tensor,
    n_mels: int = 80,
    padding: int = 0,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Whisper's log-mel features of `audio` ([S] or [B, S], 16 kHz) → [n_mels, F] or [B, n_mels, F].

    F = (S + padding) // 160. Dynamic range is clamped to 8 (log10 units) below each item's
    maximum, then scaled to about [-1, 1], as the model was trained.
    """
    if not torch.is_tensor(audio):
        audio = torch.from_numpy(np.asarray(audio, dtype=np.float32))
    if device is not None:
        audio = audio.to(device)
    audio = audio.float()
    if padding > 0:
        audio = torch.nn.functional.pad(audio, (0, padding))
    batched = audio.ndim == 2
    if not batched:
        audio = audio[None]
    filters, window = _filters_and_window(n_mels, audio.device)
    stft = torch.stft(audio, N_FFT, HOP_LENGTH, window=window, return_complex=True)
    power = stft[..., :-1].abs() ** 2
    mel = filters @ power
    log_spec = torch.clamp(mel, min=1e-10).log10()
    peak = log_spec.amax(dim=(1, 2), keepdim=True)
    log_spec = (torch.maximum(log_spec, peak - 8.0) + 4.0) / 4.0
    return log_spec if batched else log_spec[0]
