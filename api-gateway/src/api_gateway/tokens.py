"""Early rejection of bad bearer tokens, before any service is contacted.

Services still validate every token themselves (defence in depth); the gateway only spares
them requests that cannot succeed, and learns the user id for per-user rate limits.
"""

from __future__ import annotations

import time

from taskflow_kit.errors import Unauthorized
from taskflow_kit.tokens import InvalidTokenError, TokenConfig, decode_token

_CACHE_SIZE = 10_000


class TokenGate:
    """Verifies access tokens, remembering recent good ones until they expire (a token is
    verified once, not on every request a client makes with it)."""

    def __init__(self, config: TokenConfig) -> None:
        self.config = config
        self._valid: dict[str, tuple[str, float]] = {}

    def subject(self, authorization: bytes | None) -> str | None:
        """The user id of a valid bearer token; None without one (the service decides);
        Unauthorized for a malformed, forged, expired or non-access token."""
        if authorization is None:
            return None
        scheme, _, credentials = authorization.decode("latin-1").partition(" ")
        if scheme.lower() != "bearer":
            return None
        token = credentials.strip()
        cached = self._valid.get(token)
        if cached is not None and cached[1] > time.time():
            return cached[0]
        try:
            claims = decode_token(self.config, token, token_type="access")
            subject = str(claims["sub"])
            expires_at = float(claims["exp"])
        except (InvalidTokenError, KeyError, TypeError, ValueError) as exc:
            raise Unauthorized("Invalid or expired token") from exc
        if len(self._valid) >= _CACHE_SIZE:
            self._valid.clear()
        self._valid[token] = (subject, expires_at)
        return subject
