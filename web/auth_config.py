"""Tuning of authentication and per-user limits, read from `AUTH_*` and `WS_*` variables.

The contract variables (AUTH_MODE, the key, issuer, audience, allowed origins) live in
`app.config.Settings`; the knobs here have safe defaults and exist so that an operator can react
to an identity provider's clock skew, key rotation cadence or an abusive client without a release.
Errors name the variable, like the rest of the configuration.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from app.config import env_int, env_number
from app.errors import ConfigError

#: Paths served without a token: probes and Prometheus must work without credentials.
DEFAULT_PUBLIC_PATHS = (
    "/health",
    "/health/liveness",
    "/health/readiness",
    "/health/detailed",
    "/metrics",
    "/v1/openapi.json",
    "/blotter",  # the page holds no data; its data calls carry the token
    "/blotter/static/",
)


@dataclass(frozen=True, slots=True)
class AuthOptions:
    """How tokens are checked (beyond the key, issuer and audience of the Settings)."""

    #: Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
    leeway_s: float = 30.0
    #: A fetched JWKS is used this long before it is fetched again.
    jwks_cache_s: float = 300.0
    #: Minimum time between two JWKS fetches, whatever triggers them (an unknown `kid`, a stale
    #: cache, a failed fetch): tokens with made-up key ids must not turn into a request flood
    #: against the identity provider.
    jwks_min_refresh_s: float = 30.0
    #: Timeout of one JWKS fetch.
    jwks_timeout_s: float = 5.0
    #: Exact request paths that need no token.
    public_paths: tuple[str, ...] = DEFAULT_PUBLIC_PATHS

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AuthOptions:
        """The options from `env` (default: the process environment); raise ConfigError."""
        env = os.environ if env is None else env
        d = cls()
        return cls(
            leeway_s=env_number(env, "AUTH_JWT_LEEWAY_S", d.leeway_s, 0, 300),
            jwks_cache_s=env_number(env, "AUTH_JWKS_CACHE_S", d.jwks_cache_s, 10, 86_400),
            jwks_min_refresh_s=env_number(
                env, "AUTH_JWKS_MIN_REFRESH_S", d.jwks_min_refresh_s, 1, 3_600
            ),
            jwks_timeout_s=env_number(env, "AUTH_JWKS_TIMEOUT_S", d.jwks_timeout_s, 0.5, 60),
            public_paths=_paths(env, "AUTH_PUBLIC_PATHS", d.public_paths),
        )


@dataclass(frozen=True, slots=True)
class AuthLimits:
    """Per-user limits of the WebSocket stream and the token re-check interval.

    Limits are per user (the token's `sub`), not per connection, so opening more connections does
    not buy more subscriptions or a higher subscribe rate.
    """

    #: Concurrent WebSocket connections of one user; the next handshake gets 429.
    max_connections_per_user: int = 10
    #: Subscriptions of one user across all its connections.
    max_subscriptions_per_user: int = 200
    #: Sustained subscribe/unsubscribe messages per second per user, and the burst above it.
    subscribe_rate_per_s: float = 5.0
    subscribe_burst: int = 20
    #: Sustained client messages of any kind per second per user, and the burst above it.
    message_rate_per_s: float = 50.0
    message_burst: int = 200
    #: After this many consecutive RATE_LIMITED answers on one connection, the next refused
    #: message closes the connection (policy violation).
    close_after_rate_limited: int = 10
    #: An open connection re-checks its token's expiry at least this often, in seconds.
    recheck_interval_s: float = 30.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> AuthLimits:
        """The limits from `env` (default: the process environment); raise ConfigError."""
        env = os.environ if env is None else env
        d = cls()
        return cls(
            max_connections_per_user=env_int(
                env, "WS_MAX_CONNECTIONS_PER_USER", d.max_connections_per_user, 1, 100_000
            ),
            max_subscriptions_per_user=env_int(
                env, "WS_MAX_SUBSCRIPTIONS_PER_USER", d.max_subscriptions_per_user, 1, 1_000_000
            ),
            subscribe_rate_per_s=env_number(
                env, "WS_SUBSCRIBE_RATE_PER_S", d.subscribe_rate_per_s, 0.01, 100_000
            ),
            subscribe_burst=env_int(env, "WS_SUBSCRIBE_BURST", d.subscribe_burst, 1, 1_000_000),
            message_rate_per_s=env_number(
                env, "WS_MESSAGE_RATE_PER_S", d.message_rate_per_s, 0.01, 1_000_000
            ),
            message_burst=env_int(env, "WS_MESSAGE_BURST", d.message_burst, 1, 10_000_000),
            close_after_rate_limited=env_int(
                env, "WS_RATE_LIMIT_CLOSE_AFTER", d.close_after_rate_limited, 0, 1_000_000
            ),
            recheck_interval_s=env_number(
                env, "AUTH_RECHECK_INTERVAL_S", d.recheck_interval_s, 1, 86_400
            ),
        )


def _paths(env: Mapping[str, str], name: str, default: tuple[str, ...]) -> tuple[str, ...]:
    raw = env.get(name)
    if raw is None:
        return default
    paths = tuple(p.strip() for p in raw.split(",") if p.strip())
    for path in paths:
        if not path.startswith("/") or "*" in path or "?" in path:
            raise ConfigError(name, f"takes exact paths starting with '/', got {path!r}")
    return paths
