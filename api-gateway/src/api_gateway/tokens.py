"""Early rejection of bad bearer tokens, before any service is contacted.

Services still validate every token themselves (defence in depth); the gateway only spares
them requests that cannot succeed, and learns the user id for per-user rate limits.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from taskflow_kit.errors import Unauthorized
from taskflow_kit.tokens import InvalidTokenError, TokenConfig, decode_token

_CACHE_SIZE = 10_000


class TokenGate:
    """Verifies access tokens, remembering recent good ones until they expire (a token is
    verified once, not on every request a client makes with it)."""

    def __init__(self, config: TokenConfig) -> None:
        self.config = config
        self._valid: dict[str, _Verified] = {}

    def subject(self, authorization: bytes | None) -> str | None:
        """The user id of a valid bearer token; None without one (the service decides);
        Unauthorized for a malformed, forged, expired or non-access token."""
        token = _bearer(authorization)
        if token is None:
            return None
        cached = self._valid.get(token)
        if cached is not None and cached.expires_at > time.time():
            return cached.subject
        try:
            claims = decode_token(self.config, token, token_type="access")
            verified = _Verified(
                subject=str(claims["sub"]),
                expires_at=float(claims["exp"]),
                is_superuser=claims.get("is_superuser") is True,
            )
        except (InvalidTokenError, KeyError, TypeError, ValueError) as exc:
            raise Unauthorized("Invalid or expired token") from exc
        if len(self._valid) >= _CACHE_SIZE:
            self._valid.clear()
        self._valid[token] = verified
        return verified.subject

    def is_admin(self, authorization: bytes | None) -> bool:
        """Whether this is a valid access token (every check of `subject` applies) whose
        `is_superuser` claim is true."""
        if self.subject(authorization) is None:
            return False
        token = _bearer(authorization)
        verified = self._valid.get(token) if token is not None else None
        return verified is not None and verified.is_superuser


@dataclass(frozen=True, slots=True)
class _Verified:
    subject: str
    expires_at: float
    is_superuser: bool


def _bearer(authorization: bytes | None) -> str | None:
    if authorization is None:
        return None
    scheme, _, credentials = authorization.decode("latin-1").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return credentials.strip()
