"""Who is on the other end of a connection, and what it may see.

Authentication is the auth layer's concern (`web.auth`, whose middleware verifies every request,
the WebSocket handshake included, and stores the caller on the request); the stream only needs
its outcome, a `Principal` whose `accounts` are the caller's entitlement (None = every account).
Every subscription's filter is ANDed with them, so a row of another account can never reach the
caller whatever filter it sends. A principal with `expires_at` is disconnected (1008, policy
violation) when it passes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from web.auth_http import principal_of
from web.auth_principal import ANONYMOUS, Principal

__all__ = [
    "ANONYMOUS_ALL_ACCOUNTS",
    "Authenticator",
    "Principal",
    "allow_all",
    "from_auth_middleware",
]

#: The caller when authentication is disabled by configuration (local development only).
ANONYMOUS_ALL_ACCOUNTS = ANONYMOUS

#: Resolves the caller of a WebSocket handshake; raises an aiohttp HTTP error (401/403/429) to
#: refuse it before the upgrade. `web.auth.Authenticator.authenticate` has this shape.
Authenticator = Callable[[web.Request], Awaitable[Principal]]


async def from_auth_middleware(request: web.Request) -> Principal:
    """The caller the auth middleware verified (it answered 401 before the upgrade otherwise).
    Fails closed: without the middleware this raises and the handshake is refused (500)."""
    return principal_of(request)


async def allow_all(request: web.Request) -> Principal:
    """Every caller sees every account: for tests and embedding without the auth layer."""
    return ANONYMOUS_ALL_ACCOUNTS
