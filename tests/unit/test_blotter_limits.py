"""Per-user subscribe rate on the stream: RATE_LIMITED errors, then a close on abuse."""

from __future__ import annotations

import pytest

from web.auth_limits import RateLimiter
from web.auth_principal import Principal
from web.blotter import protocol
from web.blotter.stream import _rate_guard


class FakeSession:
    def __init__(self) -> None:
        self.closed_with: tuple[int, str] | None = None

    def request_close(self, code: int, reason: str) -> None:
        self.closed_with = (code, reason)


def test_flooding_subscribes_is_rate_limited_then_closed() -> None:
    now = [0.0]
    limiter = RateLimiter(1.0, 3, close_after=2, clock=lambda: now[0])
    alice = Principal("alice", frozenset({"A"}))
    session = FakeSession()
    guard = _rate_guard(limiter, alice, session)
    for _ in range(3):
        guard(alice, object())  # the burst is allowed
    for _ in range(2):
        with pytest.raises(protocol.ProtocolError) as err:
            guard(alice, object())
        assert err.value.code == protocol.RATE_LIMITED
        assert session.closed_with is None
    with pytest.raises(protocol.ProtocolError):
        guard(alice, object())
    assert session.closed_with is not None
    assert session.closed_with[0] == protocol.CLOSE_RATE_LIMITED


def test_a_client_that_backs_off_keeps_going() -> None:
    now = [0.0]
    limiter = RateLimiter(1.0, 1, close_after=1, clock=lambda: now[0])
    bob = Principal("bob", None)
    session = FakeSession()
    guard = _rate_guard(limiter, bob, session)
    for step in range(10):
        now[0] = float(step) * 1.5  # one subscribe every 1.5 s at 1/s: always allowed
        guard(bob, object())
    assert session.closed_with is None
