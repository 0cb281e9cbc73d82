"""The credentials Deepgram's and OpenAI's clients present, as the `Credentials` protocol v1 checks.

Deepgram sends `Authorization: Token KEY` (or `bearer JWT`), browsers the subprotocols `token, KEY`;
OpenAI sends `Authorization: Bearer KEY`, browsers `realtime, openai-insecure-api-key.KEY`. Each is
read here and handed to the one `Authenticator` as a Bearer key, so keys, tokens, origins and
per-key limits stay those of protocol v1. Plain code, no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from urllib.parse import parse_qs, urlsplit

from websockets.datastructures import Headers
from websockets.http11 import Request

from ..server.auth import Credentials, credentials_from_request

OPENAI_KEY_SUBPROTOCOL = "openai-insecure-api-key."
SELECTABLE_SUBPROTOCOLS = ("token", "bearer", "realtime")  # the one a browser client expects echoed


def offered_subprotocols(headers: Headers) -> list[str]:
    return [p.strip() for value in headers.get_all("Sec-WebSocket-Protocol") for p in value.split(",") if p.strip()]


def presented_key(headers: Headers, query: str) -> str | None:
    """The API key in any form these clients send it, or None."""
    header = headers.get("Authorization")
    if header is not None:
        scheme, _, credential = header.strip().partition(" ")
        if scheme.lower() in ("token", "bearer") and credential.strip():
            return credential.strip()
    offered = offered_subprotocols(headers)
    if len(offered) >= 2 and offered[0].lower() in ("token", "bearer"):
        return offered[1]
    for protocol in offered:
        if protocol.startswith(OPENAI_KEY_SUBPROTOCOL) and len(protocol) > len(OPENAI_KEY_SUBPROTOCOL):
            return protocol.removeprefix(OPENAI_KEY_SUBPROTOCOL)
    api_key = headers.get("X-API-Key") or next(iter(parse_qs(query).get("api_key", [])), None)
    return api_key or None


def interface_credentials(request: Request, *, secure: bool) -> Credentials:
    base = credentials_from_request(request, secure=secure)
    key = presented_key(request.headers, urlsplit(request.path).query)
    return replace(base, authorization=f"Bearer {key}") if key is not None else base


def select_subprotocol(offered: Sequence[str]) -> str | None:
    """`token`/`bearer` (Deepgram) or `realtime` (OpenAI) when offered: browsers fail the handshake otherwise."""
    lowered = {p.lower(): p for p in offered}
    return next((lowered[p] for p in SELECTABLE_SUBPROTOCOLS if p in lowered), None)
