"""Authentication of the web view: tokens, key sources, where tokens are read, origins, the
middleware, expiry, and the entitlement property over compiled filters.

Keys are generated here (nothing checked in), tokens are minted relative to the real clock
because PyJWT validates `exp`/`nbf` against it, and margins are minutes, so no test depends on
timing.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer, make_mocked_request
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app import metrics
from app.config import load_settings
from app.domain.filters import FilterError, compile_filter, restrict_to_accounts
from app.errors import ConfigError
from app.logs import RedactingFilter
from app.metadata import blotter_object_type
from web.auth import (
    ANONYMOUS,
    WS_PROTOCOLS,
    Authenticator,
    AuthError,
    AuthOptions,
    AuthUnavailable,
    Principal,
    auth_middleware,
    entitled,
    expiry_check_delay,
    extract_token,
    origin_allowed,
    principal_of,
    row_entitled,
    seconds_until_expiry,
)
from web.auth_http import normalize_origins
from web.auth_jwks import JwksKeys

ISSUER = "https://idp.example.test/"
AUDIENCE = "trade-blotter"
SECRET = secrets.token_urlsafe(48)
LEEWAY = 30.0
OPTIONS = AuthOptions(leeway_s=LEEWAY, jwks_cache_s=300.0, jwks_min_refresh_s=30.0)
MISSING = object()

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
OTHER_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def pem(private_key: Any) -> str:
    return (
        private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


RSA_PEM = pem(RSA_KEY)
EC_PEM = pem(EC_KEY)


# -- token minting -------------------------------------------------------------------------------
def claims(**overrides: Any) -> dict[str, Any]:
    """A valid payload, with `overrides` applied (MISSING removes a claim)."""
    body: dict[str, Any] = {
        "sub": "alice",
        "accounts": ["A", "B"],
        "exp": int(time.time()) + 600,
        "iat": int(time.time()) - 5,
        "iss": ISSUER,
        "aud": AUDIENCE,
        "jti": "token-1",
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not MISSING}


def hs(payload: Mapping[str, Any], secret: str = SECRET, **headers: Any) -> str:
    return jwt.encode(dict(payload), secret, algorithm="HS256", headers=headers or None)


def rs(payload: Mapping[str, Any], key: Any = RSA_KEY, **headers: Any) -> str:
    return jwt.encode(dict(payload), key, algorithm="RS256", headers=headers or None)


def es(payload: Mapping[str, Any], key: Any = EC_KEY, **headers: Any) -> str:
    return jwt.encode(dict(payload), key, algorithm="ES256", headers=headers or None)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(header: Mapping[str, Any], payload: Mapping[str, Any], hmac_key: bytes | None) -> str:
    """A token built by hand, as an attacker would: PyJWT refuses to sign these."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    if hmac_key is None:
        return signing_input + "."
    digest = hmac.new(hmac_key, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(digest)}"


# -- authenticators ------------------------------------------------------------------------------
BASE_ENV = {"AUTH_MODE": "jwt", "AUTH_JWT_ISSUER": ISSUER, "AUTH_JWT_AUDIENCE": AUDIENCE}


def make_auth(options: AuthOptions = OPTIONS, **env: str) -> Authenticator:
    environment = {**BASE_ENV, **env}
    return Authenticator.from_settings(
        load_settings({k: v for k, v in environment.items() if v}), options
    )


def hs_auth(**env: str) -> Authenticator:
    return make_auth(AUTH_JWT_SECRET=SECRET, **env)


def failures(reason: str) -> float:
    value = metrics.REGISTRY.get_sample_value("blotter_auth_failures_total", {"reason": reason})
    return value or 0.0


async def refused(authenticator: Authenticator, token: str) -> AuthError:
    with pytest.raises(AuthError) as caught:
        await authenticator.verify(token)
    return caught.value


# -- valid tokens --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("env", "mint"),
    [
        ({"AUTH_JWT_SECRET": SECRET}, hs),
        ({"AUTH_JWT_PUBLIC_KEY": RSA_PEM}, rs),
        ({"AUTH_JWT_PUBLIC_KEY": EC_PEM}, es),
    ],
    ids=["HS256", "RS256", "ES256"],
)
async def test_a_valid_token_gives_its_principal(env: dict[str, str], mint: Callable) -> None:
    authenticator = make_auth(**env)
    payload = claims(accounts=["A", "B"])
    principal = await authenticator.verify(mint(payload))
    assert principal == Principal(
        subject="alice",
        accounts=frozenset({"A", "B"}),
        expires_at=payload["exp"] + LEEWAY,
        token_id="token-1",
    )


async def test_a_star_claim_entitles_every_account_and_an_empty_list_none() -> None:
    authenticator = hs_auth()
    everything = await authenticator.verify(hs(claims(accounts=["*"])))
    nothing = await authenticator.verify(hs(claims(accounts=[])))
    assert everything.accounts is None and everything.all_accounts
    assert nothing.accounts == frozenset()
    assert entitled(everything, "ZZ") and not entitled(nothing, "A")


async def test_the_audience_may_be_one_of_a_list() -> None:
    principal = await hs_auth().verify(hs(claims(aud=["other", AUDIENCE])))
    assert principal.subject == "alice"


