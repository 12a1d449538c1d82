"""JWT issue and verification (HS256, shared secret) with strict required claims."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import jwt

MIN_SECRET_BYTES = 32
REQUIRED_CLAIMS = ["exp", "iat", "sub", "iss", "aud", "jti", "type"]
# Clocks of the hosts that issue and check tokens drift apart by a little: a token is still
# accepted this long after its `exp` (and with an `iat` this far in the future).
CLOCK_SKEW_LEEWAY = timedelta(seconds=5)
# Ours are well under 1 KiB; anything longer is refused before it is parsed or verified.
MAX_TOKEN_LENGTH = 4096

TokenType = Literal["access", "refresh"]


class InvalidTokenError(Exception):
    """The token is malformed, expired, forged, or of the wrong type."""


@dataclass(frozen=True, slots=True)
class TokenConfig:
    secret: str
    issuer: str
    audience: str
    algorithm: str = "HS256"

    def __post_init__(self) -> None:
        if len(self.secret.encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"JWT secret must be at least {MIN_SECRET_BYTES} bytes")


def issue_token(
    config: TokenConfig,
    *,
    subject: str,
    token_type: TokenType,
    ttl: timedelta,
    claims: Mapping[str, Any] | None = None,
    jti: str | None = None,
    now: datetime | None = None,
) -> str:
    """Sign a token for `subject` that expires after `ttl`."""
    issued_at = now or datetime.now(UTC)
    payload: dict[str, Any] = dict(claims or {})
    payload.update(
        sub=subject,
        type=token_type,
        iss=config.issuer,
        aud=config.audience,
        iat=issued_at,
        # `iat` has whole seconds; revocation voids tokens issued *before* an instant, and a
        # token issued a moment after it (a login right after a demotion) must stay valid.
        iat_us=int(issued_at.timestamp() * 1_000_000),
        exp=issued_at + ttl,
        jti=jti or uuid.uuid4().hex,
    )
    return jwt.encode(payload, config.secret, algorithm=config.algorithm)


# Ids are PostgreSQL bigints everywhere: a token naming anything else names no user we issued.
MAX_USER_ID = 2**63 - 1


def subject_id(claims: Mapping[str, Any]) -> int:
    """The user id a verified token was issued to (`sub`); ValueError if it names no id we
    could have issued (not a number, or outside 1 … bigint's maximum)."""
    try:
        user_id = int(claims["sub"])
    except (KeyError, TypeError) as exc:
        raise ValueError("the token names no user id") from exc
    if not 1 <= user_id <= MAX_USER_ID:
        raise ValueError("the token names no user id")
    return user_id


def issued_at(claims: Mapping[str, Any]) -> float:
    """When a verified token was issued, in epoch seconds (microseconds where it says)."""
    precise = claims.get("iat_us")
    if isinstance(precise, int) and not isinstance(precise, bool):
        return precise / 1_000_000
    return float(claims["iat"])


def decode_token(config: TokenConfig, token: str, *, token_type: TokenType) -> dict[str, Any]:
    """Verify signature, expiry (with `CLOCK_SKEW_LEEWAY`), issuer, audience, required claims
    and the token type; a token longer than `MAX_TOKEN_LENGTH` is refused unread."""
    if len(token) > MAX_TOKEN_LENGTH:
        raise InvalidTokenError("token too long")
    try:
        payload: dict[str, Any] = jwt.decode(
            token,
            config.secret,
            algorithms=[config.algorithm],
            audience=config.audience,
            issuer=config.issuer,
            options={"require": REQUIRED_CLAIMS},
            leeway=CLOCK_SKEW_LEEWAY,
        )
    except jwt.PyJWTError as exc:
        raise InvalidTokenError(str(exc)) from exc
    if payload.get("type") != token_type:
        raise InvalidTokenError(f"expected a {token_type} token")
    return payload
