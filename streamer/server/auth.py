"""Who may open a stream: API keys, short-lived browser tokens, origins, per-key stream limits.

Plain code without I/O (the server feeds it header values and the clock), so every rule is
unit-tested with strings. Keys are kept only as sha256 digests and compared with
`hmac.compare_digest`. A browser cannot set an `Authorization` header on a WebSocket, so it first
asks `POST /v1/token` (with a key) for a token, which is HMAC-signed, bound to the key's id and
expires after `token_ttl` seconds; it then connects with `?token=…`.

Origins: a request without `Origin` is not from a browser page and passes. A browser request
passes when its origin is the daemon's own (the caption page it serves), or is listed for its key
(or, for a key listing none, in the global list); `*` allows any origin.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import os
import re
import secrets
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from websockets.http11 import Request, Response

from wire import CloseCode

from ..config import read_toml
from .http import text_response

API_KEYS_ENV = "WHISPER_STREAMER_API_KEYS"
KEY_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
ANY_ORIGIN = "*"


class AuthConfigError(ValueError):
    """The key list (environment or keys file) is malformed."""


class InsecureListenError(RuntimeError):
    """Refusing to listen beyond loopback without any API key configured."""


def key_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ApiKey:
    key_id: str
    sha256: str  # hex digest of the secret; the secret itself is never kept
    origins: tuple[str, ...] = ()  # browser origins allowed for this key; empty: the global list
    max_streams: int = 0  # concurrent streams of this key; 0: only the daemon's limit applies

    def __post_init__(self) -> None:
        if not KEY_ID_PATTERN.match(self.key_id):
            raise AuthConfigError(f"key id {self.key_id!r} must be 1-64 characters of A-Z a-z 0-9 _ . -")
        if not SHA256_HEX.match(self.sha256):
            raise AuthConfigError(f"key {self.key_id}: sha256 must be 64 lowercase hex digits")
        if self.max_streams < 0:
            raise AuthConfigError(f"key {self.key_id}: max_streams must be >= 0, got {self.max_streams}")
        for origin in self.origins:
            _check_origin(origin, f"key {self.key_id}")


def _check_origin(origin: str, where: str) -> None:
    if origin != ANY_ORIGIN and normalize_origin(origin) is None:
        raise AuthConfigError(f"{where}: {origin!r} is not an origin (scheme://host[:port]) or '*'")


def normalize_origin(origin: str) -> str | None:
    """`scheme://host[:port]` in lowercase, the default port dropped; None if it is not an origin."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/") or parts.query:
        return None
    default = 443 if parts.scheme == "https" else 80
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}" + ("" if port in (None, default) else f":{port}")


@dataclass(frozen=True)
class KeyStore:
    """The configured keys; empty means authentication is off (loopback only, see `check_listen_address`)."""

    keys: tuple[ApiKey, ...] = ()

    def __post_init__(self) -> None:
        ids = [k.key_id for k in self.keys]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise AuthConfigError(f"duplicate key id(s): {', '.join(duplicates)}")

    @property
    def enabled(self) -> bool:
        return bool(self.keys)

    def verify(self, secret: str) -> ApiKey | None:
        """The key whose digest matches `secret`; every key is compared, so timing tells nothing."""
        digest = key_digest(secret)
        found = None
        for key in self.keys:
            if hmac.compare_digest(digest, key.sha256):
                found = key
        return found

    def by_id(self, key_id: str) -> ApiKey | None:
        return next((k for k in self.keys if k.key_id == key_id), None)


def parse_key_list(value: str) -> tuple[ApiKey, ...]:
    """`id:secret,id2:sha256:HEX,…` (the environment variable's form). A bare `secret` gets id `key<n>`."""
    keys = []
    for n, item in enumerate(i.strip() for i in value.split(",")):
        if not item:
            continue
        key_id, sep, rest = item.partition(":")
        if not sep:
            key_id, rest = f"key{n}", item
        if rest.startswith("sha256:"):
            keys.append(ApiKey(key_id, rest.removeprefix("sha256:").lower()))
        elif rest:
            keys.append(ApiKey(key_id, key_digest(rest)))
        else:
            raise AuthConfigError(f"key {key_id!r} has an empty secret")
    return tuple(keys)