async def test_without_configured_issuer_and_audience_they_are_not_checked() -> None:
    authenticator = make_auth(AUTH_JWT_SECRET=SECRET, AUTH_JWT_ISSUER="", AUTH_JWT_AUDIENCE="")
    principal = await authenticator.verify(hs(claims(iss="anyone", aud="anything")))
    assert principal.subject == "alice"


async def test_the_leeway_accepts_small_clock_skew() -> None:
    authenticator = hs_auth()
    now = time.time()
    late = await authenticator.verify(hs(claims(exp=int(now) - 10)))
    early = await authenticator.verify(hs(claims(nbf=int(now) + 10)))
    # A token let through by the leeway is still valid for the rest of the leeway.
    remaining = seconds_until_expiry(late, time.time())
    assert remaining is not None and 0 < remaining <= LEEWAY - 9
    assert early.subject == "alice"


# -- refused tokens ------------------------------------------------------------------------------
NOW = int(time.time())
REFUSED_HS = [
    ("expired", lambda: hs(claims(exp=int(time.time()) - 120))),
    ("not_yet_valid", lambda: hs(claims(nbf=int(time.time()) + 120))),
    ("not_yet_valid", lambda: hs(claims(iat=int(time.time()) + 120))),
    ("bad_issuer", lambda: hs(claims(iss="https://evil.example.test/"))),
    ("bad_issuer", lambda: hs(claims(iss=MISSING))),
    ("bad_audience", lambda: hs(claims(aud="another-app"))),
    ("bad_audience", lambda: hs(claims(aud=MISSING))),
    ("bad_signature", lambda: hs(claims(), secret=secrets.token_urlsafe(48))),
    ("bad_claims", lambda: hs(claims(exp=MISSING))),
    ("bad_claims", lambda: hs(claims(sub=MISSING))),
    ("bad_claims", lambda: hs(claims(sub=""))),
    ("bad_claims", lambda: hs(claims(sub=42))),
    ("bad_claims", lambda: hs(claims(exp=str(int(time.time()) + 600)))),
    ("bad_claims", lambda: hs(claims(exp=[1]))),
    ("bad_claims", lambda: hs(claims(iat="yesterday"))),
    ("bad_claims", lambda: hs(claims(nbf="soon"))),
    ("bad_claims", lambda: hs(claims(accounts=MISSING))),
    ("bad_claims", lambda: hs(claims(accounts="A"))),
    ("bad_claims", lambda: hs(claims(accounts="*"))),
    ("bad_claims", lambda: hs(claims(accounts=[1, 2]))),
    ("bad_claims", lambda: hs(claims(accounts=["A", ""]))),
    ("bad_claims", lambda: hs(claims(accounts=["*", "A"]))),
    ("bad_claims", lambda: hs(claims(accounts={"A": True}))),
    ("bad_claims", lambda: hs(claims(accounts=None))),
    ("bad_algorithm", lambda: forge({"alg": "none", "typ": "JWT"}, claims(), None)),
    ("bad_algorithm", lambda: forge({"alg": "None", "typ": "JWT"}, claims(), None)),
    ("bad_algorithm", lambda: rs(claims())),
    ("bad_algorithm", lambda: jwt.encode(claims(), SECRET + "x" * 40, algorithm="HS512")),
    ("malformed", lambda: ""),
    ("malformed", lambda: "not-a-token"),
    ("malformed", lambda: "a.b.c"),
    ("malformed", lambda: "a.b.c.d"),
    ("malformed", lambda: hs(claims()) + "x" * 9000),
    ("malformed", lambda: forge({"alg": "HS256"}, claims(), SECRET.encode()).replace(".", "!", 1)),
]


@pytest.mark.parametrize(("reason", "mint"), REFUSED_HS)
async def test_hs256_refusals_have_their_reason_and_are_counted(
    reason: str, mint: Callable[[], str]
) -> None:
    authenticator = hs_auth()
    before = failures(reason)
    error = await refused(authenticator, mint())
    assert error.reason == reason
    assert error.status == 401
    assert failures(reason) == before + 1


async def test_a_tampered_payload_fails_the_signature() -> None:
    header, _, signature = hs(claims(accounts=["A"])).split(".")
    forged_payload = b64(json.dumps(claims(accounts=["*"])).encode())
    error = await refused(hs_auth(), f"{header}.{forged_payload}.{signature}")
    assert error.reason == "bad_signature"


async def test_a_token_signed_with_the_public_key_as_hmac_secret_is_refused() -> None:
    """The classic RS/HS confusion: the attacker knows the public key and signs HS256 with it."""
    authenticator = make_auth(AUTH_JWT_PUBLIC_KEY=RSA_PEM)
    for key in (RSA_PEM.encode(), RSA_PEM.strip().encode()):
        token = forge({"alg": "HS256", "typ": "JWT"}, claims(accounts=["*"]), key)
        assert (await refused(authenticator, token)).reason == "bad_algorithm"


