"""Audio frames of a clip at real-time pace (or N times faster), like a live source would deliver them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from .audio_file import AudioClip

MIN_FRAME_MS, MAX_FRAME_MS = 20, 100


@dataclass(frozen=True)
class PacingOptions:
    frame_ms: int = 40
    speed: float = 1.0  # 0: as fast as the connection takes it

    def __post_init__(self) -> None:
        if not MIN_FRAME_MS <= self.frame_ms <= MAX_FRAME_MS:
            raise ValueError(f"frame_ms must be {MIN_FRAME_MS}..{MAX_FRAME_MS}, got {self.frame_ms}")
        if not self.speed >= 0:
            raise ValueError(f"speed must be 0 (unpaced) or positive, got {self.speed}")


async def paced_frames(
    clip: AudioClip, options: PacingOptions, start_time: float | None = None, clock: Callable[[], float] = time.monotonic
) -> AsyncIterator[bytes]:
    """The clip's PCM in `frame_ms` frames; each is yielded once the audio it holds has "happened".

    Frame k (covering [k·d, (k+1)·d) of audio) is due at start + (k+1)·d / speed: due times come
    from the samples yielded so far against the wall clock, so sleep overshoot never accumulates.
    Streams started with one `start_time` stay in step (meeting participants).
    """
    frame = max(1, clip.sample_rate * options.frame_ms // 1000)
    start = clock() if start_time is None else start_time
    total = clip.samples.shape[0]
    for offset in range(0, total, frame):
        end = min(offset + frame, total)
        if options.speed > 0:
            delay = start + end / clip.sample_rate / options.speed - clock()
            if delay > 0:
                await asyncio.sleep(delay)
        else:
            await asyncio.sleep(0)  # let the receiver run between frames
        yield clip.samples[offset:end].tobytes()
