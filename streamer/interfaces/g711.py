"""G.711 mu-law and A-law to 16-bit PCM, by 256-entry tables (ITU-T G.711; `audioop` left Python in 3.13)."""

from __future__ import annotations

import numpy as np


def _ulaw_table() -> np.ndarray:
    byte = ~np.arange(256, dtype=np.int32) & 0xFF
    sign, exponent, mantissa = byte & 0x80, (byte >> 4) & 0x07, byte & 0x0F
    magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84
    return np.where(sign != 0, -magnitude, magnitude).astype("<i2")


def _alaw_table() -> np.ndarray:
    byte = np.arange(256, dtype=np.int32) ^ 0x55
    sign, exponent, mantissa = byte & 0x80, (byte >> 4) & 0x07, byte & 0x0F
    magnitude = np.where(exponent == 0, (mantissa << 4) + 8, ((mantissa << 4) + 0x108) << np.maximum(exponent - 1, 0))
    return np.where(sign != 0, magnitude, -magnitude).astype("<i2")


ULAW = _ulaw_table()
ALAW = _alaw_table()


def ulaw_to_pcm16(data: bytes) -> bytes:
    return ULAW[np.frombuffer(data, dtype=np.uint8)].tobytes()


def alaw_to_pcm16(data: bytes) -> bytes:
    return ALAW[np.frombuffer(data, dtype=np.uint8)].tobytes()