@pytest.mark.parametrize(
    ("env", "token", "reason"),
    [
        (
            {"AUTH_JWT_PUBLIC_KEY": RSA_PEM},
            lambda: rs(claims(), key=OTHER_RSA_KEY),
            "bad_signature",
        ),
        ({"AUTH_JWT_PUBLIC_KEY": RSA_PEM}, lambda: es(claims()), "bad_algorithm"),
        ({"AUTH_JWT_PUBLIC_KEY": EC_PEM}, lambda: rs(claims()), "bad_algorithm"),
        ({"AUTH_JWT_PUBLIC_KEY": EC_PEM}, lambda: hs(claims()), "bad_algorithm"),
        ({"AUTH_JWT_PUBLIC_KEY": RSA_PEM}, lambda: rs(claims(exp=NOW - 600)), "expired"),
        ({"AUTH_JWT_PUBLIC_KEY": EC_PEM}, lambda: es(claims(aud="x")), "bad_audience"),
    ],
)
async def test_public_key_refusals(
    env: dict[str, str], token: Callable[[], str], reason: str
) -> None:
    assert (await refused(make_auth(**env), token())).reason == reason


async def test_disabled_mode_gives_everyone_all_accounts_and_warns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="web.auth"):
        authenticator = make_auth(AUTH_MODE="disabled", AUTH_JWT_ISSUER="", AUTH_JWT_AUDIENCE="")
    assert not authenticator.enabled
    assert await authenticator.verify("garbage") == ANONYMOUS
    request = make_mocked_request("GET", "/v1/positions/x")
    assert await authenticator.authenticate(request) == ANONYMOUS
    assert ANONYMOUS.accounts is None and seconds_until_expiry(ANONYMOUS, time.time()) is None
    warnings = [r for r in caplog.records if "DISABLED" in r.getMessage()]
    assert len(warnings) == 1


# -- configuration -------------------------------------------------------------------------------
def test_configuration_errors_name_the_variable() -> None:
    cases = {
        "AUTH_JWT_SECRET": {"AUTH_JWT_SECRET": "short"},
        "AUTH_JWT_PUBLIC_KEY": {"AUTH_JWT_PUBLIC_KEY": "not a pem"},
        "AUTH_MODE": {"AUTH_JWT_SECRET": SECRET, "AUTH_JWT_PUBLIC_KEY": RSA_PEM},
    }
    for variable, env in cases.items():
        with pytest.raises(ConfigError) as caught:
            make_auth(**env)
        assert caught.value.variable == variable


@pytest.mark.parametrize(
    "key",
    [
        rsa.generate_private_key(public_exponent=65537, key_size=1024),
        ec.generate_private_key(ec.SECP384R1()),
    ],
    ids=["rsa-1024", "p-384"],
)
def test_weak_or_unpinned_public_keys_are_refused(key: Any) -> None:
    with pytest.raises(ConfigError):
        make_auth(AUTH_JWT_PUBLIC_KEY=pem(key))


def test_a_private_key_is_not_accepted_as_the_public_key() -> None:
    private_pem = RSA_KEY.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    with pytest.raises(ConfigError):
        make_auth(AUTH_JWT_PUBLIC_KEY=private_pem)


async def test_a_pem_with_escaped_newlines_is_accepted() -> None:
    authenticator = make_auth(AUTH_JWT_PUBLIC_KEY=RSA_PEM.replace("\n", "\\n"))
    assert (await authenticator.verify(rs(claims()))).subject == "alice"


def test_a_wildcard_origin_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError) as caught:
        normalize_origins(["https://ok.example.test", "*"])
    assert caught.value.variable == "AUTH_ALLOWED_ORIGINS"


# -- JWKS ----------------------------------------------------------------------------------------
def jwk(private_key: Any, kid: str, **extra: Any) -> dict[str, Any]:
    public = private_key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        data = jwt.algorithms.RSAAlgorithm.to_jwk(public, as_dict=True)
    else:
        data = jwt.algorithms.ECAlgorithm.to_jwk(public, as_dict=True)
    return {**data, "kid": kid, "use": "sig", **extra}


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class FakeJwks:
    """A JWKS endpoint in memory: what it serves, how often it was asked, and whether it fails."""

    def __init__(self, *keys: dict[str, Any]) -> None:
        self.keys = list(keys)
        self.calls = 0
        self.fail = False

    def __call__(self) -> dict[str, Any]:
        self.calls += 1
        if self.fail:
            raise OSError("identity provider unreachable")
        return {"keys": list(self.keys)}


def jwks_auth(endpoint: FakeJwks, clock: FakeClock) -> Authenticator:
    from web.auth_jwt import TokenVerifier

    keys = JwksKeys(
        "https://idp.example.test/jwks", cache_s=300, min_refresh_s=30, fetch=endpoint, clock=clock
    )
    verifier = TokenVerifier(keys, issuer=ISSUER, audience=AUDIENCE, leeway_s=LEEWAY)
    return Authenticator(verifier, options=OPTIONS)


async def test_jwks_keys_are_fetched_once_and_served_from_memory() -> None:
    endpoint = FakeJwks(jwk(RSA_KEY, "rsa-1"), jwk(EC_KEY, "ec-1"))
    authenticator = jwks_auth(endpoint, FakeClock())
    assert (await authenticator.verify(rs(claims(), kid="rsa-1"))).subject == "alice"
    assert (await authenticator.verify(es(claims(sub="bob"), kid="ec-1"))).subject == "bob"
    assert endpoint.calls == 1


