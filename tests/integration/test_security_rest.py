"""A real worker with JWT auth on: tokens, entitlements on REST rows, public probes, no Faust
table views."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

import jwt
import pytest

from app.config import load_settings
from app.producer import OmsProducer
from app.serde import build_serde
from tests.conftest import await_condition
from tests.integration.test_orders_slice import order

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

SECRET = "an-integration-test-secret-of-at-least-32-bytes"
ISSUER = "https://idp.example.test"
AUDIENCE = "trade-blotter"


def token(accounts: list[str], **overrides: object) -> str:
    claims = {
        "sub": "alice",
        "accounts": accounts,
        "iss": ISSUER,
        "aud": AUDIENCE,
        "exp": int(time.time()) + 600,
        **overrides,
    }
    return jwt.encode(claims, SECRET, algorithm="HS256")


def status_of(url: str, bearer: str | None = None) -> int:
    request = urllib.request.Request(url)
    if bearer:
        request.add_header("Authorization", f"Bearer {bearer}")
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


async def test_rest_requires_tokens_and_filters_rows_by_account(deployment) -> None:
    worker = deployment(
        AUTH_MODE="jwt",
        AUTH_JWT_SECRET=SECRET,
        AUTH_JWT_ISSUER=ISSUER,
        AUTH_JWT_AUDIENCE=AUDIENCE,
    )
    worker.start()
    worker.wait_ready()
    settings = load_settings(worker.env)
    async with OmsProducer(settings, build_serde(None)) as producer:
        mine = {**order("ORD-A", 1, "NEW"), "account": "ACC-A"}
        theirs = {**order("ORD-B", 1, "NEW"), "account": "ACC-B"}
        await producer.send_record("orders", "ORD-A", "Order", mine)
        await producer.send_record("orders", "ORD-B", "Order", theirs)
        await producer.flush()

    admin = token(["*"])
    await await_condition(
        lambda: status_of(f"{worker.url}/v1/objects/Order/ORD-B", admin) == 200, 60, "ORD-B"
    )
    await await_condition(
        lambda: status_of(f"{worker.url}/v1/objects/Order/ORD-A", admin) == 200, 60, "ORD-A"
    )
    user_a = token(["ACC-A"])
    assert status_of(f"{worker.url}/v1/objects/Order/ORD-A", user_a) == 200
    assert status_of(f"{worker.url}/v1/objects/Order/ORD-B", user_a) == 404  # not 403: no leak
    assert status_of(f"{worker.url}/v1/objects/Order/ORD-A") == 401
    assert status_of(f"{worker.url}/v1/objects/Order/ORD-A?access_token={user_a}") == 200
    assert status_of(f"{worker.url}/v1/objects/Order/ORD-A", token(["ACC-A"], exp=1)) == 401
    assert status_of(f"{worker.url}/v1/objects/Order/ORD-A", token(["ACC-A"], iss="x")) == 401
    assert status_of(f"{worker.url}/v1/objects/Order/ORD-A", token(["ACC-A"], aud="x")) == 401
    forged = jwt.encode({"sub": "eve", "accounts": ["*"], "iss": ISSUER, "aud": AUDIENCE,
                         "exp": int(time.time()) + 600}, "x" * 40, algorithm="HS256")
    assert status_of(f"{worker.url}/v1/objects/Order/ORD-A", forged) == 401
    unsigned = jwt.encode({"sub": "eve", "accounts": ["*"]}, None, algorithm="none")
    assert status_of(f"{worker.url}/v1/objects/Order/ORD-A", unsigned) == 401
    assert status_of(f"{worker.url}/v1/trade-blotter/metadata") == 401
    assert status_of(f"{worker.url}/v1/trade-blotter/metadata", user_a) == 200

    for public in ("/health", "/health/readiness", "/health/liveness", "/metrics",
                   "/v1/openapi.json"):
        assert status_of(worker.url + public) == 200, public
    for faust_view in ("/table/latest-order/ORD-A/", "/router/", "/graph/", "/stats/"):
        assert status_of(worker.url + faust_view, admin) == 404, faust_view

    log = worker.log_tail(2000)
    assert user_a not in log and admin not in log, "a token leaked into the logs"
    assert worker.stop() == 0
