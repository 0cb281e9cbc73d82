"""Client audio frames → 16 kHz mono float32, frame by frame.

A stream keeps one `AudioDecoder`; its soxr `ResampleStream` carries the filter state across
frames, so arbitrary frame boundaries do not click.
"""

from __future__ import annotations

import numpy as np
import soxr

from model.constants import SAMPLE_RATE
from wire import CloseCode, ProtocolError, Start

MAX_FLOAT_PEAK = 2.0  # f32le samples beyond this are refused (4415); between 1 and this, clipped


class AudioDecoder:
    """Decodes, mixes to mono and resamples one stream's audio. Owned by the stream's session."""

    def __init__(self, start: Start) -> None:
        self._encoding = start.encoding
        self._channels = start.channels
        self._bytes_per_frame = start.bytes_per_frame
        self._resampler = (
            None if start.sample_rate == SAMPLE_RATE else soxr.ResampleStream(start.sample_rate, SAMPLE_RATE, 1, dtype="float32", quality="HQ")
        )
        self.input_samples = 0  # per channel, at the client's rate

    def decode(self, data: bytes) -> np.ndarray:
        """One frame → the 16 kHz mono samples it completes (maybe none yet, while soxr fills)."""
        if len(data) % self._bytes_per_frame:
            raise ProtocolError(
                CloseCode.UNSUPPORTED,
                f"audio frame of {len(data)} bytes is not a whole number of {self._channels}-channel {self._encoding} samples",
            )
        if self._encoding == "pcm_s16le":
            samples = np.frombuffer(data, "<i2").astype(np.float32) / 32768.0
        else:
            samples = np.frombuffer(data, "<f4").astype(np.float32)
            if not np.isfinite(samples).all():
                raise ProtocolError(CloseCode.UNSUPPORTED, "audio contains NaN or infinite samples")
            peak = float(np.abs(samples).max(initial=0.0))
            if peak > MAX_FLOAT_PEAK:
                # Far beyond [-1, 1] is not loud speech but the wrong format (integers sent as f32le,
                # big-endian data): decoding it would only give noise to the model.
                raise ProtocolError(CloseCode.UNSUPPORTED, f"f32le samples must lie in [-1, 1]; got a peak of {peak:.3g}")
            if peak > 1.0:
                np.clip(samples, -1.0, 1.0, out=samples)  # slight overshoot (resampling, gain): clipped
        if self._channels > 1:
            samples = samples.reshape(-1, self._channels).mean(axis=1, dtype=np.float32)
        self.input_samples += len(samples)
        if self._resampler is None:
            return samples
        return self._resampler.resample_chunk(samples, last=False)

    def finish(self) -> np.ndarray:
        """The resampler's tail, at the end of the stream."""
        if self._resampler is None:
            return np.zeros(0, np.float32)
        return self._resampler.resample_chunk(np.zeros(0, np.float32), last=True)