def load_keys_file(path: Path) -> tuple[ApiKey, ...]:
    """A TOML file of `[[key]]` tables: `id`, `sha256` (or `secret`), optional `origins`, `max_streams`."""
    data = read_toml(path, "keys file", AuthConfigError)
    entries = data.get("key", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise AuthConfigError(f"{path}: keys must be [[key]] tables")
    keys = []
    for entry in entries:
        unknown = set(entry) - {"id", "sha256", "secret", "origins", "max_streams"}
        if unknown:
            raise AuthConfigError(f"{path}: unknown field(s) {sorted(unknown)} in a [[key]]")
        key_id = entry.get("id")
        if not isinstance(key_id, str):
            raise AuthConfigError(f"{path}: every [[key]] needs a string `id`")
        if ("sha256" in entry) == ("secret" in entry):
            raise AuthConfigError(f"{path}: key {key_id} needs exactly one of `sha256`, `secret`")
        digest = entry["sha256"] if "sha256" in entry else key_digest(str(entry["secret"]))
        origins = entry.get("origins", [])
        if not isinstance(origins, list) or not all(isinstance(o, str) for o in origins):
            raise AuthConfigError(f"{path}: key {key_id}: `origins` must be a list of strings")
        max_streams = entry.get("max_streams", 0)
        if not isinstance(max_streams, int) or isinstance(max_streams, bool):
            raise AuthConfigError(f"{path}: key {key_id}: `max_streams` must be an integer")
        keys.append(ApiKey(key_id, str(digest).lower(), tuple(origins), max_streams))
    return tuple(keys)


def load_key_store(keys_file: str, environ: Mapping[str, str] = os.environ) -> KeyStore:
    """Keys of the keys file (if any) plus those of `WHISPER_STREAMER_API_KEYS`."""
    keys: list[ApiKey] = []
    if keys_file:
        keys.extend(load_keys_file(Path(keys_file)))
    keys.extend(parse_key_list(environ.get(API_KEYS_ENV, "")))
    return KeyStore(tuple(keys))


def check_listen_address(host: str, keys: KeyStore) -> None:
    """Without keys the daemon is open to anyone who reaches it, so it may listen on loopback only."""
    if keys.enabled or is_loopback(host):
        return
    raise InsecureListenError(
        f"refusing to listen on {host!r} without API keys: anyone on the network could use the daemon. "
        f"Configure keys ({API_KEYS_ENV}=id:secret or auth.keys_file) or listen on 127.0.0.1 / ::1."
    )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # "", "0.0.0.0"-like names and host names may reach beyond this machine


def parse_bearer(header: str | None) -> str | None:
    """The credential of `Authorization: Bearer <credential>`, or None."""
    if header is None:
        return None
    scheme, _, credential = header.strip().partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential or " " in credential:
        return None
    return credential


# ---- browser tokens ------------------------------------------------------------------------------


@dataclass(frozen=True)
class IssuedToken:
    token: str
    key_id: str
    expires_at: float  # Unix time


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenSigner:
    """HMAC-SHA256 tokens `payload.signature`, payload = {"kid", "exp", "n"}. Stateless to verify.

    The secret is random per daemon process unless configured, so a restart revokes every token.
    """

    def __init__(self, secret: bytes, ttl: float) -> None:
        if len(secret) < 16:
            raise AuthConfigError("the token secret must be at least 16 bytes")
        if ttl <= 0:
            raise AuthConfigError(f"token ttl must be > 0, got {ttl}")
        self._secret = secret
        self.ttl = ttl

    @classmethod
    def random(cls, ttl: float) -> TokenSigner:
        return cls(secrets.token_bytes(32), ttl)

    def issue(self, key_id: str, now: float) -> IssuedToken:
        expires_at = now + self.ttl
        payload = json.dumps({"kid": key_id, "exp": round(expires_at, 3), "n": secrets.token_hex(8)}, separators=(",", ":"))
        body = _b64(payload.encode("utf-8"))
        return IssuedToken(f"{body}.{self._sign(body)}", key_id, expires_at)

    def verify(self, token: str, now: float) -> str | None:
        """The key id the token was issued for, or None if forged, malformed or expired."""
        body, sep, signature = token.partition(".")
        if not sep or not hmac.compare_digest(self._sign(body), signature):
            return None
        try:
            payload = json.loads(_unb64(body))
        except ValueError:
            return None
        key_id, expires_at = payload.get("kid"), payload.get("exp")
        if not isinstance(key_id, str) or not isinstance(expires_at, (int, float)) or now >= expires_at:
            return None
        return key_id

    def _sign(self, body: str) -> str:
        return _b64(hmac.new(self._secret, body.encode("ascii", errors="replace"), hashlib.sha256).digest())


# ---- decisions -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuthDecision:
    ok: bool
    key_id: str | None = None  # None with ok=True: authentication is off
    close_code: int | None = None  # 4401 / 4403 when refused
    http_status: int | None = None  # 401 / 403 when refused
    reason: str = ""


def _refuse(code: CloseCode, reason: str) -> AuthDecision:
    return AuthDecision(False, None, int(code), 401 if code is CloseCode.UNAUTHORIZED else 403, reason)


@dataclass(frozen=True)
class Credentials:
    """What a request presents, from its headers and query string."""

    authorization: str | None = None
    token: str | None = None
    origin: str | None = None
    host: str | None = None  # the Host header: the daemon's own origin is always allowed
    secure: bool = False  # served over TLS (the scheme of the daemon's own origin)


class Authenticator:
    """Decides on credentials: key or token, then origin. No I/O; the clock is an argument."""

    def __init__(self, keys: KeyStore, signer: TokenSigner, allowed_origins: Iterable[str] = ()) -> None:
        self.keys = keys
        self.signer = signer
        self.allowed_origins = tuple(allowed_origins)
        for origin in self.allowed_origins:
            _check_origin(origin, "auth.allowed_origins")

    def authenticate(self, credentials: Credentials, now: float, *, allow_token: bool = True) -> AuthDecision:
        if not self.keys.enabled:
            return self._check_origin(None, credentials)
        key: ApiKey | None = None
        bearer = parse_bearer(credentials.authorization)
        if bearer is not None:
            key = self.keys.verify(bearer)
        elif credentials.token and allow_token:
            key_id = self.signer.verify(credentials.token, now)
            key = self.keys.by_id(key_id) if key_id is not None else None  # a removed key's tokens die with it
        if key is None:
            if credentials.authorization is None and not credentials.token:
                return _refuse(CloseCode.UNAUTHORIZED, "an API key (Authorization: Bearer) or a token (?token=) is required")
            return _refuse(CloseCode.UNAUTHORIZED, "invalid or expired API key or token")
        return self._check_origin(key, credentials)

    def _check_origin(self, key: ApiKey | None, credentials: Credentials) -> AuthDecision:
        key_id = key.key_id if key is not None else None
        if credentials.origin is None:
            return AuthDecision(True, key_id)
        origin = normalize_origin(credentials.origin)
        own = normalize_origin(f"{'https' if credentials.secure else 'http'}://{credentials.host}") if credentials.host else None
        allowed = key.origins if key is not None and key.origins else self.allowed_origins
        normalized = {normalize_origin(o) for o in allowed if o != ANY_ORIGIN}
        if origin is not None and (origin == own or ANY_ORIGIN in allowed or origin in normalized):
            return AuthDecision(True, key_id)
        return _refuse(CloseCode.FORBIDDEN_ORIGIN, f"origin {credentials.origin!r} is not allowed" + (f" for key {key_id}" if key_id else ""))


# ---- per-key stream limits -------------------------------------------------------------------------


@dataclass
class StreamLimiter:
    """Open streams per key. `acquire` before a stream starts, `release` in the same try/finally.

    Used from the event loop; the lock keeps it correct if a thread ever shares it.
    """

    _counts: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def acquire(self, key_id: str, limit: int) -> bool:
        """Counts one more stream of `key_id` unless `limit` (> 0) is reached; False when refused."""
        with self._lock:
            count = self._counts.get(key_id, 0)
            if limit > 0 and count >= limit:
                return False
            self._counts[key_id] = count + 1
            return True

    def release(self, key_id: str) -> None:
        with self._lock:
            count = self._counts.get(key_id, 0)
            if count <= 0:
                raise RuntimeError(f"release of key {key_id} without a matching acquire")
            if count == 1:
                del self._counts[key_id]
            else:
                self._counts[key_id] = count - 1

    def active(self, key_id: str) -> int:
        with self._lock:
            return self._counts.get(key_id, 0)


# ---- HTTP adapters (websockets `Request` → the plain values above) --------------------------------


def credentials_from_request(request: Request, *, secure: bool) -> Credentials:
    query = parse_qs(urlsplit(request.path).query)
    tokens = query.get("token", [])
    return Credentials(
        authorization=request.headers.get("Authorization"),
        token=tokens[0] if tokens else None,
        origin=request.headers.get("Origin"),
        host=request.headers.get("Host"),
        secure=secure,
    )


def json_response(status: HTTPStatus, body: Mapping[str, object]) -> Response:
    return text_response(status, json.dumps(body) + "\n", "application/json")


def token_endpoint(authenticator: Authenticator, request: Request, now: float, *, secure: bool) -> Response:
    """`POST /v1/token` with `Authorization: Bearer KEY` → `{"token", "key_id", "expires_at", "expires_in"}`.

    Only a key may ask (a token cannot renew itself), so a leaked token dies at its expiry.
    """
    if request.method != "POST":
        return json_response(HTTPStatus.METHOD_NOT_ALLOWED, {"error": "use POST"})
    if not authenticator.keys.enabled:
        return json_response(HTTPStatus.NOT_FOUND, {"error": "authentication is off: no keys are configured, no token is needed"})
    decision = authenticator.authenticate(credentials_from_request(request, secure=secure), now, allow_token=False)
    if not decision.ok:
        assert decision.http_status is not None
        return json_response(HTTPStatus(decision.http_status), {"error": decision.reason})
    assert decision.key_id is not None
    issued = authenticator.signer.issue(decision.key_id, now)
    return json_response(
        HTTPStatus.OK,
        {"token": issued.token, "key_id": issued.key_id, "expires_at": issued.expires_at, "expires_in": authenticator.signer.ttl},
    )
