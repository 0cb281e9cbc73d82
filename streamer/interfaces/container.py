"""Audio in a container (WebM/Opus from a browser's MediaRecorder, Ogg, WAV, MP3, any upload) →
16 kHz mono 16-bit PCM, by ffmpeg in a child process: a well-kept decoder of every format, in
another process, so a malformed file can crash nothing here."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import Awaitable, Callable

import numpy as np

FFMPEG = "ffmpeg"
SAMPLE_RATE = 16000
READ_CHUNK = 3200  # 0.1 s of output


class DecodeError(Exception):
    """ffmpeg could not read the audio; the message is its own last line."""


def ffmpeg_available() -> bool:
    return shutil.which(FFMPEG) is not None


def _command() -> list[str]:
    return [FFMPEG, "-nostdin", "-hide_banner", "-loglevel", "error", "-i", "pipe:0", "-f", "s16le", "-ac", "1", "-ar", str(SAMPLE_RATE), "pipe:1"]


async def decode_file(data: bytes) -> np.ndarray:
    """A whole file → float32 samples at 16 kHz."""
    process = await asyncio.create_subprocess_exec(
        *_command(), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await process.communicate(data)
    if process.returncode != 0:
        raise DecodeError(_last_line(err) or f"ffmpeg exited with {process.returncode}")
    return np.frombuffer(out, dtype="<i2").astype(np.float32) / 32768.0


def _last_line(err: bytes) -> str:
    lines = err.decode("utf-8", errors="replace").strip().splitlines()
    return lines[-1] if lines else ""


class StreamDecoder:
    """A live container stream: bytes in (`write`), PCM out to `on_pcm` as ffmpeg decodes it."""

    def __init__(self, on_pcm: Callable[[bytes], Awaitable[None] | None]) -> None:
        self._on_pcm = on_pcm
        self._process: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self.error: str | None = None

    async def start(self) -> None:
        self._process = await asyncio.create_subprocess_exec(
            *_command(), stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
        self._reader = asyncio.create_task(self._read(), name="ffmpeg-reader")

    async def write(self, data: bytes) -> None:
        assert self._process is not None and self._process.stdin is not None
        if self._process.stdin.is_closing():
            return
        self._process.stdin.write(data)
        with contextlib.suppress(ConnectionError):
            await self._process.stdin.drain()

    async def finish(self) -> None:
        """End of input: waits until ffmpeg has handed over all it decoded."""
        assert self._process is not None and self._process.stdin is not None and self._reader is not None
        if not self._process.stdin.is_closing():
            self._process.stdin.close()
        await self._reader
        err = await self._process.stderr.read() if self._process.stderr is not None else b""
        if await self._process.wait() != 0:
            self.error = _last_line(err) or f"ffmpeg exited with {self._process.returncode}"

    def kill(self) -> None:
        if self._process is not None and self._process.returncode is None:
            self._process.kill()
        if self._reader is not None:
            self._reader.cancel()

    async def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        leftover = b""
        while chunk := await self._process.stdout.read(READ_CHUNK):
            chunk = leftover + chunk
            whole = len(chunk) - len(chunk) % 2  # a sample split across reads waits for its other byte
            chunk, leftover = chunk[:whole], chunk[whole:]
            if chunk:
                result = self._on_pcm(chunk)
                if result is not None:
                    await result