async def test_an_unknown_kid_refreshes_at_most_once_per_interval() -> None:
    clock = FakeClock()
    endpoint = FakeJwks(jwk(RSA_KEY, "rsa-1"))
    authenticator = jwks_auth(endpoint, clock)
    await authenticator.verify(rs(claims(), kid="rsa-1"))
    clock.now += 31
    for _ in range(20):  # made-up key ids must not become a request flood
        assert (await refused(authenticator, rs(claims(), kid="nope"))).reason == "bad_signature"
    assert endpoint.calls == 2
    # The issuer rotates to a new key: found after the interval, without a restart.
    endpoint.keys.append(jwk(OTHER_RSA_KEY, "rsa-2"))
    assert (await refused(authenticator, rs(claims(), key=OTHER_RSA_KEY, kid="rsa-2"))).reason
    clock.now += 31
    principal = await authenticator.verify(rs(claims(), key=OTHER_RSA_KEY, kid="rsa-2"))
    assert principal.subject == "alice" and endpoint.calls == 3


async def test_a_stale_set_is_refreshed_and_kept_when_the_refresh_fails() -> None:
    clock = FakeClock()
    endpoint = FakeJwks(jwk(RSA_KEY, "rsa-1"))
    authenticator = jwks_auth(endpoint, clock)
    await authenticator.verify(rs(claims(), kid="rsa-1"))
    clock.now += 301
    endpoint.fail = True
    assert (await authenticator.verify(rs(claims(), kid="rsa-1"))).subject == "alice"
    assert endpoint.calls == 2
    endpoint.fail = False
    endpoint.keys = [jwk(OTHER_RSA_KEY, "rsa-2")]  # rsa-1 revoked
    clock.now += 31
    assert (await refused(authenticator, rs(claims(), kid="rsa-1"))).reason == "bad_signature"


async def test_without_any_key_the_caller_is_told_to_retry() -> None:
    endpoint = FakeJwks(jwk(RSA_KEY, "rsa-1"))
    endpoint.fail = True
    before = failures("jwks_unavailable")
    error = await refused(jwks_auth(endpoint, FakeClock()), rs(claims(), kid="rsa-1"))
    assert isinstance(error, AuthUnavailable) and error.status == 503
    assert failures("jwks_unavailable") == before + 1


async def test_jwks_refuses_confusion_and_unpinned_keys() -> None:
    hmac_secret = secrets.token_bytes(32)
    endpoint = FakeJwks(
        jwk(RSA_KEY, "rsa-1"),
        {"kty": "oct", "kid": "hs-1", "k": b64(hmac_secret), "use": "sig"},
        jwk(OTHER_RSA_KEY, "rs512", alg="RS512"),
    )
    authenticator = jwks_auth(endpoint, FakeClock())
    cases = {
        # a symmetric key published in the set is never used
        forge({"alg": "HS256", "kid": "hs-1"}, claims(), hmac_secret): "bad_algorithm",
        # HS256 with the RSA key's public JWK as secret
        forge({"alg": "HS256", "kid": "rsa-1"}, claims(), RSA_PEM.encode()): "bad_algorithm",
        # header alg differs from the key's algorithm
        es(claims(), kid="rsa-1"): "bad_algorithm",
        forge({"alg": "none", "kid": "rsa-1"}, claims(), None): "bad_algorithm",
        rs(claims(), key=OTHER_RSA_KEY, kid="rs512"): "bad_signature",  # alg not pinned: dropped
        rs(claims()): "bad_signature",  # no kid
        rs(claims(), key=OTHER_RSA_KEY, kid="rsa-1"): "bad_signature",
    }
    for token, reason in cases.items():
        assert (await refused(authenticator, token)).reason == reason


async def test_a_slow_jwks_fetch_runs_off_the_loop_and_is_shared() -> None:
    started, release = threading.Event(), threading.Event()
    endpoint = FakeJwks(jwk(RSA_KEY, "rsa-1"))

    def slow_fetch() -> dict[str, Any]:
        started.set()
        release.wait(10)
        return endpoint()

    keys = JwksKeys("https://idp.example.test/jwks", fetch=slow_fetch, timeout_s=10)
    from web.auth_jwt import TokenVerifier

    authenticator = Authenticator(TokenVerifier(keys, issuer=ISSUER, audience=AUDIENCE))
    token = rs(claims(), kid="rsa-1")
    pending = [asyncio.create_task(authenticator.verify(token)) for _ in range(10)]
    assert await asyncio.to_thread(started.wait, 10)
    # The loop is free while the fetch blocks its thread: this coroutine runs.
    assert not any(task.done() for task in pending)
    release.set()
    principals = await asyncio.gather(*pending)
    assert {p.subject for p in principals} == {"alice"} and endpoint.calls == 1


async def test_jwks_over_http() -> None:
    served = {"keys": [jwk(EC_KEY, "ec-1")]}

    async def jwks(request: web.Request) -> web.Response:
        return web.json_response(served)

    app = web.Application()
    app.router.add_get("/jwks", jwks)
    async with TestServer(app) as server:
        authenticator = make_auth(AUTH_JWKS_URL=str(server.make_url("/jwks")))
        await authenticator.prefetch_keys()
        assert (await authenticator.verify(es(claims(), kid="ec-1"))).subject == "alice"


def test_a_jwks_url_must_be_http() -> None:
    with pytest.raises(ConfigError):
        make_auth(AUTH_JWKS_URL="file:///etc/passwd")


