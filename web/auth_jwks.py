"""Signing keys from a JWKS endpoint, cached, refreshed on rotation, never fetched in a flood.

Why not PyJWKClient alone: its lookups are blocking HTTP calls, and every token would go through
them. Here a lookup of a known key id is a dict access on the event loop; only a fetch leaves it,
through PyJWKClient's HTTP fetch run in the default executor, so a slow identity provider delays
the requests that need a new key, never the loop (other sockets, agents, probes).

Refresh rules, in order:

- a known `kid` in a fresh set is served from memory;
- an unknown `kid`, or a set older than the cache lifetime, triggers a fetch, but at most one per
  `min_refresh_s` (whatever the outcome), and concurrent callers share that one fetch;
- a failed fetch keeps the keys already known: an identity provider outage must not log out every
  user whose key is still cached. Without any key, callers get AuthUnavailable (503, retry).

Only asymmetric keys for the pinned algorithms are kept: a symmetric (`oct`) key in the set, or
a key whose `alg` is not pinned, is ignored, so the set itself cannot enable HS/RS confusion.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from jwt import PyJWK, PyJWKClient, PyJWKSet
from jwt.exceptions import PyJWKClientError, PyJWKSetError, PyJWTError

from app.errors import ConfigError
from web.auth_principal import BAD_SIGNATURE, JWKS_UNAVAILABLE, AuthError, AuthUnavailable

log = logging.getLogger(__name__)

#: Algorithms accepted from a JWKS; both sign with a private key that never leaves the issuer.
JWKS_ALGORITHMS = ("RS256", "ES256")

JwksFetch = Callable[[], Mapping[str, Any]]


class JwksKeys:
    """The verification keys of one JWKS URL, by key id."""

    def __init__(
        self,
        url: str,
        *,
        cache_s: float = 300.0,
        min_refresh_s: float = 30.0,
        timeout_s: float = 5.0,
        fetch: JwksFetch | None = None,
        clock: Callable[[], float] = time.monotonic,
        algorithms: tuple[str, ...] = JWKS_ALGORITHMS,
    ) -> None:
        if fetch is None:
            try:
                client = PyJWKClient(url, cache_jwk_set=False, timeout=timeout_s)
            except PyJWKClientError as exc:
                raise ConfigError("AUTH_JWKS_URL", str(exc)) from None
            fetch = client.fetch_data
        self.url = url
        self.cache_s = cache_s
        self.min_refresh_s = min_refresh_s
        self.timeout_s = timeout_s
        self.algorithms = algorithms
        self._fetch = fetch
        self._clock = clock
        self._keys: dict[str, PyJWK] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._lock = asyncio.Lock()
        #: Number of fetch attempts so far (tests and diagnostics).
        self.fetches = 0

    @property
    def key_ids(self) -> frozenset[str]:
        return frozenset(self._keys)

    async def key_for(self, kid: str) -> PyJWK:
        """The key with id `kid`; AuthError(bad_signature) when the issuer has no such key,
        AuthUnavailable when no key could ever be fetched."""
        if not self._needs_fetch(kid):
            return self._keys[kid]
        async with self._lock:
            # Another caller may have fetched while this one waited for the lock.
            if self._needs_fetch(kid) and self._may_fetch():
                await self.refresh()
        key = self._keys.get(kid)
        if key is not None:
            return key
        if self._fetched_at is None:
            raise AuthUnavailable(JWKS_UNAVAILABLE)
        raise AuthError(BAD_SIGNATURE, "the token's key id is not one of the issuer's keys")

    async def refresh(self) -> bool:
        """Fetch the set now (in the executor); True when it succeeded. Never raises: a failure
        is logged and the keys already known stay in use."""
        self._attempted_at = self._clock()
        self.fetches += 1
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.timeout_s + 1.0):
                data = await loop.run_in_executor(None, self._fetch)
            keys = self._usable_keys(data)
        except (PyJWTError, OSError, ValueError, TypeError, TimeoutError) as exc:
            log.warning(
                "JWKS fetch failed; keeping %d known keys: %s",
                len(self._keys),
                type(exc).__name__,
                extra={"jwks_url": self.url},
            )
            return False
        self._keys = keys
        self._fetched_at = self._clock()
        log.info("JWKS fetched: %d signing keys", len(keys), extra={"jwks_url": self.url})
        return True

    def _needs_fetch(self, kid: str) -> bool:
        if self._fetched_at is None or kid not in self._keys:
            return True
        return self._clock() - self._fetched_at >= self.cache_s

    def _may_fetch(self) -> bool:
        if self._attempted_at is None:
            return True
        return self._clock() - self._attempted_at >= self.min_refresh_s

    def _usable_keys(self, data: Mapping[str, Any]) -> dict[str, PyJWK]:
        if not isinstance(data, Mapping):
            raise ValueError("the JWKS endpoint did not return a JSON object")
        try:
            jwk_set = PyJWKSet.from_dict(dict(data))
        except PyJWKSetError:
            raise ValueError("the JWKS holds no usable key") from None
        keys = {
            key.key_id: key
            for key in jwk_set.keys
            if key.key_id
            and key.public_key_use in ("sig", None)
            and key.algorithm_name in self.algorithms
        }
        if not keys:
            raise ValueError(f"the JWKS holds no signing key for {', '.join(self.algorithms)}")
        return keys
