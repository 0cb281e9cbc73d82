"""Typed reads of a message map's keys: a missing or mistyped key makes the message malformed (4400)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .codes import CloseCode, ProtocolError

NUMBER = (int, float)
_REQUIRED: Any = object()


def read(body: Mapping[str, Any], key: str, kind: type | tuple[type, ...], default: Any = _REQUIRED) -> Any:
    """`body[key]`, checked to be of `kind`; `default` when absent (without one the key is required)."""
    if key not in body:
        if default is _REQUIRED:
            raise ProtocolError(CloseCode.MALFORMED, f"`{body.get('type')}` message without `{key}`")
        return default
    value = body[key]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    # bool is an int in Python; a JSON `true` is never a sample rate.
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        raise ProtocolError(CloseCode.MALFORMED, f"`{key}` must be {kinds[0].__name__}, got {value!r}")
    return value


def read_strings(body: Mapping[str, Any], key: str) -> tuple[str, ...]:
    """A list of strings, empty when absent."""
    values = read(body, key, list, [])
    if not all(isinstance(value, str) for value in values):
        raise ProtocolError(CloseCode.MALFORMED, f"`{key}` must be a list of strings")
    return tuple(values)
