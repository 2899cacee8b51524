"""Per-user limits (rate, connections, subscriptions) and the AUTH_*/WS_* configuration, driven by
a fake clock: no test waits for real time."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from app import metrics
from app.errors import ConfigError
from web.auth import (
    DEFAULT_PUBLIC_PATHS,
    AuthLimits,
    AuthOptions,
    ConnectionLimiter,
    Decision,
    RateLimiter,
)


class FakeClock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def rate_limited_total() -> float:
    return metrics.REGISTRY.get_sample_value("blotter_rate_limited_total") or 0.0


# -- token bucket --------------------------------------------------------------------------------
def test_a_burst_is_allowed_then_the_sustained_rate() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate_per_s=2.0, burst=5, clock=clock)
    assert [limiter.allow("alice") for _ in range(6)] == [True] * 5 + [False]
    clock.now += 0.5  # one token at 2/s
    assert [limiter.allow("alice") for _ in range(2)] == [True, False]
    assert limiter.retry_after("alice") == pytest.approx(0.5)
    clock.now += 100  # refills to the burst, not beyond
    assert sum(limiter.allow("alice") for _ in range(10)) == 5


def test_users_have_separate_buckets() -> None:
    limiter = RateLimiter(rate_per_s=1.0, burst=2, clock=FakeClock())
    assert [limiter.allow("alice") for _ in range(3)] == [True, True, False]
    assert [limiter.allow("bob") for _ in range(3)] == [True, True, False]
    assert limiter.retry_after("carol") == 0.0


def test_a_clock_going_backwards_does_not_mint_tokens() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate_per_s=1.0, burst=1, clock=clock)
    assert limiter.allow("alice")
    clock.now -= 50
    assert not limiter.allow("alice")


@settings(max_examples=200, deadline=None)
@given(
    rate=st.floats(0.1, 50),
    burst=st.integers(1, 20),
    steps=st.lists(st.tuples(st.floats(0, 2), st.integers(0, 10)), max_size=40),
)
def test_never_more_than_burst_plus_rate_times_elapsed(
    rate: float, burst: int, steps: list[tuple[float, int]]
) -> None:
    clock = FakeClock(0.0)
    limiter = RateLimiter(rate_per_s=rate, burst=burst, clock=clock)
    allowed = 0
    for advance, attempts in steps:
        clock.now += advance
        allowed += sum(limiter.allow("alice") for _ in range(attempts))
        assert allowed <= burst + rate * clock.now + 1e-9
    # ...and an idle user gets its whole burst back.
    clock.now += burst / rate + 1
    assert sum(limiter.allow("alice") for _ in range(burst + 1)) == burst


def test_idle_full_buckets_are_pruned() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate_per_s=10.0, burst=3, clock=clock)
    for index in range(1000):
        limiter.allow(f"user-{index}")
    clock.now += 10  # every bucket is full again: forgetting them loses nothing
    for _ in range(100):
        limiter.allow("alice")
    assert limiter.tracked_users < 10


@pytest.mark.parametrize(
    ("rate", "burst", "close_after"), [(0, 1, 1), (1, 0, 1), (1, 1, -1), (-1, 1, 1)]
)
def test_nonsense_limits_are_refused(rate: float, burst: int, close_after: int) -> None:
    with pytest.raises(ValueError):
        RateLimiter(rate, burst, close_after=close_after)


# -- escalation ----------------------------------------------------------------------------------
def test_repeated_refusals_escalate_to_close() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate_per_s=1.0, burst=2, close_after=3, clock=clock)
    gate = limiter.gate("alice")
    before = rate_limited_total()
    decisions = [gate.check() for _ in range(6)]
    assert decisions == [
        Decision.ALLOW,
        Decision.ALLOW,
        Decision.RATE_LIMITED,
        Decision.RATE_LIMITED,
        Decision.RATE_LIMITED,
        Decision.CLOSE,
    ]
    assert rate_limited_total() == before + 4


def test_backing_off_resets_the_escalation() -> None:
    clock = FakeClock()
    limiter = RateLimiter(rate_per_s=1.0, burst=1, close_after=2, clock=clock)
    gate = limiter.gate("alice")
    assert [gate.check() for _ in range(3)] == [
        Decision.ALLOW,
        Decision.RATE_LIMITED,
        Decision.RATE_LIMITED,
    ]
    clock.now += 1
    assert gate.check() is Decision.ALLOW and gate.consecutive_refusals == 0
    assert [gate.check() for _ in range(3)] == [
        Decision.RATE_LIMITED,
        Decision.RATE_LIMITED,
        Decision.CLOSE,
    ]


def test_close_after_zero_closes_on_the_first_refusal() -> None:
    gate = RateLimiter(rate_per_s=1.0, burst=1, close_after=0, clock=FakeClock()).gate("alice")
    assert [gate.check(), gate.check()] == [Decision.ALLOW, Decision.CLOSE]


def test_connections_share_the_bucket_but_escalate_separately() -> None:
    limiter = RateLimiter(rate_per_s=1.0, burst=2, close_after=1, clock=FakeClock())
    noisy, quiet = limiter.gate("alice"), limiter.gate("alice")
    assert [noisy.check(), noisy.check()] == [Decision.ALLOW, Decision.ALLOW]
    # the quiet connection has no tokens left either (same user)...
    assert quiet.check() is Decision.RATE_LIMITED
    assert [noisy.check(), noisy.check()] == [Decision.RATE_LIMITED, Decision.CLOSE]
    # ...but only the noisy one is closed.
    assert quiet.consecutive_refusals == 1


def test_limiters_built_from_the_limits() -> None:
    limits = AuthLimits(subscribe_rate_per_s=3, subscribe_burst=4, message_burst=7)
    subscribes = RateLimiter.for_subscribes(limits, FakeClock())
    messages = RateLimiter.for_messages(limits, FakeClock())
    assert sum(subscribes.allow("alice") for _ in range(10)) == 4
    assert sum(messages.allow("alice") for _ in range(10)) == 7
    assert subscribes.close_after == limits.close_after_rate_limited


# -- connections and subscriptions ---------------------------------------------------------------
def test_connections_per_user_are_limited_and_released() -> None:
    limiter = ConnectionLimiter(max_connections=2, max_subscriptions=10)
    before = rate_limited_total()
    first, second = limiter.acquire("alice"), limiter.acquire("alice")
    assert first is not None and second is not None
    assert limiter.acquire("alice") is None
    assert limiter.acquire("bob") is not None
    assert rate_limited_total() == before + 1
    first.release()
    first.release()  # idempotent: a second release must not free a slot it does not hold
    assert limiter.connections("alice") == 1
    third = limiter.acquire("alice")
    assert third is not None and limiter.acquire("alice") is None


def test_subscriptions_are_limited_per_user_across_connections() -> None:
    limiter = ConnectionLimiter(max_connections=5, max_subscriptions=3)
    one, two = limiter.acquire("alice"), limiter.acquire("alice")
    assert one is not None and two is not None
    assert [one.add_subscription(), one.add_subscription(), two.add_subscription()] == [True] * 3
    assert not two.add_subscription() and not one.add_subscription()
    one.remove_subscription()
    assert two.add_subscription()
    assert (one.subscriptions, two.subscriptions, limiter.subscriptions("alice")) == (1, 2, 3)


def test_releasing_a_connection_returns_its_subscriptions() -> None:
    limiter = ConnectionLimiter(max_connections=2, max_subscriptions=4)
    survivor = limiter.acquire("alice")
    assert survivor is not None
    with limiter.acquire("alice") as doomed:  # type: ignore[union-attr]
        assert doomed.add_subscription() and doomed.add_subscription()
        assert survivor.add_subscription()
    assert limiter.subscriptions("alice") == 1 and limiter.connections("alice") == 1
    assert not doomed.add_subscription()  # a released slot holds nothing
    doomed.remove_subscription()
    assert limiter.subscriptions("alice") == 1
    survivor.remove_subscription()
    survivor.remove_subscription()  # nothing left: no-op, never negative
    survivor.release()
    assert (limiter.connections("alice"), limiter.subscriptions("alice")) == (0, 0)
    assert limiter._connections == {} and limiter._subscriptions == {}


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from("OAARX"), st.integers(0, 3)), max_size=60))
def test_counts_always_equal_what_open_slots_hold(ops: list[tuple[str, int]]) -> None:
    limiter = ConnectionLimiter(max_connections=3, max_subscriptions=5)
    slots: list = []
    for op, index in ops:
        live = [s for s in slots if not s.released]
        if op == "O":
            slot = limiter.acquire("alice")
            if slot is not None:
                slots.append(slot)
        elif live:
            slot = live[index % len(live)]
            actions = {"A": slot.add_subscription, "R": slot.remove_subscription}
            actions.get(op, slot.release)()
        live = [s for s in slots if not s.released]
        assert limiter.connections("alice") == len(live) <= 3
        assert limiter.subscriptions("alice") == sum(s.subscriptions for s in live) <= 5


# -- configuration -------------------------------------------------------------------------------
def test_defaults_without_any_variable() -> None:
    assert AuthLimits.from_env({}) == AuthLimits()
    assert AuthOptions.from_env({}) == AuthOptions()
    assert AuthOptions().public_paths == DEFAULT_PUBLIC_PATHS
    assert AuthOptions().leeway_s == 30.0


def test_every_variable_is_read() -> None:
    limits = AuthLimits.from_env(
        {
            "WS_MAX_CONNECTIONS_PER_USER": "3",
            "WS_MAX_SUBSCRIPTIONS_PER_USER": "40",
            "WS_SUBSCRIBE_RATE_PER_S": "0.5",
            "WS_SUBSCRIBE_BURST": "6",
            "WS_MESSAGE_RATE_PER_S": "25",
            "WS_MESSAGE_BURST": "70",
            "WS_RATE_LIMIT_CLOSE_AFTER": "0",
            "AUTH_RECHECK_INTERVAL_S": "5",
        }
    )
    assert limits == AuthLimits(3, 40, 0.5, 6, 25.0, 70, 0, 5.0)
    options = AuthOptions.from_env(
        {
            "AUTH_JWT_LEEWAY_S": "0",
            "AUTH_JWKS_CACHE_S": "60",
            "AUTH_JWKS_MIN_REFRESH_S": "2",
            "AUTH_JWKS_TIMEOUT_S": "1.5",
            "AUTH_PUBLIC_PATHS": " /health/liveness , /metrics ",
        }
    )
    assert options == AuthOptions(0.0, 60.0, 2.0, 1.5, ("/health/liveness", "/metrics"))
    assert AuthOptions.from_env({"AUTH_PUBLIC_PATHS": ""}).public_paths == ()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("WS_MAX_CONNECTIONS_PER_USER", "0"),
        ("WS_MAX_CONNECTIONS_PER_USER", "ten"),
        ("WS_SUBSCRIBE_RATE_PER_S", "0"),
        ("WS_SUBSCRIBE_RATE_PER_S", "nan"),
        ("WS_RATE_LIMIT_CLOSE_AFTER", "-1"),
        ("AUTH_RECHECK_INTERVAL_S", "0"),
    ],
)
def test_bad_limits_name_their_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        AuthLimits.from_env({variable: value})
    assert caught.value.variable == variable


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("AUTH_JWT_LEEWAY_S", "301"),
        ("AUTH_JWT_LEEWAY_S", "-1"),
        ("AUTH_JWKS_MIN_REFRESH_S", "0"),
        ("AUTH_JWKS_TIMEOUT_S", "inf"),
        ("AUTH_PUBLIC_PATHS", "/health,metrics"),
        ("AUTH_PUBLIC_PATHS", "/health/*"),
        ("AUTH_PUBLIC_PATHS", "/metrics?x=1"),
    ],
)
def test_bad_options_name_their_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        AuthOptions.from_env({variable: value})
    assert caught.value.variable == variable
