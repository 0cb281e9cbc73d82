"""Keys, bearer parsing, tokens, origins, per-key limits and the loopback rule (streamer/server/auth.py)."""

from __future__ import annotations

import hashlib
import json

import pytest
from websockets.datastructures import Headers
from websockets.http11 import Request

from streamer.server.auth import (
    API_KEYS_ENV,
    ApiKey,
    AuthConfigError,
    Authenticator,
    Credentials,
    InsecureListenError,
    KeyStore,
    StreamLimiter,
    TokenSigner,
    check_listen_address,
    key_digest,
    load_key_store,
    normalize_origin,
    parse_bearer,
    parse_key_list,
    token_endpoint,
)

NOW = 1_000_000.0


def make_auth(*keys: ApiKey, origins: tuple[str, ...] = ()) -> Authenticator:
    return Authenticator(KeyStore(keys), TokenSigner(b"s" * 32, ttl=60.0), origins)


ALICE = ApiKey("alice", key_digest("alice-secret"))
WEB = ApiKey("web", key_digest("web-secret"), origins=("https://captions.example",))


def test_keys_are_kept_as_sha256_digests_only() -> None:
    keys = parse_key_list("alice:alice-secret, bob:sha256:" + hashlib.sha256(b"bob-secret").hexdigest() + ",bare-secret")
    assert [k.key_id for k in keys] == ["alice", "bob", "key2"]
    assert keys[0].sha256 == hashlib.sha256(b"alice-secret").hexdigest()
    assert all("secret" not in repr(k.sha256) for k in keys)
    store = KeyStore(keys)
    assert store.verify("bob-secret").key_id == "bob"
    assert store.verify("bare-secret").key_id == "key2"
    assert store.verify("alice-secret ") is None
    assert store.verify("") is None


def test_key_list_errors() -> None:
    with pytest.raises(AuthConfigError):
        parse_key_list("alice:")
    with pytest.raises(AuthConfigError):
        parse_key_list("alice:sha256:nothex")
    with pytest.raises(AuthConfigError):
        parse_key_list("bad id!:secret")
    with pytest.raises(AuthConfigError, match="duplicate"):
        KeyStore(parse_key_list("a:x,a:y"))


def test_keys_file_and_environment(tmp_path) -> None:
    path = tmp_path / "keys.toml"
    path.write_text(
        '[[key]]\nid = "web"\nsha256 = "{}"\norigins = ["https://captions.example"]\nmax_streams = 2\n'
        '[[key]]\nid = "ops"\nsecret = "ops-secret"\n'.format(key_digest("web-secret"))
    )
    store = load_key_store(str(path), {API_KEYS_ENV: "cli:cli-secret"})
    assert [k.key_id for k in store.keys] == ["web", "ops", "cli"]
    assert store.by_id("web").origins == ("https://captions.example",) and store.by_id("web").max_streams == 2
    assert store.verify("ops-secret").key_id == "ops"
    assert not load_key_store("", {}).enabled
    path.write_text('[[key]]\nid = "x"\nsecret = "a"\nsha256 = "{}"\n'.format(key_digest("a")))
    with pytest.raises(AuthConfigError, match="exactly one"):
        load_key_store(str(path), {})
    path.write_text('[[key]]\nid = "x"\nsecret = "a"\norigins = ["not an origin"]\n')
    with pytest.raises(AuthConfigError, match="not an origin"):
        load_key_store(str(path), {})


@pytest.mark.parametrize(
    ("header", "expected"),
    [("Bearer abc", "abc"), ("bearer  abc ", "abc"), ("Basic abc", None), ("Bearer", None), ("Bearer a b", None), (None, None), ("", None)],
)
def test_parse_bearer(header, expected) -> None:
    assert parse_bearer(header) == expected


def test_loopback_rule() -> None:
    no_keys = KeyStore()
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.5"):
        check_listen_address(host, no_keys)
    for host in ("0.0.0.0", "", "192.168.1.2", "::", "example.com"):
        with pytest.raises(InsecureListenError, match="without API keys"):
            check_listen_address(host, no_keys)
    check_listen_address("0.0.0.0", KeyStore((ALICE,)))


def test_missing_wrong_and_valid_keys() -> None:
    auth = make_auth(ALICE)
    missing = auth.authenticate(Credentials(), NOW)
    assert (missing.ok, missing.close_code, missing.http_status) == (False, 4401, 401)
    wrong = auth.authenticate(Credentials(authorization="Bearer nope"), NOW)
    assert (wrong.ok, wrong.close_code) == (False, 4401)
    ok = auth.authenticate(Credentials(authorization="Bearer alice-secret"), NOW)
    assert (ok.ok, ok.key_id) == (True, "alice")