# -- where the token comes from ------------------------------------------------------------------
WS_HEADERS = {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Version": "13"}


@pytest.mark.parametrize(
    ("path", "headers", "expected"),
    [
        ("/v1/x", {"Authorization": "Bearer tok-h"}, "tok-h"),
        ("/v1/x", {"Authorization": "bearer   tok-h "}, "tok-h"),
        ("/v1/x?access_token=tok-q", {}, "tok-q"),
        ("/v1/x?access_token=tok-q", {"Authorization": "Bearer tok-h"}, "tok-h"),
        ("/s", {**WS_HEADERS, "Sec-WebSocket-Protocol": "bearer, tok-p"}, "tok-p"),
        ("/s", {**WS_HEADERS, "Sec-WebSocket-Protocol": "bearer, bearer.tok-p"}, "tok-p"),
        ("/s", {**WS_HEADERS, "Sec-WebSocket-Protocol": "json, bearer.tok-p"}, "tok-p"),
        ("/s?access_token=tok-q", {**WS_HEADERS, "Sec-WebSocket-Protocol": "bearer, p"}, "tok-q"),
        ("/s", {**WS_HEADERS, "Sec-WebSocket-Protocol": "bearer"}, None),
        ("/s", {"Sec-WebSocket-Protocol": "bearer, tok-p"}, None),  # not a handshake
        ("/v1/x", {}, None),
    ],
)
def test_the_token_is_read_from_header_query_or_subprotocol(
    path: str, headers: dict[str, str], expected: str | None
) -> None:
    assert extract_token(make_mocked_request("GET", path, headers=headers)) == expected


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/v1/x", {"Authorization": "Basic dXNlcjpwYXNz"}),
        ("/v1/x", {"Authorization": "Bearer"}),
        ("/v1/x", {"Authorization": "Bearer a b"}),
        ("/v1/x?access_token=a&access_token=b", {}),
        ("/v1/x?access_token=", {}),
    ],
)
def test_ambiguous_credentials_are_malformed(path: str, headers: dict[str, str]) -> None:
    with pytest.raises(AuthError) as caught:
        extract_token(make_mocked_request("GET", path, headers=headers))
    assert caught.value.reason == "malformed"


# -- origins -------------------------------------------------------------------------------------
def origin_request(origin: str | None, host: str = "blotter.example.test") -> web.Request:
    headers = {"Host": host, **WS_HEADERS}
    if origin is not None:
        headers["Origin"] = origin
    return make_mocked_request("GET", "/v1/trade-blotter/stream", headers=headers)


@pytest.mark.parametrize(
    ("origin", "host", "allowed", "expected"),
    [
        (None, "blotter.example.test", ("https://ui.example.test",), True),
        ("https://ui.example.test", "x", ("https://ui.example.test",), True),
        ("https://UI.example.test", "x", normalize_origins(["https://ui.example.test/"]), True),
        ("https://ui.example.test:8443", "x", ("https://ui.example.test",), False),
        ("http://ui.example.test", "x", ("https://ui.example.test",), False),
        ("https://ui.example.test.evil.test", "x", ("https://ui.example.test",), False),
        ("https://evil.test", "x", ("https://ui.example.test",), False),
        ("null", "x", ("https://ui.example.test",), False),
        # empty allowlist: the server's own host only
        ("https://blotter.example.test", "blotter.example.test", (), True),
        ("http://127.0.0.1:6066", "127.0.0.1:6066", (), True),
        ("http://[::1]:6066", "[::1]:6066", (), True),
        ("http://127.0.0.1:5173", "127.0.0.1:6066", (), False),
        ("https://evil.test", "blotter.example.test", (), False),
        ("null", "blotter.example.test", (), False),
        ("file://", "blotter.example.test", (), False),
    ],
)
def test_origin_rules(origin: str | None, host: str, allowed: tuple, expected: bool) -> None:
    assert origin_allowed(origin_request(origin, host), allowed) is expected


# -- middleware ----------------------------------------------------------------------------------
STREAM = "/v1/trade-blotter/stream"


def build_app(authenticator: Authenticator, calls: list[str], **kwargs: Any) -> web.Application:
    """A stand-in for the web view: REST, a stream, probes, and a Faust-style table view."""

    async def thing(request: web.Request) -> web.Response:
        calls.append("thing")
        principal = principal_of(request)
        accounts = None if principal.accounts is None else sorted(principal.accounts)
        return web.json_response({"subject": principal.subject, "accounts": accounts})

    async def probe(request: web.Request) -> web.Response:
        calls.append(request.path)
        return web.Response(text="ok")

    async def stream(request: web.Request) -> web.WebSocketResponse:
        calls.append("stream")
        ws = web.WebSocketResponse(protocols=WS_PROTOCOLS)
        await ws.prepare(request)
        await ws.send_json({"subject": principal_of(request).subject})
        await ws.close()
        return ws

    app = web.Application(middlewares=[auth_middleware(authenticator, **kwargs)])
    app.router.add_get("/v1/thing", thing)
    app.router.add_route("OPTIONS", "/v1/thing", probe)
    for path in (
        "/health",
        "/health/liveness",
        "/health/readiness",
        "/health/detailed",
        "/metrics",
    ):
        app.router.add_get(path, probe)
    app.router.add_get("/table/{name}/{key}/", probe)
    app.router.add_get(STREAM, stream)
    return app


