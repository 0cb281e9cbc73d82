"""The numbers and names of protocol v1 (docs/protocol.md) that both ends check."""

from __future__ import annotations

PROTOCOL_VERSION = 1
BYTES_PER_SAMPLE = {"pcm_s16le": 2, "f32le": 4}
ENCODINGS = tuple(BYTES_PER_SAMPLE)
TASKS = ("transcribe", "translate")
EVENTS = ("vad",)  # what `start.events` may subscribe to
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 8000, 48000
MAX_CHANNELS = 8
ENDPOINT_SILENCE = (0.1, 10.0)  # s: the bounds `stream.endpoint_silence` has in config.toml