def test_no_keys_means_open_but_origin_checked() -> None:
    auth = make_auth()
    assert auth.authenticate(Credentials(), NOW).ok
    same = Credentials(origin="http://127.0.0.1:8765", host="127.0.0.1:8765")
    assert auth.authenticate(same, NOW).ok
    foreign = auth.authenticate(Credentials(origin="https://evil.example", host="127.0.0.1:8765"), NOW)
    assert (foreign.ok, foreign.close_code, foreign.http_status) == (False, 4403, 403)


def test_origins_per_key_then_global() -> None:
    auth = make_auth(ALICE, WEB, origins=("https://app.example",))
    def decide(secret: str, origin: str):
        return auth.authenticate(Credentials(authorization=f"Bearer {secret}", origin=origin, host="daemon:8765"), NOW)

    assert decide("web-secret", "https://captions.example").ok
    assert decide("web-secret", "https://CAPTIONS.example:443").ok  # normalised
    refused = decide("web-secret", "https://app.example")  # the key's own list replaces the global one
    assert (refused.ok, refused.close_code, refused.key_id) == (False, 4403, None)
    assert decide("alice-secret", "https://app.example").ok
    assert not decide("alice-secret", "https://captions.example").ok
    assert decide("alice-secret", "http://daemon:8765").ok  # the daemon's own page
    assert not decide("alice-secret", "null").ok
    assert make_auth(ALICE, origins=("*",)).authenticate(Credentials(authorization="Bearer alice-secret", origin="https://x.example"), NOW).ok


def test_normalize_origin() -> None:
    assert normalize_origin("HTTPS://Example.com:443/") == "https://example.com"
    assert normalize_origin("http://example.com:8080") == "http://example.com:8080"
    assert normalize_origin("ftp://example.com") is None
    assert normalize_origin("https://example.com/path") is None
    assert normalize_origin("https://example.com:99999") is None


def test_tokens_are_signed_bound_and_expire() -> None:
    auth = make_auth(ALICE, WEB)
    issued = auth.signer.issue("web", NOW)
    assert issued.expires_at == NOW + 60.0
    ok = auth.authenticate(Credentials(token=issued.token, origin="https://captions.example"), NOW + 30)
    assert (ok.ok, ok.key_id) == (True, "web")
    assert not auth.authenticate(Credentials(token=issued.token), NOW + 60).ok  # expired
    body, signature = issued.token.split(".")
    forged_body = body[:-2] + ("AA" if body[-2:] != "AA" else "BB")
    assert not auth.authenticate(Credentials(token=f"{forged_body}.{signature}"), NOW).ok
    other = TokenSigner(b"x" * 32, 60.0).issue("web", NOW)
    assert not auth.authenticate(Credentials(token=other.token), NOW).ok  # another daemon's secret
    assert not auth.authenticate(Credentials(token="garbage"), NOW).ok
    gone = Authenticator(KeyStore((ALICE,)), auth.signer)
    assert not gone.authenticate(Credentials(token=issued.token), NOW).ok  # the key was removed
    # a token still obeys its key's origins
    assert auth.authenticate(Credentials(token=issued.token, origin="https://other.example"), NOW).close_code == 4403


def test_token_endpoint() -> None:
    auth = make_auth(WEB)

    def post(headers: list[tuple[str, str]], method: str = "POST"):
        return token_endpoint(auth, Request("/v1/token", Headers(headers), method), NOW, secure=False)

    response = post([("Authorization", "Bearer web-secret")])
    assert response.status_code == 200
    body = json.loads(response.body)
    assert body["key_id"] == "web" and body["expires_in"] == 60.0
    assert auth.signer.verify(body["token"], NOW + 1) == "web"
    assert post([]).status_code == 401
    assert post([("Authorization", "Bearer wrong")]).status_code == 401
    assert post([("Authorization", "Bearer web-secret"), ("Origin", "https://evil.example")]).status_code == 403
    assert post([("Authorization", "Bearer web-secret")], method="GET").status_code == 405
    # a token cannot mint tokens
    token = auth.signer.issue("web", NOW).token
    assert token_endpoint(auth, Request(f"/v1/token?token={token}", Headers(), "POST"), NOW, secure=False).status_code == 401


def test_stream_limiter() -> None:
    limiter = StreamLimiter()
    assert limiter.acquire("a", 2) and limiter.acquire("a", 2)
    assert not limiter.acquire("a", 2)
    assert limiter.acquire("b", 2)
    limiter.release("a")
    assert limiter.active("a") == 1
    assert limiter.acquire("a", 2)
    assert all(limiter.acquire("c", 0) for _ in range(100))  # 0: no per-key limit
    limiter.release("b")
    with pytest.raises(RuntimeError):
        limiter.release("b")