async def test_rest_without_a_valid_token_is_refused_before_the_handler() -> None:
    calls: list[str] = []
    async with TestClient(TestServer(build_app(hs_auth(), calls))) as client:
        missing = await client.get("/v1/thing")
        expired = await client.get(
            "/v1/thing",
            headers={"Authorization": f"Bearer {hs(claims(exp=int(time.time()) - 600))}"},
        )
        table = await client.get("/table/positions/k/")
        assert missing.status == 401 and expired.status == 401 and table.status == 401
        assert (await missing.json()) == {
            "error": {"code": "UNAUTHORIZED", "message": "a bearer token is required"}
        }
        assert missing.headers["WWW-Authenticate"].startswith("Bearer realm=")
        assert 'error="invalid_token"' in expired.headers["WWW-Authenticate"]
        assert (await expired.json())["error"]["code"] == "UNAUTHORIZED"
    assert calls == []


async def test_rest_with_a_token_sees_the_principal() -> None:
    calls: list[str] = []
    async with TestClient(TestServer(build_app(hs_auth(), calls))) as client:
        by_header = await client.get(
            "/v1/thing", headers={"Authorization": f"Bearer {hs(claims(accounts=['B', 'A']))}"}
        )
        by_query = await client.get("/v1/thing", params={"access_token": hs(claims(sub="bob"))})
        assert (await by_header.json()) == {"subject": "alice", "accounts": ["A", "B"]}
        assert (await by_query.json())["subject"] == "bob"
    assert calls == ["thing", "thing"]


async def test_public_paths_and_cors_preflights_need_no_token() -> None:
    calls: list[str] = []
    public = ["/health", "/health/liveness", "/health/readiness", "/health/detailed", "/metrics"]
    async with TestClient(TestServer(build_app(hs_auth(), calls))) as client:
        for path in public:
            assert (await client.get(path)).status == 200
        preflight = await client.options(
            "/v1/thing",
            headers={"Origin": "https://ui.example.test", "Access-Control-Request-Method": "GET"},
        )
        plain_options = await client.options("/v1/thing")
        assert preflight.status == 200 and plain_options.status == 401
    assert calls == [*public, "/v1/thing"]


async def test_public_paths_are_configurable() -> None:
    calls: list[str] = []
    app = build_app(hs_auth(), calls, public_paths=("/health/liveness",))
    async with TestClient(TestServer(app)) as client:
        assert (await client.get("/health/liveness")).status == 200
        assert (await client.get("/metrics")).status == 401
    assert calls == ["/health/liveness"]


async def test_public_prefixes_cover_static_files_only() -> None:
    calls: list[str] = []
    app = build_app(hs_auth(), calls, public_paths=("/health", "/static/"))
    app.router.add_get("/static/{name}", lambda request: web.Response(text="file"))
    async with TestClient(TestServer(app)) as client:
        assert (await client.get("/static/page.js")).status == 200
        assert (await client.get("/v1/thing")).status == 401
        assert (await client.get("/static")).status == 401  # the prefix is not an exact path
    assert calls == []


BAD_HANDSHAKE_TOKENS = [
    ("missing", lambda: None),
    ("expired", lambda: hs(claims(exp=int(time.time()) - 600))),
    ("not yet valid", lambda: hs(claims(nbf=int(time.time()) + 600))),
    ("wrong issuer", lambda: hs(claims(iss="https://evil.example.test/"))),
    ("wrong audience", lambda: hs(claims(aud="other"))),
    ("wrong signature", lambda: hs(claims(), secret=secrets.token_urlsafe(48))),
    ("alg none", lambda: forge({"alg": "none"}, claims(), None)),
    ("HS/RS confusion", lambda: forge({"alg": "HS256"}, claims(), RSA_PEM.encode())),
    ("RS token to an HS server", lambda: rs(claims())),
]


@pytest.mark.parametrize(
    ("case", "mint"), BAD_HANDSHAKE_TOKENS, ids=[c for c, _ in BAD_HANDSHAKE_TOKENS]
)
@pytest.mark.parametrize("place", ["query", "subprotocol"])
async def test_a_bad_handshake_is_refused_before_the_upgrade(
    case: str, mint: Callable[[], str | None], place: str
) -> None:
    calls: list[str] = []
    token = mint()
    params = {"access_token": token} if token and place == "query" else None
    protocols = ("bearer", token) if token and place == "subprotocol" else ()
    async with TestClient(TestServer(build_app(hs_auth(), calls))) as client:
        with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
            await client.ws_connect(STREAM, params=params, protocols=protocols)
    assert caught.value.status == 401
    assert calls == []


@pytest.mark.parametrize("place", ["header", "query", "subprotocol"])
async def test_a_good_handshake_is_upgraded(place: str) -> None:
    calls: list[str] = []
    token = hs(claims(sub="carol"))
    kwargs: dict[str, Any] = {
        "header": {"headers": {"Authorization": f"Bearer {token}"}},
        "query": {"params": {"access_token": token}},
        "subprotocol": {"protocols": ("bearer", token)},
    }[place]
    async with TestClient(TestServer(build_app(hs_auth(), calls))) as client:
        ws = await client.ws_connect(STREAM, **kwargs)
        assert await ws.receive_json() == {"subject": "carol"}
        # The server echoes `bearer`, never the token.
        assert ws.protocol == ("bearer" if place == "subprotocol" else None)
        await ws.close()
    assert calls == ["stream"]


