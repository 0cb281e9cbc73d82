"""Process-wide settings for running the model on the CPU, shared by the CLI and the daemon."""

from __future__ import annotations

import ctypes
import ctypes.util

_M_MMAP_THRESHOLD = -3  # glibc mallopt parameter


def return_freed_memory_to_os(threshold_bytes: int = 1 << 20) -> bool:
    """Make large freed buffers go back to the OS at once.

    glibc raises its mmap threshold (up to 32 MB) after large frees, so a batch's activations
    would stay resident in the heap long after the batch; a fixed threshold keeps peak and
    steady resident memory close to what is in use. Returns False where libc is not glibc.
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, threshold_bytes))
    except (OSError, AttributeError):
        return False
