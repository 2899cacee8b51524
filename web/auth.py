"""Authentication and entitlements of the web view: the one module the routes import.

A blotter shows who trades what, in which size, at which price; one row delivered to the wrong
desk is a compliance incident. So every request except the probes is authenticated before its
handler runs (see :func:`auth_middleware`), every caller carries the accounts it may see (see
:class:`Principal`), and authentication can be turned off only by an explicit `AUTH_MODE=disabled`.

Typical wiring::

    authenticator = Authenticator.from_settings(settings)
    web_app.middlewares.append(auth_middleware(authenticator))
    web_app.on_startup.append(lambda _: authenticator.prefetch_keys())
    ...
    principal = principal_of(request)            # in a handler
    if not row_entitled(principal, row): 404
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from aiohttp import web

from app.config import Settings
from app.errors import ConfigError
from web.auth_config import DEFAULT_PUBLIC_PATHS, AuthLimits, AuthOptions
from web.auth_http import (
    BEARER_SUBPROTOCOL,
    PRINCIPAL_KEY,
    WS_PROTOCOLS,
    auth_middleware,
    error_response,
    extract_token,
    is_websocket_upgrade,
    origin_allowed,
    principal_of,
    rate_limited_response,
    unauthorized_response,
)
from web.auth_jwks import JwksFetch, JwksKeys
from web.auth_jwt import StaticKey, TokenVerifier, public_key, secret_key
from web.auth_limits import ConnectionLimiter, ConnectionSlot, Decision, RateLimiter
from web.auth_principal import (
    ANONYMOUS,
    MISSING_TOKEN,
    AuthError,
    AuthUnavailable,
    Principal,
    count_failure,
    entitled,
    expiry_check_delay,
    row_entitled,
    seconds_until_expiry,
)

__all__ = [
    "ANONYMOUS",
    "BEARER_SUBPROTOCOL",
    "DEFAULT_PUBLIC_PATHS",
    "PRINCIPAL_KEY",
    "WS_PROTOCOLS",
    "AuthError",
    "AuthLimits",
    "AuthOptions",
    "AuthUnavailable",
    "Authenticator",
    "ConnectionLimiter",
    "ConnectionSlot",
    "Decision",
    "Principal",
    "RateLimiter",
    "auth_middleware",
    "entitled",
    "error_response",
    "expiry_check_delay",
    "extract_token",
    "is_websocket_upgrade",
    "origin_allowed",
    "principal_of",
    "rate_limited_response",
    "row_entitled",
    "seconds_until_expiry",
    "unauthorized_response",
]

log = logging.getLogger(__name__)


class Authenticator:
    """Turns a request (or a bare token) into a Principal, or refuses it with an AuthError.

    `verifier=None` is the disabled mode: every caller is ANONYMOUS, entitled to every account.
    Each refusal is counted once in blotter_auth_failures_total{reason}.
    """

    def __init__(
        self,
        verifier: TokenVerifier | None,
        *,
        allowed_origins: Iterable[str] = (),
        options: AuthOptions | None = None,
    ) -> None:
        self.verifier = verifier
        self.options = options or AuthOptions()
        self.allowed_origins = tuple(allowed_origins)
        if verifier is None:
            log.warning(
                "AUTHENTICATION IS DISABLED (AUTH_MODE=disabled): every caller sees every "
                "account. Use this for local development only."
            )

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        options: AuthOptions | None = None,
        *,
        jwks_fetch: JwksFetch | None = None,
    ) -> Authenticator:
        """The authenticator the settings describe; ConfigError for an unusable key setup.

        `options` defaults to :meth:`AuthOptions.from_env`; `jwks_fetch` replaces the HTTP fetch
        of the JWKS (tests).
        """
        options = options if options is not None else AuthOptions.from_env()
        origins = settings.auth_allowed_origins
        if settings.auth_mode == "disabled":
            return cls(None, allowed_origins=origins, options=options)
        sources = {
            "AUTH_JWT_SECRET": settings.auth_jwt_secret,
            "AUTH_JWT_PUBLIC_KEY": settings.auth_jwt_public_key,
            "AUTH_JWKS_URL": settings.auth_jwks_url,
        }
        configured = [name for name, value in sources.items() if value]
        if len(configured) != 1:
            raise ConfigError(
                "AUTH_MODE",
                "is jwt and needs exactly one of AUTH_JWT_SECRET, AUTH_JWT_PUBLIC_KEY, "
                f"AUTH_JWKS_URL; got {', '.join(configured) or 'none'}",
            )
        key: StaticKey | JwksKeys
        if settings.auth_jwt_secret:
            key = secret_key(settings.auth_jwt_secret)
        elif settings.auth_jwt_public_key:
            key = public_key(settings.auth_jwt_public_key)
        else:
            key = JwksKeys(
                str(settings.auth_jwks_url),
                cache_s=options.jwks_cache_s,
                min_refresh_s=options.jwks_min_refresh_s,
                timeout_s=options.jwks_timeout_s,
                fetch=jwks_fetch,
            )
        if settings.auth_jwt_issuer is None or settings.auth_jwt_audience is None:
            log.warning(
                "AUTH_JWT_ISSUER or AUTH_JWT_AUDIENCE is not set: tokens of any issuer or "
                "audience signed with the configured key are accepted"
            )
        verifier = TokenVerifier(
            key,
            issuer=settings.auth_jwt_issuer,
            audience=settings.auth_jwt_audience,
            leeway_s=options.leeway_s,
        )
        return cls(verifier, allowed_origins=origins, options=options)

    @property
    def enabled(self) -> bool:
        return self.verifier is not None

    @property
    def public_paths(self) -> tuple[str, ...]:
        return self.options.public_paths

    async def authenticate(self, request: web.Request) -> Principal:
        """The caller of `request` (token from header, query or subprotocol); AuthError."""
        if self.verifier is None:
            return ANONYMOUS
        try:
            token = extract_token(request)
            if token is None:
                raise AuthError(MISSING_TOKEN)
            return await self.verifier.verify(token)
        except AuthError as exc:
            count_failure(exc.reason)
            raise

    async def verify(self, token: str) -> Principal:
        """The caller a bare `token` identifies (e.g. a token re-sent on an open socket)."""
        if self.verifier is None:
            return ANONYMOUS
        try:
            return await self.verifier.verify(token)
        except AuthError as exc:
            count_failure(exc.reason)
            raise

    async def prefetch_keys(self) -> None:
        """Fetch the JWKS once at start-up so the first callers do not wait for it; a failure
        is logged and retried on demand."""
        if self.verifier is not None and isinstance(self.verifier.key, JwksKeys):
            await self.verifier.key.refresh()