async def test_a_foreign_origin_is_refused_with_403_even_with_a_good_token() -> None:
    calls: list[str] = []
    token = hs(claims())
    before = failures("forbidden_origin")
    async with TestClient(TestServer(build_app(hs_auth(), calls))) as client:
        own = f"http://{client.server.host}:{client.server.port}"
        with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
            await client.ws_connect(
                STREAM, params={"access_token": token}, origin="https://evil.test"
            )
        ws = await client.ws_connect(STREAM, params={"access_token": token}, origin=own)
        await ws.receive_json()
        await ws.close()
        # Origin only gates WebSockets; REST is protected by the bearer token alone.
        rest = await client.get(
            "/v1/thing", headers={"Authorization": f"Bearer {token}", "Origin": "https://evil.test"}
        )
        assert rest.status == 200
    assert caught.value.status == 403
    assert failures("forbidden_origin") == before + 1
    assert calls == ["stream", "thing"]


async def test_the_allowlist_comes_from_the_settings() -> None:
    calls: list[str] = []
    authenticator = hs_auth(AUTH_ALLOWED_ORIGINS="https://ui.example.test, https://b.example.test")
    token = hs(claims())
    async with TestClient(TestServer(build_app(authenticator, calls))) as client:
        ws = await client.ws_connect(
            STREAM, params={"access_token": token}, origin="https://b.example.test"
        )
        await ws.close()
        own = f"http://{client.server.host}:{client.server.port}"
        with pytest.raises(aiohttp.WSServerHandshakeError):
            await client.ws_connect(STREAM, params={"access_token": token}, origin=own)
    assert calls == ["stream"]


async def test_disabled_mode_serves_anonymously_but_still_checks_origins() -> None:
    calls: list[str] = []
    authenticator = make_auth(AUTH_MODE="disabled", AUTH_JWT_ISSUER="", AUTH_JWT_AUDIENCE="")
    async with TestClient(TestServer(build_app(authenticator, calls))) as client:
        response = await client.get("/v1/thing")
        assert (await response.json()) == {"subject": "anonymous", "accounts": None}
        with pytest.raises(aiohttp.WSServerHandshakeError) as caught:
            await client.ws_connect(STREAM, origin="https://evil.test")
    assert caught.value.status == 403
    assert calls == ["thing"]


async def test_an_unavailable_jwks_answers_503_with_retry_after() -> None:
    endpoint = FakeJwks()
    endpoint.fail = True
    calls: list[str] = []
    app = build_app(jwks_auth(endpoint, FakeClock()), calls)
    async with TestClient(TestServer(app)) as client:
        response = await client.get(
            "/v1/thing", headers={"Authorization": f"Bearer {rs(claims(), kid='k')}"}
        )
        assert response.status == 503 and response.headers["Retry-After"]
        assert (await response.json())["error"]["code"] == "AUTH_UNAVAILABLE"
    assert calls == []


async def test_refusals_are_logged_without_the_token(caplog: pytest.LogCaptureFixture) -> None:
    token = hs(claims(exp=int(time.time()) - 600))
    calls: list[str] = []
    async with TestClient(TestServer(build_app(hs_auth(), calls))) as client:
        with caplog.at_level(logging.DEBUG):
            await client.get("/v1/thing", params={"access_token": token, "x": "1"})
            await client.get("/v1/thing", headers={"Authorization": f"Bearer {token}"})
    ours = [r for r in caplog.records if r.name.startswith("web.auth")]
    assert [getattr(r, "reason", None) for r in ours] == ["expired", "expired"]
    signature = token.rsplit(".", 1)[1]
    for record in ours:
        rendered = record.getMessage() + " " + " ".join(str(v) for v in record.__dict__.values())
        assert signature not in rendered
    # aiohttp's access log does write the raw query string; the project's redacting log filter
    # (installed on the one stdout handler) is what keeps it out of the output.
    access = [r for r in caplog.records if r.name == "aiohttp.access"]
    assert any(signature in r.getMessage() for r in access)
    for record in access:
        RedactingFilter().filter(record)
        assert signature not in record.getMessage()


def test_principal_of_fails_closed_without_the_middleware() -> None:
    with pytest.raises(RuntimeError):
        principal_of(make_mocked_request("GET", "/v1/thing"))


# -- expiry --------------------------------------------------------------------------------------
def test_expiry_and_the_recheck_delay() -> None:
    principal = Principal("alice", frozenset({"A"}), expires_at=1000.0)
    assert seconds_until_expiry(principal, 900.0) == 100.0
    assert seconds_until_expiry(principal, 1001.0) == -1.0
    assert expiry_check_delay(principal, 900.0, interval_s=30.0) == 30.0
    assert expiry_check_delay(principal, 990.0, interval_s=30.0) == 10.0
    assert expiry_check_delay(principal, 1005.0, interval_s=30.0) == 0.0
    assert expiry_check_delay(ANONYMOUS, 1005.0, interval_s=30.0) is None


