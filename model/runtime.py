"""Process-wide settings for running the model on the CPU, shared by the CLI and the daemon.

glibc keeps freed heap for reuse and raises its mmap threshold (up to 32 MB) after large
frees, so a batch's activations would stay resident long after the batch. These calls keep
peak and steady resident memory close to what is in use; where libc is not glibc they do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import lru_cache

import torch

_M_MMAP_THRESHOLD = -3  # glibc mallopt parameter


@lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def return_freed_memory_to_os(threshold_bytes: int = 1 << 20) -> bool:
    """From now on, freed buffers of `threshold_bytes` or more go back to the OS at once."""
    libc = _libc()
    return libc is not None and hasattr(libc, "mallopt") and bool(libc.mallopt(_M_MMAP_THRESHOLD, threshold_bytes))


def release_free_memory() -> None:
    """Hands the heap's free memory back to the OS now (after a burst of work)."""
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


def cpu_has_native_bfloat16() -> bool:
    """Whether this CPU multiplies bfloat16 matrices natively (AVX512-BF16 or AMX): there the
    model runs in about half the float32 time; elsewhere bfloat16 is emulated, and slower."""
    # torch exposes these checks only under private names; without them, assume no.
    checks = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    return any(check is not None and bool(check()) for check in checks)
