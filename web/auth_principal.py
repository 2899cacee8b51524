"""Who the caller is, what it may see, and why it was refused.

This module has no I/O and no dependency on how the caller was authenticated, so that the blotter
stream, the REST handlers and the tests can all reason about entitlements with the same few
functions. Entitlements fail closed: anything that is not clearly an entitled account is refused.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app import metrics
from app.errors import BlotterError

# -- rejection reasons ------------------------------------------------------------------------
# Short, fixed codes: they are the `reason` label of blotter_auth_failures_total, so the set must
# stay small and must never contain anything taken from the request.
MISSING_TOKEN = "missing_token"
MALFORMED = "malformed"
BAD_SIGNATURE = "bad_signature"
EXPIRED = "expired"
NOT_YET_VALID = "not_yet_valid"
BAD_ISSUER = "bad_issuer"
BAD_AUDIENCE = "bad_audience"
BAD_CLAIMS = "bad_claims"
BAD_ALGORITHM = "bad_algorithm"
FORBIDDEN_ORIGIN = "forbidden_origin"
JWKS_UNAVAILABLE = "jwks_unavailable"

#: What the client is told for each reason: enough to fix its own request, nothing about keys.
REASON_MESSAGES: Mapping[str, str] = {
    MISSING_TOKEN: "a bearer token is required",
    MALFORMED: "the bearer token is not a well-formed JWT",
    BAD_SIGNATURE: "the token's signature does not verify with a trusted key",
    EXPIRED: "the token has expired",
    NOT_YET_VALID: "the token is not valid yet",
    BAD_ISSUER: "the token's issuer is not accepted",
    BAD_AUDIENCE: "the token's audience is not accepted",
    BAD_CLAIMS: "the token's claims are missing or invalid (sub, exp, accounts)",
    BAD_ALGORITHM: "the token's signing algorithm is not accepted",
    FORBIDDEN_ORIGIN: "this origin may not open a WebSocket to this server",
    JWKS_UNAVAILABLE: "the token signing keys are unavailable; retry later",
}

#: The `accounts` claim value that entitles a caller to every account.
ALL_ACCOUNTS_CLAIM = "*"


class AuthError(BlotterError):
    """A request is refused; `reason` is one of the codes above (a metric label, a log field)."""

    #: HTTP status the web layer answers with.
    status = 401

    def __init__(self, reason: str, message: str | None = None) -> None:
        self.reason = reason
        self.message = message or REASON_MESSAGES.get(reason, "authentication failed")
        super().__init__(f"{reason}: {self.message}")


class AuthUnavailable(AuthError):
    """The token could not be checked because the key endpoint is down: the caller is not at
    fault, so the web layer answers 503 (retry) rather than 401 (get a new token)."""

    status = 503


def count_failure(reason: str) -> None:
    """Count one refused authentication in blotter_auth_failures_total{reason}."""
    metrics.AUTH_FAILURES.labels(reason=reason).inc()


# -- principal ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller.

    `accounts` is None for a `["*"]` entitlement (every account) and a frozenset otherwise; an
    empty set is a valid caller that sees nothing. `expires_at` is the epoch second after which
    this server stops honouring the token (the `exp` claim plus the configured leeway, so that a
    socket is not closed at once after a handshake the leeway let through); None never expires.
    """

    subject: str
    accounts: frozenset[str] | None
    expires_at: float | None = None
    token_id: str | None = None

    @property
    def all_accounts(self) -> bool:
        return self.accounts is None


#: The caller of every request while authentication is disabled by configuration.
ANONYMOUS = Principal("anonymous", None, None, None)


def parse_accounts(claim: Any) -> frozenset[str] | None:
    """The entitlement of an `accounts` claim: None for `["*"]`, else the set of account ids.

    Anything else than a list of non-empty strings is refused (AuthError bad_claims), and so is a
    `*` mixed with account ids: an issuer that writes `["*", "A"]` has a bug, and guessing which
    half it meant would either leak rows or hide them.
    """
    if not isinstance(claim, list):
        raise AuthError(BAD_CLAIMS, 'the accounts claim must be a list of account ids or ["*"]')
    if not all(isinstance(account, str) and account for account in claim):
        raise AuthError(BAD_CLAIMS, "the accounts claim must hold non-empty strings")
    if ALL_ACCOUNTS_CLAIM in claim:
        if len(set(claim)) != 1:
            raise AuthError(BAD_CLAIMS, 'the accounts claim may not mix "*" with account ids')
        return None
    return frozenset(claim)


# -- entitlements ------------------------------------------------------------------------------
def entitled(principal: Principal, account: object) -> bool:
    """Whether `principal` may see rows of `account`.

    A caller entitled to every account sees every row, including one whose account is missing
    (the filter path, `restrict_to_accounts`, behaves the same). Otherwise only a string that is
    one of the caller's accounts passes; None, numbers and other types never do.
    """
    if principal.accounts is None:
        return True
    return isinstance(account, str) and account in principal.accounts


def row_entitled(
    principal: Principal, row: Mapping[str, Any], account_field: str = "account"
) -> bool:
    """Whether `principal` may see `row` (an object, a position): the REST check of one row.

    Answer a refused object with 404, not 403, so that a caller cannot probe which ids exist in
    other accounts.
    """
    return entitled(principal, row.get(account_field))


# -- expiry ------------------------------------------------------------------------------------
def seconds_until_expiry(principal: Principal, now: float) -> float | None:
    """Seconds `principal` stays valid after `now` (epoch seconds); <= 0 once it has expired,
    None when it never expires (authentication disabled)."""
    if principal.expires_at is None:
        return None
    return principal.expires_at - now


def expiry_check_delay(principal: Principal, now: float, interval_s: float) -> float | None:
    """How long a connection may wait before it must check `principal` again.

    The shorter of the re-check interval and the time left, never negative, so a loop of
    ``sleep(delay); if seconds_until_expiry(...) <= 0: close(1008)`` closes within one interval
    of expiry and exactly at expiry when it is nearer. None: never (no expiry).
    """
    remaining = seconds_until_expiry(principal, now)
    if remaining is None:
        return None
    if not math.isfinite(remaining):
        return interval_s
    return max(0.0, min(interval_s, remaining))