@given(
    expires_at=st.floats(0, 1e10),
    now=st.floats(0, 1e10),
    interval=st.floats(0.5, 3600),
)
def test_a_loop_on_the_recheck_delay_notices_expiry_within_one_interval(
    expires_at: float, now: float, interval: float
) -> None:
    principal = Principal("alice", None, expires_at=expires_at)
    delay = expiry_check_delay(principal, now, interval)
    assert delay is not None and 0.0 <= delay <= interval
    remaining = seconds_until_expiry(principal, now)
    assert remaining is not None
    # Never sleeps past the expiry while still valid; re-checks at once once expired.
    assert delay <= max(0.0, remaining)


# -- entitlements ----------------------------------------------------------------------------------
def test_entitled_fails_closed() -> None:
    alice = Principal("alice", frozenset({"A"}))
    assert entitled(alice, "A")
    for account in ("B", "a", "A ", "", None, 1, ["A"]):
        assert not entitled(alice, account)
    assert row_entitled(alice, {"account": "A"}) and not row_entitled(alice, {"symbol": "X"})
    assert row_entitled(Principal("root", None), {"symbol": "X"})


ORDER = blotter_object_type("Order")
ACCOUNTS = ("A", "B", "C", "AB", "a", "")
SIDES = ("BUY", "SELL", "SELL_SHORT")
STRING_OPS = (
    "equals",
    "notEquals",
    "startsWith",
    "endsWith",
    "contains",
    "greaterThan",
    "lessThan",
)
CASE_OPS = ("equals", "notEquals", "startsWith", "endsWith", "contains", "in")


@st.composite
def account_leaves(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(("scalar", "in", "null")))
    if kind == "null":
        return {"fieldName": "account", "operator": draw(st.sampled_from(("isNull", "isNotNull")))}
    if kind == "in":
        leaf = {
            "fieldName": "account",
            "operator": "in",
            "value": draw(st.lists(st.sampled_from(ACCOUNTS), max_size=4)),
        }
    else:
        leaf = {
            "fieldName": "account",
            "operator": draw(st.sampled_from(STRING_OPS)),
            "value": draw(st.sampled_from(ACCOUNTS)),
        }
    if leaf["operator"] in CASE_OPS and draw(st.booleans()):
        leaf["ignoreCase"] = True
    return leaf


other_leaves = st.one_of(
    st.builds(
        lambda s: {"fieldName": "symbol", "operator": "equals", "value": s},
        st.sampled_from(("X", "Y")),
    ),
    st.builds(
        lambda s: {"fieldName": "side", "operator": "equals", "value": s}, st.sampled_from(SIDES)
    ),
    st.builds(
        lambda q: {"fieldName": "orderQty", "operator": "greaterThan", "value": q},
        st.sampled_from(("0", "5", "10.5")),
    ),
)
native_filters = st.recursive(
    st.one_of(account_leaves(), other_leaves),
    lambda children: st.one_of(
        st.builds(
            lambda fs: {"logicalOperator": "AND", "filters": fs}, st.lists(children, max_size=3)
        ),
        st.builds(
            lambda fs: {"logicalOperator": "OR", "filters": fs}, st.lists(children, max_size=3)
        ),
        st.builds(lambda f: {"logicalOperator": "NOT", "filters": [f]}, children),
    ),
    max_leaves=8,
)
aggrid_filters = st.one_of(
    st.builds(
        lambda t, v: {"account": {"filterType": "text", "type": t, "filter": v}},
        st.sampled_from(
            ("equals", "notEqual", "contains", "notContains", "startsWith", "endsWith")
        ),
        st.sampled_from(ACCOUNTS[:-1]),
    ),
    st.builds(
        lambda t: {"account": {"filterType": "text", "type": t}},
        st.sampled_from(("blank", "notBlank")),
    ),
    st.builds(
        lambda vs: {"account": {"filterType": "set", "values": vs}},
        st.lists(st.one_of(st.none(), st.sampled_from(ACCOUNTS)), max_size=4),
    ),
)
rows = st.lists(
    st.fixed_dictionaries(
        {
            "account": st.one_of(st.sampled_from(ACCOUNTS), st.none()),
            "symbol": st.sampled_from(("X", "Y")),
            "side": st.sampled_from(SIDES),
            "orderQty": st.sampled_from((Decimal("1"), Decimal("7"), Decimal("12"))),
        }
    ),
    min_size=1,
    max_size=12,
)
entitlements = st.one_of(st.none(), st.frozensets(st.sampled_from(ACCOUNTS[:-1]), max_size=3))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    accounts=entitlements,
    raw=st.one_of(st.none(), native_filters, aggrid_filters),
    sample=rows,
)
def test_no_filter_ever_shows_a_row_of_another_account(
    accounts: frozenset[str] | None, raw: Any, sample: list[dict[str, Any]]
) -> None:
    principal = Principal("trader", accounts)
    try:
        compiled = compile_filter(raw, ORDER)
    except FilterError:
        return  # refused filters deliver nothing at all
    visible = restrict_to_accounts(compiled, principal.accounts)
    for row in sample:
        shown = visible(row)
        if shown:
            assert entitled(principal, row["account"]), (raw, row)
        # ...and entitlement removes nothing the filter itself selects among entitled rows.
        assert shown == (compiled(row) and entitled(principal, row["account"]))
