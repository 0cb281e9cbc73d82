"""Where a decode's time goes: wall seconds per stage, for the engine's profile and metrics.

A `StageClock` is handed to `transcribe.decode_windows` by whoever wants the split (the daemon's
worker does, for every batch); without one nothing is measured. On CUDA a stage ends with a
synchronise, so its seconds are its own and not those of kernels still queued before it.
`BatchProfile` is one batch's split, as the worker returns it and the daemon's metrics count it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field

import torch

STAGES = ("mel", "encoder", "language", "decoder", "alignment")


@dataclass
class StageClock:
    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def stage(self, name: str, device: torch.device) -> Iterator[None]:
        if name not in STAGES:
            raise ValueError(f"unknown stage {name!r}; one of {STAGES}")
        began = time.perf_counter()
        try:
            yield
        finally:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - began


def timed(clock: StageClock | None, name: str, device: torch.device) -> AbstractContextManager[None]:
    """`clock.stage(name)`, or nothing when there is no clock."""
    return nullcontext() if clock is None else clock.stage(name, device)


@dataclass(frozen=True)
class BatchProfile:
    """Where one batch's worker time went (see `docs/performance.md`)."""

    stages: Mapping[str, float]  # seconds per `STAGES` entry
    decoder_passes: int  # decoder calls, the prompt pass and alignment passes included
    windows: int
    audio_seconds: float  # audio in the windows (each is encoded as 30 s)
