"""Close codes (docs/protocol.md, "Close codes") and the error that carries one."""

from __future__ import annotations

import enum


class CloseCode(enum.IntEnum):
    NORMAL = 1000
    GOING_AWAY = 1001
    INTERNAL_ERROR = 1011
    MALFORMED = 4400
    UNAUTHORIZED = 4401
    FORBIDDEN_ORIGIN = 4403
    UNKNOWN_SESSION = 4404
    SESSION_TOO_LONG = 4408
    OUT_OF_ORDER = 4409
    FRAME_TOO_LARGE = 4413
    UNSUPPORTED = 4415
    LIMITS = 4429
    MOVED = 4503  # the replica drains (SIGTERM): committed, resume elsewhere now


class ProtocolError(ValueError):
    """A message or setting breaks protocol v1; `code` is the close code it earns.

    The daemon answers it with an `error` carrying `code`, then the close. A ValueError, so a
    client building a `Start` with a bad setting gets the usual argument error.
    """

    def __init__(self, code: CloseCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
