"""JWT verification with pinned algorithms, turning every failure into one short reason code.

The accepted algorithm follows from the configured key, never from the token: a secret pins HS256,
an RSA public key RS256, a P-256 public key ES256, a JWKS RS256/ES256 (per key). So `alg: none`
and the classic confusion (an HS256 token "signed" with the RSA public key as HMAC secret) fail
the algorithm check before any key is used. Exactly one key source may be configured: accepting
a secret and a public key at once would make every token's `alg` choose which one is used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt import exceptions as jwt_errors

from app.errors import ConfigError
from web.auth_jwks import JWKS_ALGORITHMS, JwksKeys
from web.auth_principal import (
    BAD_ALGORITHM,
    BAD_AUDIENCE,
    BAD_CLAIMS,
    BAD_ISSUER,
    BAD_SIGNATURE,
    EXPIRED,
    MALFORMED,
    NOT_YET_VALID,
    AuthError,
    Principal,
    parse_accounts,
)

#: RFC 7518 section 3.2: an HS256 key must be at least as long as the hash output.
MIN_SECRET_BYTES = 32
#: Longer than any sane token; cheap protection against parsing megabytes of base64.
MAX_TOKEN_CHARS = 8192
MAX_SUBJECT_CHARS = 256


@dataclass(frozen=True, slots=True)
class StaticKey:
    """A configured secret or public key and the one algorithm it verifies."""

    algorithm: str
    key: Any


def secret_key(secret: str) -> StaticKey:
    """HS256 with `secret` (AUTH_JWT_SECRET); ConfigError when it is too short to be safe."""
    raw = secret.encode()
    if len(raw) < MIN_SECRET_BYTES:
        raise ConfigError("AUTH_JWT_SECRET", f"must be at least {MIN_SECRET_BYTES} bytes for HS256")
    return StaticKey("HS256", raw)


def public_key(pem: str) -> StaticKey:
    """RS256 or ES256 from a PEM public key (AUTH_JWT_PUBLIC_KEY); ConfigError otherwise.

    Literal `\\n` sequences are turned into newlines: a PEM pasted into a one-line environment
    variable or a Helm value often arrives that way.
    """
    text = pem.replace("\\n", "\n").strip()
    try:
        key = serialization.load_pem_public_key(text.encode())
    except (ValueError, TypeError):
        raise ConfigError(
            "AUTH_JWT_PUBLIC_KEY", "must be a PEM public key (-----BEGIN PUBLIC KEY-----)"
        ) from None
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < 2048:
            raise ConfigError("AUTH_JWT_PUBLIC_KEY", "RSA keys must have at least 2048 bits")
        return StaticKey("RS256", key)
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return StaticKey("ES256", key)
    raise ConfigError("AUTH_JWT_PUBLIC_KEY", "must be an RSA or a P-256 (ES256) public key")


class TokenVerifier:
    """Checks a token against one key source, issuer and audience; returns the Principal."""

    def __init__(
        self,
        key: StaticKey | JwksKeys,
        *,
        issuer: str | None = None,
        audience: str | None = None,
        leeway_s: float = 30.0,
    ) -> None:
        self.key = key
        self.issuer = issuer
        self.audience = audience
        self.leeway_s = leeway_s
        self.algorithms = (key.algorithm,) if isinstance(key, StaticKey) else JWKS_ALGORITHMS
        required = ["exp", "sub"]
        if issuer is not None:
            required.append("iss")
        if audience is not None:
            required.append("aud")
        self._options: dict[str, Any] = {
            "require": required,
            "verify_aud": audience is not None,
            "verify_iss": issuer is not None,
        }

    async def verify(self, token: str) -> Principal:
        """The caller of a valid `token`; AuthError with the reason otherwise."""
        header = _header(token)
        algorithm = header.get("alg")
        if algorithm not in self.algorithms:
            raise AuthError(BAD_ALGORITHM)
        if isinstance(self.key, StaticKey):
            key = self.key.key
        else:
            kid = header.get("kid")
            if not isinstance(kid, str) or not kid:
                raise AuthError(BAD_SIGNATURE, "the token names no key id (kid)")
            jwk = await self.key.key_for(kid)
            if jwk.algorithm_name != algorithm:
                raise AuthError(BAD_ALGORITHM)
            key = jwk.key
        claims = self._decode(token, key, algorithm)
        return self._principal(claims)

    def _decode(self, token: str, key: Any, algorithm: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                options=self._options,
                issuer=self.issuer,
                audience=self.audience,
                leeway=self.leeway_s,
            )
        except jwt_errors.PyJWTError as exc:
            raise AuthError(_reason(exc)) from None
        return claims

    def _principal(self, claims: dict[str, Any]) -> Principal:
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject.strip() or len(subject) > MAX_SUBJECT_CHARS:
            raise AuthError(BAD_CLAIMS, "the sub claim must be a non-empty string")
        # PyJWT accepts anything int() accepts ("1700000000", true); only a JSON number is a time.
        for name in ("exp", "nbf", "iat"):
            if name in claims and not _is_time(claims[name]):
                raise AuthError(BAD_CLAIMS, f"the {name} claim must be a number")
        expires = claims["exp"]
        if "accounts" not in claims:
            raise AuthError(BAD_CLAIMS, "the token carries no accounts claim")
        accounts = parse_accounts(claims["accounts"])
        token_id = claims.get("jti")
        return Principal(
            subject=subject,
            accounts=accounts,
            expires_at=float(expires) + self.leeway_s,
            token_id=token_id if isinstance(token_id, str) else None,
        )


def _is_time(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _header(token: str) -> dict[str, Any]:
    if not token or len(token) > MAX_TOKEN_CHARS or token.count(".") != 2:
        raise AuthError(MALFORMED)
    try:
        header = jwt.get_unverified_header(token)
    except jwt_errors.PyJWTError:
        raise AuthError(MALFORMED) from None
    return header


# Order matters: several PyJWT errors subclass others (InvalidSignatureError is a DecodeError,
# ExpiredSignatureError an InvalidTokenError), so the most specific comes first.
_REASONS: tuple[tuple[type[Exception], str], ...] = (
    (jwt_errors.InvalidSignatureError, BAD_SIGNATURE),
    (jwt_errors.InvalidAlgorithmError, BAD_ALGORITHM),
    (jwt_errors.InvalidKeyError, BAD_ALGORITHM),
    (jwt_errors.ExpiredSignatureError, EXPIRED),
    (jwt_errors.ImmatureSignatureError, NOT_YET_VALID),
    (jwt_errors.InvalidIssuerError, BAD_ISSUER),
    (jwt_errors.InvalidAudienceError, BAD_AUDIENCE),
    (jwt_errors.InvalidIssuedAtError, BAD_CLAIMS),
    (jwt_errors.InvalidSubjectError, BAD_CLAIMS),
    (jwt_errors.InvalidJTIError, BAD_CLAIMS),
)


def _reason(exc: jwt_errors.PyJWTError) -> str:
    if isinstance(exc, jwt_errors.MissingRequiredClaimError):
        return {"iss": BAD_ISSUER, "aud": BAD_AUDIENCE}.get(exc.claim, BAD_CLAIMS)
    for error_type, reason in _REASONS:
        if isinstance(exc, error_type):
            return reason
    # PyJWT reports a non-numeric exp/nbf as a DecodeError; the token itself parsed fine.
    if isinstance(exc, jwt_errors.DecodeError) and "claim" in str(exc):
        return BAD_CLAIMS
    return MALFORMED
