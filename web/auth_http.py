"""The HTTP side of authentication: where the token is read, which origins may open a WebSocket,
and the middleware that refuses a request before its handler (and a WebSocket before its 101).

Why a middleware rather than a check in each handler: a handler that forgets the check leaks, a
middleware that runs first cannot be forgotten, and Faust's own views (`/table/...`, the router)
are refused with everything else that is not public.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

from aiohttp import hdrs, web
from yarl import URL

from app.errors import ConfigError
from app.logs import redact
from app.rows import dumps
from web.auth_principal import (
    FORBIDDEN_ORIGIN,
    MALFORMED,
    MISSING_TOKEN,
    REASON_MESSAGES,
    AuthError,
    Principal,
    count_failure,
)

if TYPE_CHECKING:
    from web.auth import Authenticator

log = logging.getLogger(__name__)

#: The WebSocket subprotocol the server selects when a client authenticates with
#: `Sec-WebSocket-Protocol`; pass `protocols=WS_PROTOCOLS` to `web.WebSocketResponse`.
BEARER_SUBPROTOCOL = "bearer"
WS_PROTOCOLS = (BEARER_SUBPROTOCOL,)
_BEARER_PREFIX = BEARER_SUBPROTOCOL + "."

#: Key of the authenticated Principal in the aiohttp request: read it with principal_of(request).
#: A typed RequestKey where aiohttp has them (3.12+; plain strings there warn), else the string.
PRINCIPAL_KEY: Any = (
    web.RequestKey("principal", Principal) if hasattr(web, "RequestKey") else "principal"
)
ACCESS_TOKEN_PARAM = "access_token"
REALM = "trade-blotter"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]


# -- token extraction ----------------------------------------------------------------------------
def extract_token(request: web.Request) -> str | None:
    """The bearer token of `request`, or None when it carries none.

    Looked for, in order: the `Authorization: Bearer <token>` header; the `access_token` query
    parameter (browsers cannot set headers on a WebSocket); on a WebSocket handshake, the
    subprotocol list, either as the entry after a `bearer` entry (`bearer, <token>`) or as one
    `bearer.<token>` entry. The first place that has one wins; an ambiguous place (two headers,
    two parameters, an `Authorization` of another scheme) is refused as malformed rather than
    guessed at.
    """
    headers = request.headers.getall(hdrs.AUTHORIZATION, [])
    if headers:
        if len(headers) > 1:
            raise AuthError(MALFORMED, "more than one Authorization header")
        scheme, _, token = headers[0].strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token or " " in token:
            raise AuthError(MALFORMED, "the Authorization header must be 'Bearer <token>'")
        return token
    params = request.query.getall(ACCESS_TOKEN_PARAM, [])
    if params:
        if len(params) > 1 or not params[0]:
            raise AuthError(MALFORMED, "access_token must be given once, non-empty")
        return params[0]
    if is_websocket_upgrade(request):
        return _subprotocol_token(request)
    return None


def _subprotocol_token(request: web.Request) -> str | None:
    offered = [
        entry.strip()
        for header in request.headers.getall(hdrs.SEC_WEBSOCKET_PROTOCOL, [])
        for entry in header.split(",")
        if entry.strip()
    ]
    for index, entry in enumerate(offered):
        if entry.startswith(_BEARER_PREFIX) and len(entry) > len(_BEARER_PREFIX):
            return entry[len(_BEARER_PREFIX) :]
        if entry == BEARER_SUBPROTOCOL and index + 1 < len(offered):
            candidate = offered[index + 1]
            if not candidate.startswith(_BEARER_PREFIX):
                return candidate
    return None


def is_websocket_upgrade(request: web.Request) -> bool:
    """Whether `request` is a WebSocket handshake (whatever its path)."""
    upgrade = request.headers.get(hdrs.UPGRADE, "")
    connection = request.headers.get(hdrs.CONNECTION, "")
    return upgrade.strip().lower() == "websocket" and "upgrade" in connection.lower()


# -- origins -------------------------------------------------------------------------------------
def normalize_origins(origins: Iterable[str]) -> tuple[str, ...]:
    """The allowlist in the form browsers send (lower case, no trailing slash); ConfigError for a
    wildcard, which would silently turn the check off."""
    normalized = []
    for origin in origins:
        if "*" in origin:
            raise ConfigError(
                "AUTH_ALLOWED_ORIGINS", f"takes exact origins, not wildcards: {origin!r}"
            )
        normalized.append(_normalize(origin))
    return tuple(normalized)


def _normalize(origin: str) -> str:
    return origin.strip().rstrip("/").lower()


def origin_allowed(request: web.Request, allowed: tuple[str, ...]) -> bool:
    """Whether a WebSocket handshake from this request's `Origin` may proceed.

    - no Origin header: allowed. Only browsers send one, and the check exists to stop a hostile
      page from using a browser's ambient credentials; a script can forge any Origin anyway;
    - a non-empty allowlist: the Origin must equal one entry (case-insensitive, exact otherwise);
    - an empty allowlist: only the server's own host, i.e. the Origin's host and port equal the
      request's Host header (default ports by the Origin's scheme, so TLS termination in front of
      the worker still matches). `null` and other opaque origins are refused.
    """
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is None:
        return True
    if allowed:
        return _normalize(origin) in allowed
    return _same_host(origin, request.host)


def _same_host(origin: str, host_header: str) -> bool:
    try:
        source = URL(origin.strip())
        target = URL(f"{source.scheme or 'http'}://{host_header.strip()}")
    except (ValueError, TypeError):
        return False
    if source.scheme not in ("http", "https") or not source.host or not target.host:
        return False
    return (source.host, source.port) == (target.host, target.port)


# -- middleware ----------------------------------------------------------------------------------
def auth_middleware(
    authenticator: Authenticator,
    public_paths: Iterable[str] | None = None,
    *,
    allowed_origins: Iterable[str] | None = None,
) -> Middleware:
    """An aiohttp middleware that authenticates every request except `public_paths`.

    Defaults come from the authenticator (AUTH_PUBLIC_PATHS, AUTH_ALLOWED_ORIGINS). On success
    the Principal is stored on the request; read it with :func:`principal_of`; on failure
    the handler is never called: 401 (bad or missing token), 503 (keys unavailable), or 403 for
    a WebSocket handshake from a refused Origin. CORS preflights pass without a token because
    browsers never attach credentials to them.
    """
    paths = authenticator.public_paths if public_paths is None else public_paths
    # An entry ending in "/" is a prefix (static files); every other entry is an exact path.
    public = frozenset(p for p in paths if not p.endswith("/"))
    public_prefixes = tuple(p for p in paths if p.endswith("/"))
    origins = normalize_origins(
        authenticator.allowed_origins if allowed_origins is None else allowed_origins
    )

    @web.middleware
    async def authenticate(request: web.Request, handler: Handler) -> web.StreamResponse:
        if is_websocket_upgrade(request) and not origin_allowed(request, origins):
            count_failure(FORBIDDEN_ORIGIN)
            _log_refusal(request, FORBIDDEN_ORIGIN)
            return error_response(403, "FORBIDDEN", REASON_MESSAGES[FORBIDDEN_ORIGIN])
        path = request.path
        if (
            path in public
            or (public_prefixes and path.startswith(public_prefixes) and ".." not in path)
            or _is_cors_preflight(request)
        ):
            return await handler(request)
        try:
            principal = await authenticator.authenticate(request)
        except AuthError as exc:
            _log_refusal(request, exc.reason)
            return unauthorized_response(exc)
        request[PRINCIPAL_KEY] = principal
        return await handler(request)

    return authenticate


def principal_of(request: web.Request) -> Principal:
    """The caller the middleware authenticated. Raises RuntimeError when there is none (the
    middleware is not installed, or the path is public): fail closed, never serve anonymously."""
    principal = request.get(PRINCIPAL_KEY)
    if not isinstance(principal, Principal):
        raise RuntimeError("no authenticated principal on this request; is auth_middleware set?")
    return principal


def _is_cors_preflight(request: web.Request) -> bool:
    return (
        request.method == hdrs.METH_OPTIONS
        and hdrs.ORIGIN in request.headers
        and hdrs.ACCESS_CONTROL_REQUEST_METHOD in request.headers
    )


def _log_refusal(request: web.Request, reason: str) -> None:
    # The path only, never the query string (access_token) or headers; redacted anyway in case a
    # client put a token into the path itself.
    log.info(
        "request refused: %s",
        reason,
        extra={"reason": reason, "method": request.method, "path": redact(request.path)},
    )


# -- responses -----------------------------------------------------------------------------------
def error_response(
    status: int, code: str, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    """The project's JSON error body, `{"error": {"code": ..., "message": ...}}`."""
    response = web.Response(
        body=dumps({"error": {"code": code, "message": message}}),
        status=status,
        content_type="application/json",
        headers=headers,
    )
    response.headers[hdrs.CACHE_CONTROL] = "no-store"
    return response


def unauthorized_response(exc: AuthError) -> web.Response:
    """401 with a RFC 6750 challenge, or 503 with Retry-After when the keys are unavailable."""
    if exc.status == 503:
        return error_response(503, "AUTH_UNAVAILABLE", exc.message, {hdrs.RETRY_AFTER: "5"})
    challenge = f'Bearer realm="{REALM}"'
    if exc.reason != MISSING_TOKEN:
        description = REASON_MESSAGES.get(exc.reason, "invalid token")
        challenge += f', error="invalid_token", error_description="{description}"'
    return error_response(401, "UNAUTHORIZED", exc.message, {hdrs.WWW_AUTHENTICATE: challenge})


def rate_limited_response(message: str, retry_after_s: int = 1) -> web.Response:
    """429 RATE_LIMITED, e.g. for a WebSocket handshake over the per-user connection limit."""
    return error_response(
        429, "RATE_LIMITED", message, {hdrs.RETRY_AFTER: str(max(1, retry_after_s))}
    )
