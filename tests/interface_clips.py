"""Audio of the shared clips in the forms the interfaces' clients send, made by ffmpeg (a real encoder)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def encode(path: Path, *args: str) -> bytes:
    """`path` re-encoded by ffmpeg; `args` are the output options (`-f s16le -ar 16000`, ...)."""
    command = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-i", str(path), "-ac", "1", *args, "pipe:1"]
    return subprocess.run(command, check=True, capture_output=True, timeout=60).stdout


def pcm16(path: Path, rate: int = 16000) -> bytes:
    return encode(path, "-f", "s16le", "-ar", str(rate))


def chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]
